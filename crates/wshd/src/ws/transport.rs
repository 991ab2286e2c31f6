//! The WebSocket codec seam. Everything that knows which codec crate frames the bytes
//! (today tokio-tungstenite) lives here, so it can be swapped without touching sessions,
//! handshakes or the plugin boundary.

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error, Message, Utf8Bytes, error::CapacityError, error::ProtocolError};

use super::session::DataKind;
use crate::config::WsSettings;

/// A server-side WebSocket over an upgraded HTTP connection.
pub(crate) type WsStream = WebSocketStream<TokioIo<Upgraded>>;

/// Wraps an upgraded connection (the handshake is already answered).
pub(crate) async fn accept(io: Upgraded, settings: &WsSettings, max_message_bytes: usize) -> WsStream {
    let config = WebSocketConfig::default()
        .read_buffer_size(settings.read_buffer_bytes)
        // Frames go out when the handler flushes (every send), not when a buffer fills.
        .write_buffer_size(0)
        .max_write_buffer_size(max_message_bytes.saturating_mul(2).max(1 << 20))
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(settings.max_frame_bytes.min(max_message_bytes)));
    WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, Some(config)).await
}

/// A data frame to send. `continuation` says a fragmented message is open. `None` when the
/// text of an unfragmented text message is not UTF-8.
pub(crate) fn data_message(kind: DataKind, fin: bool, continuation: bool, data: &[u8]) -> Option<Message> {
    let bytes = Bytes::copy_from_slice(data);
    if fin && !continuation {
        return Some(match kind {
            DataKind::Text => Message::Text(Utf8Bytes::try_from(bytes).ok()?),
            DataKind::Binary => Message::Binary(bytes),
        });
    }
    let opcode = match (continuation, kind) {
        (true, _) => OpCode::Data(Data::Continue),
        (false, DataKind::Text) => OpCode::Data(Data::Text),
        (false, DataKind::Binary) => OpCode::Data(Data::Binary),
    };
    Some(Message::Frame(Frame::message(bytes, opcode, fin)))
}

/// Close codes an endpoint may send (RFC 6455 §7.4): 1000–1003, 1007–1014 and 3000–4999.
pub(crate) fn is_sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Our close frame.
pub(crate) fn close_message(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: Utf8Bytes::from(reason) }))
}

/// The peer's close as code and reason (1005 for an empty close frame).
pub(crate) fn close_status(frame: Option<&CloseFrame>) -> (u16, Bytes) {
    match frame {
        Some(f) => (u16::from(f.code), Bytes::from(f.reason.clone())),
        None => (1005, Bytes::new()),
    }
}

/// The close code a read error calls for, or `None` when the connection is simply gone
/// (no close frame can or should be sent).
pub(crate) fn failure_close(error: &Error) -> Option<(u16, String)> {
    match error {
        Error::Utf8(_) => Some((1007, "invalid UTF-8 in a text message".into())),
        Error::Capacity(CapacityError::MessageTooLong { .. }) => Some((1009, "message too big".into())),
        Error::Capacity(_) => Some((1009, "too big".into())),
        Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        Error::Protocol(e) => Some((1002, protocol_reason(e))),
        _ => None,
    }
}

fn protocol_reason(error: &ProtocolError) -> String {
    let mut reason = error.to_string();
    // A close reason is at most 123 bytes.
    while reason.len() > 123 {
        reason.pop();
    }
    reason
}
