//! The reload task: waits for handler-directory events (debounced) and SIGHUP, and after each
//! reload pass publishes a new snapshot. The task itself only waits and keeps time; every
//! pass, configuration re-read and (re)watch runs on tokio's blocking pool, so `dlopen`, file
//! reads and directory walks never hold up a runtime worker.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::pass::Reloader;
use super::sighup::{self, ConfigSource, Hangups};
use super::watch::{self as dirwatch, Watching};
use crate::config::Config;
use crate::metrics::PluginCounters;
use crate::plugin::RouteTable;
use crate::state::ServerState;

/// The longest a burst of file events can postpone a rescan.
const MAX_DEBOUNCE_DELAY: Duration = Duration::from_secs(2);

/// When the next rescan is due: `delay` after the last file event of a burst, but no later
/// than [`MAX_DEBOUNCE_DELAY`] after its first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Debounce {
    delay: Duration,
    due: Option<Instant>,
    burst_started: Option<Instant>,
}

impl Debounce {
    /// No rescan due, unless the first pass left a file unsettled.
    pub(crate) fn new(delay: Duration, unsettled: bool, now: Instant) -> Debounce {
        Debounce { delay, due: unsettled.then(|| now + delay), burst_started: None }
    }

    /// A file event at `now`: the rescan moves to `now + delay`, within the burst's bound.
    pub(crate) fn event(&mut self, now: Instant) {
        let first = *self.burst_started.get_or_insert(now);
        self.due = Some((now + self.delay).min(first + MAX_DEBOUNCE_DELAY));
    }

    /// The rescan is starting: the burst is over.
    pub(crate) fn fired(&mut self) {
        self.due = None;
        self.burst_started = None;
    }

    /// After a pass at `now`: look again after the delay if a file was still being written;
    /// then take the delay of the configuration now in force (it applies from the next event).
    pub(crate) fn after_pass(&mut self, unsettled: bool, now: Instant, delay: Duration) {
        if unsettled {
            self.due = Some(now + self.delay);
        }
        self.delay = delay;
    }

    /// When the next rescan is due, if one is.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.due
    }
}

/// What the task starts from: the reloader after the first pass, and the watch.
#[derive(Debug)]
pub(crate) struct Startup {
    reloader: Reloader,
    watching: Option<Watching>,
    unsettled: bool,
}

/// Starts watching (when configured) and runs the first pass, off the runtime's workers.
/// The watch comes first, so no change between the scan and the watch is missed. Gives the
/// task's starting point, and the first configuration and table to serve.
pub(crate) async fn start(
    config: Config,
    counters: Arc<PluginCounters>,
) -> Result<(Startup, Arc<Config>, RouteTable), String> {
    let first = tokio::task::spawn_blocking(move || {
        let watching = dirwatch::start(&config);
        let mut reloader = Reloader::with_counters(Arc::new(config), counters);
        let first = reloader.pass();
        (Startup { reloader, watching, unsettled: first.unsettled }, first.config, first.table)
    });
    first.await.map_err(|e| format!("the first scan of the handler directory failed: {e}"))
}

/// Runs the reload task until `stopped` changes. Without a `source`, SIGHUP only rescans
/// the handler directory.
pub(crate) async fn run(
    state: Arc<ServerState>,
    startup: Startup,
    source: Option<ConfigSource>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut task = ReloadTask::new(state, startup, source);
    loop {
        match task.next_wake(&mut stopped).await {
            Wake::FileEvent => task.debounce.event(Instant::now()),
            Wake::WatchEnded => task.watching = None,
            Wake::Nothing => {}
            Wake::RescanDue => {
                task.debounce.fired();
                if task.rescan().await.is_none() {
                    return;
                }
            }
            Wake::Hangup => {
                if task.hangup().await.is_none() {
                    return;
                }
            }
            Wake::Stop => return,
        }
    }
}

/// Why the task woke up.
enum Wake {
    /// A relevant file event.
    FileEvent,
    /// The watch's channel closed.
    WatchEnded,
    /// The debounce delay is over.
    RescanDue,
    /// SIGHUP.
    Hangup,
    /// The signal stream yielded nothing.
    Nothing,
    /// The server stops.
    Stop,
}

/// What a pass tells the task.
struct PassReport {
    unsettled: bool,
    debounce: Duration,
}

struct ReloadTask {
    state: Arc<ServerState>,
    /// Used only on the blocking pool, one job at a time.
    reloader: Arc<Mutex<Reloader>>,
    watching: Option<Watching>,
    source: Option<ConfigSource>,
    debounce: Debounce,
    hangups: Hangups,
}

impl ReloadTask {
    fn new(state: Arc<ServerState>, startup: Startup, source: Option<ConfigSource>) -> ReloadTask {
        let Startup { reloader, watching, unsettled } = startup;
        let debounce = Debounce::new(reloader.config().handlers_debounce, unsettled, Instant::now());
        let reloader = Arc::new(Mutex::new(reloader));
        ReloadTask { state, reloader, watching, source, debounce, hangups: Hangups::listen() }
    }

