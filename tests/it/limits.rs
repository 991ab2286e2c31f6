//! Limits and back-pressure over real sockets: connection limits (503), the header size
//! limit (431), the idle timeout, and slow readers closed while other connections keep
//! their pace.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use wshd_tests::*;

fn server(server_keys: &str, extra: &str) -> ServerProcess {
    ServerProcess::start_with(
        |dir| {
            dir.install("fixture_probe", "handlers/probe_wsh.so");
            dir.install("echo_wsh", "handlers/libecho_wsh.so");
        },
        server_keys,
        extra,
    )
}

async fn status_of(server: &ServerProcess, path: &str) -> RawResponse {
    raw_http(server.addr, &handshake_request(path, "")).await
}

/// Retries a handshake until it gets `status` (a slot is given back when the server has
/// seen the close).
async fn eventually_status(server: &ServerProcess, path: &str, status: u16) {
    let deadline = Instant::now() + WAIT;
    loop {
        if status_of(server, path).await.status == status {
            return;
        }
        assert!(Instant::now() < deadline, "{path} never answered {status}:\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn handshakes_over_the_global_connection_limit_get_503() {
    let server = server("max_connections = 2", "");
    let mut a = connect(&server.ws_url("/echo")).await;
    let _b = connect(&server.ws_url("/probe")).await;
    let refused = status_of(&server, "/echo").await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(refused.text().contains("server connection limit reached (2)"), "{}", refused.text());
    assert_eq!(refused.header("retry-after"), Some("5"));
    // The open connections are unaffected, and a closed one gives its slot back.
    assert_eq!(round_trip(&mut a, Message::text("still here")).await, Message::text("still here"));
    a.close(None).await.unwrap_or_else(|e| panic!("{e}"));
    drop(a);
    eventually_status(&server, "/echo", 101).await;
}

#[tokio::test]
async fn handshakes_over_a_route_connection_limit_get_503() {
    let server = server("", "[[route]]\npath = \"/probe\"\nmax_connections = 1\n");
    let _held = connect(&server.ws_url("/probe")).await;
    let refused = status_of(&server, "/probe").await;
    assert_eq!(refused.status, 503);
    assert!(refused.text().contains("route connection limit reached (1)"), "{}", refused.text());
    // Other routes are not limited by it.
    let mut echo = connect(&server.ws_url("/echo")).await;
    assert_eq!(round_trip(&mut echo, Message::text("ok")).await, Message::text("ok"));
}

#[tokio::test]
async fn a_request_head_over_max_header_bytes_gets_431() {
    let server = server("max_header_bytes = 8192", "");
    let big = format!("X-Filler: {}\r\n", "a".repeat(10_000));
    let resp = raw_http(server.addr, &handshake_request("/echo", &big)).await;
    assert_eq!(resp.status, 431, "{resp:?}");
    let small = format!("X-Filler: {}\r\n", "a".repeat(4_000));
    assert_eq!(raw_http(server.addr, &handshake_request("/echo", &small)).await.status, 101);
}

#[tokio::test]
async fn an_idle_connection_is_closed_with_1001_while_pings_do_not_count_as_activity() {
    let server = server("", "[websocket]\nidle_timeout_secs = 2\nping_interval_secs = 1\n");
    let mut busy = connect(&server.ws_url("/echo")).await;
    let mut idle = connect(&server.ws_url("/echo")).await;
    let started = Instant::now();
    // `busy` talks every 500 ms for 3 s: longer than the idle timeout, never idle that long.
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let text = format!("tick {i}");
        assert_eq!(round_trip(&mut busy, Message::text(text.clone())).await, Message::text(text));
    }
    // `idle` said nothing (it only answered the keepalive pings): closed with 1001 "idle".
    let (code, reason) = expect_close(&mut idle).await;
    assert_eq!((code, reason.as_str()), (1001, "idle"));
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(6), "{elapsed:?}");
    assert_eq!(round_trip(&mut busy, Message::text("after")).await, Message::text("after"));
    let line = server
        .wait_log_where(|l| l.contains("connection closed") && l.contains("close_reason=\"idle\""), WAIT)
        .unwrap_or_else(|| panic!("{}", server.logs()));
    assert!(line.contains("close_code=1001") && line.contains("close_by=\"server\""), "{line}");
}

