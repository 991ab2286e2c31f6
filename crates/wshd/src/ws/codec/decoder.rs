//! The decoder: bytes in, [`Event`]s out. It holds what decoding needs between two pieces of
//! input (a split header, the frame being read, the message being assembled, its UTF-8 and
//! inflate state) and nothing about the connection: answering pings and closes, and when the
//! connection ends, are the session's business.

use bytes::Bytes;
use wshd_sdk::CloseCode;

use super::deflate::{Agreement, DeflateCodec, InflateError};
use super::frame::{self, Header, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;
use super::{Failure, Limits, Role, fail};

/// What the decoder found in the peer's bytes, in the order the peer sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// A complete text message (valid UTF-8), in its own allocation (lent to plugins as is).
    Text(Vec<u8>),
    /// A complete binary message, in its own allocation.
    Binary(Vec<u8>),
    /// A ping.
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// The peer's close frame: its code ([`CloseCode::NO_STATUS`] when it carried none) and
    /// reason. Nothing after it is decoded. After a [`Failure`](Event::Failure) the body is
    /// not checked and the reason is dropped: the close only answers ours.
    Close(CloseCode, Bytes),
    /// The peer broke the protocol: fail the connection with this code. Afterwards only the
    /// peer's close frame is looked for; a failure in a close frame ends decoding at once.
    Failure(Failure),
}

/// How far decoding has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Frames are checked and decoded.
    Frames,
    /// A failure was reported: frames are skipped until the peer's close frame.
    AfterFailure,
    /// The peer's close frame arrived, or the stream cannot be decoded any further: nothing
    /// more is consumed.
    Ended,
}

/// Where in a frame the next input byte belongs.
#[derive(Debug)]
enum FrameState {
    /// A header, of which `len` bytes arrived so far (kept in `stash`).
    Header { stash: [u8; 14], len: usize },
    /// A payload, of which `remaining` bytes are still to come; `skip` discards them.
    Payload { header: Header, mask: [u8; 4], remaining: u64, offset: usize, skip: bool },
}

const NO_HEADER_YET: FrameState = FrameState::Header { stash: [0; 14], len: 0 };

/// A data message whose frames are still arriving.
#[derive(Debug)]
struct MessageInProgress {
    text: bool,
    compressed: bool,
    data: Vec<u8>,
    utf8: Utf8Validator,
}

/// Decodes one direction of a WebSocket connection; see the module docs.
#[derive(Debug)]
pub(crate) struct Decoder {
    role: Role,
    limits: Limits,
    /// Decompression (permessage-deflate), when it was agreed; boxed, as it is large and most
    /// connections have none.
    inflater: Option<Box<DeflateCodec>>,
    mode: Mode,
    frame: FrameState,
    message: Option<MessageInProgress>,
    /// The payload of the control frame being read.
    control: Vec<u8>,
    /// A compressed piece, unmasked before it is inflated.
    inflate_input: Vec<u8>,
    /// Payload bytes of data frames taken so far: how far messages in progress advance.
    data_bytes: u64,
}

impl Decoder {
    /// A decoder for what the peer of the `role` end sends; `deflate` when permessage-deflate
    /// was agreed.
    pub(crate) fn new(role: Role, limits: Limits, deflate: Option<Agreement>) -> Decoder {
        Decoder {
            role,
            limits,
            inflater: deflate.map(|agreement| Box::new(DeflateCodec::new(agreement, role))),
            mode: Mode::Frames,
            frame: NO_HEADER_YET,
            message: None,
            control: Vec::new(),
            inflate_input: Vec::new(),
            data_bytes: 0,
        }
    }

    /// Bytes allocated for the message being assembled (0 between messages).
    #[inline]
    pub(crate) fn held_bytes(&self) -> usize {
        self.message.as_ref().map_or(0, |m| m.data.capacity())
    }

    /// While a message or a frame is incomplete, the data payload bytes taken so far (it
    /// grows as the message does); `None` between frames outside a message.
    pub(crate) fn partial_progress(&self) -> Option<u64> {
        let between_frames = matches!(self.frame, FrameState::Header { len: 0, .. });
        (self.mode == Mode::Frames && (self.message.is_some() || !between_frames)).then_some(self.data_bytes)
    }

    /// Gives up on the message in progress (its memory is freed) and fails the connection
    /// with `failure`, as if the peer had broken the protocol; `None` when it already failed.
    pub(crate) fn abandon(&mut self, failure: Failure) -> Option<Event> {
        if self.mode != Mode::Frames {
            return None;
        }
        self.skip_rest_of_frame();
        Some(self.failed(failure))
    }

    /// Whether decoding is over: the peer's close frame arrived, or the stream became
    /// undecodable. Input offered afterwards is left alone.
    pub(crate) fn is_ended(&self) -> bool {
        self.mode == Mode::Ended
    }

