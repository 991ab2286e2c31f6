//! `load`: the load generator. A minimal hand-written WebSocket client over tokio's
//! `TcpStream`, all connections on one `current_thread` runtime (one OS thread), each with one
//! message in flight: send a masked binary frame, read the whole echo, verify it, repeat.
//!
//! Bounds: connecting, the handshake and the closing handshake each have `--timeout`; the
//! measurement loop of a connection is bounded by the end of the window plus `--timeout`, so
//! a read that stalls fails the run at most that long after the window.
//!
//! It prints one machine-readable line to stdout (`RESULT key=value ...`, read by `run`) and
//! a human-readable summary to stderr.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::{BoxError, cpu};

/// Options of `load`.
#[derive(Debug, clap::Args)]
pub(crate) struct LoadArgs {
    /// WebSocket URL (ws:// only).
    #[arg(long, default_value = "ws://127.0.0.1:9998/echo")]
    pub(crate) url: String,
    /// Concurrent connections, each with one message in flight.
    #[arg(long, default_value_t = 1)]
    pub(crate) connections: usize,
    /// Length of the measurement window, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) seconds: f64,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 16)]
    pub(crate) size: usize,
    /// Timeout of each connect, handshake and close, and the grace after the window for a
    /// round trip in progress, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) timeout: f64,
    /// Also report the CPU use of this process (the server) over the window.
    #[arg(long)]
    pub(crate) server_pid: Option<u32>,
}

/// What one `load` run measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct LoadReport {
    /// Round trips completed inside the window.
    pub(crate) round_trips: u64,
    /// Round trips per second.
    pub(crate) rate: f64,
    /// Median round-trip latency, microseconds.
    pub(crate) p50_us: f64,
    /// 99th percentile round-trip latency, microseconds.
    pub(crate) p99_us: f64,
    /// CPU time of the load generator over the window, % of wall time (100 = one core busy).
    pub(crate) cpu_pct: f64,
    /// CPU time of `--server-pid` over the window, % of wall time; negative when unknown.
    pub(crate) server_cpu_pct: f64,
}

impl LoadReport {
    /// The `RESULT` line.
    fn to_line(&self) -> String {
        format!(
            "RESULT round_trips={} rate={:.1} p50_us={:.2} p99_us={:.2} cpu_pct={:.1} server_cpu_pct={:.1}",
            self.round_trips, self.rate, self.p50_us, self.p99_us, self.cpu_pct, self.server_cpu_pct
        )
    }

    /// Parses the `RESULT` line from `load`'s stdout.
    pub(crate) fn parse(stdout: &str) -> Option<LoadReport> {
        let line = stdout.lines().find_map(|l| l.strip_prefix("RESULT "))?;
        let mut report = LoadReport { server_cpu_pct: -1.0, ..LoadReport::default() };
        for pair in line.split_whitespace() {
            let (key, value) = pair.split_once('=')?;
            match key {
                "round_trips" => report.round_trips = value.parse().ok()?,
                "rate" => report.rate = value.parse().ok()?,
                "p50_us" => report.p50_us = value.parse().ok()?,
                "p99_us" => report.p99_us = value.parse().ok()?,
                "cpu_pct" => report.cpu_pct = value.parse().ok()?,
                "server_cpu_pct" => report.server_cpu_pct = value.parse().ok()?,
                _ => {}
            }
        }
        Some(report)
    }
}

/// Runs the load generator and prints its report.
pub(crate) fn run(args: &LoadArgs) -> Result<(), BoxError> {
    if args.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    if !(args.seconds > 0.0 && args.timeout > 0.0) {
        return Err("--seconds and --timeout must be positive".into());
    }
    let target = Target::parse(&args.url)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let report = runtime.block_on(measure(args, &target))?;
    eprintln!(
        "load: {} conns, {} B: {:.0} msgs/s, p50 {:.1} µs, p99 {:.1} µs, loadgen CPU {:.0}%",
        args.connections, args.size, report.rate, report.p50_us, report.p99_us, report.cpu_pct
    );
    println!("{}", report.to_line());
    Ok(())
}

