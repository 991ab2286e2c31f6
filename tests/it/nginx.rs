//! A real nginx (Debian's `/usr/sbin/nginx`) in front of a real wshd, configured with the
//! snippet shipped in `config/nginx/wshd.conf`: echo through the proxy, the client's address
//! and scheme as the handler sees them, keepalive pings outliving `proxy_read_timeout`, and a
//! graceful shutdown reaching the client through the proxy.
//!
//! nginx must be installed (`.ci/run` installs it); without it these tests fail, they do not
//! skip.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::TcpSocket;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;
use wshd_tests::nginx::Nginx;
use wshd_tests::*;

/// The address test clients connect from, so that the client (127.0.0.2) and the proxy
/// (127.0.0.1) can be told apart.
const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// nginx with `config/nginx/wshd.conf`, edited for the test: wshd at `upstream`,
/// `proxy_read_timeout 2s`, and `X-Forwarded-Proto https` (as if nginx terminated TLS).
fn start_nginx(upstream: SocketAddr) -> Nginx {
    Nginx::start(
        "wshd.conf",
        &[
            ("server 127.0.0.1:9998;", format!("server {upstream};")),
            ("proxy_read_timeout 1h;", "proxy_read_timeout 2s;".to_owned()),
            (
                "proxy_set_header X-Forwarded-Proto $scheme;",
                "proxy_set_header X-Forwarded-Proto https;".to_owned(),
            ),
        ],
    )
}

/// wshd with the probe at `/probe` (and `/quiet`, the probe without keepalive pings),
/// trusting nginx at 127.0.0.1, pinging every second.
fn wshd() -> ServerProcess {
    ServerProcess::start_with(
        |dir| drop(dir.install("fixture_probe", "handlers/probe_wsh.so")),
        "shutdown_grace_secs = 2",
        "[proxy]\ntrusted = [\"127.0.0.1/32\", \"::1/128\"]\n\n\
         [websocket]\nping_interval_secs = 1\npong_timeout_secs = 5\n\n\
         [[route]]\npath = \"/quiet\"\nhandler = \"/probe\"\nping_interval_secs = 0\n",
    )
}

/// Connects to `url` from [`CLIENT_IP`], with extra request headers.
async fn connect_from_client_ip(url: &str, headers: &[(&str, &str)]) -> Client {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().unwrap_or_else(|e| panic!("{url}: {e}"));
    for (name, value) in headers {
        let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        request.headers_mut().append(name, value.parse().unwrap_or_else(|e| panic!("{e}")));
    }
    let host = request.uri().authority().map(|a| a.as_str().to_owned()).unwrap_or_default();
    let target: SocketAddr = host.parse().unwrap_or_else(|e| panic!("{host}: {e}"));
    let socket = TcpSocket::new_v4().unwrap_or_else(|e| panic!("{e}"));
    socket.bind(SocketAddr::new(CLIENT_IP, 0)).unwrap_or_else(|e| panic!("bind {CLIENT_IP}: {e}"));
    let stream = socket.connect(target).await.unwrap_or_else(|e| panic!("connect {target}: {e}"));
    let (client, _) =
        tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream)))
            .await
            .unwrap_or_else(|_| panic!("handshake through nginx timed out"))
            .unwrap_or_else(|e| panic!("handshake through nginx: {e}"));
    client
}

async fn text_round_trip(client: &mut Client, text: &str) -> String {
    round_trip(client, Message::text(text)).await.to_text().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn echo_through_nginx_with_the_clients_address_and_scheme() {
    let server = wshd();
    let nginx = start_nginx(server.addr);
    // The client tries to spoof its address; nginx appends the real one, and wshd trusts
    // only nginx.
    let mut client = connect_from_client_ip(&nginx.url("/probe"), &[("X-Forwarded-For", "6.6.6.6")]).await;
    assert_eq!(text_round_trip(&mut client, "hello through nginx").await, "hello through nginx");
    let info = text_round_trip(&mut client, "info").await;
    assert!(info.ends_with("peer=127.0.0.2 secure=true"), "{info}\nnginx: {}", nginx.error_log());
    drop(client);
    let line = server
        .wait_log_where(|l| l.contains("connection closed") && l.contains("client=127.0.0.2"), WAIT)
        .unwrap_or_else(|| panic!("{}", server.logs()));
    assert!(line.contains("socket=127.0.0.1:"), "the raw peer is nginx: {line}");
}

/// Reads `client` for `duration`; the number of pings seen, or the error that ended it.
async fn listen_quietly(client: &mut Client, duration: Duration) -> Result<usize, String> {
    let until = tokio::time::Instant::now() + duration;
    let mut pings = 0;
    loop {
        match tokio::time::timeout_at(until, client.next()).await {
            Err(_) => return Ok(pings),
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(other))) => return Err(format!("unexpected {other:?}")),
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(None) => return Err("the connection ended".into()),
        }
    }
}

#[tokio::test]
async fn keepalive_pings_keep_an_idle_connection_open_past_nginxs_read_timeout() {
    let server = wshd();
    let nginx = start_nginx(server.addr);
    let mut kept = connect_from_client_ip(&nginx.url("/probe"), &[]).await;
    let mut quiet = connect_from_client_ip(&nginx.url("/quiet"), &[]).await;
    let (kept_result, quiet_result) = tokio::join!(
        listen_quietly(&mut kept, Duration::from_secs(5)),
        listen_quietly(&mut quiet, Duration::from_secs(5))
    );
    // Idle for 5 s behind a 2 s proxy_read_timeout: the pinged one is alive…
    let pings =
        kept_result.unwrap_or_else(|e| panic!("{e}\nnginx: {}\nwshd: {}", nginx.error_log(), server.logs()));
    assert!(pings >= 3, "only {pings} keepalive pings in 5 s");
    assert_eq!(text_round_trip(&mut kept, "still here").await, "still here");
    // …and the one without pings was cut by nginx (which shows the timeout is real).
    assert!(quiet_result.is_err(), "the unpinged connection survived nginx's read timeout");
    assert!(nginx.error_log().contains("upstream timed out"), "{}", nginx.error_log());
}

#[tokio::test]
async fn graceful_shutdown_reaches_the_client_through_nginx() {
    let mut server = wshd();
    let nginx = start_nginx(server.addr);
    let mut client = connect_from_client_ip(&nginx.url("/probe"), &[]).await;
    assert_eq!(text_round_trip(&mut client, "before").await, "before");
    server.signal("TERM");
    let (code, reason) = expect_close(&mut client).await;
    assert_eq!((code, reason.as_str()), (1001, "going away"), "nginx: {}", nginx.error_log());
    // Answer the close (tungstenite does when polled) so the drain completes early.
    let _ = tokio::time::timeout(Duration::from_secs(1), client.next()).await;
    let status = server.wait_exit(Duration::from_secs(5)).unwrap_or_else(|| panic!("{}", server.logs()));
    assert!(status.success(), "{status:?}:\n{}", server.logs());
}
