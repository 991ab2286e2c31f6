//! Strict request parsing (RFC 9112 and RFC 6455 refusals a lenient parser lets through):
//! two `Host` headers, a head over `max_header_bytes` that arrives in one piece, and
//! WebSocket offer headers with too many items or bytes.

use wshd_tests::*;

fn server() -> ServerProcess {
    ServerProcess::start_with(
        |dir| drop(dir.install("echo_wsh", "handlers/libecho_wsh.so")),
        "max_header_bytes = 8192",
        "",
    )
}

#[tokio::test]
async fn two_host_headers_are_400_for_handshakes_and_pages() {
    let server = server();
    let handshake = handshake_request("/echo", "Host: evil.example\r\n");
    let resp = raw_http(server.addr, &handshake).await;
    assert_eq!(resp.status, 400, "{resp:?}");
    assert!(resp.text().contains("Host"), "{}", resp.text());
    let page = "GET /nothing-here HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_http(server.addr, page).await.status, 400);
}

#[tokio::test]
async fn a_head_over_max_header_bytes_in_one_piece_is_431() {
    let server = server();
    let filler = format!("X-Filler: {}\r\n", "a".repeat(9000));
    let resp = raw_http(server.addr, &handshake_request("/echo", &filler)).await;
    assert_eq!(resp.status, 431, "{resp:?}");
    let just_under = format!("X-Filler: {}\r\n", "a".repeat(7000));
    assert_eq!(raw_http(server.addr, &handshake_request("/echo", &just_under)).await.status, 101);
}

#[tokio::test]
async fn a_head_over_the_default_64_kib_in_one_piece_is_431() {
    // The HTTP parser reads in growing pieces and checks its limit only between them: with
    // the default limit a 70 KiB head used to fit in its last read and get 101.
    let server = ServerProcess::start(|dir| drop(dir.install("echo_wsh", "handlers/libecho_wsh.so")), "");
    let filler = format!("X-Filler: {}\r\n", "a".repeat(70_000));
    let resp = raw_http(server.addr, &handshake_request("/echo", &filler)).await;
    assert_eq!(resp.status, 431, "{resp:?}");
    let just_under = format!("X-Filler: {}\r\n", "a".repeat(65_000));
    assert_eq!(raw_http(server.addr, &handshake_request("/echo", &just_under)).await.status, 101);
}

#[tokio::test]
async fn offers_with_too_many_subprotocols_or_extensions_are_400() {
    let server = server();
    let protocols: Vec<String> = (0..1000).map(|n| format!("p{n}")).collect();
    let many = format!("Sec-WebSocket-Protocol: {}\r\n", protocols.join(", "));
    let resp = raw_http(server.addr, &handshake_request("/echo", &many)).await;
    assert_eq!(resp.status, 400, "{resp:?}");
    assert!(resp.text().contains("subprotocols"), "{}", resp.text());
    let offers: Vec<&str> = (0..100).map(|_| "permessage-deflate").collect();
    let many = format!("Sec-WebSocket-Extensions: {}\r\n", offers.join(", "));
    let resp = raw_http(server.addr, &handshake_request("/echo", &many)).await;
    assert_eq!(resp.status, 400, "{resp:?}");
    let few = "Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Extensions: permessage-deflate\r\n";
    assert_eq!(raw_http(server.addr, &handshake_request("/echo", few)).await.status, 101);
}
