//! Codec tests: the decoder fed bytes directly (no socket, no runtime), and the encoder's
//! frames read back.

use bytes::Bytes;
use wshd_sdk::CloseCode;

use super::deflate::{self, Agreement, DeflateCodec, DeflatePolicy, negotiate, parse_response};
use super::frame::{
    EncodedHeader, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT, parse_header,
};
use super::mask::apply_mask;
use super::*;

const LIMITS: Limits = Limits { max_message: 1 << 20, max_frame: 1 << 20 };

/// A frame as a client sends it (masked).
fn client_frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![(if fin { 0x80 } else { 0 }) | (if rsv1 { 0x40 } else { 0 }) | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask = [0xa1, 0xb2, 0xc3, 0xd4];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// A whole, masked client frame.
fn client(opcode: u8, payload: &[u8]) -> Vec<u8> {
    client_frame(true, false, opcode, payload)
}

/// A frame as a server sends it (unmasked).
fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = EncodedHeader::new(fin, false, opcode, payload.len()).as_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

fn server_decoder() -> Decoder {
    Decoder::new(Role::Server, LIMITS, None)
}

/// Every event `decoder` finds in `input`, fed in one piece.
fn decode_all(decoder: &mut Decoder, mut input: &[u8]) -> Vec<Event> {
    std::iter::from_fn(|| decoder.decode(&mut input)).collect()
}

/// Every event a fresh server decoder finds in `input` fed in pieces of `piece` bytes.
fn decode_in_pieces(input: &[u8], piece: usize) -> Vec<Event> {
    let mut decoder = server_decoder();
    input.chunks(piece).flat_map(|chunk| decode_all(&mut decoder, chunk)).collect()
}

/// The failure's code, or a panic with what came instead.
fn failure_code(events: &[Event]) -> u16 {
    match events.last() {
        Some(Event::Failure(failure)) => failure.code.as_u16(),
        other => panic!("no failure at the end: {other:?} ({events:?})"),
    }
}

fn text(s: &str) -> Event {
    Event::Text(s.as_bytes().to_vec())
}

#[test]
fn fragments_with_control_frames_between_them_decode_alike_in_any_pieces() {
    let mut wire = client_frame(false, false, OP_TEXT, "héllo ".as_bytes());
    wire.extend(client(OP_PING, b"p"));
    wire.extend(client_frame(false, false, OP_CONTINUATION, "wö".as_bytes()));
    wire.extend(client(OP_PONG, b""));
    wire.extend(client_frame(true, false, OP_CONTINUATION, "rld".as_bytes()));
    wire.extend(client(OP_BINARY, &[7u8; 300]));
    wire.extend(client(OP_TEXT, b""));
    let expected = vec![
        Event::Ping(Bytes::from_static(b"p")),
        Event::Pong(Bytes::new()),
        text("héllo wörld"),
        Event::Binary(vec![7u8; 300]),
        text(""),
    ];
    for piece in [1, 2, 3, 5, 7, 13, wire.len()] {
        assert_eq!(decode_in_pieces(&wire, piece), expected, "pieces of {piece} bytes");
    }
}

#[test]
fn a_header_split_anywhere_is_kept_until_it_is_complete() {
    // A 16-bit length and a mask: a 8-byte header.
    let wire = client(OP_BINARY, &[1u8; 200]);
    for split in 1..wire.len() {
        let mut decoder = server_decoder();
        let (a, b) = wire.split_at(split);
        let mut events = decode_all(&mut decoder, a);
        assert!(events.is_empty(), "split {split}: {events:?}");
        events.extend(decode_all(&mut decoder, b));
        assert_eq!(events, vec![Event::Binary(vec![1u8; 200])], "split {split}");
    }
}

#[test]
fn invalid_utf8_fails_before_the_frame_ends() {
    let mut decoder = server_decoder();
    let frame = client(OP_TEXT, b"abc\xffdefghijklmnop");
    let events = decode_all(&mut decoder, &frame[..frame.len() - 8]);
    assert_eq!(failure_code(&events), 1007);
}

#[test]
fn utf8_split_across_frames_is_checked_as_one_text() {
    // "€" (e2 82 ac) split over two fragments is valid...
    let mut wire = client_frame(false, false, OP_TEXT, b"a\xe2\x82");
    wire.extend(client_frame(true, false, OP_CONTINUATION, b"\xacb"));
    assert_eq!(decode_in_pieces(&wire, 4), vec![text("a€b")]);
    // ...a sequence broken by the next fragment fails on that fragment's first byte...
    let mut wire = client_frame(false, false, OP_TEXT, b"a\xf0\x90");
    let first_len = wire.len();
    wire.extend(client_frame(true, false, OP_CONTINUATION, b"(b"));
    let mut decoder = server_decoder();
    assert_eq!(decode_all(&mut decoder, &wire[..first_len]), vec![], "valid so far");
    assert_eq!(failure_code(&decode_all(&mut decoder, &wire[first_len..])), 1007);
    // ...and a message ending inside a sequence fails at its end.
    let mut wire = client_frame(false, false, OP_TEXT, b"a");
    wire.extend(client_frame(true, false, OP_CONTINUATION, b"\xe2\x82"));
    assert_eq!(failure_code(&decode_in_pieces(&wire, 100)), 1007);
}

#[test]
fn protocol_violations_fail_with_1002_and_oversize_with_1009() {
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (
            {
                let mut f = client(OP_TEXT, b"x");
                f[1] &= 0x7f; // unmasked
                f.truncate(3);
                f
            },
            1002,
        ),
        (client(OP_CONTINUATION, b"x"), 1002),
        (client_frame(false, false, OP_PING, b"x"), 1002),
        (client(OP_PING, &[0; 126]), 1002),
        (client(0x3, b""), 1002),
        (client(0xb, b""), 1002),
        (client_frame(true, true, OP_TEXT, b"x"), 1002),
        (
            {
                client_frame(true, false, OP_BINARY, b"x")
                    .into_iter()
                    .enumerate()
                    .map(|(i, b)| if i == 0 { b | 0x20 } else { b })
                    .collect()
            },
            1002,
        ),
        (
            {
                let mut f = client_frame(false, false, OP_TEXT, b"x");
                f.extend(client(OP_TEXT, b"y"));
                f
            },
            1002,
        ),
        // A 64-bit length with its top bit set.
        (vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4], 1002),
        // Only the header and a little payload: the size is refused from the header alone.
        (client(OP_BINARY, &vec![0; (1 << 20) + 1])[..100].to_vec(), 1009),
    ];
    for (wire, code) in cases {
        let events = decode_in_pieces(&wire, wire.len());
        assert_eq!(failure_code(&events), code, "{:02x?}", &wire[..wire.len().min(8)]);
    }
}

