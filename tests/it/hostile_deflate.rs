//! What a compressed connection costs the server (issue 16, item 2): with the shipped
//! `[websocket.deflate]` defaults, 200 connections that negotiated permessage-deflate with a
//! browser's offer and exchanged one message each way grow the serving process by at most
//! 64 KiB each beyond what the same exchange costs on an uncompressed connection, measured
//! in the same process; the old settings (context takeover both ways) are shown to cost far
//! more, so the measurement can tell; and the compressed echo still round-trips.

use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wshd_tests::*;

/// What Chromium and Firefox offer.
const BROWSER_OFFER: &str = "permessage-deflate; client_max_window_bits";
const CONNECTIONS: usize = 200;
const BUDGET_KIB: f64 = 64.0;

/// A one-process server with the built-in echo at `/_echo`, no pings, and these
/// `[websocket.deflate]` keys.
fn server(deflate_keys: &str) -> ServerProcess {
    ServerProcess::start_with(
        |_| {},
        "workers = 0\n",
        &format!(
            "[websocket]\nping_interval_secs = 0\n\n[websocket.deflate]\n{deflate_keys}\n\
             [[route]]\npath = \"/_echo\"\nbuiltin = \"echo\"\n"
        ),
    )
}

/// RSS after the server has settled, in KiB.
async fn settled_rss(server: &ServerProcess) -> u64 {
    tokio::time::sleep(Duration::from_millis(300)).await;
    process_rss(server.pid()).expect("the server's VmRSS") >> 10
}

/// A JSON-like message of about 2 KiB, different for each `seq`.
fn json(seq: usize) -> String {
    let mut s = format!("{{\"type\":\"update\",\"seq\":{seq},\"items\":[");
    for i in 0..24 {
        let id = (seq * 31 + i * 7919) % 100_000;
        s.push_str(&format!(
            "{{\"id\":{id},\"name\":\"item-{}\",\"price\":{}.5,\"tags\":[\"new\"]}},",
            id % 977,
            id % 500
        ));
    }
    s.push_str("{\"end\":true}]}");
    s
}

/// A connection after the handshake, and whether the server accepted permessage-deflate.
async fn open(server: &ServerProcess, offer: Option<&str>) -> (TcpStream, Option<String>) {
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let extra = offer.map(|o| format!("Sec-WebSocket-Extensions: {o}\r\n")).unwrap_or_default();
    stream.write_all(handshake_request("/_echo", &extra).as_bytes()).await.expect("send the handshake");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut byte))
            .await
            .expect("handshake in time")
            .expect("read");
        assert_eq!(n, 1, "closed during the handshake: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).expect("an ASCII head");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let accepted = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-extensions")))
        .map(|(_, v)| v.trim().to_owned());
    (stream, accepted)
}

/// Reads one unfragmented server frame: (first byte, payload).
async fn read_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    tokio::time::timeout(WAIT, stream.read_exact(&mut head)).await.expect("a frame in time").expect("read");
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b).await.expect("length");
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            stream.read_exact(&mut b).await.expect("length");
            usize::try_from(u64::from_be_bytes(b)).expect("a sane length")
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    tokio::time::timeout(WAIT, stream.read_exact(&mut payload))
        .await
        .expect("payload in time")
        .expect("read");
    (head[0], payload)
}

/// One message compressed as its own raw deflate stream, sync-flushed, trailer removed.
fn compress(text: &str) -> Vec<u8> {
    let mut c = Compress::new_with_window_bits(Compression::new(6), false, 15);
    let mut out = Vec::with_capacity(text.len() + 64);
    c.compress_vec(text.as_bytes(), &mut out, FlushCompress::Sync).expect("compress");
    assert_eq!(c.total_in() as usize, text.len(), "one call suffices with this much room");
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(d: &mut Decompress, payload: &[u8]) -> String {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(64 * 1024);
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync).expect("the server's message inflates");
    String::from_utf8(out).expect("UTF-8")
}

