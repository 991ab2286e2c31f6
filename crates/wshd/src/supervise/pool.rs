//! The master's workers: spawning them, noticing deaths (logged with the route whose code was
//! running), replacing them (with a backoff for a worker that keeps dying at start-up), and
//! killing the stuck ones.

use std::process::Child;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use std::sync::Arc;

use super::board::{CellState, Layout, describe_routes};
use super::control::{self, WorkerEvent, WorkerLink};
use super::fleet_admin::FleetAdmin;
use super::fleet_metrics::{ExitCause, FleetMetrics};
use super::inherit::Inherited;
use super::relay::{self, Sink};
use super::stuck::{self, Seen};
use super::{death, spawn};
use crate::config::LogFormat;
use crate::scoreboard::slot::monotonic_ms;

/// A worker that dies sooner than this after its start died "at start-up".
const QUICK_DEATH: Duration = Duration::from_secs(2);
/// Deaths at start-up in a row after which replacements wait [`BACKOFF`].
const QUICK_DEATHS_BEFORE_BACKOFF: u32 = 5;
/// The wait between replacements of a worker that keeps dying at start-up.
const BACKOFF: Duration = Duration::from_secs(1);
/// Workers exiting with an error before they ever served, in a row, after which the master
/// gives up: something every worker needs is missing (a start error they all log).
const FAILED_STARTS_BEFORE_GIVING_UP: u32 = 3;

/// One worker's place in the pool.
#[derive(Debug)]
struct Place {
    /// The running process, if any.
    child: Option<Child>,
    /// When it was started.
    started: Instant,
    /// Deaths at start-up in a row.
    quick_deaths: u32,
    /// When to start the next one (`None`: not waiting).
    respawn_at: Option<Instant>,
    /// Exits with an error status before serving, in a row.
    failed_starts: u32,
    /// Why the master killed it, if it did.
    killed_because: Option<String>,
    /// What the stuck check saw in its thread slots.
    seen: Seen,
}

/// Counts of what happened to workers (served as metrics once the control channel lands).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    /// Workers that died (any exit or signal), outside a shutdown.
    pub(crate) deaths: u64,
    /// Replacements started.
    pub(crate) restarts: u64,
    /// Workers killed as stuck.
    pub(crate) stuck_kills: u64,
}

/// What the pool shares with the rest of the master.
#[derive(Debug)]
pub(crate) struct Fleet {
    /// The scoreboard.
    pub(crate) board: &'static Layout,
    /// Its fd.
    pub(crate) board_fd: std::os::fd::RawFd,
    /// The admin view.
    pub(crate) admin: Arc<FleetAdmin>,
    /// The master's counters.
    pub(crate) metrics: Arc<FleetMetrics>,
}

/// The workers of a master.
#[derive(Debug)]
pub(crate) struct Pool {
    /// The fds every worker inherits (index, admin fd and control set per worker).
    template: Inherited,
    /// The scoreboard (mapped for the master's life).
    board: &'static Layout,
    /// The scoreboard's fd, for the workers to inherit.
    board_fd: std::os::fd::RawFd,
    /// The admin view: each worker's control link.
    admin: Arc<FleetAdmin>,
    /// The master's counters.
    fleet: Arc<FleetMetrics>,
    /// Where worker logs go.
    sink: Sink,
    /// The log format (for marking relayed lines).
    format: LogFormat,
    /// One per worker.
    places: Vec<Place>,
    /// What happened.
    pub(crate) counters: Counters,
}

impl Pool {
    /// A pool of `count` workers (none started yet).
    pub(crate) fn new(
        count: usize,
        template: Inherited,
        fleet: Fleet,
        sink: Sink,
        format: LogFormat,
    ) -> Pool {
        let places = (0..count)
            .map(|_| Place {
                child: None,
                started: Instant::now(),
                quick_deaths: 0,
                failed_starts: 0,
                respawn_at: Some(Instant::now()),
                killed_because: None,
                seen: Seen::default(),
            })
            .collect();
        let Fleet { board, board_fd, admin, metrics } = fleet;
        Pool {
            template,
            board,
            board_fd,
            admin,
            fleet: metrics,
            sink,
            format,
            places,
            counters: Counters::default(),
        }
    }

