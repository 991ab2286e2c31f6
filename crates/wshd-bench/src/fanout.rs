//! `fanout`: the fan-out comparison. For every subscriber count and every server in turn —
//! wshd serving the `fanout_wsh` plugin (host rooms), Node `ws`, Python `websockets`
//! (`broadcast()`) and a tokio-tungstenite broadcast server — it starts a fresh server, runs
//! `fanout-load` against it (another process: one publisher, N subscribers), and reports
//! deliveries/s at saturation, publish→receive p50/p99 at a fixed rate, the server's CPU per
//! 1M deliveries, its memory per subscriber, and every lost or misordered message. It prints a
//! table and writes `target/bench/fanout.json`.
//!
//! Node's `ws` is installed into `<bench dir>/node_modules` with npm, Python's `websockets`
//! into a venv under `<bench dir>`, when missing; a peer that cannot be installed is skipped
//! with the reason printed. CPU placement is `run`'s: servers on the first allowed CPU, the
//! client on the second.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::run::{Guard, Placement, command, free_port, group, num, on_path, quoted, wait_for_listener};
use crate::{BoxError, procinfo};

/// The build command that produces everything `fanout` needs.
pub(crate) const BUILD_COMMAND: &str = "cargo build --release -p wshd -p wshd-bench -p fanout_wsh";

/// A server family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub(crate) enum Family {
    /// wshd serving `fanout_wsh` (once per `--wshd-workers` value).
    Wshd,
    /// Node `ws` 8 with a broadcast loop.
    NodeWs,
    /// Python `websockets` with `broadcast()`.
    PythonWebsockets,
    /// tokio-tungstenite 0.30 with `tokio::sync::broadcast`.
    TokioTungstenite,
}

/// Options of `fanout`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct FanoutArgs {
    /// Subscriber counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    pub(crate) subscribers: Vec<usize>,
    /// Servers, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "wshd,node-ws,python-websockets,tokio-tungstenite"
    )]
    pub(crate) servers: Vec<Family>,
    /// wshd's `workers` settings to measure, comma-separated (0, 1, 2, …, auto). Rooms are per
    /// worker process until they span workers, so only 0 (one process) and 1 see every
    /// subscriber in one room.
    #[arg(long, value_delimiter = ',', default_value = "0,1")]
    pub(crate) wshd_workers: Vec<String>,
    /// Fixed-rate steps for the latency figures, deliveries/s, comma-separated (the goal is
    /// judged at the first).
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
    /// Message bytes (text; at least 32).
    #[arg(long, default_value_t = 64)]
    pub(crate) size: usize,
    /// Publish binary messages instead of text.
    #[arg(long)]
    pub(crate) binary: bool,
    /// Where `wshd`, `libfanout_wsh.so` and `wshd-bench` are.
    #[arg(long, default_value = "target/release")]
    pub(crate) release_dir: PathBuf,
    /// Where the peers' packages are installed and the JSON is written.
    #[arg(long, default_value = "target/bench")]
    pub(crate) bench_dir: PathBuf,
    /// The peer scripts.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/peers"))]
    pub(crate) peers_dir: PathBuf,
    /// Do not pin processes to CPUs.
    #[arg(long)]
    pub(crate) no_pin: bool,
}

/// One server configuration under test.
#[derive(Debug, Clone)]
struct Subject {
    family: Family,
    /// wshd's `workers` value.
    workers: String,
    key: String,
    label: String,
}

/// How the peers run (what setup found).
struct Setup {
    me: PathBuf,
    wshd_bin: PathBuf,
    handlers_dir: PathBuf,
    temp: PathBuf,
    node_modules: PathBuf,
    python: PathBuf,
    placement: Placement,
}

