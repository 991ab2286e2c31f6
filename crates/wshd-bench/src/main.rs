//! `wshd-bench` — the echo benchmark of wshd (a benchmark, not a test).
//!
//! It compares wshd serving the `echo_wsh` plugin with a raw tokio-tungstenite echo server
//! that uses the same codec settings but has no plugin boundary and no host around it, so the
//! ratio between the two measures what wshd adds.
//!
//! ```text
//! cargo build --release -p wshd -p echo_wsh -p wshd-bench
//! target/release/wshd-bench run --seconds 5
//! ```
//!
//! Subcommands:
//! - `run`: the orchestrator — starts both servers, runs the load generator against each
//!   (alternating, 3 repetitions, medians), prints a table and writes `target/bench/echo.json`.
//! - `raw-echo`: the raw tokio-tungstenite echo server.
//! - `load`: the load generator (a hand-written single-threaded WebSocket client).

mod cpu;
mod load;
mod raw_echo;
mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The error type of every fallible function here.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// wshd echo benchmark: wshd + echo_wsh versus raw tokio-tungstenite.
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
    /// Run the whole benchmark: both servers, the load generator, the table and the JSON.
    Run(run::RunArgs),
    /// A raw tokio-tungstenite echo server (no plugin boundary).
    RawEcho(raw_echo::RawEchoArgs),
    /// The load generator: N connections, one message in flight each, for S seconds.
    Load(load::LoadArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(&args),
        Command::RawEcho(args) => raw_echo::run(&args),
        Command::Load(args) => load::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wshd-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
