//! `load`: the load generator. A hand-written WebSocket client ([`crate::wsclient`]) with all
//! connections on one `current_thread` runtime (one OS thread). Every echoed byte is verified.
//!
//! Modes:
//! - `rtt`: N connections, one message in flight each: send, read the whole echo, verify,
//!   repeat. Reports msgs/s and latency percentiles.
//! - `throughput`: N connections, `--window` messages in flight each (a writer and a reader
//!   per connection). Reports msgs/s and MB/s (echoed payload bytes received per second).
//! - `handshakes`: N concurrent clients, each repeating: TCP connect, HTTP upgrade, closing
//!   handshake (close frame both ways, then the server's FIN). Reports handshakes/s.
//! - `idle`: opens N connections (with `--deflate`, one message each way on each), prints
//!   `READY opened=N` and holds them until its standard input closes (or `--hold-seconds`).
//!
//! `--raw-tcp` talks to a plain TCP echo instead (the floor): the payload is written as is and
//! the same number of bytes read back.
//!
//! Bounds: connecting, the handshake and the closing handshake each have `--timeout`; the
//! measurement loop of a connection is bounded by the end of the window plus `--timeout`.
//!
//! It prints one machine-readable line to stdout (`RESULT key=value ...`, read by `run`) and
//! a human-readable summary to stderr.

use std::io::Read as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::time::timeout;

use crate::wsclient::{self, ClientOptions, OP_BINARY, Target, WsClient};
use crate::{BoxError, cpu};

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Mode {
    /// One message in flight per connection: msgs/s and latency.
    Rtt,
    /// `--window` messages in flight per connection: MB/s.
    Throughput,
    /// Full opening and closing handshakes per second.
    Handshakes,
    /// Open connections and hold them (for the server's RSS).
    Idle,
}

/// Options of `load`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LoadArgs {
    /// WebSocket URL (ws:// only; with --raw-tcp only host:port is used).
    #[arg(long, default_value = "ws://127.0.0.1:9998/echo")]
    pub(crate) url: String,
    /// What to measure.
    #[arg(long, value_enum, default_value = "rtt")]
    pub(crate) mode: Mode,
    /// Concurrent connections (clients, for `handshakes`).
    #[arg(long, default_value_t = 1)]
    pub(crate) connections: usize,
    /// Length of the measurement window, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) seconds: f64,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 16)]
    pub(crate) size: usize,
    /// Messages in flight per connection (`throughput`).
    #[arg(long, default_value_t = 16)]
    pub(crate) window: usize,
    /// Timeout of each connect, handshake and close, and the grace after the window for a
    /// message in flight, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) timeout: f64,
    /// Also report the CPU use of this process (the server) over the window.
    #[arg(long)]
    pub(crate) server_pid: Option<u32>,
    /// Offer permessage-deflate, and require the server to accept it.
    #[arg(long)]
    pub(crate) deflate: bool,
    /// Compression level of the client's compressor (0–9).
    #[arg(long, default_value_t = 1)]
    pub(crate) deflate_level: u32,
    /// Talk to a plain TCP echo (no WebSocket).
    #[arg(long)]
    pub(crate) raw_tcp: bool,
    /// Source addresses to connect from, round robin (e.g. 127.0.0.2,127.0.0.3); default: the
    /// kernel's choice.
    #[arg(long, value_delimiter = ',')]
    pub(crate) sources: Vec<IpAddr>,
    /// `idle`: connections being opened at once.
    #[arg(long, default_value_t = 64)]
    pub(crate) open_concurrency: usize,
    /// `idle`: the longest the connections are held after `READY`, in seconds.
    #[arg(long, default_value_t = 300.0)]
    pub(crate) hold_seconds: f64,
}