/// Where to connect.
struct Target {
    addr: SocketAddr,
    /// `host[:port]` for the Host header.
    authority: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, BoxError> {
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

/// The RFC 6455 sample key, and the accept value a correct server answers it with (so the
/// handshake is verified without a SHA-1 here).
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

async fn measure(args: &LoadArgs, target: &Target) -> Result<LoadReport, BoxError> {
    let limit = Duration::from_secs_f64(args.timeout);
    let mut conns = Vec::with_capacity(args.connections);
    for id in 0..args.connections {
        let conn = Conn::open(target, id, args.size, limit)
            .await
            .map_err(|e| format!("connection {id} to {}: {e}", target.addr))?;
        conns.push(conn);
    }

    let server_pid = args.server_pid.map(|p| p.to_string());
    let cpu0 = cpu::process_cpu("self");
    let server0 = server_pid.as_deref().and_then(cpu::process_cpu);
    let start = Instant::now();
    let stop = start + Duration::from_secs_f64(args.seconds);
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            tokio::spawn(async move {
                let loop_result = tokio::time::timeout_at((stop + limit).into(), conn.echo_until(stop)).await;
                let result = match loop_result {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(format!("connection {}: {e}", conn.id)),
                    Err(_) => {
                        Err(format!("connection {}: no echo within {limit:?} after the window", conn.id))
                    }
                };
                if result.is_ok() {
                    // The window is over: a failed close is not a failed measurement.
                    if let Err(e) =
                        timeout(limit, conn.close()).await.unwrap_or(Err("close timed out".into()))
                    {
                        eprintln!("load: connection {}: close: {e}", conn.id);
                    }
                }
                result.map(|()| (conn.round_trips, conn.latencies_ns))
            })
        })
        .collect();
    tokio::time::sleep_until(stop.into()).await;
    let wall = start.elapsed();
    let cpu1 = cpu::process_cpu("self");
    let server1 = server_pid.as_deref().and_then(cpu::process_cpu);

    let mut round_trips = 0;
    let mut latencies = Vec::new();
    for task in tasks {
        let (n, lat) = task.await??;
        round_trips += n;
        latencies.extend_from_slice(&lat);
    }
    let pct = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => b.saturating_sub(a).as_secs_f64() * 100.0 / wall.as_secs_f64(),
        _ => -1.0,
    };
    Ok(LoadReport {
        round_trips,
        rate: round_trips as f64 / args.seconds,
        p50_us: percentile_us(&mut latencies, 0.50),
        p99_us: percentile_us(&mut latencies, 0.99),
        cpu_pct: pct(cpu0, cpu1),
        server_cpu_pct: pct(server0, server1),
    })
}

/// The `q` quantile (nearest rank) of latencies in nanoseconds, in microseconds.
fn percentile_us(latencies_ns: &mut [u32], q: f64) -> f64 {
    if latencies_ns.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * latencies_ns.len() as f64).ceil() as usize).clamp(1, latencies_ns.len()) - 1;
    let (_, value, _) = latencies_ns.select_nth_unstable(rank);
    f64::from(*value) / 1000.0
}

/// One client connection.
struct Conn {
    id: usize,
    stream: TcpStream,
    /// Received bytes not yet consumed are `rbuf[rstart..rend]`.
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    /// The frame being sent (reused).
    wbuf: Vec<u8>,
    /// The payload of the message in flight.
    payload: Vec<u8>,
    /// xorshift state for masking keys.
    rng: u64,
    round_trips: u64,
    latencies_ns: Vec<u32>,
}

