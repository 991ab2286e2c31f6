//! Discovery and routing: file names give resource paths (recursively), `[[route]]`s add
//! aliases and per-route settings, conflicts are refused.

use tokio_tungstenite::tungstenite::Message;
use wshd_tests::*;

async fn info(server: &ServerProcess, path: &str) -> String {
    let mut client = connect(&server.ws_url(path)).await;
    round_trip(&mut client, Message::text("info")).await.to_text().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn subdirectories_map_to_resource_paths_and_aliases_share_the_handler() {
    let server = ServerProcess::start(
        |dir| {
            dir.install("fixture_probe", "handlers/chat/libroom_wsh.so");
            dir.install("echo_wsh", "handlers/echo_wsh.so");
            dir.write("handlers/README.txt", "not a handler");
        },
        "[[route]]\npath = \"/\"\nhandler = \"/echo\"\n\n[[route]]\npath = \"/lobby\"\nhandler = \"/chat/room\"\n",
    );
    let room = info(&server, "/chat/room").await;
    assert!(room.contains("resource=/chat/room path=/chat/room"), "{room}");
    let lobby = info(&server, "/lobby").await;
    assert!(lobby.contains("resource=/chat/room path=/lobby"), "{lobby}");
    let mut root = connect(&server.ws_url("/")).await;
    assert_eq!(round_trip(&mut root, Message::text("via alias")).await, Message::text("via alias"));
    assert_eq!(raw_http(server.addr, &handshake_request("/room", "")).await.status, 404);
}

#[tokio::test]
async fn a_route_with_its_own_config_gets_its_own_instance() {
    let server = ServerProcess::start(
        |dir| drop(dir.install("fixture_probe", "handlers/probe_wsh.so")),
        "[[route]]\npath = \"/probe\"\n[route.config]\ngreeting = \"default\"\n\n\
         [[route]]\npath = \"/fr\"\nhandler = \"/probe\"\n[route.config]\ngreeting = \"bonjour\"\n",
    );
    let mut probe = connect(&server.ws_url("/probe")).await;
    assert_eq!(round_trip(&mut probe, Message::text("greeting")).await, Message::text("default"));
    let mut fr = connect(&server.ws_url("/fr")).await;
    assert_eq!(round_trip(&mut fr, Message::text("greeting")).await, Message::text("bonjour"));
}

#[tokio::test]
async fn two_files_for_one_resource_are_both_refused() {
    let server = ServerProcess::start(
        |dir| {
            dir.install("echo_wsh", "handlers/libecho_wsh.so");
            dir.install("fixture_probe", "handlers/echo_wsh.so");
            dir.install("fixture_probe", "handlers/probe_wsh.so");
        },
        "",
    );
    let line = server.wait_log("map to /echo", WAIT).unwrap_or_else(|| panic!("{}", server.logs()));
    assert!(line.contains("libecho_wsh.so") && line.contains("echo_wsh.so"), "{line}");
    assert_eq!(raw_http(server.addr, &handshake_request("/echo", "")).await.status, 404);
    assert_eq!(raw_http(server.addr, &handshake_request("/probe", "")).await.status, 101);
}

#[tokio::test]
async fn a_route_to_a_missing_handler_is_a_warning_not_an_error() {
    let server = ServerProcess::start(
        |dir| drop(dir.install("echo_wsh", "handlers/libecho_wsh.so")),
        "[[route]]\npath = \"/later\"\nhandler = \"/not/yet\"\n",
    );
    assert!(server.wait_log("handler /not/yet is not loaded", WAIT).is_some(), "{}", server.logs());
    assert_eq!(raw_http(server.addr, &handshake_request("/later", "")).await.status, 404);
    assert_eq!(raw_http(server.addr, &handshake_request("/echo", "")).await.status, 101);
}
