//! mod_pywebsocket's example handlers (`handlers/*_wsh`), ported: the exact wire behaviour of
//! each one (statuses, headers, messages, close codes and reasons, dropped connections), as
//! the feature inventory §9 records it for pywebsocket3.

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use wshd_tests::*;

/// Frame opcodes, for the raw-socket tests.
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;

/// A server with the one example handler `crate_name` (`close_wsh` serves `/close`).
fn serve(crate_name: &str) -> ServerProcess {
    ServerProcess::start(|dir| drop(dir.install(crate_name, &format!("handlers/lib{crate_name}.so"))), "")
}

/// Opens `path` over a raw socket, sends `frames` (masked, each a whole message) and asserts
/// that the server drops the TCP connection without sending any frame (no close frame): what
/// pywebsocket does when a handler raises.
async fn assert_dropped_after(server: &ServerProcess, path: &str, frames: &[(u8, &[u8])]) {
    let mut raw = RawSocket::open(server.addr, path).await;
    for (opcode, payload) in frames {
        raw.send_frame(true, *opcode, payload, true).await;
    }
    assert!(
        raw.closed_without_frames().await,
        "{path}: expected the TCP connection dropped without a frame after {:?}",
        frames.iter().map(|(op, p)| (op, String::from_utf8_lossy(p))).collect::<Vec<_>>()
    );
}

/// Sends a close frame with `code` and `reason` and returns the server's answer.
async fn client_close(client: &mut Client, code: u16, reason: &str) -> (u16, String) {
    let frame = CloseFrame { code: code.into(), reason: reason.into() };
    client.close(Some(frame)).await.unwrap_or_else(|e| panic!("close: {e}"));
    expect_close(client).await
}

/// A handshake offering permessage-deflate the way Chromium does.
const DEFLATE_OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

async fn send(client: &mut Client, message: Message) {
    client.send(message).await.unwrap_or_else(|e| panic!("send: {e}"));
}

// ---- /echo_noext ----------------------------------------------------------------------------

#[tokio::test]
async fn echo_noext_echoes_with_types_and_closes_1000_after_goodbye() {
    let server = serve("echo_noext_wsh");
    let mut client = connect(&server.ws_url("/echo_noext")).await;
    assert_eq!(round_trip(&mut client, Message::text("héllo")).await, Message::text("héllo"));
    let binary = Message::binary(vec![0u8, 1, 255]);
    assert_eq!(round_trip(&mut client, binary.clone()).await, binary);
    let binary_goodbye = Message::binary(b"Goodbye".to_vec());
    assert_eq!(round_trip(&mut client, binary_goodbye.clone()).await, binary_goodbye);
    assert_eq!(round_trip(&mut client, Message::text("Goodbye")).await, Message::text("Goodbye"));
    assert_eq!(expect_close(&mut client).await, (1000, String::new()));
}

/// Asserts that the handler `crate_name` at `path` declines a permessage-deflate offer that
/// `/echo`, on the same server, accepts (so the decline is the handler's, not the server's).
async fn assert_declines_deflate(crate_name: &str, path: &str) {
    let server = ServerProcess::start(
        |dir| {
            dir.install(crate_name, &format!("handlers/lib{crate_name}.so"));
            dir.install("echo_wsh", "handlers/libecho_wsh.so");
        },
        "",
    );
    let resp = raw_http(server.addr, &handshake_request(path, DEFLATE_OFFER)).await;
    assert_eq!(resp.status, 101);
    assert_eq!(resp.header("sec-websocket-extensions"), None, "{path}: {resp:?}");
    let control = raw_http(server.addr, &handshake_request("/echo", DEFLATE_OFFER)).await;
    assert_eq!(control.status, 101);
    let accepted = control.header("sec-websocket-extensions").unwrap_or_default();
    assert!(accepted.starts_with("permessage-deflate"), "/echo: {control:?}");
}

#[tokio::test]
async fn echo_noext_declines_permessage_deflate() {
    assert_declines_deflate("echo_noext_wsh", "/echo_noext").await;
}

