//! WebSockets over HTTP/2 streams (RFC 8441) for the tests: a TLS connection with ALPN `h2`
//! driven by the `h2` crate, extended CONNECT requests on it, and RFC 6455 frames over each
//! stream's DATA (encoded by [`crate::encode_frame`], parsed by [`parse_frame`]).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use h2::client::SendRequest;
use h2::{Reason, RecvStream, SendStream};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::{RawFrame, WAIT, encode_frame};

/// A client TLS configuration trusting `root`, offering `alpn` in order.
pub fn tls_client(root: &CertificateDer<'static>, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(root.clone()).unwrap_or_else(|e| panic!("root certificate: {e}"));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| panic!("{e}"))
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

/// Connects over TLS to `localhost` at `addr`; returns the stream and the ALPN protocol.
pub async fn tls_connect(
    addr: SocketAddr,
    connector: &TlsConnector,
) -> (tokio_rustls::client::TlsStream<TcpStream>, Option<Vec<u8>>) {
    let tcp = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect: {e}"));
    // As browsers do: without it, Nagle holds the short tail of a message split over two
    // DATA frames until the server's delayed ACK (~40 ms a round trip).
    tcp.set_nodelay(true).unwrap_or_else(|e| panic!("TCP_NODELAY: {e}"));
    let name = ServerName::try_from("localhost").unwrap_or_else(|e| panic!("{e}"));
    let tls = tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .unwrap_or_else(|_| panic!("TLS handshake timed out"))
        .unwrap_or_else(|e| panic!("TLS handshake: {e}"));
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    (tls, alpn)
}

/// One HTTP/2 connection; its driver runs on a task until the connection ends.
#[derive(Debug)]
pub struct H2Client {
    opener: H2Opener,
    driver: tokio::task::JoinHandle<Result<(), h2::Error>>,
}

/// Opens streams on an [`H2Client`]'s connection; clones share the connection, so several
/// tasks can open streams on it at once.
#[derive(Clone, Debug)]
pub struct H2Opener {
    send: SendRequest<Bytes>,
    authority: String,
}

impl H2Opener {
    /// Sends a request (`method`, `path`, extra headers, `:protocol` when given) and waits
    /// for the response head; `Err` when the server reset the stream.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        protocol: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<H2Response, h2::Error> {
        let uri = format!("https://{}{path}", self.authority);
        let mut builder = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut req = builder.body(()).unwrap_or_else(|e| panic!("request: {e}"));
        if let Some(protocol) = protocol {
            req.extensions_mut().insert(h2::ext::Protocol::from(protocol));
        }
        let ready = tokio::time::timeout(WAIT, self.send.clone().ready())
            .await
            .unwrap_or_else(|_| panic!("h2 not ready for a new stream"))?;
        self.send = ready;
        let end_of_stream = method != "CONNECT";
        let (response, send) = self.send.send_request(req, end_of_stream)?;
        let response =
            tokio::time::timeout(WAIT, response).await.unwrap_or_else(|_| panic!("no response"))?;
        let (parts, recv) = response.into_parts();
        Ok(H2Response { status: parts.status.as_u16(), headers: parts.headers, send, recv })
    }

    /// Opens a WebSocket on a new stream: extended CONNECT with `:protocol websocket`,
    /// version 13 and `headers`. The response (a WebSocket when its status is 200).
    pub async fn websocket(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<H2Response, h2::Error> {
        let mut all = vec![("sec-websocket-version", "13")];
        all.extend_from_slice(headers);
        self.request("CONNECT", path, Some("websocket"), &all).await
    }
}

/// The answer to a request on an [`H2Client`]: status, headers and the stream.
#[derive(Debug)]
pub struct H2Response {
    /// `:status`.
    pub status: u16,
    /// Response headers.
    pub headers: http::HeaderMap,
    /// The request body's stream (a WebSocket's client-to-server direction).
    pub send: SendStream<Bytes>,
    /// The response body's stream.
    pub recv: RecvStream,
}

impl H2Client {
    /// Connects with ALPN `h2` and waits (bounded) for the server's SETTINGS to enable
    /// extended CONNECT; panics if the server does not speak h2 or never enables it.
    pub async fn connect(addr: SocketAddr, root: &CertificateDer<'static>) -> H2Client {
        let (tls, alpn) = tls_connect(addr, &tls_client(root, &[b"h2", b"http/1.1"])).await;
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]), "the server must choose h2 by ALPN");
        H2Client::over(tls, addr).await
    }

    /// Connects over plain TCP with prior knowledge (h2c: the preface first, no upgrade).
    pub async fn connect_cleartext(addr: SocketAddr) -> H2Client {
        let tcp = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect: {e}"));
        H2Client::over(tcp, addr).await
    }

    async fn over<T>(io: T, addr: SocketAddr) -> H2Client
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let handshake = tokio::time::timeout(WAIT, h2::client::handshake(io));
        let (send, conn) = handshake
            .await
            .unwrap_or_else(|_| panic!("h2 handshake timed out"))
            .unwrap_or_else(|e| panic!("h2 handshake: {e}"));
        let driver = tokio::spawn(conn);
        let deadline = tokio::time::Instant::now() + WAIT;
        let send = tokio::time::timeout(WAIT, send.ready())
            .await
            .unwrap_or_else(|_| panic!("h2 not ready"))
            .unwrap_or_else(|e| panic!("h2 ready: {e}"));
        while !send.is_extended_connect_protocol_enabled() {
            assert!(tokio::time::Instant::now() < deadline, "SETTINGS_ENABLE_CONNECT_PROTOCOL never arrived");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let opener = H2Opener { send, authority: format!("localhost:{}", addr.port()) };
        H2Client { opener, driver }
    }

    /// Whether the server advertised `SETTINGS_ENABLE_CONNECT_PROTOCOL = 1`.
    pub fn connect_protocol_enabled(&self) -> bool {
        self.opener.send.is_extended_connect_protocol_enabled()
    }

    /// Sends a request (`method`, `path`, extra headers, `:protocol` when given) and waits
    /// for the response head; `Err` when the server reset the stream.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        protocol: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<H2Response, h2::Error> {
        self.opener.request(method, path, protocol, headers).await
    }

    /// Opens a WebSocket on a new stream: extended CONNECT with `:protocol websocket`,
    /// version 13 and `headers`. The response (a WebSocket when its status is 200).
    pub async fn websocket(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<H2Response, h2::Error> {
        self.opener.websocket(path, headers).await
    }

    /// A handle that opens streams on this connection from another task.
    pub fn opener(&self) -> H2Opener {
        self.opener.clone()
    }

    /// Whether the connection's driver ended (the server closed the connection).
    pub fn is_closed(&self) -> bool {
        self.driver.is_finished()
    }

    /// Waits (bounded) for the connection to end; its result (`GOAWAY` reasons show here).
    pub async fn closed(self) -> Result<(), String> {
        match tokio::time::timeout(WAIT, self.driver).await {
            Ok(Ok(result)) => result.map_err(|e| e.to_string()),
            Ok(Err(e)) => Err(format!("driver: {e}")),
            Err(_) => Err("the connection did not end in time".to_owned()),
        }
    }
}

