//! Prometheus metrics (OpenMetrics text on the admin listener's `/metrics`) and the
//! connection limits, which share the per-route open-connection counts.
//!
//! The hot path stays cheap: a connection resolves its route's [`RouteMetrics`] once, at the
//! handshake; per message it only updates its own counts ([`traffic`]), which a scrape sums
//! per route. No label map is consulted per message. See `docs/decisions/0004-metrics.md`.

pub(crate) mod broker;
pub(crate) mod rooms;
pub(crate) mod traffic;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use self::traffic::{RouteTraffic, Totals};
use crate::scoreboard::Local;
use crate::scoreboard::counts::{ConnectionCounts, Refused, route_key};
use crate::scoreboard::slot::leak_zeroed;

/// The `route` label value of requests that matched no route.
pub(crate) const NO_ROUTE: &str = "none";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabel {
    http: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    route: String,
    direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabels {
    route: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseLabels {
    route: String,
    code: String,
    initiator: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The pending-connection gauge and shed counter (kept by the pending-connection registry).
#[derive(Debug, Clone, Default)]
pub(crate) struct PendingMetrics {
    pending: Gauge,
    shed: Family<ReasonLabel, Counter>,
}

impl PendingMetrics {
    /// Sets the number of pending connections.
    pub(crate) fn set_pending(&self, n: usize) {
        self.pending.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Counts `n` connections shed for `reason` (the label value).
    pub(crate) fn shed(&self, reason: &'static str, n: usize) {
        if n > 0 {
            self.shed.get_or_create(&ReasonLabel { reason }).inc_by(n as u64);
        }
    }
}

type HistogramFamily = Family<RouteLabel, Histogram, fn() -> Histogram>;

fn handshake_histogram() -> Histogram {
    Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])
}

/// Every metric of a server, and the connection counts behind the limits.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    open: Family<RouteLabel, Gauge>,
    opened: Family<RouteLabel, Counter>,
    handshakes: Family<HandshakeLabels, Counter>,
    /// Sessions started, by the HTTP version of their handshake.
    sessions: Family<HttpLabel, Counter>,
    closes: Family<CloseLabels, Counter>,
    panics: Family<RouteLabel, Counter>,
    handshake_seconds: HistogramFamily,
    draining: Gauge,
    /// Handler calls that held their thread past `[watchdog] blocked_warn_ms`, per route.
    blocked: Family<RouteLabel, Counter>,
    /// Threads inside such a call now.
    blocked_threads: Gauge,
    /// Connections in their handshake, and those shed.
    pending: PendingMetrics,
    /// Shared with the [`TrafficCollector`].
    routes: Arc<Mutex<HashMap<String, Arc<RouteMetrics>>>>,
    /// Plugin loads and refusals, counted by the reloader.
    plugins: Arc<PluginCounters>,
    /// Open WebSocket connections, server-wide (shared with the other worker processes).
    counts: &'static ConnectionCounts,
    /// This process's worker index in `counts`.
    worker: usize,
    /// Connections admitted over this process's life (a worker's scoreboard cell).
    accepted: &'static AtomicU64,
}

/// One route's counters, resolved once per connection.
#[derive(Debug)]
pub(crate) struct RouteMetrics {
    /// The route path (the `route` label).
    pub(crate) route: String,
    /// The route's key in the server-wide connection counts.
    count_key: u64,
    open: Gauge,
    opened: Counter,
    /// Messages, bytes and delivery latency, kept per connection (see [`traffic`]).
    pub(crate) traffic: Arc<RouteTraffic>,
    pub(crate) panics: Counter,
    pub(crate) handshake_seconds: Histogram,
}

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitHit {
    /// `[server] max_connections`.
    Global(usize),
    /// The route's `max_connections`.
    Route(usize),
}

/// An open connection's place in the counts; given back on drop.
#[derive(Debug)]
pub(crate) struct ConnSlot {
    route: Arc<RouteMetrics>,
    metrics: Arc<Metrics>,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.metrics.counts.close(self.metrics.worker, self.route.count_key);
        self.route.open.dec();
    }
}

/// Messages, bytes and delivery latency per route, summed over each route's connections at
/// each scrape (see [`traffic`]).
#[derive(Debug)]
struct TrafficCollector {
    routes: Arc<Mutex<HashMap<String, Arc<RouteMetrics>>>>,
}