#[tokio::test]
async fn echo_noext_answers_a_client_close_with_its_code() {
    let server = serve("echo_noext_wsh");
    let mut client = connect(&server.ws_url("/echo_noext")).await;
    assert_eq!(client_close(&mut client, 4001, "bye").await, (4001, "bye".to_owned()));
}

// ---- /close ---------------------------------------------------------------------------------

#[tokio::test]
async fn close_closes_with_the_requested_code_and_reason() {
    let server = serve("close_wsh");
    for (command, expected) in [
        ("3333 sunsunsunsun", (3333, "sunsunsunsun")),
        ("1000 ", (1000, "")),
        ("4999 two words", (4999, "two words")),
        ("1001 going away", (1001, "going away")),
    ] {
        let mut client = connect(&server.ws_url("/close")).await;
        send(&mut client, Message::text(command)).await;
        assert_eq!(expect_close(&mut client).await, (expected.0, expected.1.to_owned()), "{command:?}");
    }
}

#[tokio::test]
async fn close_with_an_invalid_code_closes_1011() {
    let server = serve("close_wsh");
    for command in ["999 x", "5000 x", "1005 x", "1006 x", "1015 x", "0 x", "-1 x", "70000 x"] {
        let mut client = connect(&server.ws_url("/close")).await;
        send(&mut client, Message::text(command)).await;
        assert_eq!(expect_close(&mut client).await, (1011, String::new()), "{command:?}");
    }
}

#[tokio::test]
async fn close_with_a_malformed_command_drops_tcp_without_a_close_frame() {
    let server = serve("close_wsh");
    assert_dropped_after(&server, "/close", &[(TEXT, b"3333")]).await;
    assert_dropped_after(&server, "/close", &[(TEXT, b"")]).await;
    assert_dropped_after(&server, "/close", &[(TEXT, b"abc reason")]).await;
    assert_dropped_after(&server, "/close", &[(BINARY, b"3333 binary")]).await;
}

#[tokio::test]
async fn close_echoes_the_client_close_code_and_reason() {
    let server = serve("close_wsh");
    let mut client = connect(&server.ws_url("/close")).await;
    assert_eq!(client_close(&mut client, 4002, "see you").await, (4002, "see you".to_owned()));
    let mut client = connect(&server.ws_url("/close")).await;
    assert_eq!(client_close(&mut client, 1000, "").await, (1000, String::new()));
}

#[tokio::test]
async fn close_answers_an_empty_client_close_with_an_empty_close() {
    let server = serve("close_wsh");
    let mut raw = RawSocket::open(server.addr, "/close").await;
    raw.send_frame(true, CLOSE, b"", true).await;
    let reply = raw.read_frame().await.unwrap_or_else(|| panic!("no close reply"));
    assert_eq!((reply.opcode, reply.payload.as_slice()), (CLOSE, &b""[..]));
    assert!(raw.closed_without_frames().await, "the TCP connection ends after the close");
}

// ---- /abort, /abort_handshake ---------------------------------------------------------------

#[tokio::test]
async fn abort_accepts_then_drops_tcp_without_a_close_frame() {
    let server = serve("abort_wsh");
    let resp = raw_http(server.addr, &handshake_request("/abort", "")).await;
    assert_eq!(resp.status, 101);
    let mut raw = RawSocket::open(server.addr, "/abort").await;
    assert!(raw.closed_without_frames().await, "expected EOF without a close frame");
}

#[tokio::test]
async fn abort_handshake_drops_tcp_without_any_response() {
    let server = serve("abort_handshake_wsh");
    let resp = raw_http(server.addr, &handshake_request("/abort_handshake", "")).await;
    assert_eq!(resp.status, 0, "expected no response at all, got {resp:?}");
    assert!(resp.body.is_empty(), "{resp:?}");
}

// ---- /origin_check --------------------------------------------------------------------------