#[test]
fn close_codes_and_reasons_are_checked() {
    let close = |body: &[u8]| decode_in_pieces(&client(OP_CLOSE, body), 64);
    assert_eq!(close(b""), vec![Event::Close(CloseCode::NO_STATUS, Bytes::new())]);
    assert_eq!(close(b"\x03\xe8"), vec![Event::Close(CloseCode::NORMAL, Bytes::new())]);
    assert_eq!(
        close(b"\x0f\xa0bye"),
        vec![Event::Close(CloseCode::new(4000).unwrap_or(CloseCode::NORMAL), Bytes::from_static(b"bye"))]
    );
    for refused in [999u16, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        assert_eq!(failure_code(&close(&refused.to_be_bytes())), 1002, "code {refused}");
    }
    assert_eq!(failure_code(&close(b"\x03")), 1002, "a 1-byte body");
    assert_eq!(failure_code(&close(b"\x03\xe8\xff")), 1007, "a reason that is not UTF-8");
}

#[test]
fn nothing_after_the_close_frame_is_decoded() {
    let mut wire = client(OP_CLOSE, b"\x03\xe8");
    wire.extend(client(OP_TEXT, b"late"));
    let mut decoder = server_decoder();
    let mut input = &wire[..];
    assert_eq!(decoder.decode(&mut input), Some(Event::Close(CloseCode::NORMAL, Bytes::new())));
    assert!(decoder.is_ended());
    assert_eq!(decoder.decode(&mut input), None);
    assert_eq!(input.len(), client(OP_TEXT, b"late").len(), "the rest is left alone");
    // A broken close ends decoding too.
    let mut decoder = server_decoder();
    let events = decode_all(&mut decoder, &client(OP_CLOSE, &999u16.to_be_bytes()));
    assert_eq!(failure_code(&events), 1002);
    assert!(decoder.is_ended());
}

