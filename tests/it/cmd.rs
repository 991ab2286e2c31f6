//! `cmd_wsh`, the websocketd-style command bridge, with real child processes: lines both
//! ways in order, the exit status as the close code, the CGI-like environment, stderr in the
//! log, the per-route cap, a missing program; and that every child is reaped — after 200
//! concurrent connections, on SIGTERM, and across a hot reload of the plugin.

use futures_util::SinkExt;
use futures_util::future::join_all;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use wshd_tests::*;

const PLUGIN: &str = "handlers/libcmd_wsh.so";

/// The line-flushing reverser the workspace builds next to the plugin.
fn rev_lines() -> String {
    plugin_lib("cmd_wsh").with_file_name("rev_lines").display().to_string()
}

/// A `[[route]]` at `path` running `program` with `args` and extra `[route.config]` lines.
fn route(path: &str, program: &str, args: &[&str], extra: &str) -> String {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "[[route]]\npath = \"{path}\"\nhandler = \"/cmd\"\n[route.config]\nprogram = {program:?}\nargs = [{}]\n{extra}\n",
        args.join(", ")
    )
}

/// A server with the plugin and `routes`; `server_keys` go to `[server]`.
fn server(server_keys: &str, routes: &str) -> ServerProcess {
    ServerProcess::start_with(
        |dir| drop(dir.install("cmd_wsh", PLUGIN)),
        server_keys,
        &format!("debounce_ms = 20\n\n{routes}"),
    )
}

fn reversed(text: &str) -> String {
    text.chars().rev().collect()
}

async fn say(client: &mut Client, text: &str) -> String {
    round_trip(client, Message::text(text)).await.to_text().unwrap_or_default().to_owned()
}

/// Every text message until the close frame, and the close code.
async fn messages_until_close(client: &mut Client) -> (Vec<String>, u16) {
    let mut texts = Vec::new();
    loop {
        match next_message(client).await {
            Some(Ok(Message::Text(t))) => texts.push(t.to_string()),
            Some(Ok(Message::Close(frame))) => return (texts, frame.map_or(1005, |f| u16::from(f.code))),
            other => panic!("expected text or close, got {other:?}"),
        }
    }
}

/// `(pid, state)` of every process whose parent is one of `parents` (zombies included).
fn children_of(parents: &[u32]) -> Vec<(u32, char)> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let mut rest = stat.rsplit_once(')')?.1.split_whitespace();
            let state = rest.next()?.chars().next()?;
            let ppid: u32 = rest.next()?.parse().ok()?;
            parents.contains(&ppid).then_some((pid, state))
        })
        .collect()
}

/// The serving processes: the workers, or the single process.
fn serving_pids(server: &ServerProcess) -> Vec<u32> {
    let workers: Vec<u32> = server.worker_starts().into_iter().map(|(_, pid)| pid).collect();
    if workers.is_empty() { vec![server.pid()] } else { workers }
}

/// Waits until `done` holds; panics with `what` (and `detail`) after [`WAIT`].
async fn wait_until(what: &str, mut done: impl FnMut() -> bool, detail: impl Fn() -> String) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: {}", detail());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until no serving process of `server` has a child (running or zombie).
async fn wait_no_children(server: &ServerProcess) {
    let parents = serving_pids(server);
    wait_until(
        "children left",
        || children_of(&parents).is_empty(),
        || format!("{:?}", children_of(&parents)),
    )
    .await;
}

