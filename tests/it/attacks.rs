//! The attacks the server already withstood when issue 16 was filed, kept as regressions:
//! each over real sockets against one server process, asserting the answer (status or
//! close code), how long it took, how much the server's memory grew, and that a
//! well-behaved control connection kept its echo latency meanwhile. (Budgets, shedding and
//! strict parsing have their own files: `hostile_*.rs`, `strict.rs`, `limits.rs`.)

use std::time::{Duration, Instant};

use flate2::{Compress, Compression, FlushCompress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wshd_tests::*;

/// The control connection's slowest round trip allowed during an attack. Loopback echo
/// takes well under a millisecond; a second means the attack stalled the server.
const CONTROL_MAX: Duration = Duration::from_secs(1);

/// One process (no workers: the attack and the control connection share it), echo at
/// `/echo`, with `extra` configuration.
fn server(extra: &str) -> ServerProcess {
    ServerProcess::start_with(
        |dir| drop(dir.install("echo_wsh", "handlers/echo_wsh.so")),
        "workers = 0",
        extra,
    )
}

/// The first close frame's code, reading past other frames (at most `limit` of them).
async fn close_code(raw: &mut RawSocket, limit: usize) -> Option<u16> {
    for _ in 0..limit {
        let frame = raw.read_frame().await?;
        if frame.opcode == 8 {
            return Some(frame.close_code());
        }
    }
    None
}

/// The server's memory before an attack: resets the peak and gives the resident bytes.
fn memory_before(server: &ServerProcess) -> u64 {
    server.reset_peak_rss();
    server.rss_bytes()
}

/// Checks the control connection's report and how far the server's peak memory rose over
/// `rss_before` during the attack, and prints both.
async fn settle(what: &str, server: &ServerProcess, probe: ControlProbe, rss_before: u64, bound: u64) {
    let report = probe.finish().await;
    let grown = server.peak_rss_bytes().saturating_sub(rss_before);
    println!(
        "{what}: server peak RSS +{} KiB (bound {} KiB); control echo: {report}",
        grown >> 10,
        bound >> 10
    );
    assert!(report.max < CONTROL_MAX, "{what}: the control connection stalled: {report}");
    assert!(grown < bound, "{what}: RSS grew {grown} bytes, bound {bound}");
}

#[tokio::test]
async fn a_frame_announcing_2_pow_63_bytes_is_closed_1009_at_once() {
    let server = server("");
    let probe = ControlProbe::start(&server.ws_url("/echo"), Duration::from_millis(10)).await;
    let mut raw = RawSocket::open(server.addr, "/echo").await;
    let before = memory_before(&server);
    let started = Instant::now();
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(i64::MAX as u64).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    raw.write_raw(&header).await.unwrap_or_else(|e| panic!("write: {e}"));
    assert_eq!(close_code(&mut raw, 1).await, Some(1009));
    let took = started.elapsed();
    println!("2^63 length: 1009 after {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    settle("2^63 length", &server, probe, before, 8 << 20).await;
}

/// A permessage-deflate payload that inflates to `mib` MiB of zeros: the compressed form of
/// 1 MiB (non-final blocks, ending with a sync flush) repeated, the last flush marker
/// stripped as RFC 7692 §7.2.1 says.
fn deflate_bomb(mib: usize) -> Vec<u8> {
    let mut compress = Compress::new(Compression::best(), false);
    let mut chunk = Vec::with_capacity(4096);
    let status = compress.compress_vec(&vec![0u8; 1 << 20], &mut chunk, FlushCompress::Sync);
    status.unwrap_or_else(|e| panic!("deflate: {e}"));
    assert!(chunk.ends_with(&[0, 0, 0xff, 0xff]), "a sync flush ends the chunk");
    let mut bomb = chunk.repeat(mib);
    bomb.truncate(bomb.len() - 4);
    bomb
}

#[tokio::test]
async fn a_deflate_bomb_of_1_gib_is_closed_1009_without_growing_past_the_message_limit() {
    // 4 MiB: the bomb's compressed frame (~1 MiB) fits, so the inflater meets the limit.
    let server = server("[websocket]\nmax_message_bytes = 4194304\n");
    let probe = ControlProbe::start(&server.ws_url("/echo"), Duration::from_millis(10)).await;
    let offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n";
    let mut raw = RawSocket::open_with(server.addr, "/echo", offer, &[]).await;
    let bomb = deflate_bomb(1024);
    println!("deflate bomb: {} KiB inflating to 1 GiB", bomb.len() >> 10);
    let before = memory_before(&server);
    let started = Instant::now();
    let mut frame = encode_frame(true, 2, &bomb, true);
    frame[0] |= 0x40; // RSV1: compressed
    // The server may close before it has read the whole frame: a failed write is expected.
    let _ = raw.write_raw(&frame).await;
    assert_eq!(close_code(&mut raw, 1).await, Some(1009));
    println!("deflate bomb: 1009 after {:?}", started.elapsed());
    settle("deflate bomb", &server, probe, before, 24 << 20).await;
}

/// Writes batches of 1,000 ping frames (125-byte payloads) without reading, up to `batches`
/// or until a write stalls for a second or fails. Gives the pings written.
async fn flood_pings(raw: &mut RawSocket, batches: usize) -> usize {
    let ping = encode_frame(true, 9, &[b'p'; 125], true);
    let batch = ping.repeat(1000);
    for sent in 0..batches {
        match tokio::time::timeout(Duration::from_secs(1), raw.write_raw(&batch)).await {
            Ok(Ok(())) => {}
            _ => return sent * 1000,
        }
    }
    batches * 1000
}

#[tokio::test]
async fn a_ping_flood_from_a_client_that_never_reads_is_closed_1008() {
    let server = server("");
    let probe = ControlProbe::start(&server.ws_url("/echo"), Duration::from_millis(10)).await;
    let mut raw = RawSocket::open(server.addr, "/echo").await;
    let before = memory_before(&server);
    let started = Instant::now();
    // 100,000 pings: 12.7 MB of pongs, past the 1 MiB send queue and the socket buffers.
    let sent = flood_pings(&mut raw, 100).await;
    let code = close_code(&mut raw, 200_000).await;
    println!("ping flood: {sent} pings, closed {code:?} after {:?}", started.elapsed());
    assert_eq!(code, Some(1008));
    settle("ping flood", &server, probe, before, 32 << 20).await;
}

/// Opens a connection that sends the start of a request head, then one byte every
/// `every`, until the server closes it (or `limit` passes). Gives how long it lived and
/// what the server answered (empty: a silent close).
async fn slowloris(addr: std::net::SocketAddr, every: Duration, limit: Duration) -> (Duration, String) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect: {e}"));
    let _ = stream.write_all(b"GET /echo HTTP/1.1\r\nHost: localhost\r\n").await;
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while started.elapsed() < limit {
        match tokio::time::timeout(every, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {
                if stream.write_all(b"X").await.is_err() {
                    break;
                }
            }
        }
    }
    (started.elapsed(), String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test]
async fn slowloris_heads_are_cut_at_the_handshake_timeout() {
    let server = server("[websocket]\nhandshake_timeout_secs = 2\n");
    let probe = ControlProbe::start(&server.ws_url("/echo"), Duration::from_millis(10)).await;
    let before = memory_before(&server);
    let attackers: Vec<_> = (0..200)
        .map(|_| tokio::spawn(slowloris(server.addr, Duration::from_millis(300), Duration::from_secs(10))))
        .collect();
    let mut longest = Duration::ZERO;
    for attacker in attackers {
        let (lived, answer) = attacker.await.unwrap_or_else(|e| panic!("{e}"));
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "answer: {answer:?}");
        longest = longest.max(lived);
    }
    println!("slowloris: 200 heads dribbled, the longest lived {longest:?} (timeout 2 s)");
    assert!(longest < Duration::from_secs(4), "{longest:?}");
    settle("slowloris", &server, probe, before, 16 << 20).await;
}
