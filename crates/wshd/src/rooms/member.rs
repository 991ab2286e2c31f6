//! [`Member`]: one connection's side of the rooms: its id, its mailbox and the channels it
//! joined. The session owns it (type-erased, see `ConnShared::room_member`) and drops it when
//! it ends, which takes the connection out of every channel: no handler code is needed for
//! the cleanup, and a handler that panics or a plugin that is unloaded cannot skip it.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::channel::{ChannelKey, MAX_JOINED, MAX_PRESENCE, RoomError};
use super::id::ConnId;
use super::{MAX_WILL_BYTES, Record, Rooms, Will};
use crate::ws::session::Mailbox;

/// A connection's memberships; see the module docs.
#[derive(Debug)]
pub(crate) struct Member {
    id: ConnId,
    mailbox: Arc<Mailbox>,
    rooms: Arc<Rooms>,
    /// The channels joined, in the order joined.
    joined: Mutex<Vec<ChannelKey>>,
}

impl Member {
    /// The member `id` of `rooms`, receiving through `mailbox` (made by [`Rooms::member`]).
    pub(super) fn new(id: ConnId, mailbox: Arc<Mailbox>, rooms: Arc<Rooms>) -> Member {
        Member { id, mailbox, rooms, joined: Mutex::new(Vec::new()) }
    }

    fn joined(&self) -> MutexGuard<'_, Vec<ChannelKey>> {
        self.joined.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The connection's id.
    pub(crate) fn id(&self) -> ConnId {
        self.id
    }

    /// Joins `channel` with `presence` (at most [`MAX_PRESENCE`] bytes), or replaces the
    /// presence record when already a member.
    pub(crate) fn join(&self, channel: &ChannelKey, presence: &[u8]) -> Result<(), RoomError> {
        self.enter(channel, presence, None, None).map(drop)
    }

    /// Joins `channel` like [`join`](Self::join) and, atomically with it, queues the
    /// channel's logged messages after the one whose id is `since`; whether `since` was
    /// still in the history (when not, nothing is queued).
    pub(crate) fn join_since(
        &self,
        channel: &ChannelKey,
        presence: &[u8],
        since: &str,
    ) -> Result<bool, RoomError> {
        self.enter(channel, presence, None, Some(since))
    }

    /// Joins `channel` with `presence` and `will` (at most [`MAX_WILL_BYTES`]; replacing
    /// both when already a member), replaying the history after `since` when given:
    /// whether `since` was found (`false` without it).
    pub(crate) fn enter(
        &self,
        channel: &ChannelKey,
        presence: &[u8],
        will: Option<Will>,
        since: Option<&str>,
    ) -> Result<bool, RoomError> {
        let mut found = false;
        self.rooms.warm(channel, since);
        self.join_with(channel, presence, will, |rooms, record| match since {
            None => rooms.subscribe(channel, self.id, record, &self.mailbox),
            Some(since) => found = rooms.subscribe_since(channel, self.id, record, &self.mailbox, since),
        })?;
        Ok(found)
    }

    /// The checks and bookkeeping of a join around `subscribe`, which adds the member.
    fn join_with(
        &self,
        channel: &ChannelKey,
        presence: &[u8],
        will: Option<Will>,
        subscribe: impl FnOnce(&Rooms, Record),
    ) -> Result<(), RoomError> {
        if presence.len() > MAX_PRESENCE || will.as_ref().is_some_and(|w| w.data.len() > MAX_WILL_BYTES) {
            return Err(RoomError::PresenceTooLarge);
        }
        if self.mailbox.is_closed() {
            return Err(RoomError::Gone);
        }
        let mut joined = self.joined();
        let new = !joined.contains(channel);
        if new && joined.len() >= MAX_JOINED {
            return Err(RoomError::TooManyChannels);
        }
        subscribe(&self.rooms, Record { presence: Bytes::copy_from_slice(presence), will });
        if new {
            joined.push(channel.clone());
        }
        Ok(())
    }

    /// Leaves `channel`; whether it was a member.
    pub(crate) fn leave(&self, channel: &ChannelKey) -> bool {
        let mut joined = self.joined();
        let Some(at) = joined.iter().position(|c| c == channel) else { return false };
        joined.remove(at);
        self.rooms.unsubscribe(channel, self.id);
        true
    }

    /// The channels joined, in the order joined.
    #[cfg(test)]
    pub(crate) fn channels(&self) -> Vec<ChannelKey> {
        self.joined().clone()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let joined = std::mem::take(&mut *self.joined());
        self.rooms.forget(self.id, &joined);
    }
}
