//! One serving process from start to exit: a worker under a master, or the single process of
//! `workers = 0`. Starts the server, waits for SIGTERM/SIGINT from the [`Stopper`], drains
//! within `shutdown_grace_secs`, and reports how the drain ended.

use std::process::ExitCode;
use std::sync::Arc;

use super::stopper::Stopper;
use crate::server::{BeforeAccepting, Bound, Server};
use crate::{Config, ConfigSource};

/// What a worker adds to serving: a call with the server's state just before it accepts
/// connections, and one when the drain starts.
#[derive(Default)]
pub(crate) struct Hooks {
    /// Called with the server's state before the first accept.
    pub(crate) on_started: Option<BeforeAccepting>,
    /// Called when the drain starts.
    pub(crate) on_drain: Option<Box<dyn FnOnce() + Send>>,
}

/// Serves `config` until a signal, then drains. `bound`: listeners inherited from a master
/// (`None`: bind them here).
pub(crate) async fn serve(
    config: Config,
    source: ConfigSource,
    bound: Option<Bound>,
    mut stopper: Stopper,
    hooks: Hooks,
) -> ExitCode {
    match &config.source {
        Some(file) => tracing::info!("configuration: {}", file.display()),
        None => tracing::info!("configuration: built-in defaults (no config/server.toml here)"),
    }
    tracing::info!("handler directory: {}", config.handlers_dir.display());
    let bound = match bound {
        Some(bound) => Ok(bound),
        None => crate::server::bind(&config).await,
    };
    let started = match bound {
        Ok(bound) => {
            let bound = Bound { before_accepting: hooks.on_started, ..bound };
            Server::start_on(config, Some(source), bound).await
        }
        Err(e) => Err(e),
    };
    let mut server = match started {
        Ok(server) => server,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let state = Arc::clone(server.state());
    let for_grace = Arc::clone(&state);
    stopper.set_sources(
        Box::new(move || for_grace.snapshot().config.shutdown_grace),
        Box::new(move || {
            let local = crate::scoreboard::local();
            let running = super::board::busy_routes(local.slots, local.names);
            let running = super::board::describe_routes(&running);
            format!(
                "{} WebSocket connections open; handler code running: {running}",
                state.open_connections()
            )
        }),
    );
    let signal = tokio::select! {
        () = server.wait() => return ExitCode::SUCCESS,
        signal = stopper.next() => signal,
    };
    if let Some(on_drain) = hooks.on_drain {
        on_drain();
    }
    // The drain window is read from the configuration in force (SIGHUP may have changed it).
    let grace = server.state().snapshot().config.shutdown_grace;
    tracing::info!(
        signal,
        open_connections = server.state().open_connections(),
        grace_secs = grace.as_secs_f64(),
        "shutting down: not accepting, closing every WebSocket with 1001; send the signal again to exit at once"
    );
    let drained = server.shutdown(grace).await;
    if drained.left == 0 {
        tracing::info!(
            open_at_start = drained.open_at_start,
            took_ms = drained.took.as_millis() as u64,
            "drained; exiting"
        );
    } else {
        tracing::warn!(
            open_at_start = drained.open_at_start,
            left = drained.left,
            "drain window of {grace:?} over; dropping the connections left and exiting"
        );
    }
    ExitCode::SUCCESS
}

/// The single process of `workers = 0`: no master, everything served here.
pub(crate) fn single(config: Config, source: ConfigSource) -> ExitCode {
    let stopper = match Stopper::start(config.shutdown_grace) {
        Ok(stopper) => stopper,
        Err(e) => {
            tracing::error!("cannot listen for SIGTERM/SIGINT: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match runtime(config.workers.threads) {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let serving = async move {
        if let Some(broker) = &config.broker
            && let Err(e) = super::single_hub::start(broker)
        {
            tracing::error!("rooms broker: {e}");
            return ExitCode::FAILURE;
        }
        serve(config, source, None, stopper, Hooks::default()).await
    };
    block_on(runtime, serving)
}

/// Builds the runtime of a serving process: `threads` worker threads, everything enabled.
pub(crate) fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(threads.max(1)).enable_all().build()
}

/// Runs `serving` on `runtime` and gives the runtime half a second to stop: connections
/// still open after the drain window, and threads held by handler code, are not waited for.
pub(crate) fn block_on(
    runtime: tokio::runtime::Runtime,
    serving: impl Future<Output = ExitCode>,
) -> ExitCode {
    let code = runtime.block_on(serving);
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    code
}
