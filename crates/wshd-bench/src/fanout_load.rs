//! `fanout-load`: the client side of `fanout`. One publisher and N subscribers on one
//! `current_thread` runtime (one OS thread, epoll), in a process of its own so the client
//! does not take the server's CPU.
//!
//! Every message carries its sequence number and the publisher's send time (nanoseconds on
//! this process's monotonic clock, which the subscribers read too): `SSSSSSSSSSSS TTTTTTTTTTTTTTTT `
//! followed by chat-like filler up to `--size` bytes. Every subscriber checks every message
//! it gets: the right size and type, and — from the first message after the join warm-up —
//! the next sequence number (a gap counts as lost, a repeat or step back as misordered;
//! messages still missing after the final drain are lost too).
//!
//! Phases, each bounded in time: connect the publisher, read the server's RSS (idle);
//! connect the subscribers (`--connect-concurrency` at a time), settle 1 s, read the RSS
//! (joined); publish slowly until every subscriber has received one message (all joined);
//! for every `--rates` step, publish at that fixed rate (deliveries/s = messages/s × N):
//! warm-up, then a measured window (publish→receive latencies of the messages sent in it);
//! then saturation: the publisher keeps at most `--window` messages beyond what one
//! designated subscriber (the last to connect; with groups, the last of the highest group) has received, warm-up, measured window
//! (deliveries received by all subscribers per second); drain; read the RSS again.
//!
//! Subscribers may be spread over several URLs (`--sub-urls`, round robin: `cluster` puts
//! them on several nodes), each URL in a group (`--sub-groups`): then every phase has a
//! `GROUP ...` line per group besides its `PHASE ...` line (all groups). With
//! `--redis-port`, Redis's `INFO commandstats` calls over each measured window are added to
//! the `PHASE` line (`redis_publish=…`).
//!
//! Prints `PHASE ...` (and `GROUP ...`) lines and one `RESULT ...` line to stdout (read by
//! `fanout` and `cluster`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::redis_info::{self, Calls};
use crate::wsclient::{ClientOptions, OP_BINARY, OP_CLOSE, OP_TEXT, Reader, Target, Writer, WsClient};
use crate::{BoxError, cpu, procinfo};

/// What a fan-out run sends and measures: shared by `fanout` (which passes it on) and
/// `fanout-load`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Phases {
    /// Message bytes (at least 32).
    #[arg(long, default_value_t = 64)]
    pub(crate) size: usize,
    /// Send binary messages instead of text.
    #[arg(long)]
    pub(crate) binary: bool,
    /// Fixed-rate steps for the latency figures, in deliveries per second (messages/s ×
    /// subscribers), comma-separated (the goal is judged at the first).
    #[arg(long, value_delimiter = ',', default_value = "10000,50000")]
    pub(crate) rates: Vec<f64>,
    /// Saturation: messages in flight beyond one designated subscriber's receipts.
    #[arg(long, default_value_t = 16)]
    pub(crate) window: u64,
    /// Warm-up before each measured window, in seconds.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) warmup: f64,
    /// Measured window of each phase, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) seconds: f64,
}

impl Phases {
    /// The same options as command-line arguments, for `fanout-load`.
    pub(crate) fn to_args(&self) -> Vec<String> {
        let rates: Vec<String> = self.rates.iter().map(|r| format!("{r}")).collect();
        let mut args = vec![
            "--size".to_owned(),
            self.size.to_string(),
            "--rates".to_owned(),
            rates.join(","),
            "--window".to_owned(),
            self.window.to_string(),
            "--warmup".to_owned(),
            self.warmup.to_string(),
            "--seconds".to_owned(),
            self.seconds.to_string(),
        ];
        if self.binary {
            args.push("--binary".to_owned());
        }
        args
    }
}

