//! `fanout-tt`: the tokio-tungstenite 0.30 peer of `fanout`, written the way such servers
//! usually are: one `tokio::sync::broadcast` channel (1,024 messages, like wshd's per-member
//! bound); `?role=sub` connections forward what they receive from it with `send` (feed +
//! flush), `?role=pub` connections put every data message into it — built once
//! (`Message::Text(Utf8Bytes)` / `Binary(Bytes)`), cloned (a reference count) per
//! subscriber. `WebSocketConfig::default()`; tokio's multi-thread runtime.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

use crate::BoxError;

/// Messages the broadcast channel keeps for a subscriber that is behind.
const CAPACITY: usize = 1024;

/// Options of `fanout-tt`.
#[derive(Debug, clap::Args)]
pub(crate) struct FanoutTtArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9997")]
    pub(crate) addr: SocketAddr,
}

/// Serves until killed.
pub(crate) fn run(args: &FanoutTtArgs) -> Result<(), BoxError> {
    let (tx, _) = broadcast::channel::<Message>(CAPACITY);
    crate::serve::serve_forever("fanout-tt", args.addr, move |stream| {
        let tx = tx.clone();
        async move {
            if let Err(e) = connection(stream, tx).await {
                eprintln!("fanout-tt: connection: {e}");
            }
        }
    })
}

// The handshake callback's `Result<Response, ErrorResponse>` is tungstenite's signature.
#[allow(clippy::result_large_err)]
async fn connection(stream: TcpStream, tx: broadcast::Sender<Message>) -> Result<(), BoxError> {
    stream.set_nodelay(true)?;
    let mut role = String::new();
    let callback = |request: &Request, response: Response| {
        let query = request.uri().query().unwrap_or("");
        role = query.split('&').find_map(|p| p.strip_prefix("role=")).unwrap_or("").to_owned();
        Ok(response)
    };
    // A connection that is not a WebSocket handshake (the readiness probe) is dropped.
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return Ok(());
    };
    let (mut sink, mut incoming) = ws.split();
    match role.as_str() {
        "sub" => {
            let mut rx = tx.subscribe();
            loop {
                tokio::select! {
                    message = rx.recv() => match message {
                        Ok(message) => sink.send(message).await?,
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            eprintln!("fanout-tt: a subscriber lagged and lost {n} messages");
                        }
                        Err(broadcast::error::RecvError::Closed) => return Ok(()),
                    },
                    from_client = incoming.next() => match from_client {
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Ok(()),
                        Some(Ok(_)) => {}
                    },
                }
            }
        }
        "pub" => {
            while let Some(Ok(message)) = incoming.next().await {
                if message.is_text() || message.is_binary() {
                    // No subscriber yet is not an error.
                    let _ = tx.send(message);
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
