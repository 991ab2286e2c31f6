//! wshd's WebSocket codec (RFC 6455 framing, RFC 7692 permessage-deflate), for the server
//! and, in the [`Role::Client`] role, for `wshd client`. It does no I/O: the socket is
//! `ws::transport`'s, and what a frame means for the connection (answering a ping or a close,
//! when the connection ends) is the session's.
//!
//! Why our own (see `docs/decisions/0003-websocket-codec.md`): tokio-tungstenite 0.30 cannot
//! negotiate permessage-deflate (it refuses RSV1), validates UTF-8 only at the end of a
//! message, and keeps a fixed, zero-filled read buffer per connection. This codec:
//!
//! * decodes **bytes as they come** ([`Decoder`]): whatever slice a read produced, so the
//!   transport can read into a per-thread scratch buffer and an idle connection owns no read
//!   buffer at all; a payload is copied exactly once (while unmasking) into the message handed
//!   to the handler. Nothing in it needs a socket or a runtime, so it can be fed from a test,
//!   a fuzzer or another transport;
//! * validates text **incrementally**, failing on the first invalid byte (1007), even in the
//!   middle of a frame that has not fully arrived;
//! * queues outgoing frames ([`Encoder`]) as (header, payload) pairs, so nothing is buffered
//!   once a connection has flushed;
//! * compresses and decompresses with zlib (via flate2/zlib-rs), with the window and
//!   context-takeover parameters negotiated per connection, and caps inflated sizes (1009).
//!
//! The role decides masking (§5.3): a server requires masked frames and sends unmasked ones;
//! a client requires unmasked frames and masks what it sends with a fresh key per frame, in
//! a copy of the payload.

mod decoder;
pub(crate) mod deflate;
mod deflate_pool;
mod encoder;
pub(crate) mod frame;
mod mask;
mod utf8;

use wshd_sdk::CloseCode;

pub(crate) use self::decoder::{Decoder, Event};
pub(crate) use self::encoder::{Encoder, Frame, InvalidFrame, server_deflated_frame, server_message_frame};

/// Which end of the connection the codec is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Requires masked frames, sends unmasked ones.
    Server,
    /// Requires unmasked frames, masks what it sends.
    Client,
}

/// The peer broke the protocol: fail the connection with this close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failure {
    /// Close code: 1002, 1007 or 1009.
    pub(crate) code: CloseCode,
    /// Close reason (short, ASCII).
    pub(crate) reason: &'static str,
}

/// A [`Failure`] with `code` and `reason`.
const fn fail(code: CloseCode, reason: &'static str) -> Failure {
    Failure { code, reason }
}

/// Data message kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataKind {
    /// Text.
    Text,
    /// Binary.
    Binary,
}

/// Size limits for incoming data.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Largest message (after decompression).
    pub(crate) max_message: usize,
    /// Largest single frame payload.
    pub(crate) max_frame: usize,
}

#[cfg(test)]
mod tests;
