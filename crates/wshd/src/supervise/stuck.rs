//! Is a worker stuck? Its heartbeat is older than the timeout (its runtime no longer runs
//! tasks), or one of its threads has been inside the same handler call (the same odd
//! [`ThreadSlot`] sequence number) for longer than the timeout while the heartbeat still
//! runs on another thread. The master keeps what it saw per slot; the worker's own fields
//! are not trusted to be written by a wedged worker.

use std::sync::atomic::Ordering;

use super::board::{WorkerCell, describe_routes};
use crate::scoreboard::slot::MAX_THREADS;

/// What the master saw in one worker's thread slots: per slot, the odd `seq` and when it was
/// first seen (monotonic ms).
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    /// Per slot: `(seq, first seen at)`; seq 0 when the slot was idle.
    slots: Vec<(u64, u64)>,
}

impl Default for Seen {
    fn default() -> Self {
        Seen { slots: vec![(0, 0); MAX_THREADS] }
    }
}

/// Why a worker must be killed, or `None`. `now_ms` is [`crate::scoreboard::slot::monotonic_ms`].
pub(crate) fn check(cell: &WorkerCell, seen: &mut Seen, now_ms: u64, timeout_ms: u64) -> Option<String> {
    let heartbeat = cell.heartbeat_ms.load(Ordering::Acquire);
    if now_ms.saturating_sub(heartbeat) > timeout_ms {
        let routes = describe_routes(&cell.busy_routes());
        return Some(format!(
            "no heartbeat for {} ms (limit {timeout_ms} ms); handler code running: {routes}",
            now_ms.saturating_sub(heartbeat)
        ));
    }
    for (slot, (seen_seq, since)) in cell.slots.iter().zip(seen.slots.iter_mut()) {
        let seq = slot.seq.load(Ordering::Acquire);
        if seq % 2 == 0 {
            *seen_seq = 0;
            continue;
        }
        if seq != *seen_seq {
            (*seen_seq, *since) = (seq, now_ms);
            continue;
        }
        let held = now_ms.saturating_sub(*since);
        if held > timeout_ms {
            let route = slot.busy_route().and_then(|id| cell.names.get(id));
            let route = describe_routes(&route.into_iter().collect::<Vec<_>>());
            return Some(format!(
                "one handler call has held a thread for {held} ms (limit {timeout_ms} ms): {route}"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoreboard::slot::leak_zeroed;

    #[test]
    fn a_stale_heartbeat_or_a_long_held_slot_is_stuck() {
        let cell = leak_zeroed::<WorkerCell>();
        let mut seen = Seen::default();
        cell.reset(1_000);
        assert_eq!(check(cell, &mut seen, 2_000, 2_000), None);
        assert!(check(cell, &mut seen, 3_001, 2_000).is_some_and(|why| why.contains("no heartbeat")));

        let id = cell.names.push("/bad", "bad_wsh.so");
        cell.slots[1].enter(id);
        cell.heartbeat_ms.store(10_000, Ordering::Relaxed);
        assert_eq!(check(cell, &mut seen, 10_000, 2_000), None, "first seen now");
        cell.heartbeat_ms.store(12_500, Ordering::Relaxed);
        let why = check(cell, &mut seen, 12_500, 2_000).unwrap_or_default();
        assert!(why.contains("/bad (bad_wsh.so)") && why.contains("2500 ms"), "{why}");

        cell.slots[1].leave();
        cell.slots[1].enter(id);
        assert_eq!(check(cell, &mut seen, 12_600, 2_000), None, "a new call starts a new clock");
    }
}