#[tokio::test]
async fn lines_flow_both_ways_and_the_exit_status_closes() {
    let routes = [
        route("/rev", &rev_lines(), &[], ""),
        route("/true", "/usr/bin/true", &[], ""),
        route("/false", "/usr/bin/false", &[], ""),
        route("/lines", "/bin/sh", &["-c", "echo one; printf 'two\\r\\n'; echo three; exit 3"], ""),
    ];
    let server = server("workers = 0", &routes.concat());
    let mut rev = connect(&server.ws_url("/rev")).await;
    let lines = ["hello", "wörld ✓", "", "a longer line with spaces"];
    for line in lines {
        rev.send(Message::text(line)).await.unwrap_or_else(|e| panic!("send: {e}"));
    }
    for line in lines {
        let got = next_message(&mut rev).await.and_then(Result::ok);
        assert_eq!(got, Some(Message::text(reversed(line))), "in order, one message per line");
    }
    assert_eq!(say(&mut rev, "again").await, "niaga");
    rev.send(Message::binary(vec![1, 2, 3])).await.unwrap_or_else(|e| panic!("send: {e}"));
    assert_eq!(expect_close(&mut rev).await.0, 1003, "binary messages close with 1003");

    let mut ok = connect(&server.ws_url("/true")).await;
    assert_eq!(messages_until_close(&mut ok).await, (vec![], 1000), "exit status 0: 1000");
    let mut failed = connect(&server.ws_url("/false")).await;
    assert_eq!(messages_until_close(&mut failed).await, (vec![], 1011), "exit status 1: 1011");
    let mut lines = connect(&server.ws_url("/lines")).await;
    let (texts, code) = messages_until_close(&mut lines).await;
    assert_eq!((texts, code), (vec!["one".to_owned(), "two".to_owned(), "three".to_owned()], 1011));
    wait_no_children(&server).await;
}

#[tokio::test]
async fn the_environment_is_cgi_like_and_nothing_else_leaks() {
    let routes = [
        route("/env", "/usr/bin/env", &[], ""),
        route("/env_pass", "env", &[], "env = [\"RUST_LOG\"]"),
        route("/signals", "/bin/grep", &["-E", "^Sig(Blk|Ign)", "/proc/self/status"], ""),
    ];
    let server = server("workers = 0", &routes.concat());
    let url = server.ws_url("/env?a=1&b=two");
    let mut client = connect_with(&url, &[("X-Test", "yes"), ("Proxy", "http://evil")])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (vars, code) = messages_until_close(&mut client).await;
    assert_eq!(code, 1000);
    let has = |v: &str| vars.iter().any(|line| line == v);
    for expected in [
        "REMOTE_ADDR=127.0.0.1",
        "QUERY_STRING=a=1&b=two",
        "REQUEST_METHOD=GET",
        "REQUEST_URI=/env?a=1&b=two",
        "SCRIPT_NAME=/env",
        "SERVER_NAME=127.0.0.1",
        &format!("SERVER_PORT={}", server.addr.port()),
        "SERVER_PROTOCOL=HTTP/1.1",
        "HTTP_X_TEST=yes",
        "HTTP_UPGRADE=websocket",
    ] {
        assert!(has(expected), "{expected} missing from {vars:#?}");
    }
    let names: Vec<&str> = vars.iter().filter_map(|v| v.split('=').next()).collect();
    assert!(names.contains(&"REMOTE_PORT") && names.contains(&"PATH") && names.contains(&"SERVER_SOFTWARE"));
    assert!(!names.contains(&"RUST_LOG"), "a server variable leaked: {vars:#?}");
    assert!(!names.contains(&"HTTP_PROXY"), "httpoxy: {vars:#?}");
    if std::env::var_os("HOME").is_some() {
        assert!(!names.contains(&"HOME"), "HOME leaked: {vars:#?}");
    }
    let mut pass = connect(&server.ws_url("/env_pass")).await;
    let (vars, _) = messages_until_close(&mut pass).await;
    assert!(
        vars.iter().any(|v| v == "RUST_LOG=debug"),
        "a listed variable is passed (and `env` found in PATH): {vars:#?}"
    );
    let mut signals = connect(&server.ws_url("/signals")).await;
    let (lines, _) = messages_until_close(&mut signals).await;
    // Standard signals (1-31) neither blocked nor ignored; 32 and 33 are glibc's own.
    let standard = |line: &String| {
        let hex = line.split('\t').nth(1).unwrap_or("");
        u64::from_str_radix(hex, 16).map(|mask| mask & 0x7fff_ffff)
    };
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().all(|l| standard(l) == Ok(0)), "a clean signal state: {lines:?}");
}

