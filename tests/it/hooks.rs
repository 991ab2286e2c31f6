//! The two hooks through the plugin boundary: handshake verdicts, subprotocols, headers,
//! panics in either hook, close codes and aborts.

use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use wshd_tests::*;

fn probe_server() -> ServerProcess {
    ServerProcess::start(
        |dir| {
            dir.install("fixture_probe", "handlers/probe_wsh.so");
            dir.install("echo_wsh", "handlers/libecho_wsh.so");
        },
        "",
    )
}

#[tokio::test]
async fn a_rejecting_hook_answers_its_status_headers_and_body() {
    let server = probe_server();
    let resp = raw_http(server.addr, &handshake_request("/probe?reject=403", "")).await;
    assert_eq!(resp.status, 403);
    assert_eq!(resp.header("x-probe"), Some("rejected"));
    assert_eq!(resp.text(), "rejected by probe");
    let resp = raw_http(server.addr, &handshake_request("/probe?reject=429", "")).await;
    assert_eq!(resp.status, 429);
}

#[tokio::test]
async fn the_hook_sees_the_origin() {
    let server = probe_server();
    let good = handshake_request("/probe?origin_check", "Origin: http://example.com\r\n");
    assert_eq!(raw_http(server.addr, &good).await.status, 101);
    let bad = handshake_request("/probe?origin_check", "Origin: http://evil.example\r\n");
    assert_eq!(raw_http(server.addr, &bad).await.status, 403);
    assert_eq!(raw_http(server.addr, &handshake_request("/probe?origin_check", "")).await.status, 403);
}

