//! [`blocking`]: blocking work (file I/O, a synchronous client library, heavy computation)
//! run on the host's bounded blocking pool instead of a host async thread.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::export::host;

/// Why [`blocking`] produced no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockingError {
    /// The closure panicked; the panic's message.
    Panicked(String),
    /// The host dropped the job without running it (it is shutting down), or this host is
    /// too old to offer a blocking pool.
    Unavailable,
}

impl fmt::Display for BlockingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockingError::Panicked(message) => write!(f, "the blocking job panicked: {message}"),
            BlockingError::Unavailable => f.write_str("the host could not run the blocking job"),
        }
    }
}

impl std::error::Error for BlockingError {}

/// Runs `f` on the host's blocking pool (`[server] blocking_threads` threads at most; when
/// all are busy the job waits its turn) and resolves to its result. The calling task is
/// suspended meanwhile, so the host thread serves other connections. A panic in `f` is
/// caught and becomes [`BlockingError::Panicked`].
///
/// The host keeps this plugin's code loaded until `f` has returned, even across a hot
/// reload. `f` runs on a host thread: do not leave thread-locals behind in it (they would
/// keep the library mapped after its last connection).
pub fn blocking<T, F>(f: F) -> Blocking<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let slot = Arc::new(Mutex::new(Slot { result: None, waker: None }));
    let completer = Completer { slot: Arc::clone(&slot), done: false };
    let job = Box::new(move || completer.complete(host::catch(f)));
    // If the host cannot take the job, it is released unrun and its completer has filled
    // in `Unavailable` already.
    host::spawn_blocking(job);
    Blocking { slot }
}

/// The future [`blocking`] returns.
#[must_use = "the result arrives only when this future is awaited"]
pub struct Blocking<T> {
    slot: Arc<Mutex<Slot<T>>>,
}

impl<T> fmt::Debug for Blocking<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Blocking")
    }
}

/// Where the job's result meets the waiting task.
struct Slot<T> {
    result: Option<Result<T, BlockingError>>,
    waker: Option<Waker>,
}

impl<T> Future for Blocking<T> {
    type Output = Result<T, BlockingError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.result.take() {
            Some(result) => Poll::Ready(result),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// The job's end of the slot: fills it once, with [`BlockingError::Unavailable`] if the
/// job is dropped without running.
struct Completer<T> {
    slot: Arc<Mutex<Slot<T>>>,
    done: bool,
}

impl<T> Completer<T> {
    fn complete(mut self, result: Result<T, BlockingError>) {
        self.fill(result);
    }

    fn fill(&mut self, result: Result<T, BlockingError>) {
        self.done = true;
        let waker = {
            let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
            slot.result = Some(result);
            slot.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if !self.done {
            self.fill(Err(BlockingError::Unavailable));
        }
    }
}
