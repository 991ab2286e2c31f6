//! The master process: binds the listeners, creates the scoreboard, starts the workers and
//! supervises them from its main thread (a loop over signals, worker exits, the stuck check,
//! recycling and the quarantine's lifting, every 50 ms). It never serves a connection; the
//! listeners stay open in it, so a worker's death never refuses a connection attempt.

use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::Duration;
use tokio::time::Instant;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::board::{Board, CellState, Layout};
use super::fleet_admin::FleetAdmin;
use super::fleet_metrics::FleetMetrics;
use super::inherit::Inherited;
use super::pool::{Fleet, Pool};
use super::relay::Sink;
use crate::scoreboard::slot::monotonic_ms;
use crate::watchdog::busy;
use crate::{Config, ConfigSource};

/// How often the master looks at its workers.
const TICK: Duration = Duration::from_millis(50);
/// What the master adds to `shutdown_grace_secs` before it kills workers still draining.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(5);

/// The listeners the master holds for its workers (never accepted on here).
struct Listeners {
    /// `[server] listen`.
    main: Vec<TcpListener>,
}

/// Runs the master until a shutdown: `config.workers.count` workers, logs to `sink`. The
/// master's one thread runs a current-thread runtime (the control links and the admin
/// listener); workers are spawned from it, so their parent-death signal is tied to it.
pub fn run(config: Config, source: ConfigSource, sink: Sink) -> ExitCode {
    let signals = match master_signals() {
        Ok(signals) => signals,
        Err(e) => {
            tracing::error!("cannot take SIGTERM/SIGINT/SIGHUP: {e}");
            return ExitCode::FAILURE;
        }
    };
    // What would make every worker fail at start is refused here, before any is started.
    if config.tls.enabled
        && let Err(e) = crate::tls::acceptor(&config.tls)
    {
        tracing::error!("{e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the master's runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let workers = config.workers;
    // Before `listening on`: a reader of the log knows from the first lines that workers come.
    tracing::info!(
        pid = std::process::id(),
        workers = workers.count,
        threads = workers.threads,
        "master starting {} workers ({} threads each, heartbeat timeout {:?})",
        workers.count,
        workers.threads,
        workers.heartbeat_timeout
    );
    runtime.block_on(async move {
        let (listeners, admin) = match bind(&config).await {
            Ok(bound) => bound,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let mut pool = match start_pool(&config, &listeners, admin, sink) {
            Ok(pool) => pool,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        supervise(&mut pool, &signals, config, &source, listeners).await
    })
}

/// Creates the scoreboard and the admin view (serving `admin` if there is one), and the
/// pool of workers (none started yet).
fn start_pool(
    config: &Config,
    listeners: &Listeners,
    admin: Option<tokio::net::TcpListener>,
    sink: Sink,
) -> Result<Pool, String> {
    let board = Board::create().map_err(|e| format!("cannot create the scoreboard: {e}"))?;
    let board_fd = board.raw_fd();
    let board = board.leak();
    let metrics = Arc::new(FleetMetrics::default());
    let unhealthy_after_ms = config.watchdog.unhealthy_after.as_millis() as u64;
    let fleet_admin = Arc::new(fleet_view(board, Arc::clone(&metrics), unhealthy_after_ms));
    if let Some(listener) = admin {
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(
            "every worker's figures summed; serving /healthz, /readyz and /metrics on http://{addr}"
        );
        let source = Arc::clone(&fleet_admin) as Arc<dyn crate::admin::AdminSource>;
        tokio::spawn(crate::admin::serve(listener, source));
    }
    let template = Inherited {
        index: 0,
        master_pid: std::process::id(),
        listeners: listeners.main.iter().map(AsRawFd::as_raw_fd).collect(),
        board: board_fd,
        cell: 0,
        control: None,
    };
    let workers = config.workers;
    let rooms = super::room_hub::RoomHub::start(Arc::clone(&metrics));
    if let Some(broker) = &config.broker {
        rooms.link_broker(broker).map_err(|e| format!("rooms broker: {e}"))?;
    }
    let fleet = Fleet { board, board_fd, admin: fleet_admin, metrics, rooms };
    Ok(Pool::new(&workers, template, fleet, sink, config.log_format))
}

/// Set when the master starts its shutdown (`/readyz` answers 503).
static DRAINING: AtomicBool = AtomicBool::new(false);

/// The master's admin view: `/readyz` is ready while some worker is (and no shutdown);
/// `/healthz` fails while no worker is running, or while any running worker has a handler
/// call blocked past `[watchdog] unhealthy_after_secs` (as the watchdog timed it; the
/// answer names the worker and the route), so an orchestrator can act on a stuck handler.
/// The master kills a worker stuck past `[workers] heartbeat_timeout_secs` itself.
fn fleet_view(board: &'static Layout, metrics: Arc<FleetMetrics>, unhealthy_after_ms: u64) -> FleetAdmin {
    let ready = move || {
        if DRAINING.load(Ordering::Acquire) {
            return Err("draining: shutting down".to_owned());
        }
        crate::metrics::broker::BROKER.readiness()?;
        let states: Vec<u32> = board.cells.iter().map(|c| c.state.load(Ordering::Acquire)).collect();
        if states.contains(&(CellState::Serving as u32)) {
            Ok(())
        } else if states.contains(&(CellState::Unready as u32)) {
            Err("no handlers loaded in any worker".to_owned())
        } else {
            Err("no worker serving yet".to_owned())
        }
    };
    let health = move || {
        let now = monotonic_ms();
        let mut reasons = Vec::new();
        let mut running = 0;
        for cell in &board.cells {
            if cell.state.load(Ordering::Acquire) == CellState::Empty as u32 {
                continue;
            }
            running += 1;
            if let Some(why) = busy::unhealthy(&cell.slots, &cell.names, now, unhealthy_after_ms) {
                let pid = cell.pid.load(Ordering::Relaxed);
                reasons.push(format!("worker pid={pid}: {why}"));
            }
        }
        match (running, reasons.is_empty()) {
            (0, _) => Err("no worker running".to_owned()),
            (_, true) => Ok(()),
            (_, false) => Err(reasons.join("; ")),
        }
    };
    FleetAdmin::new(metrics, Box::new(health), Box::new(ready))
}

/// Blocks SIGTERM, SIGINT and SIGHUP (before any thread exists, so all inherit the mask)
/// and reads them from a non-blocking signalfd.
fn master_signals() -> nix::Result<SignalFd> {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(signal);
    }
    set.thread_block()?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
}

/// Binds the listeners (the server's binding rules) and logs `listening on` for each, as a
/// single process does. The WebSocket listeners are kept as std sockets, out of the
/// master's event loop (it never accepts on them); the admin listener is served here.
async fn bind(config: &Config) -> Result<(Listeners, Option<tokio::net::TcpListener>), String> {
    let bound = crate::server::bind(config).await.map_err(|e| e.to_string())?;
    let to_std = |l: tokio::net::TcpListener| l.into_std().map_err(|e| format!("listener: {e}"));
    let main = bound.listeners.into_iter().map(to_std).collect::<Result<Vec<_>, _>>()?;
    for listener in &main {
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        // The same target as a single process's line: scripts filter on it
        // (`--log-level warn,wshd::server=info`, .ci/run's Autobahn phase).
        tracing::info!(target: "wshd::server", "listening on {addr}");
    }
    Ok((Listeners { main }, bound.admin))
}

/// The next pending signal, if any.
fn next_signal(signals: &SignalFd) -> Option<Signal> {
    let info = signals.read_signal().ok()??;
    Signal::try_from(info.ssi_signo as i32).ok()
}

/// Supervises until SIGTERM/SIGINT, then shuts down.
async fn supervise(
    pool: &mut Pool,
    signals: &SignalFd,
    mut config: Config,
    source: &ConfigSource,
    listeners: Listeners,
) -> ExitCode {
    loop {
        while let Some(signal) = next_signal(signals) {
            match signal {
                Signal::SIGHUP => reload(pool, &mut config, source),
                _ => return shutdown(pool, signals, signal, &config, listeners).await,
            }
        }
        pool.reap(true);
        if pool.cannot_start() {
            tracing::error!(
                "workers keep exiting with an error before serving (their log above says why); giving up"
            );
            pool.signal_all(Signal::SIGTERM);
            let _ = shutdown(pool, signals, Signal::SIGTERM, &config, listeners).await;
            return ExitCode::FAILURE;
        }
        pool.start_due();
        pool.kill_stuck(config.workers.heartbeat_timeout);
        pool.recycle_due(config.shutdown_grace);
        pool.lift_quarantines();
        tokio::time::sleep(TICK).await;
    }
}

/// SIGHUP: re-reads the configuration to validate it (what the master itself uses cannot
/// change without a restart) and forwards the signal to every worker, which reloads.
fn reload(pool: &Pool, config: &mut Config, source: &ConfigSource) {
    match source() {
        Ok(new) => {
            if new.workers != config.workers || new.listen != config.listen {
                tracing::warn!(
                    "[server] workers or listen, or [workers], changed; restart wshd to apply that"
                );
            }
            config.shutdown_grace = new.shutdown_grace;
            tracing::info!("SIGHUP: configuration valid; forwarding to the workers");
        }
        Err(e) => tracing::error!("SIGHUP: configuration refused ({e}); the workers keep theirs"),
    }
    pool.signal_all(Signal::SIGHUP);
}

/// Stops replacing workers, closes the master's listeners, forwards SIGTERM, waits up to
/// `shutdown_grace_secs` + [`SHUTDOWN_MARGIN`], then kills the rest. A second signal kills
/// at once.
async fn shutdown(
    pool: &mut Pool,
    signals: &SignalFd,
    signal: Signal,
    config: &Config,
    listeners: Listeners,
) -> ExitCode {
    let limit = config.shutdown_grace + SHUTDOWN_MARGIN;
    tracing::info!(
        signal = signal.as_str(),
        "shutting down: forwarding SIGTERM to the workers, waiting up to {limit:?} for them to drain"
    );
    DRAINING.store(true, Ordering::Release);
    drop(listeners);
    pool.signal_all(Signal::SIGTERM);
    let deadline = Instant::now() + limit;
    loop {
        if pool.reap(false) == 0 {
            tracing::info!(
                deaths = pool.counters.deaths,
                restarts = pool.counters.restarts,
                "every worker exited; master exiting"
            );
            return ExitCode::SUCCESS;
        }
        if let Some(again) = next_signal(signals).filter(|s| *s != Signal::SIGHUP) {
            tracing::warn!(signal = again.as_str(), "second signal: killing the workers and exiting at once");
            pool.signal_all(Signal::SIGKILL);
            return ExitCode::FAILURE;
        }
        if Instant::now() > deadline {
            tracing::error!("workers still running {limit:?} after SIGTERM; killing them");
            pool.signal_all(Signal::SIGKILL);
            tokio::time::sleep(TICK).await;
            pool.reap(false);
            return ExitCode::FAILURE;
        }
        tokio::time::sleep(TICK).await;
    }
}
