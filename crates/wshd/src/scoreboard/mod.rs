//! The scoreboard: fixed-layout tables of atomics that the worker processes and their
//! master share (in memory mapped by all of them, or in the heap of a single process):
//! which thread runs which handler ([`slot`]), the quarantined routes ([`quarantine`]) and
//! the open-connection counts behind the limits ([`counts`]). A leaf module: it depends on
//! nothing else in the crate.
#![allow(dead_code)] // wired by the watchdog and the supervisor

pub(crate) mod counts;
pub(crate) mod quarantine;
pub(crate) mod slot;

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;

use self::counts::ConnectionCounts;
use self::quarantine::QuarantineTable;
use self::slot::{MAX_THREADS, RouteNames, ThreadSlot, leak_zeroed};

/// This process's view of the scoreboard: its own cell (worker index, thread slots, route
/// names, heartbeat) and the server-wide tables.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Local {
    /// This worker's index (0 in a single process).
    pub(crate) worker: usize,
    /// One slot per runtime thread of this process.
    pub(crate) slots: &'static [ThreadSlot; MAX_THREADS],
    /// The routes the slots name.
    pub(crate) names: &'static RouteNames,
    /// Written by the heartbeat task: [`slot::monotonic_ms`] of its last beat.
    pub(crate) heartbeat: &'static AtomicU64,
    /// WebSocket connections this process admitted over its life (the master recycles a
    /// worker past `[workers] recycle_after_connections`).
    pub(crate) accepted: &'static AtomicU64,
    /// Open connections, server-wide.
    pub(crate) counts: &'static ConnectionCounts,
    /// Quarantined routes, server-wide.
    pub(crate) quarantine: &'static QuarantineTable,
}

static LOCAL: OnceLock<Local> = OnceLock::new();

/// Makes `local` this process's view (a worker process: the mapped scoreboard). Must run
/// before anything calls [`local`]; false if a view was already in use.
pub(crate) fn install(local: Local) -> bool {
    LOCAL.set(local).is_ok()
}

/// This process's view; a private one in the heap unless [`install`] was called first.
pub(crate) fn local() -> &'static Local {
    LOCAL.get_or_init(|| Local {
        worker: 0,
        slots: leak_zeroed(),
        names: leak_zeroed(),
        heartbeat: Box::leak(Box::new(AtomicU64::new(0))),
        accepted: Box::leak(Box::new(AtomicU64::new(0))),
        counts: leak_zeroed(),
        quarantine: leak_zeroed(),
    })
}
