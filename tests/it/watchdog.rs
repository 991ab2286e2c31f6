//! The watchdog: a handler that blocks its runtime thread (`std::thread::sleep` in
//! `transfer_data`) must not freeze the other connections, new handshakes, static pages or
//! the admin endpoints; it is named in the log and in `/metrics`, and `/healthz` reports it
//! while it lasts too long.

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use wshd_tests::*;

/// The worst latency allowed for unrelated work while one handler blocks its thread. Before
/// the fix every operation waited for the blocked handler (about the whole 3 s sleep). With
/// it, the watchdog notices within one or two 10 ms ticks and wakes a parked worker; 500 ms
/// leaves room for a debug build on a loaded two-core machine while staying far below 3 s.
const BOUND: Duration = Duration::from_millis(500);

/// How long `/bad` blocks its thread.
const BLOCK_MS: u64 = 3000;

/// A server with the misbehaving fixture at `/bad`, the echo handler at `/echo`, a static
/// page and the admin listener; `extra` is appended to the config.
fn server(extra: &str) -> ServerProcess {
    ServerProcess::start_with(
        |dir| {
            dir.install("fixture_misbehave", "handlers/bad_wsh.so");
            dir.install("echo_wsh", "handlers/echo_wsh.so");
            dir.write("www/page.html", "<p>static</p>\n");
        },
        "admin_listen = \"127.0.0.1:0\"\ndocument_root = \"www\"",
        extra,
    )
}

/// Runs `op` and returns how long it took.
async fn timed<T>(op: impl std::future::Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let out = op.await;
    (out, started.elapsed())
}

/// Asks `/bad` to block its thread for `millis` (the reply comes when it returns).
async fn block(bad: &mut Client, millis: u64) {
    bad.send(Message::text(format!("sleep {millis}"))).await.unwrap_or_else(|e| panic!("send: {e}"));
}

/// The worst of each kind of unrelated work while a handler blocks, measured once.
#[derive(Debug, Default)]
struct Worst {
    open_echo: Duration,
    handshake: Duration,
    static_page: Duration,
    admin: Duration,
}

/// Measures, at the same time: 20 round trips on the open `echo` (40 ms apart), and three
/// each (200 ms apart) of a new handshake and echo, a static page and the admin endpoints.
async fn measure(server: &ServerProcess, echo: &mut Client, admin: std::net::SocketAddr) -> Worst {
    let open_echo = async {
        let mut worst = Duration::ZERO;
        for i in 0..20 {
            let text = format!("m{i}");
            let (reply, took) = timed(round_trip(echo, Message::text(text.clone()))).await;
            assert_eq!(reply, Message::text(text));
            worst = worst.max(took);
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        worst
    };
    let handshake = three_times(|| async {
        let mut fresh = connect(&server.ws_url("/echo")).await;
        assert_eq!(round_trip(&mut fresh, Message::text("new")).await, Message::text("new"));
    });
    let static_page = three_times(|| async {
        let page = http_get(server.addr, "/page.html").await;
        assert_eq!((page.status, page.text().as_str()), (200, "<p>static</p>\n"));
    });
    let admin = three_times(|| async {
        assert_eq!(http_get(admin, "/metrics").await.status, 200);
        assert_eq!(http_get(admin, "/readyz").await.status, 200);
    });
    let (open_echo, handshake, static_page, admin) = tokio::join!(open_echo, handshake, static_page, admin);
    Worst { open_echo, handshake, static_page, admin }
}

/// The worst of three runs of `op`, 200 ms apart.
async fn three_times<F: std::future::Future<Output = ()>>(op: impl Fn() -> F) -> Duration {
    let mut worst = Duration::ZERO;
    for _ in 0..3 {
        worst = worst.max(timed(op()).await.1);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    worst
}

#[tokio::test]
async fn a_blocking_handler_does_not_freeze_the_others_and_is_named() {
    let server = server("");
    let admin = server.admin_addr();
    let mut echo = connect(&server.ws_url("/echo")).await;
    assert_eq!(round_trip(&mut echo, Message::text("warm")).await, Message::text("warm"));
    let mut bad = connect(&server.ws_url("/bad")).await;
    assert_eq!(round_trip(&mut bad, Message::text("hi")).await, Message::text("hi"));

    block(&mut bad, BLOCK_MS).await;
    let started = Instant::now();
    let warn = server
        .wait_log_where(|l| l.contains("WARN") && l.contains("blocked") && l.contains("route=/bad"), WAIT)
        .unwrap_or_else(|| panic!("no blocked warning; log:\n{}", server.logs()));
    assert!(warn.contains("bad_wsh.so"), "the warning names the plugin file: {warn}");
    let worst = measure(&server, &mut echo, admin).await;
    let measured_for = started.elapsed();
    eprintln!("while /bad blocked {BLOCK_MS} ms (measured over {measured_for:?}): {worst:?}");
    assert!(measured_for < Duration::from_millis(BLOCK_MS), "the measurement ran while /bad was blocked");
    for (what, took) in [
        ("open echo round trip", worst.open_echo),
        ("new handshake and echo", worst.handshake),
        ("static page", worst.static_page),
        ("admin endpoint", worst.admin),
    ] {
        assert!(took < BOUND, "{what} took {took:?} while /bad was blocked (bound {BOUND:?})");
    }

    assert_eq!(next_message(&mut bad).await.and_then(Result::ok), Some(Message::text("slept")));
    server
        .wait_log_where(|l| l.contains("unblocked after") && l.contains("route=/bad"), WAIT)
        .unwrap_or_else(|| panic!("no unblocked line; log:\n{}", server.logs()));
    let metrics = http_get(admin, "/metrics").await.text();
    assert!(metrics.contains("wshd_handler_blocked_total{route=\"/bad\"} 1"), "{metrics}");
    assert!(metrics.contains("wshd_handler_blocked_threads 0"), "{metrics}");
}

/// Polls `/healthz` until its status is `want`; the body of that answer.
async fn healthz_until(admin: std::net::SocketAddr, want: u16, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let resp = http_get(admin, "/healthz").await;
        if resp.status == want {
            return Some(resp.text());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test]
async fn healthz_fails_while_a_handler_blocks_too_long_and_recovers() {
    // The default workers (at least 2): the master's /healthz fails while any one of them
    // has a handler blocked too long, and names that worker.
    let server = ServerProcess::start_with(
        |dir| {
            dir.install("fixture_misbehave", "handlers/bad_wsh.so");
        },
        "admin_listen = \"127.0.0.1:0\"",
        "[watchdog]\nunhealthy_after_secs = 1\n",
    );
    let admin = server.admin_addr();
    assert_eq!(http_get(admin, "/healthz").await.status, 200);
    let mut bad = connect(&server.ws_url("/bad")).await;
    block(&mut bad, BLOCK_MS).await;
    let sent = Instant::now();
    let reason = healthz_until(admin, 503, Duration::from_millis(BLOCK_MS))
        .await
        .unwrap_or_else(|| panic!("/healthz never answered 503; log:\n{}", server.logs()));
    let after = sent.elapsed();
    assert!(
        after >= Duration::from_millis(900),
        "503 only after unhealthy_after_secs (got it after {after:?})"
    );
    assert!(reason.contains("/bad") && reason.contains("blocked"), "{reason}");
    assert!(reason.contains("worker pid="), "the worker is named: {reason}");
    assert_eq!(next_message(&mut bad).await.and_then(Result::ok), Some(Message::text("slept")));
    let body = healthz_until(admin, 200, WAIT).await.unwrap_or_else(|| panic!("/healthz stayed 503"));
    assert_eq!(body, "ok\n");
}