#[tokio::test]
async fn stderr_lines_reach_the_log_with_the_connection_id() {
    let script = "echo 'to stderr' >&2; echo done";
    let server = server("workers = 0", &route("/stderr", "/bin/sh", &["-c", script], ""));
    let mut client = connect(&server.ws_url("/stderr")).await;
    assert_eq!(messages_until_close(&mut client).await, (vec!["done".to_owned()], 1000));
    let line = server.wait_log("stderr: to stderr", WAIT).unwrap_or_else(|| panic!("{}", server.logs()));
    let id = line.split("conn=").nth(1).and_then(|rest| rest.split(' ').next()).unwrap_or("");
    let (node, seq) = id.split_once('-').unwrap_or(("", ""));
    assert!(node.len() == 16 && !seq.is_empty(), "a connection id `node-seq`: {line}");
    assert!(line.contains("pid=") && line.contains("handler=Cmd"), "{line}");
}

#[tokio::test]
async fn the_cap_answers_503_and_a_missing_program_502() {
    let routes = [
        route("/cat", "/bin/cat", &[], "max_children = 2"),
        route("/missing", "/nonexistent/program", &[], ""),
        route("/unknown", "no-such-program-anywhere", &[], ""),
        "[[route]]\npath = \"/typo\"\nhandler = \"/cmd\"\n[route.config]\nprogramm = \"cat\"\n".to_owned(),
    ];
    let server = server("workers = 0", &routes.concat());
    let mut first = connect(&server.ws_url("/cat")).await;
    let mut second = connect(&server.ws_url("/cat")).await;
    assert_eq!(say(&mut first, "1").await, "1");
    assert_eq!(say(&mut second, "2").await, "2");
    assert_eq!(raw_http(server.addr, &handshake_request("/cat", "")).await.status, 503);
    assert!(server.wait_log("refused with 503", WAIT).is_some(), "{}", server.logs());
    let _ = first.close(None).await;
    let mut third = None;
    let deadline = Instant::now() + WAIT;
    while third.is_none() {
        assert!(Instant::now() < deadline, "no slot freed after a close:\n{}", server.logs());
        third = connect_with(&server.ws_url("/cat"), &[]).await.ok();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut third = third.expect("the loop ends connected");
    assert_eq!(say(&mut third, "3").await, "3");

    assert_eq!(raw_http(server.addr, &handshake_request("/missing", "")).await.status, 502);
    let line = server.wait_log("cannot start program", WAIT).unwrap_or_else(|| panic!("{}", server.logs()));
    assert!(line.contains("/nonexistent/program"), "{line}");
    assert_eq!(raw_http(server.addr, &handshake_request("/unknown", "")).await.status, 502);
    assert!(
        server.wait_log("no-such-program-anywhere not found in PATH", WAIT).is_some(),
        "{}",
        server.logs()
    );
    let refused =
        server.wait_log("unknown key `programm`", WAIT).unwrap_or_else(|| panic!("{}", server.logs()));
    assert!(refused.contains("handler refused") && refused.contains("route=/typo"), "{refused}");
    assert_eq!(raw_http(server.addr, &handshake_request("/typo", "")).await.status, 404);
    assert_eq!(raw_http(server.addr, &handshake_request("/cmd", "")).await.status, 404, "no program: 404");
    drop((second, third));
    wait_no_children(&server).await;
}

#[tokio::test]
async fn two_hundred_connections_leave_no_child_behind() {
    const CONNECTIONS: usize = 200;
    let server = server("", &route("/rev", &rev_lines(), &[], "max_children = 1000"));
    let parents = serving_pids(&server);
    let url = server.ws_url("/rev");
    let started = Instant::now();
    let clients = join_all((0..CONNECTIONS).map(|i| {
        let url = url.clone();
        async move {
            let mut client = connect(&url).await;
            for j in 0..3 {
                let line = format!("connection {i} line {j}");
                assert_eq!(say(&mut client, &line).await, reversed(&line));
            }
            client
        }
    }))
    .await;
    let live = children_of(&parents);
    eprintln!(
        "{CONNECTIONS} connections, 3 lines each, in {:?}; children alive: {}",
        started.elapsed(),
        live.len()
    );
    assert_eq!(live.len(), CONNECTIONS, "one child per connection: {live:?}");
    join_all(clients.into_iter().map(|mut client| async move {
        let _ = client.close(None).await;
        while let Some(Ok(_)) = next_message(&mut client).await {}
    }))
    .await;
    let closed = Instant::now();
    wait_no_children(&server).await;
    eprintln!("all {CONNECTIONS} children reaped {:?} after the closes", closed.elapsed());
}

#[tokio::test]
async fn sigterm_with_live_connections_leaves_no_child() {
    let mut server = server("", &route("/rev", &rev_lines(), &[], ""));
    let parents = serving_pids(&server);
    let mut clients = Vec::new();
    for i in 0..6 {
        let mut client = connect(&server.ws_url("/rev")).await;
        assert_eq!(say(&mut client, &format!("x{i}")).await, format!("{i}x"));
        clients.push(client);
    }
    let pids: Vec<u32> = children_of(&parents).into_iter().map(|(pid, _)| pid).collect();
    assert_eq!(pids.len(), 6, "{pids:?}");
    server.signal("TERM");
    for client in &mut clients {
        assert_eq!(expect_close(client).await.0, 1001, "the drain closes with 1001");
    }
    assert!(server.wait_exit(WAIT).is_some(), "the server did not exit:\n{}", server.logs());
    let gone = |pid: &u32| !std::path::Path::new(&format!("/proc/{pid}")).exists();
    wait_until("children of a stopped server", || pids.iter().all(gone), || format!("{pids:?}")).await;
}

/// Replaces the plugin file with its content plus `tag` (a new hash: a new generation).
fn replace_plugin(server: &ServerProcess, tag: &str) {
    let file = server.dir().join(PLUGIN);
    let mut bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{e}"));
    bytes.extend_from_slice(tag.as_bytes());
    let staging = file.with_file_name(".incoming.tmp");
    std::fs::write(&staging, bytes).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&staging, &file).unwrap_or_else(|e| panic!("{e}"));
}

