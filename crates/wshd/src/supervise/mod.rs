//! Supervised worker processes, like nginx's master and workers: a master binds the
//! listeners, starts `[server] workers` copies of itself that inherit them, replaces any
//! that dies (an abort, a stack overflow or a bad write in a handler) or hangs (no
//! heartbeat, or handler code holding a thread too long), and forwards SIGHUP and SIGTERM.
//! See `docs/decisions/0012-worker-processes.md`.
//!
//! | module | one job |
//! |---|---|
//! | `balance` | the accept gate: a worker ahead of another leaves it the next connections |
//! | `board` | the scoreboard shared with the workers (memfd + mmap, atomics only) |
//! | `inherit` | the start-up protocol: which fds a worker inherits, in which variables |
//! | `spawn` | starting one worker (re-exec, `pre_exec`: fds, parent-death signal) |
//! | `pool` | the master's workers: deaths, replacements, stuck kills, recycling |
//! | `stuck` | the heartbeat and thread-slot check |
//! | `control` | the master↔worker control channel (metrics requests, Ready/Draining) |
//! | `exposition`, `fleet_metrics`, `fleet_admin` | the master's `/metrics` (workers' expositions merged, plus its own counters), `/healthz`, `/readyz` |
//! | `crashes` | the crash ledger and plugin file fingerprints |
//! | `quarantine` | the master's quarantine: crashes per route → the scoreboard's table, lifted when the plugin file changes |
//! | `recycle` | when a worker is due for recycling (memory, connections served) |
//! | `retire` | the worker being recycled: drained, waited for, killed past its grace |
//! | `death` | an exit status in words |
//! | `relay` | worker log lines through the master |
//! | `room_hub` | the master's rooms relay: who holds which member, publishes forwarded once per worker, the ordered history, snapshots for new workers |
//! | `single_hub` | the same hub in the single process of `workers = 0`, when a broker links it to other nodes |
//! | `room_link` | a worker's rooms linked to the master's relay (the rooms' broker) |
//! | `master` | the master's loop: signals, supervision, shutdown |
//! | `worker` | a worker's start: adopt fds, heartbeat, serve |
//! | `serve` | one serving process (a worker, or `workers = 0`) until its drain ends |
//! | `stopper` | SIGTERM/SIGINT on a dedicated thread, with a deadline |

pub(crate) mod balance;
pub(crate) mod board;
#[allow(dead_code)] // the worker side is wired; some helpers are for tests
pub(crate) mod control;
pub(crate) mod crashes;
pub(crate) mod death;
#[allow(dead_code)] // statistics helpers not all used yet
pub(crate) mod exposition;
pub(crate) mod fleet_admin;
pub(crate) mod fleet_metrics;
pub mod inherit;
pub mod master;
pub(crate) mod pool;
pub(crate) mod quarantine;
pub(crate) mod recycle;
pub mod relay;
pub(crate) mod retire;
pub(crate) mod room_hub;
pub(crate) mod room_link;
pub(crate) mod serve;
pub(crate) mod single_hub;
pub(crate) mod spawn;
pub mod stopper;
pub(crate) mod stuck;
pub mod worker;

use std::process::ExitCode;

pub use inherit::Inherited;
pub use relay::Sink;

use crate::{Config, ConfigSource};

/// Runs this process in its role: a worker when the master's variables are set
/// (`inherited`), else the single process of `workers = 0`, else a master logging to `sink`.
pub fn run(config: Config, source: ConfigSource, inherited: Option<Inherited>, sink: Sink) -> ExitCode {
    if inherited.is_none() {
        // Workers inherit the master's limit.
        crate::fd_limit::raise_and_log(config.max_connections);
    }
    match inherited {
        Some(inherited) => worker::run(config, source, inherited),
        None if config.workers.count == 0 => serve::single(config, source),
        None => master::run(config, source, sink),
    }
}
