//! `run`: the orchestrator. Starts wshd (serving `echo_wsh`, and its built-in echo) and the
//! reference echo servers as child processes, runs the load generator (another child process) against each through
//! the selected workloads (alternating servers within each repetition), prints one table and
//! writes it as JSON.
//!
//! CPU placement, when `taskset` exists and at least 2 CPUs are allowed: the servers run on
//! the first allowed CPU and the load generator on the second — except with 1 connection,
//! where the load generator shares the servers' CPU. With one message in flight a cross-CPU
//! round trip costs two cross-CPU wake-ups (IPIs, and an idle CPU leaving its sleep state),
//! which on these VMs take longer than the echo itself: on 2 CPUs the 1-connection figure
//! would measure the hypervisor, not the server.
//!
//! The idle-memory workload starts a fresh server for every measurement, warms it with one
//! connection, reads its `VmRSS`, opens N idle connections (with several load-generator
//! processes and loopback source addresses when one process cannot hold them all), reads
//! `VmRSS` again and divides the growth by N.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use std::{env, fs};

use crate::BoxError;
use crate::load::LoadReport;
use crate::procinfo;

/// The build command that produces everything `run` needs.
pub(crate) const BUILD_COMMAND: &str = "cargo build --release -p wshd -p echo_wsh -p wshd-bench";

/// The route of wshd's built-in echo in the `wshd-builtin` configuration.
const BUILTIN_ECHO_PATH: &str = "/builtin_echo";

/// A workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub(crate) enum Workload {
    /// 1 connection, 16-byte round trips.
    Rtt1,
    /// 100 connections, 16-byte round trips.
    Rtt100,
    /// 100 connections × 64 KiB, 16 messages in flight each.
    Throughput,
    /// Full handshakes per second, 32 concurrent clients.
    Handshakes,
    /// RSS per idle connection.
    Idle,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Rtt1 => "rtt1",
            Workload::Rtt100 => "rtt100",
            Workload::Throughput => "throughput",
            Workload::Handshakes => "handshakes",
            Workload::Idle => "idle",
        }
    }
}

/// A server under test (with the client options it is driven with).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub(crate) enum Subject {
    /// wshd serving the echo plugin (default `workers`: a master and one worker per CPU).
    Wshd,
    /// The same with `workers = 0`: one process, no master (what wshd was before workers).
    WshdSingle,
    /// The same with `workers = 1`: a master and one worker process.
    Wshd1w,
    /// The same wshd and configuration plus a `[[route]] builtin = "echo"`, driven at that
    /// route: the echo built into the host, without the plugin boundary.
    WshdBuiltin,
    /// wshd serving the echo plugin, the client offering permessage-deflate.
    WshdDeflate,
    /// tokio-tungstenite 0.30 with `WebSocketConfig::default()` (the reference: ratio 1.00).
    TokioTungstenite,
    /// tokio-tungstenite 0.30 with an 8 KiB read buffer.
    TokioTungstenite8k,
    /// fastwebsockets 0.10 (hyper upgrade).
    Fastwebsockets,
    /// A plain TCP echo (the floor).
    Tcp,
}

/// The server processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ServerKind {
    Wshd,
    WshdSingle,
    WshdOneWorker,
    WshdBuiltin,
    Tt,
    Tt8k,
    Fws,
    Tcp,
}

impl Subject {
    fn label(self) -> &'static str {
        match self {
            Subject::Wshd => "wshd (echo plugin)",
            Subject::WshdSingle => "wshd, workers = 0 (one process)",
            Subject::Wshd1w => "wshd, workers = 1 (master + 1 worker)",
            Subject::WshdBuiltin => "wshd, built-in echo (no plugin boundary)",
            Subject::WshdDeflate => "wshd, permessage-deflate",
            Subject::TokioTungstenite => "tokio-tungstenite 0.30 default",
            Subject::TokioTungstenite8k => "tokio-tungstenite 0.30, 8 KiB read buffer",
            Subject::Fastwebsockets => "fastwebsockets 0.10",
            Subject::Tcp => "plain TCP echo (floor)",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Subject::Wshd => "wshd",
            Subject::WshdSingle => "wshd-single",
            Subject::Wshd1w => "wshd-1w",
            Subject::WshdBuiltin => "wshd-builtin",
            Subject::WshdDeflate => "wshd-deflate",
            Subject::TokioTungstenite => "tokio-tungstenite",
            Subject::TokioTungstenite8k => "tokio-tungstenite-8k",
            Subject::Fastwebsockets => "fastwebsockets",
            Subject::Tcp => "tcp",
        }
    }

    fn kind(self) -> ServerKind {
        match self {
            Subject::Wshd | Subject::WshdDeflate => ServerKind::Wshd,
            Subject::WshdSingle => ServerKind::WshdSingle,
            Subject::Wshd1w => ServerKind::WshdOneWorker,
            Subject::WshdBuiltin => ServerKind::WshdBuiltin,
            Subject::TokioTungstenite => ServerKind::Tt,
            Subject::TokioTungstenite8k => ServerKind::Tt8k,
            Subject::Fastwebsockets => ServerKind::Fws,
            Subject::Tcp => ServerKind::Tcp,
        }
    }

    fn supports(self, w: Workload) -> bool {
        match self {
            Subject::Tcp => matches!(w, Workload::Rtt1 | Workload::Rtt100 | Workload::Throughput),
            Subject::WshdDeflate => w != Workload::Handshakes,
            _ => true,
        }
    }

    fn client_flags(self) -> &'static [&'static str] {
        match self {
            Subject::WshdDeflate => &["--deflate"],
            Subject::Tcp => &["--raw-tcp"],
            _ => &[],
        }
    }
}

