//! A minimal WebSocket client (RFC 6455, with RFC 7692 permessage-deflate) over tokio's
//! `TcpStream`, used by the load generator and the reload benchmarks.
//!
//! The connection is split into a [`Reader`] and a [`Writer`] so a connection can keep several
//! messages in flight (one task writes while another reads). Everything is written for speed
//! of the client, not generality: one reused receive buffer, one reused send buffer, masking
//! eight bytes at a time.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

use crate::BoxError;

/// The RFC 6455 sample key, and the accept value a correct server answers it with (so the
/// handshake is verified without a SHA-1 here).
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The trailer a sync flush ends with: stripped on send and restored on receive (RFC 7692
/// §7.2.1, §7.2.2).
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Opcodes.
pub(crate) const OP_TEXT: u8 = 0x1;
pub(crate) const OP_BINARY: u8 = 0x2;
pub(crate) const OP_CLOSE: u8 = 0x8;

/// Where to connect.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    /// `host[:port]` for the Host header.
    pub(crate) authority: String,
    pub(crate) path: String,
}

impl Target {
    /// Parses a `ws://host[:port]/path` URL.
    pub(crate) fn parse(url: &str) -> Result<Target, BoxError> {
        let rest =
            url.strip_prefix("ws://").ok_or_else(|| format!("{url}: only ws:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let with_port = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("{url}: cannot resolve {with_port}: {e}"))?
            .next()
            .ok_or_else(|| format!("{url}: no address for {with_port}"))?;
        Ok(Target { addr, authority: authority.to_owned(), path: path.to_owned() })
    }
}

/// Connects (from `source` when given), with `TCP_NODELAY`.
pub(crate) async fn connect(target: &Target, source: Option<IpAddr>) -> Result<TcpStream, BoxError> {
    let socket = if target.addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0)).map_err(|e| format!("bind {ip}: {e}"))?;
    }
    let stream = socket.connect(target.addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// What the server agreed to for permessage-deflate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeflateAgreement {
    /// The LZ77 window our compressor may use (`client_max_window_bits`, default 15).
    pub(crate) client_window_bits: u8,
    /// We must reset our compressor after every message.
    pub(crate) client_no_context_takeover: bool,
    /// The server resets its compressor after every message.
    pub(crate) server_no_context_takeover: bool,
}

/// Parses the server's `Sec-WebSocket-Extensions` answer (only permessage-deflate is known).
fn parse_extensions(value: &str) -> Result<Option<DeflateAgreement>, BoxError> {
    let mut agreement: Option<DeflateAgreement> = None;
    for extension in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let mut params = extension.split(';').map(str::trim);
        let name = params.next().unwrap_or_default();
        if name != "permessage-deflate" {
            return Err(format!("the server accepted an extension we did not offer: {extension:?}").into());
        }
        if agreement.is_some() {
            return Err("the server accepted permessage-deflate twice".into());
        }
        let mut a = DeflateAgreement {
            client_window_bits: 15,
            client_no_context_takeover: false,
            server_no_context_takeover: false,
        };
        for param in params.filter(|p| !p.is_empty()) {
            let (key, value) = match param.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
                None => (param, None),
            };
            match (key, value) {
                ("client_no_context_takeover", None) => a.client_no_context_takeover = true,
                ("server_no_context_takeover", None) => a.server_no_context_takeover = true,
                ("client_max_window_bits", Some(v)) => {
                    a.client_window_bits = v
                        .parse::<u8>()
                        .ok()
                        .filter(|b| (8..=15).contains(b))
                        .ok_or_else(|| format!("bad client_max_window_bits {v:?}"))?;
                }
                ("server_max_window_bits", Some(v)) => {
                    v.parse::<u8>()
                        .ok()
                        .filter(|b| (8..=15).contains(b))
                        .ok_or_else(|| format!("bad server_max_window_bits {v:?}"))?;
                }
                _ => return Err(format!("unexpected permessage-deflate parameter {param:?}").into()),
            }
        }
        agreement = Some(a);
    }
    Ok(agreement)
}

/// Options of one client connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientOptions {
    /// Offer permessage-deflate (`permessage-deflate; client_max_window_bits`).
    pub(crate) offer_deflate: bool,
    /// Compression level of our compressor (0–9).
    pub(crate) deflate_level: u32,
    /// Seed of the masking keys.
    pub(crate) seed: u64,
}

/// An open WebSocket connection, split into halves.
pub(crate) struct WsClient {
    pub(crate) reader: Reader<OwnedReadHalf>,
    pub(crate) writer: Writer<OwnedWriteHalf>,
    /// The negotiated permessage-deflate parameters, if any.
    pub(crate) deflate: Option<DeflateAgreement>,
}