    /// Starts the workers whose (re)start is due.
    pub(crate) fn start_due(&mut self) {
        let now = Instant::now();
        for i in 0..self.places.len() {
            if self.places[i].child.is_none() && self.places[i].respawn_at.is_some_and(|at| at <= now) {
                self.start(i);
            }
        }
    }

    /// Starts worker `i` (0-based) with its control channel; a failure is retried after
    /// [`BACKOFF`]. Runs on the master's runtime (the control link's tasks).
    fn start(&mut self, i: usize) {
        let Some(cell) = self.board.cells.get(i) else { return };
        cell.reset(monotonic_ms());
        let mut inherited = self.template.clone();
        inherited.index = i + 1;
        inherited.board = self.board_fd;
        let spawned = control::socket_pair().and_then(|(master_end, child_end)| {
            inherited.control = Some(child_end.raw_fd());
            let child = spawn::spawn_worker(&inherited);
            // Dropped at once: a later child must not inherit this worker's end.
            drop(child_end);
            Ok((child?, master_end))
        });
        let place = &mut self.places[i];
        place.seen = Seen::default();
        place.killed_because = None;
        match spawned {
            Ok((mut child, master_end)) => {
                tracing::info!(
                    worker = i + 1,
                    pid = child.id(),
                    "worker {} started pid={}",
                    i + 1,
                    child.id()
                );
                if let Some(stderr) = child.stderr.take() {
                    relay::relay(i + 1, stderr, self.sink.clone(), self.format);
                }
                let (link, events) = WorkerLink::new(master_end);
                self.admin.set_link(i, Some(Arc::new(link)));
                tokio::spawn(log_events(i + 1, events));
                self.fleet.started();
                place.child = Some(child);
                place.started = Instant::now();
                place.respawn_at = None;
            }
            Err(e) => {
                tracing::error!(
                    worker = i + 1,
                    "cannot start worker {}: {e}; retrying in {BACKOFF:?}",
                    i + 1
                );
                place.respawn_at = Some(Instant::now() + BACKOFF);
            }
        }
        self.fleet.set_running(self.places.iter().filter(|p| p.child.is_some()).count());
    }

    /// Reaps workers that exited: logs each death and schedules its replacement (none when
    /// `replace` is false, during a shutdown). Gives the number still running.
    pub(crate) fn reap(&mut self, replace: bool) -> usize {
        let mut running = 0;
        for i in 0..self.places.len() {
            let Some(child) = self.places[i].child.as_mut() else { continue };
            match child.try_wait() {
                Ok(None) => running += 1,
                Ok(Some(status)) => {
                    self.count_failed_start(i, status);
                    self.count_exit(i, status, replace);
                    self.on_death(i, death::describe(status), replace);
                }
                Err(e) => {
                    tracing::error!(worker = i + 1, "cannot wait for worker {}: {e}", i + 1);
                    running += 1;
                }
            }
        }
        running
    }

    /// Counts worker `i`'s exit in the master's metrics, and forgets its control link.
    fn count_exit(&mut self, i: usize, status: std::process::ExitStatus, replace: bool) {
        use std::os::unix::process::ExitStatusExt;
        self.admin.set_link(i, None);
        let cause = match (replace, status.signal(), self.places[i].killed_because.is_some()) {
            (false, _, _) => ExitCause::Stopped,
            (true, _, true) => ExitCause::Unresponsive,
            (true, Some(_), false) => ExitCause::Signal,
            (true, None, false) => ExitCause::Failed,
        };
        self.fleet.exited(cause);
        if replace && let Some(cell) = self.board.cells.get(i) {
            for (route, _) in cell.busy_routes() {
                self.fleet.crashed_in(&route);
            }
        }
        let running = self.places.iter().filter(|p| p.child.is_some()).count();
        self.fleet.set_running(running.saturating_sub(1));
    }

    /// Counts an exit with an error status before worker `i` ever served (a start error, not a
    /// crash: crashes are signals).
    fn count_failed_start(&mut self, i: usize, status: std::process::ExitStatus) {
        let never_served = self
            .board
            .cells
            .get(i)
            .is_some_and(|cell| cell.state.load(Ordering::Acquire) == CellState::Starting as u32);
        let place = &mut self.places[i];
        if never_served && status.code().is_some_and(|code| code != 0) {
            place.failed_starts += 1;
        } else {
            place.failed_starts = 0;
        }
    }

