//! `cluster`: the scale-out benchmark (issue 17). In one run it starts a private
//! `redis-server` on a free port (no persistence), three release `wshd` nodes serving
//! `fanout_wsh` with `[broker] url` pointing at it, and a fourth node without a broker, then
//! runs `fanout-load` (one publisher, N subscribers, one thread) against four layouts in
//! turn:
//!
//! 1. one node without a broker (the single-process baseline: no Redis at all);
//! 2. one node with the Redis broker (node 1: the publisher and every subscriber there);
//! 3. three nodes, subscribers spread evenly, the publisher on node 1: same-node (node 1)
//!    and cross-node (nodes 2 and 3) deliveries reported apart;
//! 4. every subscriber cross-node (nodes 2 and 3), the publisher on node 1: the cross-node
//!    throughput compared with the single node's;
//! 5. as 3, with logged publishes (`publish_text_with_id`: one `EVALSHA` per publish
//!    appends to the channel's Redis stream and publishes; the origin node delivers them
//!    when they come back from Redis, like the others).
//!
//! Each layout has a fixed offered rate phase (`--rate` deliveries/s) and a max-throughput
//! phase (the publisher keeps at most `--window` messages in flight beyond the slowest
//! subscriber's receipts: as fast as delivery to every subscriber keeps up). The publisher writes its send time (this machine's monotonic clock) into each
//! message and the subscribers, in the same process, compare it with their receive time.
//! Redis commands per publish come from Redis's `INFO commandstats` over each measured
//! window (`fanout-load --redis-port`). Prints a markdown table ([`crate::cluster_report`])
//! and writes `target/bench/cluster.json`. Every wait is bounded; every child is killed
//! when the run ends or fails (and a Ctrl-C at the terminal reaches them: same process
//! group).

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster_layout::{ClusterArgs, LAYOUTS, Layout, Measured};
use crate::fanout::collect;
use crate::run::{Guard, free_port, quoted, wait_for_listener};
use crate::{BoxError, cpu, redis_info};

/// The build command that produces everything `cluster` needs.
pub(crate) const BUILD_COMMAND: &str = "cargo build --release -p wshd -p wshd-bench -p fanout_wsh";

/// The longest a server may take to start (listen, be ready, answer `PING`).
const START_LIMIT: Duration = Duration::from_secs(15);

/// A private `redis-server` on a free loopback port, killed when dropped.
pub(crate) struct RedisServer {
    guard: Guard,
    pub(crate) port: u16,
    /// `redis_version` of `INFO server`.
    pub(crate) version: String,
}