/// Opens `CONNECTIONS` connections and echoes one message on each; returns them (kept open)
/// and checks every echo. `offer` None: uncompressed.
async fn exchange_on_many(server: &ServerProcess, offer: Option<&str>) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        let (mut stream, accepted) = open(server, offer).await;
        let text = json(i);
        let (first_byte, payload) = if offer.is_some() {
            assert!(accepted.as_deref().is_some_and(|a| a.starts_with("permessage-deflate")), "{accepted:?}");
            (0x80 | 0x40 | 0x1, compress(&text)) // FIN, RSV1 (compressed), text
        } else {
            assert_eq!(accepted, None);
            (0x80 | 0x1, text.clone().into_bytes())
        };
        stream.write_all(&encode_frame(true, first_byte & 0x7f, &payload, true)).await.expect("send");
        let (b0, reply) = read_frame(&mut stream).await;
        let echoed = if b0 & 0x40 != 0 {
            inflate(&mut Decompress::new_with_window_bits(false, 15), &reply)
        } else {
            String::from_utf8(reply).expect("UTF-8")
        };
        assert_eq!((b0 & 0x8f, echoed.as_str()), (0x81, text.as_str()), "connection {i}");
        assert_eq!(b0 & 0x40 != 0, offer.is_some(), "compressed iff negotiated");
        streams.push(stream);
    }
    streams
}

/// (KiB per uncompressed connection, KiB per compressed connection), measured in one server.
async fn per_connection_cost(deflate_keys: &str) -> (f64, f64) {
    let server = server(deflate_keys);
    let idle = settled_rss(&server).await;
    let plain = exchange_on_many(&server, None).await;
    let after_plain = settled_rss(&server).await;
    let compressed = exchange_on_many(&server, Some(BROWSER_OFFER)).await;
    let after_compressed = settled_rss(&server).await;
    drop((plain, compressed));
    let n = CONNECTIONS as f64;
    (after_plain.saturating_sub(idle) as f64 / n, after_compressed.saturating_sub(after_plain) as f64 / n)
}

#[tokio::test]
async fn a_compressed_connection_costs_at_most_64_kib_more_than_a_plain_one() {
    let (plain, compressed) = per_connection_cost("").await;
    eprintln!("defaults: plain {plain:.1} KiB/conn, compressed {compressed:.1} KiB/conn");
    // The margin is the plain connection's own cost: socket, session and buffers are paid by
    // both kinds; only the rest is compression's.
    assert!(
        compressed <= plain + BUDGET_KIB,
        "a compressed connection costs {compressed:.1} KiB, a plain one {plain:.1} KiB"
    );
}

#[tokio::test]
async fn context_takeover_costs_more_than_the_budget_so_the_measure_can_tell() {
    let (plain, compressed) =
        per_connection_cost("server_no_context_takeover = false\nclient_no_context_takeover = false\n").await;
    eprintln!("takeover: plain {plain:.1} KiB/conn, compressed {compressed:.1} KiB/conn");
    assert!(compressed > plain + 2.0 * BUDGET_KIB, "takeover costs {compressed:.1} KiB (plain {plain:.1})");
}

#[tokio::test]
async fn the_browser_offer_gets_both_resets_and_many_messages_round_trip() {
    let server = server("");
    let (mut stream, accepted) = open(&server, Some(BROWSER_OFFER)).await;
    assert_eq!(
        accepted.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    // Each server message is its own deflate stream (no context takeover), so a fresh
    // inflater per message must read it; ours persists across messages, as a browser's does.
    let mut inflater = Decompress::new_with_window_bits(false, 15);
    for i in 0..50 {
        let text = if i % 10 == 9 { String::new() } else { json(i % 3) };
        stream.write_all(&encode_frame(true, 0x40 | 0x1, &compress(&text), true)).await.expect("send");
        let (b0, reply) = read_frame(&mut stream).await;
        assert_eq!(b0, 0x80 | 0x40 | 0x1, "a compressed text frame");
        assert_eq!(
            inflate(&mut Decompress::new_with_window_bits(false, 15), &reply),
            text,
            "alone, message {i}"
        );
        assert_eq!(inflate(&mut inflater, &reply), text, "in sequence, message {i}");
    }
}
