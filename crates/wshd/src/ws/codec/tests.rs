//! Codec unit tests over an in-memory duplex pipe.

use super::deflate::{Agreement, DeflateCodec, DeflatePolicy, negotiate, parse_response};
use super::frame::parse_header;
use super::*;
use std::future::poll_fn;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

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

const LIMITS: Limits = Limits { max_message: 1 << 20, max_frame: 1 << 20 };

/// A server-role connection and the raw client end of its pipe.
fn conn(deflate: Option<Agreement>) -> (WsConn<DuplexStream>, DuplexStream) {
    let (server, client) = tokio::io::duplex(1 << 20);
    (WsConn::new(server, Role::Server, LIMITS, deflate), client)
}

/// A client-role connection and the raw server end of its pipe.
fn client_conn(deflate: Option<Agreement>) -> (WsConn<DuplexStream>, DuplexStream) {
    let (client, server) = tokio::io::duplex(1 << 20);
    (WsConn::new(client, Role::Client, LIMITS, deflate), server)
}

/// A frame as a server sends it (unmasked).
fn server_frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = EncodedHeader::new(fin, rsv1, opcode, payload.len()).as_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

/// Reads one frame from the raw end of a pipe: its header and unmasked payload.
async fn read_raw_frame(peer: &mut DuplexStream) -> (Header, Vec<u8>) {
    let mut buf = Vec::new();
    let header = loop {
        if let Ok(Some(h)) = parse_header(&buf) {
            break h;
        }
        let mut byte = [0u8; 1];
        peer.read_exact(&mut byte).await.unwrap_or_else(|e| panic!("{e}"));
        buf.push(byte[0]);
    };
    let mut payload = vec![0u8; usize::try_from(header.payload_len).unwrap_or(usize::MAX)];
    peer.read_exact(&mut payload).await.unwrap_or_else(|e| panic!("{e}"));
    if let Some(key) = header.mask {
        apply_mask(&mut payload, key, 0);
    }
    (header, payload)
}

/// Reads until `want` items arrived or the read side ends; returns items and the last result.
async fn read_items(
    c: &mut WsConn<DuplexStream>,
    want: usize,
) -> (Vec<Incoming>, Result<ReadProgress, Failure>) {
    let mut items = Vec::new();
    loop {
        let r = poll_fn(|cx| c.poll_read(cx, &mut |i| items.push(i))).await;
        if items.len() >= want || !matches!(r, Ok(ReadProgress::Data)) {
            return (items, r);
        }
    }
}

#[tokio::test]
async fn frames_split_at_every_byte_are_reassembled() {
    let (mut c, mut client) = conn(None);
    let mut wire = client_frame(false, false, OP_TEXT, "héllo ".as_bytes());
    wire.extend(client_frame(true, false, OP_PING, b"p"));
    wire.extend(client_frame(true, false, OP_CONTINUATION, "wörld".as_bytes()));
    wire.extend(client_frame(true, false, OP_BINARY, &[0u8; 300]));
    let mut items = Vec::new();
    for byte in &wire {
        client.write_all(&[*byte]).await.unwrap_or_default();
        loop {
            let r = poll_fn(|cx| Poll::Ready(c.poll_read(cx, &mut |i| items.push(i)))).await;
            if !matches!(r, Poll::Ready(Ok(ReadProgress::Data))) {
                break;
            }
        }
    }
    assert_eq!(
        items,
        vec![
            Incoming::Ping(Bytes::from_static(b"p")),
            Incoming::Text(Bytes::from("héllo wörld")),
            Incoming::Binary(Bytes::from(vec![0u8; 300]))
        ]
    );
    poll_fn(|cx| c.poll_flush(cx)).await.unwrap_or_default();
    let mut pong = [0u8; 3];
    client.read_exact(&mut pong).await.unwrap_or_default();
    assert_eq!(pong, [0x8a, 1, b'p'], "the ping was answered");
}

#[tokio::test]
async fn invalid_utf8_fails_before_the_frame_ends() {
    let (mut c, mut client) = conn(None);
    let frame = client_frame(true, false, OP_TEXT, b"abc\xffdefghijklmnop");
    client.write_all(&frame[..frame.len() - 8]).await.unwrap_or_default();
    let (_, r) = read_items(&mut c, 1).await;
    assert_eq!(r.map_err(|f| f.code.as_u16()), Err(1007));
}

