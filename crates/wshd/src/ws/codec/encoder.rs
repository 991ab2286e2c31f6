//! The encoder: frames built into a write queue of (header, payload) pairs, which the
//! transport writes out. It knows framing (opcodes, fragmentation, masking, compression) and
//! nothing about the connection: whether a frame may still be sent is the session's call.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::Bytes;
use wshd_sdk::CloseCode;

use super::deflate::{Agreement, DeflateCodec};
use super::frame::{EncodedHeader, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT};
use super::mask::{apply_mask, new_key};
use super::{DataKind, Role};

/// A frame could not be built from what was asked: text that is not UTF-8, or a control
/// payload over 125 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidFrame;

/// One encoded frame, ready to be queued or written.
#[derive(Debug)]
pub(crate) struct Frame<'a> {
    header: EncodedHeader,
    payload: Payload<'a>,
}

/// A frame's payload: the caller's bytes as they are (a server's uncompressed data), or
/// bytes built for the frame (compressed, masked, or a control frame's).
#[derive(Debug)]
enum Payload<'a> {
    Borrowed(&'a [u8]),
    Owned(Bytes),
}

impl Frame<'_> {
    /// The header's bytes.
    pub(crate) fn header(&self) -> &[u8] {
        self.header.as_bytes()
    }

    /// The payload's bytes when they are the caller's, untransformed (so the frame can be
    /// written without building anything).
    pub(crate) fn borrowed_payload(&self) -> Option<&[u8]> {
        match self.payload {
            Payload::Borrowed(data) => Some(data),
            Payload::Owned(_) => None,
        }
    }
}

/// A queued frame.
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

/// A whole, unmasked, uncompressed server data frame of `data` (header and payload in one
/// buffer), to be queued on any number of connections with
/// [`Encoder::queue_prebuilt`]; text must be UTF-8.
pub(crate) fn server_message_frame(kind: DataKind, data: &[u8]) -> Result<Bytes, InvalidFrame> {
    if kind == DataKind::Text && std::str::from_utf8(data).is_err() {
        return Err(InvalidFrame);
    }
    let opcode = match kind {
        DataKind::Text => OP_TEXT,
        DataKind::Binary => OP_BINARY,
    };
    Ok(prebuilt_frame(false, opcode, data))
}

/// The compressed counterpart of `plain` (a frame made by [`server_message_frame`]): the
/// same opcode, RSV1 set, `compressed` as the payload (permessage-deflate's whole-message
/// output, e.g. from `SharedDeflate::compress`).
pub(crate) fn server_deflated_frame(plain: &[u8], compressed: &[u8]) -> Bytes {
    let opcode = plain.first().map_or(OP_BINARY, |first| first & 0x0f);
    prebuilt_frame(true, opcode, compressed)
}

/// A whole, final, unmasked frame in one buffer.
fn prebuilt_frame(rsv1: bool, opcode: u8, payload: &[u8]) -> Bytes {
    let header = EncodedHeader::new(true, rsv1, opcode, payload.len());
    let mut frame = Vec::with_capacity(header.as_bytes().len() + payload.len());
    frame.extend_from_slice(header.as_bytes());
    frame.extend_from_slice(payload);
    Bytes::from(frame)
}

/// Builds the frames one end sends and queues them until they are written.
#[derive(Debug)]
pub(crate) struct Encoder {
    role: Role,
    /// Compression (permessage-deflate), when it was agreed; boxed, as it is large and most
    /// connections have none.
    deflater: Option<Box<DeflateCodec>>,
    frames: VecDeque<OutFrame>,
    /// Bytes queued and not yet written.
    queued: usize,
    /// An outgoing fragmented message is open: `Some(compressed)`.
    fragmented: Option<bool>,
}

impl Encoder {
    /// The encoder of the `role` end; `deflate` when permessage-deflate was agreed.
    pub(crate) fn new(role: Role, deflate: Option<Agreement>) -> Encoder {
        Encoder {
            role,
            deflater: deflate.map(|agreement| Box::new(DeflateCodec::new(agreement, role))),
            frames: VecDeque::new(),
            queued: 0,
            fragmented: None,
        }
    }

