//! The WebSocket codec seam: the session talks to a [`WsStream`], and only this module and
//! `codec/` know how frames are made. Swapping the codec means changing this file.

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;

use super::codec::deflate::{Agreement, DeflateCodec};
use super::codec::{Limits, WsConn};
use crate::config::WsSettings;

pub(crate) use super::codec::deflate::negotiate as negotiate_deflate;
pub(crate) use super::codec::{DataKind, Failure, Incoming, QueueError, ReadProgress};

/// A server-side WebSocket over an upgraded HTTP connection.
pub(crate) type WsStream = WsConn<TokioIo<Upgraded>>;

/// Wraps an upgraded connection (the handshake is already answered).
pub(crate) fn accept(io: Upgraded, settings: &WsSettings, deflate: Option<Agreement>) -> WsStream {
    let limits = Limits {
        max_message: settings.max_message_bytes,
        max_frame: settings.max_frame_bytes.min(settings.max_message_bytes),
    };
    WsConn::new(TokioIo::new(io), limits, deflate.map(DeflateCodec::new))
}

/// Close codes an endpoint may send (RFC 6455 §7.4): 1000–1003, 1007–1014 and 3000–4999.
pub(crate) fn is_sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}
