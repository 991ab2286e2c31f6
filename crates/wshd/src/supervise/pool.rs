//! The master's workers: spawning them, noticing deaths (logged with the route whose code was
//! running, and counted against it for the quarantine), replacing them (with a backoff for a
//! worker that keeps dying at start-up), killing the stuck ones, and recycling those past
//! `[workers]`' limits. A worker's place in the pool (its `worker N`) and its scoreboard
//! cell are apart: a recycled worker drains in its cell while its replacement starts in a
//! free one.

use std::process::Child;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use std::sync::Arc;

use super::board::{CAPACITY, CellState, Layout, describe_routes};
use super::control::{self, WorkerEvent, WorkerLink};
use super::fleet_admin::FleetAdmin;
use super::fleet_metrics::{ExitCause, FleetMetrics};
use super::inherit::Inherited;
use super::quarantine::Quarantine;
use super::recycle::{Recycle, RecycleLimits, resident_bytes};
use super::relay::{self, Sink};
use super::retire::{REPLACEMENT_WAIT, Retiring, STEP_ASIDE};
use super::room_hub::RoomHub;
use super::stuck::{self, Seen};
use super::{death, spawn};
use crate::config::{LogFormat, WorkerSettings};
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
/// How often the workers' resident memory is read (`/proc/PID/status`) for the recycling
/// limit; their connection counts are compared at every tick (an atomic load each).
const RSS_CHECK: Duration = Duration::from_secs(1);
/// What is added to `shutdown_grace_secs` before a recycled worker still draining is killed.
const RETIRE_MARGIN: Duration = Duration::from_secs(5);

/// One worker's place in the pool.
#[derive(Debug)]
struct Place {
    /// The running process, if any.
    child: Option<Child>,
    /// Its scoreboard cell (0-based), chosen free at each start.
    cell: usize,
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
    /// The rooms relay between the workers.
    pub(crate) rooms: Arc<RoomHub>,
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
    /// The rooms relay between the workers.
    rooms: Arc<RoomHub>,
    /// Where worker logs go.
    sink: Sink,
    /// The log format (for marking relayed lines).
    format: LogFormat,
    /// One per worker.
    places: Vec<Place>,
    /// Crashes per route, and the quarantined routes.
    quarantine: Quarantine,
    /// When a worker is recycled.
    limits: RecycleLimits,
    /// When the workers' resident memory is read next.
    next_rss_check: Instant,
    /// The worker being recycled (draining), if any.
    retiring: Option<Retiring>,
    /// What happened.
    pub(crate) counters: Counters,
}

