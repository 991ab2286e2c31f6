//! `/echo`: mod_pywebsocket's echo handler, ported.

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use wshd_tests::*;

fn echo_server() -> ServerProcess {
    ServerProcess::start(|dir| drop(dir.install("echo_wsh", "handlers/libecho_wsh.so")), "")
}

#[tokio::test]
async fn echoes_text_binary_and_empty_messages_with_their_type() {
    let server = echo_server();
    let mut client = connect(&server.ws_url("/echo")).await;
    assert_eq!(round_trip(&mut client, Message::text("Hello, wshd")).await, Message::text("Hello, wshd"));
    assert_eq!(
        round_trip(&mut client, Message::binary(vec![0u8, 1, 2, 255])).await,
        Message::binary(vec![0u8, 1, 2, 255])
    );
    assert_eq!(round_trip(&mut client, Message::text("")).await, Message::text(""));
    assert_eq!(round_trip(&mut client, Message::binary(Vec::new())).await, Message::binary(Vec::new()));
    assert_eq!(round_trip(&mut client, Message::text("héllo ✓")).await, Message::text("héllo ✓"));
}

#[tokio::test]
async fn frames_sent_with_the_handshake_request_are_not_lost() {
    // A client may send its first frames before the 101 arrives; the HTTP layer reads them
    // with the request and the WebSocket must start from them.
    let server = echo_server();
    let mut early = encode_frame(true, 1, b"first", true);
    early.extend(encode_frame(true, 2, &[7u8; 300], true));
    let mut raw = RawSocket::open_sending(server.addr, "/echo", &early).await;
    let first = raw.read_frame().await.unwrap_or_else(|| panic!("no echo of the first frame"));
    assert_eq!((first.opcode, first.payload.as_slice()), (1, &b"first"[..]));
    let second = raw.read_frame().await.unwrap_or_else(|| panic!("no echo of the second frame"));
    assert_eq!((second.opcode, second.payload), (2, vec![7u8; 300]));
}

#[tokio::test]
async fn echoes_a_one_mebibyte_message_intact() {
    let server = echo_server();
    let mut client = connect(&server.ws_url("/echo")).await;
    let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
    assert_eq!(round_trip(&mut client, Message::binary(big.clone())).await, Message::binary(big));
    let text = "abcdefghij".repeat(100_000);
    assert_eq!(round_trip(&mut client, Message::text(text.clone())).await, Message::text(text));
}

#[tokio::test]
async fn goodbye_is_echoed_then_the_server_closes_with_1000() {
    let server = echo_server();
    let mut client = connect(&server.ws_url("/echo")).await;
    assert_eq!(round_trip(&mut client, Message::text("Goodbye")).await, Message::text("Goodbye"));
    assert_eq!(expect_close(&mut client).await, (1000, String::new()));
}

#[tokio::test]
async fn binary_goodbye_is_just_echoed() {
    let server = echo_server();
    let mut client = connect(&server.ws_url("/echo")).await;
    let goodbye = Message::binary(b"Goodbye".to_vec());
    assert_eq!(round_trip(&mut client, goodbye.clone()).await, goodbye);
    assert_eq!(round_trip(&mut client, Message::text("still here")).await, Message::text("still here"));
}

#[tokio::test]
async fn client_close_is_answered_with_the_same_code() {
    let server = echo_server();
    let mut client = connect(&server.ws_url("/echo")).await;
    client
        .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: 4001.into(),
            reason: "bye".into(),
        }))
        .await
        .unwrap_or_else(|e| panic!("close: {e}"));
    assert_eq!(expect_close(&mut client).await, (4001, "bye".to_owned()));
    let _ = client.send(Message::text("x")).await;
}

#[tokio::test]
async fn many_connections_are_served_concurrently() {
    let server = echo_server();
    let mut clients = Vec::new();
    for _ in 0..50 {
        clients.push(connect(&server.ws_url("/echo")).await);
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let text = format!("client {i}");
        assert_eq!(round_trip(client, Message::text(text.clone())).await, Message::text(text));
    }
}

#[tokio::test]
async fn one_message_larger_than_the_send_queue_cap_is_not_a_slow_reader() {
    let server = ServerProcess::start(
        |dir| drop(dir.install("echo_wsh", "handlers/libecho_wsh.so")),
        "[websocket]\nmax_send_queue_bytes = 65536\nmax_message_bytes = 8388608\n",
    );
    let mut client = connect(&server.ws_url("/echo")).await;
    let big = vec![42u8; 4 << 20];
    for _ in 0..3 {
        assert_eq!(round_trip(&mut client, Message::binary(big.clone())).await, Message::binary(big.clone()));
    }
}
