//! The master's quarantine and recycling: a route whose handler keeps taking workers down is
//! answered 503 until its plugin file changes; a worker past `[workers]`' connection or
//! memory limit is drained and replaced while connections keep being served.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use wshd_tests::*;

/// `bad_wsh.so` (the misbehaving fixture) at `/bad` and `echo_wsh.so` at `/echo`, with
/// `server_keys` in `[server]` and `workers_keys` in `[workers]`; every worker serving.
fn server(server_keys: &str, workers_keys: &str) -> ServerProcess {
    let server = ServerProcess::start_with(
        |dir| {
            dir.install("fixture_misbehave", "handlers/bad_wsh.so");
            dir.install("echo_wsh", "handlers/echo_wsh.so");
        },
        &format!("shutdown_grace_secs = 2\nadmin_listen = \"127.0.0.1:0\"\n{server_keys}"),
        &format!("[workers]\nheartbeat_timeout_secs = 2\n{workers_keys}\n"),
    );
    assert!(server.wait_log_everywhere("accepting on", WAIT), "not every worker serves:\n{}", server.logs());
    server
}

/// The master's own lines (not relayed from a worker) containing `needle`.
fn master_lines(server: &ServerProcess, needle: &str) -> Vec<String> {
    let logs = server.logs();
    logs.lines().filter(|l| !l.starts_with("worker=") && l.contains(needle)).map(str::to_owned).collect()
}

