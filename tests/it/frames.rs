//! Frame-level errors map to the right close codes: 1002 protocol errors, 1007 invalid
//! UTF-8, 1009 too big.

use wshd_tests::*;

fn server(extra: &str) -> ServerProcess {
    ServerProcess::start(|dir| drop(dir.install("echo_wsh", "handlers/libecho_wsh.so")), extra)
}

async fn close_code_after(raw: &mut RawSocket) -> u16 {
    loop {
        let frame =
            raw.read_frame().await.unwrap_or_else(|| panic!("connection closed without a close frame"));
        if frame.opcode == 8 {
            return frame.close_code();
        }
    }
}

#[tokio::test]
async fn an_unmasked_frame_closes_with_1002() {
    let server = server("");
    let mut raw = RawSocket::open(server.addr, "/echo").await;
    raw.send_frame(true, 1, b"unmasked", false).await;
    assert_eq!(close_code_after(&mut raw).await, 1002);
}

#[tokio::test]
async fn a_continuation_without_a_start_closes_with_1002() {
    let server = server("");
    let mut raw = RawSocket::open(server.addr, "/echo").await;
    raw.send_frame(true, 0, b"orphan", true).await;
    assert_eq!(close_code_after(&mut raw).await, 1002);
}

#[tokio::test]
async fn an_oversized_control_frame_closes_with_1002() {
    let server = server("");
    let mut raw = RawSocket::open(server.addr, "/echo").await;
    raw.send_frame(true, 9, &[0u8; 126], true).await;
    assert_eq!(close_code_after(&mut raw).await, 1002);
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let server = server("");
    let mut raw = RawSocket::open(server.addr, "/echo").await;
    raw.send_frame(true, 1, &[0xce, 0xba, 0xff, 0xfe], true).await;
    assert_eq!(close_code_after(&mut raw).await, 1007);
}

#[tokio::test]
async fn a_message_over_the_limit_closes_with_1009() {
    let server = server("[websocket]\nmax_message_bytes = 1000\n");
    let mut raw = RawSocket::open(server.addr, "/echo").await;
    raw.send_frame(true, 2, &[7u8; 1000], true).await;
    let echoed = raw.read_frame().await.unwrap_or_else(|| panic!("no echo"));
    assert_eq!(echoed.payload.len(), 1000, "a message at the limit is accepted");
    raw.send_frame(false, 2, &[7u8; 600], true).await;
    raw.send_frame(true, 0, &[7u8; 600], true).await;
    assert_eq!(close_code_after(&mut raw).await, 1009);
}

#[tokio::test]
async fn a_ping_is_answered_with_the_same_payload_even_between_fragments() {
    let server = server("");
    let mut raw = RawSocket::open(server.addr, "/echo").await;
    raw.send_frame(false, 1, b"Hel", true).await;
    raw.send_frame(true, 9, b"are you there", true).await;
    let pong = raw.read_frame().await.unwrap_or_else(|| panic!("no pong"));
    assert_eq!((pong.opcode, pong.payload.as_slice()), (10, &b"are you there"[..]));
    raw.send_frame(true, 0, b"lo", true).await;
    let echo = raw.read_frame().await.unwrap_or_else(|| panic!("no echo"));
    assert_eq!((echo.opcode, echo.payload.as_slice()), (1, &b"Hello"[..]));
}

#[tokio::test]
async fn a_client_that_never_answers_our_close_is_dropped_after_the_close_timeout() {
    let server = server("[websocket]\nclose_timeout_secs = 1\n");
    let mut raw = RawSocket::open(server.addr, "/echo").await;
    raw.send_frame(true, 1, b"Goodbye", true).await;
    let echo = raw.read_frame().await.unwrap_or_else(|| panic!("no echo"));
    assert_eq!(echo.payload, b"Goodbye");
    let close = raw.read_frame().await.unwrap_or_else(|| panic!("no close"));
    assert_eq!((close.opcode, close.close_code()), (8, 1000));
    let started = std::time::Instant::now();
    assert!(raw.closed_without_frames().await, "the server must drop TCP");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "dropped after {:?}", started.elapsed());
}