/// Options of `run`.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Workloads to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "rtt1,rtt100,throughput,handshakes,idle")]
    pub(crate) workloads: Vec<Workload>,
    /// Servers to measure, comma-separated (tokio-tungstenite is the reference of the ratios).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "wshd,wshd-builtin,wshd-deflate,tokio-tungstenite,fastwebsockets,tcp"
    )]
    pub(crate) servers: Vec<Subject>,
    /// Measurement window of each load run, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) seconds: f64,
    /// Repetitions per server and workload (alternating servers); medians reported.
    #[arg(long, default_value_t = 3)]
    pub(crate) repetitions: usize,
    /// Where `wshd` and `libecho_wsh.so` are.
    #[arg(long, default_value = "target/release")]
    pub(crate) release_dir: PathBuf,
    /// The JSON report [default: target/bench/echo.json].
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Do not pin processes to CPUs.
    #[arg(long)]
    pub(crate) no_pin: bool,
    /// Payload bytes of the round-trip workloads.
    #[arg(long, default_value_t = 16)]
    pub(crate) size: usize,
    /// Connections of the `rtt100` workload.
    #[arg(long, default_value_t = 100)]
    pub(crate) rtt_connections: usize,
    /// Connections of the `throughput` workload.
    #[arg(long, default_value_t = 100)]
    pub(crate) throughput_connections: usize,
    /// Message bytes of the `throughput` workload.
    #[arg(long, default_value_t = 65536)]
    pub(crate) throughput_size: usize,
    /// Messages in flight per connection in the `throughput` workload.
    #[arg(long, default_value_t = 16)]
    pub(crate) window: usize,
    /// Concurrent clients of the `handshakes` workload.
    #[arg(long, default_value_t = 32)]
    pub(crate) handshake_clients: usize,
    /// Loopback source addresses the `handshakes` clients rotate over (127.0.0.2, ...), so
    /// the ephemeral ports of one address are not exhausted.
    #[arg(long, default_value_t = 4)]
    pub(crate) handshake_sources: u8,
    /// TOML appended to the `[websocket.deflate]` table of wshd's configuration (e.g.
    /// `server_max_window_bits = 10`), to measure its memory and speed knobs.
    #[arg(long)]
    pub(crate) wshd_deflate_config: Option<String>,
    /// Idle connection counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    pub(crate) idle_connections: Vec<usize>,
}

/// A child process killed (and reaped) when dropped, so no server outlives `run`.
pub(crate) struct Guard {
    pub(crate) child: Child,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which CPUs to pin to.
#[derive(Debug, Clone)]
pub(crate) struct Placement {
    /// `None`: no pinning.
    cpus: Option<(usize, usize)>,
}

impl Placement {
    pub(crate) fn detect(no_pin: bool) -> (Placement, String) {
        if no_pin {
            return (Placement { cpus: None }, "none (--no-pin)".into());
        }
        if !on_path("taskset") {
            return (Placement { cpus: None }, "none (no taskset)".into());
        }
        let allowed = allowed_cpus();
        match allowed.as_slice() {
            [a, b, ..] => (
                Placement { cpus: Some((*a, *b)) },
                format!("servers on CPU {a}, load generator on CPU {b} (on CPU {a} with 1 connection)"),
            ),
            _ => (Placement { cpus: None }, format!("none (allowed CPUs: {allowed:?})")),
        }
    }

    pub(crate) fn server_cpu(&self) -> Option<usize> {
        self.cpus.map(|(a, _)| a)
    }

    /// The load generator's CPU when it runs beside the servers (not for 1 connection).
    pub(crate) fn other_cpu(&self) -> Option<usize> {
        self.cpus.map(|(_, b)| b)
    }

    fn load_cpu(&self, workload: Workload) -> Option<usize> {
        self.cpus.map(|(a, b)| if workload == Workload::Rtt1 { a } else { b })
    }
}

/// A command, pinned to `cpu` with taskset when given (taskset execs, so the pid is the
/// program's).
pub(crate) fn command(cpu: Option<usize>, program: &Path) -> Command {
    match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(program);
            c
        }
        None => Command::new(program),
    }
}

