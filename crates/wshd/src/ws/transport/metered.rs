//! Byte counts of a connection's socket: [`Metered`] wraps the I/O object and counts into a
//! [`Wire`] that outlives the session (the access log reads it at the end).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes a connection's socket moved (frames and all): the access log's wire counts, and
/// how the session tells that a peer is alive (it sent something) or reading (we wrote
/// something).
#[derive(Debug, Default)]
pub(crate) struct Wire {
    read: AtomicU64,
    written: AtomicU64,
}

impl Wire {
    /// Bytes read so far.
    pub(crate) fn read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// Bytes written so far.
    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    // The socket has one owner at a time (the connection state behind the session's lock),
    // so the counts have one writer: a load and a store, not a locked read-modify-write.

    fn add_read(&self, n: usize) {
        self.read.store(self.read.load(Ordering::Relaxed) + n as u64, Ordering::Relaxed);
    }

    fn add_written(&self, n: usize) {
        self.written.store(self.written.load(Ordering::Relaxed) + n as u64, Ordering::Relaxed);
    }
}

/// An I/O object that counts what goes through it into a [`Wire`].
#[derive(Debug)]
pub(crate) struct Metered<IO> {
    io: IO,
    wire: Arc<Wire>,
}

impl<IO> Metered<IO> {
    /// `io`, counted into `wire`.
    pub(crate) fn new(io: IO, wire: Arc<Wire>) -> Metered<IO> {
        Metered { io, wire }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Metered<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        if n > 0 {
            self.wire.add_read(n);
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Metered<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.wire.add_written(n);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            self.wire.add_written(n);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