    /// Whether workers keep failing to start (they exit with an error before serving) while
    /// none serves: the master should give up. With another worker serving, the master keeps
    /// trying (a configuration edited badly must not take down a running server).
    pub(crate) fn cannot_start(&self) -> bool {
        let failing = self.places.iter().any(|p| p.failed_starts >= FAILED_STARTS_BEFORE_GIVING_UP);
        let serving = (0..self.places.len())
            .filter_map(|i| self.board.cells.get(i))
            .any(|cell| CellState::accepting(cell.state.load(Ordering::Acquire)));
        failing && !serving
    }

    /// Logs worker `i`'s death (`how`), with what it was running, and schedules a replacement.
    fn on_death(&mut self, i: usize, how: String, replace: bool) {
        let place = &mut self.places[i];
        let pid = place.child.take().map_or(0, |c| c.id());
        let routes = self.board.cells.get(i).map(|cell| cell.busy_routes()).unwrap_or_default();
        let running = describe_routes(&routes);
        if let Some(cell) = self.board.cells.get(i) {
            cell.state.store(CellState::Empty as u32, Ordering::Release);
        }
        // A dead worker never closes its connections: take its share of the counts back.
        let reclaimed = self.board.global.counts.reclaim(i);
        if !replace {
            tracing::info!(
                worker = i + 1,
                pid,
                connections_left = reclaimed,
                "worker {} pid={pid} {how}",
                i + 1
            );
            return;
        }
        self.counters.deaths += 1;
        let lived = place.started.elapsed();
        place.quick_deaths = if lived < QUICK_DEATH { place.quick_deaths + 1 } else { 0 };
        let wait = if place.quick_deaths >= QUICK_DEATHS_BEFORE_BACKOFF { BACKOFF } else { Duration::ZERO };
        let why = place
            .killed_because
            .take()
            .map_or(String::new(), |why| format!(" (the master killed it: {why})"));
        tracing::error!(
            worker = i + 1,
            pid,
            status = %how,
            running = %running,
            lived_ms = lived.as_millis() as u64,
            connections_lost = reclaimed,
            deaths = self.counters.deaths,
            "worker {} pid={pid} died: {how}{why}; handler code running: {running}; replacing it{}",
            i + 1,
            if wait.is_zero() { String::new() } else { format!(" in {wait:?} (it keeps dying at start-up)") }
        );
        self.counters.restarts += 1;
        place.respawn_at = Some(Instant::now() + wait);
    }

    /// Kills (SIGKILL) every serving worker that is stuck; the death is reaped later.
    pub(crate) fn kill_stuck(&mut self, timeout: Duration) {
        let now = monotonic_ms();
        let timeout_ms = timeout.as_millis() as u64;
        for (i, place) in self.places.iter_mut().enumerate() {
            let (Some(child), Some(cell)) = (place.child.as_ref(), self.board.cells.get(i)) else { continue };
            if place.killed_because.is_some()
                || cell.state.load(Ordering::Acquire) == CellState::Draining as u32
            {
                continue;
            }
            let Some(why) = stuck::check(cell, &mut place.seen, now, timeout_ms) else { continue };
            tracing::error!(
                worker = i + 1,
                pid = child.id(),
                "worker {} pid={} is stuck: {why}; killing it",
                i + 1,
                child.id()
            );
            self.counters.stuck_kills += 1;
            signal_pid(child.id(), Signal::SIGKILL);
            place.killed_because = Some(why);
        }
    }

    /// Sends `signal` to every running worker.
    pub(crate) fn signal_all(&self, signal: Signal) {
        for child in self.places.iter().filter_map(|p| p.child.as_ref()) {
            signal_pid(child.id(), signal);
        }
    }
}

/// Logs what worker `index` says about itself on its control channel, until it goes.
async fn log_events(index: usize, mut events: tokio::sync::mpsc::Receiver<WorkerEvent>) {
    while let Some(event) = events.recv().await {
        tracing::debug!(worker = index, "worker {index}: {event:?}");
    }
}

/// Sends `signal` to `pid` (an error means it is gone already).
fn signal_pid(pid: u32, signal: Signal) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), signal);
}
