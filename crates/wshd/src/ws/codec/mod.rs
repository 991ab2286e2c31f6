//! wshd's WebSocket codec (RFC 6455 framing, RFC 7692 permessage-deflate), for the server
//! and, in the [`Role::Client`] role, for `wshd client`.
//!
//! Why our own (see `docs/decisions/0003-websocket-codec.md`): tokio-tungstenite 0.30 cannot
//! negotiate permessage-deflate (it refuses RSV1), validates UTF-8 only at the end of a
//! message, and keeps a fixed, zero-filled read buffer per connection. This codec:
//!
//! * reads into a **per-thread scratch buffer** and parses frames out of it as a stream, so an
//!   idle connection owns no read buffer at all and a payload is copied exactly once (while
//!   unmasking) into the message handed to the handler;
//! * validates text **incrementally**, failing on the first invalid byte (1007), even in the
//!   middle of a frame that has not fully arrived;
//! * queues outgoing frames as (header, payload) pairs written with vectored I/O, so nothing
//!   is buffered once a connection has flushed;
//! * compresses and decompresses with zlib (via flate2/zlib-rs), with the window and
//!   context-takeover parameters negotiated per connection, and caps inflated sizes (1009).
//!
//! The role decides masking (§5.3): a server requires masked frames and sends unmasked ones;
//! a client requires unmasked frames and masks what it sends with a fresh key per frame, in
//! a copy of the payload.

pub(crate) mod deflate;
mod frame;
mod mask;
mod utf8;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wshd_sdk::CloseCode;

use self::deflate::{Agreement, DeflateCodec, InflateError};
use self::frame::{EncodedHeader, Header, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT};
use self::mask::{apply_mask, new_key};
use self::utf8::Utf8Validator;

/// Size of the per-thread read scratch buffer: the most one read takes from a socket.
const SCRATCH_BYTES: usize = 64 * 1024;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_BYTES]);
    /// Where `poll_flush` gathers a small queue for one `send`.
    static WRITE_SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(SMALL_WRITE));
}

/// Which end of the connection the codec is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Requires masked frames, sends unmasked ones.
    Server,
    /// Requires unmasked frames, masks what it sends.
    Client,
}

/// What the codec delivers from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A complete text message (valid UTF-8).
    Text(Bytes),
    /// A complete binary message.
    Binary(Bytes),
    /// A ping (already answered).
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// The peer's close frame: code ([`CloseCode::NO_STATUS`] for none) and reason. Answered
    /// already unless we had sent ours first.
    Close(CloseCode, Bytes),
}

/// The peer broke the protocol: close with this code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failure {
    /// Close code: 1002, 1007 or 1009.
    pub(crate) code: CloseCode,
    /// Close reason (short, ASCII).
    pub(crate) reason: &'static str,
}

const fn fail(code: CloseCode, reason: &'static str) -> Failure {
    Failure { code, reason }
}

/// Outcome of a successful read step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadProgress {
    /// Bytes were read and processed; read again.
    Data,
    /// The peer's close frame arrived: nothing more will be read.
    Closed,
    /// The TCP stream ended (or failed) without a close frame.
    Eof,
}

/// Data message kinds a handler sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataKind {
    /// Text.
    Text,
    /// Binary.
    Binary,
}

/// Why a frame could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueError {
    /// The close frame was sent: nothing more may follow.
    Closed,
    /// Invalid argument (text that is not UTF-8, control payload over 125 bytes).
    Invalid,
}

/// Size limits for incoming data.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Largest message (after decompression).
    pub(crate) max_message: usize,
    /// Largest single frame payload.
    pub(crate) max_frame: usize,
}

#[derive(Debug)]
struct MessageInProgress {
    text: bool,
    compressed: bool,
    data: Vec<u8>,
    utf8: Utf8Validator,
}

#[derive(Debug)]
enum ReadState {
    Header {
        stash: [u8; 14],
        len: usize,
    },
    /// `skip`: the payload is discarded (after a failure).
    Payload {
        header: Header,
        mask: [u8; 4],
        remaining: u64,
        offset: usize,
        skip: bool,
    },
}

#[derive(Debug)]
struct OutFrame {
    header: EncodedHeader,
    payload: Bytes,
    /// Bytes of header + payload already written.
    written: usize,
}

impl OutFrame {
    fn len(&self) -> usize {
        self.header.as_bytes().len() + self.payload.len()
    }