#[tokio::test]
async fn the_hook_chooses_an_offered_subprotocol() {
    let server = probe_server();
    let resp = raw_http(
        server.addr,
        &handshake_request("/probe?protocol=chat", "Sec-WebSocket-Protocol: superchat, chat\r\n"),
    )
    .await;
    assert_eq!(resp.status, 101);
    assert_eq!(resp.header("sec-websocket-protocol"), Some("chat"));

    let mut client =
        connect_with(&server.ws_url("/probe?protocol=chat"), &[("Sec-WebSocket-Protocol", "chat")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    let info = round_trip(&mut client, Message::text("info")).await;
    let info = info.to_text().unwrap_or_default().to_owned();
    assert!(info.contains("protocol=chat"), "{info}");
    assert!(info.contains("resource=/probe path=/probe query=protocol=chat"), "{info}");
    assert!(info.contains("peer=127.0.0.1"), "{info}");
}

#[tokio::test]
async fn choosing_a_subprotocol_the_client_did_not_offer_is_a_500() {
    let server = probe_server();
    let resp = raw_http(
        server.addr,
        &handshake_request("/probe?protocol=other", "Sec-WebSocket-Protocol: chat\r\n"),
    )
    .await;
    assert_eq!(resp.status, 500);
    assert!(server.wait_log("did not offer", WAIT).is_some(), "{}", server.logs());
}

#[tokio::test]
async fn a_hook_cannot_set_protocol_headers() {
    let server = probe_server();
    let resp = raw_http(server.addr, &handshake_request("/probe?set_header=Sec-WebSocket-Accept", "")).await;
    assert_eq!(resp.status, 500);
}

#[tokio::test]
async fn the_hook_adds_response_headers() {
    let server = probe_server();
    let resp = raw_http(server.addr, &handshake_request("/probe?cookie", "")).await;
    assert_eq!(resp.status, 101);
    assert_eq!(resp.header("set-cookie"), Some("probe=1; Max-Age=60"));
}

#[tokio::test]
async fn a_panic_in_do_handshake_is_a_500_and_the_server_keeps_serving() {
    let server = probe_server();
    for _ in 0..3 {
        let resp = raw_http(server.addr, &handshake_request("/probe?panic_handshake", "")).await;
        assert_eq!(resp.status, 500);
    }
    let line =
        server.wait_log("panicked in do_handshake", WAIT).unwrap_or_else(|| panic!("{}", server.logs()));
    assert!(line.contains("probe handshake panic"), "{line}");
    let mut client = connect(&server.ws_url("/probe")).await;
    assert_eq!(round_trip(&mut client, Message::text("hi")).await, Message::text("hi"));
}

#[tokio::test]
async fn an_aborting_hook_drops_the_connection_without_a_response() {
    let server = probe_server();
    let resp = raw_http(server.addr, &handshake_request("/probe?abort_handshake", "")).await;
    assert_eq!(resp.status, 0, "expected no response at all, got {resp:?}");
    assert!(resp.body.is_empty());
}

#[tokio::test]
async fn a_panic_in_transfer_data_closes_1011_and_others_are_unaffected() {
    let server = probe_server();
    let mut bystander = connect(&server.ws_url("/echo")).await;
    for command in ["panic", "panic-later"] {
        let mut client = connect(&server.ws_url("/probe")).await;
        client.send(Message::text(command)).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(expect_close(&mut client).await.0, 1011, "{command}");
    }
    assert!(server.wait_log("probe transfer panic after an await", WAIT).is_some(), "{}", server.logs());
    assert_eq!(round_trip(&mut bystander, Message::text("still")).await, Message::text("still"));
    let mut next = connect(&server.ws_url("/probe")).await;
    assert_eq!(round_trip(&mut next, Message::text("again")).await, Message::text("again"));
}

#[tokio::test]
async fn the_handler_closes_with_its_code_and_reason() {
    let server = probe_server();
    let mut client = connect(&server.ws_url("/probe")).await;
    client.send(Message::text("close 4321 see you")).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(expect_close(&mut client).await, (4321, "see you".to_owned()));
}

#[tokio::test]
async fn an_invalid_close_code_is_refused_to_the_handler() {
    let server = probe_server();
    let mut client = connect(&server.ws_url("/probe")).await;
    for code in ["999", "1005", "1006", "1015", "5000"] {
        let reply = round_trip(&mut client, Message::text(format!("close {code} x"))).await;
        assert_eq!(
            reply,
            Message::text("close failed: invalid argument for the WebSocket protocol"),
            "{code}"
        );
    }
}

#[tokio::test]
async fn returning_closes_with_1000() {
    let server = probe_server();
    let mut client = connect(&server.ws_url("/probe")).await;
    client.send(Message::text("return")).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(expect_close(&mut client).await, (1000, String::new()));
}

#[tokio::test]
async fn abort_drops_tcp_without_a_close_frame() {
    let server = probe_server();
    let mut raw = RawSocket::open(server.addr, "/probe").await;
    raw.send_frame(true, 1, b"abort", true).await;
    assert!(raw.closed_without_frames().await, "expected EOF without a close frame");
}

#[tokio::test]
async fn fragmented_sends_arrive_as_one_message() {
    let server = probe_server();
    let mut raw = RawSocket::open(server.addr, "/probe").await;
    raw.send_frame(true, 1, b"fragments", true).await;
    let first = raw.read_frame().await.unwrap_or_else(|| panic!("no frame"));
    assert_eq!((first.fin, first.opcode, first.payload.as_slice()), (false, 1, &b"frag"[..]));
    let second = raw.read_frame().await.unwrap_or_else(|| panic!("no frame"));
    assert_eq!((second.fin, second.opcode, second.payload.as_slice()), (true, 0, &b"ments"[..]));
}

#[tokio::test]
async fn host_timers_spawned_tasks_and_pings_work_inside_plugins() {
    let server = probe_server();
    let mut client = connect(&server.ws_url("/probe")).await;
    assert_eq!(round_trip(&mut client, Message::text("sleep 20")).await, Message::text("slept"));
    client.send(Message::text("spawn")).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(next_message(&mut client).await.and_then(Result::ok), Some(Message::text("from task")));
    client.send(Message::text("ping")).await.unwrap_or_else(|e| panic!("{e}"));
    // The client library answers the ping; we see the ping itself, then the text.
    let mut saw_ping = false;
    loop {
        let next = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut client)).await;
        match next.unwrap_or_else(|_| panic!("timeout")) {
            Some(Ok(Message::Ping(p))) => {
                assert_eq!(p.as_ref(), b"probe");
                saw_ping = true;
            }
            Some(Ok(Message::Text(t))) => {
                assert_eq!(t.as_str(), "pinged");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(saw_ping);
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test]
async fn a_handler_can_receive_pongs_as_events() {
    let server = probe_server();
    let mut client = connect(&server.ws_url("/probe")).await;
    // The client library answers the server's ping automatically.
    client.send(Message::text("pong-event")).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        next_message(&mut client).await.and_then(Result::ok),
        Some(Message::text("pong: are you there"))
    );
}

#[tokio::test]
async fn a_handler_chooses_the_answer_to_the_clients_close() {
    let server = probe_server();
    let mut client = connect(&server.ws_url("/probe")).await;
    let reply = round_trip(&mut client, Message::text("close-reply 999 nope")).await;
    assert_eq!(reply, Message::text("close reply refused: invalid argument for the WebSocket protocol"));
    assert_eq!(
        round_trip(&mut client, Message::text("close-reply 4100 my answer")).await,
        Message::text("close reply set")
    );
    client
        .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: 1000.into(),
            reason: "bye".into(),
        }))
        .await
        .unwrap_or_else(|e| panic!("close: {e}"));
    assert_eq!(expect_close(&mut client).await, (4100, "my answer".to_owned()));
}

#[tokio::test]
async fn handlers_sending_to_each_other_at_once_do_not_deadlock() {
    // Two handlers, each inside its own poll, send through the other's `Sender` thousands of
    // times at the same moment (a chat room's broadcast): no lock may be held across a
    // handler's poll while another connection's lock is wanted.
    const FLOOD: usize = 2000;
    // The room lives in the handler's memory, which is per worker process: both connections
    // must be served by the same process, so one worker.
    let server = ServerProcess::start_with(
        |dir| {
            dir.install("fixture_probe", "handlers/probe_wsh.so");
        },
        "workers = 1",
        "",
    );
    let mut a = connect(&server.ws_url("/probe")).await;
    let mut b = connect(&server.ws_url("/probe")).await;
    for client in [&mut a, &mut b] {
        assert_eq!(round_trip(client, Message::text("join")).await, Message::text("joined"));
    }
    let flood = |mut client: Client| async move {
        client.send(Message::text(format!("flood {FLOOD}"))).await.unwrap_or_else(|e| panic!("{e}"));
        let (mut xs, mut flooded) = (0, false);
        while xs < FLOOD || !flooded {
            match tokio::time::timeout(Duration::from_secs(20), client.next()).await {
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "x" => xs += 1,
                Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "flooded" => flooded = true,
                Ok(other) => panic!("unexpected {other:?} after {xs} x"),
                Err(_) => panic!("stuck after {xs} of {FLOOD} messages (flooded: {flooded})"),
            }
        }
    };
    tokio::join!(flood(a), flood(b));
}