#[tokio::test]
async fn protocol_violations_fail_with_1002_and_oversize_with_1009() {
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (
            {
                let mut f = client_frame(true, false, OP_TEXT, b"x");
                f[1] &= 0x7f;
                f.truncate(3);
                f
            },
            1002,
        ),
        (client_frame(true, false, OP_CONTINUATION, b"x"), 1002),
        (client_frame(false, false, OP_PING, b"x"), 1002),
        (client_frame(true, false, OP_PING, &[0; 126]), 1002),
        (client_frame(true, false, 0x3, b""), 1002),
        (client_frame(true, true, OP_TEXT, b"x"), 1002),
        (client_frame(true, false, OP_CLOSE, &[0x03]), 1002),
        (client_frame(true, false, OP_CLOSE, &[0x03, 0xe7]), 1002),
        (client_frame(true, false, OP_CLOSE, &[0x03, 0xe8, 0xff]), 1007),
        // Only the header and a little payload: the size is refused from the header alone.
        (client_frame(true, false, OP_BINARY, &vec![0; (1 << 20) + 1])[..100].to_vec(), 1009),
    ];
    for (wire, code) in cases {
        let (mut c, mut client) = conn(None);
        client.write_all(&wire).await.unwrap_or_default();
        let (_, r) = read_items(&mut c, 1).await;
        assert_eq!(r.map_err(|f| f.code.as_u16()), Err(code), "{:02x?}", &wire[..wire.len().min(8)]);
    }
}

#[tokio::test]
async fn a_close_is_answered_with_the_same_code_and_reason() {
    let (mut c, mut client) = conn(None);
    client.write_all(&client_frame(true, false, OP_CLOSE, b"\x0f\xa0bye")).await.unwrap_or_default();
    let (items, r) = read_items(&mut c, 1).await;
    assert_eq!(
        items,
        vec![Incoming::Close(CloseCode::new(4000).unwrap_or(CloseCode::NORMAL), Bytes::from_static(b"bye"))]
    );
    assert_eq!(r, Ok(ReadProgress::Closed));
    assert!(c.close_sent());
    poll_fn(|cx| c.poll_flush(cx)).await.unwrap_or_default();
    let mut reply = [0u8; 7];
    client.read_exact(&mut reply).await.unwrap_or_default();
    assert_eq!(&reply, b"\x88\x05\x0f\xa0bye");
    assert_eq!(c.queue_data(DataKind::Text, true, b"late"), Err(QueueError::Closed));
}

#[tokio::test]
async fn compressed_messages_round_trip_through_the_connection() {
    let agreement =
        negotiate(&["permessage-deflate"], &DeflatePolicy::default()).unwrap_or_else(|| panic!("agree"));
    let mut client_codec = DeflateCodec::new(agreement.clone(), Role::Client);
    let (mut c, mut client) = conn(Some(agreement.clone()));
    let text = "compress me ".repeat(50);
    let compressed = client_codec.compress(text.as_bytes(), true);
    // Split the compressed message into two fragments; RSV1 only on the first.
    let (a, b) = compressed.split_at(compressed.len() / 2);
    client.write_all(&client_frame(false, true, OP_TEXT, a)).await.unwrap_or_default();
    client.write_all(&client_frame(true, false, OP_CONTINUATION, b)).await.unwrap_or_default();
    let (items, _) = read_items(&mut c, 1).await;
    assert_eq!(items, vec![Incoming::Text(Bytes::from(text.clone()))]);

    c.queue_data(DataKind::Text, true, text.as_bytes()).unwrap_or_else(|e| panic!("{e:?}"));
    poll_fn(|cx| c.poll_flush(cx)).await.unwrap_or_default();
    let mut head = [0u8; 2];
    client.read_exact(&mut head).await.unwrap_or_default();
    assert_eq!(head[0], 0xc1, "FIN + RSV1 + text");
    let mut body = vec![0u8; usize::from(head[1] & 0x7f)];
    client.read_exact(&mut body).await.unwrap_or_default();
    let mut out = Vec::new();
    DeflateCodec::new(agreement, Role::Client)
        .decompress(&body, true, &mut out, 1 << 20)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(out, text.as_bytes());
}

