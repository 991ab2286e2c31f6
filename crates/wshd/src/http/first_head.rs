//! [`FirstHead`]: the reader of a connection until its first request head is complete. It
//! tells the pending registry that the client spoke, notes a `#` in the request line (the
//! HTTP parser keeps only the URI without its fragment, which RFC 6455 §3 forbids), and at
//! the handshake timeout answers `408 Request Timeout` to a client that sent part of a head,
//! or closes silently on one that sent nothing. Until the head is complete it hands the HTTP
//! parser at most `max_header_bytes`: the parser checks its limit only when a read leaves
//! the head incomplete, so a larger head arriving in one read would otherwise be accepted;
//! capped, the parser sees an incomplete head of exactly the limit and answers 431. Once the
//! head is complete it gets out of the way: one branch per read on the upgraded WebSocket
//! stream.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::pending::Watch;

/// The answer to a client whose head is incomplete at the handshake timeout.
const TIMEOUT_REPLY: &[u8] = b"HTTP/1.1 408 Request Timeout\r\n\
    Content-Type: text/plain; charset=utf-8\r\n\
    Content-Length: 47\r\n\
    Connection: close\r\n\r\n\
    the request head was not complete in time: 408\n";

/// Where the scan of the first request line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// Before the request line (empty lines may precede it, RFC 9112 §2.2).
    Before,
    /// Inside it.
    Inside,
    /// Past it.
    Done,
}

/// What is watched while the first head is incomplete.
#[derive(Debug)]
struct Watching {
    watch: Arc<Watch>,
    /// The handshake timeout; `None` when an outer layer answers it (the TCP stream under TLS).
    deadline: Option<Pin<Box<Sleep>>>,
    /// Scan the request line (`false` under TLS, where the bytes are ciphertext).
    line: Line,
    /// Bytes of [`TIMEOUT_REPLY`] written, once the timeout has passed.
    replying: Option<usize>,
    /// Bytes the parser may still read before the head is complete (`usize::MAX`: no cap,
    /// the TCP stream under TLS).
    left: usize,
}

/// A stream that watches its first request head, then passes everything through.
#[derive(Debug)]
pub(crate) struct FirstHead<I> {
    inner: I,
    /// `None` once the first head is complete.
    watching: Option<Box<Watching>>,
}

impl<I> FirstHead<I> {
    /// Watches the head on `inner`: the bytes are HTTP (plain TCP, or TLS after decryption).
    /// The parser gets at most `max_head` bytes before the head is complete.
    pub(crate) fn http(inner: I, watch: Arc<Watch>, timeout: Duration, max_head: usize) -> FirstHead<I> {
        let deadline = Some(Box::pin(tokio::time::sleep(timeout)));
        let watching = Watching { watch, deadline, line: Line::Before, replying: None, left: max_head };
        FirstHead { inner, watching: Some(Box::new(watching)) }
    }

    /// Only notes that the client spoke (the TCP stream under TLS).
    pub(crate) fn heard_only(inner: I, watch: Arc<Watch>) -> FirstHead<I> {
        let watching = Watching { watch, deadline: None, line: Line::Done, replying: None, left: usize::MAX };
        FirstHead { inner, watching: Some(Box::new(watching)) }
    }
}

impl Watching {
    /// Looks at newly read bytes.
    fn saw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.watch.heard();
        for &b in bytes {
            match (self.line, b) {
                (Line::Done, _) => return,
                (Line::Before, b'\r' | b'\n') => {}
                (Line::Before, _) => {
                    self.line = Line::Inside;
                    if b == b'#' {
                        self.watch.saw_fragment();
                    }
                }
                (Line::Inside, b'\n') => self.line = Line::Done,
                (Line::Inside, b'#') => self.watch.saw_fragment(),
                (Line::Inside, _) => {}
            }
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> FirstHead<I> {
    /// Writes the rest of the 408, then reports the end of the stream (the HTTP parser then
    /// closes the connection without an answer of its own).
    fn poll_reply(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(watching) = self.watching.as_mut() else { return Poll::Ready(Ok(())) };
        let mut written = watching.replying.unwrap_or(0);
        while written < TIMEOUT_REPLY.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &TIMEOUT_REPLY[written..]) {
                Poll::Ready(Ok(n)) if n > 0 => written += n,
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    watching.replying = Some(written);
                    return Poll::Pending;
                }
            }
        }
        watching.replying = Some(written);
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => Poll::Ready(Ok(())),
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncRead for FirstHead<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(watching) = this.watching.as_mut() else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        if watching.watch.is_complete() {
            this.watching = None;
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        if watching.replying.is_some() {
            return this.poll_reply(cx);
        }
        let before = buf.filled().len();
        let read = if watching.left == 0 {
            // The parser holds an incomplete head of the limit and answers 431 itself; were
            // it to read again, it would wait for the timeout.
            Poll::Pending
        } else if buf.remaining() <= watching.left {
            Pin::new(&mut this.inner).poll_read(cx, buf)
        } else {
            capped_read(Pin::new(&mut this.inner), cx, buf, watching.left)
        };
        match read {
            Poll::Ready(Ok(())) => {
                let got = &buf.filled()[before..];
                watching.left = watching.left.saturating_sub(got.len());
                watching.saw(got);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some(deadline) = watching.deadline.as_mut() else { return Poll::Pending };
                if deadline.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if !watching.watch.was_heard() {
                    // Nothing was sent: close without an answer (end of stream).
                    return Poll::Ready(Ok(()));
                }
                watching.replying = Some(0);
                this.poll_reply(cx)
            }
        }
    }
}

/// Reads at most `limit` bytes into `buf` (through a buffer of that size: only for a head
/// near its limit).
fn capped_read<I: AsyncRead>(
    inner: Pin<&mut I>,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
    limit: usize,
) -> Poll<io::Result<()>> {
    let mut bytes = vec![0u8; limit];
    let mut small = ReadBuf::new(&mut bytes);
    let read = inner.poll_read(cx, &mut small);
    if let Poll::Ready(Ok(())) = read {
        buf.put_slice(small.filled());
    }
    read
}

impl<I: AsyncWrite + Unpin> AsyncWrite for FirstHead<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> bool {
        let watch = Arc::new(Watch::default());
        let mut watching = Watching {
            watch: Arc::clone(&watch),
            deadline: None,
            line: Line::Before,
            replying: None,
            left: 1 << 16,
        };
        for chunk in chunks {
            watching.saw(chunk);
        }
        assert!(watch.was_heard());
        watch.has_fragment()
    }

    #[test]
    fn a_hash_in_the_request_line_is_seen_whatever_the_pieces() {
        assert!(scan(&[b"GET /echo#top HTTP/1.1\r\nHost: a\r\n\r\n"]));
        assert!(scan(&[b"\r\nGET /ec", b"ho", b"#", b" HTTP/1.1\r\n"]));
        assert!(!scan(&[b"GET /echo?a=b HTTP/1.1\r\n", b"X-Anchor: #top\r\n\r\n"]));
        assert!(!scan(&[b"GET /echo HTTP/1.1\r\nReferer: http://a/#b\r\n\r\n"]));
    }

    #[test]
    fn the_timeout_reply_declares_its_length() {
        let text = std::str::from_utf8(TIMEOUT_REPLY).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.contains(&format!("Content-Length: {}", body.len())), "{head} / {body:?}");
    }
}
