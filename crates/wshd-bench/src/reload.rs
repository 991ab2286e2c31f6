//! `reload-soak` and `reload-latency`: hot reload of a plugin under load.
//!
//! Both start `wshd` on a private handler directory holding `libversion_wsh.so` (served at
//! `/version`), a copy of `libfixture_version_one.so` or `libfixture_version_two.so` — test
//! plugins that answer every text message `<text>` with `v1: <text>` or `v2: <text>` — and
//! replace that file with the other build by writing a dot-file next to it and renaming it
//! over the old one (what a deploy tool does). wshd's log (level `info`) goes to a file that
//! is read for the `handler loaded` / `handler generation released` events.
//!
//! - `reload-soak`: 100 connections exchange messages continuously (one in flight each) while
//!   the file is replaced 1,000 times, each replacement waiting for its `handler loaded` line
//!   before the next; new short connections are opened throughout. Every reply is checked:
//!   a connection must answer with the version it started on, for its whole life.
//! - `reload-latency`: 100 times, replace the file and then open new connections, one after
//!   the other, until one is served by the new version: file in place → first reply from
//!   the new code.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::time::timeout;

use crate::run::{free_port, quoted};
use crate::wsclient::{ClientOptions, OP_TEXT, Target, WsClient};
use crate::{BoxError, procinfo};

/// The build command for the plugins these benchmarks load.
const BUILD_COMMAND: &str =
    "cargo build --release -p wshd -p wshd-bench -p fixture_version_one -p fixture_version_two";

const VERSIONS: [&str; 2] = ["v1", "v2"];
const BUILDS: [&str; 2] = ["libfixture_version_one.so", "libfixture_version_two.so"];

/// How a new build is put in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Method {
    /// Write a dot-file next to the plugin, then rename it over the plugin (atomic).
    Rename,
    /// Truncate and rewrite the plugin file in place, like `cp NEW PLUGIN`.
    Copy,
}

/// Options of `reload-soak`.
#[derive(Debug, clap::Args)]
pub(crate) struct SoakArgs {
    /// Where `wshd` and the fixture plugins are.
    #[arg(long, default_value = "target/release")]
    pub(crate) release_dir: PathBuf,
    /// Replacements of the plugin file.
    #[arg(long, default_value_t = 1000)]
    pub(crate) reloads: u64,
    /// Long-lived connections exchanging messages throughout.
    #[arg(long, default_value_t = 100)]
    pub(crate) connections: usize,
    /// Pause after each replacement has been loaded, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub(crate) interval_ms: u64,
    /// Pause between two new short-lived connections, in milliseconds.
    #[arg(long, default_value_t = 25)]
    pub(crate) new_connection_interval_ms: u64,
    /// `[handlers] debounce_ms` for wshd [default: wshd's default, 100].
    #[arg(long)]
    pub(crate) debounce_ms: Option<u64>,
    /// How each new build is put in place.
    #[arg(long, value_enum, default_value = "rename")]
    pub(crate) method: Method,
    /// Longest wait for one replacement to be loaded, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) load_timeout: f64,
    /// The JSON report [default: target/bench/reload-soak.json].
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
}

/// Options of `reload-latency`.
#[derive(Debug, clap::Args)]
pub(crate) struct LatencyArgs {
    /// Where `wshd` and the fixture plugins are.
    #[arg(long, default_value = "target/release")]
    pub(crate) release_dir: PathBuf,
    /// Reloads to time.
    #[arg(long, default_value_t = 100)]
    pub(crate) reloads: u64,
    /// Pause between two probe connections, in milliseconds.
    #[arg(long, default_value_t = 1)]
    pub(crate) poll_interval_ms: u64,
    /// Pause after a reload was observed, before the next replacement, in milliseconds.
    #[arg(long, default_value_t = 300)]
    pub(crate) settle_ms: u64,
    /// `[handlers] debounce_ms` for wshd [default: wshd's default, 100].
    #[arg(long)]
    pub(crate) debounce_ms: Option<u64>,
    /// How each new build is put in place.
    #[arg(long, value_enum, default_value = "rename")]
    pub(crate) method: Method,
    /// Longest wait for one reload to be observed, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) timeout: f64,
    /// The JSON report [default: target/bench/reload-latency.json].
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
}

