//! `run`: the orchestrator. Starts wshd (serving `echo_wsh`) and `raw-echo` as child
//! processes, runs the load generator (another child process) against each, alternating,
//! prints a table and writes it as JSON.
//!
//! CPU placement, when `taskset` exists and at least 2 CPUs are allowed: the servers run on
//! the first allowed CPU and the load generator on the second — except with 1 connection,
//! where the load generator shares the servers' CPU. With one message in flight a cross-CPU
//! round trip costs two cross-CPU wake-ups (IPIs, and an idle CPU leaving its sleep state),
//! which on these VMs take longer than the echo itself: on 2 CPUs the 1-connection figure
//! would measure the hypervisor, not the server.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use std::{env, fs};

use crate::BoxError;
use crate::load::LoadReport;

/// The build command that produces everything `run` needs.
const BUILD_COMMAND: &str = "cargo build --release -p wshd -p echo_wsh -p wshd-bench";

/// Options of `run`.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Measurement window of each load run, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) seconds: f64,
    /// Connection counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,100")]
    pub(crate) connections_list: Vec<usize>,
    /// Where `wshd` and `libecho_wsh.so` are (also the handler directory wshd scans).
    #[arg(long, default_value = "target/release")]
    pub(crate) release_dir: PathBuf,
    /// Repetitions per server and connection count (alternating wshd, raw); medians reported.
    #[arg(long, default_value_t = 3)]
    pub(crate) repetitions: usize,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 16)]
    pub(crate) size: usize,
    /// The JSON report [default: <release-dir>/../bench/echo.json].
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Do not pin processes to CPUs.
    #[arg(long)]
    pub(crate) no_pin: bool,
}