/// Runs `cmd` with its output into `log`, at most `bound`; its exit success.
fn run_logged(mut cmd: Command, log: &Path, bound: Duration) -> Result<bool, BoxError> {
    let file = fs::File::create(log)?;
    let mut child = cmd.stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file).spawn()?;
    let deadline = Instant::now() + bound;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status.success());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn last_lines(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(3).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" / ")
}

/// Installs `ws@8` under the bench dir when missing; its version, or why not.
fn setup_node(bench_dir: &Path, temp: &Path) -> Result<String, String> {
    if !on_path("node") || !on_path("npm") {
        return Err("node or npm is not on PATH".into());
    }
    let package = bench_dir.join("node_modules/ws/package.json");
    if !package.is_file() {
        eprintln!("[fanout] installing ws@8 into {} (npm)", bench_dir.display());
        let mut cmd = Command::new("npm");
        cmd.args(["install", "--no-save", "--no-audit", "--no-fund", "--prefix"]).arg(bench_dir).arg("ws@8");
        let log = temp.join("npm.log");
        match run_logged(cmd, &log, Duration::from_secs(240)) {
            Ok(true) if package.is_file() => {}
            Ok(_) => return Err(format!("npm install ws@8 failed: {}", last_lines(&log))),
            Err(e) => return Err(format!("cannot run npm: {e}")),
        }
    }
    let text = fs::read_to_string(&package).map_err(|e| format!("{}: {e}", package.display()))?;
    let version = text.split("\"version\"").nth(1).and_then(|rest| rest.split('"').nth(1)).unwrap_or("?");
    Ok(version.to_owned())
}

/// Makes a venv with `websockets` under the bench dir when missing; its version, or why not.
fn setup_python(bench_dir: &Path, temp: &Path) -> Result<String, String> {
    let venv = bench_dir.join("venv");
    let python = venv.join("bin/python");
    let version = || {
        let out = Command::new(&python)
            .args(["-c", "import websockets, websockets.asyncio.server; print(websockets.__version__)"])
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    if let Some(v) = version() {
        return Ok(v);
    }
    let log = temp.join("pip.log");
    if !python.is_file() {
        eprintln!("[fanout] creating a venv at {}", venv.display());
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "venv"]).arg(&venv);
        if !run_logged(cmd, &log, Duration::from_secs(120)).unwrap_or(false) {
            return Err(format!("python3 -m venv failed: {}", last_lines(&log)));
        }
    }
    eprintln!("[fanout] installing websockets into {} (pip)", venv.display());
    let mut cmd = Command::new(&python);
    cmd.args(["-m", "pip", "install", "--quiet", "websockets>=13"]);
    if !run_logged(cmd, &log, Duration::from_secs(240)).unwrap_or(false) {
        return Err(format!("pip install websockets failed: {}", last_lines(&log)));
    }
    version().ok_or_else(|| "websockets installed but not importable".into())
}

/// The subjects to measure: the families asked for whose setup worked (skips printed).
fn subjects(args: &FanoutArgs, temp: &Path) -> Vec<Subject> {
    let mut out = Vec::new();
    for &family in &args.servers {
        let subject = |key: String, label: String, workers: String| Subject { family, workers, key, label };
        match family {
            Family::Wshd => {
                for w in &args.wshd_workers {
                    let what = match w.as_str() {
                        "0" => "one process".to_owned(),
                        "auto" => "a master + one worker per CPU; rooms per worker".to_owned(),
                        n => format!("a master + {n} worker(s); rooms per worker"),
                    };
                    out.push(subject(
                        format!("wshd-w{w}"),
                        format!("wshd, workers = {w} ({what})"),
                        w.clone(),
                    ));
                }
            }
            Family::NodeWs => match setup_node(&args.bench_dir, temp) {
                Ok(v) => out.push(subject(
                    "node-ws".into(),
                    format!("Node {} ws {v} (one thread)", node_version()),
                    String::new(),
                )),
                Err(e) => eprintln!("[fanout] SKIPPING Node ws: {e}"),
            },
            Family::PythonWebsockets => match setup_python(&args.bench_dir, temp) {
                Ok(v) => out.push(subject(
                    "python-websockets".into(),
                    format!("Python websockets {v} broadcast() (one thread)"),
                    String::new(),
                )),
                Err(e) => eprintln!("[fanout] SKIPPING Python websockets: {e}"),
            },
            Family::TokioTungstenite => out.push(subject(
                "tokio-tungstenite".into(),
                "tokio-tungstenite 0.30 + tokio broadcast (multi-thread runtime)".into(),
                String::new(),
            )),
        }
    }
    out
}

