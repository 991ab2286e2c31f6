//! `wshd client`: an echo client with the options and output of pywebsocket's
//! `echo_client.py`. It sends each comma-separated message, prints `Send: …` and the reply as
//! `Recv: …`, then closes: when the last message is `Goodbye` it waits for the server's close
//! (`Recv close`, `Send ack`), otherwise it closes itself (`Send close`, `Recv ack`).
//!
//! TLS (`-t`) verifies the server against `--ca FILE` when given, else against the system's
//! CA certificates; `--insecure` accepts any certificate (self-signed test servers).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// The message that asks the echo handler to close the connection.
const GOODBYE: &str = "Goodbye";

/// Options of `wshd client` (pywebsocket `echo_client.py`'s, plus certificate choices).
#[derive(Debug, Clone, PartialEq, Args)]
pub struct ClientArgs {
    /// Server host.
    #[arg(short = 's', long = "server-host", alias = "server_host", default_value = "localhost")]
    pub server_host: String,
    /// Server port [default: 80, or 443 with --tls].
    #[arg(short = 'p', long = "port")]
    pub port: Option<u16>,
    /// Resource path.
    #[arg(short = 'r', long = "resource", default_value = "/echo")]
    pub resource: String,
    /// Origin header value.
    #[arg(short = 'o', long = "origin")]
    pub origin: Option<String>,
    /// Comma-separated messages to send; a last `Goodbye` makes the echo handler close.
    #[arg(short = 'm', long = "message", default_value = "Hello,<>")]
    pub message: String,
    /// Use TLS (wss://).
    #[arg(short = 't', long = "tls", visible_alias = "use-tls", alias = "use_tls")]
    pub tls: bool,
    /// Socket timeout in seconds, for connecting and for each reply.
    #[arg(short = 'k', long = "socket-timeout", alias = "socket_timeout", default_value_t = 10.0)]
    pub socket_timeout: f64,
    /// Do not print the messages sent and received.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Offer permessage-deflate and print whether the server accepted it.
    #[arg(long = "use-permessage-deflate", alias = "use_permessage_deflate")]
    pub use_permessage_deflate: bool,
    /// With --tls: trust this PEM certificate or CA bundle instead of the system's CAs.
    #[arg(long = "ca", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// With --tls: accept any server certificate (for self-signed test servers only).
    #[arg(long = "insecure")]
    pub insecure: bool,
    /// With --tls: present this PEM client certificate (for servers with --tls-client-auth).
    #[arg(long = "client-cert", value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The private key of --client-cert.
    #[arg(long = "client-key", value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Log level or filter.
    #[arg(long = "log-level", alias = "log_level", default_value = "warn")]
    pub log_level: String,
}

