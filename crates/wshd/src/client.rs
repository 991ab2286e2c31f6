//! `wshd client`: an echo client with the options and output of pywebsocket's
//! `echo_client.py`. It sends each comma-separated message, prints `Send: …` and the reply as
//! `Recv: …`, then closes: when the last message is `Goodbye` it waits for the server's close
//! (`Recv close`, `Send ack`), otherwise it closes itself (`Send close`, `Recv ack`).
//!
//! TLS (`-t`) verifies the server against `--ca FILE` when given, else against the system's
//! CA certificates; `--insecure` accepts any certificate (self-signed test servers).
//!
//! The opening handshake is written and checked here (RFC 6455 §4.1); the frames are the
//! server's own codec in the client role, so `--use-permessage-deflate` exchanges compressed
//! messages when the server accepts the offer.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use clap::Args;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use wshd_sdk::CloseCode;

use crate::http::handshake::accept_key;
use crate::ws::codec::deflate::{self, Agreement};
use crate::ws::codec::{DataKind, Event, Limits, Role};
use crate::ws::transport::{ReadStatus, WsIo};

/// The message that asks the echo handler to close the connection.
const GOODBYE: &str = "Goodbye";

/// The longest response head accepted from the server.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// The most header lines accepted in the server's response.
const MAX_RESPONSE_HEADERS: usize = 64;

/// Limits on what the server sends (the server's own defaults).
const LIMITS: Limits = Limits { max_message: 16 << 20, max_frame: 16 << 20 };

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
    /// Offer permessage-deflate, print whether the server accepted it, and if so exchange
    /// compressed messages.
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
    if !args.tls && (args.ca.is_some() || args.insecure || args.client_cert.is_some()) {
        return Err("--ca, --insecure and --client-cert need -t/--tls".into());
    }
    let target = Target::new(args)?;
    let tcp = within(
        limit,
        &format!("cannot connect to {}", target.authority),
        TcpStream::connect((target.host.as_str(), target.port)),
    )
    .await?;
    let _ = tcp.set_nodelay(true);
    if !args.tls {
        return exchange(tcp, &target, args, limit).await;
    }
    let connector = tokio_rustls::TlsConnector::from(client_config(args)?);
    let host = &target.host;
    let name = ServerName::try_from(host.clone()).map_err(|e| format!("-s/--server-host {host}: {e}"))?;
    let stream = within(limit, "TLS handshake failed", connector.connect(name, tcp)).await?;
    exchange(stream, &target, args, limit).await
}

/// Where to connect, and what the opening handshake asks for.
#[derive(Debug)]
struct Target {
    /// The host to connect to (an IPv6 address without brackets).
    host: String,
    port: u16,
    /// `host:port`, bracketed for IPv6.
    authority: String,
    /// The `Host` header: the port only when it is not the scheme's default.
    host_header: String,
    /// `ws://…` or `wss://…`, for messages.
    url: String,
    resource: String,
    origin: Option<String>,
    offer_deflate: bool,
}

impl Target {
    fn new(args: &ClientArgs) -> Result<Target, String> {
        let resource = &args.resource;
        if !resource.starts_with('/') {
            return Err(format!("-r/--resource {resource}: must start with `/`"));
        }
        if !resource.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "-r/--resource {resource:?}: must be ASCII without spaces or control characters"
            ));
        }
        let host = args.server_host.trim_start_matches('[').trim_end_matches(']').to_owned();
        if host.is_empty() || host.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'/') {
            return Err(format!("-s/--server-host {:?}: not a host name or address", args.server_host));
        }
        if let Some(origin) = &args.origin
            && !origin.bytes().all(|b| b == b'\t' || b == b' ' || b.is_ascii_graphic())
        {
            return Err(format!("-o/--origin {origin:?}: not a header value"));
        }
        let default_port = if args.tls { 443 } else { 80 };
        let port = args.port.unwrap_or(default_port);
        let url_host = if host.contains(':') { format!("[{host}]") } else { host.clone() };
        let authority = format!("{url_host}:{port}");
        Ok(Target {
            host_header: if port == default_port { url_host } else { authority.clone() },
            url: format!("{}://{authority}{resource}", if args.tls { "wss" } else { "ws" }),
            authority,
            host,
            port,
            resource: resource.clone(),
            origin: args.origin.clone(),
            offer_deflate: args.use_permessage_deflate,
        })
    }

    /// The handshake request with this `Sec-WebSocket-Key`.
    fn request(&self, key: &str) -> String {
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
            self.resource, self.host_header
        );
        if let Some(origin) = &self.origin {
            request.push_str(&format!("Origin: {origin}\r\n"));
        }
        if self.offer_deflate {
            request.push_str(&format!("Sec-WebSocket-Extensions: {}\r\n", deflate::CLIENT_OFFER));
        }
        request.push_str("\r\n");
        request
    }
}