#[tokio::test]
async fn origin_check_accepts_only_http_example_com() {
    let server = serve("origin_check_wsh");
    let good = handshake_request("/origin_check", "Origin: http://example.com\r\n");
    assert_eq!(raw_http(server.addr, &good).await.status, 101);
    for origin in [
        "https://example.com",
        "http://example.com/",
        "http://example.com:80",
        "http://EXAMPLE.com",
        "http://example.org",
        "null",
    ] {
        let bad = handshake_request("/origin_check", &format!("Origin: {origin}\r\n"));
        assert_eq!(raw_http(server.addr, &bad).await.status, 403, "{origin}");
    }
    assert_eq!(raw_http(server.addr, &handshake_request("/origin_check", "")).await.status, 403);
}

#[tokio::test]
async fn origin_check_sends_its_greeting_as_a_text_message_then_closes_1000() {
    let server = serve("origin_check_wsh");
    let origin = [("Origin", "http://example.com")];
    for (path, resource) in [("/origin_check", "/origin_check"), ("/origin_check?a=1", "/origin_check?a=1")] {
        let mut client =
            connect_with(&server.ws_url(path), &origin).await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let greeting = next_message(&mut client).await.and_then(Result::ok);
        let expected = format!("origin_check_wsh is called for {resource}, None");
        assert_eq!(greeting, Some(Message::text(expected)));
        assert_eq!(expect_close(&mut client).await, (1000, String::new()));
    }
}

// ---- /cookie --------------------------------------------------------------------------------

