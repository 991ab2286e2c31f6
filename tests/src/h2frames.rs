//! A tiny HTTP/2 frame writer and reader for hostile input (RFC 9113 §4, §6): the connection
//! preface, HEADERS/CONTINUATION with an uncompressed HPACK block (literal fields, no Huffman,
//! RFC 7541 §6.2.2), RST_STREAM, SETTINGS, PING, GOAWAY parsing. Only what the attack tests
//! need; a well-behaved client is `h2ws`.

use std::net::SocketAddr;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::h2ws::{tls_client, tls_connect};

/// Frame types.
pub mod kind {
    /// DATA.
    pub const DATA: u8 = 0x0;
    /// HEADERS.
    pub const HEADERS: u8 = 0x1;
    /// RST_STREAM.
    pub const RST_STREAM: u8 = 0x3;
    /// SETTINGS.
    pub const SETTINGS: u8 = 0x4;
    /// PING.
    pub const PING: u8 = 0x6;
    /// GOAWAY.
    pub const GOAWAY: u8 = 0x7;
    /// WINDOW_UPDATE.
    pub const WINDOW_UPDATE: u8 = 0x8;
    /// CONTINUATION.
    pub const CONTINUATION: u8 = 0x9;
}

/// `END_STREAM` (DATA, HEADERS).
pub const END_STREAM: u8 = 0x1;
/// `END_HEADERS` (HEADERS, CONTINUATION).
pub const END_HEADERS: u8 = 0x4;
/// `ACK` (SETTINGS, PING).
pub const ACK: u8 = 0x1;

/// The client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One frame's bytes.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX).to_be_bytes();
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with an `n`-bit prefix whose high bits are `first` (RFC 7541 §5.1).
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// An HPACK block of literal fields without indexing, new names, no Huffman.
pub fn hpack(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_int(&mut out, 0, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, 0, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// The fields of an extended CONNECT for a WebSocket at `path`.
pub fn websocket_fields(path: &str) -> Vec<(&str, &str)> {
    vec![
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "https"),
        (":path", path),
        (":authority", "localhost"),
        ("sec-websocket-version", "13"),
    ]
}

/// A frame as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Type.
    pub kind: u8,
    /// Flags.
    pub flags: u8,
    /// Stream id.
    pub stream: u32,
    /// Payload.
    pub payload: Vec<u8>,
}

impl Frame {
    /// A GOAWAY's or RST_STREAM's error code.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            kind::GOAWAY => 4,
            kind::RST_STREAM => 0,
            _ => return None,
        };
        let bytes: [u8; 4] = self.payload.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_be_bytes(bytes))
    }
}

/// A raw HTTP/2 connection over TLS (ALPN `h2`), preface and empty SETTINGS sent.
#[derive(Debug)]
pub struct RawH2 {
    tls: TlsStream<TcpStream>,
    buffered: Vec<u8>,
}

/// What a connection got from the server until it ended (or the wait did).
#[derive(Debug, Default, Clone)]
pub struct Received {
    /// HEADERS frames (responses).
    pub headers: usize,
    /// RST_STREAM frames, with their codes.
    pub resets: Vec<u32>,
    /// SETTINGS ACKs.
    pub settings_acks: usize,
    /// PING ACKs.
    pub ping_acks: usize,
    /// The GOAWAY's error code, if one came.
    pub goaway: Option<u32>,
    /// The connection ended (EOF or error).
    pub closed: bool,
}

impl RawH2 {
    /// Connects, checks ALPN `h2`, sends the preface and an empty SETTINGS.
    pub async fn connect(addr: SocketAddr, root: &CertificateDer<'static>) -> RawH2 {
        let (tls, alpn) = tls_connect(addr, &tls_client(root, &[b"h2"])).await;
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]), "ALPN h2");
        let mut raw = RawH2 { tls, buffered: Vec::new() };
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(kind::SETTINGS, 0, 0, &[]));
        raw.write(&hello).await.unwrap_or_else(|e| panic!("preface: {e}"));
        raw
    }

    /// Writes bytes; `Err` when the server closed or stopped reading for 2 s (its flow
    /// control, or TCP back-pressure, holding the attacker).
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match tokio::time::timeout(Duration::from_secs(2), self.tls.write_all(bytes)).await {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the server stopped reading")),
        }
    }

    /// Reads one frame within `wait`: `Err(true)` when the connection ended (EOF or an
    /// error), `Err(false)` when nothing came in time.
    pub async fn read_frame(&mut self, wait: Duration) -> Result<Frame, bool> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if self.buffered.len() >= 9 {
                let len =
                    u32::from_be_bytes([0, self.buffered[0], self.buffered[1], self.buffered[2]]) as usize;
                if self.buffered.len() >= 9 + len {
                    let head: Vec<u8> = self.buffered.drain(..9 + len).collect();
                    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
                    return Ok(Frame { kind: head[3], flags: head[4], stream, payload: head[9..].to_vec() });
                }
            }
            let mut chunk = [0u8; 16384];
            match tokio::time::timeout_at(deadline, self.tls.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buffered.extend_from_slice(&chunk[..n]),
                Ok(_) => return Err(true),
                Err(_) => return Err(false),
            }
        }
    }

    /// Reads frames until the connection ends or `quiet` passes with nothing read.
    pub async fn drain(&mut self, quiet: Duration) -> Received {
        let mut got = Received::default();
        loop {
            let frame = match self.read_frame(quiet).await {
                Ok(frame) => frame,
                Err(closed) => {
                    got.closed = closed;
                    return got;
                }
            };
            match frame.kind {
                kind::HEADERS => got.headers += 1,
                kind::RST_STREAM => got.resets.extend(frame.error_code()),
                kind::SETTINGS if frame.flags & ACK != 0 => got.settings_acks += 1,
                kind::PING if frame.flags & ACK != 0 => got.ping_acks += 1,
                kind::GOAWAY => got.goaway = frame.error_code(),
                _ => {}
            }
        }
    }
}
