//! The master's side of the quarantine: each worker death by a signal (or a stuck kill)
//! counts against the routes whose handler code was running ([`CrashLedger`]); a route that
//! reaches `[workers] quarantine_after_crashes` within `quarantine_window_secs` is listed in
//! the scoreboard's [`QuarantineTable`], where every worker sees it (503 at the handshake).
//! The entry keeps its plugin file's [`fingerprint`]; when the file on disk changes (a new
//! build, or the file is gone), the quarantine is lifted.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::crashes::{CrashLedger, fingerprint};
use super::fleet_metrics::FleetMetrics;
use crate::config::WorkerSettings;
use crate::scoreboard::quarantine::QuarantineTable;
use crate::scoreboard::slot::monotonic_ms;

/// How often the quarantined plugin files are looked at on disk.
const LIFT_CHECK: Duration = Duration::from_millis(300);

/// The master's quarantine decisions.
#[derive(Debug)]
pub(crate) struct Quarantine {
    /// Crashes per route; `None` when quarantining is off (`quarantine_after_crashes = 0`).
    ledger: Option<CrashLedger>,
    /// Crashes that quarantine a route.
    limit: u32,
    /// The window they count in.
    window: Duration,
    /// The table the workers read.
    table: &'static QuarantineTable,
    /// `wshd_route_quarantines_total`, `wshd_routes_quarantined`.
    metrics: Arc<FleetMetrics>,
    /// When the plugin files are looked at next.
    next_check: Instant,
}

impl Quarantine {
    /// The quarantine of `settings` (`[workers]`), listing routes in `table`.
    pub(crate) fn new(
        settings: &WorkerSettings,
        table: &'static QuarantineTable,
        metrics: Arc<FleetMetrics>,
    ) -> Quarantine {
        let (limit, window) = (settings.quarantine_after_crashes, settings.quarantine_window);
        let ledger = (limit > 0).then(|| CrashLedger::new(limit, window.as_millis() as u64));
        Quarantine { ledger, limit, window, table, metrics, next_check: Instant::now() }
    }

    /// A worker died (a signal, or killed as stuck) while the handler code of `routes`
    /// (path, plugin file) was running: counts one crash for each, and quarantines those
    /// that reached the limit within the window.
    pub(crate) fn crashed(&mut self, routes: &[(String, String)]) {
        let Some(ledger) = self.ledger.as_mut() else { return };
        let now = monotonic_ms();
        let tripped: Vec<&(String, String)> =
            routes.iter().filter(|(path, _)| ledger.record(path, now)).collect();
        for (path, file) in tripped {
            if !self.table.contains(path) {
                self.quarantine(path, file);
            }
        }
    }

    /// Lists `path` (served by `file`) in the table, logs and counts it.
    fn quarantine(&self, path: &str, file: &str) {
        let (limit, window) = (self.limit, self.window.as_secs());
        let Some(print) = (!file.is_empty()).then(|| fingerprint(Path::new(file))).flatten() else {
            tracing::warn!(
                route = path,
                file,
                "route {path} crashed {limit} workers within {window}s but is not quarantined: \
                 its plugin file ({file}) cannot be read, so a new build could not be told apart"
            );
            return;
        };
        if !self.table.add(path, file, print) {
            tracing::error!(
                route = path,
                "route {path} crashed {limit} workers within {window}s; the quarantine table is full"
            );
            return;
        }
        self.metrics.quarantined(path, self.table.list().len());
        tracing::error!(
            route = path,
            file,
            crashes = limit,
            window_secs = window,
            "route {path} quarantined: its handler code was running when {limit} workers died within \
             {window}s (plugin file {file}); new connections to it are answered 503 until its plugin file changes"
        );
    }

    /// Lifts the quarantines whose plugin file changed on disk since (a new build, or the
    /// file is gone); looks at most every [`LIFT_CHECK`].
    pub(crate) fn lift_changed(&mut self) {
        let now = Instant::now();
        if now < self.next_check {
            return;
        }
        self.next_check = now + LIFT_CHECK;
        let listed = self.table.list();
        let mut lifted = 0;
        for entry in &listed {
            if fingerprint(Path::new(&entry.file)) == Some(entry.fingerprint) {
                continue;
            }
            self.table.lift(entry.index);
            lifted += 1;
            tracing::info!(
                route = %entry.path,
                file = %entry.file,
                "quarantine of {} lifted: its plugin file changed ({})",
                entry.path,
                entry.file
            );
        }
        if lifted > 0 {
            self.metrics.quarantines_in_force(listed.len() - lifted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoreboard::slot::leak_zeroed;

    fn settings(limit: u32) -> WorkerSettings {
        WorkerSettings { quarantine_after_crashes: limit, ..crate::Config::default().workers }
    }

    #[test]
    fn the_third_crash_quarantines_and_a_new_file_lifts_it() {
        let dir = std::env::temp_dir().join(format!("wshd-q-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let file = dir.join("bad_wsh.so");
        std::fs::write(&file, b"one").unwrap_or_else(|e| panic!("{e}"));
        let table = leak_zeroed::<QuarantineTable>();
        let metrics = Arc::new(FleetMetrics::default());
        let mut quarantine = Quarantine::new(&settings(3), table, Arc::clone(&metrics));
        let routes = vec![("/bad".to_owned(), file.display().to_string())];
        quarantine.crashed(&routes);
        quarantine.crashed(&routes);
        assert!(!table.contains("/bad"));
        quarantine.crashed(&routes);
        assert!(table.contains("/bad"));
        assert!(metrics.encode().contains("wshd_routes_quarantined 1"));
        quarantine.lift_changed();
        assert!(table.contains("/bad"), "the same file");
        std::fs::write(dir.join("new"), b"two!").unwrap_or_else(|e| panic!("{e}"));
        std::fs::rename(dir.join("new"), &file).unwrap_or_else(|e| panic!("{e}"));
        quarantine.next_check = Instant::now();
        quarantine.lift_changed();
        assert!(!table.contains("/bad"));
        assert!(metrics.encode().contains("wshd_routes_quarantined 0"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn zero_never_quarantines_and_an_unreadable_file_is_not_quarantined() {
        let table = leak_zeroed::<QuarantineTable>();
        let metrics = Arc::new(FleetMetrics::default());
        let routes = vec![("/bad".to_owned(), "/nonexistent/bad_wsh.so".to_owned())];
        let mut never = Quarantine::new(&settings(0), table, Arc::clone(&metrics));
        let mut once = Quarantine::new(&settings(1), table, metrics);
        for _ in 0..5 {
            never.crashed(&routes);
            once.crashed(&routes);
        }
        assert!(table.list().is_empty());
    }
}