/// Runs the client; prints what it does on stdout and errors on stderr.
pub async fn run(args: ClientArgs) -> ExitCode {
    crate::logging::init(&args.log_level, crate::config::LogFormat::Text);
    match talk(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wshd client: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn within<T, E: std::fmt::Display>(
    limit: Duration,
    what: &str,
    future: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {limit:?} (-k/--socket-timeout)")),
    }
}

async fn talk(args: &ClientArgs) -> Result<(), String> {
    let limit =
        Duration::try_from_secs_f64(args.socket_timeout).ok().filter(|d| !d.is_zero()).ok_or_else(|| {
            format!("-k/--socket-timeout {}: must be a positive number of seconds", args.socket_timeout)
        })?;
    if !args.resource.starts_with('/') {
        return Err(format!("-r/--resource {}: must start with `/`", args.resource));
    }
    if !args.tls && (args.ca.is_some() || args.insecure || args.client_cert.is_some()) {
        return Err("--ca, --insecure and --client-cert need -t/--tls".into());
    }
    let host = args.server_host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = args.port.unwrap_or(if args.tls { 443 } else { 80 });
    let url_host = if host.contains(':') { format!("[{host}]") } else { host.clone() };
    let url = format!("{}://{url_host}:{port}{}", if args.tls { "wss" } else { "ws" }, args.resource);
    let mut request = url.as_str().into_client_request().map_err(|e| format!("{url}: {e}"))?;
    if let Some(origin) = &args.origin {
        let value =
            HeaderValue::from_str(origin).map_err(|_| format!("-o/--origin {origin}: not a header value"))?;
        request.headers_mut().insert("Origin", value);
    }
    if args.use_permessage_deflate {
        request.headers_mut().insert(
            "Sec-WebSocket-Extensions",
            HeaderValue::from_static("permessage-deflate; client_max_window_bits"),
        );
    }
    let tcp = within(
        limit,
        &format!("cannot connect to {url_host}:{port}"),
        TcpStream::connect((host.as_str(), port)),
    )
    .await?;
    let _ = tcp.set_nodelay(true);
    if !args.tls {
        return exchange(tcp, request, args, limit).await;
    }
    let connector = tokio_rustls::TlsConnector::from(client_config(args)?);
    let name = ServerName::try_from(host.clone()).map_err(|e| format!("-s/--server-host {host}: {e}"))?;
    let stream = within(limit, "TLS handshake failed", connector.connect(name, tcp)).await?;
    exchange(stream, request, args, limit).await
}

async fn exchange<S>(
    stream: S,
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
    args: &ClientArgs,
    limit: Duration,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let url = request.uri().to_string();
    let handshake = async {
        tokio_tungstenite::client_async(request, stream).await.map_err(|e| match e {
            WsError::Http(response) => {
                format!("the server refused the WebSocket handshake: HTTP {}", response.status())
            }
            other => other.to_string(),
        })
    };
    let (mut ws, response) = within(limit, &format!("WebSocket handshake with {url}"), handshake).await?;
    if args.use_permessage_deflate {
        let accepted = response
            .headers()
            .get_all("Sec-WebSocket-Extensions")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.trim_start().starts_with("permessage-deflate"))
            .map(str::to_owned);
        match accepted {
            Some(params) => {
                println!("permessage-deflate: accepted ({params})");
                close(&mut ws, limit).await?;
                return Err(
                    "this client cannot exchange compressed messages; it only checks whether the server \
                            accepts permessage-deflate (run without --use-permessage-deflate to echo)"
                        .into(),
                );
            }
            None => println!("permessage-deflate: not accepted"),
        }
    }
    let messages: Vec<&str> = args.message.split(',').collect();
    for message in &messages {
        within(limit, "send", ws.send(Message::text(*message))).await?;
        if !args.quiet {
            println!("Send: {message}");
        }
        match receive(&mut ws, limit).await? {
            Some(Message::Text(text)) if !args.quiet => println!("Recv: {text}"),
            Some(Message::Binary(data)) if !args.quiet => {
                println!("Recv: <{} bytes of binary data>", data.len())
            }
            Some(Message::Close(frame)) => {
                let (code, reason) =
                    frame.map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.to_string()));
                return Err(format!(
                    "the server closed the connection instead of answering: {code} {reason}"
                ));
            }
            None => return Err("the server ended the connection instead of answering".into()),
            Some(_) => {}
        }
    }
    if messages.last() == Some(&GOODBYE)
        && let Some(Message::Close(_)) = receive(&mut ws, limit).await?
    {
        println!("Recv close");
        // The close reply (the ack) was queued when the close arrived: send it.
        let _ = within(limit, "send ack", ws.flush()).await;
        println!("Send ack");
        while let Ok(Some(_)) = receive(&mut ws, limit).await {}
        return Ok(());
    }
    close(&mut ws, limit).await
}

/// Sends a close and waits for the server's answer.
async fn close<S>(ws: &mut WebSocketStream<S>, limit: Duration) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    println!("Send close");
    let normal = CloseFrame { code: CloseCode::Normal, reason: "".into() };
    within(limit, "send close", ws.close(Some(normal))).await?;
    loop {
        match receive(ws, limit).await? {
            Some(Message::Close(_)) => break,
            Some(_) => continue,
            None => return Err("the server ended the connection without answering the close".into()),
        }
    }
    println!("Recv ack");
    Ok(())
}

/// The next data or close message (pings and pongs skipped); `None` when the connection ended.
async fn receive<S>(ws: &mut WebSocketStream<S>, limit: Duration) -> Result<Option<Message>, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let next = tokio::time::timeout(limit, ws.next())
            .await
            .map_err(|_| format!("no message from the server within {limit:?} (-k/--socket-timeout)"))?;
        match next {
            None | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => return Ok(None),
            Some(Err(e)) => return Err(format!("receive: {e}")),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(message)) => return Ok(Some(message)),
        }
    }
}

/// The rustls client configuration the options ask for.
fn client_config(args: &ClientArgs) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = crate::tls::provider();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = if args.insecure {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        match &args.ca {
            Some(ca) => {
                for cert in crate::tls::load_certs("CA", ca).map_err(|e| e.to_string())? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("--ca {}: unusable certificate: {e}", ca.display()))?;
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                let (added, _ignored) = roots.add_parsable_certificates(native.certs);
                if added == 0 {
                    return Err(
                        "no system CA certificates could be read: pass --ca FILE (the server's certificate \
                                or its CA) or, for a test server, --insecure"
                            .into(),
                    );
                }
            }
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match (&args.client_cert, &args.client_key) {
        (Some(cert), Some(key)) => {
            let certs = crate::tls::load_certs("client certificate", cert).map_err(|e| e.to_string())?;
            let key_der = crate::tls::load_key(key).map_err(|e| e.to_string())?;
            builder.with_client_auth_cert(certs, key_der).map_err(|e| {
                format!("--client-cert {} with --client-key {}: {e}", cert.display(), key.display())
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `--insecure`: any certificate is accepted, but the handshake signatures are still checked.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
