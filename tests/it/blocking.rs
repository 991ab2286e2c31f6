//! `wshd_sdk::blocking`: jobs run on the host's bounded blocking pool, off the runtime
//! threads, so a connection's echo keeps its latency while other handlers block; a panic in
//! a job is an error reply, not a crash; more jobs than `[server] blocking_threads` queue.

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use wshd_tests::*;

/// A single-process server (two runtime threads) with the misbehaving fixture at `/bad` and
/// the echo handler at `/echo`; `server_keys` go to `[server]`.
fn server(server_keys: &str) -> ServerProcess {
    ServerProcess::start_with(
        |dir| {
            dir.install("fixture_misbehave", "handlers/bad_wsh.so");
            dir.install("echo_wsh", "handlers/echo_wsh.so");
        },
        &format!("workers = 0\n{server_keys}"),
        "[workers]\nthreads = 2",
    )
}

/// Opens `n` connections to `/bad` and asks each for `block MS` at once.
async fn start_jobs(server: &ServerProcess, n: usize, millis: u64) -> Vec<Client> {
    let mut clients = Vec::new();
    for _ in 0..n {
        let mut bad = connect(&server.ws_url("/bad")).await;
        assert_eq!(round_trip(&mut bad, Message::text("hi")).await, Message::text("hi"));
        clients.push(bad);
    }
    for bad in &mut clients {
        bad.send(Message::text(format!("block {millis}"))).await.unwrap_or_else(|e| panic!("send: {e}"));
    }
    clients
}

/// Waits for every client's `blocked` reply.
async fn all_blocked(clients: &mut [Client]) {
    for bad in clients {
        assert_eq!(next_message(bad).await.and_then(Result::ok), Some(Message::text("blocked")));
    }
}

#[tokio::test]
async fn blocking_jobs_leave_the_runtime_free() {
    let server = server("");
    let mut echo = connect(&server.ws_url("/echo")).await;
    assert_eq!(round_trip(&mut echo, Message::text("warm")).await, Message::text("warm"));
    let started = Instant::now();
    let mut jobs = start_jobs(&server, 8, 1000).await;
    let mut worst = Duration::ZERO;
    while started.elapsed() < Duration::from_millis(900) {
        let t = Instant::now();
        assert_eq!(round_trip(&mut echo, Message::text("x")).await, Message::text("x"));
        worst = worst.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    all_blocked(&mut jobs).await;
    let took = started.elapsed();
    eprintln!("8 jobs of 1 s: all done in {took:?}; worst echo meanwhile {worst:?}");
    assert!(worst < Duration::from_millis(100), "echo took {worst:?} while 8 jobs blocked");
    assert!(took < Duration::from_millis(2500), "the 8 jobs ran one after another: {took:?}");
    assert!(!server.logs().contains("unblocked after"), "a job counted as a blocked handler");
}

#[tokio::test]
async fn a_panicking_job_is_an_error_reply() {
    let server = server("");
    let mut bad = connect(&server.ws_url("/bad")).await;
    let reply = round_trip(&mut bad, Message::text("block-panic")).await;
    let text = reply.into_text().unwrap_or_else(|e| panic!("not text: {e}"));
    assert!(text.starts_with("error: the blocking job panicked: asked to panic"), "{text}");
    assert_eq!(round_trip(&mut bad, Message::text("block 1")).await, Message::text("blocked"));
    let mut echo = connect(&server.ws_url("/echo")).await;
    assert_eq!(round_trip(&mut echo, Message::text("up")).await, Message::text("up"));
}

#[tokio::test]
async fn jobs_beyond_the_pool_size_queue() {
    let server = server("blocking_threads = 2");
    let started = Instant::now();
    let mut jobs = start_jobs(&server, 4, 400).await;
    all_blocked(&mut jobs).await;
    let took = started.elapsed();
    eprintln!("4 jobs of 400 ms on 2 blocking threads: {took:?}");
    assert!(took >= Duration::from_millis(800), "more than 2 jobs ran at once: {took:?}");
}