/// A child process killed (and reaped) when dropped, so no server outlives `run`.
struct Guard {
    name: &'static str,
    child: Child,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which CPUs to pin to.
#[derive(Debug, Clone)]
struct Placement {
    /// `None`: no pinning.
    cpus: Option<(usize, usize)>,
}

impl Placement {
    fn detect(no_pin: bool) -> (Placement, String) {
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

    fn server_cpu(&self) -> Option<usize> {
        self.cpus.map(|(a, _)| a)
    }

    fn load_cpu(&self, connections: usize) -> Option<usize> {
        self.cpus.map(|(a, b)| if connections == 1 { a } else { b })
    }
}

/// A command, pinned to `cpu` with taskset when given (taskset execs, so the pid is the
/// program's).
fn command(cpu: Option<usize>, program: &Path) -> Command {
    match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn on_path(program: &str) -> bool {
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

/// Two distinct free loopback ports (both bound, then released).
fn free_ports() -> Result<(u16, u16), BoxError> {
    let a = TcpListener::bind("127.0.0.1:0")?;
    let b = TcpListener::bind("127.0.0.1:0")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

/// Waits (at most 15 s) until `addr` accepts TCP, failing early if the server exits.
fn wait_for_listener(guard: &mut Guard, addr: SocketAddr) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = guard.child.try_wait()? {
            return Err(format!("{} exited before listening on {addr}: {status}", guard.name).into());
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("{} is not listening on {addr} after 15 s", guard.name).into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
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

/// One server under test.
struct Server {
    /// `wshd` or `raw`.
    label: &'static str,
    guard: Guard,
    url: String,
}

/// The measurements of one server at one connection count.
#[derive(Debug, Clone)]
struct Series {
    runs: Vec<LoadReport>,
}

impl Series {
    fn median(&self, f: impl Fn(&LoadReport) -> f64) -> f64 {
        let mut v: Vec<f64> = self.runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }
    fn rate(&self) -> f64 {
        self.median(|r| r.rate)
    }
    fn p50(&self) -> f64 {
        self.median(|r| r.p50_us)
    }
    fn p99(&self) -> f64 {
        self.median(|r| r.p99_us)
    }
    fn cpu(&self) -> f64 {
        self.median(|r| r.cpu_pct)
    }
    fn server_cpu(&self) -> f64 {
        self.median(|r| r.server_cpu_pct)
    }

    fn json(&self) -> String {
        let runs: Vec<String> = self
            .runs
            .iter()
            .map(|r| {
                format!(
                    "{{\"round_trips\": {}, \"msgs_per_s\": {}, \"p50_us\": {}, \"p99_us\": {}, \"loadgen_cpu_pct\": {}, \"server_cpu_pct\": {}}}",
                    r.round_trips,
                    num(r.rate),
                    num(r.p50_us),
                    num(r.p99_us),
                    num(r.cpu_pct),
                    num(r.server_cpu_pct)
                )
            })
            .collect();
        format!(
            "{{\"msgs_per_s\": {}, \"p50_us\": {}, \"p99_us\": {}, \"loadgen_cpu_pct\": {}, \"server_cpu_pct\": {}, \"runs\": [{}]}}",
            num(self.rate()),
            num(self.p50()),
            num(self.p99()),
            num(self.cpu()),
            num(self.server_cpu()),
            runs.join(", ")
        )
    }
}

/// A JSON number (null when not finite or negative = unknown).
fn num(x: f64) -> String {
    if x.is_finite() && x >= 0.0 { format!("{:.2}", x) } else { "null".into() }
}

/// Runs the whole benchmark.
pub(crate) fn run(args: &RunArgs) -> Result<(), BoxError> {
    if args.repetitions == 0 || args.connections_list.is_empty() || args.connections_list.contains(&0) {
        return Err("--repetitions and every connection count must be at least 1".into());
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
    let me = env::current_exe()?;
    let out = match &args.out {
        Some(out) => out.clone(),
        None => release_dir.parent().unwrap_or(&release_dir).join("bench").join("echo.json"),
    };
    let (placement, placement_text) = Placement::detect(args.no_pin);
    eprintln!("[wshd-bench] pinning: {placement_text}");

    let (wshd_port, raw_port) = free_ports()?;
    let temp = env::temp_dir().join(format!("wshd-bench-{}", std::process::id()));
    fs::create_dir_all(&temp)?;
    let config_path = temp.join("server.toml");
    let handlers_dir = release_dir.to_str().ok_or("the release directory is not UTF-8")?;
    fs::write(
        &config_path,
        format!(
            "# Written by wshd-bench run.\n[server]\nlisten = [\"127.0.0.1:{wshd_port}\"]\n\n\
             [handlers]\ndir = {}\nrecursive = false\n\n[log]\nlevel = \"warn\"\n",
            toml_string(handlers_dir)
        ),
    )?;

    let result = (|| {
        let wshd_addr = SocketAddr::from(([127, 0, 0, 1], wshd_port));
        let raw_addr = SocketAddr::from(([127, 0, 0, 1], raw_port));
        let mut wshd = Guard {
            name: "wshd",
            child: command(placement.server_cpu(), &wshd_bin)
                .arg("-c")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", wshd_bin.display()))?,
        };
        let mut raw = Guard {
            name: "raw-echo",
            child: command(placement.server_cpu(), &me)
                .arg("raw-echo")
                .arg("--addr")
                .arg(raw_addr.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start raw-echo: {e}"))?,
        };
        wait_for_listener(&mut wshd, wshd_addr)?;
        wait_for_listener(&mut raw, raw_addr)?;
        let servers = [
            Server { label: "wshd", guard: wshd, url: format!("ws://{wshd_addr}/echo") },
            Server { label: "raw", guard: raw, url: format!("ws://{raw_addr}/echo") },
        ];
        measure_all(args, &me, &placement, &servers)
    })();
    let _ = fs::remove_dir_all(&temp);
    let rows = result?;

    let table = table(&rows);
    println!("{table}");
    let json = json(args, &placement_text, &rows);
    if let Some(dir) = out.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(&out, json)?;
    eprintln!("[wshd-bench] wrote {}", out.display());
    Ok(())
}

/// One row of the report: (connections, wshd, raw).
type Row = (usize, Series, Series);

fn measure_all(
    args: &RunArgs,
    me: &Path,
    placement: &Placement,
    servers: &[Server; 2],
) -> Result<Vec<Row>, BoxError> {
    let mut rows = Vec::new();
    for &connections in &args.connections_list {
        let mut series = [Series { runs: Vec::new() }, Series { runs: Vec::new() }];
        for rep in 1..=args.repetitions {
            for (server, series) in servers.iter().zip(series.iter_mut()) {
                let report = load_once(args, me, placement.load_cpu(connections), server, connections)?;
                eprintln!(
                    "[wshd-bench] {connections} conn(s), rep {rep}/{}, {:>4}: {:>9.0} msgs/s  p50 {:>7.1} µs  p99 {:>7.1} µs  loadgen CPU {:>3.0}%  server CPU {:>3.0}%",
                    args.repetitions,
                    server.label,
                    report.rate,
                    report.p50_us,
                    report.p99_us,
                    report.cpu_pct,
                    report.server_cpu_pct
                );
                series.runs.push(report);
            }
        }
        let [w, r] = series;
        rows.push((connections, w, r));
    }
    Ok(rows)
}

/// Runs the load generator once as a child process (bounded) and parses its report.
fn load_once(
    args: &RunArgs,
    me: &Path,
    cpu: Option<usize>,
    server: &Server,
    connections: usize,
) -> Result<LoadReport, BoxError> {
    let mut child = command(cpu, me)
        .arg("load")
        .arg("--url")
        .arg(&server.url)
        .arg("--connections")
        .arg(connections.to_string())
        .arg("--seconds")
        .arg(args.seconds.to_string())
        .arg("--size")
        .arg(args.size.to_string())
        .arg("--server-pid")
        .arg(server.guard.child.id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the load generator: {e}"))?;
    // Its own bounds: connects and handshakes 5 s each, the window, 5 s grace, a 5 s close.
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds + 30.0 + connections as f64 * 0.1);
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("the load generator against {} did not finish in time", server.label).into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "the load generator against {} failed ({}): {}",
            server.label,
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    LoadReport::parse(&stdout)
        .ok_or_else(|| format!("no RESULT line from the load generator: {stdout:?}").into())
}

fn table(rows: &[Row]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| connections | wshd msgs/s | raw msgs/s | ratio wshd/raw | wshd p50/p99 µs | raw p50/p99 µs | loadgen CPU % (wshd/raw) | server CPU % (wshd/raw) |"
    );
    let _ = writeln!(t, "|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (connections, w, r) in rows {
        let _ = writeln!(
            t,
            "| {connections} | {:.0} | {:.0} | {:.3} | {:.1} / {:.1} | {:.1} / {:.1} | {:.0} / {:.0} | {:.0} / {:.0} |",
            w.rate(),
            r.rate(),
            w.rate() / r.rate(),
            w.p50(),
            w.p99(),
            r.p50(),
            r.p99(),
            w.cpu(),
            r.cpu(),
            w.server_cpu(),
            r.server_cpu()
        );
    }
    t
}

fn json(args: &RunArgs, placement: &str, rows: &[Row]) -> String {
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let rows: Vec<String> = rows
        .iter()
        .map(|(connections, w, r)| {
            format!(
                "    {{\"connections\": {connections}, \"ratio_wshd_raw\": {}, \"wshd\": {}, \"raw\": {}}}",
                num(w.rate() / r.rate()),
                w.json(),
                r.json()
            )
        })
        .collect();
    format!(
        "{{\n  \"benchmark\": \"echo round trips, one message in flight per connection\",\n  \
         \"unix_time\": {unix},\n  \"message_bytes\": {},\n  \"seconds\": {},\n  \"repetitions\": {},\n  \
         \"cpus\": {},\n  \"pinning\": {},\n  \"statistic\": \"median of repetitions\",\n  \"rows\": [\n{}\n  ]\n}}\n",
        args.size,
        args.seconds,
        args.repetitions,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        toml_string(placement),
        rows.join(",\n")
    )
}