fn node_version() -> String {
    Command::new("node")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// A running server and its URL.
struct Server {
    guard: Guard,
    url: String,
}

/// Starts a fresh `subject` server on a new port and waits until it listens.
fn start_server(setup: &Setup, args: &FanoutArgs, subject: &Subject) -> Result<Server, BoxError> {
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let cpu = setup.placement.server_cpu();
    let mut cmd = match subject.family {
        Family::Wshd => {
            let workers = match subject.workers.as_str() {
                "auto" => "workers = \"auto\"".to_owned(),
                n => format!(
                    "workers = {}",
                    n.parse::<u32>().map_err(|_| format!("bad --wshd-workers {n:?}"))?
                ),
            };
            let config = setup.temp.join(format!("fanout-{port}.toml"));
            let dir = setup.handlers_dir.to_str().ok_or("the temporary directory is not UTF-8")?;
            fs::write(
                &config,
                format!(
                    "# Written by wshd-bench fanout.\n[server]\nlisten = [\"127.0.0.1:{port}\"]\nmax_connections = 0\n{workers}\n\n\
                     [handlers]\ndir = {}\nrecursive = false\n\n[log]\nlevel = \"warn\"\n",
                    quoted(dir)
                ),
            )?;
            let mut c = command(cpu, &setup.wshd_bin);
            c.arg("-c").arg(config);
            c
        }
        Family::NodeWs => {
            let mut c = command(cpu, Path::new("node"));
            c.arg(args.peers_dir.join("fanout_ws.cjs")).arg(port.to_string()).arg(&setup.node_modules);
            c
        }
        Family::PythonWebsockets => {
            let mut c = command(cpu, &setup.python);
            c.arg(args.peers_dir.join("fanout_websockets.py")).arg(port.to_string());
            c
        }
        Family::TokioTungstenite => {
            let mut c = command(cpu, &setup.me);
            c.arg("fanout-tt").arg("--addr").arg(addr.to_string());
            c
        }
    };
    let log = fs::File::create(setup.temp.join(format!("{}-{port}.log", subject.key)))?;
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log).spawn()?;
    let mut guard = Guard { child };
    wait_for_listener(&mut guard.child, &subject.key, addr)?;
    Ok(Server { guard, url: format!("ws://{addr}/fanout") })
}

/// `key=value` fields of one output line.
type Fields = BTreeMap<String, String>;