impl WsClient {
    /// Performs the opening handshake on `stream` (bounded by `limit`).
    pub(crate) async fn handshake(
        mut stream: TcpStream,
        target: &Target,
        options: ClientOptions,
        limit: Duration,
    ) -> Result<WsClient, BoxError> {
        let (leftover, deflate) = timeout(limit, http_upgrade(&mut stream, target, options.offer_deflate))
            .await
            .map_err(|_| "handshake timed out")??;
        let (r, w) = stream.into_split();
        let mut reader = Reader::new(r, leftover);
        let mut writer = Writer::new(w, options.seed);
        if let Some(a) = deflate {
            reader.inflater = Some(Decompress::new_with_window_bits(false, 15));
            writer.deflater = Some(Deflater {
                compress: Compress::new_with_window_bits(
                    Compression::new(options.deflate_level.min(9)),
                    false,
                    // zlib cannot produce an 8-bit raw window; 9 is what it uses instead, and a
                    // server limiting us to 8 must accept it only if it inflates with 9+.
                    a.client_window_bits.max(9),
                ),
                no_context_takeover: a.client_no_context_takeover,
            });
        }
        Ok(WsClient { reader, writer, deflate })
    }

    /// Connects and performs the opening handshake.
    pub(crate) async fn open(
        target: &Target,
        source: Option<IpAddr>,
        options: ClientOptions,
        limit: Duration,
    ) -> Result<WsClient, BoxError> {
        let stream = timeout(limit, connect(target, source)).await.map_err(|_| "connect timed out")??;
        WsClient::handshake(stream, target, options, limit).await
    }

    /// The closing handshake: sends 1000, reads until the server's close frame and then until
    /// the server closes the TCP connection (each step bounded by `limit`).
    pub(crate) async fn close(mut self, limit: Duration) -> Result<(), BoxError> {
        timeout(limit, self.writer.send(OP_CLOSE, &1000u16.to_be_bytes()))
            .await
            .map_err(|_| "sending the close frame timed out")??;
        timeout(limit, async {
            loop {
                let (opcode, _) = self.reader.recv().await?;
                if opcode == OP_CLOSE {
                    return Ok::<(), BoxError>(());
                }
            }
        })
        .await
        .map_err(|_| "no close frame from the server")??;
        // The server closes the TCP connection first (RFC 6455 §7.1.1); wait for its FIN.
        timeout(limit, self.reader.wait_eof()).await.map_err(|_| "the server did not close TCP")??;
        // Dropping the halves closes our side (no `shutdown`: the peer has gone already).
        Ok(())
    }
}

/// Sends the upgrade request and reads the response head. Returns the bytes received after
/// the head and the deflate agreement.
async fn http_upgrade(
    stream: &mut TcpStream,
    target: &Target,
    offer_deflate: bool,
) -> Result<(Vec<u8>, Option<DeflateAgreement>), BoxError> {
    let extensions = if offer_deflate {
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    } else {
        ""
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n{extensions}\r\n",
        target.path, target.authority
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = vec![0u8; 2048];
    let mut end = 0;
    let head_end = loop {
        if let Some(i) = buf[..end].windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if end == buf.len() {
            if buf.len() >= 64 << 10 {
                return Err("handshake response too long".into());
            }
            buf.resize(buf.len() * 2, 0);
        }
        let n = stream.read(&mut buf[end..]).await?;
        if n == 0 {
            return Err("connection closed during the handshake".into());
        }
        end += n;
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "handshake response is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("101") {
        return Err(format!("{} answered {status:?}, not 101", target.path).into());
    }
    let mut accepted = false;
    let mut deflate = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("sec-websocket-accept") {
            accepted = value == WS_ACCEPT;
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
            if !offer_deflate {
                return Err(format!("the server accepted an extension we did not offer: {value:?}").into());
            }
            deflate = parse_extensions(value)?;
        }
    }
    if !accepted {
        return Err("wrong or missing Sec-WebSocket-Accept".into());
    }
    Ok((buf[head_end..end].to_vec(), deflate))
}

