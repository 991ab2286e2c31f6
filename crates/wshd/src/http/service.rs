//! The HTTP service on the WebSocket port. Each request goes through fixed phases:
//! route → validate handshake → handler `do_handshake` (a built-in handler accepts every
//! valid handshake) → 101 and session; requests for paths without a handler go to the static
//! document root.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use wshd_sdk::abi::{HANDSHAKE_ABORT, HANDSHAKE_ACCEPT, HANDSHAKE_PANICKED, HANDSHAKE_REJECT, RStr};

use super::handshake::{self, ValidHandshake};
use super::request_view::RequestView;
use super::response::{plain, with_status};
use super::{auth, cgi, forwarded, static_files};
use crate::config::Builtin;
use crate::metrics::{ConnSlot, LimitHit, RouteMetrics};
use crate::plugin::{HandlerInstance, HandshakeAnswer, Route, RouteTarget, conn_for};
use crate::server::ServerState;
use crate::ws::builtin;
use crate::ws::session::{ConnShared, Driver, HandlerFuture, SessionSettings};
use crate::ws::transport;

/// The handler asked to drop the connection without a response.
#[derive(Debug)]
pub(crate) struct AbortConnection;

impl std::fmt::Display for AbortConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection aborted by the handler")
    }
}

impl std::error::Error for AbortConnection {}

/// Addresses of the connection a request arrived on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnAddrs {
    /// The client: the TCP peer, or who trusted proxies say the client is.
    pub(crate) peer: SocketAddr,
    /// The TCP peer (a proxy, when behind one).
    pub(crate) socket: SocketAddr,
    pub(crate) local: SocketAddr,
    /// The client's connection is TLS (to us, or to a trusted proxy that says so).
    pub(crate) secure: bool,
}

/// Handles one HTTP request.
pub(crate) async fn handle(
    state: Arc<ServerState>,
    addrs: ConnAddrs,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, AbortConnection> {
    let table = state.registry.current();
    let origin = forwarded::resolve(&table.config.proxy, addrs.socket, addrs.secure, req.headers());
    let addrs = ConnAddrs { peer: origin.client, secure: origin.secure, ..addrs };
    if let Some(refusal) =
        auth::check(&table.config, addrs, &req).or_else(|| auth::check_target(&table.config, addrs, &req))
    {
        return Ok(refusal);
    }
    if let Some(route) = table.get(req.uri().path()) {
        let route = Arc::clone(route);
        // A browser visiting a handler path that is also a page (e.g. `/`, aliased to
        // `/echo` like pywebsocket's handler map) gets the page; everything else is a
        // handshake attempt and is validated as one.
        if !handshake::wants_websocket(&req)
            && let Some(root) = &table.config.document_root
        {
            let page = static_files::serve(root, &req).await;
            if page.status() != StatusCode::NOT_FOUND {
                return Ok(page);
            }
        }
        let global_max = table.config.max_connections;
        drop(table);
        let started = Instant::now();
        let metrics = state.metrics.route(&route.path);
        let answer = websocket(&state, addrs, route, req, origin.host, &metrics, global_max);
        let status =
            answer.as_ref().map_or_else(|_| "aborted".to_owned(), |resp| resp.status().as_u16().to_string());
        state.metrics.handshake(Some(&metrics), &status, started.elapsed());
        return answer;
    }
    if handshake::wants_websocket(&req) {
        state.metrics.handshake(None, "404", Duration::ZERO);
        tracing::info!(peer = %addrs.peer, path = %req.uri().path(), status = 404, "handshake refused: no handler");
        return Ok(plain(StatusCode::NOT_FOUND, "no WebSocket handler at this path\n"));
    }
    let req = match cgi::serve(&table.config, addrs, req).await {
        Ok(response) => return Ok(response),
        Err(not_cgi) => not_cgi,
    };
    match &table.config.document_root {
        Some(root) => Ok(static_files::serve(root, &req).await),
        None => Ok(plain(StatusCode::NOT_FOUND, "not found\n")),
    }
}

/// Headers a handler may not set on the 101: they belong to the protocol.
fn is_reserved_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(name.as_str(), "upgrade" | "connection" | "content-length" | "transfer-encoding")
        || name.starts_with("sec-websocket-")
}

/// Answers 503 when a limit or the drain refuses a handshake.
fn unavailable(addrs: ConnAddrs, route: &Route, why: &str) -> Response<Full<Bytes>> {
    tracing::info!(peer = %addrs.peer, path = %route.path, status = 503, "handshake refused: {why}");
    let mut resp = plain(StatusCode::SERVICE_UNAVAILABLE, &format!("{why}\n"));
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    resp
}

