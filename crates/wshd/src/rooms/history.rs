//! [`History`]: a channel's recent messages published with an id, so a connection that
//! comes back can ask for what it missed (`join_since`). Bounded by count and by age; the
//! age is enforced lazily (on append and on read) and by the registry's sweep, which frees
//! the history of channels nobody touches any more.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::channel::RoomError;

/// The longest message id, in bytes.
pub(crate) const MAX_MESSAGE_ID: usize = 64;

/// How many messages a history keeps, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HistoryLimits {
    /// Messages kept (0: none).
    pub(crate) max_messages: usize,
    /// How long a message is kept.
    pub(crate) max_age: Duration,
}

/// A message id: 1 to [`MAX_MESSAGE_ID`] bytes, opaque to the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct MessageId(Arc<str>);

impl MessageId {
    /// `id` when it is 1 to [`MAX_MESSAGE_ID`] bytes.
    pub(crate) fn new(id: &str) -> Result<MessageId, RoomError> {
        if id.is_empty() || id.len() > MAX_MESSAGE_ID {
            return Err(RoomError::BadId);
        }
        Ok(MessageId(Arc::from(id)))
    }

    /// The id's text.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// One logged message: its id, its frame (built once) and its payload length.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The publisher's id for it.
    pub(crate) id: MessageId,
    /// The whole server frame.
    pub(crate) frame: Bytes,
    /// The payload's length (for the traffic counters).
    pub(crate) payload_len: usize,
    /// When it was appended.
    at: Instant,
}

impl Entry {
    /// A message appended now.
    pub(crate) fn new(id: MessageId, frame: Bytes, payload_len: usize) -> Entry {
        Entry::at(id, frame, payload_len, Instant::now())
    }

    /// A message appended at `at` (earlier, in another process's history).
    pub(crate) fn at(id: MessageId, frame: Bytes, payload_len: usize, at: Instant) -> Entry {
        Entry { id, frame, payload_len, at }
    }
}

/// A channel's logged messages, oldest first; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct History {
    entries: VecDeque<Entry>,
    /// The age bound of the last append (a channel's messages share it).
    max_age: Duration,
}

impl History {
    /// Appends `entry`, then drops what is past `limits` (count, then age).
    pub(crate) fn append(&mut self, entry: Entry, limits: HistoryLimits) {
        self.max_age = limits.max_age;
        if limits.max_messages == 0 {
            self.entries.clear();
            return;
        }
        self.entries.push_back(entry);
        while self.entries.len() > limits.max_messages {
            self.entries.pop_front();
        }
        self.expire(Instant::now());
    }

    /// Drops the messages older than the age bound at `now`.
    pub(crate) fn expire(&mut self, now: Instant) {
        while self.entries.front().is_some_and(|e| now.saturating_duration_since(e.at) > self.max_age) {
            self.entries.pop_front();
        }
    }

    /// Drops every message (the broker lost messages: what is kept may have a gap).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    /// Whether a message whose id is `since` is kept (and not expired).
    pub(crate) fn holds(&self, since: &str) -> bool {
        let now = Instant::now();
        let fresh = |e: &&Entry| now.saturating_duration_since(e.at) <= self.max_age;
        self.entries.iter().filter(fresh).any(|e| e.id.as_str() == since)
    }

    /// Whether no message is kept.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The messages after the last one whose id is `since`, oldest first; `None` when no kept
    /// message has that id (expired messages are dropped first).
    pub(crate) fn since(&mut self, since: &str) -> Option<impl Iterator<Item = &Entry>> {
        self.expire(Instant::now());
        let at = self.entries.iter().rposition(|e| e.id.as_str() == since)?;
        Some(self.entries.iter().skip(at + 1))
    }
}
