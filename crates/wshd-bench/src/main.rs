//! `wshd-bench` — the benchmarks of wshd (benchmarks, not tests).
//!
//! `run` compares wshd serving the `echo_wsh` plugin (and its built-in echo, which shows what
//! the plugin boundary costs) with reference echo servers started in the same run — a default
//! tokio-tungstenite echo, a fastwebsockets echo and a plain TCP echo (the floor) — all driven
//! by the same hand-written load generator. `reload-soak` and
//! `reload-latency` measure hot reload under load; `soak` runs mixed traffic for an hour with
//! the server's memory, fds and threads sampled. See `docs/performance.md`.
//!
//! ```text
//! cargo build --release -p wshd -p echo_wsh -p wshd-bench -p fixture_version_one -p fixture_version_two
//! target/release/wshd-bench run
//! target/release/wshd-bench reload-soak
//! target/release/wshd-bench reload-latency
//! ```
//!
//! Subcommands:
//! - `run`: the orchestrator — starts the servers, runs the load generator against each
//!   (alternating, 3 repetitions, medians), prints a table and writes `target/bench/echo.json`.
//! - `reload-soak`, `reload-latency`: hot-reload benchmarks against `wshd`.
//! - `raw-echo`, `fws-echo`, `tcp-echo`: the reference servers.
//! - `load`: the load generator (a hand-written single-threaded WebSocket client).
//! - `cluster`: scale-out through Redis (issue 17): three nodes and a private
//!   `redis-server`, same-node and cross-node deliveries, Redis commands per publish
//!   (build: `cargo build --release -p wshd -p wshd-bench -p fanout_wsh`).
//! - `deflate-memory`: server memory per compressed connection and compressed throughput,
//!   context takeover (before issue 16) against the defaults, in one run.
//! - `h2`: WebSockets over HTTP/2 streams (RFC 8441) against HTTP/1.1 upgrades, both over
//!   TLS, one release `wshd` (build: `cargo build --release -p wshd -p wshd-bench`).

mod cluster;
mod cluster_layout;
mod cluster_report;
mod cpu;
mod deflate_mem;
mod fanout;
mod fanout_load;
mod fanout_peers;
mod fanout_report;
mod fanout_tt;
mod fws_echo;
mod h2bench;
mod h2bench_load;
mod h2bench_report;
mod load;
mod procinfo;
mod raw_echo;
mod redis_info;
mod reload;
mod run;
mod serve;
mod soak;
mod tcp_echo;
mod wsclient;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The error type of every fallible function here.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// wshd benchmarks: echo against reference servers, and hot reload under load.
#[derive(Debug, Parser)]
#[command(name = "wshd-bench", version, about, long_about = None)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the echo comparison: every server, every workload, the table and the JSON.
    Run(run::RunArgs),
    /// Replace the plugin file 1,000 times under load: lost messages, drops, RSS growth.
    ReloadSoak(reload::SoakArgs),
    /// File write → first connection served by the new code, over 100 reloads.
    ReloadLatency(reload::LatencyArgs),
    /// A tokio-tungstenite 0.30 echo server.
    RawEcho(raw_echo::RawEchoArgs),
    /// A fastwebsockets 0.10 echo server.
    FwsEcho(fws_echo::FwsEchoArgs),
    /// A plain TCP echo server (the floor).
    TcpEcho(tcp_echo::TcpEchoArgs),
    /// The load generator.
    Load(load::LoadArgs),
    /// permessage-deflate: server RSS per compressed connection and compressed echo
    /// throughput, before (context takeover) and after (the defaults), in one run.
    DeflateMemory(deflate_mem::DeflateArgs),
    /// The fan-out comparison: one publisher, N subscribers, wshd against Node ws, Python
    /// websockets and tokio-tungstenite; the table and `target/bench/fanout.json`.
    Fanout(fanout::FanoutArgs),
    /// A tokio-tungstenite 0.30 fan-out server (tokio::sync::broadcast), a peer of `fanout`.
    FanoutTt(fanout_tt::FanoutTtArgs),
    /// The client of `fanout`: one publisher, N subscribers, one thread.
    FanoutLoad(fanout_load::FanoutLoadArgs),
    /// Scale-out through Redis: three nodes and a private redis-server; same-node and
    /// cross-node deliveries/s and publish→receive latency, Redis commands per publish; the
    /// table and `target/bench/cluster.json`.
    Cluster(cluster_layout::ClusterArgs),
    /// WebSockets over HTTP/2 streams (RFC 8441) against HTTP/1.1 upgrades, both over TLS:
    /// handshakes/s, round trips/s, parallel echoes/s, server memory per WebSocket; the table
    /// and `target/bench/h2.json`.
    H2(h2bench::H2Args),
    /// Mixed traffic for an hour (echo, rooms, deflate, slow readers, dribblers, churn, a hot
    /// reload every 10 s): RSS, fds and threads sampled, CSV + SVG in `target/soak/`.
    Soak(soak::SoakArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(&args),
        Command::ReloadSoak(args) => reload::soak(&args),
        Command::ReloadLatency(args) => reload::latency(&args),
        Command::RawEcho(args) => raw_echo::run(&args),
        Command::FwsEcho(args) => fws_echo::run(&args),
        Command::TcpEcho(args) => tcp_echo::run(&args),
        Command::DeflateMemory(args) => deflate_mem::run(&args),
        Command::Load(args) => load::run(&args),
        Command::Fanout(args) => fanout::run(&args),
        Command::FanoutTt(args) => fanout_tt::run(&args),
        Command::FanoutLoad(args) => fanout_load::run(&args),
        Command::Soak(args) => soak::run(&args),
        Command::Cluster(args) => cluster::run(&args),
        Command::H2(args) => h2bench::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wshd-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