/// What one `load` run measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct LoadReport {
    /// Messages (round trips) or handshakes completed inside the window.
    pub(crate) count: u64,
    /// `count` per second.
    pub(crate) rate: f64,
    /// Echoed payload bytes received per second, in MB/s (10^6 bytes).
    pub(crate) mb_per_s: f64,
    /// Latency percentiles, microseconds (round trip, or full handshake cycle).
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
    /// CPU time of the load generator over the window, % of wall time (100 = one core busy).
    pub(crate) cpu_pct: f64,
    /// CPU time of `--server-pid` over the window, % of wall time; negative when unknown.
    pub(crate) server_cpu_pct: f64,
    /// `idle`: connections open.
    pub(crate) opened: u64,
    /// Busy % of every CPU of the machine over the window (whoever used it: also processes
    /// outside this benchmark).
    pub(crate) machine_busy_pct: Vec<f64>,
    /// permessage-deflate was negotiated (on every connection).
    pub(crate) deflate: bool,
}

impl LoadReport {
    /// The `RESULT` line.
    fn to_line(&self) -> String {
        format!(
            "RESULT count={} rate={:.1} mb_per_s={:.3} p50_us={:.2} p99_us={:.2} p999_us={:.2} cpu_pct={:.1} server_cpu_pct={:.1} opened={} deflate={} machine_busy_pct={}",
            self.count,
            self.rate,
            self.mb_per_s,
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.cpu_pct,
            self.server_cpu_pct,
            self.opened,
            u8::from(self.deflate),
            self.machine_busy_pct.iter().map(|p| format!("{p:.1}")).collect::<Vec<_>>().join(",")
        )
    }

    /// Parses the `RESULT` line from `load`'s stdout.
    pub(crate) fn parse(stdout: &str) -> Option<LoadReport> {
        let line = stdout.lines().find_map(|l| l.strip_prefix("RESULT "))?;
        let mut report = LoadReport { server_cpu_pct: -1.0, ..LoadReport::default() };
        for pair in line.split_whitespace() {
            let (key, value) = pair.split_once('=')?;
            match key {
                "count" => report.count = value.parse().ok()?,
                "rate" => report.rate = value.parse().ok()?,
                "mb_per_s" => report.mb_per_s = value.parse().ok()?,
                "p50_us" => report.p50_us = value.parse().ok()?,
                "p99_us" => report.p99_us = value.parse().ok()?,
                "p999_us" => report.p999_us = value.parse().ok()?,
                "cpu_pct" => report.cpu_pct = value.parse().ok()?,
                "server_cpu_pct" => report.server_cpu_pct = value.parse().ok()?,
                "opened" => report.opened = value.parse().ok()?,
                "deflate" => report.deflate = value == "1",
                "machine_busy_pct" => {
                    report.machine_busy_pct = value.split(',').filter_map(|v| v.parse().ok()).collect();
                }
                _ => {}
            }
        }
        Some(report)
    }
}

/// Runs the load generator and prints its report.
pub(crate) fn run(args: &LoadArgs) -> Result<(), BoxError> {
    if args.connections == 0 || args.window == 0 || args.open_concurrency == 0 {
        return Err("--connections, --window and --open-concurrency must be at least 1".into());
    }
    if !(args.seconds > 0.0 && args.timeout > 0.0) {
        return Err("--seconds and --timeout must be positive".into());
    }
    if args.raw_tcp && (args.deflate || matches!(args.mode, Mode::Handshakes | Mode::Idle)) {
        return Err("--raw-tcp supports the rtt and throughput modes without --deflate".into());
    }
    let target = Target::parse(&args.url)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let report = runtime.block_on(async {
        match args.mode {
            Mode::Rtt => rtt(args, &target).await,
            Mode::Throughput => throughput(args, &target).await,
            Mode::Handshakes => handshakes(args, &target).await,
            Mode::Idle => idle(args, &target).await,
        }
    })?;
    eprintln!(
        "load: {:?}, {} conns, {} B{}: {:.0}/s, {:.1} MB/s, p50 {:.1} µs, p99 {:.1} µs, p999 {:.1} µs, loadgen CPU {:.0}%",
        args.mode,
        args.connections,
        args.size,
        if report.deflate { ", deflate" } else { "" },
        report.rate,
        report.mb_per_s,
        report.p50_us,
        report.p99_us,
        report.p999_us,
        report.cpu_pct
    );
    println!("{}", report.to_line());
    Ok(())
}

