//! HTTP/2 on the TLS listener (ALPN `h2`) and WebSockets over its streams (RFC 8441): several
//! WebSockets on one connection, close codes, 1 MiB messages, permessage-deflate, the
//! handshake's refusals, a stream reset mid-message, pages and auth over HTTP/2, the handler's
//! view of the HTTP version, HTTP/1.1 beside it, and a graceful shutdown (1001, GOAWAY).

use std::io::Write;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use wshd_tests::h2ws::{H2Client, H2WebSocket, tls_client, tls_connect};
use wshd_tests::*;

/// A self-signed certificate for `localhost`, written as `server.pem`/`server.key` by
/// [`start_tls`]; the client trusts its DER.
pub(crate) struct Cert {
    cert_pem: String,
    key_pem: String,
    pub(crate) der: CertificateDer<'static>,
}

pub(crate) fn cert() -> Cert {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let made = rcgen::generate_simple_self_signed(names).expect("a self-signed certificate");
    Cert {
        cert_pem: made.cert.pem(),
        key_pem: made.signing_key.serialize_pem(),
        der: made.cert.der().clone(),
    }
}

/// A TLS server (HTTP/2 on by default) with the echo and probe handlers, a document root
/// `www` with `index.html`, and `extra` config appended.
pub(crate) fn start_tls(cert: &Cert, extra: &str) -> ServerProcess {
    ServerProcess::start_with(
        |dir| {
            dir.write("server.pem", &cert.cert_pem);
            dir.write("server.key", &cert.key_pem);
            dir.write("www/index.html", "<p>over h2</p>\n");
            let hi = dir.write("www/cgi-bin/hi", "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\necho \"$SERVER_PROTOCOL $HTTP_HOST\"\n");
            std::fs::set_permissions(&hi, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .expect("chmod");
            dir.install("echo_wsh", "handlers/libecho_wsh.so");
            dir.install("fixture_probe", "handlers/libprobe_wsh.so");
        },
        "document_root = \"www\"\nworkers = 0\nadmin_listen = \"127.0.0.1:0\"",
        &format!("[tls]\ncert = \"server.pem\"\nkey = \"server.key\"\n{extra}"),
    )
}

/// Waits (bounded) for a server log line containing `needle`, yielding to the runtime
/// meanwhile: the h2 client's connection task runs on this test's thread.
pub(crate) async fn log_line(server: &ServerProcess, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(line) = server.wait_log(needle, Duration::ZERO) {
            return line;
        }
        assert!(tokio::time::Instant::now() < deadline, "no log line with {needle:?}:\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) async fn open(client: &mut H2Client, path: &str) -> H2WebSocket {
    H2WebSocket::accepted(client.websocket(path, &[]).await.expect("extended CONNECT"))
}

#[tokio::test]
async fn two_websocket_streams_share_one_connection() {
    let cert = cert();
    let server = start_tls(&cert, "");
    let mut client = H2Client::connect(server.addr, &cert.der).await;
    println!(
        "connected to {} with ALPN h2; SETTINGS_ENABLE_CONNECT_PROTOCOL = {}",
        server.addr,
        u8::from(client.connect_protocol_enabled())
    );
    let mut a = open(&mut client, "/echo").await;
    println!("stream A: CONNECT :protocol websocket /echo -> :status 200 {:?}", a.headers);
    let mut b = open(&mut client, "/echo").await;
    println!("stream B: CONNECT :protocol websocket /echo -> :status 200 {:?}", b.headers);
    assert!(a.headers.get("sec-websocket-accept").is_none(), "RFC 8441: no Sec-WebSocket-Accept");
    for round in 0..3 {
        let (ta, tb) = (format!("A says {round}"), format!("B says {round}"));
        a.send_frame(true, 0x1, ta.as_bytes());
        b.send_frame(true, 0x1, tb.as_bytes());
        let (ra, rb) = (a.read_message().await, b.read_message().await);
        let text = |m: Option<(u8, Vec<u8>)>| String::from_utf8(m.expect("a reply").1).expect("utf-8");
        let (ra, rb) = (text(ra), text(rb));
        println!("A -> {ta:?}  <- {ra:?}    B -> {tb:?}  <- {rb:?}");
        assert_eq!((ra, rb), (ta, tb));
    }
    let code = a.close(4001).await;
    println!("A: close 4001 -> server's close {code:?}; stream ended: {}", a.stream_ended().await);
    assert_eq!(code, Some(4001), "the close code is echoed");
    assert_eq!(b.ask("B still here").await, "B still here", "closing A leaves B alone");
    println!("B after A closed: echo works; connection open: {}", !client.is_closed());
    assert_eq!(b.close(1000).await, Some(1000));
    let line = log_line(&server, "http=\"2\"").await;
    println!("server access log: {line}");
    let metrics = http_get(server.admin_addr(), "/metrics").await.text();
    let sessions: Vec<&str> =
        metrics.lines().filter(|l| l.starts_with("wshd_websocket_sessions_total")).collect();
    println!("server /metrics: {sessions:?}");
    assert_eq!(sessions, ["wshd_websocket_sessions_total{http=\"2\"} 2"], "both sessions counted as HTTP/2");
}

#[tokio::test]
async fn big_messages_deflate_and_the_handlers_view() {
    let cert = cert();
    let server = start_tls(&cert, "");
    let mut client = H2Client::connect(server.addr, &cert.der).await;
    let mut big = open(&mut client, "/echo").await;
    let payload: Vec<u8> = (0..(1u32 << 20) - 64).map(|i| (i % 251) as u8).collect();
    big.send_frame(true, 0x2, &payload);
    let (op, echoed) = big.read_message().await.expect("the big message echoed");
    assert_eq!((op, echoed.len()), (0x2, payload.len()));
    assert!(echoed == payload, "1 MiB echoed byte for byte");

    let offer = [("sec-websocket-extensions", "permessage-deflate; client_max_window_bits")];
    let mut deflated = H2WebSocket::accepted(client.websocket("/echo", &offer).await.expect("CONNECT"));
    let agreed =
        deflated.headers.get("sec-websocket-extensions").map(|v| v.to_str().unwrap_or("").to_owned());
    assert!(agreed.as_deref().unwrap_or("").starts_with("permessage-deflate"), "{agreed:?}");
    let text = "compress me ".repeat(200);
    deflated.send_frame_raw(0xC1, &deflate(text.as_bytes()));
    let frame = deflated.read_frame().await.expect("a reply");
    assert_eq!(frame.opcode, 0x1);
    assert!(frame.payload.len() < text.len() / 4, "the reply is compressed: {} bytes", frame.payload.len());
    assert_eq!(inflate(&frame.payload), text.as_bytes());

    let mut probe = open(&mut client, "/probe").await;
    assert_eq!(probe.ask("http").await, "HTTP/2", "the handler sees the HTTP version");
    assert!(probe.ask("info").await.ends_with("secure=true"));
}

/// A raw DEFLATE block ending with the sync flush, its 4-byte tail dropped (RFC 7692).
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = flate2::Compress::new(flate2::Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(data, &mut out, flate2::FlushCompress::Sync).expect("deflate");
    out.truncate(out.len() - 4);
    out
}

fn inflate(data: &[u8]) -> Vec<u8> {
    let mut d = flate2::write::DeflateDecoder::new(Vec::new());
    d.write_all(data).expect("inflate");
    d.write_all(&[0, 0, 0xff, 0xff]).expect("inflate tail");
    d.flush().expect("flush");
    d.get_ref().clone()
}

#[tokio::test]
async fn refusals_keep_their_statuses_over_http2() {
    let cert = cert();
    let server = start_tls(&cert, "");
    let mut client = H2Client::connect(server.addr, &cert.der).await;
    let status =
        |r: Result<wshd_tests::h2ws::H2Response, h2::Error>| r.map(|r| r.status).expect("a response");
    assert_eq!(status(client.websocket("/probe?reject=403", &[]).await), 403, "the handler's status");
    assert_eq!(status(client.websocket("/nowhere", &[]).await), 404, "no handler at the path");
    let eight = [("sec-websocket-version", "8")];
    let r = client.request("CONNECT", "/echo", Some("websocket"), &eight).await.expect("a response");
    assert_eq!(
        (r.status, r.headers.get("sec-websocket-version").map(|v| v.as_bytes())),
        (426, Some(&b"13"[..]))
    );
    let bad = [("sec-websocket-version", "thirteen")];
    let r = client.request("CONNECT", "/echo", Some("websocket"), &bad).await.expect("a response");
    assert_eq!(r.status, 400, "a malformed version");
    let r = client.request("GET", "/echo", None, &[]).await.expect("a response");
    assert_eq!(r.status, 400, "a plain GET of a handler path is not a WebSocket");
    // The connection serves on after every refusal.
    let mut ws = open(&mut client, "/echo").await;
    assert_eq!(ws.ask("after refusals").await, "after refusals");
}

#[tokio::test]
async fn a_stream_reset_mid_message_leaves_the_others_working() {
    let cert = cert();
    let server = start_tls(&cert, "");
    let mut client = H2Client::connect(server.addr, &cert.der).await;
    let mut keep = open(&mut client, "/echo").await;
    let mut cut = open(&mut client, "/echo").await;
    let frame = encode_frame(true, 0x2, &vec![7u8; 100_000], true);
    cut.send_raw(&frame[..50_000]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    cut.reset();
    assert_eq!(keep.ask("still on").await, "still on", "the other stream is untouched");
    let line = log_line(&server, "peer_close=1006").await;
    assert!(line.contains("http=\"2\""), "{line}");
    let mut again = open(&mut client, "/echo").await;
    assert_eq!(again.ask("new stream").await, "new stream", "and the connection takes new streams");
}

#[tokio::test]
async fn pages_auth_and_http1_beside_http2() {
    let cert = cert();
    let server = start_tls(&cert, "[auth]\nbasic = true\n[cgi]\npaths = [\"/cgi-bin\"]\n");
    let mut client = H2Client::connect(server.addr, &cert.der).await;
    let r = client.request("GET", "/index.html", None, &[]).await.expect("a response");
    assert_eq!(r.status, 401, "Basic auth over HTTP/2");
    assert!(r.headers.get("www-authenticate").is_some());
    let r = client.websocket("/echo", &[]).await.expect("a response");
    assert_eq!(r.status, 401, "a WebSocket without the credential");
    let auth = [("authorization", "Basic dGVzdDp0ZXN0")];
    let mut r = client.request("GET", "/index.html", None, &auth).await.expect("a response");
    assert_eq!(r.status, 200);
    let body = tokio::time::timeout(WAIT, r.recv.data()).await.expect("a body in time");
    assert_eq!(body.and_then(Result::ok).as_deref(), Some(&b"<p>over h2</p>\n"[..]));
    let mut ws = H2WebSocket::accepted(client.websocket("/probe", &auth).await.expect("CONNECT"));
    assert_eq!(ws.ask("http").await, "HTTP/2");
    let mut r = client.request("GET", "/cgi-bin/hi", None, &auth).await.expect("a response");
    assert_eq!(r.status, 200, "CGI over HTTP/2");
    let body = tokio::time::timeout(WAIT, r.recv.data()).await.expect("a body in time");
    let body = String::from_utf8(body.and_then(Result::ok).expect("a body").to_vec()).expect("utf-8");
    let port = server.addr.port();
    assert_eq!(body, format!("HTTP/2.0 localhost:{port}\n"), "the script sees :authority as Host");

    // An HTTP/1.1 client on the same listener: ALPN http/1.1, an upgrade, the same probe.
    let (tls, alpn) = tls_connect(server.addr, &tls_client(&cert.der, &[b"http/1.1"])).await;
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    let url = format!("wss://localhost:{}/probe", server.addr.port());
    let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
        .expect("a request");
    request.headers_mut().insert("authorization", "Basic dGVzdDp0ZXN0".parse().expect("a header value"));
    let (mut h1, _) = tokio_tungstenite::client_async(request, tls).await.expect("an HTTP/1.1 upgrade");
    use futures_util::{SinkExt, StreamExt};
    h1.send(tokio_tungstenite::tungstenite::Message::text("http")).await.expect("send");
    let reply = tokio::time::timeout(WAIT, h1.next()).await.expect("a reply in time");
    assert_eq!(reply.expect("a message").expect("a message").into_text().expect("text").as_str(), "HTTP/1.1");
}

#[tokio::test]
async fn http2_can_be_switched_off() {
    let cert = cert();
    let server = start_tls(&cert, "[http2]\nenabled = false\n");
    let (_, alpn) = tls_connect(server.addr, &tls_client(&cert.der, &[b"h2", b"http/1.1"])).await;
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]), "without [http2], ALPN picks http/1.1");
}