fn fields(line: &str) -> Fields {
    line.split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn get(f: &Fields, key: &str) -> f64 {
    f.get(key).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

/// What one server at one subscriber count gave.
#[derive(Default)]
struct Outcome {
    /// `PHASE` lines: the fixed rates, then saturation.
    phases: Vec<Fields>,
    result: Fields,
    /// Why the measurement failed, if it did.
    failure: Option<String>,
}

impl Outcome {
    fn phase(&self, name: &str, target: f64) -> Option<&Fields> {
        self.phases.iter().find(|p| {
            p.get("name").map(String::as_str) == Some(name) && (get(p, "target") - target).abs() < 0.5
        })
    }

    fn saturation(&self) -> Option<&Fields> {
        self.phase("saturation", 0.0)
    }

    fn deliveries_per_s(&self) -> f64 {
        self.saturation().map_or(f64::NAN, |p| get(p, "per_s"))
    }

    fn cpu_s_per_million(&self) -> f64 {
        self.saturation().map_or(f64::NAN, |p| get(p, "server_cpu_s") / get(p, "deliveries") * 1e6)
    }

    fn kib_per_subscriber(&self) -> f64 {
        (get(&self.result, "rss_joined_kib") - get(&self.result, "rss_idle_kib"))
            / get(&self.result, "subscribers")
    }

    fn latency(&self, rate: f64, key: &str) -> f64 {
        self.phase("rate", rate).map_or(f64::NAN, |p| get(p, key))
    }

    /// Lost + misordered messages and failed subscribers; 0 when all arrived in order.
    fn faults(&self) -> f64 {
        get(&self.result, "lost") + get(&self.result, "misordered") + get(&self.result, "errors")
    }
}

/// Runs `fanout-load` against `server` (bounded) and parses its lines.
fn run_load(setup: &Setup, args: &FanoutArgs, server: &Server, n: usize) -> Result<Outcome, BoxError> {
    let rates: Vec<String> = args.rates.iter().map(|r| format!("{r}")).collect();
    let mut cmd = command(setup.placement.other_cpu(), &setup.me);
    cmd.arg("fanout-load")
        .arg("--url")
        .arg(&server.url)
        .args(["--subscribers", &n.to_string(), "--size", &args.size.to_string()])
        .args(["--rates", &rates.join(","), "--window", &args.window.to_string()])
        .args(["--warmup", &args.warmup.to_string(), "--seconds", &args.seconds.to_string()])
        .arg("--server-pid")
        .arg(server.guard.child.id().to_string());
    if args.binary {
        cmd.arg("--binary");
    }
    let stdout_path = setup.temp.join("fanout-load.out");
    let stderr_path = setup.temp.join("fanout-load.err");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout_path)?)
        .stderr(fs::File::create(&stderr_path)?)
        .spawn()?;
    let phases = args.rates.len() as f64 + 1.0;
    let bound =
        Duration::from_secs_f64(120.0 + n as f64 / 100.0 + phases * (args.warmup + args.seconds + 25.0));
    let deadline = Instant::now() + bound;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = fs::read_to_string(&stdout_path)?;
    let mut outcome = Outcome::default();
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("PHASE ") {
            outcome.phases.push(fields(rest));
        } else if let Some(rest) = line.strip_prefix("RESULT ") {
            outcome.result = fields(rest);
        }
    }
    let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
    for line in stderr.lines() {
        eprintln!("    {line}");
    }
    outcome.failure = match status {
        None => Some(format!("the client did not finish in {bound:?}")),
        Some(s) if !s.success() => Some(stderr.lines().last().unwrap_or("the client failed").to_owned()),
        Some(_) if outcome.result.is_empty() => Some("no RESULT line from the client".into()),
        Some(_) => None,
    };
    Ok(outcome)
}

/// Every subject at every subscriber count, each on a fresh server.
fn measure_all(setup: &Setup, args: &FanoutArgs, subjects: &[Subject]) -> BTreeMap<(usize, String), Outcome> {
    let mut results = BTreeMap::new();
    for &n in &args.subscribers {
        for s in subjects {
            eprintln!("[fanout] {} with {} subscribers", s.key, group(n as f64));
            let outcome = match start_server(setup, args, s) {
                Ok(server) => {
                    let o = run_load(setup, args, &server, n)
                        .unwrap_or_else(|e| Outcome { failure: Some(e.to_string()), ..Outcome::default() });
                    drop(server);
                    o
                }
                Err(e) => {
                    Outcome { failure: Some(format!("cannot start the server: {e}")), ..Outcome::default() }
                }
            };
            if let Some(f) = &outcome.failure {
                eprintln!("[fanout] {} with {n} subscribers FAILED: {f}", s.key);
            }
            results.insert((n, s.key.clone()), outcome);
        }
    }
    results
}