    /// Waits for the next file event, rescan, signal or stop.
    async fn next_wake(&mut self, stopped: &mut watch::Receiver<bool>) -> Wake {
        let ReloadTask { watching, hangups, debounce, .. } = self;
        let file_event = async {
            match watching.as_mut() {
                Some((_, events)) => events.recv().await,
                None => std::future::pending().await,
            }
        };
        let due = debounce.due();
        let rescan_due = async move {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = file_event => if event.is_some() { Wake::FileEvent } else { Wake::WatchEnded },
            () = rescan_due => Wake::RescanDue,
            signal = hangups.recv() => if signal.is_some() { Wake::Hangup } else { Wake::Nothing },
            _ = stopped.changed() => Wake::Stop,
        }
    }

    /// Rescans the handler directory and publishes the result. `None`: the pass failed
    /// (panicked) and hot reload stops.
    async fn rescan(&mut self) -> Option<()> {
        let (state, reloader) = (Arc::clone(&self.state), Arc::clone(&self.reloader));
        let report = off_runtime(move || publish_pass(&state, &mut lock(&reloader))).await?;
        self.debounce.after_pass(report.unsettled, Instant::now(), report.debounce);
        Some(())
    }

    /// SIGHUP: re-reads the configuration (TLS and the watch follow it), rescans and
    /// publishes. `None`: the pass failed (panicked) and hot reload stops.
    async fn hangup(&mut self) -> Option<()> {
        tracing::info!("SIGHUP: reloading the configuration and the handler directory");
        let (state, reloader) = (Arc::clone(&self.state), Arc::clone(&self.reloader));
        let (source, watching) = (self.source.clone(), self.watching.take());
        let (watching, report) = off_runtime(move || {
            let mut reloader = lock(&reloader);
            let watching = match &source {
                Some(source) => sighup::reload_config(&state, &mut reloader, source, watching),
                None => watching,
            };
            (watching, publish_pass(&state, &mut reloader))
        })
        .await?;
        self.watching = watching;
        self.debounce.after_pass(report.unsettled, Instant::now(), report.debounce);
        Some(())
    }
}

/// Runs a pass and publishes its configuration and table. Blocks.
fn publish_pass(state: &ServerState, reloader: &mut Reloader) -> PassReport {
    let outcome = reloader.pass();
    let report = PassReport { unsettled: outcome.unsettled, debounce: outcome.config.handlers_debounce };
    let routes = outcome.table.routes().len();
    state.publish(outcome.config, outcome.table);
    tracing::debug!(routes, "route table published");
    report
}

fn lock(reloader: &Mutex<Reloader>) -> MutexGuard<'_, Reloader> {
    reloader.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs blocking reload work on tokio's blocking pool. `None` (logged) if it panicked.
async fn off_runtime<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(job).await {
        Ok(done) => Some(done),
        Err(e) => {
            tracing::error!("handler reload failed: {e}; hot reload stops (restart wshd to resume it)");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_burst_is_debounced_but_not_forever() {
        let t0 = Instant::now();
        let mut debounce = Debounce::new(100 * MS, false, t0);
        assert_eq!(debounce.due(), None);
        debounce.event(t0);
        assert_eq!(debounce.due(), Some(t0 + 100 * MS));
        debounce.event(t0 + 50 * MS);
        assert_eq!(debounce.due(), Some(t0 + 150 * MS), "each event restarts the quiet period");
        debounce.event(t0 + 1950 * MS);
        assert_eq!(debounce.due(), Some(t0 + MAX_DEBOUNCE_DELAY), "at most 2 s after the first event");
        debounce.fired();
        assert_eq!(debounce.due(), None);
        debounce.event(t0 + 3000 * MS);
        assert_eq!(debounce.due(), Some(t0 + 3100 * MS), "a new burst");
    }

    #[test]
    fn an_unsettled_file_is_looked_at_again_after_the_old_delay() {
        let t0 = Instant::now();
        let mut debounce = Debounce::new(100 * MS, true, t0);
        assert_eq!(debounce.due(), Some(t0 + 100 * MS), "the first pass left a file unsettled");
        debounce.fired();
        debounce.after_pass(false, t0 + 200 * MS, 100 * MS);
        assert_eq!(debounce.due(), None);
        // SIGHUP changed the delay to 500 ms: the retry keeps the delay in force until then.
        debounce.after_pass(true, t0 + 300 * MS, 500 * MS);
        assert_eq!(debounce.due(), Some(t0 + 400 * MS));
        debounce.fired();
        debounce.event(t0 + 1000 * MS);
        assert_eq!(debounce.due(), Some(t0 + 1500 * MS), "later events use the new delay");
    }
}