/// Options of `fanout-load`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct FanoutLoadArgs {
    /// The server's fan-out URL, without the query (`?role=sub` / `?role=pub` are added).
    #[arg(long, default_value = "ws://127.0.0.1:9997/fanout")]
    pub(crate) url: String,
    /// Subscribers.
    #[arg(long, default_value_t = 1000)]
    pub(crate) subscribers: usize,
    /// What is measured, and how long.
    #[command(flatten)]
    pub(crate) phases: Phases,
    /// Bound of each connect, handshake, join warm-up and drain, in seconds.
    #[arg(long, default_value_t = 20.0)]
    pub(crate) timeout: f64,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 100)]
    pub(crate) connect_concurrency: usize,
    /// The server's process (its tree: CPU time and RSS).
    #[arg(long)]
    pub(crate) server_pid: Option<u32>,
    /// The subscribers' URLs (without the query), comma-separated: subscriber `i` connects
    /// to URL `i % count` (default: `--url`; `cluster` spreads them over nodes).
    #[arg(long, value_delimiter = ',')]
    pub(crate) sub_urls: Vec<String>,
    /// The group of each `--sub-urls` entry (default: 0 for all), comma-separated: latencies
    /// and deliveries are reported per group too (`GROUP` lines) when there are several.
    #[arg(long, value_delimiter = ',')]
    pub(crate) sub_groups: Vec<usize>,
    /// More server processes (comma-separated: `cluster`'s nodes and Redis): their CPU time
    /// over each measured window (`stat`, threads that exited included) is reported
    /// (`cluster_cpu_s=` of the `PHASE` lines).
    #[arg(long, value_delimiter = ',')]
    pub(crate) cpu_pids: Vec<u32>,
    /// Saturation is paced on the slowest live subscriber, not on the designated one: the
    /// publisher is never more than `--window` messages ahead of any subscriber (`cluster`:
    /// as fast as delivery to every subscriber keeps up).
    #[arg(long)]
    pub(crate) pace_slowest: bool,
    /// Publish with ids (`?role=pub&logged=1`: `fanout_wsh` then uses
    /// `publish_text_with_id`, so every message goes to the channel's history).
    #[arg(long)]
    pub(crate) logged: bool,
    /// A Redis on 127.0.0.1 at this port: its `INFO commandstats` calls over each measured
    /// window are reported (`redis_<command>=` fields of the `PHASE` lines).
    #[arg(long)]
    pub(crate) redis_port: Option<u16>,
}

impl FanoutLoadArgs {
    /// How many subscriber groups there are.
    fn groups(&self) -> usize {
        self.sub_groups.iter().max().map_or(1, |g| g + 1)
    }

    /// The URL (without the query) and group of subscriber `i`.
    fn subscriber_url(&self, i: usize) -> (&str, usize) {
        let url = match self.sub_urls.len() {
            0 => self.url.as_str(),
            n => self.sub_urls[i % n].as_str(),
        };
        let group = self.sub_groups.get(i % self.sub_urls.len().max(1)).copied().unwrap_or(0);
        (url, group)
    }

    /// The designated subscriber (whose receipts pace saturation): the last to connect of
    /// the highest group (`cluster` numbers its cross-node group last, so the window bounds
    /// the slowest path).
    fn designated(&self) -> usize {
        let last = self.groups() - 1;
        (0..self.subscribers).rev().find(|&i| self.subscriber_url(i).1 == last).unwrap_or(0)
    }
}

/// What every subscriber shares with the publisher (one thread: cells, no atomics).
struct Shared {
    base: Instant,
    size: usize,
    opcode: u8,
    /// First sequence number checked for order and loss (`u64::MAX` during the join warm-up).
    check_from: Cell<u64>,
    /// Subscribers that have received at least one message.
    seen: Cell<usize>,
    /// Next sequence number the designated subscriber expects.
    designated_next: Cell<u64>,
    /// Every receipt wakes the publisher (`--pace-slowest`), not only the designated's.
    every_receipt_notifies: Cell<bool>,
    progress: Notify,
    /// Receipts in `[count_from, count_to)` (ns since `base`) are counted, per group.
    count_window: Cell<(u64, u64)>,
    counted: Vec<Cell<u64>>,
    /// Latencies of messages sent in `[lat_from, lat_to)` are recorded.
    latency_window: Cell<(u64, u64)>,
    /// Per group.
    latencies: Vec<RefCell<Vec<u64>>>,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// One subscriber's verdict so far.
#[derive(Default)]
struct SubStats {
    seen_any: Cell<bool>,
    /// The last sequence number received.
    last: Cell<Option<u64>>,
    /// Next sequence number expected (valid once `check_from` is set and a checked message came).
    next: Cell<Option<u64>>,
    lost: Cell<u64>,
    misordered: Cell<u64>,
    error: RefCell<Option<String>>,
    /// The subscriber's group (`--sub-groups`).
    group: usize,
}

/// Writes message `seq` sent at `t_ns` into `out` (`size` bytes of ASCII).
fn fill_message(out: &mut Vec<u8>, seq: u64, t_ns: u64, size: usize) {
    const FILLER: &[u8] = b"hey, anyone up for a game tonight? bring snacks :) ";
    out.clear();
    out.extend_from_slice(format!("{seq:012} {t_ns:016} ").as_bytes());
    while out.len() < size {
        let take = (size - out.len()).min(FILLER.len());
        out.extend_from_slice(&FILLER[..take]);
    }
    out.truncate(size);
}

/// (sequence number, send time) of a received message, if it is well-formed.
fn parse_message(payload: &[u8]) -> Option<(u64, u64)> {
    let digits = |b: &[u8]| -> Option<u64> {
        b.iter().try_fold(0u64, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + u64::from(c - b'0')))
    };
    Some((digits(payload.get(0..12)?)?, digits(payload.get(13..29)?)?))
}