/// The receiving half: frames, reassembly of fragmented messages, inflation.
///
/// [`Reader::recv`] is cancel-safe: its only await points are reads into the buffer, and all
/// progress (buffered bytes, a partial message) is kept in `self`.
pub(crate) struct Reader<R> {
    io: R,
    /// Received bytes not yet consumed are `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// A message being reassembled or inflated.
    msg: Vec<u8>,
    /// Opcode and RSV1 of the message in `msg` while its fragments arrive.
    partial: Option<(u8, bool)>,
    inflater: Option<Decompress>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    fn new(io: R, leftover: Vec<u8>) -> Reader<R> {
        let mut buf = leftover;
        let end = buf.len();
        buf.resize(64 << 10, 0);
        Reader { io, buf, start: 0, end, msg: Vec::new(), partial: None, inflater: None }
    }

    /// A reader for a plain byte stream (the TCP floor): only [`Reader::recv_exact`] is used.
    pub(crate) fn raw(io: R) -> Reader<R> {
        Reader::new(io, Vec::new())
    }

    /// Makes `buf[start..start + n]` hold at least `n` received bytes.
    async fn fill(&mut self, n: usize) -> Result<(), BoxError> {
        while self.end - self.start < n {
            if self.buf.len() - self.start < n {
                // Not enough room after start: move the unread bytes to the front, and grow.
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
                if self.buf.len() < n {
                    self.buf.resize(n.next_power_of_two(), 0);
                }
            }
            let read = self.io.read(&mut self.buf[self.end..]).await?;
            if read == 0 {
                return Err("connection closed by the server".into());
            }
            self.end += read;
        }
        Ok(())
    }

    /// Reads one frame: (first header byte, payload range in `buf`), consuming it. The range
    /// stays valid until the next call.
    async fn frame(&mut self) -> Result<(u8, Range<usize>), BoxError> {
        self.fill(2).await?;
        let b0 = self.buf[self.start];
        let b1 = self.buf[self.start + 1];
        if b1 & 0x80 != 0 {
            return Err("the server sent a masked frame".into());
        }
        let (header, len) = match b1 & 0x7F {
            126 => {
                self.fill(4).await?;
                let s = self.start;
                (4, usize::from(u16::from_be_bytes([self.buf[s + 2], self.buf[s + 3]])))
            }
            127 => {
                self.fill(10).await?;
                let s = self.start;
                let mut be = [0u8; 8];
                be.copy_from_slice(&self.buf[s + 2..s + 10]);
                (10, usize::try_from(u64::from_be_bytes(be)).map_err(|_| "frame too long")?)
            }
            short => (2, usize::from(short)),
        };
        self.fill(header + len).await?;
        let start = self.start + header;
        self.start = start + len;
        if self.start == self.end {
            // Everything consumed: the next read starts at the front again. The returned range
            // stays valid: nothing is read before the caller is done with it.
            self.start = 0;
            self.end = 0;
        }
        Ok((b0, start..start + len))
    }

    /// Reads the next message: (opcode, payload). Data messages come back whole (reassembled
    /// and inflated); a close frame comes back with opcode [`OP_CLOSE`]; pings and pongs are
    /// skipped (the servers measured here send none).
    pub(crate) async fn recv(&mut self) -> Result<(u8, &[u8]), BoxError> {
        loop {
            let (b0, range) = self.frame().await?;
            let fin = b0 & 0x80 != 0;
            let rsv1 = b0 & 0x40 != 0;
            let opcode = b0 & 0x0F;
            if b0 & 0x30 != 0 {
                return Err(format!("RSV2/RSV3 set in first byte {b0:#04x}").into());
            }
            match opcode {
                OP_CLOSE => return Ok((OP_CLOSE, &self.buf[range])),
                0x9 | 0xA => continue,
                0x0 => {
                    let Some((op, compressed)) = self.partial else {
                        return Err("continuation frame without a message".into());
                    };
                    if rsv1 {
                        return Err("RSV1 on a continuation frame".into());
                    }
                    self.take_payload(compressed, range)?;
                    if fin {
                        self.partial = None;
                        if compressed {
                            self.finish_inflate()?;
                        }
                        return Ok((op, &self.msg));
                    }
                }
                OP_TEXT | OP_BINARY => {
                    if self.partial.is_some() {
                        return Err("new message while a fragmented one is incomplete".into());
                    }
                    if rsv1 && self.inflater.is_none() {
                        return Err("RSV1 set without permessage-deflate".into());
                    }
                    if fin && !rsv1 {
                        // The fast path: the payload is used where it was received.
                        return Ok((opcode, &self.buf[range]));
                    }
                    self.msg.clear();
                    self.take_payload(rsv1, range)?;
                    if fin {
                        self.finish_inflate()?;
                        return Ok((opcode, &self.msg));
                    }
                    self.partial = Some((opcode, rsv1));
                }
                other => return Err(format!("unknown opcode {other:#x}").into()),
            }
        }
    }

