//! Message counts, payload bytes and the delivery-latency histogram: kept per connection,
//! summed per route when scraped.
//!
//! A message used to cost four atomic adds on its route's shared counters (count and bytes,
//! each way) and a locked histogram observation: about ten locked instructions per echoed
//! message on cache lines that every core serving the route writes. A connection's counts are
//! only ever written under its session lock, one writer at a time, so here they are a load and
//! a store each. A scrape adds the counts of the live connections to those of the finished
//! ones; a connection's counts are folded into its route's once, when it ends, under the same
//! lock the scrape takes, so no scrape sees them twice or not at all and the sums never go
//! down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Upper bounds (seconds) of the delivery-latency buckets; a last bucket takes the rest.
pub(crate) const DELIVERY_BOUNDS: [f64; 12] =
    [0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

const BUCKETS: usize = DELIVERY_BOUNDS.len() + 1;

/// A count with one writer at a time (the holder of the connection's session lock): adding
/// is a load and a store, not a locked read-modify-write. Readers may see it slightly late.
#[derive(Debug, Default)]
struct Count(AtomicU64);

impl Count {
    fn add(&self, n: u64) {
        self.0.store(self.0.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One connection's traffic: its route's metrics and its access-log line both read it. Every
/// method that counts must be called with the connection's session lock held (see [`Count`]).
#[derive(Debug, Default)]
pub(crate) struct ConnTraffic {
    messages_in: Count,
    messages_out: Count,
    bytes_in: Count,
    bytes_out: Count,
    delivery_buckets: [Count; BUCKETS],
    delivery_nanos: Count,
}

impl ConnTraffic {
    /// A data message of `len` payload bytes arrived.
    pub(crate) fn message_in(&self, len: usize) {
        self.messages_in.add(1);
        self.bytes_in.add(len as u64);
    }

    /// A data frame of `len` payload bytes was queued; `fin` ends a message.
    pub(crate) fn frame_out(&self, len: usize, fin: bool) {
        if fin {
            self.messages_out.add(1);
        }
        self.bytes_out.add(len as u64);
    }

    /// Data messages received and sent so far.
    pub(crate) fn messages(&self) -> u64 {
        self.messages_in.get() + self.messages_out.get()
    }

    /// The handler took a message that waited `waited` since its arrival.
    pub(crate) fn delivered(&self, waited: Duration) {
        let seconds = waited.as_secs_f64();
        let bucket = DELIVERY_BOUNDS.iter().position(|&bound| seconds <= bound).unwrap_or(BUCKETS - 1);
        self.delivery_buckets[bucket].add(1);
        if !waited.is_zero() {
            self.delivery_nanos.add(u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX));
        }
    }

    fn read(&self) -> Totals {
        let mut totals = Totals {
            messages_in: self.messages_in.get(),
            messages_out: self.messages_out.get(),
            bytes_in: self.bytes_in.get(),
            bytes_out: self.bytes_out.get(),
            delivery_buckets: [0; BUCKETS],
            delivery_nanos: self.delivery_nanos.get(),
        };
        for (total, count) in totals.delivery_buckets.iter_mut().zip(&self.delivery_buckets) {
            *total = count.get();
        }
        totals
    }
}

/// A route's traffic at one moment (or the finished connections' part of it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Data messages received.
    pub(crate) messages_in: u64,
    /// Data messages sent.
    pub(crate) messages_out: u64,
    /// Payload bytes received (after decompression).
    pub(crate) bytes_in: u64,
    /// Payload bytes sent (before compression).
    pub(crate) bytes_out: u64,
    /// Deliveries per latency bucket (not cumulative), the last one unbounded.
    delivery_buckets: [u64; BUCKETS],
    delivery_nanos: u64,
}

impl Totals {
    fn add(&mut self, other: &Totals) {
        self.messages_in += other.messages_in;
        self.messages_out += other.messages_out;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        for (a, b) in self.delivery_buckets.iter_mut().zip(&other.delivery_buckets) {
            *a += b;
        }
        self.delivery_nanos += other.delivery_nanos;
    }

    /// The delivery histogram as `prometheus_client` encodes one: sum (seconds), count, and
    /// (upper bound, count) per bucket.
    pub(crate) fn delivery_histogram(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let bounds = DELIVERY_BOUNDS.iter().copied().chain(std::iter::once(f64::MAX));
        let buckets: Vec<(f64, u64)> = bounds.zip(self.delivery_buckets).collect();
        let count = self.delivery_buckets.iter().sum();
        (Duration::from_nanos(self.delivery_nanos).as_secs_f64(), count, buckets)
    }
}

/// A route's traffic: the finished connections' totals and the live connections.
#[derive(Debug, Default)]
pub(crate) struct RouteTraffic {
    inner: Mutex<RouteTrafficInner>,
}

#[derive(Debug, Default)]
struct RouteTrafficInner {
    finished: Totals,
    live: HashMap<u64, Arc<ConnTraffic>>,
    next_id: u64,
}

impl RouteTraffic {
    fn inner(&self) -> MutexGuard<'_, RouteTrafficInner> {
        // Held only to add, remove or sum; a panic there leaves nothing half-done that matters.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a new connection's counts.
    pub(crate) fn attach(self: &Arc<Self>) -> TrafficHandle {
        let traffic = Arc::new(ConnTraffic::default());
        let mut inner = self.inner();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.live.insert(id, Arc::clone(&traffic));
        TrafficHandle { route: Some((Arc::clone(self), id)), traffic }
    }

    /// Finished plus live connections' counts.
    pub(crate) fn totals(&self) -> Totals {
        let inner = self.inner();
        let mut totals = inner.finished.clone();
        for conn in inner.live.values() {
            totals.add(&conn.read());
        }
        totals
    }
}

/// A connection's counts and its place in its route's traffic; the counts join the route's
/// finished ones when it is detached or dropped, and stay readable here.
#[derive(Debug)]
pub(crate) struct TrafficHandle {
    /// The route and this connection's key in its live set, until detached.
    route: Option<(Arc<RouteTraffic>, u64)>,
    traffic: Arc<ConnTraffic>,
}

impl TrafficHandle {
    /// Counts no route's metrics see.
    pub(crate) fn unattached() -> TrafficHandle {
        TrafficHandle { route: None, traffic: Arc::default() }
    }

    /// The counts so far.
    pub(crate) fn totals(&self) -> Totals {
        self.traffic.read()
    }

    /// Folds the counts into the route's finished ones now (the session ended; later counts,
    /// if any, are not seen by the route).
    pub(crate) fn detach(&mut self) {
        let Some((route, id)) = self.route.take() else { return };
        let mut inner = route.inner();
        let counts = self.traffic.read();
        inner.finished.add(&counts);
        inner.live.remove(&id);
    }
}

impl std::ops::Deref for TrafficHandle {
    type Target = ConnTraffic;
    fn deref(&self) -> &ConnTraffic {
        &self.traffic
    }
}

impl Drop for TrafficHandle {
    fn drop(&mut self) {
        self.detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_and_finished_connections_add_up() {
        let route = Arc::new(RouteTraffic::default());
        let a = route.attach();
        let b = route.attach();
        a.message_in(10);
        a.frame_out(4, false);
        a.frame_out(6, true);
        b.message_in(1);
        a.delivered(Duration::ZERO);
        b.delivered(Duration::from_millis(2));
        let live = route.totals();
        assert_eq!((live.messages_in, live.bytes_in, live.messages_out, live.bytes_out), (2, 11, 1, 10));
        let mut a = a;
        a.detach();
        assert_eq!(a.totals().messages_in, 1, "detached counts stay readable");
        a.message_in(1);
        assert_eq!(
            route.totals(),
            live,
            "a finished connection's counts stay, later ones are not the route's"
        );
        drop(a);
        assert_eq!(route.totals(), live, "dropping after detaching folds nothing twice");
        let (sum, count, buckets) = live.delivery_histogram();
        assert_eq!(count, 2);
        assert!((sum - 0.002).abs() < 1e-9, "sum {sum}");
        assert_eq!(buckets[0], (0.00001, 1));
        assert_eq!(buckets[5], (0.005, 1), "2 ms falls in the 5 ms bucket");
        assert_eq!(buckets.last().map(|b| b.0), Some(f64::MAX));
    }
}
