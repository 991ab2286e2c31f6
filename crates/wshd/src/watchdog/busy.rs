//! Pure reading of the slots, shared by the watchdog thread and `/healthz` (and a master
//! process reading a worker's slots in shared memory): which slot has been inside handler
//! code since when, and whether that is long enough to call the worker unhealthy.

use std::sync::atomic::Ordering;

use super::slot::{RouteNames, ThreadSlot};

/// One busy slot, as the watchdog sees it at one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Busy {
    /// The slot's odd sequence number: one call into handler code.
    pub(crate) seq: u64,
    /// When the watchdog first saw that call ([`super::slot::monotonic_ms`]).
    pub(crate) since_ms: u64,
    /// The route of the call.
    pub(crate) route: u32,
}

/// Looks at `slot` at time `now_ms` and records what the watchdog saw in it: a call first
/// seen now gets `busy_seq`/`busy_since_ms` written; a slot no longer busy gets them
/// cleared. Only the watchdog thread calls this.
pub(crate) fn observe(slot: &ThreadSlot, now_ms: u64) -> Option<Busy> {
    let seq = slot.seq.load(Ordering::Acquire);
    if seq.is_multiple_of(2) {
        if slot.busy_since_ms.load(Ordering::Relaxed) != 0 {
            slot.busy_since_ms.store(0, Ordering::Relaxed);
            slot.busy_seq.store(0, Ordering::Release);
        }
        return None;
    }
    let route = slot.route.load(Ordering::Relaxed);
    let since = slot.busy_since_ms.load(Ordering::Relaxed);
    if slot.busy_seq.load(Ordering::Acquire) == seq && since != 0 {
        return Some(Busy { seq, since_ms: since, route });
    }
    // A new call: timestamp it (never 0, which means "not busy").
    let since = now_ms.max(1);
    slot.busy_since_ms.store(since, Ordering::Relaxed);
    slot.busy_seq.store(seq, Ordering::Release);
    Some(Busy { seq, since_ms: since, route })
}

/// Why a worker is unhealthy: the slot busy longest in the same call for at least
/// `threshold_ms` at `now_ms`, as one line naming its route and how long; `None` when no
/// call has lasted that long. Reads only what the watchdog wrote (a call is timed from when
/// the watchdog first saw it), so it can run in any process that maps the slots.
pub(crate) fn unhealthy(
    slots: &[ThreadSlot],
    names: &RouteNames,
    now_ms: u64,
    threshold_ms: u64,
) -> Option<String> {
    let longest = slots
        .iter()
        .filter_map(|slot| {
            let seq = slot.seq.load(Ordering::Acquire);
            let since = slot.busy_since_ms.load(Ordering::Relaxed);
            let same_call =
                !seq.is_multiple_of(2) && slot.busy_seq.load(Ordering::Acquire) == seq && since != 0;
            let held = now_ms.saturating_sub(since);
            (same_call && held >= threshold_ms).then(|| (held, slot.route.load(Ordering::Relaxed)))
        })
        .max_by_key(|(held, _)| *held)?;
    let (held, route) = longest;
    let (path, file) = names.get(route).unwrap_or_else(|| ("(unknown route)".into(), "?".into()));
    Some(format!("handler {path} ({file}) has blocked a thread for {:.1} s", held as f64 / 1000.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watchdog::slot::leak_zeroed;

    #[test]
    fn a_call_is_timed_from_when_it_was_first_seen_and_cleared_when_it_returns() {
        let slot = ThreadSlot::default();
        assert_eq!(observe(&slot, 100), None);
        slot.enter(5);
        let first = observe(&slot, 110).unwrap_or_else(|| panic!("busy"));
        assert_eq!((first.since_ms, first.route), (110, 5));
        assert_eq!(observe(&slot, 120), Some(first), "the same call keeps its start");
        assert_eq!(slot.busy_since_ms.load(Ordering::Relaxed), 110);
        slot.leave();
        assert_eq!(observe(&slot, 130), None);
        assert_eq!(slot.busy_since_ms.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_new_call_between_ticks_starts_a_new_episode() {
        let slot = ThreadSlot::default();
        slot.enter(1);
        let first = observe(&slot, 10).unwrap_or_else(|| panic!("busy"));
        slot.leave();
        slot.enter(2);
        let second = observe(&slot, 20).unwrap_or_else(|| panic!("busy"));
        assert_ne!(first.seq, second.seq);
        assert_eq!((second.since_ms, second.route), (20, 2));
    }

    #[test]
    fn unhealthy_names_the_longest_call_past_the_threshold() {
        let names = leak_zeroed::<RouteNames>();
        let slow = names.push("/slow", "/h/slow_wsh.so");
        let slower = names.push("/slower", "/h/slower_wsh.so");
        let slots: [ThreadSlot; 3] = Default::default();
        assert_eq!(unhealthy(&slots, names, 10_000, 5_000), None);
        slots[0].enter(slow);
        slots[1].enter(slower);
        observe(&slots[0], 2_000);
        observe(&slots[1], 1_000);
        slots[2].enter(slow); // busy but never seen by the watchdog: not timed
        assert_eq!(unhealthy(&slots, names, 5_500, 5_000), None);
        let why = unhealthy(&slots, names, 7_500, 5_000).unwrap_or_default();
        assert_eq!(why, "handler /slower (/h/slower_wsh.so) has blocked a thread for 6.5 s");
        slots[1].leave();
        let why = unhealthy(&slots, names, 7_500, 5_000).unwrap_or_default();
        assert!(why.starts_with("handler /slow (") && why.ends_with("5.5 s"), "{why}");
        slots[0].leave();
        assert_eq!(unhealthy(&slots, names, 7_500, 5_000), None);
    }
}
