//! The in-flight memory budget: the bytes this process holds for its clients in partially
//! received messages and in send queues, against `[websocket] inflight_budget_bytes`
//! (shared out over the worker processes). See `docs/decisions/0018-memory-budget.md`.
//!
//! Each connection owns a [`Charge`]: what it holds, rounded up to [`STEP`] bytes. The
//! process-wide sum is one atomic counter, touched only when a connection's rounded holding
//! changes (a message split across reads, a buffer growing, a queue filling or draining), never
//! for a message that arrives whole in one read: the echo hot path does not touch it.
//! [`Collector`] exposes it on `/metrics`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use prometheus_client::collector::Collector as PromCollector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Holdings are charged in multiples of this many bytes (one page).
pub(crate) const STEP: usize = 4096;

/// Why a connection was refused more memory, or closed for holding a message too long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// What the connection alone needs exceeds the whole budget (closed with 1009).
    TooBig,
    /// Other connections hold the budget (closed with 1013 "try again later").
    Exhausted,
}

/// The process's budget: bytes held now, the limit, and what it refused.
#[derive(Debug)]
pub(crate) struct Budget {
    held: AtomicUsize,
    /// The limit the last connection was opened with (for `/metrics`); 0 = none.
    limit: AtomicUsize,
    too_big: AtomicU64,
    exhausted: AtomicU64,
    message_timeouts: AtomicU64,
}

/// The budget of this process.
pub(crate) static BUDGET: Budget = Budget {
    held: AtomicUsize::new(0),
    limit: AtomicUsize::new(0),
    too_big: AtomicU64::new(0),
    exhausted: AtomicU64::new(0),
    message_timeouts: AtomicU64::new(0),
};

impl Budget {
    /// Bytes charged now, over every connection.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Records this process's share of the budget for `/metrics` (each connection is opened
    /// with its route's, which a reload may have changed since).
    pub(crate) fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Counts a connection closed for `refusal`.
    pub(crate) fn refused(&self, refusal: Refusal) {
        let counter = match refusal {
            Refusal::TooBig => &self.too_big,
            Refusal::Exhausted => &self.exhausted,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection closed because its message in progress stalled.
    pub(crate) fn message_timed_out(&self) {
        self.message_timeouts.fetch_add(1, Ordering::Relaxed);
    }
}

/// One connection's share of the [`BUDGET`]; given back when dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    /// The budget's limit in bytes (`usize::MAX`: counted, never refused); `None`: not
    /// accounted at all (a client-side connection).
    limit: Option<usize>,
    /// Bytes charged to the budget now, a multiple of [`STEP`].
    charged: usize,
}

impl Charge {
    /// A connection outside the budget (wshd's own client side).
    pub(crate) const fn none() -> Charge {
        Charge { limit: None, charged: 0 }
    }

    /// A server connection under a budget of `limit` bytes (0: no limit, still counted).
    pub(crate) fn new(limit: usize) -> Charge {
        BUDGET.set_limit(limit);
        Charge { limit: Some(if limit == 0 { usize::MAX } else { limit }), charged: 0 }
    }

    /// The connection holds `held` bytes now: charges or gives back the difference (rounded
    /// up to [`STEP`]). Growth is always recorded (the memory exists); it is refused, to be
    /// freed by the caller, when it takes the process over its limit.
    #[inline]
    pub(crate) fn settle(&mut self, held: usize) -> Result<(), Refusal> {
        let Some(limit) = self.limit else { return Ok(()) };
        let want = held.div_ceil(STEP).saturating_mul(STEP);
        if want == self.charged {
            return Ok(());
        }
        if want < self.charged {
            BUDGET.held.fetch_sub(self.charged - want, Ordering::Relaxed);
            self.charged = want;
            return Ok(());
        }
        let grow = want - self.charged;
        let before = BUDGET.held.fetch_add(grow, Ordering::Relaxed);
        self.charged = want;
        match before.saturating_add(grow) {
            total if total <= limit => Ok(()),
            _ if want > limit => Err(Refusal::TooBig),
            _ => Err(Refusal::Exhausted),
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.charged > 0 {
            BUDGET.held.fetch_sub(self.charged, Ordering::Relaxed);
        }
    }
}

/// Warns at start about each route whose largest message could not fit in this process's
/// share of the budget (the buffer of a message being assembled grows by doubling, so a
/// message needs up to twice its size): such messages would always be refused with 1009.
pub(crate) fn warn_if_messages_cannot_fit(config: &crate::config::Config) {
    let share = config.websocket.inflight_budget_bytes;
    if share == 0 {
        return;
    }
    let paths = config.routes.iter().map(|r| r.path.as_str());
    for (path, max) in std::iter::once(("[websocket] default", config.websocket.max_message_bytes))
        .chain(paths.map(|p| (p, config.route_settings(p).max_message_bytes)))
    {
        if max.saturating_mul(2) > share {
            tracing::warn!(
                "{path}: max_message_bytes {max} needs up to {} B, more than this process's share of \
                 [websocket] inflight_budget_bytes ({share} B): such messages will be closed with 1009; \
                 raise the budget or lower the message size",
                max.saturating_mul(2)
            );
        }
    }
}

/// The `reason` label of `wshd_budget_closes_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Encodes [`BUDGET`] at each scrape.
#[derive(Debug)]
pub(crate) struct Collector;

impl PromCollector for Collector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauge = |value: usize| ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
        let held = gauge(BUDGET.held());
        held.encode(encoder.encode_descriptor(
            "wshd_inflight_bytes",
            "Bytes held for clients in partially received messages and send queues (charged in 4 KiB steps)",
            None,
            held.metric_type(),
        )?)?;
        let limit = gauge(BUDGET.limit.load(Ordering::Relaxed));
        limit.encode(encoder.encode_descriptor(
            "wshd_inflight_budget_bytes",
            "The in-flight budget of this process (0: none)",
            None,
            limit.metric_type(),
        )?)?;
        let mut family = encoder.encode_descriptor(
            "wshd_budget_closes",
            "Connections closed by the in-flight budget: too_big (1009, needs more than the whole budget), exhausted (1013, held by others), message_timeout (1008, a message in progress stalled)",
            None,
            MetricType::Counter,
        )?;
        for (reason, value) in [
            ("too_big", &BUDGET.too_big),
            ("exhausted", &BUDGET.exhausted),
            ("message_timeout", &BUDGET.message_timeouts),
        ] {
            let counter = ConstCounter::new(value.load(Ordering::Relaxed));
            counter.encode(family.encode_family(&ReasonLabel { reason })?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_in_steps_and_refuses_past_the_limit() {
        // The counter is process-wide and other tests run sessions: compare differences.
        let mut a = Charge::new(64 * STEP);
        let base = BUDGET.held();
        assert_eq!(a.settle(1), Ok(()));
        assert_eq!(a.charged, STEP);
        assert_eq!(a.settle(STEP), Ok(()), "the same step: no change");
        assert_eq!(a.settle(65 * STEP), Err(Refusal::TooBig), "more than the whole budget");
        assert_eq!(a.settle(0), Ok(()), "freed");
        assert_eq!(a.charged, 0);
        assert!(BUDGET.held() <= base + STEP, "given back");
        let mut none = Charge::none();
        assert_eq!(none.settle(usize::MAX), Ok(()));
        assert_eq!(none.charged, 0);
    }
}