impl Pool {
    /// A pool of `settings.count` workers (none started yet), quarantining and recycling as
    /// `settings` say.
    pub(crate) fn new(
        settings: &WorkerSettings,
        template: Inherited,
        fleet: Fleet,
        sink: Sink,
        format: LogFormat,
    ) -> Pool {
        let places = (0..settings.count)
            .map(|i| Place {
                child: None,
                cell: i,
                started: Instant::now(),
                quick_deaths: 0,
                failed_starts: 0,
                respawn_at: Some(Instant::now()),
                killed_because: None,
                seen: Seen::default(),
            })
            .collect();
        let Fleet { board, board_fd, admin, metrics, rooms } = fleet;
        let quarantine = Quarantine::new(settings, &board.global.quarantine, Arc::clone(&metrics));
        Pool {
            quarantine,
            limits: RecycleLimits::of(settings),
            next_rss_check: Instant::now(),
            retiring: None,
            template,
            board,
            board_fd,
            admin,
            fleet: metrics,
            rooms,
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
        let Some(cell_index) = self.free_cell() else {
            tracing::error!(
                worker = i + 1,
                "no free scoreboard cell for worker {}; retrying in {BACKOFF:?}",
                i + 1
            );
            self.places[i].respawn_at = Some(Instant::now() + BACKOFF);
            return;
        };
        self.board.cells[cell_index].reset(monotonic_ms());
        let mut inherited = self.template.clone();
        inherited.index = i + 1;
        inherited.board = self.board_fd;
        inherited.cell = cell_index;
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
        place.cell = cell_index;
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
                let (link, events) = WorkerLink::with_rooms(master_end, Some(self.rooms.attach()));
                self.admin.set_link(cell_index, Some(Arc::new(link)));
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
                self.board.cells[cell_index].state.store(CellState::Empty as u32, Ordering::Release);
                place.respawn_at = Some(Instant::now() + BACKOFF);
            }
        }
        self.fleet.set_running(self.places.iter().filter(|p| p.child.is_some()).count());
    }

    /// Reaps workers that exited: logs each death and schedules its replacement (none when
    /// `replace` is false, during a shutdown). Gives the number still running.
    pub(crate) fn reap(&mut self, replace: bool) -> usize {
        let mut running = self.reap_retiring();
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
        self.admin.set_link(self.places[i].cell, None);
        let cause = match (replace, status.signal(), self.places[i].killed_because.is_some()) {
            (false, _, _) => ExitCause::Stopped,
            (true, _, true) => ExitCause::Unresponsive,
            (true, Some(_), false) => ExitCause::Signal,
            (true, None, false) => ExitCause::Failed,
        };
        self.fleet.exited(cause);
        if replace && let Some(cell) = self.board.cells.get(self.places[i].cell) {
            let routes = cell.busy_routes();
            for (route, _) in &routes {
                self.fleet.crashed_in(route);
            }
            if matches!(cause, ExitCause::Signal | ExitCause::Unresponsive) {
                self.quarantine.crashed(&routes);
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
            .get(self.places[i].cell)
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
        let serving = (self.places.iter().filter(|p| p.child.is_some()))
            .filter_map(|p| self.board.cells.get(p.cell))
            .any(|cell| CellState::accepting(cell.state.load(Ordering::Acquire)));
        failing && !serving
    }

    /// Logs worker `i`'s death (`how`), with what it was running, and schedules a replacement.
    fn on_death(&mut self, i: usize, how: String, replace: bool) {
        let place = &mut self.places[i];
        let pid = place.child.take().map_or(0, |c| c.id());
        let routes = self.board.cells.get(place.cell).map(|cell| cell.busy_routes()).unwrap_or_default();
        let running = describe_routes(&routes);
        let reclaimed = release_cell(self.board, place.cell);
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
            let (Some(child), Some(cell)) = (place.child.as_ref(), self.board.cells.get(place.cell)) else {
                continue;
            };
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

    /// Sends `signal` to every running worker (the one being recycled too).
    pub(crate) fn signal_all(&self, signal: Signal) {
        for child in self.places.iter().filter_map(|p| p.child.as_ref()) {
            signal_pid(child.id(), signal);
        }
        if let Some(retiring) = &self.retiring {
            retiring.signal(signal);
        }
    }

    /// Lifts the quarantines whose plugin file changed (throttled).
    pub(crate) fn lift_quarantines(&mut self) {
        self.quarantine.lift_changed();
    }

    /// A scoreboard cell no process uses: state Empty, and neither a running worker's nor
    /// the recycled one's.
    fn free_cell(&self) -> Option<usize> {
        let taken = |c: usize| {
            self.places.iter().any(|p| p.child.is_some() && p.cell == c)
                || self.retiring.as_ref().is_some_and(|r| r.cell == c)
        };
        (0..CAPACITY).find(|&c| {
            !taken(c) && self.board.cells[c].state.load(Ordering::Acquire) == CellState::Empty as u32
        })
    }

    /// Recycles the first serving worker past a limit (memory read every [`RSS_CHECK`]; one
    /// at a time): its replacement starts at once, and it drains within `grace` (+
    /// [`RETIRE_MARGIN`]).
    pub(crate) fn recycle_due(&mut self, grace: Duration) {
        if !self.limits.any() || self.retiring.is_some() {
            return;
        }
        let now = Instant::now();
        let read_rss = self.limits.rss_bytes.is_some() && now >= self.next_rss_check;
        if read_rss {
            self.next_rss_check = now + RSS_CHECK;
        }
        let due = self.places.iter().enumerate().find_map(|(i, place)| {
            let child = place.child.as_ref().filter(|_| place.killed_because.is_none())?;
            let cell = self.board.cells.get(place.cell)?;
            if !CellState::accepting(cell.state.load(Ordering::Acquire)) {
                return None;
            }
            let rss = if read_rss { resident_bytes(child.id()) } else { None };
            self.limits.check(rss, cell.accepted_total.load(Ordering::Relaxed)).map(|why| (i, why))
        });
        if let Some((i, why)) = due {
            self.recycle(i, why, grace + RETIRE_MARGIN);
        }
    }

    /// Recycles worker `i` for `why`: starts its replacement at once in another cell; the old
    /// one drains (SIGTERM) as soon as the replacement accepts ([`Pool::reap_retiring`]).
    fn recycle(&mut self, i: usize, why: Recycle, limit: Duration) {
        if self.free_cell().is_none() {
            tracing::warn!(
                worker = i + 1,
                "worker {} is due for recycling ({why}) but no scoreboard cell is free; not now",
                i + 1
            );
            return;
        }
        let place = &mut self.places[i];
        let Some(child) = place.child.take() else { return };
        let pid = child.id();
        tracing::warn!(
            worker = i + 1,
            pid,
            reason = %why,
            "worker {} pid={pid} recycling: {why}; starting its replacement, then draining it",
            i + 1
        );
        self.fleet.recycled(why.cause());
        self.retiring = Some(Retiring::new(i + 1, place.cell, child, limit));
        place.quick_deaths = 0;
        place.failed_starts = 0;
        self.start(i);
    }

    /// Has the recycled worker stop accepting once its replacement accepts connections (or
    /// after [`REPLACEMENT_WAIT`]) and drain [`STEP_ASIDE`] later; reaps it once it exited (a stop, not a death: no quarantine, no
    /// death line; its cell's counts are reclaimed). Gives 1 while it still runs.
    fn reap_retiring(&mut self) -> usize {
        let Some(retiring) = self.retiring.as_mut() else { return 0 };
        if retiring.aside() && !retiring.draining() && retiring.due_to_drain() {
            retiring.drain();
        }
        if !retiring.aside() {
            let place = self.places.get(retiring.worker - 1);
            let replacement = place.filter(|p| p.child.is_some()).and_then(|p| self.board.cells.get(p.cell));
            let accepting =
                replacement.is_some_and(|c| CellState::accepting(c.state.load(Ordering::Acquire)));
            if accepting || retiring.since.elapsed() > REPLACEMENT_WAIT {
                tracing::info!(
                    worker = retiring.worker,
                    pid = retiring.child.id(),
                    "worker {} pid={} (recycled): {}; it stops accepting, and drains in {STEP_ASIDE:?}",
                    retiring.worker,
                    retiring.child.id(),
                    if accepting {
                        "its replacement accepts connections"
                    } else {
                        "its replacement is not up yet"
                    }
                );
                if let Some(cell) = self.board.cells.get(retiring.cell) {
                    cell.state.store(CellState::SteppingAside as u32, Ordering::Release);
                }
                retiring.step_aside();
            }
        }
        let Some(status) = retiring.poll() else { return 1 };
        let (worker, cell, pid) = (retiring.worker, retiring.cell, retiring.child.id());
        let took = retiring.since.elapsed();
        self.retiring = None;
        self.admin.set_link(cell, None);
        self.fleet.exited(ExitCause::Stopped);
        let left = release_cell(self.board, cell);
        tracing::info!(
            worker,
            pid,
            connections_left = left,
            drained_ms = took.as_millis() as u64,
            "recycled worker {worker} pid={pid} {} {took:?} after it was found due",
            death::describe(status)
        );
        0
    }
}

/// Marks `cell` empty and takes back its share of the connection counts (a process that
/// exited, whatever way, closes nothing more); gives how many it held.
fn release_cell(board: &Layout, cell: usize) -> u64 {
    if let Some(cell) = board.cells.get(cell) {
        cell.state.store(CellState::Empty as u32, Ordering::Release);
    }
    board.global.counts.reclaim(cell)
}

/// Logs what worker `index` says about itself on its control channel, until it goes.
async fn log_events(index: usize, mut events: tokio::sync::mpsc::Receiver<WorkerEvent>) {
    while let Some(event) = events.recv().await {
        tracing::debug!(worker = index, "worker {index}: {event:?}");
    }
}

/// Sends `signal` to `pid` (an error means it is gone already).
pub(super) fn signal_pid(pid: u32, signal: Signal) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), signal);
}
