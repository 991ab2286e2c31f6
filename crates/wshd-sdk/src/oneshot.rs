//! A one-value channel from any thread to a task, using only `std` (no tokio: polling a
//! tokio primitive on a host thread would initialise the plugin's tokio thread-locals there;
//! see `docs/decisions/0013-io-in-plugins.md`).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

/// Where the value meets the waiting task.
struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

/// A channel whose sender, dropped without sending, sends `fallback()` instead.
pub(crate) fn channel<T>(fallback: fn() -> T) -> (Completer<T>, Receiver<T>) {
    let slot = Arc::new(Mutex::new(Slot { value: None, waker: None }));
    (Completer { slot: Arc::clone(&slot), fallback: Some(fallback) }, Receiver { slot })
}

/// The sending end: fills the slot once.
pub(crate) struct Completer<T> {
    slot: Arc<Mutex<Slot<T>>>,
    /// `None` once the value is sent.
    fallback: Option<fn() -> T>,
}

impl<T> Completer<T> {
    /// Sends `value` and wakes the waiting task.
    pub(crate) fn complete(mut self, value: T) {
        self.fill(value);
    }

    fn fill(&mut self, value: T) {
        self.fallback = None;
        let waker = {
            let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
            slot.value = Some(value);
            slot.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(fallback) = self.fallback.take() {
            self.fill(fallback());
        }
    }
}

/// The receiving end: a future of the value.
pub(crate) struct Receiver<T> {
    slot: Arc<Mutex<Slot<T>>>,
}

impl<T> Future for Receiver<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.value.take() {
            Some(value) => Poll::Ready(value),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
