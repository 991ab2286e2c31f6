//! The child's stdout lines and its end, from the plugin's I/O runtime to the connection's
//! task on a host thread: a `std`-only queue with the host task's waker. Nothing of tokio's is
//! touched on the host side (0013: a tokio primitive polled or woken there would leave the
//! plugin's tokio thread-locals on a host thread and pin the library).

use std::collections::VecDeque;
use std::process::ExitStatus;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// Lines queued before the stdout reader waits for the connection to catch up.
const MAX_QUEUED_LINES: usize = 256;

/// How the child ended.
#[derive(Debug, Clone)]
pub(crate) enum End {
    /// It exited (or was killed) and was reaped.
    Exited(ExitStatus),
    /// It could not be watched or reaped; the reason.
    Failed(String),
}

/// What the connection takes in one go.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Lines to send, in order.
    pub(crate) lines: Vec<String>,
    /// The child's end, after the last line.
    pub(crate) end: Option<End>,
    /// The reader was waiting for room: wake it (through `io::run`).
    pub(crate) reader_stalled: bool,
}

#[derive(Debug, Default)]
struct State {
    lines: VecDeque<String>,
    end: Option<End>,
    waker: Option<Waker>,
    stalled: bool,
}

/// The queue.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    state: Mutex<State>,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a line and wakes the connection. Returns whether the queue is now full.
    pub(crate) fn push(&self, line: String) -> bool {
        let mut state = self.lock();
        state.lines.push_back(line);
        let full = state.lines.len() >= MAX_QUEUED_LINES;
        wake(state);
        full
    }

    /// Whether the queue is full; if so the reader is marked stalled (the connection wakes it
    /// when it takes the lines).
    pub(crate) fn full_or_stall(&self) -> bool {
        let mut state = self.lock();
        let full = state.lines.len() >= MAX_QUEUED_LINES;
        state.stalled |= full;
        full
    }

    /// Records the child's end (after its last line) and wakes the connection.
    pub(crate) fn finish(&self, end: End) {
        let mut state = self.lock();
        state.end.get_or_insert(end);
        wake(state);
    }

    /// Takes everything queued, or registers the waker when there is nothing.
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Batch> {
        let mut state = self.lock();
        if state.lines.is_empty() && state.end.is_none() {
            state.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let lines = state.lines.drain(..).collect();
        let reader_stalled = std::mem::take(&mut state.stalled);
        Poll::Ready(Batch { lines, end: state.end.take(), reader_stalled })
    }
}

/// Wakes the connection's task, outside the lock (a host waker: safe to call from a plugin
/// thread).
fn wake(mut state: MutexGuard<'_, State>) {
    let waker = state.waker.take();
    drop(state);
    if let Some(waker) = waker {
        waker.wake();
    }
}
