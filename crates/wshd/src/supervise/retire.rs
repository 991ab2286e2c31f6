//! A worker being recycled: its replacement starts first (in another scoreboard cell); once
//! that one accepts connections, the old one gets SIGTERM and drains as on shutdown (stops
//! accepting, its WebSockets get 1001, it exits within its grace), so the capacity never
//! drops. One at a time; SIGKILLed if it outlives its grace.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use super::pool::signal_pid;
use nix::sys::signal::Signal;

/// How long a recycled worker keeps serving while its replacement is not accepting yet (a
/// replacement that cannot start must not keep the old worker forever).
pub(crate) const REPLACEMENT_WAIT: Duration = Duration::from_secs(10);

/// How long a recycled worker has stopped accepting before it is told to drain: the
/// connections it accepted last get this long before their close 1001.
pub(crate) const STEP_ASIDE: Duration = Duration::from_millis(250);

/// A worker being recycled, which the master waits for.
#[derive(Debug)]
pub(crate) struct Retiring {
    /// Its place in the pool, 1-based (the `worker N` of the logs).
    pub(crate) worker: usize,
    /// Its scoreboard cell (0-based).
    pub(crate) cell: usize,
    /// The process.
    pub(crate) child: Child,
    /// When it was found due.
    pub(crate) since: Instant,
    /// How long it may drain before it is killed.
    limit: Duration,
    /// When it stopped accepting (set by [`Retiring::step_aside`]).
    aside_since: Option<Instant>,
    /// When it is killed if still running (set by [`Retiring::drain`]).
    kill_at: Option<Instant>,
    /// Whether it was killed.
    killed: bool,
}

impl Retiring {
    /// Worker `worker`'s `child` (in `cell`), due for recycling; it may drain for `limit`.
    pub(crate) fn new(worker: usize, cell: usize, child: Child, limit: Duration) -> Retiring {
        Retiring {
            worker,
            cell,
            child,
            since: Instant::now(),
            limit,
            aside_since: None,
            kill_at: None,
            killed: false,
        }
    }

    /// Whether it was told to stop accepting.
    pub(crate) fn aside(&self) -> bool {
        self.aside_since.is_some()
    }

    /// Notes that it was told to stop accepting (the caller set its cell's state).
    pub(crate) fn step_aside(&mut self) {
        self.aside_since.get_or_insert_with(Instant::now);
    }

    /// Whether it has stopped accepting for [`STEP_ASIDE`] and may be told to drain.
    pub(crate) fn due_to_drain(&self) -> bool {
        self.aside_since.is_some_and(|at| at.elapsed() >= STEP_ASIDE)
    }

    /// Whether it was told to drain.
    pub(crate) fn draining(&self) -> bool {
        self.kill_at.is_some()
    }

    /// Tells it to drain (SIGTERM), once.
    pub(crate) fn drain(&mut self) {
        if self.kill_at.is_none() {
            signal_pid(self.child.id(), Signal::SIGTERM);
            self.kill_at = Some(Instant::now() + self.limit);
        }
    }

    /// Its exit status once it exited; SIGKILLs it once past its limit (logged).
    pub(crate) fn poll(&mut self) -> Option<ExitStatus> {
        match self.child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(worker = self.worker, "cannot wait for recycled worker {}: {e}", self.worker)
            }
        }
        if !self.killed && self.kill_at.is_some_and(|at| Instant::now() >= at) {
            tracing::warn!(
                worker = self.worker,
                pid = self.child.id(),
                "recycled worker {} pid={} still draining {:?} after SIGTERM; killing it",
                self.worker,
                self.child.id(),
                self.limit
            );
            signal_pid(self.child.id(), Signal::SIGKILL);
            self.killed = true;
        }
        None
    }

    /// Sends `signal_sent` to it.
    pub(crate) fn signal(&self, signal_sent: Signal) {
        signal_pid(self.child.id(), signal_sent);
    }
}