/// Waits until `check` holds (polling every 10 ms) or panics after [`WAIT`] with `what`.
async fn wait_until(server: &ServerProcess, what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not in time:\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Crashes the worker serving a new `/bad` connection (`abort`) and waits for its death
/// line and its replacement's start.
async fn crash(server: &ServerProcess) {
    let (deaths, starts) = (master_lines(server, " died: ").len(), server.worker_starts().len());
    let mut bad = connect(&server.ws_url("/bad")).await;
    bad.send(Message::text("abort")).await.unwrap_or_else(|e| panic!("{e}"));
    wait_until(server, "the death", || master_lines(server, " died: ").len() > deaths).await;
    wait_until(server, "the replacement", || server.worker_starts().len() > starts).await;
}

/// The status of a WebSocket handshake to `path`, and the body.
async fn handshake(server: &ServerProcess, path: &str) -> (u16, String) {
    let resp = raw_http(server.addr, &handshake_request(path, "")).await;
    (resp.status, resp.text())
}

/// The master's `/metrics`.
async fn metrics(server: &ServerProcess) -> String {
    http_get(server.admin_addr(), "/metrics").await.text()
}

/// Whether `text` has the sample `line` exactly.
fn has_sample(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

/// Copies `crate_name`'s library over `handlers/bad_wsh.so` the way a deployment does (a
/// complete file renamed over the old one).
fn replace_bad_with(server: &ServerProcess, crate_name: &str) {
    let staging = server.dir().join("bad_wsh.so.new");
    std::fs::copy(plugin_lib(crate_name), &staging).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&staging, server.dir().join("handlers/bad_wsh.so")).unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn a_route_crashing_workers_three_times_is_quarantined_until_a_new_build() {
    let server = server("workers = 2", "quarantine_after_crashes = 3");
    for _ in 0..3 {
        crash(&server).await;
    }
    let line = server
        .wait_log_where(|l| !l.starts_with("worker=") && l.contains(" quarantined"), WAIT)
        .unwrap_or_else(|| panic!("no quarantine:\n{}", server.logs()));
    for part in ["/bad", "3 workers", "60s", "bad_wsh.so", "503 until its plugin file changes"] {
        assert!(line.contains(part), "{part} in: {line}");
    }
    let (status, body) = handshake(&server, "/bad").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("quarantined"), "{body}");
    let mut echo = connect(&server.ws_url("/echo")).await;
    assert_eq!(round_trip(&mut echo, Message::text("hi")).await, Message::text("hi"));
    assert!(server.wait_log("handshake refused: route quarantined", WAIT).is_some(), "{}", server.logs());
    let text = metrics(&server).await;
    for sample in [
        "wshd_route_quarantines_total{route=\"/bad\"} 1",
        "wshd_routes_quarantined 1",
        "wshd_worker_crashes_total{route=\"/bad\"} 3",
    ] {
        assert!(has_sample(&text, sample), "{sample} in\n{text}");
    }
    let refused = text.lines().any(|l| {
        l.starts_with("wshd_handshakes_total{")
            && l.contains("route=\"/bad\"")
            && l.contains("status=\"503\"")
    });
    assert!(refused, "the 503 is counted:\n{text}\n{}", server.logs());

    let replaced = Instant::now();
    replace_bad_with(&server, "echo_wsh");
    server
        .wait_log("quarantine of /bad lifted: its plugin file changed", WAIT)
        .unwrap_or_else(|| panic!("not lifted:\n{}", server.logs()));
    let deadline = Instant::now() + WAIT;
    let served = loop {
        if let Ok(mut bad) = connect_with(&server.ws_url("/bad"), &[]).await {
            break round_trip(&mut bad, Message::text("again")).await;
        }
        assert!(Instant::now() < deadline, "/bad not served again:\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(served, Message::text("again"));
    println!("quarantine: lifted and /bad served again {:?} after the new build", replaced.elapsed());
    assert!(has_sample(&metrics(&server).await, "wshd_routes_quarantined 0"));
}

#[tokio::test]
async fn crashes_spread_wider_than_the_window_do_not_quarantine() {
    let server = server("workers = 2", "quarantine_after_crashes = 3\nquarantine_window_secs = 3");
    crash(&server).await;
    crash(&server).await;
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    crash(&server).await;
    crash(&server).await;
    // Four deaths, never three within 3 s: each death counted once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(master_lines(&server, " quarantined").is_empty(), "{}", server.logs());
    wait_until(&server, "a worker serving", || server.count_log("accepting on") >= 6).await;
    assert_eq!(handshake(&server, "/bad").await.0, 101);
    // A third crash within the window quarantines.
    crash(&server).await;
    server
        .wait_log_where(|l| !l.starts_with("worker=") && l.contains(" quarantined"), WAIT)
        .unwrap_or_else(|| panic!("the third crash within the window must quarantine:\n{}", server.logs()));
}

/// Opens a connection to `/echo`, checks a round trip, closes it; in a loop until stopped.
/// Gives the failures.
fn echo_loop(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    tokio::spawn(async move {
        let (mut rounds, mut failures) = (0, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            rounds += 1;
            match connect_with(&url, &[]).await {
                Ok(mut client) => {
                    let sent = client.send(Message::text("ping?")).await;
                    match (sent, next_message(&mut client).await) {
                        (Ok(()), Some(Ok(m))) if m == Message::text("ping?") => {}
                        other => failures.push(format!("round {rounds}: {other:?}")),
                    }
                    let _ = client.close(None).await;
                }
                Err(e) => failures.push(format!("round {rounds}: connect: {e}")),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (rounds, failures)
    })
}

#[tokio::test]
async fn a_worker_is_recycled_after_its_connections_and_serving_never_stops() {
    let server = server("workers = 1", "recycle_after_connections = 3");
    let (_, first) = server.worker_starts().first().copied().unwrap_or_else(|| panic!("no worker"));
    let stop = Arc::new(AtomicBool::new(false));
    let looping = echo_loop(server.ws_url("/echo"), Arc::clone(&stop));
    // An async wait: the echo loop runs on this test's (single-threaded) runtime.
    wait_until(&server, "recycling", || !master_lines(&server, "recycling").is_empty()).await;
    let line = master_lines(&server, "recycling").into_iter().next().unwrap_or_default();
    assert!(
        line.contains(&format!("pid={first}")) && line.contains("connections served (limit 3)"),
        "{line}"
    );
    wait_until(&server, "the replacement", || server.worker_starts().len() >= 2).await;
    let exited = format!("recycled worker 1 pid={first} exited");
    wait_until(&server, "the old worker's exit", || !master_lines(&server, &exited).is_empty()).await;
    assert!(process_gone(first), "pid {first} still runs");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (rounds, failures) = looping.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        failures.is_empty(),
        "{} of {rounds} rounds failed: {failures:?}\n{}",
        failures.len(),
        server.logs()
    );
    assert!(master_lines(&server, " died: ").is_empty(), "a recycled worker is no death:\n{}", server.logs());
    let text = metrics(&server).await;
    let recycled = text.lines().find(|l| l.starts_with("wshd_worker_recycles_total{cause=\"connections\"}"));
    assert!(recycled.is_some_and(|l| !l.ends_with(" 0")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("wshd_worker_exits_total{cause=\"stopped\"}")), "{text}");
    println!("recycling by connections: {rounds} rounds served without a failure; {line}");
}

#[tokio::test]
async fn a_worker_past_its_memory_limit_is_recycled_and_its_connections_drained() {
    let server = server("workers = 1", "recycle_rss_mib = 100");
    let mut bad = connect(&server.ws_url("/bad")).await;
    assert_eq!(round_trip(&mut bad, Message::text("hog 200")).await, Message::text("hogging"));
    let (code, reason) = expect_close(&mut bad).await;
    assert_eq!(code, 1001, "drained: {reason}");
    let line = master_lines(&server, "recycling").into_iter().next().unwrap_or_default();
    assert!(
        line.contains("resident memory") && line.contains("limit of 100 MiB"),
        "{line}\n{}",
        server.logs()
    );
    let mut echo = connect(&server.ws_url("/echo")).await;
    assert_eq!(round_trip(&mut echo, Message::text("hi")).await, Message::text("hi"));
    assert!(server.worker_starts().len() >= 2, "{}", server.logs());
    let text = metrics(&server).await;
    assert!(has_sample(&text, "wshd_worker_recycles_total{cause=\"memory\"} 1"), "{text}");
    println!("recycling by memory: {line}");
}
