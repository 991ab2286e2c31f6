//! Open WebSocket connections, counted where every worker process sees them, so that
//! `[server] max_connections` and a route's `max_connections` hold for the whole server and
//! not per worker. Each counter keeps a total (what admission checks and bumps, atomically)
//! and each worker's share of it (what the master takes back when a worker dies, because a
//! dead worker never gets to close its connections).

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::slot::ZeroIsValid;

/// Worker processes the scoreboard has room for (worker indexes are below it).
/// Twice `[server] workers`' limit of 32: a recycled worker drains in its cell while its
/// replacement starts in another.
pub(crate) const MAX_WORKERS: usize = 64;
/// Routes whose connections can be counted server-wide; routes past it are counted per
/// worker process only (logged once).
pub(crate) const MAX_COUNTED_ROUTES: usize = 256;

/// One counter: a total and each worker's share.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Counter {
    /// The route key ([`route_key`]); 0 for a free entry.
    key: AtomicU64,
    /// Open connections over all workers.
    total: AtomicU64,
    /// Open connections per worker index.
    by_worker: [AtomicU32; MAX_WORKERS],
}

/// The server's connection counts.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct ConnectionCounts {
    global: Counter,
    routes: [Counter; MAX_COUNTED_ROUTES],
}

// SAFETY: repr(C), atomics only.
#[allow(unsafe_code)]
unsafe impl ZeroIsValid for ConnectionCounts {}

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The server-wide limit.
    Global,
    /// The route's limit.
    Route,
}

/// The key of a route's counter: a hash of its path, never 0.
pub(crate) fn route_key(path: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut hasher);
    hasher.finish() | 1
}

/// Adds one to `counter` when it is below `max` (no `max`: always).
fn take(counter: &AtomicU64, max: Option<u64>) -> bool {
    match max {
        None => {
            counter.fetch_add(1, Ordering::AcqRel);
            true
        }
        Some(max) => {
            counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).is_ok()
        }
    }
}

impl Counter {
    fn by(&self, worker: usize) -> Option<&AtomicU32> {
        self.by_worker.get(worker)
    }

    fn add_share(&self, worker: usize) {
        if let Some(share) = self.by(worker) {
            share.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn release(&self, worker: usize) {
        self.total.fetch_sub(1, Ordering::AcqRel);
        if let Some(share) = self.by(worker) {
            share.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Takes back everything `worker` held; what was taken.
    fn reclaim(&self, worker: usize) -> u64 {
        let held = self.by(worker).map_or(0, |share| share.swap(0, Ordering::AcqRel));
        self.total.fetch_sub(u64::from(held), Ordering::AcqRel);
        u64::from(held)
    }
}

impl ConnectionCounts {
    /// The counter of `key`, created on first use; `None` when the table is full.
    fn route(&self, key: u64) -> Option<&Counter> {
        let start = (key as usize) % MAX_COUNTED_ROUTES;
        for i in 0..MAX_COUNTED_ROUTES {
            let counter = &self.routes[(start + i) % MAX_COUNTED_ROUTES];
            match counter.key.compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(counter),
                Err(existing) if existing == key => return Some(counter),
                Err(_) => {}
            }
        }
        None
    }

    /// Opens a connection for `worker` on the route `key`, within both limits.
    pub(crate) fn open(
        &self,
        worker: usize,
        key: u64,
        global_max: Option<u64>,
        route_max: Option<u64>,
    ) -> Result<(), Refused> {
        if !take(&self.global.total, global_max) {
            return Err(Refused::Global);
        }
        if let Some(route) = self.route(key) {
            if !take(&route.total, route_max) {
                self.global.total.fetch_sub(1, Ordering::AcqRel);
                return Err(Refused::Route);
            }
            route.add_share(worker);
        }
        self.global.add_share(worker);
        Ok(())
    }

    /// Closes a connection [`open`](Self::open)ed by `worker` on the route `key`.
    pub(crate) fn close(&self, worker: usize, key: u64) {
        if let Some(route) = self.route(key) {
            route.release(worker);
        }
        self.global.release(worker);
    }

    /// Open connections over the whole server.
    pub(crate) fn total(&self) -> u64 {
        self.global.total.load(Ordering::Acquire)
    }

    /// Open connections of `worker`.
    pub(crate) fn of_worker(&self, worker: usize) -> u64 {
        self.global.by(worker).map_or(0, |share| u64::from(share.load(Ordering::Acquire)))
    }

    /// Takes back the connections a dead `worker` held; how many (master only, after the
    /// worker has exited and before its index is reused).
    pub(crate) fn reclaim(&self, worker: usize) -> u64 {
        for route in &self.routes {
            if route.key.load(Ordering::Acquire) != 0 {
                route.reclaim(worker);
            }
        }
        self.global.reclaim(worker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoreboard::slot::leak_zeroed;

    #[test]
    fn both_limits_hold_across_workers_and_a_refusal_takes_nothing() {
        let counts = leak_zeroed::<ConnectionCounts>();
        let (a, b) = (route_key("/a"), route_key("/b"));
        assert_eq!(counts.open(0, a, Some(3), Some(2)), Ok(()));
        assert_eq!(counts.open(1, a, Some(3), Some(2)), Ok(()));
        assert_eq!(counts.open(1, a, Some(3), Some(2)), Err(Refused::Route));
        assert_eq!(counts.open(0, b, Some(3), None), Ok(()));
        assert_eq!(counts.open(1, b, Some(3), None), Err(Refused::Global));
        assert_eq!((counts.total(), counts.of_worker(0), counts.of_worker(1)), (3, 2, 1));
        counts.close(0, a);
        assert_eq!(counts.open(1, a, Some(3), Some(2)), Ok(()));
    }

    #[test]
    fn a_dead_workers_connections_are_taken_back() {
        let counts = leak_zeroed::<ConnectionCounts>();
        let a = route_key("/a");
        for _ in 0..2 {
            assert_eq!(counts.open(0, a, Some(3), Some(3)), Ok(()));
        }
        assert_eq!(counts.open(1, a, Some(3), Some(3)), Ok(()));
        assert_eq!(counts.open(1, a, Some(3), Some(3)), Err(Refused::Global));
        assert_eq!(counts.reclaim(0), 2);
        assert_eq!((counts.total(), counts.of_worker(0)), (1, 0));
        assert_eq!(counts.open(1, a, Some(3), Some(3)), Ok(()));
        assert_eq!(counts.open(1, a, Some(3), Some(3)), Ok(()));
        assert_eq!(counts.open(1, a, Some(3), Some(3)), Err(Refused::Global));
    }

    #[test]
    fn route_keys_differ_and_are_never_zero() {
        assert_ne!(route_key("/a"), route_key("/b"));
        assert_ne!(route_key(""), 0);
    }
}
