//! The issue-18 benchmark, both over TLS in one run against one server: WebSocket handshakes/s
//! and echo round trips/s over HTTP/2 streams (one shared connection) against HTTP/1.1
//! upgrades (a TLS connection each). Ignored by default (it measures, it does not check):
//! `cargo test -p wshd-tests --test it http2_bench -- --ignored --nocapture`. The harness
//! runs the debug build of `wshd`: compare the ratios, not the absolute rates.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use wshd_tests::h2ws::{H2Client, H2WebSocket, tls_client, tls_connect};

use crate::http2::{cert, start_tls};

/// Handshakes per run and client tasks.
const HANDSHAKES: usize = 300;
/// Round trips per run.
const ROUND_TRIPS: usize = 3000;

type Wss = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

async fn h1_socket(addr: std::net::SocketAddr, cert: &rustls::pki_types::CertificateDer<'static>) -> Wss {
    let (tls, _) = tls_connect(addr, &tls_client(cert, &[b"http/1.1"])).await;
    let url = format!("wss://localhost:{}/echo", addr.port());
    tokio_tungstenite::client_async(url, tls).await.expect("an HTTP/1.1 upgrade").0
}

async fn h1_ask(ws: &mut Wss, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
    let reply = tokio::time::timeout(wshd_tests::WAIT, ws.next()).await.expect("a reply in time");
    assert!(matches!(reply, Some(Ok(Message::Text(_)))), "{reply:?}");
}

fn rate(n: usize, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64()
}

#[tokio::test]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn handshakes_and_round_trips_h2_streams_vs_h1_upgrades() {
    let cert = cert();
    let server = start_tls(&cert, "[http2]\nmax_concurrent_streams = 1000\n");
    // Handshakes: open a WebSocket, one echo, close, HANDSHAKES times in a row.
    let started = Instant::now();
    for _ in 0..HANDSHAKES {
        let mut ws = h1_socket(server.addr, &cert.der).await;
        h1_ask(&mut ws, "hi").await;
        let _ = ws.close(None).await;
    }
    let h1_handshakes = rate(HANDSHAKES, started.elapsed());
    let mut client = H2Client::connect(server.addr, &cert.der).await;
    let started = Instant::now();
    for _ in 0..HANDSHAKES {
        let mut ws = H2WebSocket::accepted(client.websocket("/echo", &[]).await.expect("CONNECT"));
        assert_eq!(ws.ask("hi").await, "hi");
        assert_eq!(ws.close(1000).await, Some(1000));
    }
    let h2_handshakes = rate(HANDSHAKES, started.elapsed());
    // Round trips: one WebSocket, ROUND_TRIPS sequential echoes of 32 bytes.
    let text = "x".repeat(32);
    let mut h1 = h1_socket(server.addr, &cert.der).await;
    let started = Instant::now();
    for _ in 0..ROUND_TRIPS {
        h1_ask(&mut h1, &text).await;
    }
    let h1_trips = rate(ROUND_TRIPS, started.elapsed());
    let mut h2 = H2WebSocket::accepted(client.websocket("/echo", &[]).await.expect("CONNECT"));
    let started = Instant::now();
    for _ in 0..ROUND_TRIPS {
        assert_eq!(h2.ask(&text).await, text);
    }
    let h2_trips = rate(ROUND_TRIPS, started.elapsed());
    println!("| over TLS, debug build, one client task | HTTP/1.1 upgrade | HTTP/2 stream | h2 / h1 |");
    println!("|---|---|---|---|");
    println!(
        "| WebSocket handshakes/s (open, 1 echo, close; h1: a new TLS connection each, h2: a new stream on one connection) | {h1_handshakes:.0} | {h2_handshakes:.0} | {:.2} |",
        h2_handshakes / h1_handshakes
    );
    println!(
        "| echo round trips/s (32 B, one WebSocket) | {h1_trips:.0} | {h2_trips:.0} | {:.2} |",
        h2_trips / h1_trips
    );
}
