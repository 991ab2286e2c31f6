//! Pure decisions about one slot from tick to tick: when a call into handler code becomes a
//! "blocked" episode (WARN, counted), when to repeat the warning, and when it ends.

use super::busy::Busy;

/// How often a warning is repeated while the same call stays blocked.
pub(crate) const REPEAT_MS: u64 = 5_000;

/// What the watchdog remembers about a slot's current call between ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Episode {
    /// The call (the slot's odd sequence number).
    pub(crate) seq: u64,
    /// Its route.
    pub(crate) route: u32,
    /// When it was first seen.
    pub(crate) since_ms: u64,
    /// When it was last warned about; `None` while still below the threshold.
    pub(crate) warned_ms: Option<u64>,
}

/// What to report at this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// A call just passed the threshold: WARN and count it.
    Blocked {
        /// Its route.
        route: u32,
        /// How long it has held the thread.
        held_ms: u64,
    },
    /// A blocked call still holds the thread (repeated every [`REPEAT_MS`]).
    StillBlocked {
        /// Its route.
        route: u32,
        /// How long it has held the thread.
        held_ms: u64,
    },
    /// A blocked call returned (at most a tick ago).
    Unblocked {
        /// Its route.
        route: u32,
        /// How long it held the thread, up to this tick.
        held_ms: u64,
    },
}

/// The slot's episode after this tick, and what to report, given the one before, what the
/// slot holds now (see [`super::busy::observe`]), the time and the warning threshold.
pub(crate) fn step(
    before: Option<Episode>,
    now: Option<Busy>,
    now_ms: u64,
    warn_ms: u64,
) -> (Option<Episode>, Option<Event>) {
    // The call before this tick ended if the slot is idle or in another call.
    let ended = before.filter(|b| now.is_none_or(|n| n.seq != b.seq));
    if let Some(ended) = ended {
        let next = now.map(|n| Episode { seq: n.seq, route: n.route, since_ms: n.since_ms, warned_ms: None });
        let event = ended
            .warned_ms
            .map(|_| Event::Unblocked { route: ended.route, held_ms: now_ms.saturating_sub(ended.since_ms) });
        return (next, event);
    }
    let Some(busy) = now else { return (None, None) };
    let mut episode = before.unwrap_or(Episode {
        seq: busy.seq,
        route: busy.route,
        since_ms: busy.since_ms,
        warned_ms: None,
    });
    let held_ms = now_ms.saturating_sub(episode.since_ms);
    let event = match episode.warned_ms {
        None if held_ms >= warn_ms => Some(Event::Blocked { route: episode.route, held_ms }),
        Some(last) if now_ms.saturating_sub(last) >= REPEAT_MS => {
            Some(Event::StillBlocked { route: episode.route, held_ms })
        }
        _ => None,
    };
    if event.is_some() {
        episode.warned_ms = Some(now_ms);
    }
    (Some(episode), event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy(seq: u64, since_ms: u64) -> Option<Busy> {
        Some(Busy { seq, since_ms, route: 4 })
    }

    #[test]
    fn a_long_call_warns_once_repeats_every_five_seconds_and_reports_its_end() {
        let (e, ev) = step(None, busy(1, 1000), 1000, 100);
        assert_eq!(ev, None);
        let (e, ev) = step(e, busy(1, 1000), 1050, 100);
        assert_eq!(ev, None, "below the threshold");
        let (e, ev) = step(e, busy(1, 1000), 1110, 100);
        assert_eq!(ev, Some(Event::Blocked { route: 4, held_ms: 110 }));
        let (e, ev) = step(e, busy(1, 1000), 1120, 100);
        assert_eq!(ev, None, "warned once");
        let (e, ev) = step(e, busy(1, 1000), 6110, 100);
        assert_eq!(ev, Some(Event::StillBlocked { route: 4, held_ms: 5110 }));
        let (e, ev) = step(e, busy(1, 1000), 6200, 100);
        assert_eq!(ev, None);
        let (e, ev) = step(e, None, 6210, 100);
        assert_eq!((e, ev), (None, Some(Event::Unblocked { route: 4, held_ms: 5210 })));
    }

    #[test]
    fn short_calls_report_nothing_and_a_new_call_starts_over() {
        let (e, ev) = step(None, busy(1, 0), 10, 100);
        assert_eq!(ev, None);
        let (e, ev) = step(e, busy(3, 20), 20, 100);
        assert_eq!((e.map(|e| e.seq), ev), (Some(3), None), "the first call ended unwarned");
        let (e, ev) = step(e, busy(3, 20), 130, 100);
        assert_eq!(ev, Some(Event::Blocked { route: 4, held_ms: 110 }));
        let (e, ev) = step(e, busy(5, 140), 140, 100);
        assert_eq!(ev, Some(Event::Unblocked { route: 4, held_ms: 120 }));
        assert_eq!(e.map(|e| (e.seq, e.warned_ms)), Some((5, None)));
        assert_eq!(step(None, None, 200, 100), (None, None));
    }
}
