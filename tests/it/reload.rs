//! Hot reload: a replaced handler serves new connections while open ones keep the code they
//! started with, however the file is replaced; broken builds are refused and the previous
//! generation keeps serving; removed files stop being routed; SIGHUP reloads the config.

use std::path::{Path, PathBuf};
use tokio_tungstenite::tungstenite::Message;
use wshd_tests::*;

const HANDLER: &str = "handlers/libver_wsh.so";

fn start() -> ServerProcess {
    ServerProcess::start(
        |dir| {
            dir.install("fixture_version_one", HANDLER);
            dir.install("echo_wsh", "handlers/libecho_wsh.so");
        },
        "debounce_ms = 20\n",
    )
}

/// Fixes the generated config: the extra text lands under `[handlers]`.
fn handler_file(server: &ServerProcess) -> PathBuf {
    server.dir().join(HANDLER)
}

/// The generation number the server logged when it first loaded `resource`.
fn first_generation(server: &ServerProcess, resource: &str) -> String {
    let line = server
        .wait_log(&format!("handler loaded resource={resource} "), WAIT)
        .unwrap_or_else(|| panic!("{resource} never loaded:\n{}", server.logs()));
    let value = line.split("generation=").nth(1).and_then(|rest| rest.split(' ').next()).unwrap_or("");
    value.to_owned()
}

async fn say(client: &mut Client, text: &str) -> String {
    round_trip(client, Message::text(text)).await.to_text().unwrap_or_default().to_owned()
}

/// Waits until a new connection to `/ver` answers with `version`.
async fn wait_until_served_by(server: &ServerProcess, version: &str) {
    // Every worker reloads on its own: wait until each has published a table with it.
    let plugin = if version == "v1" { "plugin=fixture_version_one" } else { "plugin=fixture_version_two" };
    assert!(
        server.wait_log_everywhere_in_order(plugin, "route table published", WAIT),
        "not every worker loaded {version}:\n{}",
        server.logs()
    );
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if raw_http(server.addr, &handshake_request("/ver", "")).await.status == 101 {
            let mut probe = connect(&server.ws_url("/ver")).await;
            if say(&mut probe, "which").await == format!("{version}: which") {
                return;
            }
        }
        assert!(std::time::Instant::now() < deadline, "never served by {version}:\n{}", server.logs());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Like `cargo build`: the old file is removed and a new one (new inode) takes its name.
fn replace_like_cargo(src: &Path, dest: &Path) {
    let staging = dest.with_file_name("staging-outside-scan");
    std::fs::copy(src, &staging).unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_file(dest).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&staging, dest).unwrap_or_else(|e| panic!("{e}"));
}

/// Like `cp`: the same file is truncated and rewritten in place (same inode).
fn overwrite_in_place(src: &Path, dest: &Path) {
    std::fs::copy(src, dest).unwrap_or_else(|e| panic!("{e}"));
}

/// Like `mv`: a complete file is renamed over the old one.
fn move_into_place(src: &Path, dest: &Path) {
    let staging = dest.with_file_name(".incoming.tmp");
    std::fs::copy(src, &staging).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&staging, dest).unwrap_or_else(|e| panic!("{e}"));
}

async fn live_connection_keeps_v1_while_new_ones_get_v2(replace: fn(&Path, &Path)) {
    let server = start();
    let v1 = first_generation(&server, "/ver");
    let mut old = connect(&server.ws_url("/ver")).await;
    assert_eq!(say(&mut old, "hi").await, "v1: hi");
    replace(&plugin_lib("fixture_version_two"), &handler_file(&server));
    wait_until_served_by(&server, "v2").await;
    let mut new = connect(&server.ws_url("/ver")).await;
    assert_eq!(say(&mut new, "hi").await, "v2: hi");
    assert_eq!(say(&mut old, "still").await, "v1: still", "the live connection finishes on its code");
    let loaded =
        server.wait_log(&format!("replaces={v1}"), WAIT).unwrap_or_else(|| panic!("{}", server.logs()));
    assert!(
        loaded.contains("resource=/ver") && loaded.contains("generation=") && loaded.contains("hash="),
        "{loaded}"
    );
    drop(old);
    assert!(
        server
            .wait_log_where(
                |l| l.contains("generation released") && l.contains(&format!("generation={v1} ")),
                WAIT
            )
            .is_some(),
        "v1 is released after its last connection:\n{}",
        server.logs()
    );
    let mut echo = connect(&server.ws_url("/echo")).await;
    assert_eq!(say(&mut echo, "unaffected").await, "unaffected");
}

#[tokio::test]
async fn replaced_by_cargo_build_output() {
    live_connection_keeps_v1_while_new_ones_get_v2(replace_like_cargo).await;
}

#[tokio::test]
async fn overwritten_in_place_by_cp() {
    live_connection_keeps_v1_while_new_ones_get_v2(overwrite_in_place).await;
}

#[tokio::test]
async fn moved_into_place_by_mv() {
    live_connection_keeps_v1_while_new_ones_get_v2(move_into_place).await;
}