#[tokio::test]
async fn shutdown_sends_1001_on_every_stream_then_goaway() {
    let cert = cert();
    let mut server = start_tls(&cert, "");
    let mut client = H2Client::connect(server.addr, &cert.der).await;
    let mut a = open(&mut client, "/echo").await;
    let mut b = open(&mut client, "/echo").await;
    assert_eq!(a.ask("a").await, "a");
    assert_eq!(b.ask("b").await, "b");
    server.signal("TERM");
    for ws in [&mut a, &mut b] {
        let frame = ws.read_frame().await.expect("a close frame");
        assert_eq!((frame.opcode, frame.close_code()), (0x8, 1001), "going away on every stream");
        ws.send_frame(true, 0x8, &1001u16.to_be_bytes());
        assert!(ws.stream_ended().await, "the stream ends after the closing handshake");
    }
    // The connection ends: cleanly, or (seen under load) with a broken pipe when the client's
    // h2 library still writes (a WINDOW_UPDATE for the close frames) after the server closed
    // the socket: wshd does not linger reading after its last stream (docs/http2.md).
    let ended = client.closed().await;
    let reset = |e: &String| e.contains("broken pipe") || e.contains("reset");
    assert!(ended.as_ref().is_ok() || ended.as_ref().is_err_and(reset), "the connection ends: {ended:?}");
    assert!(server.wait_exit(WAIT).is_some(), "the server exits once its streams closed");
}

