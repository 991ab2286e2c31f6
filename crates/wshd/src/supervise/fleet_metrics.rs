//! The master's own metrics: what happened to its workers and routes. The master adds them
//! to the sum of its workers' expositions at each `/metrics` scrape
//! ([`super::exposition::merge`]).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabel {
    cause: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

/// Why a worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitCause {
    /// Killed by a signal it did not ask for (a crash: SIGSEGV, SIGABRT, …, or SIGKILL from
    /// outside).
    Signal,
    /// Exited on its own with a failure status.
    Failed,
    /// Killed by the master: its heartbeat stopped or a handler held a thread too long.
    Unresponsive,
    /// Drained and replaced by the master (recycling), or stopped at shutdown.
    Stopped,
}

impl ExitCause {
    /// The `cause` label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            ExitCause::Signal => "signal",
            ExitCause::Failed => "failed",
            ExitCause::Unresponsive => "unresponsive",
            ExitCause::Stopped => "stopped",
        }
    }
}

/// The master's counters.
#[derive(Debug)]
pub(crate) struct FleetMetrics {
    registry: Registry,
    running: Gauge,
    exits: Family<CauseLabel, Counter>,
    started: Counter,
    crashes: Family<RouteLabel, Counter>,
    quarantines: Family<RouteLabel, Counter>,
    quarantined: Gauge,
    recycles: Family<CauseLabel, Counter>,
    scrape_misses: Counter,
    relay_forwarded: Counter,
    relay_undeliverable: Counter,
}

impl Default for FleetMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let m = FleetMetrics {
            running: Gauge::default(),
            exits: Family::default(),
            started: Counter::default(),
            crashes: Family::default(),
            quarantines: Family::default(),
            quarantined: Gauge::default(),
            recycles: Family::default(),
            scrape_misses: Counter::default(),
            relay_forwarded: Counter::default(),
            relay_undeliverable: Counter::default(),
            registry: Registry::default(),
        };
        registry.register("wshd_workers", "Worker processes running", m.running.clone());
        registry.register(
            "wshd_worker_starts",
            "Worker processes started (first start and replacements)",
            m.started.clone(),
        );
        registry.register("wshd_worker_exits", "Worker processes ended, by cause", m.exits.clone());
        registry.register(
            "wshd_worker_crashes",
            "Worker processes taken down while this route's handler code was running",
            m.crashes.clone(),
        );
        registry.register("wshd_route_quarantines", "Times a route was quarantined", m.quarantines.clone());
        registry.register(
            "wshd_routes_quarantined",
            "Routes quarantined now (answered 503)",
            m.quarantined.clone(),
        );
        registry.register(
            "wshd_worker_recycles",
            "Workers drained and replaced, by reason",
            m.recycles.clone(),
        );
        registry.register(
            "wshd_worker_scrape_misses",
            "Workers that did not answer a /metrics scrape in time (their figures are missing from it)",
            m.scrape_misses.clone(),
        );
        registry.register(
            "wshd_room_relay_forwarded",
            "Rooms relay messages the master sent to workers (joins, leaves, publishes, send_to, snapshots)",
            m.relay_forwarded.clone(),
        );
        registry.register(
            "wshd_room_relay_undeliverable",
            "send_to messages the master dropped: no worker has the recipient's node id",
            m.relay_undeliverable.clone(),
        );
        registry.register_collector(Box::new(crate::metrics::broker::BrokerCollector));
        FleetMetrics { registry, ..m }
    }
}

impl FleetMetrics {
    /// Sets the number of running workers.
    pub(crate) fn set_running(&self, n: usize) {
        self.running.set(n as i64);
    }

    /// Counts a worker start.
    pub(crate) fn started(&self) {
        self.started.inc();
    }

    /// Counts a worker's end.
    pub(crate) fn exited(&self, cause: ExitCause) {
        self.exits.get_or_create(&CauseLabel { cause: cause.label() }).inc();
    }

    /// Counts a worker lost while `route`'s handler was running.
    pub(crate) fn crashed_in(&self, route: &str) {
        self.crashes.get_or_create(&RouteLabel { route: route.to_owned() }).inc();
    }

    /// Counts a quarantine of `route`, and sets how many are in force.
    pub(crate) fn quarantined(&self, route: &str, in_force: usize) {
        self.quarantines.get_or_create(&RouteLabel { route: route.to_owned() }).inc();
        self.quarantined.set(in_force as i64);
    }

    /// Sets how many quarantines are in force (after one is lifted).
    pub(crate) fn quarantines_in_force(&self, in_force: usize) {
        self.quarantined.set(in_force as i64);
    }

    /// Counts a recycling (`reason`: "memory" or "connections").
    pub(crate) fn recycled(&self, reason: &'static str) {
        self.recycles.get_or_create(&CauseLabel { cause: reason }).inc();
    }

    /// Counts workers that missed a scrape.
    pub(crate) fn scrape_missed(&self, n: usize) {
        self.scrape_misses.inc_by(n as u64);
    }

    /// Counts `n` rooms relay messages sent to workers.
    pub(crate) fn relay_forwarded(&self, n: usize) {
        self.relay_forwarded.inc_by(n as u64);
    }

    /// Counts a `send_to` no worker could take.
    pub(crate) fn relay_undeliverable(&self) {
        self.relay_undeliverable.inc();
    }

    /// The OpenMetrics text.
    pub(crate) fn encode(&self) -> String {
        crate::metrics::encode_registry(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_master_counts_merge_with_a_workers_text() {
        let fleet = FleetMetrics::default();
        fleet.set_running(2);
        fleet.started();
        fleet.exited(ExitCause::Signal);
        fleet.crashed_in("/bad");
        fleet.quarantined("/bad", 1);
        fleet.recycled("memory");
        let text = fleet.encode();
        for line in [
            "wshd_workers 2",
            "wshd_worker_exits_total{cause=\"signal\"} 1",
            "wshd_worker_crashes_total{route=\"/bad\"} 1",
            "wshd_route_quarantines_total{route=\"/bad\"} 1",
            "wshd_routes_quarantined 1",
            "wshd_worker_recycles_total{cause=\"memory\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        let merged = super::super::exposition::merge(&text, &["# EOF\n"]);
        assert_eq!(merged.stats.bad_lines, 0, "{}", merged.text);
        assert!(merged.text.contains("wshd_workers 2"));
    }
}
