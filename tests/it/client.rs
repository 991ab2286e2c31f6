//! `wshd client`, the port of pywebsocket's `echo_client.py`, against a real server.

use std::process::{Command, Output};

use wshd_tests::*;

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

#[test]
fn permessage_deflate_is_offered_and_reported() {
    let server = echo_server();
    let port = server.addr.port().to_string();
    let out = client(&["-s", "127.0.0.1", "-p", &port, "--use-permessage-deflate", "-m", "x"]);
    let text = stdout(&out);
    assert!(
        text.starts_with("permessage-deflate: accepted")
            || text.starts_with("permessage-deflate: not accepted"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
