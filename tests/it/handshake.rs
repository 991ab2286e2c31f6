//! RFC 6455 §4.2 handshake validation: every malformed request gets the right status.

use wshd_tests::*;

fn server() -> ServerProcess {
    ServerProcess::start(|dir| drop(dir.install("echo_wsh", "handlers/libecho_wsh.so")), "")
}

#[tokio::test]
async fn a_valid_handshake_gets_101_with_the_accept_key() {
    let server = server();
    let resp = raw_http(server.addr, &handshake_request("/echo", "")).await;
    assert_eq!(resp.status, 101);
    assert_eq!(resp.header("sec-websocket-accept"), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    assert_eq!(resp.header("upgrade").map(str::to_ascii_lowercase).as_deref(), Some("websocket"));
    assert_eq!(resp.header("sec-websocket-protocol"), None, "no subprotocol was chosen");
    assert_eq!(resp.header("sec-websocket-extensions"), None, "no extension is negotiated");
}

#[tokio::test]
async fn header_names_and_tokens_are_case_insensitive() {
    let server = server();
    let request = "GET /echo?x=1 HTTP/1.1\r\nhost: localhost\r\nUPGRADE: WebSocket\r\nconnection: keep-alive, Upgrade\r\n\
                   sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n";
    assert_eq!(raw_http(server.addr, request).await.status, 101);
}

#[tokio::test]
async fn unknown_path_is_404() {
    let server = server();
    assert_eq!(raw_http(server.addr, &handshake_request("/nope", "")).await.status, 404);
}

#[tokio::test]
async fn unsupported_version_is_426_with_the_supported_version() {
    let server = server();
    let request = "GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n";
    let resp = raw_http(server.addr, request).await;
    assert_eq!(resp.status, 426);
    assert_eq!(resp.header("sec-websocket-version"), Some("13"));
}

#[tokio::test]
async fn malformed_handshakes_are_400() {
    let server = server();
    let cases = [
        ("bad key", handshake_request("/echo", "").replace("dGhlIHNhbXBsZSBub25jZQ==", "not-a-key")),
        ("short key", handshake_request("/echo", "").replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ==")),
        (
            "missing key",
            handshake_request("/echo", "").replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
        ),
        (
            "two versions",
            handshake_request("/echo", "")
                .replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 13, 8"),
        ),
        ("missing version", handshake_request("/echo", "").replace("Sec-WebSocket-Version: 13\r\n", "")),
        (
            "no upgrade token",
            handshake_request("/echo", "").replace("Connection: Upgrade", "Connection: keep-alive"),
        ),
        ("wrong upgrade", handshake_request("/echo", "").replace("Upgrade: websocket", "Upgrade: h2c")),
        ("POST", handshake_request("/echo", "").replace("GET /echo", "POST /echo")),
        ("HTTP/1.0", handshake_request("/echo", "").replace("HTTP/1.1", "HTTP/1.0")),
        ("plain GET", "GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n".to_owned()),
    ];
    for (what, request) in cases {
        let resp = raw_http(server.addr, &request).await;
        assert_eq!(resp.status, 400, "{what}: {resp:?}");
    }
}

#[tokio::test]
async fn missing_host_is_400() {
    let server = server();
    let resp =
        raw_http(server.addr, &handshake_request("/echo", "").replace("Host: localhost\r\n", "")).await;
    assert_eq!(resp.status, 400);
}

#[tokio::test]
async fn a_plain_get_of_a_handler_path_explains_itself() {
    let server = server();
    let resp = raw_http(server.addr, "GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(resp.status, 400);
    assert!(resp.text().contains("WebSocket endpoint"), "{}", resp.text());
}

#[tokio::test]
async fn an_absolute_form_target_is_routed_by_its_path() {
    let server = server();
    let request = handshake_request("/echo", "")
        .replace("GET /echo", &format!("GET ws://localhost:{}/echo", server.addr.port()));
    assert_eq!(raw_http(server.addr, &request).await.status, 101);
}
