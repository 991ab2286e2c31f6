//! Hostile HTTP/2 input (issue 18): rapid reset (CVE-2023-44487), CONTINUATION flood
//! (CVE-2024-27316), SETTINGS and PING floods, more streams than allowed, an oversized header
//! list; each bounded, each with a control WebSocket on another HTTP/2 connection that must
//! keep its round trips short, and the server's memory; then the memory of one WebSocket
//! stream against one TLS connection.

use std::time::{Duration, Instant};

use wshd_tests::ServerProcess;
use wshd_tests::h2frames::{END_HEADERS, RawH2, Received, frame, hpack, kind, websocket_fields};
use wshd_tests::h2ws::{H2Client, H2Echo, H2WebSocket};

use crate::http2::{cert, start_tls};

/// `ENHANCE_YOUR_CALM` (RFC 9113 §7).
const ENHANCE_YOUR_CALM: u32 = 0xb;
/// `REFUSED_STREAM`.
const REFUSED_STREAM: u32 = 0x7;

const PROBE_EVERY: Duration = Duration::from_millis(20);

/// The control connection's slowest round trip may not pass this during an attack.
const PROBE_MAX: Duration = Duration::from_secs(1);

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// One rapid-reset connection: HEADERS + RST_STREAM(CANCEL) pairs in batches of 100 until the
/// server stops reading (or 100,000 pairs); returns the pairs written and what came back.
async fn rapid_reset_round(
    server: &ServerProcess,
    root: &rustls::pki_types::CertificateDer<'static>,
) -> (u32, Received) {
    let mut attacker = RawH2::connect(server.addr, root).await;
    let block = hpack(&websocket_fields("/echo"));
    let (mut sent, mut stream) = (0u32, 1u32);
    while sent < 100_000 {
        let mut batch = Vec::new();
        for _ in 0..100 {
            batch.extend(frame(kind::HEADERS, END_HEADERS, stream, &block));
            batch.extend(frame(kind::RST_STREAM, 0, stream, &8u32.to_be_bytes()));
            stream += 2;
        }
        if attacker.write(&batch).await.is_err() {
            break;
        }
        sent += 100;
    }
    (sent, attacker.drain(Duration::from_secs(3)).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_is_cut_off_with_enhance_your_calm() {
    let cert = cert();
    let server = start_tls(&cert, "");
    let probe = H2Echo::probe(server.addr, &cert.der, PROBE_EVERY).await;
    let before = server.rss_bytes();
    let started = Instant::now();
    let (mut rounds, mut pairs) = (0, 0u64);
    // Attack connection after attack connection for 2 s, with the control probe running.
    while started.elapsed() < Duration::from_secs(2) {
        let (sent, got) = rapid_reset_round(&server, &cert.der).await;
        assert_eq!(got.goaway, Some(ENHANCE_YOUR_CALM), "round {rounds}: {got:?}");
        assert!(got.closed, "round {rounds}: the connection is closed after GOAWAY");
        assert!(sent < 100_000, "round {rounds}: the attacker was stopped before it sent everything");
        rounds += 1;
        pairs += u64::from(sent);
    }
    let report = probe.finish().await;
    let after = server.rss_bytes();
    println!(
        "rapid reset: {rounds} attack connections in {:?}, each cut off with GOAWAY ENHANCE_YOUR_CALM \
         after {} HEADERS+RST_STREAM pairs on average (what one write had in flight); control: {report}; \
         RSS {:.1} -> {:.1} MiB",
        started.elapsed(),
        pairs / rounds.max(1),
        mib(before),
        mib(after)
    );
    assert!(report.max < PROBE_MAX, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_flood_is_cut_off() {
    let cert = cert();
    let server = start_tls(&cert, "");
    let probe = H2Echo::probe(server.addr, &cert.der, PROBE_EVERY).await;
    server.reset_peak_rss();
    let before = server.rss_bytes();
    let mut attacker = RawH2::connect(server.addr, &cert.der).await;
    let mut first = hpack(&websocket_fields("/echo"));
    first.extend(hpack(&[("x-pad", &"a".repeat(1000))]));
    attacker.write(&frame(kind::HEADERS, 0, 1, &first)).await.expect("HEADERS");
    let junk = hpack(&[("x-junk", &"j".repeat(16_000))]);
    let (mut written, started) = (0usize, Instant::now());
    for _ in 0..10_000 {
        if attacker.write(&frame(kind::CONTINUATION, 0, 1, &junk)).await.is_err() {
            break;
        }
        written += 1;
    }
    let got = attacker.drain(Duration::from_secs(3)).await;
    let report = probe.finish().await;
    let peak = server.peak_rss_bytes();
    println!(
        "CONTINUATION flood: {written} frames of 16 KB written in {:?}; GOAWAY {:?}, closed {}; \
         control: {report}; RSS {:.1} MiB, peak {:.1} MiB",
        started.elapsed(),
        got.goaway,
        got.closed,
        mib(before),
        mib(peak)
    );
    assert!(got.goaway.is_some() || got.closed, "{got:?}");
    assert!(written < 10_000, "the server stopped the flood ({written} frames taken)");
    assert!(peak < before + (64 << 20), "peak RSS {:.1} MiB from {:.1}", mib(peak), mib(before));
    assert!(report.max < PROBE_MAX, "{report}");
}

/// Sends `frames` copies of `one` without reading the answers; returns how many the server
/// took before it stopped reading (at most `frames`).
async fn flood(attacker: &mut RawH2, one: &[u8], frames: usize) -> usize {
    let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 1000).collect();
    let mut sent = 0;
    while sent < frames {
        if attacker.write(&batch).await.is_err() {
            break;
        }
        sent += 1000;
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_and_ping_floods_are_held_by_back_pressure() {
    let cert = cert();
    let server = start_tls(&cert, "");
    let probe = H2Echo::probe(server.addr, &cert.der, PROBE_EVERY).await;
    server.reset_peak_rss();
    let before = server.rss_bytes();
    for (name, one) in [
        ("SETTINGS", frame(kind::SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100])),
        ("PING", frame(kind::PING, 0, 0, &[1, 2, 3, 4, 5, 6, 7, 8])),
    ] {
        let mut attacker = RawH2::connect(server.addr, &cert.der).await;
        let started = Instant::now();
        let sent = flood(&mut attacker, &one, 2_000_000).await;
        let peak = server.peak_rss_bytes();
        println!(
            "{name} flood (not reading the ACKs): the server took {sent} frames in {:?}, then stopped \
             reading; peak RSS {:.1} MiB (from {:.1})",
            started.elapsed(),
            mib(peak),
            mib(before)
        );
        assert!(sent < 2_000_000, "{name}: the server must stop reading a client that reads no ACK");
        assert!(peak < before + (64 << 20), "{name}: peak RSS {:.1} MiB", mib(peak));
        drop(attacker);
    }
    let report = probe.finish().await;
    println!("control during the floods: {report}");
    assert!(report.max < PROBE_MAX, "{report}");
}

#[tokio::test]
async fn streams_past_the_limit_are_refused() {
    let cert = cert();
    let server = start_tls(&cert, "[http2]\nmax_concurrent_streams = 4\n");
    let mut attacker = RawH2::connect(server.addr, &cert.der).await;
    let block = hpack(&websocket_fields("/echo"));
    let mut batch = Vec::new();
    for stream in (1..=19).step_by(2) {
        batch.extend(frame(kind::HEADERS, END_HEADERS, stream, &block));
    }
    attacker.write(&batch).await.expect("10 streams");
    let got = attacker.drain(Duration::from_millis(500)).await;
    println!(
        "10 WebSocket streams with max_concurrent_streams = 4: {} answered, resets {:?}",
        got.headers, got.resets
    );
    assert_eq!(got.headers, 4, "{got:?}");
    assert_eq!(got.resets, vec![REFUSED_STREAM; 6], "{got:?}");
}

#[tokio::test]
async fn an_oversized_header_list_is_refused() {
    let cert = cert();
    let server = start_tls(&cert, "[http2]\nmax_header_list_bytes = 8192\n");
    let mut client = H2Client::connect(server.addr, &cert.der).await;
    let big = "b".repeat(10_000);
    let refused = client.websocket("/echo", &[("x-big", &big)]).await;
    let status = refused.as_ref().map(|r| r.status).map_err(|e| e.to_string());
    println!("a 10 KB header with max_header_list_bytes = 8192: {status:?}");
    assert!(matches!(status, Ok(431)) || status.is_err(), "{status:?}");
    let mut client = H2Client::connect(server.addr, &cert.der).await;
    let mut ws =
        H2WebSocket::accepted(client.websocket("/echo", &[("x-small", "ok")]).await.expect("CONNECT"));
    assert_eq!(ws.ask("fine").await, "fine");
}

#[tokio::test]
async fn memory_per_websocket_stream_and_per_tls_connection() {
    const N: usize = 200;
    let cert = cert();
    let server = start_tls(&cert, "[http2]\nmax_concurrent_streams = 1000\n");
    let mut warm = H2Client::connect(server.addr, &cert.der).await;
    let mut w = H2WebSocket::accepted(warm.websocket("/echo", &[]).await.expect("CONNECT"));
    assert_eq!(w.ask("warm").await, "warm");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let base = server.rss_bytes();
    let mut client = H2Client::connect(server.addr, &cert.der).await;
    let mut streams = Vec::new();
    for _ in 0..N {
        let mut ws = H2WebSocket::accepted(client.websocket("/echo", &[]).await.expect("CONNECT"));
        assert_eq!(ws.ask("x").await, "x");
        streams.push(ws);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let with_streams = server.rss_bytes();
    let mut h1 = Vec::new();
    for _ in 0..N {
        let (tls, _) = wshd_tests::h2ws::tls_connect(
            server.addr,
            &wshd_tests::h2ws::tls_client(&cert.der, &[b"http/1.1"]),
        )
        .await;
        let url = format!("wss://localhost:{}/echo", server.addr.port());
        let (ws, _) = tokio_tungstenite::client_async(url, tls).await.expect("an HTTP/1.1 upgrade");
        h1.push(ws);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let with_h1 = server.rss_bytes();
    let mut idle = Vec::new();
    for _ in 0..N {
        let mut c = H2Client::connect(server.addr, &cert.der).await;
        let r = c.request("GET", "/nowhere", None, &[]).await.expect("a response");
        assert_eq!(r.status, 404);
        idle.push(c);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let with_idle = server.rss_bytes();
    let per_stream = with_streams.saturating_sub(base) / N as u64;
    let per_conn = with_h1.saturating_sub(with_streams) / N as u64;
    let per_h2 = with_idle.saturating_sub(with_h1) / N as u64;
    println!(
        "memory: {N} WebSocket streams on one HTTP/2 connection: {:.1} KiB each; {N} WebSockets on \
         their own TLS connection (HTTP/1.1): {:.1} KiB each; {N} idle HTTP/2 connections (TLS, \
         one request served): {:.1} KiB each (RSS {:.1} -> {:.1} -> {:.1} -> {:.1} MiB)",
        per_stream as f64 / 1024.0,
        per_conn as f64 / 1024.0,
        per_h2 as f64 / 1024.0,
        mib(base),
        mib(with_streams),
        mib(with_h1),
        mib(with_idle)
    );
    assert!(per_stream < 256 << 10, "a WebSocket stream costs {per_stream} bytes");
    drop((streams, h1, idle));
}

#[tokio::test]
async fn a_connection_that_sends_no_request_gets_goaway_at_the_handshake_timeout() {
    let cert = cert();
    let server = start_tls(&cert, "[websocket]\nhandshake_timeout_secs = 1\n");
    let mut silent = RawH2::connect(server.addr, &cert.der).await;
    let started = Instant::now();
    let got = silent.drain(Duration::from_secs(5)).await;
    let took = started.elapsed();
    println!(
        "an HTTP/2 connection with no request: GOAWAY {:?}, closed {} after {took:?}",
        got.goaway, got.closed
    );
    assert_eq!(got.goaway, Some(0), "GOAWAY(NO_ERROR): {got:?}");
    assert!(got.closed, "then closed: {got:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
}