/// Counts of wshd's reload log events, read incrementally from its log file.
struct LogTail {
    file: fs::File,
    offset: u64,
    partial: String,
    loaded: u64,
    released: u64,
    refused: u64,
    /// ERROR/WARN lines (first few kept).
    problems: Vec<String>,
    problem_count: u64,
}

impl LogTail {
    fn open(path: &Path) -> Result<LogTail, BoxError> {
        Ok(LogTail {
            file: fs::File::open(path)?,
            offset: 0,
            partial: String::new(),
            loaded: 0,
            released: 0,
            refused: 0,
            problems: Vec::new(),
            problem_count: 0,
        })
    }

    fn poll(&mut self) -> Result<(), BoxError> {
        self.file.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::new();
        self.file.read_to_end(&mut bytes)?;
        self.offset += bytes.len() as u64;
        self.partial.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            if line.contains("handler loaded") {
                self.loaded += 1;
            } else if line.contains("handler generation released") {
                self.released += 1;
            } else if line.contains("handler refused") {
                self.refused += 1;
            }
            if line.contains(" ERROR ") || line.contains(" WARN ") {
                self.problem_count += 1;
                if self.problems.len() < 10 {
                    self.problems.push(line.trim_end().to_owned());
                }
            }
        }
        Ok(())
    }

    /// Waits until `loaded >= n` (polling every 2 ms), at most `limit`.
    fn wait_loaded(&mut self, n: u64, limit: Duration) -> Result<bool, BoxError> {
        let deadline = Instant::now() + limit;
        loop {
            self.poll()?;
            if self.loaded >= n {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// wshd on a private handler directory with `libversion_wsh.so`.
struct Rig {
    temp: PathBuf,
    file: PathBuf,
    staging: PathBuf,
    builds: [Vec<u8>; 2],
    child: Child,
    target: Target,
    log_path: PathBuf,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.temp);
    }
}

impl Rig {
    fn start(release_dir: &Path, name: &str, debounce_ms: Option<u64>) -> Result<Rig, BoxError> {
        let release_dir = std::path::absolute(release_dir)?;
        let wshd_bin = release_dir.join("wshd");
        let mut builds: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        for (slot, build) in builds.iter_mut().zip(BUILDS) {
            let path = release_dir.join(build);
            *slot = fs::read(&path)
                .map_err(|e| format!("{}: {e}; build it first with:\n  {BUILD_COMMAND}", path.display()))?;
        }
        if !wshd_bin.is_file() {
            return Err(
                format!("{} not found; build it first with:\n  {BUILD_COMMAND}", wshd_bin.display()).into()
            );
        }
        let temp = std::env::temp_dir().join(format!("wshd-bench-{name}-{}", std::process::id()));
        let handlers = temp.join("handlers");
        fs::create_dir_all(&handlers)?;
        let port = free_port()?;
        let config = temp.join("server.toml");
        let debounce = debounce_ms.map(|ms| format!("debounce_ms = {ms}\n")).unwrap_or_default();
        fs::write(
            &config,
            format!(
                "# Written by wshd-bench {name}.\n[server]\nlisten = [\"127.0.0.1:{port}\"]\n\n\
                 [handlers]\ndir = {}\nrecursive = false\n{debounce}\n[log]\nlevel = \"info\"\n",
                quoted(handlers.to_str().ok_or("the temporary directory is not UTF-8")?)
            ),
        )?;
        let log_path = temp.join("wshd.log");
        let log = fs::File::create(&log_path)?;
        let mut rig = Rig {
            file: handlers.join("libversion_wsh.so"),
            staging: handlers.join(".libversion_wsh.so.tmp"),
            temp,
            builds,
            child: Command::new(&wshd_bin)
                .arg("-c")
                .arg(&config)
                .env_remove("RUST_LOG")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", wshd_bin.display()))?,
            target: Target::parse(&format!("ws://127.0.0.1:{port}/version"))?,
            log_path,
        };
        rig.install(0, Method::Rename)?;
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect_timeout(&rig.target.addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = rig.child.try_wait()? {
                return Err(format!("wshd exited: {status}; see {}", rig.log_path.display()).into());
            }
            if Instant::now() >= deadline {
                return Err("wshd is not listening after 15 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(rig)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Puts build `index` in place.
    fn install(&self, index: usize, method: Method) -> Result<(), BoxError> {
        match method {
            Method::Rename => {
                fs::write(&self.staging, &self.builds[index])?;
                fs::rename(&self.staging, &self.file)?;
            }
            Method::Copy => fs::write(&self.file, &self.builds[index])?,
        }
        Ok(())
    }

    fn server_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

fn options(seed: u64) -> ClientOptions {
    ClientOptions { offer_deflate: false, deflate_level: 1, seed }
}

/// Sends `text` and returns the reply text.
async fn exchange(client: &mut WsClient, text: &str, limit: Duration) -> Result<String, BoxError> {
    timeout(limit, client.writer.send(OP_TEXT, text.as_bytes())).await.map_err(|_| "send timed out")??;
    let (opcode, reply) =
        timeout(limit, client.reader.recv()).await.map_err(|_| "no reply (timed out)")??;
    if opcode != OP_TEXT {
        return Err(format!("expected a text reply, got opcode {opcode:#x}").into());
    }
    Ok(String::from_utf8(reply.to_vec()).map_err(|_| "reply is not UTF-8")?)
}

/// The version prefix of a reply to `text` (`v1`/`v2`), or `None` when it is not one.
fn version_of(reply: &str, text: &str) -> Option<&'static str> {
    VERSIONS.into_iter().find(|v| reply.strip_prefix(v).and_then(|r| r.strip_prefix(": ")) == Some(text))
}

fn default_out(name: &str) -> PathBuf {
    Path::new("target/bench").join(name)
}

fn write_report(out: &Path, json: &str) -> Result<(), BoxError> {
    if let Some(dir) = out.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(out, json)?;
    eprintln!("[wshd-bench] wrote {}", out.display());
    Ok(())
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

// ---------------------------------------------------------------------------------------
// reload-soak

/// Counters shared by the client tasks.
#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    /// Replies that were not `<version>: <text>` with the connection's own version.
    failed: AtomicU64,
    /// Long-lived connections that ended with an error.
    dropped: AtomicU64,
    churn_opened: AtomicU64,
    churn_ok: AtomicU64,
    churn_failed: AtomicU64,
    churn_v1: AtomicU64,
    churn_v2: AtomicU64,
}

/// One long-lived connection: its version, and an error if it ended with one.
async fn long_lived(
    id: usize,
    target: Arc<Target>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    mut client: WsClient,
    version: &'static str,
) -> Option<String> {
    let limit = Duration::from_secs(10);
    let mut seq: u64 = 1;
    let mut first_error = None;
    while !stop.load(Ordering::Relaxed) {
        let text = format!("p{id} {seq}");
        counters.sent.fetch_add(1, Ordering::Relaxed);
        match exchange(&mut client, &text, limit).await {
            Ok(reply) => {
                counters.received.fetch_add(1, Ordering::Relaxed);
                if version_of(&reply, &text) != Some(version) {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    if first_error.is_none() {
                        first_error =
                            Some(format!("connection {id} ({version}): {text:?} answered {reply:?}"));
                    }
                }
            }
            Err(e) => {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                return Some(format!("connection {id} to {}: message {seq}: {e}", target.addr));
            }
        }
        seq += 1;
    }
    if let Err(e) = client.close(limit).await {
        counters.dropped.fetch_add(1, Ordering::Relaxed);
        return Some(format!("connection {id}: closing handshake: {e}"));
    }
    first_error
}

/// New short connections until `stop`: open, 3 messages (one version throughout), close.
async fn churn(
    target: Arc<Target>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    pause: Duration,
) -> Vec<String> {
    let limit = Duration::from_secs(10);
    let mut errors = Vec::new();
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        counters.churn_opened.fetch_add(1, Ordering::Relaxed);
        let result = async {
            let mut client = WsClient::open(&target, None, options(1_000_000 + n), limit).await?;
            let mut version = None;
            for k in 0..3 {
                let text = format!("c{n} {k}");
                let reply = exchange(&mut client, &text, limit).await?;
                let v = version_of(&reply, &text).ok_or_else(|| format!("{text:?} answered {reply:?}"))?;
                if *version.get_or_insert(v) != v {
                    return Err::<&str, BoxError>(
                        format!("version changed within a connection: {reply:?}").into(),
                    );
                }
            }
            client.close(limit).await?;
            Ok(version.unwrap_or("?"))
        }
        .await;
        match result {
            Ok(v) => {
                counters.churn_ok.fetch_add(1, Ordering::Relaxed);
                let c = if v == "v1" { &counters.churn_v1 } else { &counters.churn_v2 };
                c.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                counters.churn_failed.fetch_add(1, Ordering::Relaxed);
                if errors.len() < 10 {
                    errors.push(format!("new connection {n}: {e}"));
                }
            }
        }
        tokio::time::sleep(pause).await;
    }
    errors
}

/// What the reload thread observed.
struct ReloadLog {
    confirmed: u64,
    unconfirmed: u64,
    /// (reloads done, RSS KiB, live generations per the log) every 100 reloads.
    samples: Vec<(u64, u64, i64)>,
    /// RSS after the 10th reload (steady state: two generations mapped).
    rss_after_10_kib: Option<u64>,
    seconds: f64,
}

/// Runs `reload-soak`.
pub(crate) fn soak(args: &SoakArgs) -> Result<(), BoxError> {
    if args.connections == 0 || args.reloads == 0 {
        return Err("--connections and --reloads must be at least 1".into());
    }
    let out = match &args.out {
        Some(o) => o.clone(),
        None => default_out("reload-soak.json"),
    };
    let mut rig = Rig::start(&args.release_dir, "soak", args.debounce_ms)?;
    let pid = rig.pid();
    let mut log = LogTail::open(&rig.log_path)?;
    if !log.wait_loaded(1, Duration::from_secs(15))? {
        return Err(format!("wshd did not log `handler loaded`; see {}", rig.log_path.display()).into());
    }
    eprintln!("[wshd-bench] reload-soak: wshd pid {pid} serving {}", rig.target.path);
    let target = Arc::new(rig.target.clone());
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;

    // Open the long-lived connections and learn their version (v1: nothing replaced yet).
    let clients: Vec<WsClient> = runtime.block_on(async {
        let mut clients = Vec::with_capacity(args.connections);
        for id in 0..args.connections {
            let mut c = WsClient::open(&target, None, options(id as u64), Duration::from_secs(10))
                .await
                .map_err(|e| format!("long-lived connection {id}: {e}"))?;
            let text = format!("p{id} 0");
            let reply = exchange(&mut c, &text, Duration::from_secs(10)).await?;
            if version_of(&reply, &text) != Some("v1") {
                return Err::<_, BoxError>(
                    format!("connection {id}: first reply {reply:?}, expected v1").into(),
                );
            }
            clients.push(c);
        }
        Ok(clients)
    })?;
    eprintln!("[wshd-bench] reload-soak: {} long-lived connections open (all v1)", clients.len());

    // Client traffic on this thread's runtime, in the background of the reload loop.
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(id, c)| {
            runtime.spawn(long_lived(
                id,
                Arc::clone(&target),
                Arc::clone(&counters),
                Arc::clone(&stop),
                c,
                "v1",
            ))
        })
        .collect();
    let churn_task = runtime.spawn(churn(
        Arc::clone(&target),
        Arc::clone(&counters),
        Arc::clone(&stop),
        Duration::from_millis(args.new_connection_interval_ms),
    ));
    // Drive the runtime on a thread of its own while this one replaces files.
    let (runtime_done_tx, runtime_done_rx) = tokio::sync::oneshot::channel::<()>();
    let driver = std::thread::spawn(move || {
        runtime.block_on(async {
            let _ = runtime_done_rx.await;
        });
        runtime
    });

    // Warm-up, then the baseline.
    std::thread::sleep(Duration::from_secs(2));
    let warm_sent = counters.sent.load(Ordering::Relaxed);
    let rss_before_kib = procinfo::vm_rss_kib(pid).ok_or("cannot read wshd's VmRSS")?;
    eprintln!(
        "[wshd-bench] reload-soak: warm ({warm_sent} messages so far); RSS before {rss_before_kib} KiB; replacing the plugin {} times",
        args.reloads
    );

    let started = Instant::now();
    let mut reload_log =
        ReloadLog { confirmed: 0, unconfirmed: 0, samples: Vec::new(), rss_after_10_kib: None, seconds: 0.0 };
    let limit = Duration::from_secs_f64(args.load_timeout);
    let mut server_died = false;
    for i in 1..=args.reloads {
        rig.install((i % 2) as usize, args.method)?;
        if log.wait_loaded(1 + i, limit)? {
            reload_log.confirmed += 1;
        } else {
            reload_log.unconfirmed += 1;
            // Resynchronise on what was loaded so far.
            eprintln!("[wshd-bench] reload-soak: replacement {i} not loaded within {limit:?}");
        }
        if !rig.server_alive() {
            server_died = true;
            eprintln!("[wshd-bench] reload-soak: wshd exited during replacement {i}");
            break;
        }
        if i == 10 {
            reload_log.rss_after_10_kib = procinfo::vm_rss_kib(pid);
        }
        if i % 100 == 0 || i == args.reloads {
            let rss = procinfo::vm_rss_kib(pid).unwrap_or(0);
            let live = log.loaded as i64 - log.released as i64;
            reload_log.samples.push((i, rss, live));
            eprintln!(
                "[wshd-bench] reload-soak: {i}/{} replaced in {:.0} s; RSS {rss} KiB; live generations {live}; messages {} sent, {} received, {} failed; {} dropped; new connections {} ok, {} failed",
                args.reloads,
                started.elapsed().as_secs_f64(),
                counters.sent.load(Ordering::Relaxed),
                counters.received.load(Ordering::Relaxed),
                counters.failed.load(Ordering::Relaxed),
                counters.dropped.load(Ordering::Relaxed),
                counters.churn_ok.load(Ordering::Relaxed),
                counters.churn_failed.load(Ordering::Relaxed),
            );
        }
        std::thread::sleep(Duration::from_millis(args.interval_ms));
    }
    reload_log.seconds = started.elapsed().as_secs_f64();
    // Let the last generation settle, then measure with the long-lived connections open.
    std::thread::sleep(Duration::from_secs(1));
    log.poll()?;
    let rss_after_kib = procinfo::vm_rss_kib(pid).unwrap_or(0);
    let live_before_close = log.loaded as i64 - log.released as i64;
    let mapped_before_close = procinfo::mapped_files_containing(pid, &format!("wshd-{pid}/libversion_wsh."));

    // Stop the traffic: every long-lived connection finishes its message and closes.
    stop.store(true, Ordering::Relaxed);
    let _ = runtime_done_tx.send(());
    let runtime = driver.join().map_err(|_| "the client runtime panicked")?;
    let (errors, churn_errors) = runtime.block_on(async {
        let mut errors = Vec::new();
        for t in tasks {
            match timeout(Duration::from_secs(30), t).await {
                Ok(Ok(Some(e))) => errors.push(e),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => errors.push(format!("task: {e}")),
                Err(_) => errors.push("a long-lived connection did not finish in 30 s".into()),
            }
        }
        let churn_errors = match timeout(Duration::from_secs(30), churn_task).await {
            Ok(Ok(e)) => e,
            _ => vec!["the new-connection task did not finish".into()],
        };
        (errors, churn_errors)
    });
    std::thread::sleep(Duration::from_secs(1));
    log.poll()?;
    let rss_end_kib = procinfo::vm_rss_kib(pid).unwrap_or(0);
    let live_after_close = log.loaded as i64 - log.released as i64;
    let mapped_after_close = procinfo::mapped_files_containing(pid, &format!("wshd-{pid}/libversion_wsh."));
    let alive = rig.server_alive() && !server_died;

    let c = &counters;
    let sent = c.sent.load(Ordering::Relaxed);
    let received = c.received.load(Ordering::Relaxed);
    let failed = c.failed.load(Ordering::Relaxed);
    let dropped = c.dropped.load(Ordering::Relaxed);
    let growth_total = rss_after_kib as f64 - rss_before_kib as f64;
    let per_reload = growth_total * 1024.0 / args.reloads as f64;
    let steady = reload_log
        .rss_after_10_kib
        .filter(|_| args.reloads > 10)
        .map(|r10| (rss_after_kib as f64 - r10 as f64) * 1024.0 / (args.reloads - 10) as f64);
    let churn_ok = c.churn_ok.load(Ordering::Relaxed);
    let churn_failed = c.churn_failed.load(Ordering::Relaxed);

    let mut report = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(report, "| reload soak | value |");
    let _ = writeln!(report, "|---|---|");
    let _ = writeln!(
        report,
        "| plugin replacements ({}, v1/v2 alternating) | {} in {:.0} s; {} confirmed by `handler loaded`, {} not |",
        match args.method {
            Method::Rename => "write a dot-file, rename it over the plugin",
            Method::Copy => "rewrite the plugin file in place",
        },
        args.reloads,
        reload_log.seconds,
        reload_log.confirmed,
        reload_log.unconfirmed
    );
    let _ = writeln!(report, "| long-lived connections | {} |", args.connections);
    let _ = writeln!(report, "| messages sent / received (long-lived) | {sent} / {received} |");
    let _ = writeln!(
        report,
        "| failed or lost messages | {} (wrong reply {failed}, unanswered {}) |",
        failed + sent.saturating_sub(received),
        sent.saturating_sub(received)
    );
    let _ = writeln!(report, "| dropped long-lived connections | {dropped} |");
    let _ = writeln!(
        report,
        "| new connections during the soak | {} ok ({} on v1, {} on v2), {churn_failed} failed |",
        churn_ok,
        c.churn_v1.load(Ordering::Relaxed),
        c.churn_v2.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        report,
        "| wshd RSS before → after the replacements | {rss_before_kib} → {rss_after_kib} KiB ({growth_total:+.0} KiB) |"
    );
    let _ = writeln!(
        report,
        "| RSS growth per reload | {per_reload:.0} B overall; {} from reload 10 to the end |",
        steady.map_or("—".into(), |s| format!("{s:.0} B"))
    );
    let _ = writeln!(report, "| RSS after closing the long-lived connections | {rss_end_kib} KiB |");
    let _ =
        writeln!(report, "| log: handler loaded / generation released | {} / {} |", log.loaded, log.released);
    let _ = writeln!(
        report,
        "| live generations (log) with the long-lived connections open / after closing them | {live_before_close} / {live_after_close} |"
    );
    let _ = writeln!(
        report,
        "| plugin copies mapped (/proc/pid/maps), open / after closing | {} / {} |",
        mapped_before_close.map_or("?".into(), |n| n.to_string()),
        mapped_after_close.map_or("?".into(), |n| n.to_string())
    );
    let _ = writeln!(report, "| refused builds (log) | {} |", log.refused);
    let _ = writeln!(report, "| wshd WARN/ERROR lines | {} |", log.problem_count);
    let _ = writeln!(report, "| wshd alive at the end | {} |", if alive { "yes" } else { "NO" });
    println!("{report}");
    let _ = writeln!(report);
    for (i, rss, live) in &reload_log.samples {
        eprintln!("[wshd-bench] sample: after {i} reloads RSS {rss} KiB, live generations {live}");
    }
    for e in errors.iter().chain(&churn_errors).chain(&log.problems).take(20) {
        eprintln!("[wshd-bench] problem: {e}");
    }

    let samples: Vec<String> = reload_log
        .samples
        .iter()
        .map(|(i, rss, live)| {
            format!("{{\"reloads\": {i}, \"rss_kib\": {rss}, \"live_generations\": {live}}}")
        })
        .collect();
    let problems: Vec<String> =
        errors.iter().chain(&churn_errors).chain(&log.problems).map(|e| quoted(e)).collect();
    let json = format!(
        "{{\n  \"benchmark\": \"wshd-bench reload-soak\",\n  \"unix_time\": {},\n  \"method\": \"{:?}\",\n  \"reloads\": {},\n  \"confirmed_loads\": {},\n  \"unconfirmed_loads\": {},\n  \"seconds\": {:.1},\n  \
         \"interval_ms\": {},\n  \"debounce_ms\": {},\n  \"connections\": {},\n  \"messages_sent\": {sent},\n  \"messages_received\": {received},\n  \"messages_failed\": {failed},\n  \
         \"messages_lost\": {},\n  \"dropped_connections\": {dropped},\n  \"new_connections_ok\": {churn_ok},\n  \"new_connections_failed\": {churn_failed},\n  \
         \"new_connections_v1\": {},\n  \"new_connections_v2\": {},\n  \"rss_before_kib\": {rss_before_kib},\n  \"rss_after_10_reloads_kib\": {},\n  \"rss_after_kib\": {rss_after_kib},\n  \
         \"rss_growth_per_reload_bytes\": {per_reload:.1},\n  \"rss_growth_per_reload_from_10_bytes\": {},\n  \"rss_after_closing_kib\": {rss_end_kib},\n  \
         \"log_handler_loaded\": {},\n  \"log_generation_released\": {},\n  \"live_generations_open\": {live_before_close},\n  \"live_generations_after_close\": {live_after_close},\n  \
         \"mapped_plugin_copies_open\": {},\n  \"mapped_plugin_copies_after_close\": {},\n  \"refused\": {},\n  \"wshd_warn_error_lines\": {},\n  \"wshd_alive\": {alive},\n  \
         \"samples\": [{}],\n  \"problems\": [{}]\n}}\n",
        unix_now(),
        args.method,
        args.reloads,
        reload_log.confirmed,
        reload_log.unconfirmed,
        reload_log.seconds,
        args.interval_ms,
        args.debounce_ms.map_or("null".into(), |d| d.to_string()),
        args.connections,
        sent.saturating_sub(received),
        c.churn_v1.load(Ordering::Relaxed),
        c.churn_v2.load(Ordering::Relaxed),
        reload_log.rss_after_10_kib.map_or("null".into(), |r| r.to_string()),
        steady.map_or("null".into(), |s| format!("{s:.1}")),
        log.loaded,
        log.released,
        mapped_before_close.map_or("null".into(), |n| n.to_string()),
        mapped_after_close.map_or("null".into(), |n| n.to_string()),
        log.refused,
        log.problem_count,
        samples.join(", "),
        problems.join(", ")
    );
    write_report(&out, &json)?;
    if !alive
        || failed > 0
        || dropped > 0
        || sent != received
        || churn_failed > 0
        || reload_log.unconfirmed > 0
    {
        return Err("the soak saw failures (see the table above)".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// reload-latency

/// Runs `reload-latency`.
pub(crate) fn latency(args: &LatencyArgs) -> Result<(), BoxError> {
    if args.reloads == 0 {
        return Err("--reloads must be at least 1".into());
    }
    let out = match &args.out {
        Some(o) => o.clone(),
        None => default_out("reload-latency.json"),
    };
    let mut rig = Rig::start(&args.release_dir, "latency", args.debounce_ms)?;
    let mut log = LogTail::open(&rig.log_path)?;
    if !log.wait_loaded(1, Duration::from_secs(15))? {
        return Err(format!("wshd did not log `handler loaded`; see {}", rig.log_path.display()).into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let target = rig.target.clone();
    let limit = Duration::from_secs_f64(args.timeout);
    let mut latencies_ms: Vec<f64> = Vec::new();
    let mut write_ms: Vec<f64> = Vec::new();
    let mut probes: Vec<u64> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let mut seed = 0u64;
    for i in 1..=args.reloads {
        let index = (i % 2) as usize;
        let want = VERSIONS[index];
        let t_write = Instant::now();
        rig.install(index, args.method)?;
        let t0 = Instant::now();
        let outcome: Result<(Duration, u64), BoxError> = runtime.block_on(async {
            let mut n = 0u64;
            loop {
                n += 1;
                seed += 1;
                let mut client = WsClient::open(&target, None, options(seed), limit).await?;
                let reply = exchange(&mut client, "probe", limit).await?;
                let t1 = Instant::now();
                client.close(limit).await?;
                let v = version_of(&reply, "probe").ok_or_else(|| format!("probe answered {reply:?}"))?;
                if v == want {
                    return Ok((t1.duration_since(t0), n));
                }
                if t0.elapsed() > limit {
                    return Err(format!("still served by the old version {limit:?} after the write").into());
                }
                tokio::time::sleep(Duration::from_millis(args.poll_interval_ms)).await;
            }
        });
        match outcome {
            Ok((d, n)) => {
                latencies_ms.push(d.as_secs_f64() * 1000.0);
                write_ms.push(t0.duration_since(t_write).as_secs_f64() * 1000.0);
                probes.push(n);
            }
            Err(e) => failures.push(format!("reload {i} (to {want}): {e}")),
        }
        if !rig.server_alive() {
            failures.push(format!("wshd exited during reload {i}"));
            break;
        }
        if i % 10 == 0 {
            let mut sorted = latencies_ms.clone();
            sorted.sort_by(f64::total_cmp);
            eprintln!(
                "[wshd-bench] reload-latency: {i}/{}: median so far {:.1} ms, max {:.1} ms",
                args.reloads,
                sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN),
                sorted.last().copied().unwrap_or(f64::NAN)
            );
        }
        std::thread::sleep(Duration::from_millis(args.settle_ms));
    }
    log.poll()?;
    let mut sorted = latencies_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let pick = |q: f64| -> f64 {
        if sorted.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[rank]
    };
    let median = if sorted.is_empty() {
        f64::NAN
    } else if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
    };
    let mut write_sorted = write_ms.clone();
    write_sorted.sort_by(f64::total_cmp);
    let write_median = write_sorted.get(write_sorted.len() / 2).copied().unwrap_or(f64::NAN);
    let debounce = args.debounce_ms.map_or("100 (wshd's default)".into(), |d| d.to_string());
    println!("| reload latency (file in place → first reply from the new code) | value |");
    println!("|---|---|");
    println!("| reloads timed | {} of {} ({} failed) |", latencies_ms.len(), args.reloads, failures.len());
    println!("| debounce_ms | {debounce} |");
    println!("| method | {:?} |", args.method);
    println!(
        "| min / median / p90 / max | {:.1} / {median:.1} / {:.1} / {:.1} ms |",
        pick(0.0),
        pick(0.9),
        pick(1.0)
    );
    println!("| probe connections per reload (median) | {} |", {
        let mut p = probes.clone();
        p.sort_unstable();
        p.get(p.len() / 2).copied().unwrap_or(0)
    });
    println!("| writing the new build in place (median) | {write_median:.1} ms |");
    println!("| log: handler loaded / generation released | {} / {} |", log.loaded, log.released);
    for f in failures.iter().chain(&log.problems).take(20) {
        eprintln!("[wshd-bench] problem: {f}");
    }
    let list = |v: &[f64]| v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ");
    let json = format!(
        "{{\n  \"benchmark\": \"wshd-bench reload-latency\",\n  \"unix_time\": {},\n  \"reloads\": {},\n  \"timed\": {},\n  \"debounce_ms\": {},\n  \
         \"method\": \"{:?}\",\n  \"measured\": \"new build in place (rename done / write done) -> first reply from the new version on a new connection\",\n  \
         \"median_ms\": {median:.2},\n  \"p90_ms\": {:.2},\n  \"min_ms\": {:.2},\n  \"max_ms\": {:.2},\n  \"write_median_ms\": {write_median:.2},\n  \
         \"log_handler_loaded\": {},\n  \"log_generation_released\": {},\n  \"latencies_ms\": [{}],\n  \"failures\": [{}]\n}}\n",
        unix_now(),
        args.reloads,
        latencies_ms.len(),
        args.debounce_ms.map_or("null".into(), |d| d.to_string()),
        args.method,
        pick(0.9),
        pick(0.0),
        pick(1.0),
        log.loaded,
        log.released,
        list(&latencies_ms),
        failures.iter().map(|f| quoted(f)).collect::<Vec<_>>().join(", ")
    );
    write_report(&out, &json)?;
    if !failures.is_empty() {
        return Err(format!("{} reloads were not observed (see above)", failures.len()).into());
    }
    Ok(())
}