impl Collector for TrafficCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut routes: Vec<(String, Totals)> = {
            let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
            routes.iter().map(|(name, route)| (name.clone(), route.traffic.totals())).collect()
        };
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        let per_direction =
            |name: &str, help: &str, count: fn(&Totals) -> (u64, u64), encoder: &mut DescriptorEncoder| {
                let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
                for (route, totals) in &routes {
                    let (received, sent) = count(totals);
                    for (direction, value) in [("in", received), ("out", sent)] {
                        let labels = DirectionLabels { route: route.clone(), direction };
                        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
                    }
                }
                Ok::<(), std::fmt::Error>(())
            };
        per_direction(
            "wshd_messages",
            "Data messages (text and binary) received and sent",
            |t| (t.messages_in, t.messages_out),
            &mut encoder,
        )?;
        per_direction(
            "wshd_message_bytes",
            "Payload bytes of data messages received (after decompression) and sent (before compression)",
            |t| (t.bytes_in, t.bytes_out),
            &mut encoder,
        )?;
        let mut family = encoder.encode_descriptor(
            "wshd_message_delivery_seconds",
            "Time from a message's arrival to the handler taking it (queueing and scheduling)",
            None,
            Histogram::TYPE,
        )?;
        for (route, totals) in &routes {
            let (sum, count, buckets) = totals.delivery_histogram();
            family
                .encode_family(&RouteLabel { route: route.clone() })?
                .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        }
        Ok(())
    }
}

/// Plugin loads and refusals since start, pushed by the reloader as it loads or refuses a
/// file; read at each scrape.
#[derive(Debug, Default)]
pub(crate) struct PluginCounters {
    loads: AtomicU64,
    refusals: AtomicU64,
}

impl PluginCounters {
    /// Counts a successful load (every generation).
    pub(crate) fn loaded(&self) {
        self.loads.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refused handler file.
    pub(crate) fn refused(&self) {
        self.refusals.fetch_add(1, Ordering::Relaxed);
    }

    /// Loads so far.
    pub(crate) fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    /// Refusals so far.
    pub(crate) fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }
}

/// The plugin metrics: the counters the reloader pushes, and the number of libraries mapped
/// now, read from its source at each scrape.
#[derive(Debug)]
struct PluginCollector {
    counters: Arc<PluginCounters>,
    live_generations: fn() -> u64,
}

impl Collector for PluginCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let loads = ConstCounter::new(self.counters.loads());
        loads.encode(encoder.encode_descriptor(
            "wshd_plugin_loads",
            "Handler plugins loaded (every generation) since start",
            None,
            loads.metric_type(),
        )?)?;
        let refusals = ConstCounter::new(self.counters.refusals());
        refusals.encode(encoder.encode_descriptor(
            "wshd_plugin_refusals",
            "Handler plugin files refused since start",
            None,
            refusals.metric_type(),
        )?)?;
        let live = ConstGauge::new(i64::try_from((self.live_generations)()).unwrap_or(i64::MAX));
        live.encode(encoder.encode_descriptor(
            "wshd_plugin_live_generations",
            "Handler libraries mapped now (current generations and old ones still serving connections)",
            None,
            live.metric_type(),
        )?)?;
        Ok(())
    }
}

