//! The reload task: watches the handler directory (debounced) and listens for SIGHUP, and
//! swaps in a new route table after each reload pass.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::config::Config;
use crate::plugin::Reloader;
use crate::plugin::watch::{self as dirwatch, DirWatch};
use crate::state::ServerState;

/// Re-reads the configuration (file plus command-line flags) on SIGHUP.
pub type ConfigSource = Arc<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// The longest a burst of file events can postpone a rescan.
const MAX_DEBOUNCE_DELAY: Duration = Duration::from_secs(2);

/// A handler-directory watch and its event channel.
pub(crate) type Watching = (DirWatch, mpsc::UnboundedReceiver<()>);

/// Starts watching the configured handler directory (if watching is on). Call it before the
/// first scan, so no change between the scan and the watch is missed.
pub(crate) fn start_watch(config: &Config) -> Option<Watching> {
    if !config.handlers_watch {
        return None;
    }
    match dirwatch::watch(&config.handlers_dir, config.handlers_recursive) {
        Ok(watching) => {
            tracing::info!("watching {} for handler changes", config.handlers_dir.display());
            Some(watching)
        }
        Err(e) => {
            tracing::error!(
                "cannot watch {}: {e}; handlers reload on SIGHUP only",
                config.handlers_dir.display()
            );
            None
        }
    }
}

/// Runs until `stopped` changes.
pub(crate) async fn run(
    state: Arc<ServerState>,
    mut reloader: Reloader,
    mut watching: Option<Watching>,
    source: Option<ConfigSource>,
    start_unsettled: bool,
    mut stopped: watch::Receiver<bool>,
) {
    #[cfg(unix)]
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("cannot listen for SIGHUP: {e}");
            None
        }
    };
    let debounce = reloader.config().handlers_debounce;
    let mut due: Option<Instant> = start_unsettled.then(|| Instant::now() + debounce);
    let mut burst_started: Option<Instant> = None;
    loop {
        let debounce = reloader.config().handlers_debounce;
        let file_event = async {
            match watching.as_mut() {
                Some((_, events)) => events.recv().await,
                None => std::future::pending().await,
            }
        };
        let hangup = async {
            #[cfg(unix)]
            if let Some(h) = hangups.as_mut() {
                return h.recv().await;
            }
            std::future::pending::<Option<()>>().await
        };
        let rescan_due = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = file_event => {
                if event.is_none() {
                    watching = None;
                    continue;
                }
                let now = Instant::now();
                let first = *burst_started.get_or_insert(now);
                due = Some((now + debounce).min(first + MAX_DEBOUNCE_DELAY));
            }
            () = rescan_due => {
                due = None;
                burst_started = None;
                let outcome = reloader.pass();
                state.publish(outcome.config, outcome.table);
                if outcome.unsettled {
                    due = Some(Instant::now() + debounce);
                }
            }
            signal = hangup => {
                if signal.is_none() {
                    continue;
                }
                tracing::info!("SIGHUP: reloading the configuration and the handler directory");
                if let Some(source) = &source {
                    match source() {
                        Ok(config) => {
                            let old = Arc::clone(reloader.config());
                            if config.listen != old.listen {
                                tracing::warn!("listen addresses changed in the configuration; restart wshd to apply them");
                            }
                            if config.admin_listen != old.admin_listen || config.log_format != old.log_format {
                                tracing::warn!("admin_listen or the log format changed in the configuration; restart wshd to apply them");
                            }
                            let rewatch = config.handlers_dir != old.handlers_dir
                                || config.handlers_recursive != old.handlers_recursive
                                || config.handlers_watch != old.handlers_watch;
                            reload_tls(&state, &config);
                            reloader.set_config(Arc::new(config));
                            if rewatch {
                                drop(watching.take());
                                watching = start_watch(reloader.config());
                            }
                        }
                        Err(e) => tracing::error!("configuration reload refused, keeping the current one: {e}"),
                    }
                }
                let outcome = reloader.pass();
                state.publish(outcome.config, outcome.table);
                if outcome.unsettled {
                    due = Some(Instant::now() + debounce);
                }
            }
            _ = stopped.changed() => return,
        }
    }
}

/// Applies the TLS part of a reloaded configuration: new certificate files are loaded (an
/// unusable one is refused and the current one kept); switching TLS on or off needs a restart.
fn reload_tls(state: &ServerState, config: &Config) {
    match (state.is_tls(), config.tls.enabled) {
        (true, true) => match crate::tls::acceptor(&config.tls) {
            Ok(acceptor) => {
                state.replace_tls(acceptor);
                tracing::info!("TLS certificate and settings reloaded");
            }
            Err(e) => tracing::error!("TLS reload refused, keeping the current certificate: {e}"),
        },
        (false, false) => {}
        (true, false) | (false, true) => {
            tracing::warn!("TLS was switched on or off in the configuration; restart wshd to apply it");
        }
    }
}
