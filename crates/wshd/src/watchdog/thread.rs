//! The watchdog thread: one per process, outside the runtime. Every [`TICK`] it looks at
//! every slot, times the calls into handler code, logs and counts the blocked ones, and
//! nudges the runtime so a parked worker takes over the I/O driver a blocked worker may hold
//! (see `docs/decisions/0011-blocked-handlers.md`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::runtime::Handle;

use super::busy::{self, observe};
use super::episode::{Episode, Event, step};
use super::slot::{MAX_THREADS, RouteNames, monotonic_ms};
use super::storage::storage;
use crate::config::WatchdogSettings;
use crate::metrics::Metrics;

/// How often the watchdog looks at the slots.
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// `[watchdog] unhealthy_after_secs` in ms, as the running watchdog uses it (the default
/// until [`start`]).
static UNHEALTHY_AFTER_MS: AtomicU64 = AtomicU64::new(5_000);
/// Set once the thread runs.
static STARTED: OnceLock<()> = OnceLock::new();

/// Starts the watchdog thread of this process, nudging the runtime of `handle` and counting
/// into `metrics`. Only the first call starts it (one per process; later calls return
/// `false`). The settings are read once, here.
pub(crate) fn start(handle: Handle, settings: WatchdogSettings, metrics: Arc<Metrics>) -> bool {
    if STARTED.set(()).is_err() {
        return false;
    }
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    UNHEALTHY_AFTER_MS.store(millis(settings.unhealthy_after), Ordering::Relaxed);
    let warn_ms = millis(settings.blocked_warn);
    let spawned = std::thread::Builder::new()
        .name("wshd-watchdog".into())
        .spawn(move || run(&handle, warn_ms, &metrics));
    if let Err(e) = spawned {
        tracing::error!("cannot start the watchdog thread: {e}; blocked handlers go unnoticed");
        return false;
    }
    tracing::debug!(tick_ms = TICK.as_millis() as u64, warn_ms, "watchdog started");
    true
}

/// Why this process is unhealthy now (a handler call past `[watchdog]
/// unhealthy_after_secs`), for `/healthz`; see [`busy::unhealthy`].
pub(crate) fn health_report() -> Option<String> {
    let tables = storage();
    busy::unhealthy(tables.slots, tables.names, monotonic_ms(), UNHEALTHY_AFTER_MS.load(Ordering::Relaxed))
}

/// The thread's loop: never returns (the thread ends with the process).
fn run(handle: &Handle, warn_ms: u64, metrics: &Metrics) {
    let tables = storage();
    let tick_ms = TICK.as_millis() as u64;
    let mut episodes: [Option<Episode>; MAX_THREADS] = [None; MAX_THREADS];
    let mut blocked_before = 0;
    loop {
        std::thread::sleep(TICK);
        let now = monotonic_ms();
        let mut stuck = false;
        let mut blocked = 0;
        for (index, (slot, episode)) in tables.slots.iter().zip(episodes.iter_mut()).enumerate() {
            let busy = observe(slot, now);
            stuck |= busy.is_some_and(|b| now.saturating_sub(b.since_ms) >= tick_ms);
            let (next, event) = step(*episode, busy, now, warn_ms);
            *episode = next;
            blocked += usize::from(next.is_some_and(|e| e.warned_ms.is_some()));
            if let Some(event) = event {
                report(event, index, tables.names, metrics);
            }
        }
        if blocked != blocked_before {
            metrics.set_blocked_threads(blocked);
            blocked_before = blocked;
        }
        if stuck {
            // A thread has been inside one handler call for over a tick. If it was the
            // worker parked in the I/O driver, no other worker polls the driver until it
            // returns (tokio wakes a sibling only for a second runnable task). A task spawned
            // from outside the runtime goes through the inject queue and unparks a parked
            // worker, which then parks in the free driver itself.
            drop(handle.spawn(async {}));
        }
    }
}

/// Logs and counts one event of slot `index`.
fn report(event: Event, index: usize, names: &RouteNames, metrics: &Metrics) {
    let named = |route: u32| names.get(route).unwrap_or_else(|| ("(unknown route)".into(), "?".into()));
    match event {
        Event::Blocked { route, held_ms } => {
            let (route, file) = named(route);
            metrics.handler_blocked(&route);
            tracing::warn!(
                %route, %file, thread = index, held_ms,
                "handler blocked its thread for {held_ms} ms (blocking code in a handler stalls the tasks \
                 queued behind it; await instead, or move the work off the runtime)"
            );
        }
        Event::StillBlocked { route, held_ms } => {
            let (route, file) = named(route);
            tracing::warn!(%route, %file, thread = index, held_ms, "handler still blocked after {held_ms} ms");
        }
        Event::Unblocked { route, held_ms } => {
            let (route, file) = named(route);
            tracing::info!(%route, %file, thread = index, held_ms, "handler unblocked after {held_ms} ms");
        }
    }
}
