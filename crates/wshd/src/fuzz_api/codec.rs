//! The frame decoder and the inflater.

use wshd_sdk::CloseCode;

use super::chunks;
use crate::ws::codec::deflate::{Agreement, DeflateCodec, InflateError};
use crate::ws::codec::frame::{self, OP_BINARY, OP_TEXT};
use crate::ws::codec::{Decoder, Event, Limits, Role};

/// A permessage-deflate agreement with `window_bits` for both ends.
fn agreement(window_bits: u8, no_context_takeover: bool) -> Agreement {
    Agreement {
        response: String::new(),
        server_window_bits: window_bits,
        server_no_context_takeover: no_context_takeover,
        client_no_context_takeover: no_context_takeover,
        client_window_bits: window_bits,
        level: 6,
        min_message_bytes: 0,
    }
}

/// Decodes `data[2..]` as a stream of frames, whole and in the pieces `data[1]` picks, and
/// checks that both give the same events and that the events respect the limits.
///
/// `data[0]` picks the role (bit 0), permessage-deflate (bit 1) and its context takeover
/// (bit 2), the message limit (`64 << bits 3..=5`) and a frame limit of half of it (bit 6).
pub fn frame_decoder(data: &[u8]) {
    let [flags, seed, stream @ ..] = data else { return };
    let role = if flags & 1 == 0 { Role::Server } else { Role::Client };
    let deflate = (flags & 2 != 0).then(|| agreement(15, flags & 4 != 0));
    let max_message = 64usize << ((flags >> 3) & 7);
    let limits = Limits { max_message, max_frame: max_message >> ((flags >> 6) & 1) };

    let whole = decode(Decoder::new(role, limits, deflate.clone()), &[stream]);
    let pieces = decode(Decoder::new(role, limits, deflate.clone()), &chunks(*seed | 1, stream));
    // Which failure comes first may depend on where a piece ends (a limit against invalid
    // data further on): compare failures by position only.
    assert_eq!(normalised(&whole), normalised(&pieces), "the events depend on how the bytes arrive");
    check_events(&whole, limits);
    if deflate.is_none() {
        let delivered: usize = whole.iter().map(|e| data_of(e).map_or(0, <[u8]>::len)).sum();
        assert!(delivered <= stream.len(), "{delivered} bytes out of {} in", stream.len());
        check_first_frame(stream, role, limits, whole.first());
    }
}

/// Every event `decoder` gives for `pieces` fed in order; checks that it ends with a close.
fn decode(mut decoder: Decoder, pieces: &[&[u8]]) -> Vec<Event> {
    let mut events = Vec::new();
    for piece in pieces {
        let mut input = *piece;
        while let Some(event) = decoder.decode(&mut input) {
            events.push(event);
        }
        assert!(input.is_empty() || decoder.is_ended(), "input left over by a running decoder");
    }
    let closed = events.iter().any(|e| matches!(e, Event::Close(..)));
    assert!(!closed || decoder.is_ended(), "decoding goes on after the peer's close");
    events
}

/// The events with every failure's code and reason blanked.
fn normalised(events: &[Event]) -> Vec<Event> {
    let blank = crate::ws::codec::Failure { code: CloseCode::PROTOCOL_ERROR, reason: "" };
    events
        .iter()
        .map(|e| if matches!(e, Event::Failure(_)) { Event::Failure(blank) } else { e.clone() })
        .collect()
}

/// A data message's payload.
fn data_of(event: &Event) -> Option<&[u8]> {
    match event {
        Event::Text(data) | Event::Binary(data) => Some(data),
        _ => None,
    }
}

