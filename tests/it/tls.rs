//! TLS on every listener (pywebsocket `-t -k -c`, `--tls-client-auth`): wss:// with a
//! certificate made at test time, `is_secure` as a handler sees it, client certificates
//! required or optional, the handshake timeout, and start-up errors that name the file.

use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use wshd_tests::*;

/// A certificate and its key, as PEM and DER (also used by `scale_out::secure`).
pub(crate) struct Pair {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Pair {
    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// A test CA, a server certificate for `localhost`/`127.0.0.1` and a client certificate,
/// both signed by the CA, plus a client certificate signed by another CA.
struct Pki {
    ca: Pair,
    server: Pair,
    client: Pair,
    stranger: Pair,
}

pub(crate) fn ca(name: &str) -> (Pair, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap_or_else(|e| panic!("key: {e}"));
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("params: {e}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let cert = params.self_signed(&key).unwrap_or_else(|e| panic!("CA cert: {e}"));
    let pair = Pair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().clone(),
        key_der: key.serialize_der(),
    };
    (pair, Issuer::new(params, key))
}

pub(crate) fn leaf(
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'static, KeyPair>,
) -> Pair {
    let key = KeyPair::generate().unwrap_or_else(|e| panic!("key: {e}"));
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .unwrap_or_else(|e| panic!("params: {e}"));
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).unwrap_or_else(|e| panic!("leaf cert: {e}"));
    Pair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().clone(),
        key_der: key.serialize_der(),
    }
}

fn pki() -> Pki {
    let (ca_pair, issuer) = ca("wshd test CA");
    let server = leaf(&["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth, &issuer);
    let client = leaf(&["client.test"], ExtendedKeyUsagePurpose::ClientAuth, &issuer);
    let (_, other_issuer) = ca("some other CA");
    let stranger = leaf(&["stranger.test"], ExtendedKeyUsagePurpose::ClientAuth, &other_issuer);
    Pki { ca: ca_pair, server, client, stranger }
}

/// Writes the server's files into the test directory: `server.pem`, `server.key`, `ca.pem`.
fn write_server_files(dir: &TempDir, pki: &Pki) {
    dir.write("server.pem", &pki.server.cert_pem);
    dir.write("server.key", &pki.server.key_pem);
    dir.write("ca.pem", &pki.ca.cert_pem);
}

const TLS_CONFIG: &str = "[tls]\ncert = \"server.pem\"\nkey = \"server.key\"\n";

fn connector(pki: &Pki, client: Option<&Pair>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.cert_der.clone()).unwrap_or_else(|e| panic!("root: {e}"));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| panic!("{e}"))
        .with_root_certificates(roots);
    let mut config = match client {
        Some(pair) => builder
            .with_client_auth_cert(vec![pair.cert_der.clone()], pair.key())
            .unwrap_or_else(|e| panic!("client cert: {e}")),
        None => builder.with_no_client_auth(),
    };
    // tungstenite speaks HTTP/1.1 only (HTTP/2 by ALPN is tested in http2.rs).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

type Wss = WebSocketStream<TlsStream<TcpStream>>;

/// Opens `wss://localhost:PORT{path}`; returns the socket and the ALPN protocol chosen.
async fn wss(
    addr: SocketAddr,
    path: &str,
    connector: &TlsConnector,
) -> Result<(Wss, Option<Vec<u8>>), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let name = ServerName::try_from("localhost").unwrap_or_else(|e| panic!("{e}"));
    let tls = tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_owned())?
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let url = format!("wss://localhost:{}{path}", addr.port());
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, tls))
        .await
        .map_err(|_| "WebSocket handshake timed out".to_owned())?
        .map_err(|e| format!("WebSocket handshake: {e}"))?;
    Ok((ws, alpn))
}

async fn ask(ws: &mut Wss, text: &str) -> String {
    ws.send(Message::text(text)).await.unwrap_or_else(|e| panic!("send: {e}"));
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap_or_else(|_| panic!("no reply in time")) {
            Some(Ok(Message::Text(reply))) => return reply.to_string(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text reply, got {other:?}"),
        }
    }
}

fn start_tls_server(pki: &Pki, extra: &str) -> ServerProcess {
    ServerProcess::start(
        |dir| {
            write_server_files(dir, pki);
            dir.install("echo_wsh", "handlers/libecho_wsh.so");
            dir.install("fixture_probe", "handlers/libprobe_wsh.so");
        },
        &format!("{TLS_CONFIG}{extra}"),
    )
}

#[tokio::test]
async fn wss_echo_reports_secure_to_the_handler() {
    let pki = pki();
    let server = start_tls_server(&pki, "");
    let tls = connector(&pki, None);
    let (mut echo, alpn) =
        wss(server.addr, "/echo", &tls).await.unwrap_or_else(|e| panic!("{e}\n{}", server.logs()));
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]), "ALPN picks http/1.1");
    assert_eq!(ask(&mut echo, "over TLS").await, "over TLS");
    let (mut probe, _) = wss(server.addr, "/probe", &tls).await.unwrap_or_else(|e| panic!("{e}"));
    let info = ask(&mut probe, "info").await;
    assert!(info.contains("secure=true"), "{info}");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = raw_http(server.addr, &handshake_request("/echo", "")).await;
    assert_eq!(plain.status, 0, "{plain:?}");
}