    /// Decodes from `input` up to the next event, advancing `input` past what it consumed;
    /// `None` when `input` is used up (what it held is kept until more arrives) or decoding
    /// has ended. Feed it every slice the peer's bytes arrive in, in order, calling it until
    /// it returns `None`.
    pub(crate) fn decode(&mut self, input: &mut &[u8]) -> Option<Event> {
        loop {
            if self.mode == Mode::Ended {
                return None;
            }
            let event = match &mut self.frame {
                // Checked before the input: a frame may end without another byte (an empty
                // payload, or a failure on its last piece).
                FrameState::Payload { remaining: 0, .. } => self.end_frame(),
                _ if input.is_empty() => return None,
                FrameState::Header { .. } => self.read_header(input),
                FrameState::Payload { remaining, .. } => {
                    let n = usize::try_from(*remaining).unwrap_or(usize::MAX).min(input.len());
                    let (piece, rest) = input.split_at(n);
                    *input = rest;
                    self.frame_payload(piece).err().map(|failure| self.failed(failure))
                }
            };
            if event.is_some() {
                return event;
            }
        }
    }

    /// Takes header bytes from `input` (stashing a split header) and starts the frame once the
    /// header is complete.
    fn read_header(&mut self, input: &mut &[u8]) -> Option<Event> {
        let FrameState::Header { stash, len } = &mut self.frame else { return None };
        let parsed = if *len == 0 {
            frame::parse_header(input).map(|parsed| match parsed {
                Some(h) => {
                    *input = &input[h.header_len..];
                    Some(h)
                }
                None => {
                    stash[..input.len()].copy_from_slice(input);
                    *len = input.len();
                    *input = &[];
                    None
                }
            })
        } else {
            let take = (stash.len() - *len).min(input.len());
            stash[*len..*len + take].copy_from_slice(&input[..take]);
            frame::parse_header(&stash[..*len + take]).map(|parsed| match parsed {
                Some(h) => {
                    *input = &input[h.header_len - *len..];
                    *len = 0;
                    Some(h)
                }
                None => {
                    *len += take;
                    *input = &input[take..];
                    None
                }
            })
        };
        match parsed {
            Ok(Some(header)) => self.begin_frame(header),
            Ok(None) => None,
            Err(_) => {
                // Nothing after an undecodable header can be framed: stop. Only the first
                // failure is reported.
                let first = self.mode == Mode::Frames;
                self.mode = Mode::Ended;
                first.then_some(Event::Failure(fail(CloseCode::PROTOCOL_ERROR, "invalid frame length")))
            }
        }
    }

    fn begin_frame(&mut self, h: Header) -> Option<Event> {
        tracing::trace!(
            target: "wshd::frames",
            fin = h.fin,
            rsv1 = h.rsv1,
            opcode = h.opcode,
            len = h.payload_len,
            masked = h.mask.is_some(),
            "frame in"
        );
        let failed = self.mode == Mode::AfterFailure;
        // After a failure only a close frame matters; everything else is skipped.
        let skip = failed && !(h.opcode == OP_CLOSE && h.payload_len <= 125);
        let mask = h.mask.unwrap_or([0; 4]);
        self.frame = FrameState::Payload { header: h, mask, remaining: h.payload_len, offset: 0, skip };
        if !failed && let Err(failure) = self.check_frame(&h) {
            self.skip_rest_of_frame();
            if h.opcode == OP_CLOSE {
                // A broken close is still the peer's close: nothing more will come.
                self.mode = Mode::Ended;
                return Some(Event::Failure(failure));
            }
            return Some(self.failed(failure));
        }
        if h.is_control() {
            self.control.clear();
        }
        None
    }