    /// Bytes queued but not yet written.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued
    }

    /// Whether nothing waits to be written.
    pub(crate) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Bytes queued behind the frame being written now: what piles up when the peer does not
    /// read (one large message in flight is not a backlog).
    pub(crate) fn queued_behind_front(&self) -> usize {
        self.frames.front().map_or(0, |front| self.queued - (front.len() - front.written))
    }

    /// Builds a data frame of `data` (a whole message, or with `fin` false the first or a
    /// middle fragment), compressed when negotiated. Text must be valid UTF-8 when it is a
    /// whole message (fragments are not checked).
    pub(crate) fn data_frame<'a>(
        &mut self,
        kind: DataKind,
        fin: bool,
        data: &'a [u8],
    ) -> Result<Frame<'a>, InvalidFrame> {
        let first = self.fragmented.is_none();
        if first && fin && kind == DataKind::Text && std::str::from_utf8(data).is_err() {
            return Err(InvalidFrame);
        }
        let compress = match self.fragmented {
            Some(compress) => compress,
            None => self.deflater.as_ref().is_some_and(|d| d.wants_to_compress(data.len())),
        };
        let opcode = match (first, kind) {
            (false, _) => OP_CONTINUATION,
            (true, DataKind::Text) => OP_TEXT,
            (true, DataKind::Binary) => OP_BINARY,
        };
        self.fragmented = if fin { None } else { Some(compress) };
        let payload = match (compress, self.deflater.as_mut()) {
            (true, Some(codec)) => Payload::Owned(Bytes::from(codec.compress(data, fin))),
            _ => Payload::Borrowed(data),
        };
        Ok(self.frame(fin, first && compress, opcode, payload))
    }

    /// Frames `payload`; in the client role the payload is masked with a fresh key, in a copy
    /// (never where anyone else sees it).
    fn frame<'a>(&self, fin: bool, rsv1: bool, opcode: u8, payload: Payload<'a>) -> Frame<'a> {
        let len = match &payload {
            Payload::Borrowed(data) => data.len(),
            Payload::Owned(data) => data.len(),
        };
        tracing::trace!(target: "wshd::frames", fin, rsv1, opcode, len, "frame out");
        let header = EncodedHeader::new(fin, rsv1, opcode, len);
        match self.role {
            Role::Server => Frame { header, payload },
            Role::Client => {
                // `Vec::from` takes back the buffer of a payload built here (no copy) and copies a
                // borrowed or shared one (a pong's payload is also the ping's).
                let key = new_key();
                let mut masked = match payload {
                    Payload::Borrowed(data) => data.to_vec(),
                    Payload::Owned(data) => Vec::from(data),
                };
                apply_mask(&mut masked, key, 0);
                Frame { header: header.with_mask(key), payload: Payload::Owned(Bytes::from(masked)) }
            }
        }
    }

    /// Queues `frame` (copying a borrowed payload).
    pub(crate) fn queue(&mut self, frame: Frame<'_>) {
        self.queue_rest(frame, 0);
    }

    /// Queues what is left of `frame` after its first `written` bytes went out already.
    pub(crate) fn queue_rest(&mut self, frame: Frame<'_>, written: usize) {
        let payload = match frame.payload {
            Payload::Borrowed(data) => Bytes::copy_from_slice(data),
            Payload::Owned(data) => data,
        };
        let frame = OutFrame { header: frame.header, payload, written };
        self.queued += frame.len() - written;
        self.frames.push_back(frame);
    }

    /// Queues a data frame; see [`data_frame`](Self::data_frame).
    pub(crate) fn queue_data(&mut self, kind: DataKind, fin: bool, data: &[u8]) -> Result<(), InvalidFrame> {
        let frame = self.data_frame(kind, fin, data)?;
        self.queue(frame);
        Ok(())
    }

    /// Whether an outgoing fragmented message is open (a frame built elsewhere must wait
    /// until its last fragment is queued).
    pub(crate) fn is_mid_message(&self) -> bool {
        self.fragmented.is_some()
    }

    /// Queues a whole frame built elsewhere (header and payload in one buffer, e.g. by
    /// [`server_message_frame`], or compressed by [`server_deflated_frame`] for a connection
    /// whose server side resets after every message); it bypasses this connection's
    /// compressor and must not be queued inside a fragmented message.
    pub(crate) fn queue_prebuilt(&mut self, frame: Bytes) {
        debug_assert!(self.fragmented.is_none() && self.role == Role::Server);
        let frame = OutFrame { header: EncodedHeader::empty(), payload: frame, written: 0 };
        self.queued += frame.len();
        self.frames.push_back(frame);
    }

    /// Queues a ping.
    pub(crate) fn queue_ping(&mut self, data: &[u8]) -> Result<(), InvalidFrame> {
        if data.len() > 125 {
            return Err(InvalidFrame);
        }
        let frame = self.frame(true, false, OP_PING, Payload::Borrowed(data));
        self.queue(frame);
        Ok(())
    }

    /// Queues the answer to a ping (its payload, at most 125 bytes as the decoder checked).
    pub(crate) fn queue_pong(&mut self, payload: Bytes) {
        let frame = self.frame(true, false, OP_PONG, Payload::Owned(payload));
        self.queue(frame);
    }

    /// Queues a close frame: `code` and `reason`, or an empty body when `code` is `None`.
    pub(crate) fn queue_close(&mut self, code: Option<CloseCode>, reason: &[u8]) {
        let mut body = Vec::with_capacity(2 + reason.len());
        if let Some(code) = code {
            body.extend_from_slice(&code.as_u16().to_be_bytes());
            body.extend_from_slice(reason);
        }
        let frame = self.frame(true, false, OP_CLOSE, Payload::Owned(Bytes::from(body)));
        self.queue(frame);
    }

    /// Appends every unwritten byte to `buf` (for a queue small enough to copy).
    pub(crate) fn gather_into(&self, buf: &mut Vec<u8>) {
        for frame in &self.frames {
            frame.unwritten().for_each(|piece| buf.extend_from_slice(piece));
        }
    }

    /// Fills `slices` with the unwritten pieces of the first frames (two per frame at most);
    /// returns how many it filled.
    pub(crate) fn unwritten_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut count = 0;
        for frame in self.frames.iter().take(slices.len() / 2) {
            for piece in frame.unwritten() {
                slices[count] = IoSlice::new(piece);
                count += 1;
            }
        }
        count
    }

    /// `written` bytes from the front of the queue went out.
    pub(crate) fn consume(&mut self, written: usize) {
        self.queued -= written;
        let mut left = written;
        while left > 0 {
            let Some(frame) = self.frames.front_mut() else { break };
            let rest = frame.len() - frame.written;
            if left >= rest {
                left -= rest;
                self.frames.pop_front();
            } else {
                frame.written += left;
                left = 0;
            }
        }
        if self.frames.is_empty() && self.frames.capacity() > 64 {
            self.frames.shrink_to(8);
        }
    }
}
