//! `raw-echo`: tokio-tungstenite 0.30 echoing every message. With `--tungstenite-default` it
//! uses `WebSocketConfig::default()` (the reference of `run`); without it, an 8 KiB read
//! buffer and no write buffer (the `tokio-tungstenite-8k` server of `run`).

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::BoxError;

/// wshd's default `[websocket] max_message_bytes` (and `max_frame_bytes`).
const WSHD_MAX_MESSAGE_BYTES: usize = 1 << 20;
/// wshd's default `[websocket] read_buffer_bytes`.
const WSHD_READ_BUFFER_BYTES: usize = 8 << 10;

/// Options of `raw-echo`.
#[derive(Debug, clap::Args)]
pub(crate) struct RawEchoArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9999")]
    pub(crate) addr: SocketAddr,
    /// Use `WebSocketConfig::default()` instead of wshd's codec settings.
    #[arg(long)]
    pub(crate) tungstenite_default: bool,
}

/// tokio-tungstenite tuned for small messages: an 8 KiB read buffer (instead of a zero-filled
/// 128 KiB one), no write buffering, wshd's default message size limits.
pub(crate) fn wshd_config() -> WebSocketConfig {
    let max_message_bytes = WSHD_MAX_MESSAGE_BYTES;
    WebSocketConfig::default()
        .read_buffer_size(WSHD_READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(max_message_bytes.saturating_mul(2).max(1 << 20))
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(WSHD_MAX_MESSAGE_BYTES.min(max_message_bytes)))
}

/// Serves until killed, on a multi-thread runtime (like wshd).
pub(crate) fn run(args: &RawEchoArgs) -> Result<(), BoxError> {
    let config = if args.tungstenite_default { WebSocketConfig::default() } else { wshd_config() };
    crate::serve::serve_forever("raw-echo", args.addr, move |stream| async move {
        if let Err(e) = echo(stream, config).await {
            eprintln!("raw-echo: connection: {e}");
        }
    })
}

/// Echoes every text or binary message with its type, one send + flush per message.
async fn echo(stream: TcpStream, config: WebSocketConfig) -> Result<(), BoxError> {
    stream.set_nodelay(true)?;
    // A connection that is not a WebSocket handshake (e.g. `run`'s readiness probe) is
    // simply dropped.
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return Ok(());
    };
    while let Some(message) = ws.next().await {
        match message {
            Ok(message @ (Message::Text(_) | Message::Binary(_))) => ws.send(message).await?,
            // Pings are answered and closes completed by tungstenite itself.
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(())
}
