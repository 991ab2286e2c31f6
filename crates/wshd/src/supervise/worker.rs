//! A worker process: adopts the listeners and the scoreboard the master handed down, makes
//! its scoreboard cell and the shared tables this process's scoreboard view (the watchdog's
//! thread slots, the server-wide connection counts, the quarantine), proves it is alive with a heartbeat, and serves like
//! the single process does. It leaves when the master goes (the parent-death signal is
//! SIGTERM, and the heartbeat task also notices a new parent).

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::board::{Board, CellState, Layout, WorkerCell};
use super::control::{WorkerEvent, serve_worker_with_rooms};
use super::inherit::Inherited;
use super::serve;
use super::stopper::Stopper;
use crate::scoreboard::Local;
use crate::scoreboard::slot::monotonic_ms;
use crate::server::{Bound, ServerState, StartError};
use crate::{Config, ConfigSource};

/// The longest a starting worker waits for the master's rooms snapshot before it serves.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(2);

/// How often a worker writes its heartbeat.
pub(crate) const HEARTBEAT_EVERY: Duration = Duration::from_millis(250);

/// Runs worker `inherited.index` with `config` until it is told to stop.
pub fn run(config: Config, source: ConfigSource, inherited: Inherited) -> ExitCode {
    let index = inherited.index;
    let (board, cell) = match adopt_board(&inherited) {
        Ok(adopted) => adopted,
        Err(e) => {
            eprintln!("wshd worker {index}: {e}");
            return ExitCode::FAILURE;
        }
    };
    cell.pid.store(std::process::id(), Ordering::Relaxed);
    let cell_index = inherited.cell;
    let local = Local {
        worker: cell_index,
        slots: &cell.slots,
        names: &cell.names,
        heartbeat: &cell.heartbeat_ms,
        accepted: &cell.accepted_total,
        counts: &board.global.counts,
        quarantine: &board.global.quarantine,
    };
    if !crate::scoreboard::install(local) {
        eprintln!("wshd worker {index}: the scoreboard was in use before it was mapped");
        return ExitCode::FAILURE;
    }
    let stopper = match Stopper::start(config.shutdown_grace) {
        Ok(stopper) => stopper,
        Err(e) => {
            tracing::error!("cannot listen for SIGTERM/SIGINT: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match serve::runtime(config.workers.threads) {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(pid = std::process::id(), threads = config.workers.threads, "worker {index} starting");
    serve::block_on(runtime, async move {
        tokio::spawn(heartbeat(cell, inherited.master_pid));
        let bound = match adopt_listeners(&inherited) {
            Ok(bound) => Bound { gate: Some(super::balance::gate(board, cell_index)), ..bound },
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let control = match super::control::from_env() {
            None => None,
            Some(Ok(stream)) => Some(stream),
            Some(Err(e)) => {
                tracing::error!("cannot adopt the control socket: {e}");
                return ExitCode::FAILURE;
            }
        };
        let hooks = hooks(cell, control).await;
        serve::serve(config, source, Some(bound), stopper, hooks).await
    })
}

/// The worker's hooks. The control channel is served from now on (metrics on request once
/// serving; Ready, then Draining; the rooms relay both ways), and this returns once the
/// master's rooms snapshot is applied (at most [`SNAPSHOT_WAIT`]), so the first connection
/// already sees the other workers' members and the history. Once serving, the cell is
/// marked; the worker leaves when the master goes (EOF on the channel).
async fn hooks(cell: &'static WorkerCell, control: Option<tokio::net::UnixStream>) -> serve::Hooks {
    let (events, events_rx) = tokio::sync::mpsc::channel(4);
    let drain_events = events.clone();
    let served: Arc<OnceLock<Arc<ServerState>>> = Arc::default();
    if let Some(stream) = control {
        let (rooms, snapshot) = super::room_link::install();
        let for_metrics = Arc::clone(&served);
        let metrics = move || for_metrics.get().map_or_else(String::new, |state| state.metrics.encode());
        tokio::spawn(async move {
            let answered = serve_worker_with_rooms(stream, metrics, events_rx, Some(rooms)).await;
            if !super::stopper::stopping() {
                tracing::warn!("the control channel to the master ended ({answered:?}); shutting down");
                super::stopper::request_stop("master gone");
            }
        });
        if tokio::time::timeout(SNAPSHOT_WAIT, snapshot).await.is_err() {
            tracing::warn!("no rooms snapshot from the master within {SNAPSHOT_WAIT:?}; serving anyway");
        }
    }
    let on_started = move |state: &Arc<ServerState>| {
        tokio::spawn(readiness(cell, Arc::clone(state)));
        let _ = served.set(Arc::clone(state));
        let _ = events.try_send(WorkerEvent::Ready);
    };
    let on_drain = move || {
        cell.state.store(CellState::Draining as u32, Ordering::Release);
        let _ = drain_events.try_send(WorkerEvent::Draining);
    };
    serve::Hooks { on_started: Some(Box::new(on_started)), on_drain: Some(Box::new(on_drain)) }
}

/// Keeps the cell's state saying whether this worker is ready (a handler loaded), for the
/// master's `/readyz`, until the drain starts (or the master has it step aside).
async fn readiness(cell: &'static WorkerCell, state: std::sync::Arc<crate::server::ServerState>) {
    loop {
        let now = if state.readiness().is_ok() { CellState::Serving } else { CellState::Unready };
        let swapped = cell.state.fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
            let settled = current == CellState::Draining as u32 || current == CellState::SteppingAside as u32;
            (!settled).then_some(now as u32)
        });
        if swapped.is_err() {
            return;
        }
        tokio::time::sleep(HEARTBEAT_EVERY).await;
    }
}

/// Maps the inherited scoreboard for the process's life and finds this worker's cell.
fn adopt_board(inherited: &Inherited) -> Result<(&'static Layout, &'static WorkerCell), String> {
    // SAFETY: the master passed this fd for the scoreboard and nothing else in this process
    // owns it (it is adopted once, at start-up).
    #[allow(unsafe_code)]
    let fd = unsafe { OwnedFd::from_raw_fd(inherited.board) };
    let board = Board::open(fd)?.leak();
    let cell = board.cells.get(inherited.cell);
    let cell =
        cell.ok_or_else(|| format!("no scoreboard cell {} for worker {}", inherited.cell, inherited.index))?;
    Ok((board, cell))
}

/// Adopts the inherited listener fds as tokio listeners.
fn adopt_listeners(inherited: &Inherited) -> Result<Bound, StartError> {
    let adopt = |fd: RawFd| -> Result<tokio::net::TcpListener, StartError> {
        // SAFETY: the master passed this fd as a listening TCP socket, and nothing else in this
        // process owns it (each inherited fd is adopted once).
        #[allow(unsafe_code)]
        let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpListener::from_std(listener))
            .map_err(|e| StartError(format!("cannot adopt inherited listener fd {fd}: {e}")))
    };
    let listeners = inherited.listeners.iter().map(|&fd| adopt(fd)).collect::<Result<Vec<_>, _>>()?;
    Ok(Bound { listeners, admin: None, inherited: true, gate: None, before_accepting: None })
}

/// Writes the heartbeat every [`HEARTBEAT_EVERY`]; starts this process's shutdown if the
/// master is gone.
async fn heartbeat(cell: &'static WorkerCell, master_pid: u32) {
    let mut told = false;
    loop {
        cell.heartbeat_ms.store(monotonic_ms(), Ordering::Release);
        if !told && !super::stopper::stopping() && nix::unistd::getppid().as_raw() as u32 != master_pid {
            tracing::warn!("the master (pid {master_pid}) is gone; shutting down");
            super::stopper::request_stop("master gone");
            told = true;
        }
        tokio::time::sleep(HEARTBEAT_EVERY).await;
    }
}
