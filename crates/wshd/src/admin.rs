//! The admin listener (`[server] admin_listen`): plain HTTP for health checks and scrapes,
//! on its own address so it can stay on loopback or a private network while the WebSocket
//! port faces clients.
//!
//! * `GET /healthz`: 200 while the process is alive (liveness); 503 with the reason while a
//!   handler call has held its thread past `[watchdog] unhealthy_after_secs`.
//! * `GET /readyz`: 200 when listening with at least one handler loaded; 503 while draining
//!   or with no handler (readiness: a balancer stops sending new clients).
//! * `GET /metrics`: Prometheus/OpenMetrics text (see [`crate::metrics`]).
//!
//! It keeps serving during a graceful shutdown, so `/readyz` can report the drain.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::http::response::{plain, with_status};
use crate::state::ServerState;

/// The content type of the OpenMetrics text exposition.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the admin endpoints report: one process's state, or a master's view of its workers.
pub(crate) trait AdminSource: Send + Sync + 'static {
    /// `/healthz`: `Err(why)` while the server needs an orchestrator's help (answered 503).
    fn health(&self) -> Result<(), String>;
    /// `/readyz`: `Err(why)` while new clients should go elsewhere (answered 503).
    fn readiness(&self) -> Result<(), String>;
    /// `/metrics`: the OpenMetrics text.
    fn metrics(self: Arc<Self>) -> Pin<Box<dyn Future<Output = String> + Send>>;
}

impl AdminSource for ServerState {
    fn health(&self) -> Result<(), String> {
        crate::watchdog::health_report().map_or(Ok(()), Err)
    }

    fn readiness(&self) -> Result<(), String> {
        ServerState::readiness(self)
    }

    fn metrics(self: Arc<Self>) -> Pin<Box<dyn Future<Output = String> + Send>> {
        Box::pin(std::future::ready(self.metrics.encode()))
    }
}

/// Serves the admin endpoints until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, source: Arc<dyn AdminSource>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("admin listener: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let source = Arc::clone(&source);
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let source = Arc::clone(&source);
                async move { Ok::<_, Infallible>(answer(source, &req).await) }
            });
            let mut builder = http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(10));
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), svc).await {
                tracing::debug!(%peer, "admin connection ended: {e}");
            }
        });
    }
}

async fn answer<B>(source: Arc<dyn AdminSource>, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let mut resp = match req.uri().path() {
        "/healthz" => match source.health() {
            Ok(()) => plain(StatusCode::OK, "ok\n"),
            Err(why) => plain(StatusCode::SERVICE_UNAVAILABLE, &format!("unhealthy: {why}\n")),
        },
        "/readyz" => match source.readiness() {
            Ok(()) => plain(StatusCode::OK, "ready\n"),
            Err(why) => plain(StatusCode::SERVICE_UNAVAILABLE, &format!("not ready: {why}\n")),
        },
        "/metrics" => {
            let mut resp = with_status(StatusCode::OK, Bytes::from(source.metrics().await));
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS));
            resp
        }
        _ => plain(StatusCode::NOT_FOUND, "not found: try /healthz, /readyz or /metrics\n"),
    };
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
