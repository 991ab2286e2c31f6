//! One HTTP/2 connection (ALPN `h2` on a TLS listener, or h2c with prior knowledge): hyper's
//! HTTP/2 server with extended CONNECT on (RFC 8441 `SETTINGS_ENABLE_CONNECT_PROTOCOL`), the
//! `[http2]` limits, and the same per-request service as HTTP/1.1 (`http::service::handle`):
//! pages, CGI, auth, trusted proxies and WebSocket handshakes do not know which version
//! carried the request, except through its `Version`. A WebSocket accepted on a stream runs
//! its session on that stream (`hyper::upgrade::on` yields it as for an HTTP/1.1 upgrade).
//!
//! The pending-connection accounting of HTTP/1.1 ([`crate::pending`]) holds until the first
//! request's head arrives; a connection that sends no request within the handshake timeout
//! is sent GOAWAY and closed. After that, an idle HTTP/2 connection stays open, as an idle
//! HTTP/1.1 keep-alive connection does, until the client or a shutdown closes it.

use std::sync::Arc;
use std::time::Duration;

use hyper::header::{HOST, HeaderValue};
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::addrs::ConnAddrs;
use crate::config::Http2Settings;
use crate::http::service;
use crate::pending::Ticket;
use crate::state::ServerState;

/// What an HTTP/2 connection needs from the snapshot, read once when it is accepted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct H2Settings {
    /// Time for the first request's head (the handshake timeout).
    pub(crate) first_request_timeout: Duration,
    /// `[http2]`.
    pub(crate) limits: Http2Settings,
}

/// The HTTP/2 connection preface (RFC 9113 §3.4): how a client with prior knowledge starts.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The pause between looks at a plain connection's first bytes while they match the preface
/// but are not all there yet.
const PEEK_PAUSE: Duration = Duration::from_millis(2);

/// What a plain connection's first bytes say (`[http2] cleartext`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cleartext {
    /// The HTTP/2 preface: h2c with prior knowledge.
    Http2,
    /// Anything else: HTTP/1.1, served as without h2c.
    Http1,
    /// Nothing within the handshake timeout (or the socket failed): close it.
    Silent,
}

/// Looks (without reading) at the first bytes of a plain connection, for at most `timeout`.
pub(crate) async fn sniff(stream: &tokio::net::TcpStream, timeout: Duration) -> Cleartext {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; PREFACE.len()];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => return Cleartext::Silent,
            Err(_) => return Cleartext::Http1,
        };
        if n == 0 {
            return Cleartext::Silent;
        }
        if buf[..n] != PREFACE[..n] {
            return Cleartext::Http1;
        }
        if n == PREFACE.len() {
            return Cleartext::Http2;
        }
        tokio::time::sleep(PEEK_PAUSE).await;
    }
}

/// How long a connection closed for sending no request gets to read its GOAWAY before it is
/// dropped (a silent client never acknowledges it).
const GOAWAY_LINGER: Duration = Duration::from_secs(1);

/// Serves one HTTP/2 connection until the client closes it, it sends no request in time, or
/// the server shuts down (GOAWAY; open WebSocket streams get their 1001 from their sessions,
/// and the connection ends when the last stream does).
pub(crate) async fn serve<I>(
    io: I,
    addrs: ConnAddrs,
    state: Arc<ServerState>,
    settings: H2Settings,
    ticket: Arc<Ticket>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let peer = addrs.peer;
    let shutdown = state.lifecycle.shutdown.clone();
    let first = Arc::clone(&ticket);
    let svc = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        if !ticket.watch().is_complete() {
            ticket.head_complete();
        }
        authority_as_host(&mut req);
        service::handle(Arc::clone(&state), addrs, req)
    });
    let conn = builder(&settings.limits).serve_connection(io, svc);
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        () = no_request_within(&first, settings.first_request_timeout) => {
            tracing::info!(%peer, "HTTP/2 connection sent no request in {:?}: GOAWAY", settings.first_request_timeout);
            conn.as_mut().graceful_shutdown();
            tokio::time::timeout(GOAWAY_LINGER, conn).await.unwrap_or(Ok(()))
        }
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(%peer, "HTTP/2 connection ended: {e}");
    }
}

/// hyper's HTTP/2 server with RFC 8441 on and the `[http2]` bounds.
fn builder(limits: &Http2Settings) -> http2::Builder<TokioExecutor> {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .max_concurrent_streams(limits.max_concurrent_streams)
        .initial_stream_window_size(limits.initial_stream_window)
        .initial_connection_window_size(limits.initial_connection_window)
        .max_header_list_size(limits.max_header_list)
        .max_pending_accept_reset_streams(limits.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(limits.max_local_error_reset_streams);
    builder
}

/// Resolves when `timeout` passed and the connection still sent no request head; never
/// otherwise.
async fn no_request_within(ticket: &Ticket, timeout: Duration) {
    tokio::time::sleep(timeout).await;
    if ticket.watch().is_complete() {
        std::future::pending::<()>().await;
    }
}

/// HTTP/2 carries the host in `:authority` (hyper puts it in the URI); handlers, CGI and
/// trusted-proxy checks read `Host`, as an HTTP/1.1 request has it. Like a proxy translating
/// HTTP/2 to HTTP/1.1 (RFC 9113 §8.3.1), the authority becomes `Host` when there is none.
fn authority_as_host<B>(req: &mut hyper::Request<B>) {
    if req.headers().contains_key(HOST) {
        return;
    }
    let value = req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok());
    if let Some(value) = value {
        req.headers_mut().insert(HOST, value);
    }
}
