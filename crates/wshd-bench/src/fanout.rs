//! `fanout`: the fan-out comparison. For every subscriber count and every server in turn —
//! wshd serving the `fanout_wsh` plugin (host rooms), Node `ws`, Python `websockets`
//! (`broadcast()`) and a tokio-tungstenite broadcast server — it starts a fresh server, runs
//! `fanout-load` against it (another process: one publisher, N subscribers), and reports
//! deliveries/s at saturation, publish→receive p50/p99 at a fixed rate, the server's CPU per
//! 1M deliveries, its memory per subscriber, and every lost or misordered message. It prints a
//! table and writes `target/bench/fanout.json`.
//!
//! Node's `ws` is installed into `<bench dir>/node_modules` with npm, Python's `websockets`
//! into a venv under `<bench dir>`, when missing ([`crate::fanout_peers`]); a peer that cannot
//! be installed is skipped with the reason printed. The table and the JSON are made by
//! [`crate::fanout_report`]. CPU placement is `run`'s: servers on the first allowed CPU, the
//! client on the second.

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fanout_load::Phases;
use crate::run::{Guard, Placement, command, free_port, group, quoted, wait_for_listener};
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
    /// wshd's `workers` settings to measure, comma-separated (0, 1, 2, …, auto): 0 is one
    /// process (like the single-process peers), auto the default deployment (a master and a
    /// worker per CPU, rooms relayed between the workers by the master).
    #[arg(long, value_delimiter = ',', default_value = "0,auto")]
    pub(crate) wshd_workers: Vec<String>,
    /// What is measured, and how long.
    #[command(flatten)]
    pub(crate) phases: Phases,
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
pub(crate) struct Subject {
    pub(crate) family: Family,
    /// wshd's `workers` value.
    pub(crate) workers: String,
    pub(crate) key: String,
    pub(crate) label: String,
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
                        "auto" => "a master + one worker per CPU; rooms relayed by the master".to_owned(),
                        n => format!("a master + {n} worker(s); rooms relayed by the master"),
                    };
                    out.push(subject(
                        format!("wshd-w{w}"),
                        format!("wshd, workers = {w} ({what})"),
                        w.clone(),
                    ));
                }
            }
            Family::NodeWs => match crate::fanout_peers::setup_node(&args.bench_dir, temp) {
                Ok(v) => out.push(subject(
                    "node-ws".into(),
                    format!("Node {} ws {v} (one thread)", crate::fanout_peers::node_version()),
                    String::new(),
                )),
                Err(e) => eprintln!("[fanout] SKIPPING Node ws: {e}"),
            },
            Family::PythonWebsockets => match crate::fanout_peers::setup_python(&args.bench_dir, temp) {
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
pub(crate) type Fields = BTreeMap<String, String>;

fn fields(line: &str) -> Fields {
    line.split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A field as a number (NaN when missing).
pub(crate) fn get(f: &Fields, key: &str) -> f64 {
    f.get(key).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

/// What one server at one subscriber count gave.
#[derive(Default)]
pub(crate) struct Outcome {
    /// `PHASE` lines: the fixed rates, then saturation.
    pub(crate) phases: Vec<Fields>,
    /// `GROUP` lines (several subscriber groups: `cluster`).
    pub(crate) groups: Vec<Fields>,
    /// The `RESULT` line.
    pub(crate) result: Fields,
    /// Why the measurement failed, if it did.
    pub(crate) failure: Option<String>,
}

impl Outcome {
    pub(crate) fn phase(&self, name: &str, target: f64) -> Option<&Fields> {
        self.phases.iter().find(|p| {
            p.get("name").map(String::as_str) == Some(name) && (get(p, "target") - target).abs() < 0.5
        })
    }

    pub(crate) fn saturation(&self) -> Option<&Fields> {
        self.phase("saturation", 0.0)
    }

    pub(crate) fn deliveries_per_s(&self) -> f64 {
        self.saturation().map_or(f64::NAN, |p| get(p, "per_s"))
    }

    pub(crate) fn cpu_s_per_million(&self) -> f64 {
        self.saturation().map_or(f64::NAN, |p| get(p, "server_cpu_s") / get(p, "deliveries") * 1e6)
    }

    pub(crate) fn kib_per_subscriber(&self) -> f64 {
        (get(&self.result, "rss_joined_kib") - get(&self.result, "rss_idle_kib"))
            / get(&self.result, "subscribers")
    }

    pub(crate) fn latency(&self, rate: f64, key: &str) -> f64 {
        self.phase("rate", rate).map_or(f64::NAN, |p| get(p, key))
    }

    /// Lost + misordered messages and failed subscribers; 0 when all arrived in order.
    pub(crate) fn faults(&self) -> f64 {
        get(&self.result, "lost") + get(&self.result, "misordered") + get(&self.result, "errors")
    }
}

/// Runs `fanout-load` against `server` (bounded) and parses its lines.
fn run_load(setup: &Setup, args: &FanoutArgs, server: &Server, n: usize) -> Result<Outcome, BoxError> {
    let mut cmd = command(setup.placement.other_cpu(), &setup.me);
    cmd.arg("fanout-load")
        .arg("--url")
        .arg(&server.url)
        .args(["--subscribers", &n.to_string()])
        .args(args.phases.to_args())
        .arg("--server-pid")
        .arg(server.guard.child.id().to_string());
    let phases = args.phases.rates.len() as f64 + 1.0;
    let bound = Duration::from_secs_f64(
        120.0 + n as f64 / 100.0 + phases * (args.phases.warmup + args.phases.seconds + 25.0),
    );
    collect(cmd, &setup.temp, bound)
}

/// Runs the load client `cmd` (at most `bound`, its output in `temp`) and parses its lines.
pub(crate) fn collect(mut cmd: Command, temp: &Path, bound: Duration) -> Result<Outcome, BoxError> {
    let stdout_path = temp.join("fanout-load.out");
    let stderr_path = temp.join("fanout-load.err");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout_path)?)
        .stderr(fs::File::create(&stderr_path)?)
        .spawn()?;
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
        } else if let Some(rest) = line.strip_prefix("GROUP ") {
            outcome.groups.push(fields(rest));
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

/// Runs the whole comparison.
pub(crate) fn run(args: &FanoutArgs) -> Result<(), BoxError> {
    if args.subscribers.is_empty() || args.servers.is_empty() || args.phases.size < 32 {
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
    println!("{}", crate::fanout_report::table(&args, &results, &subjects));
    let out = bench_dir.join("fanout.json");
    fs::write(&out, crate::fanout_report::json(&args, &placement_text, &results, &subjects))?;
    eprintln!("[fanout] done in {:.0} s; wrote {}", started.elapsed().as_secs_f64(), out.display());
    Ok(())
}
