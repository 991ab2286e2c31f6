//! SIGHUP: listening for it, and applying a re-read configuration (what can change at run
//! time does, what needs a restart is reported, a broken file is refused).

use std::sync::Arc;

use super::pass::Reloader;
use super::watch::{self as dirwatch, Watching};
use crate::config::Config;
use crate::state::ServerState;

/// Re-reads the configuration (file plus command-line flags) on SIGHUP.
pub type ConfigSource = Arc<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// SIGHUPs received and not yet taken by the reload task (several coalesce into one).
static HANGUPS: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// A SIGHUP arrived: the reload task re-reads the configuration. Called by the process's
/// signal thread (`supervise::stopper`), which takes SIGHUP with `sigwait`.
pub fn hangup() {
    HANGUPS.notify_one();
}

/// The reload task's end of [`hangup`].
pub(crate) struct Hangups;

impl Hangups {
    /// Starts listening: SIGHUPs reach [`hangup`] through the signal thread that serving
    /// processes start first.
    pub(crate) fn listen() -> Hangups {
        Hangups
    }

    /// The next SIGHUP.
    pub(crate) async fn recv(&mut self) -> Option<()> {
        HANGUPS.notified().await;
        Some(())
    }
}

/// Re-reads the configuration from `source` and applies it: TLS certificates are reloaded,
/// the reloader takes the new configuration for its next pass, and the handler directory is
/// watched anew if where or how to watch changed. A configuration that does not resolve is
/// refused and the current one kept. Gives back the watch to use from now on. Blocks.
pub(crate) fn reload_config(
    state: &ServerState,
    reloader: &mut Reloader,
    source: &ConfigSource,
    watching: Option<Watching>,
) -> Option<Watching> {
    let config = match source() {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("configuration reload refused, keeping the current one: {e}");
            return watching;
        }
    };
    let old = Arc::clone(reloader.config());
    warn_if_restart_needed(&old, &config);
    let rewatch = config.handlers_dir != old.handlers_dir
        || config.handlers_recursive != old.handlers_recursive
        || config.handlers_watch != old.handlers_watch;
    reload_tls(state, &config);
    reloader.set_config(Arc::new(config));
    if !rewatch {
        return watching;
    }
    drop(watching);
    dirwatch::start(reloader.config())
}

/// Warns about the changes that only a restart applies.
fn warn_if_restart_needed(old: &Config, new: &Config) {
    if new.listen != old.listen {
        tracing::warn!("listen addresses changed in the configuration; restart wshd to apply them");
    }
    if new.admin_listen != old.admin_listen || new.log_format != old.log_format {
        tracing::warn!(
            "admin_listen or the log format changed in the configuration; restart wshd to apply them"
        );
    }
    if new.watchdog != old.watchdog {
        tracing::warn!("[watchdog] changed in the configuration; restart wshd to apply it");
    }
}

/// Applies the TLS part of a reloaded configuration: new certificate files are loaded (an
/// unusable one is refused and the current one kept); switching TLS on or off needs a restart.
fn reload_tls(state: &ServerState, config: &Config) {
    match (state.is_tls(), config.tls.enabled) {
        (true, true) => match crate::tls::acceptor_with(&config.tls, config.http2.enabled) {
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
