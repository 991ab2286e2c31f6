//! The counters every client task of the soak updates, and the sampler reads.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How many error texts are kept (the rest are only counted).
const KEPT_ERRORS: usize = 20;

/// Counts of one kind of hostile client (slow readers, dribblers): how their connections
/// ended, and how long they lasted.
#[derive(Default)]
pub(super) struct Endings {
    /// Connections opened.
    pub(super) opened: u64,
    /// "how it ended" → (count, shortest, longest life).
    pub(super) ends: BTreeMap<String, (u64, Duration, Duration)>,
}

impl Endings {
    /// Records one connection's end.
    pub(super) fn end(&mut self, how: &str, life: Duration) {
        let entry = self.ends.entry(how.to_owned()).or_insert((0, life, life));
        entry.0 += 1;
        entry.1 = entry.1.min(life);
        entry.2 = entry.2.max(life);
    }

    /// One line: `opened N; <how>: count (life min–max s); …`.
    pub(super) fn summary(&self) -> String {
        let mut out = format!("opened {}", self.opened);
        for (how, (n, min, max)) in &self.ends {
            out.push_str(&format!(
                "; {how}: {n} (lived {:.1}–{:.1} s)",
                min.as_secs_f64(),
                max.as_secs_f64()
            ));
        }
        out
    }
}

/// Everything the clients count. Losses are for well-behaved clients only.
pub(super) struct Stats {
    /// The clock of the latency stamps carried in messages.
    pub(super) base: Instant,
    /// Set when the run ends (deadline or signal): clients finish what is in flight and stop.
    pub(super) stop: AtomicBool,
    /// Echo messages sent and correctly echoed.
    pub(super) echo_sent: AtomicU64,
    pub(super) echo_ok: AtomicU64,
    /// Room messages published, and deliveries checked in order.
    pub(super) published: AtomicU64,
    pub(super) delivered: AtomicU64,
    /// Churn connections that opened, echoed one message and closed cleanly, and those that
    /// did not.
    pub(super) churn_ok: AtomicU64,
    pub(super) churn_failed: AtomicU64,
    /// Messages a well-behaved client lost (no reply, wrong reply, gap, reordering, a dropped
    /// connection).
    pub(super) lost: AtomicU64,
    /// Round trips (echo) and publish → delivery times (rooms) since the last sample, in µs.
    latencies: Mutex<Vec<u32>>,
    errors: Mutex<(u64, Vec<String>)>,
    pub(super) slow: Mutex<Endings>,
    pub(super) dribble: Mutex<Endings>,
}

impl Stats {
    /// Fresh counters.
    pub(super) fn new() -> Stats {
        Stats {
            base: Instant::now(),
            stop: AtomicBool::new(false),
            echo_sent: AtomicU64::new(0),
            echo_ok: AtomicU64::new(0),
            published: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            churn_ok: AtomicU64::new(0),
            churn_failed: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            latencies: Mutex::new(Vec::new()),
            errors: Mutex::new((0, Vec::new())),
            slow: Mutex::new(Endings::default()),
            dribble: Mutex::new(Endings::default()),
        }
    }

    /// True once the run is over.
    pub(super) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Nanoseconds since `base` (the stamp put in messages).
    pub(super) fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Records a latency measured from stamp `sent_ns`.
    pub(super) fn latency_since(&self, sent_ns: u64) {
        let us = self.now_ns().saturating_sub(sent_ns) / 1000;
        if let Ok(mut l) = self.latencies.lock() {
            l.push(u32::try_from(us).unwrap_or(u32::MAX));
        }
    }

    /// Takes the latencies recorded since the last call.
    pub(super) fn take_latencies(&self) -> Vec<u32> {
        self.latencies.lock().map(|mut l| std::mem::take(&mut *l)).unwrap_or_default()
    }

    /// Counts `n` lost messages of a well-behaved client, keeping the reason.
    pub(super) fn lose(&self, n: u64, why: String) {
        self.lost.fetch_add(n, Ordering::Relaxed);
        self.error(why);
    }

    /// Keeps an error text (the first few).
    pub(super) fn error(&self, why: String) {
        if let Ok(mut e) = self.errors.lock() {
            e.0 += 1;
            if e.1.len() < KEPT_ERRORS {
                e.1.push(why);
            }
        }
    }

    /// (errors counted, the first few).
    pub(super) fn errors(&self) -> (u64, Vec<String>) {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Reads a counter.
    pub(super) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Adds one to a counter.
    pub(super) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
