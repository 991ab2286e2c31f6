//! What a handler receives: [`Message`]s (text or binary) and [`Event`]s, whose bytes stay in
//! the host's buffer (no copy), and the [`MessageKind`] a sender chooses.

use std::fmt;
use std::ops::Deref;

use crate::lent::{LentBuf, LentText};

/// Bytes of a received message or pong, held in the host's buffer until dropped.
pub struct Payload(pub(crate) LentBuf);

impl Payload {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({} bytes)", self.len())
    }
}

/// A received text message, held in the host's buffer until dropped. The host validated it
/// as UTF-8 (a connection that sends invalid UTF-8 is closed with 1007 before the handler
/// sees it).
pub struct Text(pub(crate) LentText);

impl Text {
    /// The text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A received data message.
#[derive(Debug)]
#[non_exhaustive]
pub enum Message {
    /// A text message (valid UTF-8).
    Text(Text),
    /// A binary message.
    Binary(Payload),
}

impl Message {
    /// The payload bytes, whatever the kind.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(t) => t.as_str().as_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// The text, for a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(t) => Some(t.as_str()),
            Message::Binary(_) => None,
        }
    }

    /// Whether this is a binary message.
    pub fn is_binary(&self) -> bool {
        matches!(self, Message::Binary(_))
    }

    /// Text or binary.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Text(_) => MessageKind::Text,
            Message::Binary(_) => MessageKind::Binary,
        }
    }
}

/// What [`Connection::recv_event`](crate::Connection::recv_event) yields: a message, or a
/// pong (with notifications on, see
/// [`Connection::set_pong_notifications`](crate::Connection::set_pong_notifications)). Pings
/// are always answered by the host.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A data message.
    Message(Message),
    /// A pong from the peer (the answer to [`Connection::ping`](crate::Connection::ping), or
    /// unsolicited).
    Pong(Payload),
}

/// The kind of a data message: what a fragmented send declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageKind {
    /// UTF-8 text.
    Text,
    /// Binary data.
    Binary,
}