impl Metrics {
    /// A fresh set of metrics; `live_generations` tells how many handler libraries are
    /// mapped now (read at each scrape).
    pub(crate) fn new(live_generations: fn() -> u64) -> Metrics {
        let mut registry = Registry::default();
        let open = Family::<RouteLabel, Gauge>::default();
        let opened = Family::<RouteLabel, Counter>::default();
        let handshakes = Family::<HandshakeLabels, Counter>::default();
        let closes = Family::<CloseLabels, Counter>::default();
        let panics = Family::<RouteLabel, Counter>::default();
        let handshake_seconds =
            HistogramFamily::new_with_constructor(handshake_histogram as fn() -> Histogram);
        let draining = Gauge::default();
        registry.register("wshd_connections_open", "Open WebSocket connections", open.clone());
        registry.register("wshd_connections", "WebSocket connections accepted", opened.clone());
        registry.register(
            "wshd_handshakes",
            "WebSocket handshake attempts by answer status (aborted: dropped by the handler)",
            handshakes.clone(),
        );
        let sessions = Family::<HttpLabel, Counter>::default();
        registry.register(
            "wshd_websocket_sessions",
            "WebSocket sessions started, by the HTTP version of the handshake (1.1: upgrade; 2: RFC 8441 stream)",
            sessions.clone(),
        );
        registry.register(
            "wshd_closes",
            "Finished connections by close code (1006: no close frame) and by who closed first",
            closes.clone(),
        );
        registry.register("wshd_handler_panics", "Handler panics (handshake and transfer)", panics.clone());
        registry.register(
            "wshd_handshake_duration_seconds",
            "Time from the handshake request to the answer, handler included",
            handshake_seconds.clone(),
        );
        registry.register("wshd_draining", "1 while shutting down", draining.clone());
        let blocked = Family::<RouteLabel, Counter>::default();
        let blocked_threads = Gauge::default();
        registry.register(
            "wshd_handler_blocked",
            "Handler calls that held their thread past [watchdog] blocked_warn_ms (episodes)",
            blocked.clone(),
        );
        registry.register(
            "wshd_handler_blocked_threads",
            "Threads held by a handler call past [watchdog] blocked_warn_ms now",
            blocked_threads.clone(),
        );
        let pending = PendingMetrics::default();
        registry.register(
            "wshd_pending_connections",
            "Connections accepted whose first request head is not complete yet (this process)",
            pending.pending.clone(),
        );
        registry.register(
            "wshd_pending_shed",
            "Pending connections closed to admit new ones (near the fd limit, or over max_pending_connections)",
            pending.shed.clone(),
        );
        let routes = Arc::new(Mutex::new(HashMap::new()));
        registry.register_collector(Box::new(TrafficCollector { routes: Arc::clone(&routes) }));
        let plugins = Arc::new(PluginCounters::default());
        let counters = Arc::clone(&plugins);
        registry.register_collector(Box::new(PluginCollector { counters, live_generations }));
        registry.register_collector(Box::new(rooms::RoomCollector));
        registry.register_collector(Box::new(broker::BrokerCollector));
        registry.register_collector(Box::new(crate::budget::Collector));
        Metrics {
            registry,
            open,
            opened,
            handshakes,
            sessions,
            closes,
            panics,
            handshake_seconds,
            draining,
            blocked,
            blocked_threads,
            pending,
            routes,
            plugins,
            counts: leak_zeroed(),
            worker: 0,
            accepted: Box::leak(Box::new(AtomicU64::new(0))),
        }
    }

    /// The plugin load and refusal counters, for the reloader to count into.
    pub(crate) fn plugin_counters(&self) -> Arc<PluginCounters> {
        Arc::clone(&self.plugins)
    }

    /// The pending-connection gauge and shed counter.
    pub(crate) fn pending(&self) -> PendingMetrics {
        self.pending.clone()
    }

    /// The counters of `route` (made on first use, kept across reloads).
    pub(crate) fn route(&self, route: &str) -> Arc<RouteMetrics> {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = routes.get(route) {
            return Arc::clone(found);
        }
        let label = RouteLabel { route: route.to_owned() };
        let made = Arc::new(RouteMetrics {
            route: route.to_owned(),
            count_key: route_key(route),
            open: self.open.get_or_create_owned(&label),
            opened: self.opened.get_or_create_owned(&label),
            traffic: Arc::default(),
            panics: self.panics.get_or_create_owned(&label),
            handshake_seconds: self.handshake_seconds.get_or_create_owned(&label),
        });
        routes.insert(route.to_owned(), Arc::clone(&made));
        made
    }

    /// Takes a connection slot on `route`, unless a limit is reached.
    pub(crate) fn open(
        self: &Arc<Self>,
        route: &Arc<RouteMetrics>,
        global_max: Option<usize>,
        route_max: Option<usize>,
    ) -> Result<ConnSlot, LimitHit> {
        let as_u64 = |max: Option<usize>| max.map(|m| m as u64);
        match self.counts.open(self.worker, route.count_key, as_u64(global_max), as_u64(route_max)) {
            Ok(()) => {}
            Err(Refused::Global) => return Err(LimitHit::Global(global_max.unwrap_or(0))),
            Err(Refused::Route) => return Err(LimitHit::Route(route_max.unwrap_or(0))),
        }
        route.open.inc();
        route.opened.inc();
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(ConnSlot { route: Arc::clone(route), metrics: Arc::clone(self) })
    }

    /// Open WebSocket connections of this process, over all routes.
    pub(crate) fn open_connections(&self) -> usize {
        self.counts.of_worker(self.worker) as usize
    }

    /// Counts connections in the server-wide table of `local` (a worker process's
    /// scoreboard) instead of a private one.
    pub(crate) fn sharing(mut self, local: &Local) -> Metrics {
        self.counts = local.counts;
        self.worker = local.worker;
        self.accepted = local.accepted;
        self
    }

