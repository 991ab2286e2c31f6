//! [`ChannelKey`]: a channel's name and the namespace it lives in, and the bounds on names
//! and presence records.

use std::fmt;
use std::sync::Arc;

/// The longest channel name, in bytes.
pub(crate) const MAX_CHANNEL_NAME: usize = 200;

/// The largest presence record, in bytes (it is copied into every `presence` answer).
pub(crate) const MAX_PRESENCE: usize = 512;

/// The most channels one connection may be a member of at once.
pub(crate) const MAX_JOINED: usize = 64;

/// Where a channel's name is looked up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    /// The route's own namespace (the default): `/chat`'s `lobby` is not `/game`'s.
    Route(Arc<str>),
    /// The namespace every route that opts into sharing uses (`[route.rooms] shared = true`).
    Shared,
}

/// A channel: its namespace and its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ChannelKey {
    scope: Scope,
    name: Arc<str>,
}

/// Why a room operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoomError {
    /// The channel name is empty, longer than [`MAX_CHANNEL_NAME`], or not UTF-8.
    BadName,
    /// The presence record is over [`MAX_PRESENCE`] bytes.
    PresenceTooLarge,
    /// The connection is a member of [`MAX_JOINED`] channels already.
    TooManyChannels,
    /// A text message that is not UTF-8.
    NotUtf8,
    /// The connection is closed (or no connection has that id in this process).
    Gone,
    /// A message id that is empty or over 64 bytes.
    BadId,
    /// The broker to the other nodes is down: not published.
    Unavailable,
}

impl fmt::Display for RoomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RoomError::BadName => "bad channel name",
            RoomError::PresenceTooLarge => "presence record too large",
            RoomError::TooManyChannels => "too many channels joined",
            RoomError::NotUtf8 => "text is not UTF-8",
            RoomError::Gone => "no such connection",
            RoomError::BadId => "bad message id",
            RoomError::Unavailable => "the broker to the other nodes is down",
        })
    }
}

impl ChannelKey {
    /// The channel `name` (1 to [`MAX_CHANNEL_NAME`] bytes) in `scope`.
    pub(crate) fn new(scope: Scope, name: &str) -> Result<ChannelKey, RoomError> {
        if name.is_empty() || name.len() > MAX_CHANNEL_NAME {
            return Err(RoomError::BadName);
        }
        Ok(ChannelKey { scope, name: Arc::from(name) })
    }

    /// The channel `name` in the namespace of `route`.
    pub(crate) fn in_route(route: &str, name: &str) -> Result<ChannelKey, RoomError> {
        ChannelKey::new(Scope::Route(Arc::from(route)), name)
    }

    /// The channel's name (without its namespace).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The channel's namespace.
    pub(crate) fn scope(&self) -> &Scope {
        &self.scope
    }
}