/// The limits and RFC 6455 rules every event sequence respects.
fn check_events(events: &[Event], limits: Limits) {
    let mut failed = false;
    for (i, event) in events.iter().enumerate() {
        match event {
            Event::Text(data) => assert!(std::str::from_utf8(data).is_ok(), "invalid UTF-8 text delivered"),
            Event::Ping(data) | Event::Pong(data) => {
                assert!(data.len() <= 125, "control payload {}", data.len())
            }
            Event::Close(code, reason) => {
                assert_eq!(i + 1, events.len(), "events after the close");
                assert!(reason.len() <= 123 && std::str::from_utf8(reason).is_ok());
                // After a failure the close only answers ours: its code is not checked.
                assert!(failed || code.is_sendable() || *code == CloseCode::NO_STATUS, "close code {code:?}");
            }
            Event::Failure(f) => {
                assert!(!failed, "a second failure reported");
                assert!(matches!(f.code.as_u16(), 1002 | 1007 | 1009), "{f:?}");
                failed = true;
            }
            Event::Binary(_) => {}
        }
        if let Some(data) = data_of(event) {
            assert!(data.len() <= limits.max_message, "{} bytes past the limit", data.len());
        }
    }
}

/// When the stream starts with a whole, valid, single-frame data message, the first event
/// is that message, with exactly the payload length its header announced.
fn check_first_frame(stream: &[u8], role: Role, limits: Limits, first: Option<&Event>) {
    let Ok(Some(h)) = frame::parse_header(stream) else { return };
    let Ok(len) = usize::try_from(h.payload_len) else { return };
    let Some(payload) = stream.get(h.header_len..h.header_len + len) else { return };
    let masked_right = h.mask.is_some() == (role == Role::Server);
    let data_frame = h.opcode == OP_TEXT || h.opcode == OP_BINARY;
    if !(h.fin && masked_right && data_frame && !h.rsv1 && !h.rsv23 && len <= limits.max_frame) {
        return;
    }
    let mask = h.mask.unwrap_or([0; 4]);
    let unmasked: Vec<u8> = payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
    if h.opcode == OP_TEXT && std::str::from_utf8(&unmasked).is_err() {
        return;
    }
    let expected = if h.opcode == OP_TEXT { Event::Text(unmasked) } else { Event::Binary(unmasked) };
    assert_eq!(first, Some(&expected), "header {h:?}");
}

/// Inflates `data[2..]` as one compressed message with a small limit, in the pieces
/// `data[1]` picks, and checks the output never outgrows the limit; or (bit 7 of `data[0]`)
/// compresses it first and checks the round trip.
///
/// `data[0]` picks the limit (`1 << bits 0..=3` bytes) and context takeover (bit 4).
pub fn inflater(data: &[u8]) {
    let [flags, seed, message @ ..] = data else { return };
    let limit = 1usize << (flags & 15);
    let agreed = agreement(9 + seed % 7, flags & 0x10 != 0);
    let mut inflater = DeflateCodec::new(agreed.clone(), Role::Server);
    if flags & 0x80 == 0 {
        let _ = inflate(&mut inflater, &chunks(*seed, message), limit);
        return;
    }
    let compressed = DeflateCodec::new(agreed, Role::Client).compress(message, true);
    let result = inflate(&mut inflater, &chunks(*seed, &compressed), limit);
    match result {
        Ok(out) => assert_eq!(out, message, "the round trip changed the message"),
        Err(e) => assert!(message.len() > limit && e == InflateError::TooBig, "{e:?} on a round trip"),
    }
}

/// Inflates one message given in `pieces`, asserting after each piece that the output
/// respects `limit` (and its buffer twice that, the bound of its growth).
fn inflate(codec: &mut DeflateCodec, pieces: &[&[u8]], limit: usize) -> Result<Vec<u8>, InflateError> {
    let mut out = Vec::new();
    let bound = 2 * (limit + 1024);
    let last = std::iter::once(&[][..]);
    for (i, piece) in pieces.iter().copied().chain(last).enumerate() {
        let result = codec.decompress(piece, i == pieces.len(), &mut out, limit);
        assert!(out.capacity() <= bound, "buffer of {} for a limit of {limit}", out.capacity());
        match result {
            Ok(()) => assert!(out.len() <= limit, "{} bytes inflated past a limit of {limit}", out.len()),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
