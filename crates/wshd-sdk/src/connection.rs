//! The live connection handed to [`Handler::transfer_data`](crate::Handler::transfer_data):
//! receive, send, ping, close — mod_pywebsocket's `msgutil` in async form.

use std::fmt;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::CloseCode;
use crate::abi::{MSG_BINARY, MSG_TEXT};
use crate::export::{RawConn, Received};
use crate::message::{Event, Message, MessageKind};

/// How the host answers the peer's close frame (pywebsocket's
/// `web_socket_passive_closing_handshake`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CloseReply {
    /// Echo the peer's code and reason (the default, as RFC 6455 §5.5.1 suggests).
    #[default]
    Echo,
    /// Answer with this code and reason.
    Send {
        /// A code an endpoint may send ([`CloseCode::is_sendable`]).
        code: CloseCode,
        /// At most 123 bytes.
        reason: String,
    },
}

/// A close code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloseStatus {
    /// The close code; [`CloseCode::NO_STATUS`] (1005) when the close frame had no code,
    /// [`CloseCode::ABNORMAL`] (1006) when the connection ended without a close frame.
    pub code: CloseCode,
    /// The reason (may be empty).
    pub reason: String,
}

/// Why a send, ping or close did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The connection is closed (or closing): nothing more can be sent.
    Closed,
    /// The argument is invalid: a close code that may not be sent
    /// ([`CloseCode::is_sendable`]), a control payload over 125 bytes, a close reason over
    /// 123 bytes.
    Invalid,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed => f.write_str("the connection is closed"),
            SendError::Invalid => f.write_str("invalid argument for the WebSocket protocol"),
        }
    }
}

impl std::error::Error for SendError {}

/// Facts about the connection, fixed at the handshake.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub(crate) resource: String,
    pub(crate) path: String,
    pub(crate) query: Option<String>,
    pub(crate) protocol: Option<String>,
    pub(crate) peer_addr: Option<SocketAddr>,
    pub(crate) socket_addr: Option<SocketAddr>,
    pub(crate) local_addr: Option<SocketAddr>,
    pub(crate) is_secure: bool,
    pub(crate) http_version: String,
}

impl ConnectionInfo {
    /// The handler's resource path.
    pub fn resource(&self) -> &str {
        &self.resource
    }
    /// The path the client asked for (an alias when routed through one).
    pub fn path(&self) -> &str {
        &self.path
    }
    /// The query string without `?`.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }
    /// The subprotocol chosen in the handshake.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }
    /// The client's address (after trusted-proxy resolution).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_addr
    }
    /// The TCP peer's address.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.socket_addr
    }
    /// The local address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }
    /// Whether the client connected over TLS.
    pub fn is_secure(&self) -> bool {
        self.is_secure
    }
    /// The HTTP version the WebSocket was opened with: `"HTTP/1.1"` (an upgrade) or
    /// `"HTTP/2"` (an RFC 8441 extended CONNECT stream). Everything else about the
    /// connection is the same either way.
    pub fn http_version(&self) -> &str {
        &self.http_version
    }
}

/// A handle that sends on a connection from anywhere (e.g. a task made with
/// [`spawn`](crate::spawn)); clone it freely, like pywebsocket's `MessageSender`.
#[derive(Debug, Clone)]
pub struct Sender {
    raw: RawConn,
}

impl Sender {
    /// Sends a text message and waits until it is written to the socket.
    pub async fn send_text(&self, text: &str) -> Result<(), SendError> {
        self.send_frame(MSG_TEXT, true, text.as_bytes()).await
    }

    /// Sends a binary message and waits until it is written to the socket.
    pub async fn send_binary(&self, data: &[u8]) -> Result<(), SendError> {
        self.send_frame(MSG_BINARY, true, data).await
    }

    /// Sends one frame of a fragmented message with more to follow (pywebsocket's
    /// `send_message(end=False)`): the first frame fixes the message's `kind`, later ones
    /// continue it, and [`send_last_fragment`](Sender::send_last_fragment) ends it. A text
    /// message may be split inside a UTF-8 sequence; the whole must be valid UTF-8.
    pub async fn send_fragment(&self, kind: MessageKind, data: &[u8]) -> Result<(), SendError> {
        self.send_frame(kind_code(kind), false, data).await
    }

    /// Sends the frame that ends a fragmented message (see
    /// [`send_fragment`](Sender::send_fragment)).
    pub async fn send_last_fragment(&self, kind: MessageKind, data: &[u8]) -> Result<(), SendError> {
        self.send_frame(kind_code(kind), true, data).await
    }

    /// Sends a ping with `payload` (at most 125 bytes). The pong is handled by the host.
    pub async fn ping(&self, payload: &[u8]) -> Result<(), SendError> {
        poll_fn(|cx| self.raw.poll_send_ready(cx)).await?;
        self.raw.start_ping(payload)?;
        poll_fn(|cx| self.raw.poll_flush(cx)).await
    }