#[tokio::test]
async fn a_plain_connection_is_not_secure() {
    let server =
        ServerProcess::start(|dir| drop(dir.install("fixture_probe", "handlers/libprobe_wsh.so")), "");
    let mut client = connect(&server.ws_url("/probe")).await;
    match round_trip(&mut client, Message::text("info")).await {
        Message::Text(info) => assert!(info.contains("secure=false"), "{info}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn required_client_certificates_refuse_clients_without_one() {
    let pki = pki();
    let server = start_tls_server(&pki, "client_auth = \"required\"\nclient_ca = \"ca.pem\"\n");
    let refused = wss(server.addr, "/echo", &connector(&pki, None)).await;
    assert!(refused.is_err(), "a client without a certificate must be refused");
    let stranger = wss(server.addr, "/echo", &connector(&pki, Some(&pki.stranger))).await;
    assert!(stranger.is_err(), "a certificate from another CA must be refused");
    let (mut ws, _) = wss(server.addr, "/echo", &connector(&pki, Some(&pki.client)))
        .await
        .unwrap_or_else(|e| panic!("a client with a certificate signed by the CA: {e}\n{}", server.logs()));
    assert_eq!(ask(&mut ws, "with cert").await, "with cert");
    assert!(server.wait_log("TLS handshake failed", WAIT).is_some(), "{}", server.logs());
}

#[tokio::test]
async fn optional_client_certificates_serve_both() {
    let pki = pki();
    let server = start_tls_server(&pki, "client_auth = \"optional\"\nclient_ca = \"ca.pem\"\n");
    let (mut without, _) = wss(server.addr, "/echo", &connector(&pki, None))
        .await
        .unwrap_or_else(|e| panic!("without a certificate: {e}\n{}", server.logs()));
    assert_eq!(ask(&mut without, "a").await, "a");
    let (mut with, _) = wss(server.addr, "/echo", &connector(&pki, Some(&pki.client)))
        .await
        .unwrap_or_else(|e| panic!("with a certificate: {e}"));
    assert_eq!(ask(&mut with, "b").await, "b");
}

#[tokio::test]
async fn the_tls_handshake_times_out() {
    let pki = pki();
    let server = start_tls_server(&pki, "[websocket]\nhandshake_timeout_secs = 1\n");
    let mut silent = TcpStream::connect(server.addr).await.unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(WAIT, silent.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the server must drop a silent client: {read:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(server.wait_log("TLS handshake timed out", WAIT).is_some(), "{}", server.logs());
}

/// Runs `wshd ARGS` in `dir`, expecting it to exit by itself.
fn run_to_exit(args: &[&str], dir: &std::path::Path) -> Output {
    let mut child = Command::new(wshd_bin())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap_or_else(|e| panic!("{e}")).is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("wshd {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn unusable_certificate_files_stop_the_start_with_the_path() {
    let pki = pki();
    let dir = TempDir::new();
    write_server_files(&dir, &pki);
    dir.write("garbage.pem", "this is not PEM\n");
    let config = |cert: &str, key: &str| {
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n[handlers]\ndir = \"handlers\"\n[tls]\ncert = \"{cert}\"\nkey = \"{key}\"\n"
        )
    };
    let cases = [
        ("missing.pem", "server.key", "TLS certificate missing.pem: cannot read"),
        ("server.pem", "missing.key", "TLS private key missing.key: cannot read"),
        ("garbage.pem", "server.key", "TLS certificate garbage.pem: no certificate found"),
        ("server.pem", "garbage.pem", "TLS private key garbage.pem: no private key found"),
        ("server.pem", "ca.pem", "TLS private key ca.pem: no private key found"),
    ];
    for (cert, key, expected) in cases {
        dir.write("bad.toml", &config(cert, key));
        let out = run_to_exit(&["-c", "bad.toml"], dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cert}/{key}: the server must not start");
        assert!(stderr.contains(expected), "{cert}/{key}: {stderr}");
        let check = run_to_exit(&["-c", "bad.toml", "check-config"], dir.path());
        let all =
            format!("{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
        assert!(!check.status.success() && all.contains(expected), "check-config {cert}/{key}: {all}");
    }
    // The same through the flags, and a mismatched key.
    dir.write("other.key", &pki.client.key_pem);
    let out = run_to_exit(
        &[
            "-w",
            "handlers",
            "-p",
            "0",
            "-H",
            "127.0.0.1",
            "-t",
            "--certificate",
            "server.pem",
            "-k",
            "other.key",
        ],
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("TLS certificate server.pem with private key other.key"), "{stderr}");
    let out = run_to_exit(&["-p", "0", "-t", "-k", "server.key"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no certificate is given (--certificate FILE or [tls] cert)"), "{stderr}");
    let out = run_to_exit(&["-p", "0", "--tls-client-auth", "check-config"], dir.path());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-client-auth needs -t/--tls"));
}

#[tokio::test]
async fn the_echo_client_speaks_tls() {
    let pki = pki();
    let server = start_tls_server(&pki, "");
    let ca = server.dir().join("ca.pem");
    let port = server.addr.port().to_string();
    let out = Command::new(wshd_bin())
        .args(["client", "-t", "-s", "localhost", "-p", &port, "--ca"])
        .arg(&ca)
        .args(["-m", "Hello,Goodbye"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout, "Send: Hello\nRecv: Hello\nSend: Goodbye\nRecv: Goodbye\nRecv close\nSend ack\n");
    // Without --ca the test CA is unknown: refused, with a message.
    let out = Command::new(wshd_bin())
        .args(["client", "-t", "-s", "localhost", "-p", &port, "-k", "5"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("wshd client: "), "{stderr}");
    let out = Command::new(wshd_bin())
        .args(["client", "-t", "--insecure", "-s", "127.0.0.1", "-p", &port, "-m", "x"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
