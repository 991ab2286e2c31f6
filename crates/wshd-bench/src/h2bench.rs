//! `h2`: WebSockets over HTTP/2 streams (RFC 8441) against HTTP/1.1 upgrades, both over TLS,
//! against one release `wshd` in one run (issue 18).
//!
//! Starts `wshd` with a self-signed certificate made at run time (rcgen) and the built-in echo
//! at `/echo`, then measures from one client thread: WebSocket handshakes/s (open, one echo,
//! close; HTTP/1.1: a new TLS connection each, HTTP/2: a new stream on one connection) with 1
//! and 8 client tasks; echo round trips/s on one socket (32 B and 16 KiB); echo throughput
//! over N sockets at once (HTTP/1.1: N TLS connections; HTTP/2: N streams on one connection,
//! and N streams over a few connections); and the server's RSS per idle WebSocket each way and
//! per idle HTTP/2 connection. Prints a markdown table with the ratios h2 / h1 and writes
//! `target/bench/h2.json`. The RFC 8441 client is the integration tests' (`wshd_tests::h2ws`).
//! The one-socket rows also give the server's CPU time and context switches per round trip
//! (from `/proc`), and this client's CPU time: where an HTTP/2 stream's extra cost goes.
//! `--only <part>` measures one part (to profile it); `--threads N` sets the server's runtime
//! threads (`[workers] threads`).
//!
//! ```text
//! cargo build --release -p wshd -p wshd-bench
//! target/release/wshd-bench h2
//! ```

use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;

use crate::BoxError;
use crate::h2bench_load::{Bench, Dialer, Idle};
use crate::h2bench_report::{Figures, Memory};
use crate::run::{free_port, quoted, spawn_wshd};

/// Arguments of `h2`.
#[derive(Debug, clap::Args)]
pub(crate) struct H2Args {
    /// Directory holding the `wshd` binary.
    #[arg(long, default_value = "target/release")]
    pub(crate) release_dir: PathBuf,
    /// WebSocket handshakes per measurement (at most; `--seconds` also bounds it).
    #[arg(long, default_value_t = 2000)]
    pub(crate) handshakes: usize,
    /// Echo round trips per one-socket measurement (at most; `--seconds` also bounds it).
    #[arg(long, default_value_t = 20_000)]
    pub(crate) round_trips: usize,
    /// Time bound of each measurement, and the length of each parallel one, in seconds.
    #[arg(long, default_value_t = 3.0)]
    pub(crate) seconds: f64,
    /// Sockets at once in the parallel measurements.
    #[arg(long, default_value_t = 16)]
    pub(crate) sockets: usize,
    /// HTTP/2 connections the parallel sockets are spread over in the last variant.
    #[arg(long, default_value_t = 4)]
    pub(crate) h2_connections: usize,
    /// WebSockets (and idle HTTP/2 connections) opened for the memory figures.
    #[arg(long, default_value_t = 1000)]
    pub(crate) idle: usize,
    /// Measure only this part (for profiling one of them); all by default.
    #[arg(long, value_enum)]
    pub(crate) only: Option<Part>,
    /// The server's runtime threads (`[workers] threads`); its default when not given.
    #[arg(long)]
    pub(crate) threads: Option<u64>,
}

/// The parts of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Part {
    /// WebSocket handshakes/s.
    Handshakes,
    /// One socket's echo round trips/s.
    RoundTrips,
    /// Echoes/s over many sockets at once.
    Parallel,
    /// Server RSS per idle WebSocket and per idle HTTP/2 connection.
    Memory,
}

/// The `wshd` under test, killed on drop with its temporary directory removed.
pub(crate) struct Wshd {
    child: Child,
    pub(crate) addr: SocketAddr,
    dir: PathBuf,
    /// The certificate the client trusts.
    pub(crate) cert: rustls::pki_types::CertificateDer<'static>,
}