#[tokio::test]
async fn cookie_sets_and_clears_cookies_by_query() {
    let server = serve("cookie_wsh");
    let cookies = async |target: &str| {
        let resp = raw_http(server.addr, &handshake_request(target, "")).await;
        assert_eq!(resp.status, 101, "{target}");
        resp.headers_named("set-cookie").into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    assert_eq!(cookies("/cookie?set").await, ["foo=bar; Max-Age=86400"]);
    assert_eq!(cookies("/cookie?set_httponly").await, ["httpOnlyFoo=bar; Max-Age=86400; httpOnly"]);
    assert_eq!(cookies("/cookie?clear").await, ["foo=0; Max-Age=0", "httpOnlyFoo=0; Max-Age=0"]);
    for target in ["/cookie", "/cookie?", "/cookie?other", "/cookie?set&x=1", "/cookie?SET"] {
        assert_eq!(cookies(target).await, Vec::<String>::new(), "{target}");
    }
}

#[tokio::test]
async fn cookie_accepts_request_cookies_and_closes_1000_at_once() {
    let server = serve("cookie_wsh");
    let headers = [("Cookie", "foo=bar; httpOnlyFoo=bar")];
    let mut client =
        connect_with(&server.ws_url("/cookie?set"), &headers).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(expect_close(&mut client).await, (1000, String::new()));
}

// ---- /hsts ----------------------------------------------------------------------------------

#[tokio::test]
async fn hsts_sends_the_header_then_hello_then_closes_1000() {
    let server = serve("hsts_wsh");
    let resp = raw_http(server.addr, &handshake_request("/hsts", "")).await;
    assert_eq!(resp.status, 101);
    assert_eq!(resp.headers_named("strict-transport-security"), ["max-age=86400"]);

    let mut client = connect(&server.ws_url("/hsts")).await;
    assert_eq!(next_message(&mut client).await.and_then(Result::ok), Some(Message::text("Hello")));
    assert_eq!(expect_close(&mut client).await, (1000, String::new()));
}

// ---- /internal_error ------------------------------------------------------------------------

#[tokio::test]
async fn internal_error_closes_1011_with_an_empty_reason() {
    let server = serve("internal_error_wsh");
    let mut client = connect(&server.ws_url("/internal_error")).await;
    assert_eq!(expect_close(&mut client).await, (1011, String::new()));
}

// ---- /bench ---------------------------------------------------------------------------------

#[tokio::test]
async fn bench_sends_the_message_count_times_paced_then_closes_1000() {
    let server = serve("bench_wsh");
    let mut client = connect(&server.ws_url("/bench")).await;
    let start = Instant::now();
    send(&mut client, Message::text("0.01 3 hi")).await;
    for i in 0..3 {
        let message = next_message(&mut client).await.and_then(Result::ok);
        assert_eq!(message, Some(Message::text("hi")), "message {i}");
    }
    assert_eq!(expect_close(&mut client).await, (1000, String::new()));
    // One 10 ms pause after each of the three sends.
    assert!(start.elapsed() >= Duration::from_millis(30), "{:?}", start.elapsed());
}

#[tokio::test]
async fn bench_with_a_negative_count_sends_nothing() {
    let server = serve("bench_wsh");
    let mut client = connect(&server.ws_url("/bench")).await;
    send(&mut client, Message::text("0 -2 hi")).await;
    assert_eq!(expect_close(&mut client).await, (1000, String::new()));
}

#[tokio::test]
async fn bench_with_a_malformed_request_drops_tcp_without_a_close_frame() {
    let server = serve("bench_wsh");
    for request in
        ["0.01 3", "0.01 3 hi there", "x 3 hi", "0.01 x hi", "0.01 1.5 hi", "-1 3 hi", "0.01  3 hi"]
    {
        assert_dropped_after(&server, "/bench", &[(TEXT, request.as_bytes())]).await;
    }
    assert_dropped_after(&server, "/bench", &[(BINARY, b"0.01 3 hi")]).await;
}

// ---- /benchmark_helper ----------------------------------------------------------------------

#[tokio::test]
async fn benchmark_helper_declines_permessage_deflate() {
    assert_declines_deflate("benchmark_helper_wsh", "/benchmark_helper").await;
}

#[tokio::test]
async fn benchmark_helper_receive_sends_n_bytes_of_a() {
    let server = serve("benchmark_helper_wsh");
    let mut client = connect(&server.ws_url("/benchmark_helper")).await;
    for size in [10usize, 10, 0, 125, 126, 65536, 1 << 20] {
        let reply = round_trip(&mut client, Message::text(format!("receive {size}"))).await;
        assert_eq!(reply, Message::binary(vec![b'a'; size]), "receive {size}");
    }
    assert_eq!(client_close(&mut client, 1000, "").await, (1000, String::new()));
}

#[tokio::test]
async fn benchmark_helper_send_answers_the_size() {
    let server = serve("benchmark_helper_wsh");
    let mut client = connect(&server.ws_url("/benchmark_helper")).await;
    let cases = [
        ("send 1", Message::binary(vec![b'a'; 10240]), "10240"),
        ("send 1", Message::binary(Vec::new()), "0"),
        ("send 0", Message::binary(vec![0u8, 1, 2]), "3"),
        // A text's length counts characters, like Python's len(str).
        ("send 0", Message::text("héllo"), "5"),
        ("send 2", Message::binary(b"xyz".to_vec()), "3"),
    ];
    for (command, payload, expected) in cases {
        send(&mut client, Message::text(command)).await;
        assert_eq!(round_trip(&mut client, payload).await, Message::text(expected), "{command}");
    }
    // The loop goes on: commands mix freely.
    let reply = round_trip(&mut client, Message::text("receive 3")).await;
    assert_eq!(reply, Message::binary(b"aaa".to_vec()));
    assert_eq!(client_close(&mut client, 4000, "done").await, (4000, "done".to_owned()));
}

#[tokio::test]
async fn benchmark_helper_drops_tcp_on_a_bad_command_or_payload() {
    let server = serve("benchmark_helper_wsh");
    let path = "/benchmark_helper";
    for command in
        ["bogus 1", "receive", "receive x", "receive 1 2", "send", "send 1 2", "", "receive 1000000000"]
    {
        assert_dropped_after(&server, path, &[(TEXT, command.as_bytes())]).await;
    }
    assert_dropped_after(&server, path, &[(BINARY, b"receive 10")]).await;
    // `send 1` verifies the payload: binary, all `a`.
    assert_dropped_after(&server, path, &[(TEXT, b"send 1"), (BINARY, b"aaab")]).await;
    assert_dropped_after(&server, path, &[(TEXT, b"send 1"), (TEXT, b"aaaa")]).await;
}
