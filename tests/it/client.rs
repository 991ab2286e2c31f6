//! `wshd client`, the port of pywebsocket's `echo_client.py`, against a real server.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::thread::JoinHandle;

use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use wshd_tests::*;

/// What wshd answers to the client's offer with the default `[websocket.deflate]`.
const AGREED: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

fn client(args: &[&str]) -> Output {
    Command::new(wshd_bin()).arg("client").args(args).output().unwrap_or_else(|e| panic!("{e}"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn echo_server() -> ServerProcess {
    ServerProcess::start(|dir| drop(dir.install("echo_wsh", "handlers/libecho_wsh.so")), "")
}

#[test]
fn goodbye_waits_for_the_server_close() {
    let server = echo_server();
    let port = server.addr.port().to_string();
    let out = client(&["-s", "127.0.0.1", "-p", &port, "-m", "Hello,Goodbye"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        stdout(&out),
        "Send: Hello\nRecv: Hello\nSend: Goodbye\nRecv: Goodbye\nRecv close\nSend ack\n"
    );
}

#[test]
fn other_messages_end_with_a_client_close() {
    let server = echo_server();
    let port = server.addr.port().to_string();
    let out = client(&["-s", "127.0.0.1", "-p", &port]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout(&out), "Send: Hello\nRecv: Hello\nSend: <>\nRecv: <>\nSend close\nRecv ack\n");
    let quiet = client(&["-s", "127.0.0.1", "-p", &port, "-q", "-m", "a,b", "-o", "http://example.com"]);
    assert_eq!(stdout(&quiet), "Send close\nRecv ack\n");
}

/// A number from a `key=value` field of a log line (0 when absent).
fn log_number(line: &str, key: &str) -> u64 {
    let Some((_, rest)) = line.split_once(&format!(" {key}=")) else { return 0 };
    rest.split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[test]
fn permessage_deflate_compresses_both_ways_when_the_server_accepts_it() {
    let server = echo_server();
    let port = server.addr.port().to_string();
    // Long and repetitive (and without commas): compression must show on the wire.
    let long = "wshd compresses this sentence. ".repeat(200);
    let messages = format!("Hello,{long},Goodbye");
    let out =
        client(&["-s", "127.0.0.1", "-p", &port, "-r", "/echo", "--use-permessage-deflate", "-m", &messages]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        stdout(&out),
        format!(
            "permessage-deflate: accepted ({AGREED})\nSend: Hello\nRecv: Hello\nSend: {long}\n\
             Recv: {long}\nSend: Goodbye\nRecv: Goodbye\nRecv close\nSend ack\n"
        )
    );
    let handshake =
        server.wait_log("handshake accepted", WAIT).unwrap_or_else(|| panic!("{}", server.logs()));
    assert!(handshake.contains(&format!("extensions=\"{AGREED}\"")), "{handshake}");
    let closed = server.wait_log("connection closed", WAIT).unwrap_or_else(|| panic!("{}", server.logs()));
    let (bytes_in, wire_in) = (log_number(&closed, "bytes_in"), log_number(&closed, "wire_in"));
    let (bytes_out, wire_out) = (log_number(&closed, "bytes_out"), log_number(&closed, "wire_out"));
    assert!(bytes_in > long.len() as u64 && wire_in * 4 < bytes_in, "client to server: {closed}");
    assert!(bytes_out > long.len() as u64 && wire_out * 4 < bytes_out, "server to client: {closed}");
}

#[test]
fn permessage_deflate_declined_still_echoes() {
    let server =
        ServerProcess::start(|dir| drop(dir.install("echo_noext_wsh", "handlers/libecho_noext_wsh.so")), "");
    let port = server.addr.port().to_string();
    let args = ["-s", "127.0.0.1", "-p", &port, "-r", "/echo_noext", "--use-permessage-deflate"];
    let out = client(&[&args[..], &["-m", "Hello,Goodbye"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        stdout(&out),
        "permessage-deflate: not accepted\nSend: Hello\nRecv: Hello\nSend: Goodbye\nRecv: Goodbye\n\
         Recv close\nSend ack\n"
    );
    let out = client(&[&args[..], &["-m", "Hello"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        stdout(&out),
        "permessage-deflate: not accepted\nSend: Hello\nRecv: Hello\nSend close\nRecv ack\n"
    );
}

/// A fake server for one connection: reads the handshake request, writes what `respond`
/// makes of the right `Sec-WebSocket-Accept`, then reads until the client hangs up. The
/// thread returns what the client sent after its request.
fn fake_server(respond: impl FnOnce(&str) -> Vec<u8> + Send + 'static) -> (u16, JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    let port = listener.local_addr().unwrap_or_else(|e| panic!("{e}")).port();
    let thread = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap_or_else(|e| panic!("accept: {e}"));
        stream.set_read_timeout(Some(WAIT)).unwrap_or_else(|e| panic!("{e}"));
        let mut received = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let n = stream.read(&mut chunk).unwrap_or_else(|e| panic!("read the request: {e}"));
            assert!(n > 0, "the client hung up during its request");
            received.extend_from_slice(&chunk[..n]);
        };
        let request = String::from_utf8_lossy(&received[..end]).into_owned();
        let key = request
            .lines()
            .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-key")))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no key in {request}"));
        stream.write_all(&respond(&derive_accept_key(key.as_bytes()))).unwrap_or_else(|e| panic!("{e}"));
        let mut rest = received.split_off(end);
        while let Ok(n @ 1..) = stream.read(&mut chunk) {
            rest.extend_from_slice(&chunk[..n]);
        }
        rest
    });
    (port, thread)
}

/// A 101 response with this accept value and extra header lines.
fn switching(accept: &str, extra: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// The frames a client sent (short ones, masked as clients must): opcode and payload.
fn client_frames(mut wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while wire.len() >= 6 {
        assert_eq!(wire[1] & 0x80, 0x80, "client frames must be masked: {wire:02x?}");
        let len = usize::from(wire[1] & 0x7f);
        assert!(len < 126 && wire.len() >= 6 + len, "{wire:02x?}");
        let key = [wire[2], wire[3], wire[4], wire[5]];
        let payload = wire[6..6 + len].iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
        frames.push((wire[0] & 0x0f, payload));
        wire = &wire[6 + len..];
    }
    frames
}

#[test]
fn a_masked_frame_from_the_server_fails_the_connection_with_1002() {
    let (port, server) = fake_server(|accept| {
        // A proper echo, then a masked frame.
        let mut response = switching(accept, "");
        response.extend(encode_frame(true, 0x1, b"Hello", false));
        response.extend(encode_frame(true, 0x1, b"masked", true));
        response
    });
    let out = client(&["-s", "127.0.0.1", "-p", &port.to_string(), "-m", "Hello", "-k", "5"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("the server broke the WebSocket protocol (masked server frame)"), "{stderr}");
    assert_eq!(stdout(&out), "Send: Hello\nRecv: Hello\nSend close\n");
    let sent = server.join().unwrap_or_else(|_| panic!("the fake server panicked"));
    let mut close = 1002u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"masked server frame");
    assert_eq!(client_frames(&sent), vec![(0x1, b"Hello".to_vec()), (0x8, close)]);
}

#[test]
fn a_bad_handshake_answer_is_refused_with_the_reason() {
    let cases: [(&str, &[&str], &str); 4] = [
        (
            "Sec-WebSocket-Extensions: permessage-deflate; foo=1\r\n",
            &["--use-permessage-deflate"],
            "unknown permessage-deflate parameter `foo=1`",
        ),
        (
            "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=16\r\n",
            &["--use-permessage-deflate"],
            "`server_max_window_bits=16`: the value must be 8 to 15",
        ),
        ("Sec-WebSocket-Extensions: permessage-deflate\r\n", &[], "none was offered"),
        ("Sec-WebSocket-Protocol: chat\r\n", &[], "the server chose a subprotocol"),
    ];
    for (extra, options, expected) in cases {
        let (port, server) = fake_server(move |accept| switching(accept, extra));
        let port = port.to_string();
        let out = client(&[&["-s", "127.0.0.1", "-p", &port, "-k", "5"], options].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(expected), "{extra}: {stderr}");
        assert!(stdout(&out).is_empty(), "{extra}: {}", stdout(&out));
        drop(server.join());
    }
    let (port, server) = fake_server(|_| switching("dGhlIHNhbXBsZSBub25jZQ==", ""));
    let out = client(&["-s", "127.0.0.1", "-p", &port.to_string(), "-k", "5"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("Sec-WebSocket-Accept"), "{stderr}");
    drop(server.join());
}

#[test]
fn failures_are_explained() {
    let server = echo_server();
    let port = server.addr.port().to_string();
    let out = client(&["-s", "127.0.0.1", "-p", &port, "-r", "/nothing"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the server refused the WebSocket handshake: HTTP 404"), "{stderr}");
    drop(server);
    let out = client(&["-s", "127.0.0.1", "-p", &port, "-k", "2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect to 127.0.0.1:"), "{out:?}");
    let out = Command::new(wshd_bin()).args(["-p", "1", "client"]).output().unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("server options before `client` do not apply"));
}