    /// Counts a handshake answer (`status` is a code, or `aborted`), and its duration.
    pub(crate) fn handshake(&self, route: Option<&RouteMetrics>, status: &str, took: Duration) {
        let name = route.map_or(NO_ROUTE, |r| r.route.as_str());
        self.handshakes
            .get_or_create(&HandshakeLabels { route: name.to_owned(), status: status.to_owned() })
            .inc();
        if let Some(route) = route {
            route.handshake_seconds.observe(took.as_secs_f64());
        }
    }

    /// Counts a session that started (its connection upgraded), by HTTP version.
    pub(crate) fn session_started(&self, http: &'static str) {
        self.sessions.get_or_create(&HttpLabel { http }).inc();
    }

    /// Counts a finished connection's close.
    pub(crate) fn close(&self, route: &str, code: u16, initiator: &'static str) {
        self.closes
            .get_or_create(&CloseLabels { route: route.to_owned(), code: code.to_string(), initiator })
            .inc();
    }

    /// Marks the server as draining.
    pub(crate) fn set_draining(&self) {
        self.draining.set(1);
    }

    /// Counts a handler call on `route` that blocked its thread (one episode).
    pub(crate) fn handler_blocked(&self, route: &str) {
        self.blocked.get_or_create(&RouteLabel { route: route.to_owned() }).inc();
    }

    /// Sets how many threads a handler call blocks now.
    pub(crate) fn set_blocked_threads(&self, threads: usize) {
        self.blocked_threads.set(i64::try_from(threads).unwrap_or(i64::MAX));
    }

    /// The OpenMetrics text exposition.
    pub(crate) fn encode(&self) -> String {
        encode_registry(&self.registry)
    }
}

/// The OpenMetrics text of `registry` (an encoding error is logged and leaves the text cut).
pub(crate) fn encode_registry(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::error!("cannot encode the metrics: {e}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_enforced_and_given_back() {
        let metrics = Arc::new(Metrics::new(|| 0));
        let echo = metrics.route("/echo");
        let other = metrics.route("/other");
        let a = metrics.open(&echo, Some(3), Some(1)).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(metrics.open(&echo, Some(3), Some(1)).err(), Some(LimitHit::Route(1)));
        let b = metrics.open(&other, Some(3), None).unwrap_or_else(|e| panic!("{e:?}"));
        let c = metrics.open(&other, Some(3), None).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(metrics.open(&other, Some(3), None).err(), Some(LimitHit::Global(3)));
        assert_eq!(metrics.open_connections(), 3);
        drop((a, b, c));
        assert_eq!(metrics.open_connections(), 0);
        assert!(metrics.open(&echo, Some(3), Some(1)).is_ok());
    }

    #[test]
    fn exposition_names_routes_and_plugins() {
        let metrics = Arc::new(Metrics::new(|| 2));
        let plugins = metrics.plugin_counters();
        plugins.loaded();
        plugins.loaded();
        plugins.refused();
        let echo = metrics.route("/echo");
        let _slot = metrics.open(&echo, None, None);
        let traffic = echo.traffic.attach();
        traffic.message_in(5);
        traffic.delivered(Duration::ZERO);
        metrics.handshake(Some(&echo), "101", Duration::from_millis(2));
        metrics.handshake(None, "404", Duration::ZERO);
        metrics.close("/echo", 1000, "client");
        metrics.handler_blocked("/echo");
        metrics.set_blocked_threads(1);
        metrics.pending().set_pending(2);
        metrics.pending().shed("fd_limit", 3);
        let text = metrics.encode();
        for needle in [
            "wshd_connections_open{route=\"/echo\"} 1",
            "wshd_connections_total{route=\"/echo\"} 1",
            "wshd_messages_total{route=\"/echo\",direction=\"in\"} 1",
            "wshd_messages_total{route=\"/echo\",direction=\"out\"} 0",
            "wshd_message_bytes_total{route=\"/echo\",direction=\"in\"} 5",
            "wshd_message_delivery_seconds_bucket{le=\"0.00001\",route=\"/echo\"} 1",
            "wshd_message_delivery_seconds_count{route=\"/echo\"} 1",
            "wshd_handshakes_total{route=\"none\",status=\"404\"} 1",
            "wshd_closes_total{route=\"/echo\",code=\"1000\",initiator=\"client\"} 1",
            "wshd_handshake_duration_seconds_count{route=\"/echo\"} 1",
            "wshd_plugin_loads_total 2",
            "wshd_plugin_refusals_total 1",
            "wshd_plugin_live_generations 2",
            "wshd_handler_blocked_total{route=\"/echo\"} 1",
            "wshd_handler_blocked_threads 1",
            "wshd_pending_connections 2",
            "wshd_pending_shed_total{reason=\"fd_limit\"} 3",
            "# EOF",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
