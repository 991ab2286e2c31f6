//! The master process: binds the listeners, creates the scoreboard, starts the workers and
//! supervises them from its main thread (no async runtime: a loop over signals, worker
//! exits and the stuck check every 50 ms). It never serves a connection; the listeners
//! stay open in it, so a worker's death never refuses a connection attempt.

use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::board::Board;
use super::inherit::Inherited;
use super::pool::Pool;
use super::relay::Sink;
use crate::{Config, ConfigSource};

/// How often the master looks at its workers.
const TICK: Duration = Duration::from_millis(50);
/// What the master adds to `shutdown_grace_secs` before it kills workers still draining.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(5);

/// The listeners the master holds for its workers.
struct Listeners {
    /// `[server] listen`.
    main: Vec<TcpListener>,
    /// `admin_listen`.
    admin: Option<TcpListener>,
}

/// Runs the master until a shutdown: `config.workers.count` workers, logs to `sink`.
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
    let listeners = match bind(&config) {
        Ok(listeners) => listeners,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let board = match Board::create() {
        Ok(board) => board,
        Err(e) => {
            tracing::error!("cannot create the scoreboard: {e}");
            return ExitCode::FAILURE;
        }
    };
    let template = Inherited {
        index: 0,
        master_pid: std::process::id(),
        listeners: listeners.main.iter().map(AsRawFd::as_raw_fd).collect(),
        admin: listeners.admin.as_ref().map(AsRawFd::as_raw_fd),
        board: board.raw_fd(),
        control: None, // Hook: the control socket's worker end (supervise/control.rs).
    };
    let workers = config.workers;
    tracing::info!(
        pid = std::process::id(),
        workers = workers.count,
        threads = workers.threads,
        "master starting {} workers ({} threads each, heartbeat timeout {:?})",
        workers.count,
        workers.threads,
        workers.heartbeat_timeout
    );
    let mut pool = Pool::new(workers.count, template, board, sink, config.log_format);
    supervise(&mut pool, &signals, config, &source, listeners)
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

/// Binds the listeners (on a throwaway runtime, to reuse the server's binding rules) and
/// logs `listening on` for each, as a single process does.
fn bind(config: &Config) -> Result<Listeners, String> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let bound = runtime.block_on(crate::server::bind(config)).map_err(|e| e.to_string())?;
    let to_std = |l: tokio::net::TcpListener| l.into_std().map_err(|e| format!("listener: {e}"));
    let main = bound.listeners.into_iter().map(to_std).collect::<Result<Vec<_>, _>>()?;
    let admin = bound.admin.map(to_std).transpose()?;
    for listener in &main {
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!("listening on {addr}");
    }
    if let Some(admin) = &admin {
        let addr = admin.local_addr().map_err(|e| e.to_string())?;
        tracing::info!("admin listener on {addr}, served by worker 1");
    }
    Ok(Listeners { main, admin })
}

/// The next pending signal, if any.
fn next_signal(signals: &SignalFd) -> Option<Signal> {
    let info = signals.read_signal().ok()??;
    Signal::try_from(info.ssi_signo as i32).ok()
}

/// Supervises until SIGTERM/SIGINT, then shuts down.
fn supervise(
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
                _ => return shutdown(pool, signals, signal, &config, listeners),
            }
        }
        pool.reap(true);
        if pool.cannot_start() {
            tracing::error!(
                "workers keep exiting with an error before serving (their log above says why); giving up"
            );
            pool.signal_all(Signal::SIGTERM);
            let _ = shutdown(pool, signals, Signal::SIGTERM, &config, listeners);
            return ExitCode::FAILURE;
        }
        pool.start_due();
        pool.kill_stuck(config.workers.heartbeat_timeout);
        std::thread::sleep(TICK);
    }
}

/// SIGHUP: re-reads the configuration to validate it (what the master itself uses cannot
/// change without a restart) and forwards the signal to every worker, which reloads.
fn reload(pool: &Pool, config: &mut Config, source: &ConfigSource) {
    match source() {
        Ok(new) => {
            if new.workers != config.workers || new.listen != config.listen {
                tracing::warn!("[server] workers, listen and [workers] changed; restart wshd to apply them");
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
fn shutdown(
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
    drop(listeners);
    pool.drop_admin();
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
            std::thread::sleep(TICK);
            pool.reap(false);
            return ExitCode::FAILURE;
        }
        std::thread::sleep(TICK);
    }
}
