//! Connections that have not finished their handshake: accepted (TCP, and TLS if any) but
//! their first request head not complete yet. They are counted (`wshd_pending_connections`)
//! and, when the process nears its descriptor limit or holds more than
//! `[server] max_pending_connections` of them, the oldest that sent nothing — then the
//! oldest — are closed to admit new clients (nginx closes idle keep-alive connections the
//! same way, `ngx_drain_connections`). See `docs/decisions/0020-pending-connections.md`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::metrics::PendingMetrics;

/// Why pending connections were closed (the `reason` label of `wshd_pending_shed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShedReason {
    /// The process is near (or at) its file descriptor limit.
    FdLimit,
    /// `[server] max_pending_connections` is reached.
    PendingLimit,
}

impl ShedReason {
    /// The label value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            ShedReason::FdLimit => "fd_limit",
            ShedReason::PendingLimit => "pending_limit",
        }
    }
}

/// What the connection and the registry know of one pending connection.
#[derive(Debug)]
pub(crate) struct Watch {
    /// When it was accepted.
    since: Instant,
    /// It sent at least one byte (of its request head, or its TLS hello).
    heard: AtomicBool,
    /// Its first request line had a `#` (a fragment, which RFC 6455 §3 forbids).
    fragment: AtomicBool,
    /// Its first request head is complete: it is no longer pending.
    complete: AtomicBool,
    /// Cancelled when the connection is shed.
    shed: CancellationToken,
}

impl Default for Watch {
    fn default() -> Watch {
        Watch {
            since: Instant::now(),
            heard: AtomicBool::default(),
            fragment: AtomicBool::default(),
            complete: AtomicBool::default(),
            shed: CancellationToken::default(),
        }
    }
}

impl Watch {
    /// Marks that the client sent something.
    pub(crate) fn heard(&self) {
        if !self.heard.load(Ordering::Relaxed) {
            self.heard.store(true, Ordering::Relaxed);
        }
    }

    /// Whether the client sent anything.
    pub(crate) fn was_heard(&self) -> bool {
        self.heard.load(Ordering::Relaxed)
    }

    /// Marks that the first request line has a fragment.
    pub(crate) fn saw_fragment(&self) {
        self.fragment.store(true, Ordering::Relaxed);
    }

    /// Whether the first request line had a fragment.
    pub(crate) fn has_fragment(&self) -> bool {
        self.fragment.load(Ordering::Relaxed)
    }

    /// Whether the first request head is complete.
    pub(crate) fn is_complete(&self) -> bool {
        self.complete.load(Ordering::Acquire)
    }
}

/// This process's pending connections, oldest first.
#[derive(Debug)]
pub(crate) struct Pending {
    conns: Mutex<BTreeMap<u64, Arc<Watch>>>,
    next: AtomicU64,
    metrics: PendingMetrics,
}

impl Pending {
    /// An empty registry counting into `metrics`.
    pub(crate) fn new(metrics: PendingMetrics) -> Pending {
        Pending { conns: Mutex::default(), next: AtomicU64::new(0), metrics }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Watch>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a newly accepted connection.
    pub(crate) fn admit(self: &Arc<Self>) -> Arc<Ticket> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let watch = Arc::new(Watch::default());
        let mut conns = self.lock();
        conns.insert(id, Arc::clone(&watch));
        self.metrics.set_pending(conns.len());
        Arc::new(Ticket { id, pending: Arc::clone(self), watch })
    }

