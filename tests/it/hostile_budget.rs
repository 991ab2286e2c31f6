//! Hostile senders against the in-flight memory budget (`[websocket] inflight_budget_bytes`)
//! and the message completion window (`message_timeout_secs`, `message_min_bytes`): many
//! connections sending most of a big message and stalling, and a sender dribbling one byte
//! at a time. Each asserts the close codes, the server's resident memory, and that a control
//! connection's echo stays fast meanwhile.

use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::Message;
use wshd_tests::*;

const ROUTE: &str = "[[route]]\npath = \"/_echo\"\nbuiltin = \"echo\"\ndeflate = false\n";

/// The attack: this many connections each announce a 15 MiB binary frame and send
/// [`SENT_EACH`] bytes of it, then stall.
const ATTACKERS: usize = 24;
const ANNOUNCED: u64 = 15 << 20;
const SENT_EACH: usize = 6 << 20;
/// The budget of the server under attack.
const BUDGET: u64 = 8 << 20;
/// What the server may grow by beyond the budget: the connections' own state (24 sessions,
/// a few KiB each), the runtime threads' 64 KiB read buffers and one read each past a charge,
/// and the allocator: glibc keeps freed buffers of refused connections in its arenas and
/// reuses them with some fragmentation (+16 MiB seen in a debug build; a release run with a
/// 256 MiB budget peaked at +219 to +308 MiB). Without the budget the attack holds
/// 24 × 6 MiB = 144 MiB.
const MARGIN: u64 = 24 << 20;

/// A single-process server (its pid is the serving process) with the built-in echo, a
/// 16 MiB message limit and `websocket` keys added.
fn server(websocket: &str) -> ServerProcess {
    ServerProcess::start_with(
        |_| {},
        "workers = 0\nadmin_listen = \"127.0.0.1:0\"",
        &format!("[websocket]\nmax_message_bytes = {}\n{websocket}\n\n{ROUTE}", 16 << 20),
    )
}

/// A masked binary frame's header announcing `len` bytes (mask key 0: the payload goes as is).
fn big_frame_header(len: u64) -> Vec<u8> {
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(&[0; 4]);
    header
}

/// One attacker: the header, then up to `SENT_EACH` bytes in 64 KiB writes (each bounded by
/// 2 s: the server may stop reading or close), then it stalls. Returns its socket.
async fn attack(server: std::net::SocketAddr) -> RawSocket {
    let mut socket = RawSocket::open(server, "/_echo").await;
    let chunk = vec![0x41u8; 64 << 10];
    if socket.write_raw(&big_frame_header(ANNOUNCED)).await.is_err() {
        return socket;
    }
    for _ in 0..SENT_EACH / chunk.len() {
        match tokio::time::timeout(Duration::from_secs(2), socket.write_raw(&chunk)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => break,
        }
    }
    socket
}

