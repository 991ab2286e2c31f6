//! From an accepted handshake to a running session: admission against the connection
//! limits, the session's start once the connection is upgraded, and the access log line when
//! it ends. The HTTP layer decides *whether* and *who* serves; this module runs it.

use std::sync::Arc;
use std::time::Instant;

use hyper::upgrade::OnUpgrade;

use super::session::{ConnShared, Driver, HandlerFuture, KeepAlive, SessionEnd, SessionSettings};
use super::transport::{self, Agreement};
use crate::addrs::ConnAddrs;
use crate::config::WsSettings;
use crate::lifecycle::Lifecycle;
use crate::metrics::{ConnSlot, LimitHit, Metrics, RouteMetrics};

/// What sessions share with the rest of the server.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    /// The drain signal and the task tracker sessions run on.
    pub(crate) lifecycle: &'a Lifecycle,
    /// The server's counters (and the open-connection counts behind the limits).
    pub(crate) metrics: &'a Arc<Metrics>,
}

/// Takes a connection slot for a route, or says why not (the drain, or a limit).
pub(crate) fn admit(
    cx: Context<'_>,
    route: &Arc<RouteMetrics>,
    global_max: Option<usize>,
    route_max: Option<usize>,
) -> Result<ConnSlot, String> {
    if cx.lifecycle.is_draining() {
        return Err("shutting down".to_owned());
    }
    Metrics::open(cx.metrics, route, global_max, route_max).map_err(|hit| match hit {
        LimitHit::Global(max) => format!("server connection limit reached ({max})"),
        LimitHit::Route(max) => format!("route connection limit reached ({max})"),
    })
}

/// Starts a connection's handler: its `transfer_data` future on the session's connection.
pub(crate) type StartHandler = Box<dyn FnOnce(&Arc<ConnShared>) -> HandlerFuture + Send>;

/// Who serves the connection.
pub(crate) struct Handler {
    /// Starts it.
    pub(crate) start: StartHandler,
    /// Keeps its code loaded for the session's life (`None` for a built-in handler).
    pub(crate) keep_alive: Option<KeepAlive>,
    /// The handler's name for logs.
    pub(crate) name: String,
    /// The plugin file, for logs (empty for a built-in handler).
    pub(crate) file: String,
}

/// What a session needs besides the socket, decided at the handshake.
pub(crate) struct SessionPlan {
    /// The route's path.
    pub(crate) path: String,
    /// The route's protocol settings.
    pub(crate) settings: WsSettings,
    /// The chosen subprotocol.
    pub(crate) protocol: Option<String>,
    /// The agreed permessage-deflate parameters.
    pub(crate) deflate: Option<Agreement>,
    /// The connection's addresses.
    pub(crate) addrs: ConnAddrs,
    /// When the handshake request arrived.
    pub(crate) started: Instant,
    /// The route's counters.
    pub(crate) metrics: Arc<RouteMetrics>,
    /// The HTTP version of the handshake: `"1.1"` (an upgrade) or `"2"` (an extended
    /// CONNECT stream); in the access log and `wshd_websocket_sessions_total`.
    pub(crate) http: &'static str,
}

/// Runs the session on its own task once the connection is upgraded (the 101 is being sent
/// by the caller). `slot` is given back when the session ends.
pub(crate) fn spawn(
    cx: Context<'_>,
    on_upgrade: OnUpgrade,
    mut plan: SessionPlan,
    handler: Handler,
    slot: ConnSlot,
) {
    let (lifecycle, metrics) = (cx.lifecycle.clone(), Arc::clone(cx.metrics));
    cx.lifecycle.tasks.spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(peer = %plan.addrs.peer, "upgrade failed: {e}");
                return;
            }
        };
        metrics.session_started(plan.http);
        let room_deflate = plan.deflate.as_ref().and_then(Agreement::shared_server_side);
        let (stream, wire) = transport::accept(upgraded, &plan.settings, plan.deflate.take());
        let settings = SessionSettings {
            room_deflate,
            ..SessionSettings::for_route(&plan.settings, Arc::clone(&plan.metrics), wire)
        };
        let Handler { start, keep_alive, name, file } = handler;
        let shared = ConnShared::new(stream, settings, keep_alive.clone());
        let future = start(&shared);
        let end = Driver::new(future, shared)
            .shutdown_on(lifecycle.shutdown.clone(), Arc::clone(&lifecycle.draining))
            .await;
        drop(slot);
        finish(&metrics, &plan, &name, &file, &end);
        // Keep the handler's code loaded until the session is fully over.
        drop(keep_alive);
    });
}

/// Counts the ended session and writes its access-log line.
fn finish(server_metrics: &Metrics, plan: &SessionPlan, handler: &str, file: &str, end: &SessionEnd) {
    let SessionPlan { path, protocol, addrs, started, metrics, http, .. } = plan;
    if end.panicked {
        metrics.panics.inc();
        tracing::error!(peer = %addrs.peer, path = %path, %handler, %file, "handler panicked in transfer_data; connection closed with 1011");
    }
    let s = &end.summary;
    server_metrics.close(path, s.close_code.as_u16(), s.initiator);
    // The access log: one event per WebSocket connection.
    tracing::info!(
        target: "wshd::access",
        client = %addrs.peer.ip(),
        socket = %addrs.socket,
        route = %path,
        %handler,
        status = if *http == "2" { 200 } else { 101 },
        http = *http,
        subprotocol = protocol.as_deref().unwrap_or(""),
        duration_ms = started.elapsed().as_millis() as u64,
        messages_in = s.messages_in,
        messages_out = s.messages_out,
        bytes_in = s.bytes_in,
        bytes_out = s.bytes_out,
        wire_in = s.wire_in,
        wire_out = s.wire_out,
        close_code = s.close_code.as_u16(),
        close_by = s.initiator,
        close_reason = s.reason,
        peer_close = end.peer_code.as_u16(),
        aborted = end.aborted,
        "connection closed"
    );
}