#[test]
fn after_a_failure_only_the_close_is_looked_for() {
    let mut wire = client(OP_TEXT, b"ok");
    wire.extend(client(OP_TEXT, b"\xff"));
    wire.extend(client(OP_TEXT, b"skipped"));
    wire.extend(client(OP_PING, b"skipped"));
    // Its code is not checked (999), its reason dropped.
    wire.extend(client(OP_CLOSE, b"\x03\xe7why"));
    for piece in [1, 3, wire.len()] {
        let events = decode_in_pieces(&wire, piece);
        assert_eq!(events.len(), 3, "{events:?}");
        assert_eq!(events[0], text("ok"));
        assert_eq!(failure_code(&events[..2]), 1007);
        assert_eq!(events[2], Event::Close(CloseCode::NO_STATUS, Bytes::new()));
    }
    // A close frame arriving with the failure: its code, when valid, comes through.
    let mut wire = client_frame(true, true, OP_BINARY, b"x");
    wire.extend(client(OP_CLOSE, b"\x03\xe9"));
    let events = decode_in_pieces(&wire, wire.len());
    assert_eq!(events[1..], [Event::Close(CloseCode::GOING_AWAY, Bytes::new())]);
    // A header that cannot be decoded after a failure ends decoding, silently.
    let mut wire = client(OP_TEXT, b"\xff");
    wire.extend([0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0]);
    let mut decoder = server_decoder();
    assert_eq!(decode_all(&mut decoder, &wire).len(), 1);
    assert!(decoder.is_ended());
}

#[test]
fn limits_apply_to_frames_and_to_whole_messages() {
    let limits = Limits { max_message: 10, max_frame: 6 };
    let decode = |wire: &[u8]| {
        let mut decoder = Decoder::new(Role::Server, limits, None);
        decode_all(&mut decoder, wire)
    };
    assert_eq!(decode(&client(OP_BINARY, b"123456")), vec![Event::Binary(b"123456".to_vec())]);
    assert_eq!(failure_code(&decode(&client(OP_BINARY, b"1234567"))), 1009, "frame");
    let mut wire = client_frame(false, false, OP_BINARY, b"123456");
    wire.extend(client_frame(true, false, OP_CONTINUATION, b"12345"));
    assert_eq!(failure_code(&decode(&wire)), 1009, "message");
    // Control frames are not data: a ping of 100 bytes passes a 6-byte frame limit.
    assert_eq!(decode(&client(OP_PING, &[0; 100])), vec![Event::Ping(Bytes::from(vec![0; 100]))]);
}

fn agreement() -> Agreement {
    negotiate(&["permessage-deflate"], &DeflatePolicy::default()).unwrap_or_else(|| panic!("agree"))
}

#[test]
fn compressed_messages_are_inflated_and_their_size_capped() {
    let mut peer = DeflateCodec::new(agreement(), Role::Client);
    let text_in = "compress me ".repeat(50);
    let compressed = peer.compress(text_in.as_bytes(), true);
    // Two fragments; RSV1 only on the first.
    let (a, b) = compressed.split_at(compressed.len() / 2);
    let mut wire = client_frame(false, true, OP_TEXT, a);
    wire.extend(client_frame(true, false, OP_CONTINUATION, b));
    let mut decoder = Decoder::new(Role::Server, LIMITS, Some(agreement()));
    assert_eq!(decode_all(&mut decoder, &wire), vec![text(&text_in)]);

    let small = Limits { max_message: 100, max_frame: 1 << 20 };
    let mut decoder = Decoder::new(Role::Server, small, Some(agreement()));
    let bomb = DeflateCodec::new(agreement(), Role::Client).compress(&[b'a'; 10_000], true);
    assert!(bomb.len() < 100);
    assert_eq!(failure_code(&decode_all(&mut decoder, &client_frame(true, true, OP_BINARY, &bomb))), 1009);
    let mut decoder = Decoder::new(Role::Server, LIMITS, Some(agreement()));
    assert_eq!(
        failure_code(&decode_all(&mut decoder, &client_frame(true, true, OP_BINARY, &[0xff; 8]))),
        1002
    );
}