/// Checks and accounts one received message of subscriber `stats`.
fn on_message(
    shared: &Shared,
    stats: &SubStats,
    designated: bool,
    opcode: u8,
    payload: &[u8],
) -> Result<(), String> {
    let now = shared.now_ns();
    if opcode != shared.opcode || payload.len() != shared.size {
        return Err(format!("unexpected message: opcode {opcode:#x}, {} bytes", payload.len()));
    }
    let (seq, sent_ns) = parse_message(payload).ok_or("a message without sequence number and time")?;
    if !stats.seen_any.replace(true) {
        shared.seen.set(shared.seen.get() + 1);
    }
    stats.last.set(Some(seq));
    if seq >= shared.check_from.get() {
        let next = stats.next.get().unwrap_or(shared.check_from.get());
        if seq >= next {
            stats.lost.set(stats.lost.get() + (seq - next));
            stats.next.set(Some(seq + 1));
        } else {
            stats.misordered.set(stats.misordered.get() + 1);
        }
    }
    if designated {
        shared.designated_next.set(shared.designated_next.get().max(seq + 1));
        shared.progress.notify_one();
    } else if shared.every_receipt_notifies.get() {
        shared.progress.notify_one();
    }
    let (from, to) = shared.count_window.get();
    if let (true, Some(counted)) = ((from..to).contains(&now), shared.counted.get(stats.group)) {
        counted.set(counted.get() + 1);
    }
    let (from, to) = shared.latency_window.get();
    if let (true, Some(latencies)) = ((from..to).contains(&sent_ns), shared.latencies.get(stats.group)) {
        latencies.borrow_mut().push(now.saturating_sub(sent_ns));
    }
    Ok(())
}

/// Receives until the connection fails or closes (then records why).
async fn subscriber(
    shared: Rc<Shared>,
    stats: Rc<SubStats>,
    designated: bool,
    mut reader: Reader<tokio::net::tcp::OwnedReadHalf>,
) {
    let error = loop {
        match reader.recv().await {
            Ok((OP_CLOSE, payload)) => {
                let code = payload.get(..2).map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
                let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).into_owned();
                break format!("closed by the server: {code} {reason}");
            }
            Ok((opcode, payload)) => {
                if let Err(e) = on_message(&shared, &stats, designated, opcode, payload) {
                    break e;
                }
            }
            Err(e) => break e.to_string(),
        }
    };
    *stats.error.borrow_mut() = Some(error);
    if designated {
        shared.progress.notify_one();
    }
}

/// A subscriber's (unused) sending half.
type SubWriter = Writer<tokio::net::tcp::OwnedWriteHalf>;

/// The publishing connection.
struct Publisher {
    writer: Writer<tokio::net::tcp::OwnedWriteHalf>,
    /// The next sequence number.
    seq: u64,
    buf: Vec<u8>,
}

impl Publisher {
    async fn send(&mut self, shared: &Shared) -> Result<(), BoxError> {
        fill_message(&mut self.buf, self.seq, shared.now_ns(), shared.size);
        self.writer.send(shared.opcode, &self.buf).await?;
        self.seq += 1;
        Ok(())
    }
}

/// How the publisher paces itself.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// One message per interval (open loop: a late send does not move the schedule).
    Every(Duration),
    /// At most this many messages beyond the designated subscriber's receipts.
    Window(u64),
}