async fn exchange<S>(stream: S, target: &Target, args: &ClientArgs, limit: Duration) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let what = format!("WebSocket handshake with {}", target.url);
    let (ws, deflate) = within(limit, &what, handshake(stream, target)).await?;
    if args.use_permessage_deflate {
        match &deflate {
            Some(agreement) => println!("permessage-deflate: accepted ({})", agreement.response),
            None => println!("permessage-deflate: not accepted"),
        }
    }
    let mut client =
        Client { ws, inbox: VecDeque::new(), read_done: false, close_sent: false, failure: None, limit };
    let messages: Vec<&str> = args.message.split(',').collect();
    for message in &messages {
        client.send(message).await?;
        if !args.quiet {
            println!("Send: {message}");
        }
        match client.receive().await? {
            Some(Event::Text(text)) if !args.quiet => println!("Recv: {}", String::from_utf8_lossy(&text)),
            Some(Event::Binary(data)) if !args.quiet => {
                println!("Recv: <{} bytes of binary data>", data.len())
            }
            Some(Event::Close(code, reason)) => {
                let reason = String::from_utf8_lossy(&reason);
                return Err(format!(
                    "the server closed the connection instead of answering: {} {reason}",
                    code.as_u16()
                ));
            }
            None => return Err("the server ended the connection instead of answering".into()),
            Some(_) => {}
        }
    }
    if messages.last() == Some(&GOODBYE)
        && let Some(Event::Close(..)) = client.receive().await?
    {
        println!("Recv close");
        // The close reply (the ack) was queued when the close arrived: send it.
        let _ = client.flush("send ack").await;
        println!("Send ack");
        return Ok(());
    }
    client.close().await
}

/// The opening handshake (RFC 6455 §4.1) over `stream`: the connection in the client role,
/// and the permessage-deflate agreement when the server accepted our offer.
async fn handshake<S>(stream: S, target: &Target) -> Result<(WsIo<BufReader<S>>, Option<Agreement>), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut key = [0u8; 16];
    getrandom::fill(&mut key).map_err(|e| format!("no random bytes for Sec-WebSocket-Key: {e}"))?;
    let key = base64::engine::general_purpose::STANDARD.encode(key);
    // The reader keeps what the server sent after the response head (its first frames) for
    // the codec; writes pass straight through it.
    let mut stream = BufReader::new(stream);
    let request = target.request(&key);
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("cannot send the request: {e}"))?;
    stream.flush().await.map_err(|e| format!("cannot send the request: {e}"))?;
    let head = read_response_head(&mut stream).await?;
    let deflate = head.check(&key, target.offer_deflate)?;
    Ok((WsIo::new(stream, Role::Client, LIMITS, deflate.clone()), deflate))
}

/// The server's response to the handshake request.
#[derive(Debug)]
struct ResponseHead {
    status: u16,
    reason: String,
    /// Header lines: lower-case name, value.
    headers: Vec<(String, Vec<u8>)>,
}

/// Reads the response head, leaving whatever follows it in `stream`'s buffer.
async fn read_response_head<S: AsyncRead + Unpin>(stream: &mut BufReader<S>) -> Result<ResponseHead, String> {
    let mut head = Vec::new();
    loop {
        let available = stream.fill_buf().await.map_err(|e| format!("cannot read the response: {e}"))?;
        if available.is_empty() {
            return Err("the server closed the connection without answering the handshake".into());
        }
        let before = head.len();
        let take = available.len().min(MAX_RESPONSE_HEAD + 1 - before);
        head.extend_from_slice(&available[..take]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&head) {
            Ok(httparse::Status::Complete(len)) if len <= MAX_RESPONSE_HEAD => {
                stream.consume(len - before);
                return Ok(ResponseHead {
                    status: response.code.unwrap_or_default(),
                    reason: response.reason.unwrap_or_default().to_owned(),
                    headers: response
                        .headers
                        .iter()
                        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
                        .collect(),
                });
            }
            Ok(_) if head.len() > MAX_RESPONSE_HEAD => {
                return Err(format!("the response head is longer than {MAX_RESPONSE_HEAD} bytes"));
            }
            Ok(_) => stream.consume(take),
            Err(e) => return Err(format!("the server's answer is not a valid HTTP response: {e}")),
        }
    }
}