impl Wshd {
    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Wshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Starts release `wshd` over TLS (HTTP/2 by ALPN) with the built-in echo at `/echo`.
fn start_wshd(args: &H2Args) -> Result<Wshd, BoxError> {
    let wshd_bin = std::path::absolute(args.release_dir.join("wshd"))?;
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let dir = std::env::temp_dir().join(format!("wshd-bench-h2-{}-{port}", std::process::id()));
    fs::create_dir_all(dir.join("handlers"))?;
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    fs::write(dir.join("server.pem"), made.cert.pem())?;
    fs::write(dir.join("server.key"), made.signing_key.serialize_pem())?;
    let streams = (args.idle + args.sockets + 16).max(128);
    let config = format!(
        "# Written by wshd-bench h2.\n[server]\nlisten = [\"127.0.0.1:{port}\"]\n\
         max_connections = 0\nmax_pending_connections = 100000\nworkers = 0\n{}\n\
         [handlers]\ndir = {}\nrecursive = false\n\n[log]\nlevel = \"warn\"\n\n\
         [websocket]\nping_interval_secs = 0\n\n[tls]\ncert = {}\nkey = {}\n\n\
         [http2]\nmax_concurrent_streams = {streams}\n\n\
         [[route]]\npath = \"/echo\"\nbuiltin = \"echo\"\n",
        args.threads.map(|n| format!("[workers]\nthreads = {n}\n")).unwrap_or_default(),
        quoted(path_str(&dir.join("handlers"))?),
        quoted(path_str(&dir.join("server.pem"))?),
        quoted(path_str(&dir.join("server.key"))?),
    );
    fs::write(dir.join("server.toml"), config)?;
    let child = spawn_wshd(&wshd_bin, &dir.join("server.toml"), addr)?;
    let wshd = Wshd { child, addr, dir, cert: made.cert.der().clone() };
    Ok(wshd)
}

fn path_str(path: &std::path::Path) -> Result<&str, BoxError> {
    path.to_str().ok_or_else(|| format!("{} is not UTF-8", path.display()).into())
}

/// `wshd-bench h2`: every measurement against one server, the table and the JSON.
pub(crate) fn run(args: &H2Args) -> Result<(), BoxError> {
    let ((soft, _), note) = crate::procinfo::raise_nofile(args.idle as u64 * 4 + 1024);
    if let Some(note) = note {
        eprintln!("wshd-bench h2: {note}");
    }
    if soft < args.idle as u64 * 3 + 256 {
        return Err(format!("RLIMIT_NOFILE {soft} is too low for --idle {}", args.idle).into());
    }
    let wshd = start_wshd(args)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let figures = runtime.block_on(measure(args, &wshd))?;
    let table = crate::h2bench_report::table(args, &figures);
    println!("{table}");
    let out = PathBuf::from("target/bench");
    fs::create_dir_all(&out)?;
    fs::write(out.join("h2.json"), crate::h2bench_report::json(args, &figures))?;
    eprintln!("wshd-bench h2: wrote target/bench/h2.json");
    Ok(())
}

async fn measure(args: &H2Args, wshd: &Wshd) -> Result<Figures, BoxError> {
    let bench = Bench::new(args, wshd);
    let h1 = Dialer::h1(wshd);
    let (h2_client, h2) = Dialer::h2(wshd).await;
    let mut f = Figures::default();
    let part = |p: Part| args.only.is_none_or(|only| only == p);
    for tasks in [1, 8].into_iter().filter(|_| part(Part::Handshakes)) {
        eprintln!("handshakes, {tasks} task(s) ...");
        f.handshakes.push((tasks, bench.handshakes(&h1, tasks).await?, bench.handshakes(&h2, tasks).await?));
    }
    for bytes in [32, 16 << 10].into_iter().filter(|_| part(Part::RoundTrips)) {
        eprintln!("round trips, one socket, {bytes} B ...");
        f.round_trips.push((
            bytes,
            bench.round_trips(&h1, bytes).await?,
            bench.round_trips(&h2, bytes).await?,
        ));
    }
    let mut spread = Vec::new();
    for _ in 0..args.h2_connections {
        spread.push(Dialer::h2(wshd).await);
    }
    let dialers: Vec<Dialer> = spread.iter().map(|(_, d)| d.clone()).collect();
    for bytes in [32, 16 << 10].into_iter().filter(|_| part(Part::Parallel)) {
        eprintln!("parallel, {} sockets, {bytes} B ...", args.sockets);
        let one = bench.parallel(std::slice::from_ref(&h1), bytes).await?;
        let streams = bench.parallel(std::slice::from_ref(&h2), bytes).await?;
        let over = bench.parallel(&dialers, bytes).await?;
        f.parallel.push((bytes, one, streams, over));
    }
    drop(spread);
    drop(h2_client);
    if part(Part::Memory) {
        f.memory = Some(memory(args, &bench).await?);
    }
    Ok(f)
}

/// Server RSS per idle unit, each kind on a fresh server (no heap left over from the other
/// measurements, no kind reusing another's freed memory).
async fn memory(args: &H2Args, bench: &Bench) -> Result<Memory, BoxError> {
    let mut per = Vec::new();
    for kind in [Idle::H1, Idle::H2Stream, Idle::H2Connection] {
        eprintln!("memory, {} x {kind:?} ...", args.idle);
        let wshd = start_wshd(args)?;
        per.push(bench.idle_memory(&wshd, kind).await?);
    }
    Ok(Memory {
        count: args.idle,
        per_h1_kib: per[0],
        per_h2_stream_kib: per[1],
        per_h2_connection_kib: per[2],
    })
}