#[test]
fn the_client_role_wants_unmasked_frames() {
    let mut decoder = Decoder::new(Role::Client, LIMITS, None);
    let mut wire = server_frame(true, OP_PING, b"ping!");
    wire.extend(server_frame(false, OP_TEXT, "héllo ".as_bytes()));
    wire.extend(server_frame(true, OP_CONTINUATION, "wörld".as_bytes()));
    assert_eq!(
        decode_all(&mut decoder, &wire),
        vec![Event::Ping(Bytes::from_static(b"ping!")), text("héllo wörld")]
    );
    let events = decode_all(&mut Decoder::new(Role::Client, LIMITS, None), &client(OP_TEXT, b"masked"));
    assert_eq!(
        events,
        vec![Event::Failure(Failure { code: CloseCode::PROTOCOL_ERROR, reason: "masked server frame" })]
    );
    let events = decode_all(&mut server_decoder(), &server_frame(true, OP_TEXT, b"bare"));
    assert_eq!(
        events,
        vec![Event::Failure(Failure { code: CloseCode::PROTOCOL_ERROR, reason: "unmasked client frame" })]
    );
}

/// Every frame queued in `encoder`, read back with `decoder`.
fn written(encoder: &mut Encoder, decoder: &mut Decoder) -> Vec<Event> {
    let mut bytes = Vec::new();
    encoder.gather_into(&mut bytes);
    encoder.consume(bytes.len());
    assert_eq!((encoder.queued_bytes(), encoder.is_empty()), (0, true));
    decode_all(decoder, &bytes)
}

#[test]
fn the_encoder_frames_fragments_controls_and_closes() {
    let mut encoder = Encoder::new(Role::Server, None);
    let frame = encoder.data_frame(DataKind::Text, true, b"hi").unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!((frame.header(), frame.borrowed_payload()), (&[0x81, 2][..], Some(&b"hi"[..])), "sent as is");
    assert_eq!(encoder.data_frame(DataKind::Text, true, b"\xff").err(), Some(InvalidFrame));
    assert_eq!(encoder.queue_ping(&[0; 126]), Err(InvalidFrame));
    for (fin, data) in [(false, "frag"), (false, "ment"), (true, "ed")] {
        encoder.queue_data(DataKind::Text, fin, data.as_bytes()).unwrap_or_else(|e| panic!("{e:?}"));
    }
    encoder.queue_pong(Bytes::from_static(b"p"));
    encoder.queue_close(Some(CloseCode::GOING_AWAY), b"bye");
    encoder.queue_close(None, b"");
    // Read back as a client would (unmasked frames).
    let mut decoder = Decoder::new(Role::Client, LIMITS, None);
    let events = written(&mut encoder, &mut decoder);
    assert_eq!(
        events,
        vec![
            text("fragmented"),
            Event::Pong(Bytes::from_static(b"p")),
            Event::Close(CloseCode::GOING_AWAY, Bytes::from_static(b"bye"))
        ]
    );
    let mut decoder = Decoder::new(Role::Client, LIMITS, None);
    let mut empty_close = Encoder::new(Role::Server, None);
    empty_close.queue_close(None, b"");
    assert_eq!(
        written(&mut empty_close, &mut decoder),
        vec![Event::Close(CloseCode::NO_STATUS, Bytes::new())]
    );
}

