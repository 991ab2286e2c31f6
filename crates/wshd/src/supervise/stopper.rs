//! SIGTERM, SIGINT and SIGHUP in a serving process (a worker, or the single process): taken
//! on a dedicated thread with `sigwait`, never only through the async runtime, because a
//! spinning handler can hold every runtime thread (and because tokio's signal driver is kept
//! out of the build: see `crate::child`). The first SIGTERM/SIGINT asks the runtime to drain
//! and arms a deadline; a process still alive at the deadline, or a second one, exits at once.
//! A SIGHUP is passed to the reload task ([`crate::reload::hangup`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};
use tokio::sync::mpsc;

/// What the deadline adds to the drain window before the process exits regardless.
pub(crate) const DEADLINE_MARGIN: Duration = Duration::from_secs(2);

/// Set when the first SIGTERM/SIGINT arrived.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Whether this process has been told to stop.
pub(crate) fn stopping() -> bool {
    STOPPING.load(Ordering::Acquire)
}

/// Reads the drain window in force (the configuration may have been reloaded).
pub(crate) type GraceSource = Box<dyn Fn() -> Duration + Send>;
/// Says what is still running, for the deadline's log line.
pub(crate) type Describe = Box<dyn Fn() -> String + Send>;

/// What the signal thread reads when a signal comes.
struct Shared {
    /// The drain window.
    grace: GraceSource,
    /// What is still running.
    describe: Describe,
}

/// The runtime's end: the signals, one name at a time.
pub struct Stopper {
    /// Signal names from the thread.
    signals: mpsc::UnboundedReceiver<&'static str>,
    /// Shared with the thread.
    shared: Arc<Mutex<Shared>>,
}

impl std::fmt::Debug for Stopper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stopper").finish_non_exhaustive()
    }
}

/// SIGTERM, SIGINT and SIGHUP.
fn mask() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGHUP);
    set
}

impl Stopper {
    /// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (call it on the main thread before any
    /// other thread starts, so every later thread inherits the mask) and starts the thread
    /// that waits for them. `grace` is the drain window until the server has started.
    pub fn start(grace: Duration) -> std::io::Result<Stopper> {
        mask().thread_block()?;
        // A worker starts with SIGHUP ignored (`spawn.rs`), and an ignored disposition
        // survives exec: reset it, so that programs this process runs (CGI scripts) start with
        // the default. Blocked here and in every later thread, it only reaches `sigwait`.
        reset_hangup_disposition()?;
        let shared = Arc::new(Mutex::new(Shared {
            grace: Box::new(move || grace),
            describe: Box::new(|| "unknown".to_owned()),
        }));
        let (tx, signals) = mpsc::unbounded_channel();
        let _ = REQUESTS.set(Requests { tx: tx.clone(), shared: Arc::clone(&shared) });
        let for_thread = Arc::clone(&shared);
        std::thread::Builder::new().name("wshd-signals".into()).spawn(move || wait_loop(&tx, &for_thread))?;
        Ok(Stopper { signals, shared })
    }

    /// Where the deadline reads the drain window and what is still running from now on.
    pub(crate) fn set_sources(&self, grace: GraceSource, describe: Describe) {
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        *shared = Shared { grace, describe };
    }

    /// The first signal's name (later ones are handled on the signal thread).
    pub async fn next(&mut self) -> &'static str {
        match self.signals.recv().await {
            Some(name) => name,
            None => std::future::pending().await,
        }
    }
}

/// Sets SIGHUP's disposition back to the default.
#[allow(unsafe_code)]
fn reset_hangup_disposition() -> std::io::Result<()> {
    // SAFETY: the default disposition installs no handler code.
    unsafe { nix::sys::signal::signal(Signal::SIGHUP, nix::sys::signal::SigHandler::SigDfl) }?;
    Ok(())
}

/// What [`request_stop`] needs: the runtime's channel and the deadline's sources.
struct Requests {
    /// To the runtime.
    tx: mpsc::UnboundedSender<&'static str>,
    /// The drain window and what is running.
    shared: Arc<Mutex<Shared>>,
}

/// Set by [`Stopper::start`].
static REQUESTS: std::sync::OnceLock<Requests> = std::sync::OnceLock::new();

/// Starts the shutdown from inside the process (the master is gone), as a first signal
/// would, without counting as one: a SIGTERM arriving just after (the parent-death signal)
/// does not make it "the second signal".
pub(crate) fn request_stop(reason: &'static str) {
    if let Some(requests) = REQUESTS.get() {
        begin(reason, &requests.tx, &requests.shared);
    }
}

/// The first stop, whatever asked for it (once): tell the runtime and arm the deadline.
fn begin(name: &'static str, tx: &mpsc::UnboundedSender<&'static str>, shared: &Arc<Mutex<Shared>>) {
    if STOPPING.swap(true, Ordering::AcqRel) {
        return;
    }
    let _ = tx.send(name);
    let grace = (shared.lock().unwrap_or_else(|p| p.into_inner()).grace)();
    let shared = Arc::clone(shared);
    let armed = std::thread::Builder::new()
        .name("wshd-deadline".into())
        .spawn(move || deadline(grace + DEADLINE_MARGIN, &shared));
    if let Err(e) = armed {
        tracing::error!("cannot arm the shutdown deadline: {e}");
    }
}

/// The signal thread: a SIGHUP goes to the reload task; the first SIGTERM/SIGINT starts the
/// stop (see [`begin`]); the second exits at once.
fn wait_loop(tx: &mpsc::UnboundedSender<&'static str>, shared: &Arc<Mutex<Shared>>) {
    let set = mask();
    let mut seen = 0;
    loop {
        let Ok(signal) = set.wait() else { continue };
        if signal == Signal::SIGHUP {
            crate::reload::hangup();
            continue;
        }
        let name = signal.as_str();
        seen += 1;
        if seen > 1 {
            tracing::warn!(signal = name, "second signal: exiting without waiting for the drain");
            std::process::exit(1);
        }
        begin(name, tx, shared);
    }
}

/// Exits the process if it is still alive `after` the first signal.
fn deadline(after: Duration, shared: &Mutex<Shared>) {
    std::thread::sleep(after);
    let running = (shared.lock().unwrap_or_else(|p| p.into_inner()).describe)();
    tracing::error!(
        still_running = %running,
        "shutdown did not finish {after:?} after the signal (handler code holding the runtime?); exiting now"
    );
    std::process::exit(1);
}