    /// What is left to write: the rest of the header (possibly empty) and of the payload.
    fn unwritten(&self) -> impl Iterator<Item = &[u8]> {
        let header = self.header.as_bytes();
        let (header_rest, payload_rest) = if self.written < header.len() {
            (&header[self.written..], &self.payload[..])
        } else {
            (&[][..], &self.payload[self.written - header.len()..])
        };
        [header_rest, payload_rest].into_iter().filter(|piece| !piece.is_empty())
    }
}

/// Queues up to this many bytes are gathered into one buffer and written with one `send`
/// (see `poll_flush`).
const SMALL_WRITE: usize = 1024;

/// One WebSocket connection over `IO`, as a server or a client.
pub(crate) struct WsConn<IO> {
    io: IO,
    role: Role,
    limits: Limits,
    deflate: Option<DeflateCodec>,
    state: ReadState,
    message: Option<MessageInProgress>,
    control: Vec<u8>,
    inflate_input: Vec<u8>,
    out: VecDeque<OutFrame>,
    out_bytes: usize,
    /// An outgoing fragmented message is open; `Some(compressed)`.
    sending: Option<bool>,
    close_sent: bool,
    close_received: bool,
    read_done: bool,
    /// A failure was reported: frames are now only scanned for the peer's close.
    failed: bool,
    /// The answer to the peer's close; `None` echoes its code and reason.
    close_reply: Option<(CloseCode, String)>,
}

