//! Warming a channel for a join on a node that does not follow the channel yet (rooms
//! across nodes, `docs/decisions/0021-redis-broker.md`): the join asks the node's hub to
//! follow the channel ([`Relay::Warm`]); the hub loads the channel's members and history
//! from the broker, sends them to every process, then says [`Relay::Followed`]. The join
//! waits for that (at most [`WARM_WAIT`]), so `presence` right after it lists the other
//! nodes' members, and a `join_since` of a client that reconnects to another node replays
//! what it missed. Without a broker to other nodes, or while it is down, nothing waits. The
//! wait blocks the calling thread (`join` is synchronous), through
//! `tokio::task::block_in_place` on a runtime worker thread.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::channel::ChannelKey;
use super::{Relay, Rooms};

/// The longest a `join_since` waits for the channel's history from the other nodes.
pub(crate) const WARM_WAIT: Duration = Duration::from_millis(500);

/// The channels the hub said it follows, for the joins waiting on them.
#[derive(Debug, Default)]
pub(super) struct Warming {
    followed: Mutex<HashSet<ChannelKey>>,
    changed: Condvar,
}

impl Warming {
    /// The hub follows `channel` (its history is here).
    pub(super) fn followed(&self, channel: ChannelKey) {
        self.followed.lock().unwrap_or_else(PoisonError::into_inner).insert(channel);
        self.changed.notify_all();
    }

    /// Waits until the hub follows `channel`, at most until `deadline`; whether it does.
    fn wait(&self, channel: &ChannelKey, deadline: Instant) -> bool {
        let mut followed = self.followed.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if followed.contains(channel) {
                return true;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { return false };
            followed = self.changed.wait_timeout(followed, left).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    /// The hub no longer follows `channel` (its history was forgotten).
    pub(super) fn unfollowed(&self, channel: &ChannelKey) {
        self.followed.lock().unwrap_or_else(PoisonError::into_inner).remove(channel);
    }
}

impl Rooms {
    /// Before a join (`since`: of a `join_since`): with a broker to other nodes, unless
    /// this process's history of `channel` holds `since`, when the node does not follow the
    /// channel yet, asks the hub to follow it and waits (at most [`WARM_WAIT`]) until the
    /// other nodes' members and history are here: so `presence` right after the join lists
    /// them, and `join_since` can replay.
    pub(super) fn warm(&self, channel: &ChannelKey, since: Option<&str>) {
        if !self.remote_nodes.load(Ordering::Acquire) || self.broker_down.load(Ordering::Acquire) {
            return;
        }
        if let Some(since) = since
            && self.channels().get(channel).is_some_and(|entry| entry.history.holds(since))
        {
            return;
        }
        if self.warming.followed.lock().unwrap_or_else(PoisonError::into_inner).contains(channel) {
            return;
        }
        let started = Instant::now();
        self.tell(|| Relay::Warm { channel: channel.clone() });
        let wait = || self.warming.wait(channel, started + WARM_WAIT);
        // On a runtime worker thread, hand its other tasks to another thread first: the task
        // that brings the answer may have been woken into this thread's own slot.
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let followed = if multi_thread { tokio::task::block_in_place(wait) } else { wait() };
        if !followed {
            tracing::warn!(
                channel = channel.name(),
                "rooms: the channel's history did not come from the other nodes within {WARM_WAIT:?}"
            );
        }
    }
}
