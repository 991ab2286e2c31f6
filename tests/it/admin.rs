//! The admin listener: `/healthz`, `/readyz` and Prometheus `/metrics`, on its own address.

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wshd_tests::*;

/// The master's admin listener sums every worker's figures (each worker loads the plugins
/// itself, so plugin counts are per worker times the workers).
fn server(setup: impl FnOnce(&TempDir)) -> ServerProcess {
    ServerProcess::start_with(setup, "admin_listen = \"127.0.0.1:0\"", "")
}

#[tokio::test]
async fn health_readiness_and_metrics_after_some_traffic() {
    let server = server(|dir| {
        dir.install("echo_wsh", "handlers/libecho_wsh.so");
        dir.install("fixture_probe", "handlers/probe_wsh.so");
    });
    let admin = server.admin_addr();
    assert_ne!(admin, server.addr);
    let health = http_get(admin, "/healthz").await;
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    assert_eq!(http_get(admin, "/readyz").await.status, 200);

    // Traffic: two echo connections (3 messages in and out), one left open; a 404; a panic.
    let mut open = connect(&server.ws_url("/echo")).await;
    assert_eq!(round_trip(&mut open, Message::text("one")).await, Message::text("one"));
    let mut closed = connect(&server.ws_url("/echo")).await;
    assert_eq!(
        round_trip(&mut closed, Message::binary(vec![1u8; 1000])).await,
        Message::binary(vec![1u8; 1000])
    );
    assert_eq!(round_trip(&mut closed, Message::text("two")).await, Message::text("two"));
    let normal = CloseFrame { code: CloseCode::Normal, reason: "".into() };
    closed.close(Some(normal)).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(next_message(&mut closed).await, Some(Ok(Message::Close(_))) | None));
    assert_eq!(raw_http(server.addr, &handshake_request("/nothing", "")).await.status, 404);
    let mut panicky = connect(&server.ws_url("/probe")).await;
    panicky.send(Message::text("panic")).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(expect_close(&mut panicky).await.0, 1011);
    server
        .wait_log_where(|l| l.contains("connection closed") && l.contains("route=/probe"), WAIT)
        .unwrap_or_else(|| panic!("{}", server.logs()));
    server
        .wait_log_where(|l| l.contains("connection closed") && l.contains("bytes_in=1003"), WAIT)
        .unwrap_or_else(|| panic!("{}", server.logs()));

    let resp = http_get(admin, "/metrics").await;
    assert_eq!(resp.status, 200);
    assert!(resp.header("content-type").is_some_and(|c| c.starts_with("application/openmetrics-text")));
    let m = resp.text();
    // Every serving process loaded both plugins.
    let processes = server.serving_processes() as f64;
    let expect = [
        ("wshd_connections_open{route=\"/echo\"}", 1.0),
        ("wshd_connections_total{route=\"/echo\"}", 2.0),
        ("wshd_messages_total{route=\"/echo\",direction=\"in\"}", 3.0),
        ("wshd_messages_total{route=\"/echo\",direction=\"out\"}", 3.0),
        ("wshd_message_bytes_total{route=\"/echo\",direction=\"in\"}", 1006.0),
        ("wshd_message_bytes_total{route=\"/echo\",direction=\"out\"}", 1006.0),
        ("wshd_handshakes_total{route=\"/echo\",status=\"101\"}", 2.0),
        ("wshd_handshakes_total{route=\"none\",status=\"404\"}", 1.0),
        ("wshd_closes_total{route=\"/echo\",code=\"1000\",initiator=\"client\"}", 1.0),
        ("wshd_closes_total{route=\"/probe\",code=\"1011\",initiator=\"server\"}", 1.0),
        ("wshd_handler_panics_total{route=\"/probe\"}", 1.0),
        ("wshd_handshake_duration_seconds_count{route=\"/echo\"}", 2.0),
        ("wshd_message_delivery_seconds_count{route=\"/echo\"}", 3.0),
        ("wshd_plugin_loads_total", 2.0 * processes),
        ("wshd_plugin_refusals_total", 0.0),
        ("wshd_plugin_live_generations", 2.0 * processes),
        ("wshd_draining", 0.0),
    ];
    for (name, value) in expect {
        assert_eq!(metric_sample(&m, name), Some(value), "{name} in\n{m}");
    }
    assert!(m.trim_end().ends_with("# EOF"), "{m}");

    assert_eq!(http_get(admin, "/nope").await.status, 404);
    let post = raw_http(admin, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!((post.status, post.header("allow")), (405, Some("GET, HEAD")));
    drop(open);
}

#[tokio::test]
async fn without_handlers_the_server_is_alive_but_not_ready() {
    let server = server(|_| {});
    let admin = server.admin_addr();
    assert_eq!(http_get(admin, "/healthz").await.status, 200);
    let ready = http_get(admin, "/readyz").await;
    assert_eq!(ready.status, 503);
    assert!(ready.text().contains("no handlers loaded"), "{}", ready.text());
}

#[tokio::test]
async fn an_unusable_admin_address_is_a_clear_start_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = taken.local_addr().unwrap_or_else(|e| panic!("{e}")).port();
    let dir = TempDir::new();
    let config = dir.write(
        "server.toml",
        &config_with(&dir.path().join("handlers"), &format!("admin_listen = \"127.0.0.1:{port}\""), ""),
    );
    let out = std::process::Command::new(wshd_bin())
        .args(["-c", &config.display().to_string()])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port} ([server] admin_listen)")),
        "{stderr}"
    );
}