    /// Pending connections now.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn remove(&self, id: u64) {
        let mut conns = self.lock();
        if conns.remove(&id).is_some() {
            self.metrics.set_pending(conns.len());
        }
    }

    /// Closes up to `n` pending connections: those that sent nothing, oldest first, then the
    /// oldest of the others. Returns how many.
    pub(crate) fn shed(&self, n: usize, reason: ShedReason) -> usize {
        let conns = self.lock();
        let mut victims: Vec<u64> =
            conns.iter().filter(|(_, w)| !w.was_heard()).map(|(id, _)| *id).take(n).collect();
        if victims.len() < n {
            let more = n - victims.len();
            let heard = conns.iter().filter(|(_, w)| w.was_heard()).map(|(id, _)| *id);
            victims.extend(heard.take(more));
        }
        self.close(conns, &victims, reason)
    }

    /// Closes up to `n` pending connections that sent nothing for at least `silent_for` since
    /// they were accepted, oldest first; never one that spoke. For a failed `accept`, which
    /// does not prove a client is waiting (Linux reserves the descriptor before it looks at
    /// the queue): a client that just connected has sent its head already, an idle socket
    /// has not. Returns how many.
    pub(crate) fn shed_silent(&self, n: usize, silent_for: Duration, reason: ShedReason) -> usize {
        let conns = self.lock();
        let victims: Vec<u64> = conns
            .iter()
            .filter(|(_, w)| !w.was_heard() && w.since.elapsed() >= silent_for)
            .map(|(id, _)| *id)
            .take(n)
            .collect();
        self.close(conns, &victims, reason)
    }

    fn close(
        &self,
        mut conns: std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Watch>>>,
        victims: &[u64],
        reason: ShedReason,
    ) -> usize {
        for id in victims {
            if let Some(watch) = conns.remove(id) {
                watch.shed.cancel();
            }
        }
        self.metrics.set_pending(conns.len());
        drop(conns);
        self.metrics.shed(reason.label(), victims.len());
        victims.len()
    }
}

/// A pending connection's registration; dropping the last holder unregisters it.
#[derive(Debug)]
pub(crate) struct Ticket {
    id: u64,
    pending: Arc<Pending>,
    watch: Arc<Watch>,
}

impl Ticket {
    /// What the connection's reader reports into.
    pub(crate) fn watch(&self) -> &Arc<Watch> {
        &self.watch
    }

    /// The first request head is complete: the connection is no longer pending (called
    /// before its request is served).
    pub(crate) fn head_complete(&self) {
        if !self.watch.complete.swap(true, Ordering::AcqRel) {
            self.pending.remove(self.id);
        }
    }

    /// Resolves when the connection is shed.
    pub(crate) async fn shed(&self) {
        self.watch.shed.cancelled().await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.pending.remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Arc<Pending> {
        Arc::new(Pending::new(PendingMetrics::default()))
    }

    #[test]
    fn silent_connections_are_shed_first_then_the_oldest() {
        let pending = registry();
        let talker = pending.admit();
        talker.watch().heard();
        let silent_old = pending.admit();
        let newer_talker = pending.admit();
        newer_talker.watch().heard();
        let silent_new = pending.admit();
        assert_eq!(pending.len(), 4);
        assert_eq!(pending.shed(3, ShedReason::FdLimit), 3);
        assert!(silent_old.watch().shed.is_cancelled());
        assert!(silent_new.watch().shed.is_cancelled());
        assert!(talker.watch().shed.is_cancelled(), "the oldest of those that talked");
        assert!(!newer_talker.watch().shed.is_cancelled());
        assert_eq!(pending.len(), 1);
    }

    #[test]
    fn a_failed_accept_sheds_only_connections_silent_for_long_enough() {
        let pending = registry();
        let talker = pending.admit();
        talker.watch().heard();
        let silent = pending.admit();
        assert_eq!(pending.shed_silent(5, Duration::from_secs(60), ShedReason::FdLimit), 0, "too young");
        assert_eq!(pending.shed_silent(5, Duration::ZERO, ShedReason::FdLimit), 1);
        assert!(silent.watch().shed.is_cancelled());
        assert!(!talker.watch().shed.is_cancelled(), "one that spoke is never shed on a failed accept");
    }

    #[test]
    fn a_complete_head_or_a_drop_unregisters() {
        let pending = registry();
        let done = pending.admit();
        let gone = pending.admit();
        done.head_complete();
        assert_eq!(pending.len(), 1);
        drop(gone);
        assert_eq!(pending.len(), 0);
        assert_eq!(pending.shed(5, ShedReason::PendingLimit), 0);
        assert!(!done.watch().shed.is_cancelled(), "a complete connection is never shed");
    }
}
