//! The accept gate of a worker ([`crate::server::AcceptGate`]): notes the worker's open
//! connections in its scoreboard cell and says whether another live worker has fewer (by
//! the server-wide counts' share of each worker), by
//! at least [`AHEAD_BY`]; then this worker leaves the next connections to it. Only workers
//! serving with a fresh heartbeat count, so a dead or wedged worker never holds the others
//! back for longer than [`FRESH_MS`]. A worker the master is recycling
//! ([`CellState::SteppingAside`]) accepts nothing more.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::board::{CellState, Layout};
use crate::scoreboard::slot::monotonic_ms;
use crate::server::AcceptGate;

/// How many connections more than the least loaded live worker make a worker step back.
pub(crate) const AHEAD_BY: u64 = 2;
/// A heartbeat older than this takes a worker out of the comparison.
pub(crate) const FRESH_MS: u64 = 1_000;

/// The gate of worker `index` (0-based) on `board`.
pub(crate) fn gate(board: &'static Layout, index: usize) -> AcceptGate {
    Arc::new(move |open| {
        let mine = open as u64;
        if let Some(cell) = board.cells.get(index) {
            cell.open_connections.store(mine, Ordering::Relaxed);
            if cell.state.load(Ordering::Acquire) == CellState::SteppingAside as u32 {
                return true;
            }
        }
        let now = monotonic_ms();
        let least_other = board
            .cells
            .iter()
            .enumerate()
            .filter(|(i, cell)| {
                *i != index
                    && CellState::accepting(cell.state.load(Ordering::Acquire))
                    && now.saturating_sub(cell.heartbeat_ms.load(Ordering::Acquire)) < FRESH_MS
            })
            .map(|(i, _)| board.global.counts.of_worker(i))
            .min();
        least_other.is_some_and(|least| mine >= least + AHEAD_BY)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoreboard::slot::leak_zeroed;

    #[test]
    fn a_worker_ahead_of_a_live_one_steps_back() {
        let board = leak_zeroed::<Layout>();
        let now = monotonic_ms();
        for cell in &board.cells[..2] {
            cell.reset(now);
            cell.state.store(CellState::Serving as u32, Ordering::Relaxed);
        }
        let (first, second) = (gate(board, 0), gate(board, 1));
        assert!(!second(0));
        assert!(!first(1), "one ahead is a tie");
        assert!(first(2), "two ahead steps back");
        assert!(!second(1));
        board.cells[1].heartbeat_ms.store(now.saturating_sub(FRESH_MS + 1), Ordering::Relaxed);
        assert!(!first(5), "a silent worker does not count");
    }

    #[test]
    fn a_worker_stepping_aside_accepts_nothing_more() {
        let board = leak_zeroed::<Layout>();
        let now = monotonic_ms();
        board.cells[0].reset(now);
        board.cells[0].state.store(CellState::Serving as u32, Ordering::Relaxed);
        let only = gate(board, 0);
        assert!(!only(0), "alone and serving: accepts");
        board.cells[0].state.store(CellState::SteppingAside as u32, Ordering::Relaxed);
        assert!(only(0), "being recycled: steps back even when alone");
    }
}