/// Distinct mapped copies of the plugin in process `pid`.
fn mapped_copies(pid: u32) -> usize {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let copies: std::collections::BTreeSet<&str> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|path| path.contains("cmd_wsh"))
        .collect();
    copies.len()
}

/// Whether process `pid` has a handler for SIGCHLD (`SigCgt` bit 17).
fn catches_sigchld(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let caught = status.lines().find_map(|l| l.strip_prefix("SigCgt:")).map(str::trim).unwrap_or("0");
    u64::from_str_radix(caught, 16).is_ok_and(|mask| mask & (1 << (17 - 1)) != 0)
}

#[tokio::test]
async fn a_hot_reload_keeps_the_old_child_and_reaps_it_at_the_close() {
    let server = server("workers = 0", &route("/rev", &rev_lines(), &[], ""));
    let parents = [server.pid()];
    let mut old = connect(&server.ws_url("/rev")).await;
    assert_eq!(say(&mut old, "before").await, "erofeb");
    let old_child = children_of(&parents);
    assert_eq!(old_child.len(), 1, "{old_child:?}");
    replace_plugin(&server, "generation two");
    wait_until("the reload", || server.count_log("handler loaded resource=/cmd ") >= 2, || server.logs())
        .await;
    assert_eq!(say(&mut old, "during").await, "gnirud", "the open connection keeps its child and old code");
    let mut new = connect(&server.ws_url("/rev")).await;
    assert_eq!(say(&mut new, "new").await, "wen");
    assert_eq!(children_of(&parents).len(), 2);
    assert_eq!(server.count_log("handler generation released"), 0, "the old generation serves `old`");
    let _ = old.close(None).await;
    while let Some(Ok(_)) = next_message(&mut old).await {}
    let old_pid = old_child[0].0;
    wait_until(
        "the old child reaped",
        || children_of(&parents).iter().all(|(p, _)| *p != old_pid),
        || format!("{:?}", children_of(&parents)),
    )
    .await;
    assert!(server.wait_log("handler generation released", WAIT).is_some(), "{}", server.logs());
    assert_eq!(say(&mut new, "still").await, "llits", "the new generation serves on");
    let pid = server.pid();
    wait_until(
        "the old generation unmapped",
        || mapped_copies(pid) == 1,
        || format!("{} copies", mapped_copies(pid)),
    )
    .await;
    assert!(!catches_sigchld(pid), "no SIGCHLD handler was installed");
    drop(new);
    wait_no_children(&server).await;
}