impl Conn {
    /// Connects and performs the opening handshake.
    async fn open(target: &Target, id: usize, size: usize, limit: Duration) -> Result<Conn, BoxError> {
        let stream =
            timeout(limit, TcpStream::connect(target.addr)).await.map_err(|_| "connect timed out")??;
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            id,
            stream,
            rbuf: vec![0; (size + 14).max(64 << 10)],
            rstart: 0,
            rend: 0,
            wbuf: Vec::with_capacity(size + 14),
            // Distinct per connection; the first 8 bytes carry the sequence number.
            payload: (0..size).map(|i| (i as u8).wrapping_mul(7).wrapping_add(id as u8)).collect(),
            rng: 0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9),
            round_trips: 0,
            latencies_ns: Vec::with_capacity(1 << 16),
        };
        timeout(limit, conn.handshake(target)).await.map_err(|_| "handshake timed out")??;
        Ok(conn)
    }

    async fn handshake(&mut self, target: &Target) -> Result<(), BoxError> {
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            target.path, target.authority
        );
        self.stream.write_all(request.as_bytes()).await?;
        let head_end = loop {
            if let Some(i) = self.rbuf[..self.rend].windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if self.rend == self.rbuf.len() {
                return Err("handshake response too long".into());
            }
            let n = self.stream.read(&mut self.rbuf[self.rend..]).await?;
            if n == 0 {
                return Err("connection closed during the handshake".into());
            }
            self.rend += n;
        };
        let head = String::from_utf8_lossy(&self.rbuf[..head_end]).into_owned();
        let status = head.lines().next().unwrap_or_default();
        if status.split_whitespace().nth(1) != Some("101") {
            return Err(format!("{} answered {status:?}, not 101", target.path).into());
        }
        let accepted = head.lines().any(|line| {
            line.split_once(':').is_some_and(|(name, value)| {
                name.trim().eq_ignore_ascii_case("sec-websocket-accept") && value.trim() == WS_ACCEPT
            })
        });
        if !accepted {
            return Err("wrong or missing Sec-WebSocket-Accept".into());
        }
        // Anything after the head would be frames (none is expected before we send).
        self.rstart = head_end;
        Ok(())
    }

    /// Round trips until `stop`, counting those that complete before it.
    async fn echo_until(&mut self, stop: Instant) -> Result<(), BoxError> {
        let mut seq: u64 = 0;
        loop {
            let n = self.payload.len().min(8);
            self.payload[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
            let t0 = Instant::now();
            self.send_frame(0x2, true).await?;
            self.recv_echo().await?;
            let t1 = Instant::now();
            if t1 >= stop {
                return Ok(());
            }
            let ns = u32::try_from(t1.duration_since(t0).as_nanos()).unwrap_or(u32::MAX);
            self.latencies_ns.push(ns);
            self.round_trips += 1;
            seq = seq.wrapping_add(1);
        }
    }

    /// Sends a masked frame whose payload is `self.payload` (data) or a close frame.
    async fn send_frame(&mut self, opcode: u8, data: bool) -> Result<(), BoxError> {
        const CLOSE_NORMAL: [u8; 2] = 1000u16.to_be_bytes();
        let payload: &[u8] = if data { &self.payload } else { &CLOSE_NORMAL };
        let len = payload.len();
        let wbuf = &mut self.wbuf;
        wbuf.clear();
        wbuf.push(0x80 | opcode);
        if len < 126 {
            wbuf.push(0x80 | len as u8);
        } else if let Ok(len16) = u16::try_from(len) {
            wbuf.push(0x80 | 126);
            wbuf.extend_from_slice(&len16.to_be_bytes());
        } else {
            wbuf.push(0x80 | 127);
            wbuf.extend_from_slice(&(len as u64).to_be_bytes());
        }
        // xorshift64: masking keys need not be secret for a benchmark, only vary.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let mask = (self.rng as u32).to_ne_bytes();
        wbuf.extend_from_slice(&mask);
        wbuf.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        self.stream.write_all(wbuf).await?;
        Ok(())
    }

    /// Makes `rbuf[rstart..rstart + n]` hold at least `n` received bytes.
    async fn fill(&mut self, n: usize) -> Result<(), BoxError> {
        while self.rend - self.rstart < n {
            if self.rbuf.len() - self.rstart < n {
                // Not enough room after rstart: move the unread bytes to the front, and grow.
                self.rbuf.copy_within(self.rstart..self.rend, 0);
                self.rend -= self.rstart;
                self.rstart = 0;
                if self.rbuf.len() < n {
                    self.rbuf.resize(n, 0);
                }
            }
            let read = self.stream.read(&mut self.rbuf[self.rend..]).await?;
            if read == 0 {
                return Err("connection closed by the server".into());
            }
            self.rend += read;
        }
        Ok(())
    }

    /// Reads one frame: (FIN + opcode byte, payload range in `rbuf`), consuming it.
    async fn recv_frame(&mut self) -> Result<(u8, std::ops::Range<usize>), BoxError> {
        self.fill(2).await?;
        let b0 = self.rbuf[self.rstart];
        let b1 = self.rbuf[self.rstart + 1];
        if b1 & 0x80 != 0 {
            return Err("the server sent a masked frame".into());
        }
        let (header, len) = match b1 & 0x7F {
            126 => {
                self.fill(4).await?;
                let s = self.rstart;
                (4, usize::from(u16::from_be_bytes([self.rbuf[s + 2], self.rbuf[s + 3]])))
            }
            127 => {
                self.fill(10).await?;
                let s = self.rstart;
                let mut be = [0u8; 8];
                be.copy_from_slice(&self.rbuf[s + 2..s + 10]);
                (10, usize::try_from(u64::from_be_bytes(be)).map_err(|_| "frame too long")?)
            }
            short => (2, usize::from(short)),
        };
        self.fill(header + len).await?;
        let start = self.rstart + header;
        self.rstart = start + len;
        if self.rstart == self.rend {
            // Everything consumed. The range stays valid: the bytes are not overwritten
            // before the next read.
            self.rstart = 0;
            self.rend = 0;
        }
        Ok((b0, start..start + len))
    }

    /// Reads the echo of the message in flight and checks it.
    async fn recv_echo(&mut self) -> Result<(), BoxError> {
        let (b0, range) = self.recv_frame().await?;
        if b0 != 0x82 {
            return Err(format!("expected an unfragmented binary frame, got first byte {b0:#04x}").into());
        }
        if self.rbuf[range] != self.payload[..] {
            return Err("the echo differs from the message sent".into());
        }
        Ok(())
    }

    /// Sends a close frame and waits for the server's (bounded by the caller).
    async fn close(&mut self) -> Result<(), BoxError> {
        self.send_frame(0x8, false).await?;
        loop {
            let (b0, _) = self.recv_frame().await?;
            if b0 & 0x0F == 0x8 {
                self.stream.shutdown().await?;
                return Ok(());
            }
        }
    }
}