#[tokio::test]
async fn h2c_with_prior_knowledge_on_a_plain_listener_when_switched_on() {
    let server = ServerProcess::start(
        |dir| drop(dir.install("fixture_probe", "handlers/libprobe_wsh.so")),
        "[http2]\ncleartext = true\n",
    );
    let mut client = H2Client::connect_cleartext(server.addr).await;
    let mut ws = H2WebSocket::accepted(client.websocket("/probe", &[]).await.expect("CONNECT"));
    assert_eq!(ws.ask("http").await, "HTTP/2", "h2c with prior knowledge");
    assert!(ws.ask("info").await.ends_with("secure=false"));
    // HTTP/1.1 clients on the same listener are served as before.
    let mut h1 = connect(&server.ws_url("/probe")).await;
    let reply = round_trip(&mut h1, tokio_tungstenite::tungstenite::Message::text("http")).await;
    assert_eq!(reply.into_text().expect("text").as_str(), "HTTP/1.1");
    // Off (the default), the preface is just a malformed HTTP/1.1 request.
    let plain = ServerProcess::start(|dir| drop(dir.install("echo_wsh", "handlers/libecho_wsh.so")), "");
    let answer = raw_http(plain.addr, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    assert_ne!(answer.status, 200, "{answer:?}");
    println!("h2c off: the preface gets no HTTP/2 answer (status {})", answer.status);
}