/// The payloads of one connection: message `seq` is a window of a per-connection text
/// corpus (so compression sees text-like data that varies from message to message) with the
/// sequence number in its first 8 bytes.
#[derive(Debug)]
pub(crate) struct Payloads {
    corpus: Vec<u8>,
    size: usize,
}

/// Offsets into the corpus cycle through this many positions.
const CORPUS_SPAN: usize = 1 << 16;

impl Payloads {
    pub(crate) fn new(id: usize, size: usize) -> Payloads {
        const WORDS: [&str; 32] = [
            "the",
            "socket",
            "frame",
            "message",
            "handler",
            "server",
            "client",
            "echo",
            "data",
            "time",
            "value",
            "\"id\":",
            "\"name\":",
            "{",
            "}",
            "[",
            "]",
            "null",
            "true",
            "false",
            "connection",
            "deflate",
            "window",
            "buffer",
            "reload",
            "plugin",
            "generation",
            "of",
            "and",
            "to",
            "42",
            "1000",
        ];
        let mut rng = 0x2545_F491_4F6C_DD1D_u64 ^ (id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut corpus = Vec::with_capacity(size + CORPUS_SPAN + 16);
        while corpus.len() < size + CORPUS_SPAN {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            corpus.extend_from_slice(WORDS[(rng % 32) as usize].as_bytes());
            corpus.push(if rng & 0x300 == 0 { b'\n' } else { b' ' });
        }
        Payloads { corpus, size }
    }

    fn offset(seq: u64) -> usize {
        (seq.wrapping_mul(4099) % CORPUS_SPAN as u64) as usize
    }

    /// Writes message `seq` into `out`.
    pub(crate) fn fill(&self, seq: u64, out: &mut Vec<u8>) {
        let off = Self::offset(seq);
        out.clear();
        out.extend_from_slice(&self.corpus[off..off + self.size]);
        let n = self.size.min(8);
        out[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
    }

    /// Whether `got` is message `seq`.
    pub(crate) fn check(&self, seq: u64, got: &[u8]) -> bool {
        let off = Self::offset(seq);
        let n = self.size.min(8);
        got.len() == self.size
            && got[..n] == seq.to_le_bytes()[..n]
            && got[n..] == self.corpus[off + n..off + self.size]
    }
}

/// The messages of the throughput workload, built (and masked) once and sent over and over
/// (message `seq` is entry `seq % PREBUILT`), so the load generator spends its time on the
/// sockets rather than on filling and masking 64 KiB per message. Each entry has its own
/// masking key; `PREBUILT` is larger than any window, so a lost, repeated or reordered echo
/// is still caught.
struct Prebuilt {
    frames: Vec<Vec<u8>>,
    payloads: Vec<Vec<u8>>,
}

const PREBUILT: usize = 64;

impl Prebuilt {
    fn new(size: usize, raw_tcp: bool) -> Prebuilt {
        let source = Payloads::new(0, size);
        let mut frames = Vec::with_capacity(PREBUILT);
        let mut payloads = Vec::with_capacity(PREBUILT);
        for seq in 0..PREBUILT as u64 {
            let mut payload = Vec::new();
            source.fill(seq, &mut payload);
            let mask = (seq as u32).wrapping_add(1).wrapping_mul(0x9E37_79B9).to_ne_bytes();
            frames.push(if raw_tcp {
                payload.clone()
            } else {
                wsclient::encode_frame(OP_BINARY, &payload, mask)
            });
            payloads.push(payload);
        }
        Prebuilt { frames, payloads }
    }

    fn frame(&self, seq: u64) -> &[u8] {
        &self.frames[(seq % PREBUILT as u64) as usize]
    }

    fn check(&self, seq: u64, got: &[u8]) -> bool {
        self.payloads[(seq % PREBUILT as u64) as usize] == got
    }
}

/// One connection of the load generator: WebSocket or plain TCP.
enum Link {
    Ws(WsClient),
    Tcp(wsclient::Reader<tokio::net::tcp::OwnedReadHalf>, wsclient::Writer<tokio::net::tcp::OwnedWriteHalf>),
}

fn client_options(args: &LoadArgs, id: usize) -> ClientOptions {
    ClientOptions { offer_deflate: args.deflate, deflate_level: args.deflate_level, seed: id as u64 }
}

fn source_for(args: &LoadArgs, id: usize) -> Option<IpAddr> {
    (!args.sources.is_empty()).then(|| args.sources[id % args.sources.len()])
}

/// Opens connection `id` (and checks the deflate negotiation).
async fn open_link(args: &LoadArgs, target: &Target, id: usize, limit: Duration) -> Result<Link, BoxError> {
    let source = source_for(args, id);
    if args.raw_tcp {
        let stream =
            timeout(limit, wsclient::connect(target, source)).await.map_err(|_| "connect timed out")??;
        let (r, w) = stream.into_split();
        return Ok(Link::Tcp(wsclient::Reader::raw(r), wsclient::Writer::raw(w)));
    }
    let client = WsClient::open(target, source, client_options(args, id), limit).await?;
    if args.deflate && client.deflate.is_none() {
        return Err("the server did not accept permessage-deflate".into());
    }
    Ok(Link::Ws(client))
}

/// Opens `n` connections, `concurrency` at a time, in id order.
async fn open_links(
    args: &LoadArgs,
    target: &Target,
    n: usize,
    limit: Duration,
) -> Result<Vec<Link>, BoxError> {
    let mut links: Vec<Option<Link>> = (0..n).map(|_| None).collect();
    let mut id = 0;
    while id < n {
        let batch: Vec<usize> = (id..n.min(id + args.open_concurrency)).collect();
        let opened =
            futures_util::future::join_all(batch.iter().map(|&i| open_link(args, target, i, limit))).await;
        for (i, link) in batch.into_iter().zip(opened) {
            links[i] = Some(link.map_err(|e| format!("connection {i} to {}: {e}", target.addr))?);
        }
        id += args.open_concurrency;
    }
    Ok(links.into_iter().flatten().collect())
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

/// CPU meters over the window.
struct Meter {
    server_pid: Option<String>,
    ticks0: Option<Vec<(u64, u64)>>,
    cpu0: Option<Duration>,
    server0: Option<Duration>,
    start: Instant,
}

impl Meter {
    fn start(args: &LoadArgs) -> Meter {
        let server_pid = args.server_pid.map(|p| p.to_string());
        Meter {
            ticks0: cpu::per_cpu_ticks(),
            cpu0: cpu::process_cpu("self"),
            server0: server_pid.as_deref().and_then(cpu::process_cpu),
            server_pid,
            start: Instant::now(),
        }
    }

    /// The CPU use since the start.
    fn stop(&self) -> CpuUse {
        let wall = self.start.elapsed().as_secs_f64();
        let cpu1 = cpu::process_cpu("self");
        let server1 = self.server_pid.as_deref().and_then(cpu::process_cpu);
        let pct = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
            (Some(a), Some(b)) => b.saturating_sub(a).as_secs_f64() * 100.0 / wall,
            _ => -1.0,
        };
        let machine_busy_pct = match (&self.ticks0, cpu::per_cpu_ticks()) {
            (Some(a), Some(b)) => cpu::busy_pct(a, &b),
            _ => Vec::new(),
        };
        CpuUse { loadgen_pct: pct(self.cpu0, cpu1), server_pct: pct(self.server0, server1), machine_busy_pct }
    }

    /// Waits for the end of the window (`stop`), reads the meters, then collects what every
    /// task returned (the first failure fails the run).
    async fn finish<T>(
        &self,
        stop: Instant,
        tasks: Vec<tokio::task::JoinHandle<Result<T, String>>>,
    ) -> Result<(CpuUse, Vec<T>), BoxError> {
        tokio::time::sleep_until(stop.into()).await;
        let cpu = self.stop();
        let mut results = Vec::with_capacity(tasks.len());
        for task in tasks {
            results.push(task.await??);
        }
        Ok((cpu, results))
    }
}

/// CPU use over the window.
struct CpuUse {
    /// The load generator's, % of one core (negative when unknown).
    loadgen_pct: f64,
    /// `--server-pid`'s, % of one core (negative when unknown).
    server_pct: f64,
    /// Busy % of every CPU of the machine.
    machine_busy_pct: Vec<f64>,
}

impl LoadReport {
    /// `count` round trips or handshakes in the window, `bytes_each` payload bytes echoed by
    /// each, `latencies_ns` their times (empty when not timed).
    fn measured(
        args: &LoadArgs,
        count: u64,
        bytes_each: usize,
        latencies_ns: &mut [u32],
        cpu: CpuUse,
        opened: u64,
        deflate: bool,
    ) -> LoadReport {
        LoadReport {
            count,
            rate: count as f64 / args.seconds,
            mb_per_s: count as f64 * bytes_each as f64 / args.seconds / 1e6,
            p50_us: percentile_us(latencies_ns, 0.50),
            p99_us: percentile_us(latencies_ns, 0.99),
            p999_us: percentile_us(latencies_ns, 0.999),
            cpu_pct: cpu.loadgen_pct,
            server_cpu_pct: cpu.server_pct,
            opened,
            deflate,
            machine_busy_pct: cpu.machine_busy_pct,
        }
    }
}

/// Closes a link after the window; a failed close is reported but is not a failed run.
async fn close_link(link: Link, id: usize, limit: Duration) {
    match link {
        Link::Ws(client) => {
            if let Err(e) = client.close(limit).await {
                eprintln!("load: connection {id}: close: {e}");
            }
        }
        Link::Tcp(..) => {}
    }
}

// ---------------------------------------------------------------------------------------
// rtt

async fn rtt(args: &LoadArgs, target: &Target) -> Result<LoadReport, BoxError> {
    let limit = Duration::from_secs_f64(args.timeout);
    let links = open_links(args, target, args.connections, limit).await?;
    let deflate = links.iter().all(|l| matches!(l, Link::Ws(c) if c.deflate.is_some()));

    let meter = Meter::start(args);
    let stop = meter.start + Duration::from_secs_f64(args.seconds);
    let size = args.size;
    let tasks: Vec<_> = links
        .into_iter()
        .enumerate()
        .map(|(id, mut link)| {
            tokio::spawn(async move {
                let payloads = Payloads::new(id, size);
                let mut latencies: Vec<u32> = Vec::with_capacity(1 << 16);
                let looped = tokio::time::timeout_at(
                    (stop + limit).into(),
                    rtt_loop(&mut link, &payloads, stop, &mut latencies),
                )
                .await;
                let result = match looped {
                    Ok(Ok(())) => Ok(latencies),
                    Ok(Err(e)) => Err(format!("connection {id}: {e}")),
                    Err(_) => Err(format!("connection {id}: no echo within {limit:?} after the window")),
                };
                if result.is_ok() {
                    close_link(link, id, limit).await;
                }
                result
            })
        })
        .collect();
    let (cpu, per_link) = meter.finish(stop, tasks).await?;
    let mut latencies = per_link.concat();
    let count = latencies.len() as u64;
    Ok(LoadReport::measured(args, count, size, &mut latencies, cpu, args.connections as u64, deflate))
}

/// Round trips until `stop`, recording those that complete before it.
async fn rtt_loop(
    link: &mut Link,
    payloads: &Payloads,
    stop: Instant,
    latencies: &mut Vec<u32>,
) -> Result<(), BoxError> {
    let mut payload = Vec::new();
    let mut seq: u64 = 0;
    loop {
        payloads.fill(seq, &mut payload);
        let t0 = Instant::now();
        match link {
            Link::Ws(client) => {
                client.writer.send(OP_BINARY, &payload).await?;
                let (opcode, got) = client.reader.recv().await?;
                if opcode != OP_BINARY {
                    return Err(format!("expected a binary message, got opcode {opcode:#x}").into());
                }
                if got != payload {
                    return Err(format!("the echo of message {seq} differs from the message sent").into());
                }
                client.reader.clear_readiness_if_drained();
            }
            Link::Tcp(reader, writer) => {
                writer.send_raw(&payload).await?;
                if reader.recv_exact(payload.len()).await? != payload {
                    return Err(format!("the echo of message {seq} differs from the bytes sent").into());
                }
                reader.clear_readiness_if_drained();
            }
        }
        let t1 = Instant::now();
        if t1 >= stop {
            return Ok(());
        }
        latencies.push(u32::try_from(t1.duration_since(t0).as_nanos()).unwrap_or(u32::MAX));
        seq = seq.wrapping_add(1);
    }
}

// ---------------------------------------------------------------------------------------
// throughput

async fn throughput(args: &LoadArgs, target: &Target) -> Result<LoadReport, BoxError> {
    let limit = Duration::from_secs_f64(args.timeout);
    let links = open_links(args, target, args.connections, limit).await?;
    let deflate = links.iter().all(|l| matches!(l, Link::Ws(c) if c.deflate.is_some()));

    let meter = Meter::start(args);
    let stop = meter.start + Duration::from_secs_f64(args.seconds);
    let (size, window) = (args.size, args.window);
    // With deflate every message is compressed afresh (the context carries over).
    let prebuilt = (!args.deflate).then(|| Arc::new(Prebuilt::new(size, args.raw_tcp)));
    let tasks: Vec<_> = links
        .into_iter()
        .enumerate()
        .map(|(id, link)| {
            let prebuilt = prebuilt.clone();
            tokio::spawn(async move {
                let looped = tokio::time::timeout_at(
                    (stop + limit).into(),
                    window_loop(link, id, size, window, stop, prebuilt),
                )
                .await;
                match looped {
                    Ok(Ok((counted, link))) => {
                        close_link(link, id, limit).await;
                        Ok(counted)
                    }
                    Ok(Err(e)) => Err(format!("connection {id}: {e}")),
                    Err(_) => Err(format!("connection {id}: echoes missing {limit:?} after the window")),
                }
            })
        })
        .collect();
    let (cpu, per_link) = meter.finish(stop, tasks).await?;
    let count = per_link.iter().sum();
    Ok(LoadReport::measured(args, count, size, &mut [], cpu, args.connections as u64, deflate))
}

/// Keeps `window` messages in flight until `stop`, then drains. Returns the echoes received
/// before `stop` (every echo, also the later ones, is verified).
async fn window_loop(
    link: Link,
    id: usize,
    size: usize,
    window: usize,
    stop: Instant,
    prebuilt: Option<Arc<Prebuilt>>,
) -> Result<(u64, Link), BoxError> {
    let payloads = Payloads::new(id, size);
    let prebuilt = prebuilt.as_deref();
    let credit = Semaphore::new(window);
    // Incremented before each send and after the time check, with no await in between, so a
    // reader that sees the window over and `received == sent` has seen every send.
    let sent = AtomicU64::new(0);
    match link {
        Link::Ws(client) => {
            let WsClient { mut reader, mut writer, deflate } = client;
            let write = async {
                let mut payload = Vec::with_capacity(size);
                loop {
                    credit.acquire().await.map_err(|_| "semaphore closed")?.forget();
                    if Instant::now() >= stop {
                        return Ok::<(), BoxError>(());
                    }
                    let seq = sent.fetch_add(1, Ordering::Relaxed);
                    match prebuilt {
                        Some(p) => writer.send_raw(p.frame(seq)).await?,
                        None => {
                            payloads.fill(seq, &mut payload);
                            writer.send(OP_BINARY, &payload).await?;
                        }
                    }
                }
            };
            let read = async {
                let mut received: u64 = 0;
                let mut counted: u64 = 0;
                loop {
                    let now = Instant::now();
                    if now >= stop && received == sent.load(Ordering::Relaxed) {
                        return Ok::<u64, BoxError>(counted);
                    }
                    let message = tokio::select! {
                        biased;
                        m = reader.recv() => m?,
                        () = tokio::time::sleep_until(stop.into()), if now < stop => continue,
                    };
                    let (opcode, got) = message;
                    let right = match prebuilt {
                        Some(p) => p.check(received, got),
                        None => payloads.check(received, got),
                    };
                    if opcode != OP_BINARY || !right {
                        return Err(format!(
                            "the echo of message {received} is wrong (opcode {opcode:#x}, {} bytes)",
                            got.len()
                        )
                        .into());
                    }
                    if Instant::now() < stop {
                        counted += 1;
                    }
                    received += 1;
                    credit.add_permits(1);
                }
            };
            let (written, counted) = tokio::join!(write, read);
            written?;
            let counted = counted?;
            Ok((counted, Link::Ws(WsClient { reader, writer, deflate })))
        }
        Link::Tcp(mut r, mut w) => {
            let write = async {
                let mut payload = Vec::with_capacity(size);
                loop {
                    credit.acquire().await.map_err(|_| "semaphore closed")?.forget();
                    if Instant::now() >= stop {
                        return Ok::<(), BoxError>(());
                    }
                    let seq = sent.fetch_add(1, Ordering::Relaxed);
                    match prebuilt {
                        Some(p) => w.send_raw(p.frame(seq)).await?,
                        None => {
                            payloads.fill(seq, &mut payload);
                            w.send_raw(&payload).await?;
                        }
                    }
                }
            };
            let read = async {
                let mut received: u64 = 0;
                let mut counted: u64 = 0;
                loop {
                    let now = Instant::now();
                    if now >= stop && received == sent.load(Ordering::Relaxed) {
                        return Ok::<u64, BoxError>(counted);
                    }
                    let got = tokio::select! {
                        biased;
                        m = r.recv_exact(size) => m?,
                        () = tokio::time::sleep_until(stop.into()), if now < stop => continue,
                    };
                    let right = match prebuilt {
                        Some(p) => p.check(received, got),
                        None => payloads.check(received, got),
                    };
                    if !right {
                        return Err(format!("the echo of message {received} is wrong").into());
                    }
                    if Instant::now() < stop {
                        counted += 1;
                    }
                    received += 1;
                    credit.add_permits(1);
                }
            };
            let (written, counted) = tokio::join!(write, read);
            written?;
            let counted = counted?;
            Ok((counted, Link::Tcp(r, w)))
        }
    }
}

// ---------------------------------------------------------------------------------------
// handshakes

async fn handshakes(args: &LoadArgs, target: &Target) -> Result<LoadReport, BoxError> {
    let limit = Duration::from_secs_f64(args.timeout);
    // One warm-up cycle, so a failing server fails fast with its own message.
    handshake_cycle(args, target, 0, limit).await?;
    let meter = Meter::start(args);
    let stop = meter.start + Duration::from_secs_f64(args.seconds);
    let args = Arc::new(args.clone());
    let target = Arc::new(target.clone());
    let next_id = Arc::new(AtomicUsize::new(1));
    let tasks: Vec<_> = (0..args.connections)
        .map(|_| {
            let (args, target, next_id) = (Arc::clone(&args), Arc::clone(&target), Arc::clone(&next_id));
            tokio::spawn(async move {
                let mut latencies: Vec<u32> = Vec::new();
                loop {
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    let t0 = Instant::now();
                    handshake_cycle(&args, &target, id, limit)
                        .await
                        .map_err(|e| format!("client {id}: {e}"))?;
                    let t1 = Instant::now();
                    if t1 >= stop {
                        return Ok::<_, String>(latencies);
                    }
                    latencies.push(u32::try_from(t1.duration_since(t0).as_nanos()).unwrap_or(u32::MAX));
                }
            })
        })
        .collect();
    let (cpu, per_client) = meter.finish(stop, tasks).await?;
    let mut latencies = per_client.concat();
    let count = latencies.len() as u64;
    Ok(LoadReport::measured(&args, count, 0, &mut latencies, cpu, count, false))
}

/// TCP connect, upgrade, closing handshake, the server's FIN.
async fn handshake_cycle(
    args: &LoadArgs,
    target: &Target,
    id: usize,
    limit: Duration,
) -> Result<(), BoxError> {
    let client = WsClient::open(target, source_for(args, id), client_options(args, id), limit).await?;
    client.close(limit).await
}

// ---------------------------------------------------------------------------------------
// idle

async fn idle(args: &LoadArgs, target: &Target) -> Result<LoadReport, BoxError> {
    let limit = Duration::from_secs_f64(args.timeout);
    let started = Instant::now();
    let mut links: Vec<Link> = Vec::with_capacity(args.connections);
    let mut failure: Option<String> = None;
    let mut id = 0;
    let mut last_progress = Instant::now();
    // Open in batches; stop at the first failure and report how many are open.
    'open: while id < args.connections {
        let batch: Vec<usize> = (id..args.connections.min(id + args.open_concurrency)).collect();
        id += batch.len();
        let opened = futures_util::future::join_all(batch.iter().map(|&i| async move {
            let mut link = open_link(args, target, i, limit).await?;
            if args.deflate
                && let Link::Ws(client) = &mut link
            {
                // One message each way, so the server's compressor and decompressor exist.
                let payloads = Payloads::new(i, args.size);
                let mut payload = Vec::new();
                payloads.fill(0, &mut payload);
                timeout(limit, client.writer.send(OP_BINARY, &payload))
                    .await
                    .map_err(|_| "send timed out")??;
                let (_, got) =
                    timeout(limit, client.reader.recv()).await.map_err(|_| "no echo (timed out)")??;
                if got != payload {
                    return Err::<Link, BoxError>("wrong echo".into());
                }
            }
            Ok(link)
        }))
        .await;
        for (i, link) in batch.into_iter().zip(opened) {
            match link {
                Ok(link) => links.push(link),
                Err(e) => {
                    failure = Some(format!("connection {i}: {e}"));
                    break 'open;
                }
            }
        }
        if last_progress.elapsed() >= Duration::from_secs(2) {
            eprintln!("load: idle: {} connections open", links.len());
            last_progress = Instant::now();
        }
    }
    let deflate = !links.is_empty() && links.iter().all(|l| matches!(l, Link::Ws(c) if c.deflate.is_some()));
    let opened = links.len() as u64;
    match &failure {
        Some(e) => println!("READY opened={opened} error={}", e.replace(char::is_whitespace, "_")),
        None => println!("READY opened={opened}"),
    }
    eprintln!(
        "load: idle: {opened} connections open after {:.1} s{}",
        started.elapsed().as_secs_f64(),
        failure.as_deref().map(|e| format!(" (stopped: {e})")).unwrap_or_default()
    );
    // Hold until stdin closes (the orchestrator is done measuring) or the hold time is over.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        let _ = done_tx.send(());
    });
    let _ = tokio::time::timeout(Duration::from_secs_f64(args.hold_seconds), done_rx).await;
    drop(links);
    Ok(LoadReport {
        count: opened,
        rate: 0.0,
        mb_per_s: 0.0,
        p50_us: f64::NAN,
        p99_us: f64::NAN,
        p999_us: f64::NAN,
        cpu_pct: -1.0,
        server_cpu_pct: -1.0,
        opened,
        deflate,
        machine_busy_pct: Vec::new(),
    })
}
