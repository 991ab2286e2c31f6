//! Graceful shutdown: SIGTERM/SIGINT stop the listeners, turn readiness off, close every
//! WebSocket with 1001 and exit 0 within the drain window; a second signal exits at once.

use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::Message;
use wshd_tests::*;

fn server(server_keys: &str) -> ServerProcess {
    ServerProcess::start_with(
        |dir| {
            dir.install("echo_wsh", "handlers/libecho_wsh.so");
            dir.install("fixture_probe", "handlers/probe_wsh.so");
        },
        server_keys,
        "[websocket]\nclose_timeout_secs = 10\n",
    )
}

#[tokio::test]
async fn sigterm_sends_1001_to_every_connection_and_exits_0_within_the_drain_window() {
    let mut server = server("admin_listen = \"127.0.0.1:0\"\nshutdown_grace_secs = 2");
    let admin = server.admin_addr();
    let mut clients = Vec::new();
    for path in ["/echo", "/echo", "/probe"] {
        let mut client = connect(&server.ws_url(path)).await;
        assert_eq!(round_trip(&mut client, Message::text("hi")).await, Message::text("hi"));
        clients.push(client);
    }
    // One more that never answers the close: the drain waits for it until the window ends.
    let mut silent = RawSocket::open(server.addr, "/echo").await;
    assert_eq!(http_get(admin, "/readyz").await.status, 200);

    let signalled = Instant::now();
    server.signal("TERM");
    for client in &mut clients {
        let (code, reason) = expect_close(client).await;
        assert_eq!((code, reason.as_str()), (1001, "going away"));
    }
    let frame = silent.read_frame().await.unwrap_or_else(|| panic!("no close frame"));
    assert_eq!((frame.opcode, frame.close_code()), (0x8, 1001));
    // Draining: not ready, but alive; new connections are not accepted.
    let ready = http_get(admin, "/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert!(ready.text().contains("draining"), "{}", ready.text());
    assert_eq!(http_get(admin, "/healthz").await.status, 200);
    assert!(
        tokio::net::TcpStream::connect(server.addr).await.is_err()
            || raw_http(server.addr, &handshake_request("/echo", "")).await.status != 101,
        "a new connection was accepted while draining"
    );

    let status = server
        .wait_exit(Duration::from_secs(6))
        .unwrap_or_else(|| panic!("still running:\n{}", server.logs()));
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status:?}:\n{}", server.logs());
    assert!(took >= Duration::from_secs(2), "the silent connection was given the drain window: {took:?}");
    assert!(took < Duration::from_secs(5), "exited {took:?} after SIGTERM");
    assert!(server.logs().contains("drain window of 2s over"), "{}", server.logs());
}

#[tokio::test]
async fn sigint_with_every_peer_answering_exits_as_soon_as_they_are_closed() {
    let mut server = server("shutdown_grace_secs = 30");
    let mut client = connect(&server.ws_url("/echo")).await;
    assert_eq!(round_trip(&mut client, Message::text("hi")).await, Message::text("hi"));
    let signalled = Instant::now();
    server.signal("INT");
    assert_eq!(expect_close(&mut client).await.0, 1001);
    drop(client);
    let status = server.wait_exit(Duration::from_secs(5)).unwrap_or_else(|| panic!("{}", server.logs()));
    assert!(status.success(), "{status:?}");
    assert!(signalled.elapsed() < Duration::from_secs(3), "{:?}", signalled.elapsed());
    assert!(server.logs().contains("drained; exiting"), "{}", server.logs());
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let mut server = server("shutdown_grace_secs = 30");
    let _silent = RawSocket::open(server.addr, "/echo").await;
    server.signal("TERM");
    server.wait_log("shutting down", WAIT).unwrap_or_else(|| panic!("{}", server.logs()));
    let signalled = Instant::now();
    server.signal("TERM");
    // Without the second signal the master would wait for the drain: the silent client holds
    // its worker for the 10 s close timeout, within the 30 s window. Exiting within 5 s is
    // "at once" with room for a loaded CI machine (typically ~0.1 s; once 2-5 s under load).
    let status = server.wait_exit(Duration::from_secs(5)).unwrap_or_else(|| panic!("{}", server.logs()));
    let took = signalled.elapsed();
    println!("second signal: exited {took:?} after it");
    assert!(!status.success(), "a cut-short drain exits non-zero: {status:?}");
    assert!(server.logs().contains("second signal"), "{}", server.logs());
}