#[tokio::test]
async fn the_client_masks_every_frame_with_a_fresh_key() {
    let (mut c, mut server) = client_conn(None);
    let data = b"hello, server".to_vec();
    c.queue_data(DataKind::Text, true, &data).unwrap_or_else(|e| panic!("{e:?}"));
    c.queue_data(DataKind::Binary, true, &data).unwrap_or_else(|e| panic!("{e:?}"));
    c.queue_data(DataKind::Binary, true, &[0x5a; 300]).unwrap_or_else(|e| panic!("{e:?}"));
    c.queue_ping(b"p").unwrap_or_else(|e| panic!("{e:?}"));
    c.queue_close(CloseCode::NORMAL, "bye");
    poll_fn(|cx| c.poll_flush(cx)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(data, b"hello, server", "the caller's buffer is untouched");
    let mut keys = Vec::new();
    for (opcode, payload) in [
        (OP_TEXT, data.clone()),
        (OP_BINARY, data.clone()),
        (OP_BINARY, vec![0x5a; 300]),
        (OP_PING, b"p".to_vec()),
        (OP_CLOSE, b"\x03\xe8bye".to_vec()),
    ] {
        let (h, unmasked) = read_raw_frame(&mut server).await;
        assert_eq!((h.fin, h.opcode), (true, opcode));
        assert_eq!(unmasked, payload, "opcode {opcode}");
        keys.push(h.mask.unwrap_or_else(|| panic!("opcode {opcode}: not masked")));
    }
    assert_ne!(keys[0], keys[1], "two frames, two keys");
}

#[tokio::test]
async fn the_client_accepts_unmasked_frames_and_masks_its_pong() {
    let (mut c, mut server) = client_conn(None);
    let mut wire = server_frame(true, false, OP_PING, b"ping!");
    wire.extend(server_frame(false, false, OP_TEXT, "héllo ".as_bytes()));
    wire.extend(server_frame(true, false, OP_CONTINUATION, "wörld".as_bytes()));
    server.write_all(&wire).await.unwrap_or_else(|e| panic!("{e}"));
    let (items, r) = read_items(&mut c, 2).await;
    assert_eq!(r, Ok(ReadProgress::Data));
    assert_eq!(
        items,
        vec![Incoming::Ping(Bytes::from_static(b"ping!")), Incoming::Text(Bytes::from("héllo wörld"))]
    );
    poll_fn(|cx| c.poll_flush(cx)).await.unwrap_or_else(|e| panic!("{e}"));
    let (h, payload) = read_raw_frame(&mut server).await;
    assert_eq!((h.opcode, h.mask.is_some(), payload.as_slice()), (OP_PONG, true, &b"ping!"[..]));
}

#[tokio::test]
async fn the_client_refuses_a_masked_frame_with_1002() {
    let (mut c, mut server) = client_conn(None);
    server.write_all(&client_frame(true, false, OP_TEXT, b"masked")).await.unwrap_or_else(|e| panic!("{e}"));
    let (items, r) = read_items(&mut c, 1).await;
    assert!(items.is_empty(), "{items:?}");
    assert_eq!(r, Err(Failure { code: CloseCode::PROTOCOL_ERROR, reason: "masked server frame" }));
    // The server role still refuses unmasked frames.
    let (mut s, mut client) = conn(None);
    client.write_all(&server_frame(true, false, OP_TEXT, b"bare")).await.unwrap_or_else(|e| panic!("{e}"));
    let (_, r) = read_items(&mut s, 1).await;
    assert_eq!(r, Err(Failure { code: CloseCode::PROTOCOL_ERROR, reason: "unmasked client frame" }));
}

#[tokio::test]
async fn a_client_and_a_server_exchange_compressed_messages() {
    let answer = negotiate(&[deflate::CLIENT_OFFER], &DeflatePolicy::default()).map(|a| a.response);
    let agreement = parse_response(&[answer.as_deref().unwrap_or_default()])
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the server's answer is refused: {answer:?}"));
    let (client_io, server_io) = tokio::io::duplex(1 << 20);
    let mut client = WsConn::new(client_io, Role::Client, LIMITS, Some(agreement));
    let server_agreement = negotiate(&[deflate::CLIENT_OFFER], &DeflatePolicy::default());
    let mut server = WsConn::new(server_io, Role::Server, LIMITS, server_agreement);
    for text in ["compress me ".repeat(500), "again, with context ".repeat(100), String::new()] {
        client.queue_data(DataKind::Text, true, text.as_bytes()).unwrap_or_else(|e| panic!("{e:?}"));
        let written = client.queued_bytes();
        assert!(text.len() < 100 || written < text.len() / 4, "{written} bytes for {}", text.len());
        poll_fn(|cx| client.poll_flush(cx)).await.unwrap_or_else(|e| panic!("{e}"));
        let (items, _) = read_items(&mut server, 1).await;
        assert_eq!(items, vec![Incoming::Text(Bytes::from(text.clone()))]);
        server.queue_data(DataKind::Text, true, text.as_bytes()).unwrap_or_else(|e| panic!("{e:?}"));
        poll_fn(|cx| server.poll_flush(cx)).await.unwrap_or_else(|e| panic!("{e}"));
        let (items, _) = read_items(&mut client, 1).await;
        assert_eq!(items, vec![Incoming::Text(Bytes::from(text))]);
    }
}
