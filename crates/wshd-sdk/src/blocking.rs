//! [`blocking`]: blocking work (file I/O, a synchronous client library, heavy computation)
//! run on the host's bounded blocking pool instead of a host async thread.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::export::host;
use crate::oneshot;

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
    let (completer, receiver) = oneshot::channel(|| Err(BlockingError::Unavailable));
    let job = Box::new(move || completer.complete(host::catch(f)));
    // If the host cannot take the job, it is released unrun and its completer sends
    // `Unavailable`.
    host::spawn_blocking(job);
    Blocking { receiver }
}

/// The future [`blocking`] returns.
#[must_use = "the result arrives only when this future is awaited"]
pub struct Blocking<T> {
    receiver: oneshot::Receiver<Result<T, BlockingError>>,
}

impl<T> fmt::Debug for Blocking<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Blocking")
    }
}

impl<T> Future for Blocking<T> {
    type Output = Result<T, BlockingError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.receiver).poll(cx)
    }
}