/// A WebSocket on one HTTP/2 stream.
#[derive(Debug)]
pub struct H2WebSocket {
    /// The response headers of the extended CONNECT.
    pub headers: http::HeaderMap,
    send: SendStream<Bytes>,
    recv: RecvStream,
    buffered: Vec<u8>,
}

impl H2WebSocket {
    /// The WebSocket of an accepted extended CONNECT (panics on another status).
    pub fn accepted(response: H2Response) -> H2WebSocket {
        assert_eq!(response.status, 200, "extended CONNECT refused: {:?}", response.headers);
        H2WebSocket {
            headers: response.headers,
            send: response.send,
            recv: response.recv,
            buffered: Vec::new(),
        }
    }

    /// Sends one masked frame.
    pub fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let frame = encode_frame(fin, opcode, payload, true);
        self.send.send_data(Bytes::from(frame), false).unwrap_or_else(|e| panic!("send frame: {e}"));
    }

    /// Sends one masked final frame whose first byte is `first` (FIN, RSV bits, opcode): a
    /// compressed message sets RSV1.
    pub fn send_frame_raw(&mut self, first: u8, payload: &[u8]) {
        let mut frame = encode_frame(true, first & 0x0f, payload, true);
        frame[0] = first;
        self.send.send_data(Bytes::from(frame), false).unwrap_or_else(|e| panic!("send frame: {e}"));
    }

    /// Sends raw bytes on the stream (part of a frame, say).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.send.send_data(Bytes::copy_from_slice(bytes), false).unwrap_or_else(|e| panic!("send: {e}"));
    }

    /// Resets the stream (`RST_STREAM` with `CANCEL`): an abrupt close.
    pub fn reset(&mut self) {
        self.send.send_reset(Reason::CANCEL);
    }

    /// Reads one server frame; `None` when the stream ended first.
    pub async fn read_frame(&mut self) -> Option<RawFrame> {
        loop {
            if let Some((frame, used)) = parse_frame(&self.buffered) {
                self.buffered.drain(..used);
                return Some(frame);
            }
            let data = tokio::time::timeout(WAIT, self.recv.data())
                .await
                .unwrap_or_else(|_| panic!("no data on the stream within {WAIT:?}"))?;
            let data = data.ok()?;
            let _ = self.recv.flow_control().release_capacity(data.len());
            self.buffered.extend_from_slice(&data);
        }
    }

    /// Reads one whole message (continuations joined, pings skipped): its opcode and
    /// payload; a close frame is returned as opcode 8.
    pub async fn read_message(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut message: Option<(u8, Vec<u8>)> = None;
        loop {
            let frame = self.read_frame().await?;
            match frame.opcode {
                0x8 => return Some((0x8, frame.payload)),
                0x9 | 0xA => continue,
                0x0 => message.as_mut()?.1.extend_from_slice(&frame.payload),
                op => message = Some((op, frame.payload)),
            }
            if frame.fin {
                return message;
            }
        }
    }

    /// Sends a text message and returns the reply's text.
    pub async fn ask(&mut self, text: &str) -> String {
        self.send_frame(true, 0x1, text.as_bytes());
        match self.read_message().await {
            Some((0x1, payload)) => String::from_utf8(payload).unwrap_or_else(|e| panic!("utf-8: {e}")),
            other => panic!("expected a text reply, got {other:?}"),
        }
    }

    /// Sends a close frame with `code` and waits for the server's; returns its code.
    pub async fn close(&mut self, code: u16) -> Option<u16> {
        self.send_frame(true, 0x8, &code.to_be_bytes());
        loop {
            let frame = self.read_frame().await?;
            if frame.opcode == 0x8 {
                return Some(frame.close_code());
            }
        }
    }

    /// Whether the server ended the stream (after its close frame, if any).
    pub async fn stream_ended(&mut self) -> bool {
        loop {
            match tokio::time::timeout(WAIT, self.recv.data()).await {
                Ok(None) | Ok(Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// Parses one server frame from the front of `buf` (unmasked, as servers send them): the
/// frame and the bytes it took, or `None` when `buf` holds less than a frame.
pub fn parse_frame(buf: &[u8]) -> Option<(RawFrame, usize)> {
    let (b0, b1) = (*buf.first()?, *buf.get(1)?);
    assert_eq!(b1 & 0x80, 0, "server frames must not be masked");
    let (len, header) = match b1 & 0x7f {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(bytes) as usize, 10)
        }
        n => (n as usize, 2),
    };
    let payload = buf.get(header..header + len)?.to_vec();
    Some((RawFrame { fin: b0 & 0x80 != 0, rsv1: b0 & 0x40 != 0, opcode: b0 & 0x0f, payload }, header + len))
}

/// A control stream for attack tests: `/echo` over its own HTTP/2 connection (TLS, trusting
/// `root`), probed by a [`ControlProbe`](crate::ControlProbe) on its own thread.
pub struct H2Echo {
    _client: H2Client,
    ws: H2WebSocket,
}

impl H2Echo {
    /// Starts a [`ControlProbe`](crate::ControlProbe) round-tripping over an HTTP/2 stream
    /// to `/echo` every `every`.
    pub async fn probe(
        addr: SocketAddr,
        root: &CertificateDer<'static>,
        every: std::time::Duration,
    ) -> crate::ControlProbe {
        let root = root.clone();
        crate::ControlProbe::start_with(move || H2Echo::open(addr, root), every).await
    }

    async fn open(addr: SocketAddr, root: CertificateDer<'static>) -> H2Echo {
        let mut client = H2Client::connect(addr, &root).await;
        let response = client.websocket("/echo", &[]).await.unwrap_or_else(|e| panic!("probe CONNECT: {e}"));
        H2Echo { ws: H2WebSocket::accepted(response), _client: client }
    }
}

impl crate::attack::Echo for H2Echo {
    async fn echo(&mut self, text: String) -> String {
        self.ws.ask(&text).await
    }
}