/// What one measured phase gave.
struct Phase {
    name: &'static str,
    /// Deliveries/s asked for (0 for saturation).
    target: f64,
    /// Per group.
    deliveries: Vec<u64>,
    messages: u64,
    /// Per group.
    latencies: Vec<Vec<u64>>,
    /// Redis's calls per command over the measured window (empty without `--redis-port`).
    redis: Calls,
    server_cpu_s: f64,
    /// CPU seconds of the `--cpu-pids` processes.
    cluster_cpu_s: f64,
    loadgen_cpu_s: f64,
    drained: bool,
}

/// Everything a phase needs.
struct Run {
    args: FanoutLoadArgs,
    shared: Rc<Shared>,
    stats: Vec<Rc<SubStats>>,
    publisher: Publisher,
    limit: Duration,
}

/// The q quantile (nearest rank) of nanosecond latencies, in microseconds.
fn percentile_us(latencies: &mut [u64], q: f64) -> f64 {
    if latencies.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len()) - 1;
    let (_, value, _) = latencies.select_nth_unstable(rank);
    *value as f64 / 1000.0
}

impl Run {
    fn server_cpu(&self) -> Option<Duration> {
        self.args.server_pid.and_then(|p| cpu::process_cpu(&p.to_string()))
    }

    /// The CPU time of the `--cpu-pids` processes so far.
    fn cluster_cpu(&self) -> Duration {
        self.args.cpu_pids.iter().filter_map(|&p| cpu::process_cpu_with_exited(p)).sum()
    }

    /// Redis's call counts now (empty without `--redis-port`).
    async fn redis_calls(&self) -> Result<Calls, BoxError> {
        match self.args.redis_port {
            Some(port) => redis_info::calls(port).await,
            None => Ok(Calls::new()),
        }
    }

    /// The next sequence number of the subscriber that paces saturation: the designated
    /// one, or with `--pace-slowest` the slowest live one.
    fn paced_next(&self) -> u64 {
        let designated = self.shared.designated_next.get();
        if !self.args.pace_slowest {
            return designated;
        }
        let live = self.stats.iter().filter(|s| s.error.borrow().is_none());
        live.map(|s| s.last.get().map_or(0, |l| l + 1)).min().unwrap_or(designated)
    }

    /// Publishes with `pace` until `until`.
    async fn publish_until(&mut self, pace: Pace, until: Instant) -> Result<(), BoxError> {
        let mut next_at = Instant::now();
        while Instant::now() < until {
            match pace {
                Pace::Every(interval) => {
                    tokio::time::sleep_until(next_at.into()).await;
                    next_at += interval;
                }
                Pace::Window(window) => {
                    while self.publisher.seq >= self.paced_next() + window {
                        if self.stats.get(self.args.designated()).is_some_and(|s| s.error.borrow().is_some())
                        {
                            return Err("the designated subscriber is gone".into());
                        }
                        tokio::time::timeout(self.limit, self.shared.progress.notified()).await.map_err(
                            |_| format!("no delivery to the designated subscriber in {:?}", self.limit),
                        )?;
                    }
                }
            }
            if Instant::now() >= until {
                break;
            }
            self.publisher.send(&self.shared).await?;
        }
        Ok(())
    }