impl ResponseHead {
    /// The values of a header (`name` in lower case).
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> {
        self.headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    /// Whether a comma-separated header has `token` (ASCII case-insensitive).
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.values(name)
            .flat_map(|v| v.split(|b| *b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    }

    /// Checks a response to our request with `key` (RFC 6455 §4.1, the client's checks);
    /// returns the permessage-deflate agreement.
    fn check(&self, key: &str, offered_deflate: bool) -> Result<Option<Agreement>, String> {
        if self.status != 101 {
            return Err(format!(
                "the server refused the WebSocket handshake: HTTP {} {}",
                self.status, self.reason
            ));
        }
        if !self.has_token("upgrade", "websocket") {
            return Err("the server's 101 response lacks `Upgrade: websocket`".into());
        }
        if !self.has_token("connection", "upgrade") {
            return Err("the server's 101 response lacks `Connection: Upgrade`".into());
        }
        let expected = accept_key(key.as_bytes());
        let accepts: Vec<&[u8]> = self.values("sec-websocket-accept").collect();
        if accepts != [expected.as_bytes()] {
            let got: Vec<_> = accepts.iter().map(|v| String::from_utf8_lossy(v)).collect();
            return Err(format!(
                "the server's Sec-WebSocket-Accept is {got:?}, not {expected:?}: it did not answer this request"
            ));
        }
        if self.values("sec-websocket-protocol").any(|v| !v.trim_ascii().is_empty()) {
            return Err("the server chose a subprotocol, but none was offered".into());
        }
        let extensions = self
            .values("sec-websocket-extensions")
            .map(std::str::from_utf8)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| "the server's Sec-WebSocket-Extensions is not UTF-8".to_owned())?;
        if offered_deflate {
            return deflate::parse_response(&extensions)
                .map_err(|e| format!("the server's Sec-WebSocket-Extensions is refused: {e}"));
        }
        match extensions.iter().map(|e| e.trim()).find(|e| !e.is_empty()) {
            Some(e) => Err(format!("the server accepted extension `{e}`, but none was offered")),
            None => Ok(None),
        }
    }
}

/// The open connection: the codec in the client role, the events it delivered that were not
/// taken yet, and the client's side of the closing handshake.
struct Client<S> {
    ws: WsIo<S>,
    inbox: VecDeque<Event>,
    /// Nothing more will be read (the server's close, the end of the stream, a failure).
    read_done: bool,
    /// Our close frame (or the answer to the server's) is queued: nothing more may be sent.
    close_sent: bool,
    /// The server broke the protocol: the error to report once the items before it are
    /// taken.
    failure: Option<String>,
    /// `-k`: for each send and each reply.
    limit: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Sends a text message.
    async fn send(&mut self, text: &str) -> Result<(), String> {
        let closing = || "send: the connection is closing".to_owned();
        if self.close_sent {
            return Err(closing());
        }
        self.ws.encoder().queue_data(DataKind::Text, true, text.as_bytes()).map_err(|_| closing())?;
        self.flush("send").await
    }

    /// Writes what is queued.
    async fn flush(&mut self, what: &str) -> Result<(), String> {
        let ws = &mut self.ws;
        within(self.limit, what, poll_fn(|cx| ws.poll_flush(cx))).await
    }

    /// Sends a close and waits for the server's answer.
    async fn close(&mut self) -> Result<(), String> {
        println!("Send close");
        if !self.close_sent {
            self.ws.encoder().queue_close(Some(CloseCode::NORMAL), b"");
            self.close_sent = true;
        }
        self.flush("send close").await?;
        loop {
            match self.receive().await? {
                Some(Event::Close(..)) => break,
                Some(_) => continue,
                None => return Err("the server ended the connection without answering the close".into()),
            }
        }
        println!("Recv ack");
        Ok(())
    }

    /// The next data message or close (pings are answered; pings and pongs are not
    /// returned); `None` when the connection ended.
    async fn receive(&mut self) -> Result<Option<Event>, String> {
        let limit = self.limit;
        tokio::time::timeout(limit, self.next())
            .await
            .map_err(|_| format!("no message from the server within {limit:?} (-k/--socket-timeout)"))?
    }

    async fn next(&mut self) -> Result<Option<Event>, String> {
        loop {
            match self.inbox.pop_front() {
                Some(Event::Ping(_) | Event::Pong(_)) => continue,
                Some(item) => return Ok(Some(item)),
                None if self.read_done => return self.failure.take().map_or(Ok(None), Err),
                None => {}
            }
            // Send the pongs queued before waiting for more.
            let ws = &mut self.ws;
            poll_fn(|cx| ws.poll_flush(cx)).await.map_err(|e| format!("send: {e}"))?;
            let (inbox, close_sent) = (&mut self.inbox, &mut self.close_sent);
            let mut failure = None;
            let status = poll_fn(|cx| {
                ws.poll_read(cx, |encoder, event| {
                    match &event {
                        // After a failure nothing is answered: our close goes out below.
                        _ if failure.is_some() => {}
                        Event::Ping(payload) if !*close_sent => encoder.queue_pong(payload.clone()),
                        Event::Close(code, reason) if !*close_sent => {
                            // The answer (the ack): the server's code and reason echoed.
                            let code = (*code != CloseCode::NO_STATUS).then_some(*code);
                            encoder.queue_close(code, if code.is_some() { reason } else { b"" });
                            *close_sent = true;
                        }
                        _ => {}
                    }
                    match event {
                        Event::Failure(f) => failure = failure.or(Some(f)),
                        event => inbox.push_back(event),
                    }
                })
            })
            .await;
            if status == ReadStatus::Ended {
                self.read_done = true;
            }
            if let Some(failure) = failure {
                // Fail the connection (§7.1.7): our close with the failure's code, then no
                // more reading; what arrived before the failure is still returned.
                if !self.close_sent {
                    self.ws.encoder().queue_close(Some(failure.code), failure.reason.as_bytes());
                    self.close_sent = true;
                }
                let ws = &mut self.ws;
                let _ = poll_fn(|cx| ws.poll_flush(cx)).await;
                self.read_done = true;
                self.failure = Some(format!(
                    "the server broke the WebSocket protocol ({}): closed the connection with {}",
                    failure.reason,
                    failure.code.as_u16()
                ));
            }
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
