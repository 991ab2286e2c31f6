//! The HTTP service on the WebSocket port. A request for a handler path goes through fixed
//! steps — route → validate the handshake → admit (drain and limits) → the handler's verdict
//! (a built-in handler accepts every valid handshake) → respond 101 and start the session
//! (`ws::start`); requests for other paths go to CGI or the static document root.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::handshake::{self, ValidHandshake};
use super::response::{plain, with_status};
use super::{auth, cgi, forwarded, static_files};
pub(crate) use crate::addrs::ConnAddrs;
use crate::metrics::RouteMetrics;
use crate::plugin::{Accepted, HandshakeVerdict, Rejected, RequestView, Route, RouteTarget};
use crate::state::ServerState;
use crate::ws::start::{self, Handler, SessionPlan};
use crate::ws::{builtin, transport};

/// The handler asked to drop the connection without a response.
#[derive(Debug)]
pub(crate) struct AbortConnection;

impl std::fmt::Display for AbortConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection aborted by the handler")
    }
}

impl std::error::Error for AbortConnection {}

/// Handles one HTTP request.
pub(crate) async fn handle(
    state: Arc<ServerState>,
    addrs: ConnAddrs,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, AbortConnection> {
    if let Some(refusal) = malformed_head(&req) {
        return Ok(refusal);
    }
    let table = state.snapshot();
    let origin = forwarded::resolve(&table.config.proxy, addrs.socket, addrs.secure, req.headers());
    let addrs = ConnAddrs { peer: origin.client, secure: origin.secure, ..addrs };
    if let Some(refusal) =
        auth::check(&table.config, addrs, &req).or_else(|| auth::check_target(&table.config, addrs, &req))
    {
        return Ok(refusal);
    }
    if let Some(route) = table.routes.get(req.uri().path()) {
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

/// Put in a request's extensions when its request line had a `#` (seen by
/// [`super::first_head::FirstHead`]; the parsed URI has lost it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TargetFragment;

/// What HTTP/1.1 forbids in a request head that the parser lets through: more than one
/// `Host` line (RFC 9112 §3.2: 400, as for a missing one; a proxy and the server could
/// otherwise disagree on the target host), and a fragment in the request target (RFC 9112
/// §3.2 has none in its grammar; RFC 6455 §3: WebSocket URIs have none). The answer, or
/// `None`.
pub(crate) fn malformed_head<B>(req: &Request<B>) -> Option<Response<Full<Bytes>>> {
    if req.extensions().get::<TargetFragment>().is_some() {
        return Some(plain(StatusCode::BAD_REQUEST, "a request target may not have a #fragment\n"));
    }
    let hosts = req.headers().get_all(hyper::header::HOST).iter().count();
    if hosts > 1 {
        return Some(plain(StatusCode::BAD_REQUEST, "more than one Host header\n"));
    }
    None
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

/// Why new connections to `route` are refused while its handler is quarantined (it took
/// worker processes down again and again; a new build of its plugin lifts it).
fn quarantined(route: &Route) -> Option<String> {
    let table = crate::scoreboard::local().quarantine;
    let listed = match &route.target {
        RouteTarget::Plugin { resource, .. } => table.contains(resource) || table.contains(&route.path),
        RouteTarget::Builtin(_) => false,
    };
    listed.then(|| {
        "route quarantined: its handler crashed worker processes repeatedly; \
         a new build of its plugin lifts the quarantine"
            .to_owned()
    })
}

/// Answers a request that is not a valid RFC 6455 handshake.
fn invalid(addrs: ConnAddrs, route: &Route, e: handshake::HandshakeError) -> Response<Full<Bytes>> {
    tracing::info!(peer = %addrs.peer, path = %route.path, status = e.status().as_u16(), reason = e.name(), "handshake refused");
    let mut resp = plain(e.status(), &format!("{}\n", e.explain()));
    if e == handshake::HandshakeError::UnsupportedVersion {
        resp.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    }
    resp
}

/// A WebSocket handshake on a handler route: validate → admit → the handler's verdict →
/// respond 101 and start the session.
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
        Err(e) => return Ok(invalid(addrs, &route, e)),
    };
    if let Some(why) = quarantined(&route) {
        return Ok(unavailable(addrs, &route, &why));
    }
    let cx = start::Context { lifecycle: &state.lifecycle, metrics: &state.metrics };
    let slot = match start::admit(cx, metrics, global_max, route.settings.max_connections) {
        Ok(slot) => slot,
        Err(why) => return Ok(unavailable(addrs, &route, &why)),
    };
    let (accepted, handler) = match verdict(&route, &req, addrs, forwarded_host.as_deref(), metrics)? {
        Ok(served) => served,
        Err(refusal) => return Ok(refusal),
    };
    let Some((response, deflate)) = respond(&route, &req, addrs, &valid, &accepted, &handler) else {
        return Ok(plain(StatusCode::INTERNAL_SERVER_ERROR, "handler error\n"));
    };
    let plan = SessionPlan {
        path: route.path.clone(),
        settings: route.settings.clone(),
        protocol: accepted.protocol,
        deflate,
        addrs,
        started,
        metrics: Arc::clone(metrics),
    };
    start::spawn(cx, hyper::upgrade::on(&mut req), plan, handler, slot);
    Ok(response)
}

/// Who serves an accepted handshake, and how it was accepted; or the response that refuses
/// it. `Err` drops the connection without a response.
type Verdict = Result<(Accepted, Handler), Response<Full<Bytes>>>;

/// Asks the route's handler: a plugin's `do_handshake`, or a built-in handler (which accepts
/// every valid handshake with no subprotocol and no extra headers).
fn verdict(
    route: &Arc<Route>,
    req: &Request<Incoming>,
    addrs: ConnAddrs,
    forwarded_host: Option<&str>,
    metrics: &RouteMetrics,
) -> Result<Verdict, AbortConnection> {
    let (resource, instance) = match &route.target {
        RouteTarget::Plugin { resource, instance } => (resource, Arc::clone(instance)),
        RouteTarget::Builtin(builtin) => {
            let builtin = *builtin;
            let start = Box::new(move |shared: &Arc<_>| builtin::transfer_data(builtin, Arc::clone(shared)));
            let name = builtin.handler_name().to_owned();
            let handler = Handler { start, keep_alive: None, name, file: String::new() };
            return Ok(Ok((Accepted::default(), handler)));
        }
    };
    let view = RequestView::new(req, resource, addrs, forwarded_host);
    let name = instance.plugin.handler_name.clone();
    let file = instance.plugin.file.display().to_string();
    let log = |what: &str| tracing::info!(peer = %addrs.peer, path = %route.path, handler = %name, "{what}");
    match instance.handshake(&view) {
        HandshakeVerdict::Accept(accepted) => {
            let keep_alive = Some(instance.keep_alive());
            let protocol = accepted.protocol.clone();
            let start = Box::new(move |shared: &Arc<_>| instance.start(&view, protocol.as_deref(), shared));
            Ok(Ok((accepted, Handler { start, keep_alive, name, file })))
        }
        HandshakeVerdict::Abort => {
            log("handshake aborted by the handler");
            Err(AbortConnection)
        }
        HandshakeVerdict::Reject(rejected) => Ok(Err(rejection(route, addrs, &name, rejected))),
        HandshakeVerdict::Panicked(message) => {
            metrics.panics.inc();
            tracing::error!(path = %route.path, handler = %name, %file, "handler panicked in do_handshake: {message}");
            Ok(Err(plain(StatusCode::INTERNAL_SERVER_ERROR, "handler error\n")))
        }
        HandshakeVerdict::Unknown(code) => {
            tracing::error!(path = %route.path, handler = %name, "handler returned an unknown handshake verdict {code}");
            Ok(Err(plain(StatusCode::INTERNAL_SERVER_ERROR, "handler error\n")))
        }
    }
}

/// The handler's refusal as a response: its status when that is an error status (else 403),
/// its headers and body.
fn rejection(route: &Route, addrs: ConnAddrs, handler: &str, rejected: Rejected) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(rejected.status)
        .ok()
        .filter(|s| s.is_client_error() || s.is_server_error())
        .unwrap_or(StatusCode::FORBIDDEN);
    tracing::info!(peer = %addrs.peer, path = %route.path, %handler, status = status.as_u16(), "handshake rejected by the handler");
    let mut resp = with_status(status, Bytes::from(rejected.body));
    for (name, value) in &rejected.headers {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name.as_str()), HeaderValue::try_from(value.as_str())) {
            resp.headers_mut().append(n, v);
        }
    }
    resp
}

/// The 101 for an accepted handshake, with the negotiated permessage-deflate parameters;
/// `None` (logged) when the handler's answer cannot go on a 101.
fn respond(
    route: &Route,
    req: &Request<Incoming>,
    addrs: ConnAddrs,
    valid: &ValidHandshake,
    accepted: &Accepted,
    handler: &Handler,
) -> Option<(Response<Full<Bytes>>, Option<transport::Agreement>)> {
    let mut response = match accept_response(valid, accepted) {
        Ok(resp) => resp,
        Err(bug) => {
            tracing::error!(path = %route.path, handler = %handler.name, file = %handler.file, "handler bug in do_handshake: {bug}");
            return None;
        }
    };
    let deflate = if accepted.decline_extensions {
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
        handler = %handler.name,
        protocol = accepted.protocol.as_deref().unwrap_or(""),
        extensions = deflate.as_ref().map_or("", |a| a.response.as_str()),
        "handshake accepted"
    );
    Some((response, deflate))
}

/// Builds the 101, or explains the handler's mistake.
fn accept_response(valid: &ValidHandshake, answer: &Accepted) -> Result<Response<Full<Bytes>>, String> {
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