/// Runs the stalled-senders attack on a server with `websocket` keys: the close codes the
/// attackers got (None: still open) and the server's growth in resident memory (peak).
async fn stalled_senders(server: &ServerProcess) -> (Vec<Option<u16>>, u64) {
    let probe = ControlProbe::start(&server.ws_url("/_echo"), Duration::from_millis(20)).await;
    server.reset_peak_rss();
    let rss_before = server.rss_bytes();
    let attackers: Vec<_> = (0..ATTACKERS).map(|_| tokio::spawn(attack(server.addr))).collect();
    let mut sockets = Vec::new();
    for attacker in attackers {
        sockets.push(attacker.await.expect("an attacker task"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // the server reads what is in flight
    let (rss_after, peak) = (server.rss_bytes(), server.peak_rss_bytes());
    let control = probe.finish().await;
    let mut codes = Vec::new();
    for socket in &mut sockets {
        let frame = tokio::time::timeout(Duration::from_secs(1), socket.read_frame()).await;
        codes.push(match frame {
            Ok(Some(frame)) if frame.opcode == 0x8 => Some(frame.close_code()),
            Ok(Some(frame)) => panic!("unexpected frame {frame:?}"),
            Ok(None) => Some(1006),
            Err(_) => None,
        });
    }
    let growth = peak.saturating_sub(rss_before);
    println!(
        "{ATTACKERS} stalled senders × {} MiB: RSS {} → {} MiB (peak +{} MiB); control echo: {control}; closes {codes:?}",
        SENT_EACH >> 20,
        rss_before >> 20,
        rss_after >> 20,
        growth >> 20,
    );
    assert!(control.count >= 5, "the control echo ran during the attack: {control}");
    assert!(control.max < Duration::from_secs(1), "the control echo within 1 s during the attack: {control}");
    (codes, growth)
}

#[tokio::test]
async fn stalled_big_messages_are_held_within_the_budget_and_the_rest_get_1013() {
    let server = server(&format!("inflight_budget_bytes = {BUDGET}"));
    let (codes, growth) = stalled_senders(&server).await;
    assert!(growth < BUDGET + MARGIN, "grew by {} MiB, budget {} MiB", growth >> 20, BUDGET >> 20);
    let refused = codes.iter().filter(|c| **c == Some(1013)).count();
    // A held message is charged at least its first 1 MiB reservation: at most 8 fit.
    assert!(refused >= ATTACKERS - (BUDGET >> 20) as usize, "closes: {codes:?}");
    assert!(codes.iter().all(|c| matches!(c, None | Some(1013))), "closes: {codes:?}");
    let metrics = http_get(server.admin_addr(), "/metrics").await.text();
    let exhausted = format!("wshd_budget_closes_total{{reason=\"exhausted\"}} {refused}");
    assert!(metrics.contains(&exhausted), "{exhausted} in:\n{metrics}");
    assert!(metrics.contains(&format!("wshd_inflight_budget_bytes {BUDGET}")), "{metrics}");
}

#[tokio::test]
async fn a_message_bigger_than_the_whole_budget_gets_1009() {
    let server = server("inflight_budget_bytes = 2097152");
    let mut socket = RawSocket::open(server.addr, "/_echo").await;
    socket.write_raw(&big_frame_header(4 << 20)).await.expect("header");
    let chunk = vec![0u8; 64 << 10];
    for _ in 0..48 {
        if tokio::time::timeout(Duration::from_secs(2), socket.write_raw(&chunk)).await.is_err() {
            break;
        }
    }
    let close = socket.read_frame().await.expect("a close frame");
    assert_eq!((close.opcode, close.close_code()), (0x8, 1009));
    // Smaller messages still pass on a new connection.
    let mut client = connect(&server.ws_url("/_echo")).await;
    let message = Message::binary(vec![7u8; 512 << 10]);
    assert_eq!(round_trip(&mut client, message.clone()).await, message);
}

/// Measures the attack without a budget (the "before" figure; 144 MiB held): run with
/// `cargo test -p wshd-tests --test it hostile_budget -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement: holds ~144 MiB in the server"]
async fn without_a_budget_the_stalled_senders_are_all_held() {
    let server = server("inflight_budget_bytes = 0");
    let (codes, growth) = stalled_senders(&server).await;
    assert!(codes.iter().all(Option::is_none), "closes: {codes:?}");
    assert!(growth > (ATTACKERS * SENT_EACH) as u64 / 2, "grew by {} MiB", growth >> 20);
}

#[tokio::test]
async fn a_dribbling_sender_is_closed_1008_and_an_idle_connection_is_not() {
    let server = server("message_timeout_secs = 2\nmessage_min_bytes = 1024");
    let mut idle = connect(&server.ws_url("/_echo")).await;
    let mut raw = RawSocket::open(server.addr, "/_echo").await;
    // A 100-byte text frame, one byte every 1.5 s.
    raw.write_raw(&[0x81, 0x80 | 100, 0, 0, 0, 0]).await.expect("header");
    let started = Instant::now();
    // Bytes at 0 s and 1.5 s: progress inside the 2 s window, but less than 1024 bytes.
    raw.write_raw(b"x").await.expect("a dribbled byte");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    raw.write_raw(b"x").await.expect("a dribbled byte");
    let close = raw.read_frame().await.expect("a close frame");
    let took = started.elapsed();
    println!("dribbler closed with {} after {took:?}", close.close_code());
    assert_eq!((close.opcode, close.close_code()), (0x8, 1008));
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_millis(3500),
        "closed after {took:?}"
    );
    // The connection idle between messages all along still echoes.
    let message = Message::text("still here");
    assert_eq!(round_trip(&mut idle, message.clone()).await, message);
    let metrics = http_get(server.admin_addr(), "/metrics").await.text();
    assert!(metrics.contains("wshd_budget_closes_total{reason=\"message_timeout\"} 1"), "{metrics}");
}

#[tokio::test]
async fn with_workers_each_holds_its_share_and_the_master_reports_the_sum() {
    let server = ServerProcess::start_with(
        |_| {},
        "workers = 2\nadmin_listen = \"127.0.0.1:0\"",
        &format!("[websocket]\ninflight_budget_bytes = {BUDGET}\n\n{ROUTE}"),
    );
    let metrics = http_get(server.admin_addr(), "/metrics").await.text();
    // 4 MiB per worker, summed by the master's scrape.
    assert!(metrics.contains(&format!("wshd_inflight_budget_bytes {BUDGET}")), "{metrics}");
    assert!(metrics.contains("wshd_inflight_bytes 0"), "{metrics}");
}