#[test]
fn the_write_queue_tracks_partial_writes() {
    let mut encoder = Encoder::new(Role::Server, None);
    encoder.queue_data(DataKind::Binary, true, &[1; 10]).unwrap_or_else(|e| panic!("{e:?}"));
    encoder.queue_data(DataKind::Binary, true, &[2; 300]).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(encoder.queued_bytes(), 12 + 304);
    assert_eq!(encoder.queued_behind_front(), 304);
    encoder.consume(5);
    assert_eq!((encoder.queued_bytes(), encoder.queued_behind_front()), (12 + 304 - 5, 304));
    let mut slices = [std::io::IoSlice::new(&[]); 32];
    let count = encoder.unwritten_slices(&mut slices);
    assert_eq!(slices[..count].iter().map(|s| s.len()).collect::<Vec<_>>(), vec![7, 4, 300]);
    encoder.consume(7 + 4 + 100);
    assert_eq!((encoder.queued_bytes(), encoder.queued_behind_front()), (200, 0));
    let mut rest = Vec::new();
    encoder.gather_into(&mut rest);
    assert_eq!(rest, vec![2; 200]);
}

#[test]
fn the_client_masks_every_frame_with_a_fresh_key() {
    let mut encoder = Encoder::new(Role::Client, None);
    let data = b"hello, server".to_vec();
    encoder.queue_data(DataKind::Text, true, &data).unwrap_or_else(|e| panic!("{e:?}"));
    encoder.queue_data(DataKind::Binary, true, &data).unwrap_or_else(|e| panic!("{e:?}"));
    encoder.queue_ping(b"p").unwrap_or_else(|e| panic!("{e:?}"));
    encoder.queue_close(Some(CloseCode::NORMAL), b"bye");
    assert_eq!(data, b"hello, server", "the caller's buffer is untouched");
    let mut bytes = Vec::new();
    encoder.gather_into(&mut bytes);
    let mut keys = Vec::new();
    let mut at = &bytes[..];
    for (opcode, payload) in
        [(OP_TEXT, &data[..]), (OP_BINARY, &data[..]), (OP_PING, b"p"), (OP_CLOSE, b"\x03\xe8bye")]
    {
        let h = parse_header(at).ok().flatten().unwrap_or_else(|| panic!("opcode {opcode}: no header"));
        let key = h.mask.unwrap_or_else(|| panic!("opcode {opcode}: not masked"));
        let mut body = at[h.header_len..h.header_len + payload.len()].to_vec();
        apply_mask(&mut body, key, 0);
        assert_eq!((h.opcode, body.as_slice()), (opcode, payload));
        keys.push(key);
        at = &at[h.header_len + payload.len()..];
    }
    assert_ne!(keys[0], keys[1], "two frames, two keys");
    // And the server decodes them.
    let mut encoder = Encoder::new(Role::Client, None);
    encoder.queue_data(DataKind::Text, true, &data).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(written(&mut encoder, &mut server_decoder()), vec![text("hello, server")]);
}

#[test]
fn a_client_and_a_server_exchange_compressed_messages() {
    let answer = negotiate(&[deflate::CLIENT_OFFER], &DeflatePolicy::default()).map(|a| a.response);
    let client_agreement = parse_response(&[answer.as_deref().unwrap_or_default()])
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the server's answer is refused: {answer:?}"));
    let server_agreement = negotiate(&[deflate::CLIENT_OFFER], &DeflatePolicy::default());
    let mut client_out = Encoder::new(Role::Client, Some(client_agreement.clone()));
    let mut client_in = Decoder::new(Role::Client, LIMITS, Some(client_agreement));
    let mut server_out = Encoder::new(Role::Server, server_agreement.clone());
    let mut server_in = Decoder::new(Role::Server, LIMITS, server_agreement);
    for message in ["compress me ".repeat(500), "again, with context ".repeat(100), String::new()] {
        client_out.queue_data(DataKind::Text, true, message.as_bytes()).unwrap_or_else(|e| panic!("{e:?}"));
        let size = client_out.queued_bytes();
        assert!(message.len() < 100 || size < message.len() / 4, "{size} bytes for {}", message.len());
        assert_eq!(written(&mut client_out, &mut server_in), vec![text(&message)]);
        let frame = server_out.data_frame(DataKind::Text, true, message.as_bytes());
        let frame = frame.unwrap_or_else(|e| panic!("{e:?}"));
        assert!(message.len() < 100 || frame.borrowed_payload().is_none(), "compressed");
        server_out.queue(frame);
        assert_eq!(written(&mut server_out, &mut client_in), vec![text(&message)]);
    }
}