    /// Starts the closing handshake and waits for the peer's close (bounded by the host's
    /// close timeout). Returns the peer's close status.
    pub async fn close(&self, code: CloseCode, reason: &str) -> Result<CloseStatus, SendError> {
        self.raw.start_close(code, reason)?;
        Ok(poll_fn(|cx| self.raw.poll_closed(cx)).await)
    }

    async fn send_frame(&self, kind: u8, fin: bool, data: &[u8]) -> Result<(), SendError> {
        // One host call in the usual case: ready, queued and written.
        let written = poll_fn(|cx| self.raw.poll_send(cx, kind, fin, data)).await?;
        if !written {
            poll_fn(|cx| self.raw.poll_flush(cx)).await?;
        }
        Ok(())
    }
}

/// The ABI's code for a message kind.
fn kind_code(kind: MessageKind) -> u8 {
    match kind {
        MessageKind::Text => MSG_TEXT,
        MessageKind::Binary => MSG_BINARY,
    }
}

/// The connection: receive with [`recv`](Connection::recv), send with the `send_*` methods.
#[derive(Debug)]
pub struct Connection {
    sender: Sender,
    info: Arc<ConnectionInfo>,
    peer_close: Option<CloseStatus>,
}

impl Connection {
    pub(crate) fn new(raw: RawConn, info: ConnectionInfo) -> Connection {
        Connection { sender: Sender { raw }, info: Arc::new(info), peer_close: None }
    }

    /// The host's connection object.
    pub(crate) fn raw(&self) -> &RawConn {
        &self.sender.raw
    }

    /// Facts fixed at the handshake: resource, subprotocol, addresses.
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// Waits for the next message; `None` once the connection is closed (the host has then
    /// already answered the peer's close). See [`Connection::close_status`].
    pub async fn recv(&mut self) -> Option<Message> {
        loop {
            match self.recv_event().await? {
                Event::Message(m) => return Some(m),
                Event::Pong(_) => continue,
            }
        }
    }

    /// Like [`recv`](Connection::recv), but also yields pongs when
    /// [`set_pong_notifications`](Connection::set_pong_notifications) turned them on
    /// (pywebsocket's `on_pong_handler`).
    pub async fn recv_event(&mut self) -> Option<Event> {
        if self.peer_close.is_some() {
            return None;
        }
        match poll_fn(|cx| self.sender.raw.poll_recv(cx)).await {
            Received::Message(m) => Some(Event::Message(m)),
            Received::Pong(p) => Some(Event::Pong(p)),
            Received::Closed(status) => {
                self.peer_close = Some(status);
                None
            }
        }
    }

    /// Turns pong notifications on or off (off by default).
    pub fn set_pong_notifications(&mut self, enabled: bool) {
        self.sender.raw.set_pong_notifications(enabled);
    }

    /// Chooses how the host answers the peer's close frame.
    pub fn set_close_reply(&mut self, reply: CloseReply) -> Result<(), SendError> {
        match reply {
            CloseReply::Echo => self.sender.raw.set_close_reply(None, ""),
            CloseReply::Send { code, reason } => self.sender.raw.set_close_reply(Some(code), &reason),
        }
    }

    /// The peer's close code and reason, once [`recv`](Connection::recv) returned `None`
    /// (pywebsocket's `ws_close_code` / `ws_close_reason`).
    pub fn close_status(&self) -> Option<&CloseStatus> {
        self.peer_close.as_ref()
    }

    /// Sends a text message.
    pub async fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.sender.send_text(text).await
    }

    /// Sends a binary message.
    pub async fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.sender.send_binary(data).await
    }

    /// Sends a message of the same kind and content as `message` (handy for echoing).
    pub async fn send(&mut self, message: &Message) -> Result<(), SendError> {
        match message {
            Message::Text(t) => self.sender.send_text(t.as_str()).await,
            Message::Binary(b) => self.sender.send_binary(b).await,
        }
    }

    /// Sends one frame of a fragmented message with more to follow; see
    /// [`Sender::send_fragment`].
    pub async fn send_fragment(&mut self, kind: MessageKind, data: &[u8]) -> Result<(), SendError> {
        self.sender.send_fragment(kind, data).await
    }

    /// Sends the frame that ends a fragmented message; see [`Sender::send_last_fragment`].
    pub async fn send_last_fragment(&mut self, kind: MessageKind, data: &[u8]) -> Result<(), SendError> {
        self.sender.send_last_fragment(kind, data).await
    }

    /// Sends a ping.
    pub async fn ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.sender.ping(payload).await
    }

    /// Closes with `code` and `reason` and waits for the peer's close.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<CloseStatus, SendError> {
        let status = self.sender.close(code, reason).await?;
        self.peer_close = Some(status.clone());
        Ok(status)
    }

    /// Drops the TCP connection at once, without a close frame.
    pub fn abort(self) {
        self.sender.raw.abort();
    }

    /// A cloneable handle that can send from another task.
    pub fn sender(&self) -> Sender {
        self.sender.clone()
    }
}