fn websocket(
    state: &Arc<ServerState>,
    addrs: ConnAddrs,
    route: Arc<Route>,
    mut req: Request<Incoming>,
    forwarded_host: Option<String>,
    metrics: &Arc<RouteMetrics>,
    global_max: Option<usize>,
) -> Result<Response<Full<Bytes>>, AbortConnection> {
    let started = Instant::now();
    let valid = match handshake::validate(&req) {
        Ok(valid) => valid,
        Err(e) => {
            tracing::info!(peer = %addrs.peer, path = %route.path, status = e.status().as_u16(), reason = e.name(), "handshake refused");
            let mut resp = plain(e.status(), &format!("{}\n", e.explain()));
            if e == handshake::HandshakeError::UnsupportedVersion {
                resp.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            }
            return Ok(resp);
        }
    };

    if state.is_draining() {
        return Ok(unavailable(addrs, &route, "shutting down"));
    }
    let slot = match state.metrics.open(metrics, global_max, route.settings.max_connections) {
        Ok(slot) => slot,
        Err(LimitHit::Global(max)) => {
            return Ok(unavailable(addrs, &route, &format!("server connection limit reached ({max})")));
        }
        Err(LimitHit::Route(max)) => {
            return Ok(unavailable(addrs, &route, &format!("route connection limit reached ({max})")));
        }
    };

    let (answer, serving) = match &route.target {
        RouteTarget::Plugin { resource, instance } => {
            let view = RequestView::new(&req, resource, addrs, forwarded_host.as_deref());
            match plugin_handshake(&route, instance, &view, addrs, metrics) {
                Verdict::Accept(answer) => (answer, Serving::Plugin { instance: Arc::clone(instance), view }),
                Verdict::Refuse(response) => return Ok(response),
                Verdict::Abort => return Err(AbortConnection),
            }
        }
        // A built-in handler accepts every valid handshake: no subprotocol, no extra headers.
        RouteTarget::Builtin(builtin) => (HandshakeAnswer::default(), Serving::Builtin(*builtin)),
    };
    let handler = route.handler_name();

    let mut response = match accept_response(&valid, &answer) {
        Ok(resp) => resp,
        Err(bug) => {
            tracing::error!(path = %route.path, %handler, file = %serving.file(), "handler bug in do_handshake: {bug}");
            return Ok(plain(StatusCode::INTERNAL_SERVER_ERROR, "handler error\n"));
        }
    };
    let deflate = if answer.decline_extensions {
        None
    } else {
        let offers: Vec<&str> = req
            .headers()
            .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        transport::negotiate_deflate(&offers, &route.settings.deflate)
    };
    if let Some(agreement) = &deflate
        && let Ok(value) = HeaderValue::from_str(&agreement.response)
    {
        response.headers_mut().insert(header::SEC_WEBSOCKET_EXTENSIONS, value);
    }
    tracing::info!(
        peer = %addrs.peer,
        path = %route.path,
        %handler,
        protocol = answer.protocol.as_deref().unwrap_or(""),
        extensions = deflate.as_ref().map_or("", |a| a.response.as_str()),
        "handshake accepted"
    );

    let on_upgrade = hyper::upgrade::on(&mut req);
    let protocol = answer.protocol.clone();
    let state = Arc::clone(state);
    let metrics = Arc::clone(metrics);
    state.tasks.clone().spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(peer = %addrs.peer, "upgrade failed: {e}");
                return;
            }
        };
        let (stream, wire) = transport::accept(upgraded, &route.settings, deflate);
        let session = Session { route, serving, protocol, addrs, started, metrics, slot };
        run_session(state, session, stream, wire).await;
    });
    Ok(response)
}

/// What serves an accepted connection.
// Boxing the plugin variant would cost an allocation per plugin connection to save stack on
// the rare built-in one.
#[allow(clippy::large_enum_variant)]
enum Serving {
    /// A plugin's handler instance, with the request as its `transfer_data` sees it.
    Plugin { instance: Arc<HandlerInstance>, view: RequestView },
    /// A handler built into the host.
    Builtin(Builtin),
}

impl Serving {
    /// The plugin file, for messages about the handler (empty for a built-in handler).
    fn file(&self) -> std::path::Display<'_> {
        match self {
            Serving::Plugin { instance, .. } => instance.plugin.file.display(),
            Serving::Builtin(_) => std::path::Path::new("").display(),
        }
    }
}

/// What a plugin's `do_handshake` decided.
enum Verdict {
    /// Accepted, with the handler's answer (subprotocol, headers, extensions).
    Accept(HandshakeAnswer),
    /// Not accepted: give the client this response.
    Refuse(Response<Full<Bytes>>),
    /// Drop the connection without a response.
    Abort,
}