    /// Validates a frame header (in [`Mode::Frames`]) and starts or continues the message
    /// it belongs to.
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
            OP_CLOSE | OP_PING | OP_PONG => check_control_frame(h),
            OP_CONTINUATION | OP_TEXT | OP_BINARY => self.check_data_frame(h),
            _ => Err(fail(CloseCode::PROTOCOL_ERROR, "unknown opcode")),
        }
    }

    /// Validates a data frame against the message in progress and the size limits, and
    /// starts the message with its first frame.
    fn check_data_frame(&mut self, h: &Header) -> Result<(), Failure> {
        const PROTOCOL: CloseCode = CloseCode::PROTOCOL_ERROR;
        if h.opcode == OP_CONTINUATION {
            if self.message.is_none() {
                return Err(fail(PROTOCOL, "continuation without a message"));
            }
            if h.rsv1 {
                return Err(fail(PROTOCOL, "RSV1 on a continuation frame"));
            }
        } else {
            if self.message.is_some() {
                return Err(fail(PROTOCOL, "new message inside a fragmented one"));
            }
            if h.rsv1 && self.inflater.is_none() {
                return Err(fail(PROTOCOL, "reserved bits set"));
            }
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

    /// Takes a piece of the current frame's payload: unmasked into the control frame or the
    /// message (inflating and validating it as it comes).
    fn frame_payload(&mut self, piece: &[u8]) -> Result<(), Failure> {
        let FrameState::Payload { header, mask, remaining, offset, skip } = &mut self.frame else {
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
        self.data_bytes += piece.len() as u64;
        let new_from = message.data.len();
        if message.compressed {
            self.inflate_input.clear();
            self.inflate_input.extend_from_slice(piece);
            apply_mask(&mut self.inflate_input, mask, start_offset);
            let result = match self.inflater.as_mut() {
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
            return Err(invalid_text());
        }
        Ok(())
    }

    fn skip_rest_of_frame(&mut self) {
        if let FrameState::Payload { skip, .. } = &mut self.frame {
            *skip = true;
        }
    }

    /// The current frame's payload is complete: what it finishes, if anything.
    fn end_frame(&mut self) -> Option<Event> {
        let FrameState::Payload { header, skip, .. } = std::mem::replace(&mut self.frame, NO_HEADER_YET)
        else {
            return None;
        };
        if skip {
            return None;
        }
        if self.mode == Mode::AfterFailure {
            // Only a close frame gets here: the peer's answer to our close, whatever it says.
            self.mode = Mode::Ended;
            let code = match self.control.get(..2) {
                Some(c) => CloseCode::new(u16::from_be_bytes([c[0], c[1]])).unwrap_or(CloseCode::NO_STATUS),
                None => CloseCode::NO_STATUS,
            };
            return Some(Event::Close(code, Bytes::new()));
        }
        match header.opcode {
            OP_PING => Some(Event::Ping(Bytes::copy_from_slice(&self.control))),
            OP_PONG => Some(Event::Pong(Bytes::copy_from_slice(&self.control))),
            OP_CLOSE => {
                // Whatever its content, this is the peer's close: nothing more is decoded.
                self.mode = Mode::Ended;
                Some(match self.close_frame() {
                    Ok((code, reason)) => Event::Close(code, reason),
                    Err(failure) => Event::Failure(failure),
                })
            }
            _ if header.fin => match self.end_message() {
                Ok(event) => event,
                Err(failure) => Some(self.failed(failure)),
            },
            _ => None,
        }
    }

    /// The code and reason of the peer's close frame, checked (§5.5.1, §7.4).
    fn close_frame(&self) -> Result<(CloseCode, Bytes), Failure> {
        match self.control.len() {
            0 => Ok((CloseCode::NO_STATUS, Bytes::new())),
            1 => Err(fail(CloseCode::PROTOCOL_ERROR, "close frame with a 1-byte body")),
            _ => {
                let raw = u16::from_be_bytes([self.control[0], self.control[1]]);
                let Some(code) = CloseCode::new(raw).filter(|code| code.is_sendable()) else {
                    return Err(fail(CloseCode::PROTOCOL_ERROR, "invalid close code"));
                };
                if std::str::from_utf8(&self.control[2..]).is_err() {
                    return Err(fail(CloseCode::INVALID_PAYLOAD, "invalid UTF-8 in the close reason"));
                }
                Ok((code, Bytes::copy_from_slice(&self.control[2..])))
            }
        }
    }

    /// The message's last frame is complete: the message, once inflated and checked.
    fn end_message(&mut self) -> Result<Option<Event>, Failure> {
        let Some(mut message) = self.message.take() else { return Ok(None) };
        if message.compressed {
            let Some(codec) = self.inflater.as_mut() else { return Ok(None) };
            let before = message.data.len();
            codec
                .decompress(&[], true, &mut message.data, self.limits.max_message)
                .map_err(inflate_failure)?;
            if message.text && message.utf8.feed(&message.data[before..]).is_err() {
                return Err(invalid_text());
            }
        }
        if message.text && !message.utf8.is_complete() {
            return Err(invalid_text());
        }
        let data = message.data;
        Ok(Some(if message.text { Event::Text(data) } else { Event::Binary(data) }))
    }

    /// Reports `failure` and from now on looks only for the peer's close.
    fn failed(&mut self, failure: Failure) -> Event {
        self.mode = Mode::AfterFailure;
        self.message = None;
        Event::Failure(failure)
    }
}

/// Validates a control frame's header (§5.5).
fn check_control_frame(h: &Header) -> Result<(), Failure> {
    if !h.fin {
        return Err(fail(CloseCode::PROTOCOL_ERROR, "fragmented control frame"));
    }
    if h.payload_len > 125 {
        return Err(fail(CloseCode::PROTOCOL_ERROR, "control frame too long"));
    }
    if h.rsv1 {
        return Err(fail(CloseCode::PROTOCOL_ERROR, "reserved bits set"));
    }
    Ok(())
}

fn invalid_text() -> Failure {
    fail(CloseCode::INVALID_PAYLOAD, "invalid UTF-8 in a text message")
}

fn inflate_failure(e: InflateError) -> Failure {
    match e {
        InflateError::Corrupt => fail(CloseCode::PROTOCOL_ERROR, "invalid compressed data"),
        InflateError::TooBig => fail(CloseCode::MESSAGE_TOO_BIG, "message too big"),
    }
}
