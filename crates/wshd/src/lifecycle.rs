//! [`Lifecycle`]: the server's life as its connections see it — the drain signal and the
//! tracker of every connection task. A leaf module, so `ws/` can hold it without depending on
//! the server state that also holds the route table.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The drain signal and the connection tasks; cloning shares them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lifecycle {
    /// Cancelled when draining starts: sessions close with 1001, HTTP connections finish
    /// their request and close.
    pub(crate) shutdown: CancellationToken,
    /// Every connection task (HTTP connections and WebSocket sessions), for the drain.
    pub(crate) tasks: TaskTracker,
    /// Set just before `shutdown` is cancelled; what the hot paths look at.
    pub(crate) draining: Arc<AtomicBool>,
}

impl Lifecycle {
    /// Whether the server is shutting down.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Sets the flag, then tells every connection to finish.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
        self.shutdown.cancel();
    }
}