fn fmt(x: f64, decimals: usize) -> String {
    if !x.is_finite() {
        "—".into()
    } else if decimals == 0 {
        group(x)
    } else {
        format!("{x:.decimals$}")
    }
}

/// The best peer (not wshd) value of a column: the highest when `higher_is_better`.
fn best_peer(
    results: &BTreeMap<(usize, String), Outcome>,
    subjects: &[Subject],
    n: usize,
    f: impl Fn(&Outcome) -> f64,
    higher_is_better: bool,
) -> Option<(f64, String)> {
    subjects
        .iter()
        .filter(|s| s.family != Family::Wshd)
        .filter_map(|s| Some((f(results.get(&(n, s.key.clone()))?), s.key.clone())))
        .filter(|(v, _)| v.is_finite())
        .reduce(|a, b| if (b.0 > a.0) == higher_is_better { b } else { a })
}

/// The columns: heading, value, decimals, and for the ratio row whether higher is better
/// (`None`: no ratio).
type Column = (String, Box<dyn Fn(&Outcome) -> f64>, usize, Option<bool>);

fn columns(args: &FanoutArgs) -> Vec<Column> {
    let seconds = args.seconds;
    let mut cols: Vec<Column> =
        vec![("deliveries/s (saturation)".into(), Box::new(Outcome::deliveries_per_s), 0, Some(true))];
    for &rate in &args.rates {
        let at = group(rate);
        cols.push((
            format!("p50 µs at {at}/s"),
            Box::new(move |o: &Outcome| o.latency(rate, "p50_us")),
            0,
            Some(false),
        ));
        cols.push((
            format!("p99 µs at {at}/s"),
            Box::new(move |o: &Outcome| o.latency(rate, "p99_us")),
            0,
            Some(false),
        ));
        cols.push((
            format!("delivered/s at {at}/s"),
            Box::new(move |o: &Outcome| o.phase("rate", rate).map_or(f64::NAN, |p| get(p, "per_s"))),
            0,
            None,
        ));
    }
    cols.push((
        "server CPU s per 1M deliveries".into(),
        Box::new(Outcome::cpu_s_per_million),
        2,
        Some(false),
    ));
    cols.push(("KiB per subscriber".into(), Box::new(Outcome::kib_per_subscriber), 1, Some(false)));
    cols.push((
        "client CPU % (saturation)".into(),
        Box::new(move |o: &Outcome| {
            o.saturation().map_or(f64::NAN, |p| get(p, "loadgen_cpu_s") / seconds * 100.0)
        }),
        0,
        None,
    ));
    cols
}

/// The goal for one wshd subject: ≥ 1.5× the best peer's deliveries/s and a lower
/// p99 than every peer.
fn goal(
    results: &BTreeMap<(usize, String), Outcome>,
    subjects: &[Subject],
    n: usize,
    s: &Subject,
    rate: f64,
) -> String {
    let Some(o) = results.get(&(n, s.key.clone())) else { return String::new() };
    let best_rate = best_peer(results, subjects, n, Outcome::deliveries_per_s, true);
    let best_p99 = best_peer(results, subjects, n, |x: &Outcome| x.latency(rate, "p99_us"), false);
    let (Some((r, _)), Some((p, _))) = (best_rate, best_p99) else {
        return format!("\n{}: no peer to compare with.\n", s.key);
    };
    let ratio = o.deliveries_per_s() / r;
    let p99 = o.latency(rate, "p99_us");
    let met = ratio >= 1.5 && p99 < p && o.faults() == 0.0;
    format!(
        "\nGoal for {} ({} subscribers): {:.2}× the best peer's deliveries/s (≥ 1.5× wanted), p99 {:.0} µs vs the best peer's {:.0} µs: {}.\n",
        s.key,
        group(n as f64),
        ratio,
        p99,
        p,
        if met { "MET" } else { "NOT MET" }
    )
}