impl<IO> std::fmt::Debug for WsConn<IO> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsConn")
            .field("role", &self.role)
            .field("deflate", &self.deflate)
            .field("out_bytes", &self.out_bytes)
            .field("close_sent", &self.close_sent)
            .field("close_received", &self.close_received)
            .finish_non_exhaustive()
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> WsConn<IO> {
    /// A connection whose handshake is done, for the `role` end; `deflate` when
    /// permessage-deflate was agreed.
    pub(crate) fn new(io: IO, role: Role, limits: Limits, deflate: Option<Agreement>) -> WsConn<IO> {
        WsConn {
            io,
            role,
            limits,
            deflate: deflate.map(|agreement| DeflateCodec::new(agreement, role)),
            state: ReadState::Header { stash: [0; 14], len: 0 },
            message: None,
            control: Vec::new(),
            inflate_input: Vec::new(),
            out: VecDeque::new(),
            out_bytes: 0,
            sending: None,
            close_sent: false,
            close_received: false,
            read_done: false,
            failed: false,
            close_reply: None,
        }
    }

    /// Chooses the answer to the peer's close (`None`: echo its code and reason).
    pub(crate) fn set_close_reply(&mut self, reply: Option<(CloseCode, String)>) {
        self.close_reply = reply;
    }

    /// Whether our close frame has been queued.
    pub(crate) fn close_sent(&self) -> bool {
        self.close_sent
    }

    /// Bytes queued but not yet written.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.out_bytes
    }

    /// Bytes queued behind the frame being written now: what piles up when the peer does not
    /// read (one large message in flight is not a backlog).
    pub(crate) fn queued_behind_front(&self) -> usize {
        self.out.front().map_or(0, |front| self.out_bytes - (front.len() - front.written))
    }

    /// Reads what the socket has and hands every complete item to `deliver`.
    pub(crate) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        deliver: &mut dyn FnMut(Incoming),
    ) -> Poll<Result<ReadProgress, Failure>> {
        if self.read_done {
            return Poll::Ready(Ok(if self.close_received {
                ReadProgress::Closed
            } else {
                ReadProgress::Eof
            }));
        }
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut buf = ReadBuf::new(&mut scratch[..]);
            match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(_)) => {
                    self.read_done = true;
                    Poll::Ready(Ok(ReadProgress::Eof))
                }
                Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                    self.read_done = true;
                    Poll::Ready(Ok(ReadProgress::Eof))
                }
                Poll::Ready(Ok(())) => {
                    let mut data = buf.filled();
                    let result = self.process(&mut data, deliver);
                    if let Err(failure) = result {
                        if self.failed {
                            // Unparseable even when only looking for a close: give up.
                            self.read_done = true;
                        } else {
                            // Report the failure, and keep reading the rest only to find the
                            // peer's answer to our close.
                            self.failed = true;
                            self.message = None;
                            if self.process(&mut data, deliver).is_err() {
                                self.read_done = true;
                            }
                        }
                        return Poll::Ready(Err(failure));
                    }
                    Poll::Ready(Ok(if self.close_received {
                        ReadProgress::Closed
                    } else {
                        ReadProgress::Data
                    }))
                }
            }
        })
    }

    /// Parses `data` (as many frames and partial frames as it holds), advancing it; on a
    /// failure, `data` holds what follows the failing point.
    fn process(&mut self, data: &mut &[u8], deliver: &mut dyn FnMut(Incoming)) -> Result<(), Failure> {
        while !data.is_empty() && !self.close_received {
            match &mut self.state {
                ReadState::Header { stash, len } => {
                    let parsed = if *len == 0 {
                        match frame::parse_header(data) {
                            Ok(Some(h)) => {
                                *data = &data[h.header_len..];
                                Some(h)
                            }
                            Ok(None) => {
                                stash[..data.len()].copy_from_slice(data);
                                *len = data.len();
                                *data = &[];
                                None
                            }
                            Err(_) => return Err(fail(CloseCode::PROTOCOL_ERROR, "invalid frame length")),
                        }
                    } else {
                        let take = (stash.len() - *len).min(data.len());
                        stash[*len..*len + take].copy_from_slice(&data[..take]);
                        match frame::parse_header(&stash[..*len + take]) {
                            Ok(Some(h)) => {
                                *data = &data[h.header_len - *len..];
                                *len = 0;
                                Some(h)
                            }
                            Ok(None) => {
                                *len += take;
                                *data = &data[take..];
                                None
                            }
                            Err(_) => return Err(fail(CloseCode::PROTOCOL_ERROR, "invalid frame length")),
                        }
                    };
                    if let Some(header) = parsed {
                        self.begin_frame(header, deliver)?;
                    }
                }
                ReadState::Payload { remaining, .. } => {
                    let n = usize::try_from(*remaining).unwrap_or(usize::MAX).min(data.len());
                    let (piece, rest) = data.split_at(n);
                    *data = rest;
                    self.frame_payload(piece)?;
                    if let ReadState::Payload { remaining: 0, .. } = self.state {
                        self.end_frame(deliver)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn begin_frame(&mut self, h: Header, deliver: &mut dyn FnMut(Incoming)) -> Result<(), Failure> {
        tracing::trace!(
            target: "wshd::frames",
            fin = h.fin,
            rsv1 = h.rsv1,
            opcode = h.opcode,
            len = h.payload_len,
            masked = h.mask.is_some(),
            "frame in"
        );
        let mask = h.mask.unwrap_or([0; 4]);
        // After a failure only a close frame matters; everything else is skipped.
        let skip = self.failed && !(h.opcode == OP_CLOSE && h.payload_len <= 125);
        self.state = ReadState::Payload { header: h, mask, remaining: h.payload_len, offset: 0, skip };
        if !self.failed
            && let Err(failure) = self.check_frame(&h)
        {
            if let ReadState::Payload { skip, .. } = &mut self.state {
                *skip = true;
            }
            if h.opcode == OP_CLOSE {
                // A broken close is still the peer's close: nothing more will come.
                self.close_received = true;
                self.read_done = true;
            }
            return Err(failure);
        }
        if h.opcode == OP_CLOSE || h.opcode == OP_PING || h.opcode == OP_PONG {
            self.control.clear();
        }
        if h.payload_len == 0 {
            self.end_frame(deliver)?;
        }
        Ok(())
    }

    /// Validates a frame header and starts or continues the message it belongs to.
    fn check_frame(&mut self, h: &Header) -> Result<(), Failure> {
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(fail(CloseCode::PROTOCOL_ERROR, "unmasked client frame")),
            (Role::Client, true) => return Err(fail(CloseCode::PROTOCOL_ERROR, "masked server frame")),
            _ => {}
        }
        if h.rsv23 {
            return Err(fail(CloseCode::PROTOCOL_ERROR, "reserved bits set"));
        }
        match h.opcode {
            OP_CLOSE | OP_PING | OP_PONG => {
                if !h.fin {
                    return Err(fail(CloseCode::PROTOCOL_ERROR, "fragmented control frame"));
                }
                if h.payload_len > 125 {
                    return Err(fail(CloseCode::PROTOCOL_ERROR, "control frame too long"));
                }
                if h.rsv1 {
                    return Err(fail(CloseCode::PROTOCOL_ERROR, "reserved bits set"));
                }
                return Ok(());
            }
            OP_CONTINUATION => {
                if self.message.is_none() {
                    return Err(fail(CloseCode::PROTOCOL_ERROR, "continuation without a message"));
                }
                if h.rsv1 {
                    return Err(fail(CloseCode::PROTOCOL_ERROR, "RSV1 on a continuation frame"));
                }
            }
            OP_TEXT | OP_BINARY => {
                if self.message.is_some() {
                    return Err(fail(CloseCode::PROTOCOL_ERROR, "new message inside a fragmented one"));
                }
                if h.rsv1 && self.deflate.is_none() {
                    return Err(fail(CloseCode::PROTOCOL_ERROR, "reserved bits set"));
                }
            }
            _ => return Err(fail(CloseCode::PROTOCOL_ERROR, "unknown opcode")),
        }
        if h.payload_len > self.limits.max_frame as u64 {
            return Err(fail(CloseCode::MESSAGE_TOO_BIG, "frame too big"));
        }
        let message = self.message.get_or_insert_with(|| MessageInProgress {
            text: h.opcode == OP_TEXT,
            compressed: h.rsv1,
            data: Vec::new(),
            utf8: Utf8Validator::default(),
        });
        if !message.compressed {
            let total = message.data.len() as u64 + h.payload_len;
            if total > self.limits.max_message as u64 {
                return Err(fail(CloseCode::MESSAGE_TOO_BIG, "message too big"));
            }
            // Reserve what the header announces, but not more than 1 MiB ahead of the data
            // actually arriving (a header alone must not make us allocate 16 MiB).
            message.data.reserve_exact((h.payload_len as usize).min(1 << 20));
        }
        Ok(())
    }

    fn frame_payload(&mut self, piece: &[u8]) -> Result<(), Failure> {
        let ReadState::Payload { header, mask, remaining, offset, skip } = &mut self.state else {
            return Ok(());
        };
        let (mask, start_offset) = (*mask, *offset);
        *remaining -= piece.len() as u64;
        *offset += piece.len();
        if *skip {
            return Ok(());
        }
        if header.is_control() {
            let start = self.control.len();
            self.control.extend_from_slice(piece);
            apply_mask(&mut self.control[start..], mask, start_offset);
            return Ok(());
        }
        let Some(message) = self.message.as_mut() else { return Ok(()) };
        let new_from = message.data.len();
        if message.compressed {
            self.inflate_input.clear();
            self.inflate_input.extend_from_slice(piece);
            apply_mask(&mut self.inflate_input, mask, start_offset);
            let result = match self.deflate.as_mut() {
                Some(codec) => codec
                    .decompress(&self.inflate_input, false, &mut message.data, self.limits.max_message)
                    .map_err(inflate_failure),
                None => Err(fail(CloseCode::PROTOCOL_ERROR, "reserved bits set")),
            };
            if let Err(failure) = result {
                self.skip_rest_of_frame();
                return Err(failure);
            }
        } else {
            message.data.extend_from_slice(piece);
            apply_mask(&mut message.data[new_from..], mask, start_offset);
        }
        if message.text && message.utf8.feed(&message.data[new_from..]).is_err() {
            self.skip_rest_of_frame();
            return Err(fail(CloseCode::INVALID_PAYLOAD, "invalid UTF-8 in a text message"));
        }
        Ok(())
    }

    fn skip_rest_of_frame(&mut self) {
        if let ReadState::Payload { skip, .. } = &mut self.state {
            *skip = true;
        }
    }

    fn end_frame(&mut self, deliver: &mut dyn FnMut(Incoming)) -> Result<(), Failure> {
        let ReadState::Payload { header, skip, .. } =
            std::mem::replace(&mut self.state, ReadState::Header { stash: [0; 14], len: 0 })
        else {
            return Ok(());
        };
        if self.failed {
            if header.opcode == OP_CLOSE && !skip {
                // The peer's answer to our close; its content no longer matters (a code outside
                // 1000-4999 is reported as none).
                let code = match self.control.get(..2) {
                    Some(c) => {
                        CloseCode::new(u16::from_be_bytes([c[0], c[1]])).unwrap_or(CloseCode::NO_STATUS)
                    }
                    None => CloseCode::NO_STATUS,
                };
                self.close_received = true;
                self.read_done = true;
                deliver(Incoming::Close(code, Bytes::new()));
            }
            return Ok(());
        }
        if skip {
            return Ok(());
        }
        match header.opcode {
            OP_PING => {
                let payload = Bytes::copy_from_slice(&self.control);
                if !self.close_sent {
                    self.push_frame(true, false, OP_PONG, payload.clone());
                }
                deliver(Incoming::Ping(payload));
            }
            OP_PONG => deliver(Incoming::Pong(Bytes::copy_from_slice(&self.control))),
            OP_CLOSE => {
                // Whatever its content, this is the peer's close: nothing more will be read,
                // and an invalid one is answered with our failure's close (not an echo).
                self.close_received = true;
                self.read_done = true;
                let (code, reason) = match self.control.len() {
                    0 => (CloseCode::NO_STATUS, Bytes::new()),
                    1 => return Err(fail(CloseCode::PROTOCOL_ERROR, "close frame with a 1-byte body")),
                    _ => {
                        let raw = u16::from_be_bytes([self.control[0], self.control[1]]);
                        let Some(code) = CloseCode::new(raw).filter(|code| code.is_sendable()) else {
                            return Err(fail(CloseCode::PROTOCOL_ERROR, "invalid close code"));
                        };
                        if std::str::from_utf8(&self.control[2..]).is_err() {
                            return Err(fail(
                                CloseCode::INVALID_PAYLOAD,
                                "invalid UTF-8 in the close reason",
                            ));
                        }
                        (code, Bytes::copy_from_slice(&self.control[2..]))
                    }
                };
                if !self.close_sent {
                    // The passive close: answer with the peer's code and reason, or the reply
                    // the handler chose.
                    let mut body = Vec::with_capacity(2 + reason.len());
                    match &self.close_reply {
                        Some((reply_code, reply_reason)) => {
                            body.extend_from_slice(&reply_code.as_u16().to_be_bytes());
                            body.extend_from_slice(reply_reason.as_bytes());
                        }
                        None if code != CloseCode::NO_STATUS => {
                            body.extend_from_slice(&code.as_u16().to_be_bytes());
                            body.extend_from_slice(&reason);
                        }
                        None => {}
                    }
                    self.push_frame(true, false, OP_CLOSE, Bytes::from(body));
                    self.close_sent = true;
                }
                deliver(Incoming::Close(code, reason));
            }
            _ if header.fin => {
                let Some(mut message) = self.message.take() else { return Ok(()) };
                if message.compressed {
                    let Some(codec) = self.deflate.as_mut() else { return Ok(()) };
                    let before = message.data.len();
                    codec
                        .decompress(&[], true, &mut message.data, self.limits.max_message)
                        .map_err(inflate_failure)?;
                    if message.text && message.utf8.feed(&message.data[before..]).is_err() {
                        return Err(fail(CloseCode::INVALID_PAYLOAD, "invalid UTF-8 in a text message"));
                    }
                }
                if message.text && !message.utf8.is_complete() {
                    return Err(fail(CloseCode::INVALID_PAYLOAD, "invalid UTF-8 in a text message"));
                }
                let data = Bytes::from(message.data);
                deliver(if message.text { Incoming::Text(data) } else { Incoming::Binary(data) });
            }
            _ => {}
        }
        Ok(())
    }

    fn push_frame(&mut self, fin: bool, rsv1: bool, opcode: u8, payload: Bytes) {
        tracing::trace!(target: "wshd::frames", fin, rsv1, opcode, len = payload.len(), "frame out");
        let header = EncodedHeader::new(fin, rsv1, opcode, payload.len());
        let (header, payload) = match self.role {
            Role::Server => (header, payload),
            Role::Client => {
                // Never masked where anyone else sees it: `Vec::from` takes back the buffer of a
                // payload built here (no copy) and copies a shared one (a pong's payload, also
                // delivered as `Incoming::Ping`).
                let key = new_key();
                let mut masked = Vec::from(payload);
                apply_mask(&mut masked, key, 0);
                (header.with_mask(key), Bytes::from(masked))
            }
        };
        let frame = OutFrame { header, payload, written: 0 };
        self.out_bytes += frame.len();
        self.out.push_back(frame);
    }

    /// Queues a data frame (copying `data`), compressing it when negotiated.
    pub(crate) fn queue_data(&mut self, kind: DataKind, fin: bool, data: &[u8]) -> Result<(), QueueError> {
        if self.close_sent {
            return Err(QueueError::Closed);
        }
        let first = self.sending.is_none();
        if first && fin && kind == DataKind::Text && std::str::from_utf8(data).is_err() {
            return Err(QueueError::Invalid);
        }
        let compress = match self.sending {
            Some(compress) => compress,
            None => self.deflate.as_ref().is_some_and(|d| d.wants_to_compress(data.len())),
        };
        let opcode = match (first, kind) {
            (false, _) => OP_CONTINUATION,
            (true, DataKind::Text) => OP_TEXT,
            (true, DataKind::Binary) => OP_BINARY,
        };
        self.sending = if fin { None } else { Some(compress) };
        if !compress && self.role == Role::Server && self.out.is_empty() && data.len() <= SMALL_WRITE {
            self.write_through(fin, opcode, data);
        } else {
            let payload = match (compress, self.deflate.as_mut()) {
                (true, Some(codec)) => Bytes::from(codec.compress(data, fin)),
                _ => Bytes::copy_from_slice(data),
            };
            self.push_frame(fin, first && compress, opcode, payload);
        }
        Ok(())
    }

    /// Writes a small frame straight to the socket when nothing is queued before it, so the
    /// common case (a short reply) costs no allocation; what the socket does not take now is
    /// queued for `poll_flush`.
    fn write_through(&mut self, fin: bool, opcode: u8, data: &[u8]) {
        tracing::trace!(target: "wshd::frames", fin, rsv1 = false, opcode, len = data.len(), "frame out");
        let header = EncodedHeader::new(fin, false, opcode, data.len());
        let mut buf = WRITE_SCRATCH.with(RefCell::take);
        buf.clear();
        buf.extend_from_slice(header.as_bytes());
        buf.extend_from_slice(data);
        // There is no task context here: a socket that is not writable keeps a no-op waker,
        // which the `poll_flush` that follows (with the task's context) replaces.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let written = match Pin::new(&mut self.io).poll_write(&mut cx, &buf) {
            Poll::Ready(Ok(n)) => n,
            // An error comes back from `poll_flush`, which writes the frame again.
            Poll::Ready(Err(_)) | Poll::Pending => 0,
        };
        if written < buf.len() {
            let frame = OutFrame { header, payload: Bytes::copy_from_slice(data), written };
            self.out_bytes += frame.len() - written;
            self.out.push_back(frame);
        }
        WRITE_SCRATCH.with(|cell| cell.replace(buf));
    }

    /// Queues a ping.
    pub(crate) fn queue_ping(&mut self, data: &[u8]) -> Result<(), QueueError> {
        if self.close_sent {
            return Err(QueueError::Closed);
        }
        if data.len() > 125 {
            return Err(QueueError::Invalid);
        }
        self.push_frame(true, false, OP_PING, Bytes::copy_from_slice(data));
        Ok(())
    }

    /// Queues our close frame (once; later calls do nothing).
    pub(crate) fn queue_close(&mut self, code: CloseCode, reason: &str) {
        if self.close_sent {
            return;
        }
        let mut body = Vec::with_capacity(2 + reason.len());
        body.extend_from_slice(&code.as_u16().to_be_bytes());
        body.extend_from_slice(reason.as_bytes());
        self.push_frame(true, false, OP_CLOSE, Bytes::from(body));
        self.close_sent = true;
    }

    /// Writes queued frames to the socket: small queues copied into one buffer and written
    /// with `send` (cheaper in the kernel than `writev` of a header and a payload), larger
    /// ones with `writev`, without a copy.
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let polled = if self.out_bytes <= SMALL_WRITE {
                // Taken out of (and put back into) its cell, so no borrow spans the write.
                let mut buf = WRITE_SCRATCH.with(RefCell::take);
                buf.clear();
                for frame in &self.out {
                    frame.unwritten().for_each(|piece| buf.extend_from_slice(piece));
                }
                let polled = Pin::new(&mut self.io).poll_write(cx, &buf);
                WRITE_SCRATCH.with(|cell| cell.replace(buf));
                polled
            } else {
                let mut slices = [io::IoSlice::new(&[]); 32];
                let mut count = 0;
                for frame in self.out.iter().take(slices.len() / 2) {
                    for piece in frame.unwritten() {
                        slices[count] = io::IoSlice::new(piece);
                        count += 1;
                    }
                }
                Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count])
            };
            let written = match polled {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => n,
            };
            self.out_bytes -= written;
            let mut left = written;
            while left > 0 {
                let Some(frame) = self.out.front_mut() else { break };
                let rest = frame.len() - frame.written;
                if left >= rest {
                    left -= rest;
                    self.out.pop_front();
                } else {
                    frame.written += left;
                    left = 0;
                }
            }
        }
        if self.out.capacity() > 64 {
            self.out.shrink_to(8);
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }
}

fn inflate_failure(e: InflateError) -> Failure {
    match e {
        InflateError::Corrupt => fail(CloseCode::PROTOCOL_ERROR, "invalid compressed data"),
        InflateError::TooBig => fail(CloseCode::MESSAGE_TOO_BIG, "message too big"),
    }
}

#[cfg(test)]
mod tests;
