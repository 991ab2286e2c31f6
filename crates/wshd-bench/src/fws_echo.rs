//! `fws-echo`: a fastwebsockets 0.10 echo server, written like the crate's own
//! `examples/echo_server.rs`: hyper 1 serves HTTP/1.1, `fastwebsockets::upgrade` answers the
//! upgrade, a `FragmentCollector` echoes every text or binary message with one `write_frame`.
//! Default fastwebsockets settings (auto close, auto pong, 64 MiB message limit).

use std::net::SocketAddr;

use fastwebsockets::upgrade::{self, UpgradeFut};
use fastwebsockets::{FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::BoxError;

/// Options of `fws-echo`.
#[derive(Debug, clap::Args)]
pub(crate) struct FwsEchoArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9997")]
    pub(crate) addr: SocketAddr,
}

/// Serves until killed, on a multi-thread runtime (like the other servers measured).
pub(crate) fn run(args: &FwsEchoArgs) -> Result<(), BoxError> {
    crate::serve::serve_forever("fws-echo", args.addr, |stream| async move {
        let _ = stream.set_nodelay(true);
        let conn = http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service_fn(upgrade_request))
            .with_upgrades();
        // A connection that is not a WebSocket handshake (e.g. `run`'s readiness probe) just
        // ends.
        let _ = conn.await;
    })
}

async fn upgrade_request(mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::spawn(async move {
        // Errors end the connection; clients that just disconnect (the idle workload) are
        // not worth a line each.
        let _ = tokio::task::unconstrained(echo(fut)).await;
    });
    Ok(response)
}

async fn echo(fut: UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            // auto_close has answered the close frame.
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}