fn table(args: &FanoutArgs, results: &BTreeMap<(usize, String), Outcome>, subjects: &[Subject]) -> String {
    let cols = columns(args);
    let mut t = String::new();
    let mut goals = Vec::new();
    for &n in &args.subscribers {
        let _ = writeln!(
            t,
            "\n{} subscribers, {} B {} messages\n",
            group(n as f64),
            args.size,
            if args.binary { "binary" } else { "text" }
        );
        let heads: Vec<&str> = cols.iter().map(|c| c.0.as_str()).collect();
        let _ = writeln!(t, "| server | {} | lost / misordered / failed subscribers |", heads.join(" | "));
        let _ = writeln!(t, "|---|{}---|", "---|".repeat(cols.len()));
        for s in subjects {
            let Some(o) = results.get(&(n, s.key.clone())) else { continue };
            let cells: Vec<String> = cols.iter().map(|(_, f, d, _)| fmt(f(o), *d)).collect();
            let faults = match &o.failure {
                Some(e) => format!("**FAILED**: {e}"),
                None if o.faults() > 0.0 => format!(
                    "**{} / {} / {}** (LOSES MESSAGES)",
                    get(&o.result, "lost"),
                    get(&o.result, "misordered"),
                    get(&o.result, "errors")
                ),
                None => format!("0 / 0 / 0 of {} × {}", group(get(&o.result, "checked")), group(n as f64)),
            };
            let _ = writeln!(t, "| {} | {} | {faults} |", s.label, cells.join(" | "));
        }
        for s in subjects.iter().filter(|s| s.family == Family::Wshd) {
            let Some(o) = results.get(&(n, s.key.clone())) else { continue };
            let cells: Vec<String> = cols
                .iter()
                .map(|(_, f, _, higher)| match higher.and_then(|h| best_peer(results, subjects, n, f, h)) {
                    Some((best, key)) => format!("{:.2}× ({key})", f(o) / best),
                    None => String::new(),
                })
                .collect();
            let _ = writeln!(t, "| {} ÷ best peer | {} | |", s.key, cells.join(" | "));
            goals.push(goal(results, subjects, n, s, args.rates.first().copied().unwrap_or(f64::NAN)));
        }
        for g in goals.drain(..) {
            let _ = write!(t, "{g}");
        }
    }
    let _ = writeln!(
        t,
        "\nSaturation: at most {} messages in flight beyond the last subscriber's receipts; {} s warm-up + {} s measured per phase; fresh server per row.",
        args.window, args.warmup, args.seconds
    );
    t
}

/// A JSON object of `key=value` fields (numbers as numbers).
fn fields_json(f: &Fields) -> String {
    let items: Vec<String> = f
        .iter()
        .map(|(k, v)| match v.parse::<f64>() {
            Ok(x) if x.is_finite() => format!("{}: {v}", quoted(k)),
            _ => format!("{}: {}", quoted(k), quoted(v)),
        })
        .collect();
    format!("{{{}}}", items.join(", "))
}