#[tokio::test]
async fn the_repository_config_serves_rev() {
    // The repository root as a newcomer has it (`cargo build && target/debug/wshd`): the
    // relative paths of config/server.toml (handlers.dir, the program of /rev) resolve there.
    let dir = TempDir::new();
    let root = workspace_root();
    let target = target_debug().parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    for (link, to) in
        [("config", root.join("config")), ("handlers", root.join("handlers")), ("target", target)]
    {
        std::os::unix::fs::symlink(&to, dir.path().join(link))
            .unwrap_or_else(|e| panic!("symlink {link}: {e}"));
    }
    let _ = plugin_lib("cmd_wsh");
    let server = ServerProcess::spawn(&["-H", "127.0.0.1", "-p", "0"], dir);
    let mut client = connect(&server.ws_url("/rev")).await;
    assert_eq!(say(&mut client, "Hello").await, "olleH");
    assert_eq!(say(&mut client, "world").await, "dlrow");
}

#[tokio::test]
async fn a_flood_and_a_vanished_client_are_cut_off() {
    let routes = [route("/yes", "/usr/bin/yes", &["y"], ""), route("/rev", &rev_lines(), &[], "")];
    let server = server("workers = 0", &routes.concat());
    // `yes` writes as fast as it can: the outbox fills, its reader waits for room, and the
    // client still gets every line in order until it closes.
    let mut flood = connect(&server.ws_url("/yes")).await;
    for _ in 0..5000 {
        assert_eq!(next_message(&mut flood).await.and_then(Result::ok), Some(Message::text("y")));
    }
    let _ = flood.close(None).await;
    // A client that vanishes without a close frame.
    let mut raw = RawSocket::open(server.addr, "/rev").await;
    raw.send_frame(true, 0x1, b"abc", true).await;
    let reply = raw.read_frame().await.unwrap_or_else(|| panic!("no reply"));
    assert_eq!(reply.payload, b"cba");
    drop(raw);
    wait_no_children(&server).await;
}

#[tokio::test]
async fn a_recycled_worker_drains_and_reaps_its_children() {
    let routes =
        format!("[workers]\nrecycle_after_connections = 3\n\n{}", route("/rev", &rev_lines(), &[], ""));
    let server = server("workers = 1\nshutdown_grace_secs = 5", &routes);
    let first = serving_pids(&server);
    let mut clients = Vec::new();
    for i in 0..3 {
        let mut client = connect(&server.ws_url("/rev")).await;
        assert_eq!(say(&mut client, &format!("r{i}")).await, format!("{i}r"));
        clients.push(client);
    }
    let pids: Vec<u32> = children_of(&first).into_iter().map(|(pid, _)| pid).collect();
    assert_eq!(pids.len(), 3, "{pids:?}");
    for client in &mut clients {
        assert_eq!(expect_close(client).await.0, 1001, "the recycled worker drains");
    }
    let gone = |pid: &u32| !std::path::Path::new(&format!("/proc/{pid}")).exists();
    wait_until("children of the recycled worker", || pids.iter().all(gone), || format!("{pids:?}")).await;
    wait_until("the recycled worker's exit", || first.iter().all(gone), || server.logs()).await;
    let mut after = connect(&server.ws_url("/rev")).await;
    assert_eq!(say(&mut after, "next").await, "txen", "the replacement serves /rev");
}