pub(crate) fn on_path(program: &str) -> bool {
    env::var_os("PATH").is_some_and(|paths| env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The CPUs this process may run on (`Cpus_allowed_list`), else 0..available_parallelism.
fn allowed_cpus() -> Vec<usize> {
    let from_proc = fs::read_to_string("/proc/self/status").ok().and_then(|status| {
        let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?.trim().to_owned();
        let mut cpus = Vec::new();
        for part in list.split(',') {
            match part.split_once('-') {
                Some((a, b)) => {
                    cpus.extend(a.trim().parse::<usize>().ok()?..=b.trim().parse::<usize>().ok()?)
                }
                None => cpus.push(part.trim().parse::<usize>().ok()?),
            }
        }
        Some(cpus)
    });
    from_proc.unwrap_or_else(|| (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect())
}

/// A free loopback port (bound, then released).
pub(crate) fn free_port() -> Result<u16, BoxError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits (at most 15 s) until `addr` accepts TCP, failing early if the server exits.
pub(crate) fn wait_for_listener(child: &mut Child, name: &str, addr: SocketAddr) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(format!("{name} exited before listening on {addr}: {status}").into());
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("{name} is not listening on {addr} after 15 s").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `wshd_bin -c config` (stdin and stdout to /dev/null) and waits until it listens on
/// `addr`.
pub(crate) fn spawn_wshd(wshd_bin: &Path, config: &Path, addr: SocketAddr) -> Result<Child, BoxError> {
    let mut child = Command::new(wshd_bin)
        .arg("-c")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", wshd_bin.display()))?;
    wait_for_listener(&mut child, "wshd", addr)?;
    Ok(child)
}

/// A TOML basic string (also a valid JSON string for the text used here).
pub(crate) fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON number (null when not finite or negative = unknown).
pub(crate) fn num(x: f64) -> String {
    if x.is_finite() && x >= 0.0 { format!("{x:.3}") } else { "null".into() }
}

/// Median of the finite values (NaN when none).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Paths and settings shared by every server start.
struct Context {
    me: PathBuf,
    /// Extra lines for wshd's `[websocket.deflate]`.
    deflate_config: String,
    wshd_bin: PathBuf,
    handlers_dir: PathBuf,
    temp: PathBuf,
    placement: Placement,
}

/// A running server.
struct Server {
    guard: Guard,
    url: String,
}

impl Server {
    fn pid(&self) -> u32 {
        self.guard.child.id()
    }
}

/// Starts one server process on a fresh port and waits until it listens.
fn start_server(ctx: &Context, kind: ServerKind) -> Result<Server, BoxError> {
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let cpu = ctx.placement.server_cpu();
    let (name, mut cmd) = match kind {
        ServerKind::Wshd | ServerKind::WshdSingle | ServerKind::WshdOneWorker | ServerKind::WshdBuiltin => {
            let workers = match kind {
                ServerKind::WshdSingle => "workers = 0\n",
                ServerKind::WshdOneWorker => "workers = 1\n",
                _ => "",
            };
            let config_path = ctx.temp.join(format!("server-{port}.toml"));
            let dir = ctx.handlers_dir.to_str().ok_or("the temporary directory is not UTF-8")?;
            let builtin_route = if kind == ServerKind::WshdBuiltin {
                format!("\n[[route]]\npath = {}\nbuiltin = \"echo\"\n", quoted(BUILTIN_ECHO_PATH))
            } else {
                String::new()
            };
            fs::write(
                &config_path,
                format!(
                    "# Written by wshd-bench run. No connection limit: the idle workload opens up to\n\
                     # 100,000 connections (the default limit is 10,000).\n\
                     [server]\nlisten = [\"127.0.0.1:{port}\"]\nmax_connections = 0\n{workers}\n\
                     [handlers]\ndir = {}\nrecursive = false\n\n[log]\nlevel = \"warn\"\n\n\
                     [websocket.deflate]\n{}\n{builtin_route}",
                    quoted(dir),
                    ctx.deflate_config
                ),
            )?;
            let mut c = command(cpu, &ctx.wshd_bin);
            c.arg("-c").arg(config_path);
            ("wshd", c)
        }
        ServerKind::Tt | ServerKind::Tt8k => {
            let mut c = command(cpu, &ctx.me);
            c.arg("raw-echo").arg("--addr").arg(addr.to_string());
            if kind == ServerKind::Tt {
                c.arg("--tungstenite-default");
            }
            ("raw-echo", c)
        }
        ServerKind::Fws => {
            let mut c = command(cpu, &ctx.me);
            c.arg("fws-echo").arg("--addr").arg(addr.to_string());
            ("fws-echo", c)
        }
        ServerKind::Tcp => {
            let mut c = command(cpu, &ctx.me);
            c.arg("tcp-echo").arg("--addr").arg(addr.to_string());
            ("tcp-echo", c)
        }
    };
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {name}: {e}"))?;
    let mut guard = Guard { child };
    wait_for_listener(&mut guard.child, name, addr)?;
    let path = if kind == ServerKind::WshdBuiltin { BUILTIN_ECHO_PATH } else { "/echo" };
    Ok(Server { guard, url: format!("ws://{addr}{path}") })
}

/// The load-generator options of one workload.
fn workload_args(args: &RunArgs, workload: Workload, seconds: f64) -> Vec<String> {
    let mut a: Vec<String> = vec!["--seconds".into(), seconds.to_string()];
    let mut push = |k: &str, v: String| {
        a.push(k.into());
        a.push(v);
    };
    match workload {
        Workload::Rtt1 => {
            push("--mode", "rtt".into());
            push("--connections", "1".into());
            push("--size", args.size.to_string());
        }
        Workload::Rtt100 => {
            push("--mode", "rtt".into());
            push("--connections", args.rtt_connections.to_string());
            push("--size", args.size.to_string());
        }
        Workload::Throughput => {
            push("--mode", "throughput".into());
            push("--connections", args.throughput_connections.to_string());
            push("--size", args.throughput_size.to_string());
            push("--window", args.window.to_string());
        }
        Workload::Handshakes => {
            push("--mode", "handshakes".into());
            push("--connections", args.handshake_clients.to_string());
            if args.handshake_sources > 0 {
                let sources: Vec<String> =
                    (0..args.handshake_sources).map(|i| format!("127.0.0.{}", 2 + u16::from(i))).collect();
                push("--sources", sources.join(","));
            }
        }
        Workload::Idle => {}
    }
    a
}

/// Runs the load generator once as a child process (bounded) and parses its report.
fn load_once(
    ctx: &Context,
    cpu: Option<usize>,
    server: &Server,
    subject: Subject,
    load_args: &[String],
    bound: Duration,
) -> Result<LoadReport, BoxError> {
    let mut child = command(cpu, &ctx.me)
        .arg("load")
        .arg("--url")
        .arg(&server.url)
        .args(load_args)
        .args(subject.client_flags())
        .arg("--server-pid")
        .arg(server.pid().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the load generator: {e}"))?;
    let deadline = Instant::now() + bound;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("the load generator against {} did not finish in time", subject.key()).into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "the load generator against {} failed ({}): {}",
            subject.key(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    let report = LoadReport::parse(&stdout)
        .ok_or_else(|| format!("no RESULT line from the load generator: {stdout:?}"))?;
    if subject == Subject::WshdDeflate && !report.deflate {
        return Err("wshd did not negotiate permessage-deflate".into());
    }
    Ok(report)
}

/// One idle-memory measurement.
#[derive(Debug, Clone)]
struct IdleResult {
    requested: usize,
    attempted: usize,
    opened: u64,
    rss_before_kib: u64,
    rss_after_kib: u64,
    server_fds: usize,
    loadgen_processes: usize,
    /// Why fewer than requested were attempted or opened.
    note: Option<String>,
}

impl IdleResult {
    fn per_conn_kib(&self) -> f64 {
        if self.opened == 0 {
            return f64::NAN;
        }
        (self.rss_after_kib as f64 - self.rss_before_kib as f64) / self.opened as f64
    }

    fn json(&self) -> String {
        format!(
            "{{\"requested\": {}, \"attempted\": {}, \"opened\": {}, \"rss_before_kib\": {}, \"rss_after_kib\": {}, \"kib_per_conn\": {}, \"server_fds\": {}, \"loadgen_processes\": {}, \"note\": {}}}",
            self.requested,
            self.attempted,
            self.opened,
            self.rss_before_kib,
            self.rss_after_kib,
            num(self.per_conn_kib()),
            self.server_fds,
            self.loadgen_processes,
            self.note.as_deref().map_or("null".into(), quoted)
        )
    }
}

/// A child's stdout lines, read by a thread.
fn line_channel(child: &mut Child) -> Result<mpsc::Receiver<String>, BoxError> {
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// Starts a fresh server, warms it, reads its RSS, opens `requested` idle connections, reads
/// its RSS again.
fn measure_idle(
    ctx: &Context,
    args: &RunArgs,
    subject: Subject,
    requested: usize,
) -> Result<IdleResult, BoxError> {
    let server = start_server(ctx, subject.kind())?;
    let pid = server.pid();
    // Warm-up: one connection, a few round trips (lazy initialisation, the first thread
    // stacks) — with deflate when the idle connections will use it.
    let warm = ["--mode", "rtt", "--connections", "1", "--seconds", "0.3"].map(String::from);
    load_once(ctx, ctx.placement.load_cpu(Workload::Idle), &server, subject, &warm, Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_millis(500));

    let margin = 64;
    let (server_soft, server_hard) = procinfo::nofile_limit(&pid.to_string()).unwrap_or((1024, 1024));
    let (own_soft, _) = procinfo::nofile_limit("self").unwrap_or((1024, 1024));
    let server_budget = usize::try_from(server_soft).unwrap_or(usize::MAX).saturating_sub(margin);
    let attempted = requested.min(server_budget);
    let mut note = (attempted < requested).then(|| {
        format!(
            "server RLIMIT_NOFILE soft {server_soft} / hard {server_hard}: at most {server_budget} connections can be attempted"
        )
    });
    // One load-generator process per `per_process` connections, each from its own source
    // address when more than one is needed (one address has ~28k ephemeral ports here).
    let per_process = usize::try_from(own_soft).unwrap_or(usize::MAX).saturating_sub(margin).clamp(1, 25_000);
    let processes = attempted.div_ceil(per_process).max(1);
    let rss_before_kib = procinfo::vm_rss_kib(pid).ok_or("cannot read the server's VmRSS")?;

    let mut children: Vec<(Child, ChildStdin, mpsc::Receiver<String>)> = Vec::new();
    let result = (|| {
        for k in 0..processes {
            let share = attempted / processes + usize::from(k < attempted % processes);
            let mut cmd = command(ctx.placement.load_cpu(Workload::Idle), &ctx.me);
            cmd.arg("load")
                .arg("--url")
                .arg(&server.url)
                .args(["--mode", "idle", "--connections"])
                .arg(share.to_string())
                .args(["--size", &args.size.to_string(), "--timeout", "10"])
                .args(subject.client_flags());
            if processes > 1 {
                let ip = IpAddr::V4(Ipv4Addr::new(
                    127,
                    0,
                    0,
                    2 + u8::try_from(k).map_err(|_| "too many processes")?,
                ));
                cmd.arg("--sources").arg(ip.to_string());
            }
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("cannot start the load generator: {e}"))?;
            let stdin = child.stdin.take().ok_or("no stdin pipe")?;
            let lines = line_channel(&mut child)?;
            children.push((child, stdin, lines));
        }
        let deadline = Instant::now() + Duration::from_secs(60 + attempted as u64 / 200);
        let mut opened = 0u64;
        for (child, _, lines) in &mut children {
            let line = loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match lines.recv_timeout(left.max(Duration::from_millis(1))) {
                    Ok(line) if line.starts_with("READY ") => break line,
                    Ok(_) => continue,
                    Err(_) => {
                        let status = child.try_wait()?;
                        return Err(format!(
                            "an idle load generator did not report READY in time (exit status {status:?})"
                        )
                        .into());
                    }
                }
            };
            let mut fields = line.split_whitespace().skip(1);
            let n: u64 = fields
                .next()
                .and_then(|f| f.strip_prefix("opened="))
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("bad READY line {line:?}"))?;
            opened += n;
            if let Some(error) = fields.next().and_then(|f| f.strip_prefix("error=")) {
                let text = format!("a load generator stopped opening at {n}: {}", error.replace('_', " "));
                note = Some(match note.take() {
                    Some(old) => format!("{old}; {text}"),
                    None => text,
                });
            }
        }
        // Let the server finish whatever the last handshakes left (buffers shrinking, tasks
        // parking) before reading its memory.
        std::thread::sleep(Duration::from_secs(1));
        let rss_after_kib = procinfo::vm_rss_kib(pid).ok_or("cannot read the server's VmRSS")?;
        let server_fds = procinfo::open_fds(pid).unwrap_or(0);
        Ok::<_, BoxError>((opened, rss_after_kib, server_fds))
    })();
    // Release the connections: closing stdin ends each idle load generator.
    for (mut child, stdin, _) in children {
        drop(stdin);
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    drop(server);
    let (opened, rss_after_kib, server_fds) = result?;
    Ok(IdleResult {
        requested,
        attempted,
        opened,
        rss_before_kib,
        rss_after_kib,
        server_fds,
        loadgen_processes: processes,
        note,
    })
}

/// All measurements.
#[derive(Default)]
struct Results {
    loads: BTreeMap<(Subject, Workload), Vec<LoadReport>>,
    idle: BTreeMap<(Subject, usize), Vec<IdleResult>>,
}

impl Results {
    fn med(&self, s: Subject, w: Workload, f: impl Fn(&LoadReport) -> f64) -> f64 {
        self.loads.get(&(s, w)).map_or(f64::NAN, |runs| median(runs.iter().map(f).collect()))
    }

    /// The headline figure of a workload: msgs/s, MB/s or handshakes/s.
    fn headline(&self, s: Subject, w: Workload) -> f64 {
        match w {
            Workload::Throughput => self.med(s, w, |r| r.mb_per_s),
            _ => self.med(s, w, |r| r.rate),
        }
    }

    fn idle_kib(&self, s: Subject, n: usize) -> f64 {
        self.idle
            .get(&(s, n))
            .map_or(f64::NAN, |runs| median(runs.iter().map(IdleResult::per_conn_kib).collect()))
    }
}

/// Runs the whole benchmark.
pub(crate) fn run(args: &RunArgs) -> Result<(), BoxError> {
    if args.repetitions == 0 || args.servers.is_empty() || args.workloads.is_empty() {
        return Err("--repetitions, --servers and --workloads must not be empty".into());
    }
    if args.seconds.is_nan() || args.seconds <= 0.0 {
        return Err("--seconds must be positive".into());
    }
    let release_dir = std::path::absolute(&args.release_dir)?;
    let wshd_bin = release_dir.join("wshd");
    let plugin = release_dir.join("libecho_wsh.so");
    for needed in [&wshd_bin, &plugin] {
        if !needed.is_file() {
            return Err(
                format!("{} not found; build it first with:\n  {BUILD_COMMAND}", needed.display()).into()
            );
        }
    }
    let out = match &args.out {
        Some(out) => out.clone(),
        None => PathBuf::from("target/bench/echo.json"),
    };
    let max_idle = args.idle_connections.iter().copied().max().unwrap_or(0) as u64;
    let ((soft, hard), nofile_note) = procinfo::raise_nofile(max_idle + 1024);
    let (placement, placement_text) = Placement::detect(args.no_pin);
    eprintln!("[wshd-bench] pinning: {placement_text}");
    eprintln!("[wshd-bench] RLIMIT_NOFILE for all processes: soft {soft}, hard {hard}");
    if let Some(note) = &nofile_note {
        eprintln!("[wshd-bench] {note}");
    }

    let mut workloads = args.workloads.clone();
    workloads.sort();
    workloads.dedup();
    let mut subjects = args.servers.clone();
    subjects.dedup();

    // wshd serves a private copy of the echo plugin: a rebuild in the release directory
    // during the run must not hot-reload the subject under test.
    let temp = env::temp_dir().join(format!("wshd-bench-{}", std::process::id()));
    let handlers_dir = temp.join("handlers");
    fs::create_dir_all(&handlers_dir)?;
    fs::copy(&plugin, handlers_dir.join("libecho_wsh.so"))?;
    let ctx = Context {
        deflate_config: args.wshd_deflate_config.clone().unwrap_or_default(),
        me: env::current_exe()?,
        wshd_bin: wshd_bin.clone(),
        handlers_dir,
        temp: temp.clone(),
        placement,
    };
    let started = Instant::now();
    let result = measure_all(args, &ctx, &workloads, &subjects);
    let _ = fs::remove_dir_all(&temp);
    let results = result?;

    let table = table(args, &results, &workloads, &subjects);
    println!("{table}");
    let json = json(
        args,
        &placement_text,
        (soft, hard),
        nofile_note.as_deref(),
        &wshd_bin,
        &results,
        &workloads,
        &subjects,
    );
    if let Some(dir) = out.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(&out, json)?;
    eprintln!("[wshd-bench] done in {:.0} s; wrote {}", started.elapsed().as_secs_f64(), out.display());
    Ok(())
}

fn measure_all(
    args: &RunArgs,
    ctx: &Context,
    workloads: &[Workload],
    subjects: &[Subject],
) -> Result<Results, BoxError> {
    let mut results = Results::default();
    let timed: Vec<Workload> = workloads.iter().copied().filter(|w| *w != Workload::Idle).collect();
    if !timed.is_empty() {
        // One long-running process per server kind for the timed workloads.
        let mut servers: BTreeMap<ServerKind, Server> = BTreeMap::new();
        for s in subjects {
            if timed.iter().any(|w| s.supports(*w)) && !servers.contains_key(&s.kind()) {
                servers.insert(s.kind(), start_server(ctx, s.kind())?);
            }
        }
        for &w in &timed {
            let load_args = workload_args(args, w, args.seconds);
            let bound = Duration::from_secs_f64(args.seconds + 60.0);
            for rep in 1..=args.repetitions {
                for &s in subjects.iter().filter(|s| s.supports(w)) {
                    let server = &servers[&s.kind()];
                    let r = load_once(ctx, ctx.placement.load_cpu(w), server, s, &load_args, bound)?;
                    eprintln!(
                        "[wshd-bench] {:>10} rep {rep}/{} {:<20} {:>8.0}/s {:>7.1} MB/s p50 {:>7.1} p99 {:>7.1} p999 {:>8.1} µs; CPU % loadgen {:>3.0} server {:>3.0} rest {:>3.0}",
                        w.name(),
                        args.repetitions,
                        s.key(),
                        r.rate,
                        r.mb_per_s,
                        r.p50_us,
                        r.p99_us,
                        r.p999_us,
                        r.cpu_pct,
                        r.server_cpu_pct,
                        other_cpu(&r)
                    );
                    results.loads.entry((s, w)).or_default().push(r);
                }
            }
        }
    }
    if workloads.contains(&Workload::Idle) {
        for &n in &args.idle_connections {
            for rep in 1..=args.repetitions {
                for &s in subjects.iter().filter(|s| s.supports(Workload::Idle)) {
                    let r = measure_idle(ctx, args, s, n)?;
                    eprintln!(
                        "[wshd-bench]       idle rep {rep}/{} {:<26} requested {n}, opened {}: RSS {} → {} KiB, {:.2} KiB/conn{}",
                        args.repetitions,
                        s.key(),
                        r.opened,
                        r.rss_before_kib,
                        r.rss_after_kib,
                        r.per_conn_kib(),
                        r.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default()
                    );
                    results.idle.entry((s, n)).or_default().push(r);
                }
            }
        }
    }
    Ok(results)
}

/// CPU used over a window by everything but the load generator and the server (other
/// processes, interrupts), in % of one core; NaN when unknown.
fn other_cpu(r: &LoadReport) -> f64 {
    if r.machine_busy_pct.is_empty() || r.cpu_pct < 0.0 || r.server_cpu_pct < 0.0 {
        return f64::NAN;
    }
    (r.machine_busy_pct.iter().sum::<f64>() - r.cpu_pct - r.server_cpu_pct).max(0.0)
}

/// Server CPU time per message (or handshake), in microseconds; NaN when unknown.
fn server_us_per_op(r: &LoadReport) -> f64 {
    if r.server_cpu_pct < 0.0 || r.rate <= 0.0 {
        return f64::NAN;
    }
    r.server_cpu_pct * 10_000.0 / r.rate
}

/// "figure (ratio×)" with thousands separators for large figures.
fn cell(value: f64, reference: f64, decimals: usize) -> String {
    if !value.is_finite() {
        return "—".into();
    }
    let figure = if decimals == 0 { group(value) } else { format!("{value:.decimals$}") };
    if reference.is_finite() && reference > 0.0 {
        format!("{figure} ({:.2}×)", value / reference)
    } else {
        figure
    }
}

pub(crate) fn group(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0.0 { format!("-{out}") } else { out }
}

fn latencies(r: &Results, s: Subject, w: Workload) -> String {
    let (p50, p99, p999) = (r.med(s, w, |x| x.p50_us), r.med(s, w, |x| x.p99_us), r.med(s, w, |x| x.p999_us));
    if !p50.is_finite() {
        return "—".into();
    }
    format!("{p50:.0} / {p99:.0} / {p999:.0}")
}

fn table(args: &RunArgs, r: &Results, workloads: &[Workload], subjects: &[Subject]) -> String {
    let reference = Subject::TokioTungstenite;
    let has = |w: Workload| workloads.contains(&w);
    let mut head: Vec<String> = vec!["server".into()];
    if has(Workload::Rtt1) {
        head.push(format!("1 conn {} B msgs/s", args.size));
        head.push("1 conn p50/p99/p999 µs".into());
    }
    if has(Workload::Rtt100) {
        head.push(format!("{} conns {} B msgs/s", args.rtt_connections, args.size));
        head.push(format!("{} conns p50/p99/p999 µs", args.rtt_connections));
    }
    if has(Workload::Throughput) {
        head.push(format!(
            "{} conns × {} KiB, window {}: MB/s",
            args.throughput_connections,
            args.throughput_size / 1024,
            args.window
        ));
    }
    if has(Workload::Handshakes) {
        head.push(format!("handshakes/s ({} clients)", args.handshake_clients));
    }
    if has(Workload::Idle) {
        for &n in &args.idle_connections {
            head.push(format!("RSS KiB per idle conn at {}", group(n as f64)));
        }
    }
    let mut t = String::new();
    let _ = writeln!(t, "| {} |", head.join(" | "));
    let _ = writeln!(t, "|{}", "---|".repeat(head.len()));
    let mut footnotes: Vec<String> = Vec::new();
    for &s in subjects {
        let mut row: Vec<String> = vec![s.label().into()];
        for w in [Workload::Rtt1, Workload::Rtt100, Workload::Throughput, Workload::Handshakes] {
            if !has(w) {
                continue;
            }
            let decimals = if w == Workload::Throughput { 1 } else { 0 };
            row.push(cell(r.headline(s, w), r.headline(reference, w), decimals));
            if matches!(w, Workload::Rtt1 | Workload::Rtt100) {
                row.push(latencies(r, s, w));
            }
        }
        if has(Workload::Idle) {
            for &n in &args.idle_connections {
                let mut c = cell(r.idle_kib(s, n), r.idle_kib(reference, n), 1);
                if let Some(runs) = r.idle.get(&(s, n)) {
                    let opened = median(runs.iter().map(|x| x.opened as f64).collect());
                    if (opened as usize) < n {
                        c.push_str(&format!(" at {}", group(opened)));
                        if let Some(note) = runs.iter().find_map(|x| x.note.clone())
                            && !footnotes.contains(&note)
                        {
                            footnotes.push(note);
                        }
                    }
                }
                row.push(c);
            }
        }
        let _ = writeln!(t, "| {} |", row.join(" | "));
    }
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "Ratios (×) are to {} in the same run; medians of {}; {} s per point.",
        reference.label(),
        args.repetitions,
        args.seconds
    );
    for note in footnotes {
        let _ = writeln!(t, "Idle: {note}.");
    }
    // CPU use: load generator and server, per workload.
    let timed: Vec<Workload> = workloads.iter().copied().filter(|w| *w != Workload::Idle).collect();
    if !timed.is_empty() {
        let _ = writeln!(t);
        let cols: Vec<&str> = timed.iter().map(|w| w.name()).collect();
        let _ = writeln!(
            t,
            "| CPU % of one core (load generator / server / rest of the machine) · server CPU per message or handshake | {} |",
            cols.join(" | ")
        );
        let _ = writeln!(t, "|{}", "---|".repeat(cols.len() + 1));
        for &s in subjects {
            let cells: Vec<String> = timed
                .iter()
                .map(|&w| {
                    let (c, sc, o) = (
                        r.med(s, w, |x| x.cpu_pct),
                        r.med(s, w, |x| x.server_cpu_pct),
                        r.med(s, w, other_cpu),
                    );
                    let per_op = r.med(s, w, server_us_per_op);
                    if c.is_finite() {
                        format!("{c:.0} / {sc:.0} / {o:.0} · {per_op:.1} µs")
                    } else {
                        "—".into()
                    }
                })
                .collect();
            let _ = writeln!(t, "| {} | {} |", s.label(), cells.join(" | "));
        }
    }
    t
}

#[allow(clippy::too_many_arguments)]
fn json(
    args: &RunArgs,
    placement: &str,
    nofile: (u64, u64),
    nofile_note: Option<&str>,
    wshd_bin: &Path,
    r: &Results,
    workloads: &[Workload],
    subjects: &[Subject],
) -> String {
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let wshd_mtime = fs::metadata(wshd_bin)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let cpu_model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let reference = Subject::TokioTungstenite;
    let mut servers = Vec::new();
    for &s in subjects {
        let mut entries = Vec::new();
        for &w in workloads.iter().filter(|w| **w != Workload::Idle && s.supports(**w)) {
            let Some(runs) = r.loads.get(&(s, w)) else { continue };
            let run_json: Vec<String> = runs
                .iter()
                .map(|x| {
                    format!(
                        "{{\"count\": {}, \"per_s\": {}, \"mb_per_s\": {}, \"p50_us\": {}, \"p99_us\": {}, \"p999_us\": {}, \"loadgen_cpu_pct\": {}, \"server_cpu_pct\": {}, \"machine_busy_pct_per_cpu\": [{}], \"other_cpu_pct\": {}, \"server_cpu_us_per_op\": {}}}",
                        x.count,
                        num(x.rate),
                        num(x.mb_per_s),
                        num(x.p50_us),
                        num(x.p99_us),
                        num(x.p999_us),
                        num(x.cpu_pct),
                        num(x.server_cpu_pct),
                        x.machine_busy_pct.iter().map(|p| num(*p)).collect::<Vec<_>>().join(", "),
                        num(other_cpu(x)),
                        num(server_us_per_op(x))
                    )
                })
                .collect();
            let headline = r.headline(s, w);
            let reference_value = r.headline(reference, w);
            entries.push(format!(
                "      {}: {{\"per_s\": {}, \"mb_per_s\": {}, \"ratio_to_tokio_tungstenite\": {}, \"p50_us\": {}, \"p99_us\": {}, \"p999_us\": {}, \"loadgen_cpu_pct\": {}, \"server_cpu_pct\": {}, \"server_cpu_us_per_op\": {}, \"other_cpu_pct\": {}, \"runs\": [{}]}}",
                quoted(w.name()),
                num(r.med(s, w, |x| x.rate)),
                num(r.med(s, w, |x| x.mb_per_s)),
                num(headline / reference_value),
                num(r.med(s, w, |x| x.p50_us)),
                num(r.med(s, w, |x| x.p99_us)),
                num(r.med(s, w, |x| x.p999_us)),
                num(r.med(s, w, |x| x.cpu_pct)),
                num(r.med(s, w, |x| x.server_cpu_pct)),
                num(r.med(s, w, server_us_per_op)),
                num(r.med(s, w, other_cpu)),
                run_json.join(", ")
            ));
        }
        if workloads.contains(&Workload::Idle) && s.supports(Workload::Idle) {
            let idle: Vec<String> = args
                .idle_connections
                .iter()
                .filter_map(|&n| {
                    let runs = r.idle.get(&(s, n))?;
                    let runs_json: Vec<String> = runs.iter().map(IdleResult::json).collect();
                    Some(format!(
                        "{{\"requested\": {n}, \"kib_per_conn\": {}, \"ratio_to_tokio_tungstenite\": {}, \"runs\": [{}]}}",
                        num(r.idle_kib(s, n)),
                        num(r.idle_kib(s, n) / r.idle_kib(reference, n)),
                        runs_json.join(", ")
                    ))
                })
                .collect();
            entries.push(format!("      \"idle\": [{}]", idle.join(", ")));
        }
        servers.push(format!(
            "    {}: {{\n      \"label\": {},\n{}\n    }}",
            quoted(s.key()),
            quoted(s.label()),
            entries.join(",\n")
        ));
    }
    format!(
        "{{\n  \"benchmark\": \"wshd echo comparison (wshd-bench run)\",\n  \"unix_time\": {unix},\n  \
         \"wshd_binary\": {{\"path\": {}, \"mtime_unix\": {wshd_mtime}}},\n  \"wshd_deflate_config\": {},\n  \
         \"cpus\": {},\n  \"cpu_model\": {},\n  \"pinning\": {},\n  \"rlimit_nofile\": [{}, {}],\n  \"rlimit_note\": {},\n  \
         \"seconds\": {},\n  \"repetitions\": {},\n  \"statistic\": \"median of repetitions\",\n  \
         \"workloads\": {{\"rtt1\": {{\"connections\": 1, \"message_bytes\": {}}}, \"rtt100\": {{\"connections\": {}, \"message_bytes\": {}}}, \
         \"throughput\": {{\"connections\": {}, \"message_bytes\": {}, \"window\": {}, \"mb\": \"echoed payload bytes received per second / 10^6\"}}, \
         \"handshakes\": {{\"clients\": {}, \"cycle\": \"TCP connect, HTTP upgrade, close frame both ways, server FIN\"}}, \
         \"idle\": {{\"counts\": [{}], \"method\": \"fresh server, warm-up connection, VmRSS before/after opening the connections, 1 s settle\"}}}},\n  \
         \"reference\": \"tokio-tungstenite\",\n  \"servers\": {{\n{}\n  }}\n}}\n",
        quoted(&wshd_bin.display().to_string()),
        quoted(args.wshd_deflate_config.as_deref().unwrap_or("")),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        quoted(&cpu_model),
        quoted(placement),
        nofile.0,
        nofile.1,
        nofile_note.map_or("null".into(), quoted),
        args.seconds,
        args.repetitions,
        args.size,
        args.rtt_connections,
        args.size,
        args.throughput_connections,
        args.throughput_size,
        args.window,
        args.handshake_clients,
        args.idle_connections.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        servers.join(",\n")
    )
}