#[tokio::test]
async fn broken_builds_are_refused_and_the_previous_generation_keeps_serving() {
    let server = start();
    let file = handler_file(&server);
    let mut live = connect(&server.ws_url("/ver")).await;
    let v2 = std::fs::read(plugin_lib("fixture_version_two")).unwrap_or_else(|e| panic!("{e}"));

    std::fs::write(&file, &v2[..256 * 1024]).unwrap_or_else(|e| panic!("{e}"));
    // Each worker rescans on its own and may catch the write half-done ("file too short")
    // before the whole truncated file: wait until every one refused the truncated file.
    assert!(server.wait_log_everywhere("truncated ELF file", WAIT), "{}", server.logs());
    let refused = server
        .wait_log_where(
            |l| l.contains("previous generation keeps serving") && l.contains("truncated ELF"),
            WAIT,
        )
        .unwrap_or_else(|| panic!("{}", server.logs()));
    assert!(refused.contains("libver_wsh.so") && refused.contains("truncated ELF file"), "{refused}");
    wait_until_served_by(&server, "v1").await;

    overwrite_in_place(&plugin_lib("fixture_bad_abi"), &file);
    server
        .wait_log_where(|l| l.contains("built for plugin ABI v999") && l.contains("keeps serving"), WAIT)
        .unwrap_or_else(|| panic!("{}", server.logs()));
    wait_until_served_by(&server, "v1").await;

    std::fs::write(&file, b"garbage that is long enough to have an ELF header's size, and more")
        .unwrap_or_else(|e| panic!("{e}"));
    server.wait_log("invalid ELF header", WAIT).unwrap_or_else(|| panic!("{}", server.logs()));
    wait_until_served_by(&server, "v1").await;

    // The next good build is picked up.
    overwrite_in_place(&plugin_lib("fixture_version_two"), &file);
    wait_until_served_by(&server, "v2").await;
    assert_eq!(say(&mut live, "ok").await, "v1: ok");
}

#[tokio::test]
async fn a_removed_handler_answers_404_and_live_connections_continue() {
    let server = start();
    let mut live = connect(&server.ws_url("/ver")).await;
    std::fs::remove_file(handler_file(&server)).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        server.wait_log_everywhere_in_order("handler removed", "route table published", WAIT),
        "{}",
        server.logs()
    );
    assert_eq!(raw_http(server.addr, &handshake_request("/ver", "")).await.status, 404);
    assert_eq!(say(&mut live, "alive").await, "v1: alive");

    // Added back (and a new one in a new subdirectory): served again.
    move_into_place(&plugin_lib("fixture_version_two"), &handler_file(&server));
    wait_until_served_by(&server, "v2").await;
}

#[tokio::test]
async fn an_added_handler_is_served_without_a_restart() {
    let server = start();
    let dest = server.dir().join("handlers/team/libnew_wsh.so");
    std::fs::create_dir_all(dest.parent().unwrap_or(server.dir())).unwrap_or_else(|e| panic!("{e}"));
    move_into_place(&plugin_lib("fixture_version_two"), &dest);
    assert!(
        server.wait_log_everywhere_in_order("resource=/team/new", "route table published", WAIT),
        "{}",
        server.logs()
    );
    let mut client = connect(&server.ws_url("/team/new")).await;
    assert_eq!(say(&mut client, "hey").await, "v2: hey");
}

#[tokio::test]
async fn touching_a_file_without_changing_it_reloads_nothing() {
    let server = start();
    let file = handler_file(&server);
    let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&file, &bytes).unwrap_or_else(|e| panic!("{e}"));
    // Then a real change, to know the first event was processed.
    overwrite_in_place(&plugin_lib("fixture_version_two"), &file);
    wait_until_served_by(&server, "v2").await;
    let each = server.count_log_each("handler loaded");
    assert!(each.iter().all(|n| *n == 3), "echo, v1, then v2 only, in each of {each:?}:\n{}", server.logs());
}

#[tokio::test]
async fn sighup_reloads_the_config_and_refuses_a_broken_one() {
    let server = start();
    let config = server.dir().join("server.toml");
    let original = std::fs::read_to_string(&config).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&config, format!("{original}\n[[route]]\npath = \"/alias\"\nhandler = \"/echo\"\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    server.signal("HUP");
    let deadline = std::time::Instant::now() + WAIT;
    while raw_http(server.addr, &handshake_request("/alias", "")).await.status != 101 {
        assert!(std::time::Instant::now() < deadline, "alias never appeared:\n{}", server.logs());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    std::fs::write(&config, format!("{original}\n[websocket]\nmax_mesage_bytes = 1\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    server.signal("HUP");
    // Each worker re-reads the file on its own: wait until all refused it.
    assert!(server.wait_log_everywhere("configuration reload refused", WAIT), "{}", server.logs());
    let line =
        server.wait_log("configuration reload refused", WAIT).unwrap_or_else(|| panic!("{}", server.logs()));
    assert!(line.contains("server.toml") && line.contains("max_mesage_bytes"), "{line}");
    assert_eq!(
        raw_http(server.addr, &handshake_request("/alias", "")).await.status,
        101,
        "the old config stays"
    );
}