    /// Waits (bounded) until every live subscriber has every message sent.
    async fn drain(&self) -> bool {
        let deadline = Instant::now() + self.limit;
        let sent = self.publisher.seq;
        loop {
            let done = self
                .stats
                .iter()
                .all(|s| s.error.borrow().is_some() || s.last.get().is_some_and(|l| l + 1 >= sent));
            if done {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Warm-up, measured window, drain.
    async fn phase(&mut self, name: &'static str, target: f64, pace: Pace) -> Result<Phase, BoxError> {
        let warm_end = Instant::now() + Duration::from_secs_f64(self.args.phases.warmup);
        self.publish_until(pace, warm_end).await?;
        let redis0 = self.redis_calls().await?;
        let (cpu0, self0, cluster0) = (self.server_cpu(), cpu::process_cpu("self"), self.cluster_cpu());
        let (seq0, from) = (self.publisher.seq, self.shared.now_ns());
        let to = from
            + u64::try_from(Duration::from_secs_f64(self.args.phases.seconds).as_nanos()).unwrap_or(u64::MAX);
        self.shared.count_window.set((from, to));
        self.shared.latency_window.set((from, to));
        self.shared.counted.iter().for_each(|c| c.set(0));
        self.shared.latencies.iter().for_each(|l| l.borrow_mut().clear());
        self.publish_until(pace, self.shared.base + Duration::from_nanos(to)).await?;
        let (cpu1, self1, cluster1) = (self.server_cpu(), cpu::process_cpu("self"), self.cluster_cpu());
        let redis = redis_info::delta(&redis0, &self.redis_calls().await?);
        let messages = self.publisher.seq - seq0;
        let drained = self.drain().await;
        let secs = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
            (Some(a), Some(b)) => b.saturating_sub(a).as_secs_f64(),
            _ => f64::NAN,
        };
        let phase = Phase {
            name,
            target,
            deliveries: self.shared.counted.iter().map(Cell::get).collect(),
            messages,
            latencies: self.shared.latencies.iter().map(|l| std::mem::take(&mut *l.borrow_mut())).collect(),
            redis,
            server_cpu_s: secs(cpu0, cpu1),
            cluster_cpu_s: cluster1.saturating_sub(cluster0).as_secs_f64(),
            loadgen_cpu_s: secs(self0, self1),
            drained,
        };
        self.shared.count_window.set((0, 0));
        self.shared.latency_window.set((0, 0));
        Ok(phase)
    }
}

/// p50, p99, p99.9 and max (µs) of nanosecond latencies.
pub(crate) fn quantiles_us(latencies: &mut [u64]) -> [f64; 4] {
    let max = latencies.iter().max().map_or(f64::NAN, |m| *m as f64 / 1000.0);
    [percentile_us(latencies, 0.50), percentile_us(latencies, 0.99), percentile_us(latencies, 0.999), max]
}

impl Phase {
    fn print(self, seconds: f64) {
        let mut all = self.latencies.concat();
        let deliveries: u64 = self.deliveries.iter().sum();
        let [p50, p99, p999, max] = quantiles_us(&mut all);
        let per_s = deliveries as f64 / seconds;
        eprintln!(
            "fanout-load: {} {:.0}: {:.0} deliveries/s ({} messages), p50 {p50:.0} µs, p99 {p99:.0} µs, max {max:.0} µs, server CPU {:.2} s, load CPU {:.2} s{}",
            self.name,
            self.target,
            per_s,
            self.messages,
            self.server_cpu_s,
            self.loadgen_cpu_s,
            if self.drained { "" } else { " (NOT drained)" }
        );
        let redis: String = self.redis.iter().map(|(name, n)| format!(" redis_{name}={n}")).collect();
        println!(
            "PHASE name={} target={:.0} deliveries={deliveries} per_s={per_s:.1} messages={} p50_us={p50:.1} p99_us={p99:.1} p999_us={p999:.1} max_us={max:.1} server_cpu_s={:.4} cluster_cpu_s={:.2} loadgen_cpu_s={:.4} drained={}{redis}",
            self.name,
            self.target,
            self.messages,
            self.server_cpu_s,
            self.cluster_cpu_s,
            self.loadgen_cpu_s,
            u8::from(self.drained)
        );
        if self.deliveries.len() < 2 {
            return;
        }
        for (group, (n, mut latencies)) in self.deliveries.into_iter().zip(self.latencies).enumerate() {
            let [p50, p99, p999, max] = quantiles_us(&mut latencies);
            println!(
                "GROUP name={} target={:.0} group={group} deliveries={n} per_s={:.1} p50_us={p50:.1} p99_us={p99:.1} p999_us={p999:.1} max_us={max:.1}",
                self.name,
                self.target,
                n as f64 / seconds
            );
        }
    }
}

/// Runs the fan-out client and prints its report.
pub(crate) fn run(args: &FanoutLoadArgs) -> Result<(), BoxError> {
    if args.subscribers == 0
        || args.connect_concurrency == 0
        || args.phases.window == 0
        || args.phases.size < 32
    {
        return Err(
            "--subscribers, --connect-concurrency and --window must be at least 1, --size at least 32".into(),
        );
    }
    if !(args.phases.seconds > 0.0 && args.phases.warmup >= 0.0 && args.timeout > 0.0)
        || args.phases.rates.iter().any(|r| r.is_nan() || *r <= 0.0)
    {
        return Err("--seconds, --timeout and --rates must be positive".into());
    }
    if !args.sub_groups.is_empty() && args.sub_groups.len() != args.sub_urls.len() {
        return Err("--sub-groups needs one group per --sub-urls entry".into());
    }
    let ((soft, hard), note) = procinfo::raise_nofile(args.subscribers as u64 + 256);
    eprintln!(
        "fanout-load: RLIMIT_NOFILE soft {soft}, hard {hard}{}",
        note.map(|n| format!(" ({n})")).unwrap_or_default()
    );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    runtime.block_on(local.run_until(fan_out(args.clone())))
}

fn rss(args: &FanoutLoadArgs) -> u64 {
    args.server_pid.and_then(procinfo::vm_rss_kib).unwrap_or(0)
}

/// Connects the subscribers, `connect_concurrency` at a time, and starts their tasks.
async fn connect_subscribers(
    args: &FanoutLoadArgs,
    shared: &Rc<Shared>,
    limit: Duration,
) -> Result<(Vec<Rc<SubStats>>, Vec<SubWriter>), BoxError> {
    let mut targets = Vec::new();
    for i in 0..args.sub_urls.len().max(1) {
        targets.push(Target::parse(&format!("{}?role=sub", args.subscriber_url(i).0))?);
    }
    let mut stats = Vec::with_capacity(args.subscribers);
    let mut writers = Vec::with_capacity(args.subscribers);
    let mut id = 0;
    while id < args.subscribers {
        let batch: Vec<usize> = (id..args.subscribers.min(id + args.connect_concurrency)).collect();
        let opened = futures_util::future::join_all(batch.iter().map(|&i| {
            let options = ClientOptions { offer_deflate: false, deflate_level: 0, seed: i as u64 + 1 };
            WsClient::open(&targets[i % targets.len()], None, options, limit)
        }))
        .await;
        for (i, client) in batch.into_iter().zip(opened) {
            let client = client.map_err(|e| format!("subscriber {i}: {e}"))?;
            let s = Rc::new(SubStats { group: args.subscriber_url(i).1, ..SubStats::default() });
            let designated = i == args.designated();
            // The write halves are kept (unused) until the end, so the connections stay open.
            let WsClient { reader, writer, .. } = client;
            tokio::task::spawn_local(subscriber(Rc::clone(shared), Rc::clone(&s), designated, reader));
            writers.push(writer);
            stats.push(s);
        }
        id += args.connect_concurrency;
    }
    Ok((stats, writers))
}

/// Publishes one message at a time (another after 1 s without it reaching everyone) until
/// every subscriber has received one (so every one has joined), drains, then starts checking
/// order and loss from the next message.
async fn join_warmup(run: &mut Run) -> Result<(), BoxError> {
    let deadline = Instant::now() + run.limit;
    let mut resend_at = Instant::now();
    while run.shared.seen.get() < run.stats.len() {
        if Instant::now() >= deadline {
            return Err(format!(
                "only {} of {} subscribers received a message within {:?}",
                run.shared.seen.get(),
                run.stats.len(),
                run.limit
            )
            .into());
        }
        if Instant::now() >= resend_at {
            run.publisher.send(&run.shared).await?;
            resend_at = Instant::now() + Duration::from_secs(1);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if !run.drain().await {
        return Err("the join warm-up messages did not drain".into());
    }
    run.shared.check_from.set(run.publisher.seq);
    Ok(())
}

impl Shared {
    /// Nothing received yet; messages of `size` bytes with `opcode`, checked for order and
    /// loss from sequence number `check_from` on.
    /// Receipts are counted in `groups` groups.
    fn new(size: usize, opcode: u8, check_from: u64, groups: usize) -> Shared {
        Shared {
            base: Instant::now(),
            size,
            opcode,
            check_from: Cell::new(check_from),
            seen: Cell::new(0),
            designated_next: Cell::new(0),
            every_receipt_notifies: Cell::new(false),
            progress: Notify::new(),
            count_window: Cell::new((0, 0)),
            counted: (0..groups).map(|_| Cell::new(0)).collect(),
            latency_window: Cell::new((0, 0)),
            latencies: (0..groups).map(|_| RefCell::new(Vec::new())).collect(),
        }
    }
}

async fn fan_out(args: FanoutLoadArgs) -> Result<(), BoxError> {
    let limit = Duration::from_secs_f64(args.timeout);
    let opcode = if args.phases.binary { OP_BINARY } else { OP_TEXT };
    let shared = Rc::new(Shared::new(args.phases.size, opcode, u64::MAX, args.groups()));
    shared.every_receipt_notifies.set(args.pace_slowest);
    let logged = if args.logged { "&logged=1" } else { "" };
    let pub_target = Target::parse(&format!("{}?role=pub{logged}", args.url))?;
    let options = ClientOptions { offer_deflate: false, deflate_level: 0, seed: 0 };
    let WsClient { reader: pub_reader, writer, .. } =
        WsClient::open(&pub_target, None, options, limit).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_idle = rss(&args);
    let started = Instant::now();
    let (stats, sub_writers) = connect_subscribers(&args, &shared, limit).await?;
    let connect_s = started.elapsed().as_secs_f64();
    eprintln!("fanout-load: {} subscribers connected in {connect_s:.1} s", stats.len());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_joined = rss(&args);
    let publisher = Publisher { writer, seq: 0, buf: Vec::with_capacity(args.phases.size) };
    let mut run = Run { args: args.clone(), shared, stats, publisher, limit };
    join_warmup(&mut run).await?;
    let n = args.subscribers as f64;
    for &rate in &args.phases.rates {
        let interval = Duration::from_secs_f64(n / rate);
        run.phase("rate", rate, Pace::Every(interval)).await?.print(args.phases.seconds);
    }
    run.phase("saturation", 0.0, Pace::Window(args.phases.window)).await?.print(args.phases.seconds);
    let drained = run.drain().await;
    let rss_after = rss(&args);
    drop((pub_reader, sub_writers));
    report(&run, drained, connect_s, [rss_idle, rss_joined, rss_after]);
    Ok(())
}

/// Prints the `RESULT` line: memory, and the order and loss verdict over every checked message.
fn report(run: &Run, drained: bool, connect_s: f64, [rss_idle, rss_joined, rss_after]: [u64; 3]) {
    let sent = run.publisher.seq;
    let checked = sent.saturating_sub(run.shared.check_from.get());
    let (mut lost, mut misordered, mut errors) = (0u64, 0u64, 0usize);
    let mut first_error: Option<String> = None;
    for s in &run.stats {
        let next = s.next.get().unwrap_or(run.shared.check_from.get());
        lost += s.lost.get() + sent.saturating_sub(next);
        misordered += s.misordered.get();
        if let Some(e) = s.error.borrow().as_ref() {
            errors += 1;
            first_error.get_or_insert_with(|| e.clone());
        }
    }
    eprintln!(
        "fanout-load: {checked} messages checked × {} subscribers: {lost} lost, {misordered} misordered, {errors} subscribers failed{}; RSS idle {rss_idle} KiB, joined {rss_joined} KiB, after {rss_after} KiB",
        run.stats.len(),
        first_error.as_deref().map(|e| format!(" (first: {e})")).unwrap_or_default()
    );
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let loadavg1 = loadavg.split_whitespace().next().unwrap_or("-");
    println!(
        "RESULT loadavg1={loadavg1} subscribers={} sent={sent} connect_s={connect_s:.2} rss_idle_kib={rss_idle} rss_joined_kib={rss_joined} rss_after_kib={rss_after} checked={checked} lost={lost} misordered={misordered} errors={errors} drained={} first_error={}",
        run.stats.len(),
        u8::from(drained),
        first_error.map_or("-".into(), |e| e.replace(char::is_whitespace, "_"))
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_carries_its_sequence_number_and_send_time() {
        let mut out = Vec::new();
        fill_message(&mut out, 123_456, 9_876_543_210, 64);
        assert_eq!(out.len(), 64);
        assert!(std::str::from_utf8(&out).is_ok(), "text messages must be UTF-8");
        assert_eq!(parse_message(&out), Some((123_456, 9_876_543_210)));
        assert_eq!(parse_message(b"not a message at all, no digits here......"), None);
    }

    #[test]
    fn gaps_count_as_lost_and_steps_back_as_misordered() {
        let shared = Shared::new(40, OP_TEXT, 10, 1);
        let stats = SubStats::default();
        let mut msg = Vec::new();
        for seq in [9, 10, 11, 14, 12, 15] {
            fill_message(&mut msg, seq, 0, 40);
            on_message(&shared, &stats, true, OP_TEXT, &msg).expect("well-formed");
        }
        assert_eq!((stats.lost.get(), stats.misordered.get(), stats.next.get()), (2, 1, Some(16)));
        assert_eq!((shared.seen.get(), shared.designated_next.get(), stats.last.get()), (1, 16, Some(15)));
        assert!(on_message(&shared, &stats, false, OP_BINARY, &msg).is_err(), "wrong type");
    }
}