    /// Appends a frame's payload to `msg`, inflating it when the message is compressed.
    fn take_payload(&mut self, compressed: bool, range: Range<usize>) -> Result<(), BoxError> {
        if compressed {
            let inflater = self.inflater.as_mut().ok_or("compressed message without deflate")?;
            inflate(inflater, &self.buf[range], &mut self.msg)
        } else {
            self.msg.extend_from_slice(&self.buf[range]);
            Ok(())
        }
    }

    fn finish_inflate(&mut self) -> Result<(), BoxError> {
        let inflater = self.inflater.as_mut().ok_or("compressed message without deflate")?;
        inflate(inflater, &TRAILER, &mut self.msg)
    }

    /// Reads exactly `n` bytes of a plain byte stream (the TCP floor).
    pub(crate) async fn recv_exact(&mut self, n: usize) -> Result<&[u8], BoxError> {
        self.fill(n).await?;
        let range = self.start..self.start + n;
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(&self.buf[range])
    }

    /// Reads until the peer closes the connection; data after the close frame is an error.
    pub(crate) async fn wait_eof(&mut self) -> Result<(), BoxError> {
        let mut scratch = [0u8; 64];
        match self.io.read(&mut scratch).await {
            Ok(0) => Ok(()),
            Ok(_) => Err("data after the close frame".into()),
            // A reset after the close handshake still ends the connection.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Reader<OwnedReadHalf> {
    /// Marks the socket "not readable" without a `read` syscall, when every received byte has
    /// been consumed and the caller knows the peer sends nothing before its next request (one
    /// message in flight). tokio otherwise keeps the socket marked readable after a successful
    /// read, so the next receive would first make a `read` that fails with `WouldBlock`: one
    /// syscall in three per round trip, and the load generator is the busier side on loopback.
    /// Race-free: tokio only clears the readiness it observed, never a newer event.
    pub(crate) fn clear_readiness_if_drained(&self) {
        if self.start == self.end && self.partial.is_none() {
            let stream: &TcpStream = self.io.as_ref();
            let _ = stream.try_io(tokio::io::Interest::READABLE, || {
                Err::<(), _>(std::io::Error::from(std::io::ErrorKind::WouldBlock))
            });
        }
    }
}

/// Inflates all of `input` into `out` (a sync-flushed raw deflate piece).
fn inflate(d: &mut Decompress, input: &[u8], out: &mut Vec<u8>) -> Result<(), BoxError> {
    let start_in = d.total_in();
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(4096));
        }
        let consumed = (d.total_in() - start_in) as usize;
        let before_out = out.len();
        let status = d
            .decompress_vec(&input[consumed..], out, FlushDecompress::Sync)
            .map_err(|e| format!("inflate: {e}"))?;
        let now_consumed = (d.total_in() - start_in) as usize;
        if status == Status::StreamEnd {
            // A final block ends this message's stream; the next message starts a new one.
            d.reset(false);
            return Ok(());
        }
        if now_consumed == input.len() && out.len() < out.capacity() {
            return Ok(());
        }
        if now_consumed == consumed && out.len() == before_out {
            return Err("inflate made no progress (corrupt stream)".into());
        }
    }
}

/// Our compressor.
struct Deflater {
    compress: Compress,
    no_context_takeover: bool,
}

/// The sending half: masks frames (and compresses data messages when deflate was agreed).
pub(crate) struct Writer<W> {
    io: W,
    /// The frame being sent (reused).
    wbuf: Vec<u8>,
    /// The compressed payload (reused).
    zbuf: Vec<u8>,
    /// xorshift state for masking keys.
    rng: u64,
    deflater: Option<Deflater>,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    fn new(io: W, seed: u64) -> Writer<W> {
        Writer {
            io,
            wbuf: Vec::new(),
            zbuf: Vec::new(),
            rng: 0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_add(1).wrapping_mul(0xBF58_476D_1CE4_E5B9),
            deflater: None,
        }
    }

    /// A writer for a plain byte stream (the TCP floor): only [`Writer::send_raw`] is used.
    pub(crate) fn raw(io: W) -> Writer<W> {
        Writer::new(io, 0)
    }

