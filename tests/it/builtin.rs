//! The built-in echo (`[[route]] builtin = "echo"`): served by the host without any plugin,
//! on the wire like the `echo_wsh` plugin, with the route's settings; listed by
//! `check-config`; added and removed by SIGHUP, untouched by handler hot reload.

use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wshd_tests::*;

const ROUTE: &str = "[[route]]\npath = \"/_echo\"\nbuiltin = \"echo\"\n";

/// A server with an empty handler directory and the built-in echo at `/_echo` (plus `extra`).
fn builtin_server(extra: &str) -> ServerProcess {
    ServerProcess::start(|_| {}, &format!("debounce_ms = 20\n\n{ROUTE}\n{extra}"))
}

/// Polls until a handshake for `path` gets `status`.
async fn wait_status(server: &ServerProcess, path: &str, status: u16) {
    let deadline = Instant::now() + WAIT;
    while raw_http(server.addr, &handshake_request(path, "")).await.status != status {
        assert!(Instant::now() < deadline, "{path} never answered {status}:\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn echoes_text_and_binary_with_no_plugin_installed() {
    let server = builtin_server("");
    assert_eq!(std::fs::read_dir(server.dir().join("handlers")).map(Iterator::count).ok(), Some(0));
    let mut client = connect(&server.ws_url("/_echo")).await;
    assert_eq!(round_trip(&mut client, Message::text("Hello")).await, Message::text("Hello"));
    let binary = vec![0u8, 1, 2, 255];
    assert_eq!(round_trip(&mut client, Message::binary(binary.clone())).await, Message::binary(binary));
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(round_trip(&mut client, Message::binary(big.clone())).await, Message::binary(big));
    let big_text = "wshd ".repeat(20_000);
    assert_eq!(round_trip(&mut client, Message::text(big_text.clone())).await, Message::text(big_text));
    // The client's close is answered with the same code.
    let close = CloseFrame { code: CloseCode::from(4321), reason: "done".into() };
    client.send(Message::Close(Some(close))).await.unwrap_or_else(|e| panic!("close: {e}"));
    assert_eq!(expect_close(&mut client).await, (4321, "done".into()));

    let line = server
        .wait_log_where(|l| l.contains("connection closed") && l.contains("route=/_echo"), WAIT)
        .unwrap_or_else(|| panic!("no access log line:\n{}", server.logs()));
    assert!(line.contains("handler=builtin:echo"), "{line}");
    assert!(line.contains("messages_in=4") && line.contains("messages_out=4"), "{line}");
    assert!(line.contains("close_code=4321"), "{line}");
    let accepted = server.wait_log("handshake accepted", WAIT).unwrap_or_else(|| panic!("{}", server.logs()));
    assert!(accepted.contains("handler=builtin:echo"), "{accepted}");
}

#[tokio::test]
async fn a_fragmented_message_comes_back_whole_and_goodbye_closes_with_1000() {
    let server = builtin_server("");
    let mut raw = RawSocket::open(server.addr, "/_echo").await;
    raw.send_frame(false, 0x1, b"Hel", true).await;
    raw.send_frame(false, 0x0, b"lo, ", true).await;
    raw.send_frame(true, 0x0, "wörld".as_bytes(), true).await;
    let frame = raw.read_frame().await.unwrap_or_else(|| panic!("no echo"));
    assert_eq!(
        frame,
        RawFrame { fin: true, rsv1: false, opcode: 0x1, payload: "Hello, wörld".as_bytes().to_vec() }
    );
    raw.send_frame(false, 0x2, &[1, 2], true).await;
    raw.send_frame(true, 0x0, &[3], true).await;
    let frame = raw.read_frame().await.unwrap_or_else(|| panic!("no echo"));
    assert_eq!(frame, RawFrame { fin: true, rsv1: false, opcode: 0x2, payload: vec![1, 2, 3] });
    // A pong the client sends unasked is ignored: the next reply is the next echo.
    raw.send_frame(true, 0xA, b"unasked", true).await;
    raw.send_frame(true, 0x1, b"Goodbye", true).await;
    let frame = raw.read_frame().await.unwrap_or_else(|| panic!("no echo"));
    assert_eq!((frame.opcode, frame.payload.as_slice()), (0x1, b"Goodbye".as_slice()));
    let close = raw.read_frame().await.unwrap_or_else(|| panic!("no close frame"));
    assert_eq!((close.opcode, close.close_code()), (0x8, 1000));
}

#[test]
fn wshd_client_says_goodbye_to_the_builtin_echo() {
    let server = builtin_server("");
    let port = server.addr.port().to_string();
    let out = Command::new(wshd_bin())
        .args(["client", "-s", "127.0.0.1", "-p", &port, "-r", "/_echo", "-m", "Hello,Goodbye"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Send: Hello\nRecv: Hello\nSend: Goodbye\nRecv: Goodbye\nRecv close\nSend ack\n"
    );
}

#[tokio::test]
async fn the_handshake_chooses_nothing_and_route_settings_apply() {
    let server = builtin_server(
        "[[route]]\npath = \"/_small\"\nbuiltin = \"echo\"\nmax_message_bytes = 1000\ndeflate = false\n",
    );
    let offer = "Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Extensions: permessage-deflate\r\n";
    let resp = raw_http(server.addr, &handshake_request("/_echo", offer)).await;
    assert_eq!(resp.status, 101, "{resp:?}");
    assert_eq!(resp.header("sec-websocket-protocol"), None, "no subprotocol is chosen");
    assert_eq!(
        resp.header("sec-websocket-extensions"),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        "the defaults reset both ways (docs/decisions/0019-compression-memory.md)"
    );
    let resp = raw_http(server.addr, &handshake_request("/_small", offer)).await;
    assert_eq!(resp.status, 101, "{resp:?}");
    assert_eq!(resp.header("sec-websocket-extensions"), None, "deflate = false on this route");
    let names: Vec<&str> = resp.headers.iter().map(|(n, _)| n.as_str()).filter(|n| *n != "date").collect();
    assert_eq!(names, ["upgrade", "connection", "sec-websocket-accept"], "no extra headers: {resp:?}");

    let mut raw = RawSocket::open(server.addr, "/_small").await;
    raw.send_frame(true, 0x2, &[7; 1001], true).await;
    let close = raw.read_frame().await.unwrap_or_else(|| panic!("no close frame"));
    assert_eq!((close.opcode, close.close_code()), (0x8, 1009), "max_message_bytes of the route");
}

#[tokio::test]
async fn sighup_adds_and_removes_it_and_handler_reloads_leave_it_alone() {
    let server = ServerProcess::start(|_| {}, "debounce_ms = 20\n");
    let config = server.dir().join("server.toml");
    let original = std::fs::read_to_string(&config).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(raw_http(server.addr, &handshake_request("/_echo", "")).await.status, 404);
    std::fs::write(&config, format!("{original}\n{ROUTE}")).unwrap_or_else(|e| panic!("{e}"));
    server.signal("HUP");
    wait_status(&server, "/_echo", 101).await;
    let mut open = connect(&server.ws_url("/_echo")).await;
    assert_eq!(round_trip(&mut open, Message::text("before")).await, Message::text("before"));

    // A plugin appearing in the handler directory rebuilds the table; the built-in route and
    // its open connection carry on.
    std::fs::copy(plugin_lib("echo_wsh"), server.dir().join("handlers/libecho_wsh.so"))
        .unwrap_or_else(|e| panic!("{e}"));
    // Every worker, not just the first to answer: the last check below may reach either.
    assert!(server.wait_log_everywhere("handler loaded resource=/echo", WAIT), "{}", server.logs());
    wait_status(&server, "/echo", 101).await;
    assert_eq!(round_trip(&mut open, Message::text("during")).await, Message::text("during"));
    let mut fresh = connect(&server.ws_url("/_echo")).await;
    assert_eq!(round_trip(&mut fresh, Message::text("fresh")).await, Message::text("fresh"));

    // SIGHUP without the route: new handshakes get 404, the open connection finishes.
    std::fs::write(&config, &original).unwrap_or_else(|e| panic!("{e}"));
    server.signal("HUP");
    wait_status(&server, "/_echo", 404).await;
    assert_eq!(round_trip(&mut open, Message::text("after")).await, Message::text("after"));
    let status = raw_http(server.addr, &handshake_request("/echo", "")).await.status;
    assert_eq!(status, 101, "{}", server.logs());
}

#[test]
fn check_config_lists_it() {
    let dir = TempDir::new();
    std::fs::create_dir_all(dir.path().join("handlers")).unwrap_or_else(|e| panic!("{e}"));
    dir.write("server.toml", &format!("[handlers]\ndir = \"handlers\"\n{ROUTE}"));
    let (code, stdout, stderr) = run_wshd(&["-c", "server.toml", "check-config"], dir.path());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("  /_echo -> builtin:echo (built in, no plugin)\n"), "{stdout}");
}

#[test]
fn config_errors_name_file_line_and_key() {
    let dir = TempDir::new();
    dir.write("both.toml", "[[route]]\npath = \"/_echo\"\nbuiltin = \"echo\"\nhandler = \"/echo\"\n");
    let (code, _, stderr) = run_wshd(&["-c", "both.toml", "check-config"], dir.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("both.toml:4:11: key `route.handler`: a route is served by"), "{stderr}");
    dir.write(
        "name.toml",
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[[route]]\npath = \"/_echo\"\nbuiltin = \"ecko\"\n",
    );
    let (code, _, stderr) = run_wshd(&["-c", "name.toml", "check-config"], dir.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "name.toml:6:11: key `route.builtin`: unknown built-in handler `ecko`; valid: \"echo\""
        ),
        "{stderr}"
    );
    dir.write("config.toml", "[[route]]\npath = \"/_echo\"\nbuiltin = \"echo\"\n[route.config]\na = 1\n");
    let (code, _, stderr) = run_wshd(&["-c", "config.toml", "check-config"], dir.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("config.toml:4:") && stderr.contains("key `route.config`"), "{stderr}");
    // The server refuses to start with it, too.
    let (code, _, stderr) = run_wshd(&["-c", "name.toml"], dir.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("name.toml:6:11"), "{stderr}");
}