fn json(
    args: &FanoutArgs,
    placement: &str,
    results: &BTreeMap<(usize, String), Outcome>,
    subjects: &[Subject],
) -> String {
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut entries = Vec::new();
    for &n in &args.subscribers {
        for s in subjects {
            let Some(o) = results.get(&(n, s.key.clone())) else { continue };
            let phases: Vec<String> = o.phases.iter().map(fields_json).collect();
            entries.push(format!(
                "    {{\"server\": {}, \"label\": {}, \"subscribers\": {n}, \"deliveries_per_s\": {}, \"p50_us\": {}, \"p99_us\": {}, \
                 \"server_cpu_s_per_million_deliveries\": {}, \"kib_per_subscriber\": {}, \"faults\": {}, \"failure\": {}, \
                 \"phases\": [{}], \"result\": {}}}",
                quoted(&s.key),
                quoted(&s.label),
                num(o.deliveries_per_s()),
                num(o.latency(args.rates.first().copied().unwrap_or(f64::NAN), "p50_us")),
                num(o.latency(args.rates.first().copied().unwrap_or(f64::NAN), "p99_us")),
                num(o.cpu_s_per_million()),
                num(o.kib_per_subscriber()),
                num(o.faults()),
                o.failure.as_deref().map_or("null".into(), quoted),
                phases.join(", "),
                fields_json(&o.result)
            ));
        }
    }
    let rates: Vec<String> = args.rates.iter().map(|r| format!("{r}")).collect();
    format!(
        "{{\n  \"benchmark\": \"wshd fan-out comparison (wshd-bench fanout)\",\n  \"unix_time\": {unix},\n  \"cpus\": {},\n  \
         \"pinning\": {},\n  \"message_bytes\": {},\n  \"binary\": {},\n  \"rates_deliveries_per_s\": [{}],\n  \"window\": {},\n  \
         \"warmup_s\": {},\n  \"seconds\": {},\n  \"results\": [\n{}\n  ]\n}}\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        quoted(placement),
        args.size,
        args.binary,
        rates.join(", "),
        args.window,
        args.warmup,
        args.seconds,
        entries.join(",\n")
    )
}

/// Runs the whole comparison.
pub(crate) fn run(args: &FanoutArgs) -> Result<(), BoxError> {
    if args.subscribers.is_empty() || args.servers.is_empty() || args.size < 32 {
        return Err("--subscribers and --servers must not be empty; --size must be at least 32".into());
    }
    let release_dir = std::path::absolute(&args.release_dir)?;
    let bench_dir = std::path::absolute(&args.bench_dir)?;
    let (wshd_bin, plugin) = (release_dir.join("wshd"), release_dir.join("libfanout_wsh.so"));
    for needed in [&wshd_bin, &plugin] {
        if args.servers.contains(&Family::Wshd) && !needed.is_file() {
            return Err(
                format!("{} not found; build it first with:\n  {BUILD_COMMAND}", needed.display()).into()
            );
        }
    }
    let max_n = args.subscribers.iter().copied().max().unwrap_or(0) as u64;
    let ((soft, hard), note) = procinfo::raise_nofile(max_n + 1024);
    eprintln!("[fanout] RLIMIT_NOFILE for every process (inherited): soft {soft}, hard {hard}");
    if let Some(note) = note {
        eprintln!("[fanout] {note}");
    }
    let (placement, placement_text) = Placement::detect(args.no_pin);
    eprintln!("[fanout] pinning: {placement_text}");
    fs::create_dir_all(&bench_dir)?;
    let temp = std::env::temp_dir().join(format!("wshd-bench-fanout-{}", std::process::id()));
    let handlers_dir = temp.join("handlers");
    fs::create_dir_all(&handlers_dir)?;
    if plugin.is_file() {
        // A private copy: a rebuild during the run must not hot-reload the subject.
        fs::copy(&plugin, handlers_dir.join("libfanout_wsh.so"))?;
    }
    let args = FanoutArgs { bench_dir: bench_dir.clone(), ..args.clone() };
    let subjects = subjects(&args, &temp);
    let setup = Setup {
        me: std::env::current_exe()?,
        wshd_bin,
        handlers_dir,
        temp: temp.clone(),
        node_modules: bench_dir.join("node_modules"),
        python: bench_dir.join("venv/bin/python"),
        placement,
    };
    let started = Instant::now();
    let results = measure_all(&setup, &args, &subjects);
    let _ = fs::remove_dir_all(&temp);
    println!("{}", table(&args, &results, &subjects));
    let out = bench_dir.join("fanout.json");
    fs::write(&out, json(&args, &placement_text, &results, &subjects))?;
    eprintln!("[fanout] done in {:.0} s; wrote {}", started.elapsed().as_secs_f64(), out.display());
    Ok(())
}