    /// Sends one unfragmented masked frame; data frames are compressed when deflate was
    /// agreed.
    pub(crate) async fn send(&mut self, opcode: u8, payload: &[u8]) -> Result<(), BoxError> {
        let Writer { io, wbuf, zbuf, rng, deflater } = self;
        let (rsv1, body): (u8, &[u8]) = match deflater {
            Some(d) if opcode == OP_TEXT || opcode == OP_BINARY => {
                deflate(&mut d.compress, payload, zbuf)?;
                if d.no_context_takeover {
                    d.compress.reset();
                }
                (0x40, zbuf)
            }
            _ => (0, payload),
        };
        // xorshift64: masking keys need not be secret for a benchmark, only vary.
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        let mask = (*rng as u32).to_ne_bytes();
        wbuf.clear();
        frame_into(wbuf, 0x80 | rsv1 | opcode, body, mask);
        io.write_all(wbuf).await?;
        Ok(())
    }

    /// Writes `payload` as is (the TCP floor).
    pub(crate) async fn send_raw(&mut self, payload: &[u8]) -> Result<(), BoxError> {
        self.io.write_all(payload).await?;
        Ok(())
    }
}

/// Appends one masked frame (first header byte `b0`) carrying `body` to `out`.
fn frame_into(out: &mut Vec<u8>, b0: u8, body: &[u8], mask: [u8; 4]) {
    let len = body.len();
    out.reserve(len + 14);
    out.push(b0);
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if let Ok(len16) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&len16.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    mask_append(out, body, mask);
}

/// One complete masked, unfragmented, uncompressed frame, for sending with
/// [`Writer::send_raw`] later.
pub(crate) fn encode_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::new();
    frame_into(&mut out, 0x80 | opcode, payload, mask);
    out
}

/// Appends `src` masked with `mask` to `dst`, eight bytes at a time.
fn mask_append(dst: &mut Vec<u8>, src: &[u8], mask: [u8; 4]) {
    let start = dst.len();
    dst.extend_from_slice(src);
    let m = u64::from_ne_bytes([mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]]);
    let (chunks, rest) = dst[start..].as_chunks_mut::<8>();
    for chunk in chunks {
        *chunk = (u64::from_ne_bytes(*chunk) ^ m).to_ne_bytes();
    }
    // `rest` starts at a multiple of 8, so the mask phase is 0 there.
    for (i, b) in rest.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// Compresses one message with a sync flush into `out`, without the trailing 00 00 ff ff
/// (RFC 7692 §7.2.1).
fn deflate(c: &mut Compress, input: &[u8], out: &mut Vec<u8>) -> Result<(), BoxError> {
    out.clear();
    let start_in = c.total_in();
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(input.len() / 2 + 256));
        }
        let consumed = (c.total_in() - start_in) as usize;
        let before_out = out.len();
        c.compress_vec(&input[consumed..], out, FlushCompress::Sync).map_err(|e| format!("deflate: {e}"))?;
        let now_consumed = (c.total_in() - start_in) as usize;
        // zlib's rule: the flush is complete once all input is in and output space is left.
        if now_consumed == input.len() && out.len() < out.capacity() {
            break;
        }
        if now_consumed == consumed && out.len() == before_out && out.len() < out.capacity() {
            return Err("deflate made no progress".into());
        }
    }
    if out.ends_with(&TRAILER) {
        out.truncate(out.len() - TRAILER.len());
    }
    if out.is_empty() {
        out.push(0x00);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deflate_roundtrip_with_context_takeover() {
        let mut c = Compress::new_with_window_bits(Compression::new(6), false, 15);
        let mut d = Decompress::new_with_window_bits(false, 15);
        let mut z = Vec::new();
        for i in 0..5u8 {
            let msg: Vec<u8> = (0..3000).map(|j: u32| (j % 17) as u8 ^ i).collect();
            deflate(&mut c, &msg, &mut z).expect("deflate");
            assert!(!z.ends_with(&TRAILER));
            let mut out = Vec::new();
            inflate(&mut d, &z, &mut out).expect("inflate");
            inflate(&mut d, &TRAILER, &mut out).expect("trailer");
            assert_eq!(out, msg);
        }
    }

    #[test]
    fn mask_matches_bytewise() {
        let src: Vec<u8> = (0..37).collect();
        let mask = [1, 2, 3, 4];
        let mut dst = vec![9];
        mask_append(&mut dst, &src, mask);
        let expected: Vec<u8> =
            std::iter::once(9).chain(src.iter().enumerate().map(|(i, b)| b ^ mask[i & 3])).collect();
        assert_eq!(dst, expected);
    }

    #[test]
    fn extensions_parse() {
        let a = parse_extensions("permessage-deflate; client_max_window_bits=12; server_no_context_takeover")
            .expect("parse")
            .expect("agreed");
        assert_eq!(a.client_window_bits, 12);
        assert!(a.server_no_context_takeover);
        assert!(!a.client_no_context_takeover);
        assert!(parse_extensions("x-foo").is_err());
    }
}
