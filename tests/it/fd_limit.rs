//! The descriptor limit: the soft limit is raised to the hard one at start and logged; a
//! process out of descriptors logs one line per run of failed accepts (not 20 a second) and
//! serves again as soon as descriptors are free, its handlers still loaded (a rescan that
//! cannot open the handler directory keeps them).

use std::time::Duration;

use tokio_tungstenite::tungstenite::Message;
use wshd_tests::*;

/// A single-process server (`workers = 0`: the accepting process is the one started) under
/// `prlimit --nofile=SOFT:HARD`.
fn start_under(nofile: &str) -> ServerProcess {
    let dir = TempDir::new();
    let handlers = dir.path().join("handlers");
    std::fs::create_dir_all(&handlers).unwrap_or_else(|e| panic!("mkdir: {e}"));
    drop(dir.install("echo_wsh", "handlers/libecho_wsh.so"));
    let config = dir.write("server.toml", &config_with(&handlers, "workers = 0", ""));
    let limit = format!("--nofile={nofile}");
    ServerProcess::spawn_under(&["prlimit", &limit, "--"], &["-c", &config.display().to_string()], dir)
}

#[tokio::test]
async fn the_soft_descriptor_limit_is_raised_to_the_hard_one_and_logged() {
    let server = start_under("512:4096");
    let raised = server.wait_log("file descriptor limit raised from 512 to the hard limit 4096", WAIT);
    assert!(raised.is_some(), "{}", server.logs());
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid()))
        .unwrap_or_else(|e| panic!("limits: {e}"));
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap_or_default();
    assert_eq!(line.split_whitespace().filter(|w| *w == "4096").count(), 2, "{line}");
    assert!(server.wait_log("max_connections = 10000, but the file descriptor limit", WAIT).is_some());
}

#[tokio::test]
async fn out_of_descriptors_logs_once_per_run_and_serves_again() {
    let server = start_under("64:64");
    // Established WebSockets (silent sockets would be shed: tests/it/hostile_pending.rs) until
    // the process is out of descriptors and a handshake no longer completes.
    let url = server.ws_url("/echo");
    let mut held = Vec::new();
    for _ in 0..80 {
        let attempt = tokio::time::timeout(Duration::from_secs(1), connect_with(&url, &[]));
        match attempt.await {
            Ok(Ok(client)) => held.push(client),
            Ok(Err(_)) | Err(_) => break,
        }
    }
    assert!(held.len() < 80, "64 descriptors cannot hold 80 connections");
    assert!(server.wait_log("accept failed", WAIT).is_some(), "{}", server.logs());
    // Failed attempts go on every 50 ms while the connections are held.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(server.count_log("accept failed"), 1, "{}", server.logs());
    drop(held);
    let mut client = match connect_with(&server.ws_url("/echo"), &[]).await {
        Ok(client) => client,
        Err(e) => panic!("{e}\n{}", server.logs()),
    };
    assert_eq!(round_trip(&mut client, Message::text("back")).await, Message::text("back"));
    let again = server.wait_log("accepting again after", WAIT).unwrap_or_default();
    let attempts: u64 =
        again.split("after ").nth(1).and_then(|r| r.split(' ').next()?.parse().ok()).unwrap_or(0);
    assert!(attempts >= 10, "about 20 attempts a second for a second: {again}");
    // A rescan that could not open the handler directory meanwhile kept the handlers.
    assert!(!server.logs().contains("handler removed"), "{}", server.logs());
}
