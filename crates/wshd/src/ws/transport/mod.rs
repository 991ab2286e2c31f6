//! The socket side of a WebSocket connection: [`WsIo`] reads the peer's bytes into the codec
//! and writes its queue out, and [`Metered`] counts the bytes into a [`Wire`]. Sessions,
//! handshakes and the plugin ABI see the codec only through this module, so it can be
//! swapped again.

mod metered;
mod ws_io;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub(crate) use super::codec::deflate::{Agreement, SharedDeflate};
use super::codec::{Limits, Role};
use crate::config::WsSettings;

pub(crate) use self::metered::{Metered, Wire};
pub(crate) use self::ws_io::{ReadStatus, WsIo};
pub(crate) use super::codec::deflate::negotiate as negotiate_deflate;
pub(crate) use super::codec::{
    DataKind, Encoder, Event, Failure, server_deflated_frame, server_message_frame,
};

/// A server-side WebSocket over an upgraded HTTP connection.
pub(crate) type WsStream = WsIo<Metered<Socket>>;

/// The byte stream under a server-side WebSocket.
#[derive(Debug)]
pub(crate) enum Socket {
    /// An upgraded HTTP connection (the only kind outside tests).
    Upgraded(TokioIo<Upgraded>),
    /// An in-memory pipe, for the session's unit tests.
    #[cfg(test)]
    Memory(tokio::io::DuplexStream),
}

/// Wraps an upgraded connection (the handshake is already answered); the [`Wire`] counts the
/// bytes it moves.
pub(crate) fn accept(
    io: Upgraded,
    settings: &WsSettings,
    deflate: Option<Agreement>,
) -> (WsStream, Arc<Wire>) {
    let limits = Limits {
        max_message: settings.max_message_bytes,
        max_frame: settings.max_frame_bytes.min(settings.max_message_bytes),
    };
    let (stream, wire) = over(Socket::Upgraded(TokioIo::new(io)), limits, deflate);
    (stream.with_budget(settings.inflight_budget_bytes), wire)
}

/// The server end of a WebSocket over `socket`, and its byte counts.
pub(crate) fn over(socket: Socket, limits: Limits, deflate: Option<Agreement>) -> (WsStream, Arc<Wire>) {
    let wire = Arc::new(Wire::default());
    let io = Metered::new(socket, Arc::clone(&wire));
    (WsIo::new(io, Role::Server, limits, deflate), wire)
}

impl AsyncRead for Socket {
    #[inline]
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Upgraded(io) => Pin::new(io).poll_read(cx, buf),
            #[cfg(test)]
            Socket::Memory(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    #[inline]
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Upgraded(io) => Pin::new(io).poll_write(cx, buf),
            #[cfg(test)]
            Socket::Memory(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    #[inline]
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Upgraded(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            #[cfg(test)]
            Socket::Memory(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }

    #[inline]
    fn is_write_vectored(&self) -> bool {
        match self {
            Socket::Upgraded(io) => io.is_write_vectored(),
            #[cfg(test)]
            Socket::Memory(io) => io.is_write_vectored(),
        }
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Upgraded(io) => Pin::new(io).poll_flush(cx),
            #[cfg(test)]
            Socket::Memory(io) => Pin::new(io).poll_flush(cx),
        }
    }

    #[inline]
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Upgraded(io) => Pin::new(io).poll_shutdown(cx),
            #[cfg(test)]
            Socket::Memory(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests;