/// Runs a plugin's `do_handshake`.
fn plugin_handshake(
    route: &Route,
    instance: &HandlerInstance,
    view: &RequestView,
    addrs: ConnAddrs,
    metrics: &RouteMetrics,
) -> Verdict {
    let mut answer = HandshakeAnswer::default();
    let verdict = view.with_raw(|raw| {
        let mut out = answer.as_out();
        instance.do_handshake(raw, &mut out)
    });
    let handler = &instance.plugin.handler_name;
    match verdict {
        HANDSHAKE_ACCEPT => Verdict::Accept(answer),
        HANDSHAKE_ABORT => {
            tracing::info!(peer = %addrs.peer, path = %route.path, %handler, "handshake aborted by the handler");
            Verdict::Abort
        }
        HANDSHAKE_REJECT => {
            let status = StatusCode::from_u16(answer.status)
                .ok()
                .filter(|s| s.is_client_error() || s.is_server_error())
                .unwrap_or(StatusCode::FORBIDDEN);
            tracing::info!(peer = %addrs.peer, path = %route.path, %handler, status = status.as_u16(), "handshake rejected by the handler");
            let mut resp = with_status(status, Bytes::from(answer.body));
            for (name, value) in &answer.headers {
                if let (Ok(n), Ok(v)) =
                    (HeaderName::try_from(name.as_str()), HeaderValue::try_from(value.as_str()))
                {
                    resp.headers_mut().append(n, v);
                }
            }
            Verdict::Refuse(resp)
        }
        HANDSHAKE_PANICKED => {
            let message = answer.message.as_deref().unwrap_or("unknown panic");
            metrics.panics.inc();
            tracing::error!(path = %route.path, %handler, file = %instance.plugin.file.display(), "handler panicked in do_handshake: {message}");
            Verdict::Refuse(plain(StatusCode::INTERNAL_SERVER_ERROR, "handler error\n"))
        }
        other => {
            tracing::error!(path = %route.path, %handler, "handler returned an unknown handshake verdict {other}");
            Verdict::Refuse(plain(StatusCode::INTERNAL_SERVER_ERROR, "handler error\n"))
        }
    }
}

/// Builds the 101, or explains the handler's mistake.
fn accept_response(
    valid: &ValidHandshake,
    answer: &HandshakeAnswer,
) -> Result<Response<Full<Bytes>>, String> {
    let mut resp = with_status(StatusCode::SWITCHING_PROTOCOLS, Bytes::new());
    let headers = resp.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    let accept = HeaderValue::from_str(&valid.accept).map_err(|e| e.to_string())?;
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    if let Some(protocol) = &answer.protocol {
        if !valid.protocols.iter().any(|p| p == protocol) {
            return Err(format!(
                "chose subprotocol `{protocol}`, which the client did not offer (offered: {:?})",
                valid.protocols
            ));
        }
        let value =
            HeaderValue::from_str(protocol).map_err(|_| format!("invalid subprotocol `{protocol}`"))?;
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    for (name, value) in &answer.headers {
        if is_reserved_header(name) {
            return Err(format!("tried to set the reserved header `{name}`"));
        }
        let n = HeaderName::try_from(name.as_str()).map_err(|_| format!("invalid header name `{name}`"))?;
        let v = HeaderValue::try_from(value.as_str())
            .map_err(|_| format!("invalid value for header `{name}`"))?;
        headers.append(n, v);
    }
    Ok(resp)
}

/// What a session needs besides the socket.
struct Session {
    route: Arc<Route>,
    serving: Serving,
    protocol: Option<String>,
    addrs: ConnAddrs,
    started: Instant,
    metrics: Arc<RouteMetrics>,
    /// The connection's place in the limits; given back when the session ends.
    slot: ConnSlot,
}

async fn run_session(
    state: Arc<ServerState>,
    session: Session,
    stream: transport::WsStream,
    wire: Arc<transport::Wire>,
) {
    let Session { route, serving, protocol, addrs, started, metrics, slot } = session;
    let settings = &route.settings;
    let session_settings = SessionSettings {
        close_timeout: settings.close_timeout,
        inbound_queue_bytes: settings.inbound_queue_bytes,
        idle_timeout: settings.idle_timeout,
        ping_interval: settings.ping_interval,
        pong_timeout: settings.pong_timeout,
        max_send_queue_bytes: settings.max_send_queue_bytes,
        send_timeout: settings.send_timeout,
        metrics: Some(Arc::clone(&metrics)),
        wire: Some(wire),
    };
    let (shared, future, instance) = match serving {
        Serving::Plugin { instance, view } => {
            let shared = ConnShared::new(stream, session_settings, Some(Arc::clone(&instance.plugin)));
            let protocol = RStr::from_opt(protocol.as_deref());
            let future = view.with_raw(|raw| instance.transfer_data(raw, protocol, conn_for(&shared)));
            (shared, HandlerFuture::Plugin(future), Some(instance))
        }
        Serving::Builtin(builtin) => {
            let shared = ConnShared::new(stream, session_settings, None);
            (Arc::clone(&shared), builtin::transfer_data(builtin, shared), None)
        }
    };
    let end =
        Driver::new(future, shared).shutdown_on(state.shutdown.clone(), Arc::clone(&state.draining)).await;
    drop(slot);
    let handler = route.handler_name();
    if end.panicked {
        metrics.panics.inc();
        let file = instance.as_ref().map_or_else(String::new, |i| i.plugin.file.display().to_string());
        tracing::error!(peer = %addrs.peer, path = %route.path, %handler, %file, "handler panicked in transfer_data; connection closed with 1011");
    }
    let s = &end.summary;
    state.metrics.close(&route.path, s.close_code.as_u16(), s.initiator);
    // The access log: one event per WebSocket connection.
    tracing::info!(
        target: "wshd::access",
        client = %addrs.peer.ip(),
        socket = %addrs.socket,
        route = %route.path,
        %handler,
        status = 101,
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
    // Keep the instance (and so the plugin's code) until the session is fully over.
    drop(instance);
    drop(state);
}