/// Round trips on `client` for `duration`; the slowest one.
async fn slowest_round_trip(client: &mut Client, duration: Duration) -> Duration {
    let until = Instant::now() + duration;
    let mut slowest = Duration::ZERO;
    let mut n = 0u32;
    while Instant::now() < until {
        let started = Instant::now();
        let text = format!("m{n}");
        assert_eq!(round_trip(client, Message::text(text.clone())).await, Message::text(text));
        slowest = slowest.max(started.elapsed());
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    slowest
}

#[tokio::test]
async fn a_reader_that_stops_reading_is_closed_after_the_send_timeout_while_others_keep_their_pace() {
    let server = server("", "[websocket]\nsend_timeout_secs = 1\nclose_timeout_secs = 1\n");
    // The slow reader sends 256 KiB messages to /echo and never reads the echoes.
    let mut slow = RawSocket::open(server.addr, "/echo").await;
    let writer = tokio::spawn(async move {
        let frame = encode_frame(true, 0x2, &vec![7u8; 256 * 1024], true);
        for _ in 0..400 {
            if slow.write_raw(&frame).await.is_err() {
                return true; // the server dropped the connection
            }
        }
        false
    });
    let mut other = connect(&server.ws_url("/echo")).await;
    let slowest = slowest_round_trip(&mut other, Duration::from_secs(3)).await;
    assert!(slowest < Duration::from_secs(1), "the other connection slowed down: {slowest:?}");
    let line = server
        .wait_log_where(
            |l| l.contains("connection closed") && l.contains("close_reason=\"send timeout\""),
            WAIT,
        )
        .unwrap_or_else(|| panic!("{}", server.logs()));
    assert!(line.contains("close_code=1008"), "{line}");
    let dropped = tokio::time::timeout(WAIT, writer).await.unwrap_or_else(|_| panic!("writer stuck"));
    assert!(dropped.unwrap_or_else(|e| panic!("{e}")), "the slow reader's connection was dropped");
    assert_eq!(round_trip(&mut other, Message::text("after")).await, Message::text("after"));
}

#[tokio::test]
async fn a_peer_whose_send_queue_is_full_is_closed_with_1008_while_others_keep_their_pace() {
    // Pings are answered by the host itself: a peer that pings without reading fills its own
    // send queue with pongs until the limit closes it.
    let server = server("", "[websocket]\nmax_send_queue_bytes = 65536\nclose_timeout_secs = 1\n");
    let mut flooder = RawSocket::open(server.addr, "/echo").await;
    let writer = tokio::spawn(async move {
        let ping = encode_frame(true, 0x9, &[b'p'; 125], true);
        let burst: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * 2000).collect();
        for _ in 0..200 {
            // Up to 200 bursts of 2000 pings: 52 MB of pongs owed, more than socket buffers hold.
            if flooder.write_raw(&burst).await.is_err() {
                break; // the server dropped the connection
            }
        }
        flooder
    });
    let mut other = connect(&server.ws_url("/echo")).await;
    let slowest = slowest_round_trip(&mut other, Duration::from_secs(2)).await;
    assert!(slowest < Duration::from_secs(1), "the other connection slowed down: {slowest:?}");
    let line = server
        .wait_log_where(
            |l| l.contains("connection closed") && l.contains("close_reason=\"send queue full\""),
            WAIT,
        )
        .unwrap_or_else(|| panic!("{}", server.logs()));
    assert!(line.contains("close_code=1008"), "{line}");
    // The flooder finds its pongs, then (if it got that far) the close, then the end.
    let mut flooder = tokio::time::timeout(WAIT, writer)
        .await
        .unwrap_or_else(|_| panic!("writer stuck"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut pongs = 0u64;
    while let Some(frame) = flooder.read_frame().await {
        match frame.opcode {
            0xA => pongs += 1,
            0x8 => assert_eq!(frame.close_code(), 1008),
            other => panic!("unexpected opcode {other}"),
        }
    }
    assert!(pongs < 400_000, "every ping was answered ({pongs}): the queue was never cut");
    // The other connection still works, and pongs to real pings still come.
    other.send(Message::Ping(b"hi".to_vec().into())).await.unwrap_or_else(|e| panic!("{e}"));
    let pong = tokio::time::timeout(WAIT, other.next()).await.unwrap_or_else(|_| panic!("no pong"));
    assert!(matches!(pong, Some(Ok(Message::Pong(_)))), "{pong:?}");
}