impl RedisServer {
    fn start(temp: &Path) -> Result<RedisServer, BoxError> {
        let port = free_port()?;
        let log = fs::File::create(temp.join("redis.log"))?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start redis-server (apt-get install redis-server): {e}"))?;
        let mut guard = Guard { child };
        let deadline = Instant::now() + START_LIMIT;
        while redis_info::command(port, "PING").ok().as_deref() != Some("PONG") {
            if let Some(status) = guard.child.try_wait()? {
                return Err(format!("redis-server exited at start: {status}").into());
            }
            if Instant::now() >= deadline {
                return Err(
                    format!("redis-server did not answer PING on port {port} in {START_LIMIT:?}").into()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let info = redis_info::command(port, "INFO server")?;
        let version = info.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or("?").to_owned();
        Ok(RedisServer { guard, port, version })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.guard.child.id()
    }
}

/// A running wshd node serving `/fanout`.
pub(crate) struct Node {
    guard: Guard,
    addr: SocketAddr,
}

impl Node {
    /// Starts a node (linked to Redis on `broker` when given) and waits until `/readyz` says
    /// ready (with a broker: connected to Redis).
    fn start(rig: &Rig, name: &str, broker: Option<u16>, workers: u32) -> Result<Node, BoxError> {
        let (port, admin) = (free_port()?, free_port()?);
        let dir = rig.handlers.to_str().ok_or("the temporary directory is not UTF-8")?;
        let broker =
            broker.map_or(String::new(), |p| format!("\n[broker]\nurl = \"redis://127.0.0.1:{p}/0\"\n"));
        let config = rig.temp.join(format!("{name}.toml"));
        fs::write(
            &config,
            format!(
                "# Written by wshd-bench cluster.\n[server]\nlisten = [\"127.0.0.1:{port}\"]\nadmin_listen = \"127.0.0.1:{admin}\"\n\
                 max_connections = 0\nworkers = {workers}\n\n[handlers]\ndir = {}\nrecursive = false\n\n[log]\nlevel = \"warn\"\n{broker}",
                quoted(dir)
            ),
        )?;
        let log = fs::File::create(rig.temp.join(format!("{name}.log")))?;
        let child = Command::new(&rig.wshd_bin)
            .arg("-c")
            .arg(&config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let mut guard = Guard { child };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for_listener(&mut guard.child, name, addr)?;
        wait_ready(&mut guard, name, SocketAddr::from(([127, 0, 0, 1], admin)))?;
        Ok(Node { guard, addr })
    }

    fn url(&self) -> String {
        format!("ws://{}/fanout", self.addr)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.guard.child.id()
    }
}

/// Waits (bounded) until the node's `/readyz` answers 200.
fn wait_ready(guard: &mut Guard, name: &str, admin: SocketAddr) -> Result<(), BoxError> {
    let deadline = Instant::now() + START_LIMIT;
    loop {
        if let Some(status) = guard.child.try_wait()? {
            return Err(format!("{name} exited at start: {status}").into());
        }
        if http_status(admin, "/readyz").is_ok_and(|s| s == 200) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("{name}'s /readyz did not answer 200 in {START_LIMIT:?}").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The status of `GET path` on `addr` (HTTP/1.1, one request).
fn http_status(addr: SocketAddr, path: &str) -> Result<u16, BoxError> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head)?;
    let text = String::from_utf8_lossy(&head[..n]);
    text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| "not an HTTP answer".into())
}

/// Everything running, and where.
struct Rig {
    me: PathBuf,
    wshd_bin: PathBuf,
    temp: PathBuf,
    handlers: PathBuf,
}

/// CPU time so far of each (name, pid).
fn cpu_now(pids: &[(String, u32)]) -> Vec<f64> {
    pids.iter()
        .map(|(_, pid)| cpu::process_cpu_with_exited(*pid).map_or(f64::NAN, |d| d.as_secs_f64()))
        .collect()
}

/// Runs `fanout-load` for `layout` (bounded) and measures the processes' CPU meanwhile.
fn run_layout(
    rig: &Rig,
    args: &ClusterArgs,
    nodes: &[Node],
    redis: &RedisServer,
    layout: &Layout,
) -> Result<Measured, BoxError> {
    let url = |i: usize| nodes.get(i).map(Node::url).ok_or("no such node");
    let sub_urls: Vec<String> = layout.subscribers.iter().map(|&i| url(i)).collect::<Result<_, _>>()?;
    let groups: Vec<String> = layout.groups.iter().map(usize::to_string).collect();
    let mut cmd = Command::new(&rig.me);
    cmd.arg("fanout-load")
        .args(["--url", &url(layout.publisher)?])
        .args(["--sub-urls", &sub_urls.join(",")])
        .args(["--sub-groups", &groups.join(",")])
        .args(["--subscribers", &args.subscribers.to_string()])
        .args(args.phases().to_args())
        .args(["--redis-port", &redis.port.to_string()])
        .arg("--pace-slowest");
    if layout.logged {
        cmd.arg("--logged");
    }
    let mut pids: Vec<(String, u32)> =
        nodes.iter().enumerate().map(|(i, n)| (format!("node {}", i + 1), n.pid())).collect();
    if let Some(last) = pids.last_mut() {
        last.0 = "node without broker".into();
    }
    pids.push(("redis-server".into(), redis.pid()));
    let every: Vec<String> = pids.iter().map(|(_, pid)| pid.to_string()).collect();
    cmd.args(["--cpu-pids", &every.join(",")]);
    let before = cpu_now(&pids);
    let bound = Duration::from_secs_f64(
        60.0 + args.subscribers as f64 / 100.0 + 2.0 * (args.warmup + args.seconds + 25.0),
    );
    let outcome = collect(cmd, &rig.temp, bound)?;
    let after = cpu_now(&pids);
    let cpu =
        pids.into_iter().zip(before.iter().zip(after)).map(|((name, _), (b, a))| (name, a - b)).collect();
    Ok(Measured { outcome, cpu })
}

/// Runs the whole benchmark.
pub(crate) fn run(args: &ClusterArgs) -> Result<(), BoxError> {
    args.check()?;
    let release_dir = std::path::absolute(&args.release_dir)?;
    let bench_dir = std::path::absolute(&args.bench_dir)?;
    let (wshd_bin, plugin) = (release_dir.join("wshd"), release_dir.join("libfanout_wsh.so"));
    for needed in [&wshd_bin, &plugin] {
        if !needed.is_file() {
            return Err(
                format!("{} not found; build it first with:\n  {BUILD_COMMAND}", needed.display()).into()
            );
        }
    }
    let ((soft, hard), note) = crate::procinfo::raise_nofile(args.subscribers as u64 * 2 + 1024);
    eprintln!(
        "[cluster] RLIMIT_NOFILE (inherited): soft {soft}, hard {hard}{}",
        note.map(|n| format!(" ({n})")).unwrap_or_default()
    );
    fs::create_dir_all(&bench_dir)?;
    let temp = std::env::temp_dir().join(format!("wshd-bench-cluster-{}", std::process::id()));
    let handlers = temp.join("handlers");
    fs::create_dir_all(&handlers)?;
    // A private copy: a rebuild during the run must not hot-reload the subject.
    fs::copy(&plugin, handlers.join("libfanout_wsh.so"))?;
    let rig = Rig { me: std::env::current_exe()?, wshd_bin, temp: temp.clone(), handlers };
    let result = measure(&rig, args, &bench_dir);
    if result.is_ok() {
        let _ = fs::remove_dir_all(&temp);
    } else {
        eprintln!("[cluster] the servers' logs are kept in {}", temp.display());
    }
    result
}

/// Starts Redis and the nodes, runs every layout, prints the table and writes the JSON.
fn measure(rig: &Rig, args: &ClusterArgs, bench_dir: &Path) -> Result<(), BoxError> {
    let started = Instant::now();
    let redis = RedisServer::start(&rig.temp)?;
    eprintln!("[cluster] redis-server {} on port {} (no persistence)", redis.version, redis.port);
    let mut nodes = Vec::new();
    for i in 1..=3 {
        nodes.push(Node::start(rig, &format!("node{i}"), Some(redis.port), args.workers)?);
    }
    nodes.push(Node::start(rig, "node-no-broker", None, args.workers)?);
    eprintln!("[cluster] nodes: {}", nodes.iter().map(|n| n.addr.to_string()).collect::<Vec<_>>().join(", "));
    let mut results = Vec::new();
    for layout in &LAYOUTS {
        eprintln!("[cluster] {} ({} subscribers)", layout.label, args.subscribers);
        let measured = run_layout(rig, args, &nodes, &redis, layout)?;
        if let Some(f) = &measured.outcome.failure {
            eprintln!("[cluster] {} FAILED: {f}", layout.key);
        }
        results.push(measured);
    }
    // The floor under a cross-node delivery: Redis pub/sub alone, at the fixed-rate phase's
    // publishes/s for as long.
    let per_s = args.rate / args.subscribers as f64;
    let count = (per_s * args.seconds).ceil().clamp(10.0, 100_000.0) as u32;
    eprintln!("[cluster] Redis pub/sub alone: {count} messages at {per_s:.0}/s");
    let mut probe = redis_info::pubsub_latencies(redis.port, count, per_s)?;
    let redis_probe = crate::fanout_load::quantiles_us(&mut probe);
    let context = crate::cluster_report::Context { args, redis_version: redis.version.clone(), redis_probe };
    drop(nodes);
    drop(redis);
    println!("{}", crate::cluster_report::table(&context, &results));
    let out = bench_dir.join("cluster.json");
    fs::write(&out, crate::cluster_report::json(&context, &results))?;
    eprintln!("[cluster] done in {:.0} s; wrote {}", started.elapsed().as_secs_f64(), out.display());
    Ok(())
}