/// A small deterministic generator (xorshift64*), so the fuzz test needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A random stream of mostly valid client frames, with now and then a broken one or
/// garbage.
fn random_stream(rng: &mut Rng) -> Vec<u8> {
    let mut wire = Vec::new();
    for _ in 0..rng.below(12) {
        let len = [0, 1, 5, 125, 126, 300, 70_000][rng.below(7)];
        let payload: Vec<u8> = match rng.below(3) {
            0 => (0..len).map(|i| b'a' + (i % 26) as u8).collect(),
            1 => "wörld ".repeat(len / 7 + 1).into_bytes()[..len].to_vec(),
            _ => (0..len).map(|_| rng.next() as u8).collect(),
        };
        match rng.below(10) {
            0 => wire.extend(client(OP_PING, &payload[..len.min(125)])),
            1 => wire.extend(client_frame(false, false, OP_TEXT, &payload)),
            2 => wire.extend(client_frame(true, false, OP_CONTINUATION, &payload)),
            3 => wire.extend((0..rng.below(20)).map(|_| rng.next() as u8)),
            4 if rng.below(4) == 0 => wire.extend(client(OP_CLOSE, b"\x03\xe8")),
            5 => wire.extend(client(OP_BINARY, &payload)),
            _ => wire.extend(client(OP_TEXT, &payload)),
        }
    }
    wire
}

#[test]
fn any_bytes_in_any_pieces_decode_to_the_same_events_without_panicking() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..300 {
        let wire = random_stream(&mut rng);
        let whole = decode_in_pieces(&wire, wire.len().max(1));
        let mut decoder = server_decoder();
        let mut pieces = Vec::new();
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let (piece, tail) = rest.split_at((1 + rng.below(700)).min(rest.len()));
            pieces.extend(decode_all(&mut decoder, piece));
            rest = tail;
        }
        assert_eq!(pieces, whole, "round {round}");
        // At most one failure, and nothing but the peer's close after it.
        if let Some(at) = whole.iter().position(|e| matches!(e, Event::Failure(_))) {
            assert!(
                whole[at + 1..].iter().all(|e| matches!(e, Event::Close(..))),
                "round {round}: {whole:?}"
            );
            assert!(whole.len() - at <= 2, "round {round}");
        }
    }
}

#[test]
fn a_partial_message_is_held_measured_and_can_be_abandoned() {
    let mut decoder = server_decoder();
    assert_eq!((decoder.held_bytes(), decoder.partial_progress()), (0, None), "between messages");
    let frame = client(OP_BINARY, &[7; 100]);
    assert!(decode_all(&mut decoder, &frame[..2]).is_empty(), "a split header");
    assert_eq!(decoder.partial_progress(), Some(0), "a frame in progress counts, with no data yet");
    assert!(decode_all(&mut decoder, &frame[2..6 + 40]).is_empty());
    assert!(decoder.held_bytes() >= 40, "the message's buffer");
    assert_eq!(decoder.partial_progress(), Some(40));
    let failure = Failure { code: CloseCode::TRY_AGAIN_LATER, reason: "memory budget exhausted" };
    assert_eq!(decoder.abandon(failure), Some(Event::Failure(failure)));
    assert_eq!((decoder.held_bytes(), decoder.partial_progress()), (0, None), "freed; decoding failed");
    assert_eq!(decoder.abandon(failure), None, "only once");
    // The rest of the frame is skipped; the peer's close is still found.
    let mut rest = frame[6 + 40..].to_vec();
    rest.extend(client(OP_CLOSE, &1000u16.to_be_bytes()));
    assert_eq!(decode_all(&mut decoder, &rest), vec![Event::Close(CloseCode::NORMAL, Bytes::new())]);

    let mut whole = server_decoder();
    assert_eq!(decode_all(&mut whole, &frame), vec![Event::Binary(vec![7; 100])]);
    assert_eq!((whole.held_bytes(), whole.partial_progress()), (0, None), "a complete message is not held");
}
