//! Rooms owned by the host: a connection [`join`](crate::Connection::join)s channels with a
//! small presence record, and anything holding a [`Rooms`] handle (cloneable, usable from
//! tasks made with [`spawn`](crate::spawn)) publishes to a channel's members, sends to one
//! connection by its [`ConnId`], or lists a channel's [`Member`]s.
//!
//! The host keeps the channels, not the plugin: they outlive a hot reload (members served
//! by the old and the new build see each other), and a connection leaves every channel when
//! it ends, without handler code. Channel names are per route: `lobby` on `/chat` is not
//! `lobby` on `/game` (unless both routes set `[route.rooms] shared = true`). A publish does
//! not wait: each member has a bounded queue in the host, and a member that does not keep up
//! is closed with 1008 (or loses its oldest messages: `overflow = "drop_oldest"`).
//!
//! Rooms span the host's worker processes: members served by different workers share
//! channels, presence, `send_to` and history (the host relays between them). A join or leave
//! on another worker shows in [`Rooms::presence`] one relay hop later (well under a
//! millisecond on one machine).
//!
//! ```no_run
//! use wshd_sdk::{Connection, RoomError};
//!
//! /// Joins `lobby` as `nick`, greets it, and tells this connection who is there.
//! fn enter(conn: &Connection, nick: &str) -> Result<(), RoomError> {
//!     conn.join("lobby", nick.as_bytes())?;
//!     let rooms = conn.rooms(); // Clone + Send: usable from tasks made with `spawn`
//!     rooms.publish_text("lobby", &format!("{nick} joined"))?;
//!     let names: Vec<String> = rooms
//!         .presence("lobby")?
//!         .iter()
//!         .map(|member| String::from_utf8_lossy(&member.presence).into_owned())
//!         .collect();
//!     rooms.send_text_to(conn.id()?, &format!("here: {}", names.join(", ")))
//! }
//! ```
//!
//! `handlers/chat_wsh` is a whole app on this API, with history and recovery
//! ([`Rooms::publish_text_with_id`], [`Connection::join_since`]).

use std::fmt;
use std::str::FromStr;

use crate::Connection;
use crate::abi::*;
use crate::export::RawConn;
use crate::export::rooms::room_send_to;

/// A connection's id: unique across the host's processes, stable for the connection's life.
/// It prints as a short string (`9f3a0c1d2e4b5a69-1f`) that [`FromStr`] reads back, so it can
/// travel in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    node: u64,
    seq: u64,
}

impl ConnId {
    fn from_raw(id: RConnId) -> ConnId {
        ConnId { node: id.node, seq: id.seq }
    }

    fn to_raw(self) -> RConnId {
        RConnId { node: self.node, seq: self.seq }
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}-{:x}", self.node, self.seq)
    }
}

/// The text is not a [`ConnId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseConnIdError;

impl fmt::Display for ParseConnIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a connection id")
    }
}

impl std::error::Error for ParseConnIdError {}

impl FromStr for ConnId {
    type Err = ParseConnIdError;

    fn from_str(s: &str) -> Result<ConnId, ParseConnIdError> {
        let (node, seq) = s.split_once('-').ok_or(ParseConnIdError)?;
        if node.len() != 16 || seq.is_empty() || seq.len() > 16 {
            return Err(ParseConnIdError);
        }
        let node = u64::from_str_radix(node, 16).map_err(|_| ParseConnIdError)?;
        let seq = u64::from_str_radix(seq, 16).map_err(|_| ParseConnIdError)?;
        Ok(ConnId { node, seq })
    }
}

/// What a member leaves behind when it goes without leaving: see
/// [`Connection::join_with_will`](crate::Connection::join_with_will).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Will<'a> {
    /// A text message.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

/// Why a room operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RoomError {
    /// The channel name is empty or over 200 bytes.
    BadName,
    /// The presence record is over 512 bytes.
    PresenceTooLarge,
    /// The connection is a member of 64 channels already.
    TooManyChannels,
    /// The connection is closed, or no connection has that id (in this host process).
    Gone,
    /// The host has no rooms, or not this call (it is older than this SDK).
    Unsupported,
    /// A message id that is empty or over 64 bytes.
    BadId,
    /// The broker linking this host to the other nodes (`[broker]`, Redis) is down: the
    /// message was not published (nothing was delivered). Try again later.
    Unavailable,
}

impl fmt::Display for RoomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RoomError::BadName => "bad channel name",
            RoomError::PresenceTooLarge => "presence record too large",
            RoomError::TooManyChannels => "too many channels joined",
            RoomError::Gone => "no such connection",
            RoomError::Unsupported => "the host has no rooms",
            RoomError::BadId => "bad message id",
            RoomError::Unavailable => "the broker to the other nodes is down",
        })
    }
}

impl std::error::Error for RoomError {}

/// The error of a `ROOM_*` code (text is always UTF-8 here, and kinds are always valid).
fn room_error(code: u32) -> RoomError {
    match code {
        ROOM_BAD_NAME => RoomError::BadName,
        ROOM_PRESENCE_TOO_LARGE => RoomError::PresenceTooLarge,
        ROOM_TOO_MANY_CHANNELS => RoomError::TooManyChannels,
        ROOM_GONE => RoomError::Gone,
        ROOM_BAD_ID => RoomError::BadId,
        ROOM_UNAVAILABLE => RoomError::Unavailable,
        _ => RoomError::Unsupported,
    }
}

/// A member of a channel: its connection's id and the presence record it joined with.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Member {
    /// The member's connection.
    pub id: ConnId,
    /// The record it joined with.
    pub presence: Vec<u8>,
}

/// A cloneable handle on the host's rooms, in the namespace of the route of the connection
/// it came from ([`Connection::rooms`]); usable from any task.
#[derive(Debug, Clone)]
pub struct Rooms {
    raw: RawConn,
}

impl Rooms {
    /// Sends `text` to every member of `channel`; how many members it was queued for.
    pub fn publish_text(&self, channel: &str, text: &str) -> Result<usize, RoomError> {
        self.publish(channel, MSG_TEXT, text.as_bytes())
    }

    /// Sends `data` to every member of `channel`; how many members it was queued for.
    pub fn publish_binary(&self, channel: &str, data: &[u8]) -> Result<usize, RoomError> {
        self.publish(channel, MSG_BINARY, data)
    }

    fn publish(&self, channel: &str, kind: u8, data: &[u8]) -> Result<usize, RoomError> {
        let delivered = self.raw.room_publish(channel, kind, data).map_err(room_error)?;
        Ok(usize::try_from(delivered).unwrap_or(usize::MAX))
    }

    /// Sends `text` to every member of `channel` like [`publish_text`](Self::publish_text),
    /// and appends it to the channel's history under `id` (1 to 64 bytes, opaque to the
    /// host: a sequence number, a UUID…), so that a connection that comes back can ask for
    /// what it missed with [`Connection::join_since`]. The history is per channel, bounded by
    /// the route's `[route.rooms] history_messages` and `history_secs` (100 messages, 300 s
    /// by default), and stays after the last member left until it expires. How many members
    /// it was queued for.
    ///
    /// With several worker processes, the host orders logged messages in one place (the
    /// master), so every worker's history holds them in the same order; a logged message
    /// then reaches the members, and the history, one relay round trip after this returns
    /// (on one machine, well under a millisecond). The same publisher's later plain
    /// publishes to the channel stay behind it.
    ///
    /// ```no_run
    /// # use wshd_sdk::{Rooms, RoomError};
    /// # fn say(rooms: &Rooms, seq: u64) -> Result<(), RoomError> {
    /// let id = format!("{seq}");
    /// rooms.publish_text_with_id("lobby", &id, &format!(r#"{{"id":"{id}","text":"hi"}}"#))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn publish_text_with_id(&self, channel: &str, id: &str, text: &str) -> Result<usize, RoomError> {
        self.publish_logged(channel, id, MSG_TEXT, text.as_bytes())
    }

    /// [`publish_text_with_id`](Self::publish_text_with_id) for binary messages.
    ///
    /// ```no_run
    /// # use wshd_sdk::{Rooms, RoomError};
    /// # fn tick(rooms: &Rooms, encoded_tick: &[u8]) -> Result<(), RoomError> {
    /// rooms.publish_binary_with_id("ticks", "42", encoded_tick)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn publish_binary_with_id(&self, channel: &str, id: &str, data: &[u8]) -> Result<usize, RoomError> {
        self.publish_logged(channel, id, MSG_BINARY, data)
    }

    fn publish_logged(&self, channel: &str, id: &str, kind: u8, data: &[u8]) -> Result<usize, RoomError> {
        let delivered = self.raw.room_publish_logged(channel, id, kind, data).map_err(room_error)?;
        Ok(usize::try_from(delivered).unwrap_or(usize::MAX))
    }

    /// Sends `text` to the connection `id` alone. [`RoomError::Gone`] when `id` is a
    /// connection of this worker process that has ended; for a connection of another worker,
    /// `Ok` means the message was handed to the host's relay (it is dropped there if that
    /// connection has ended).
    pub fn send_text_to(&self, id: ConnId, text: &str) -> Result<(), RoomError> {
        code_result(room_send_to(id.to_raw(), MSG_TEXT, text.as_bytes()))
    }

    /// Sends `data` to the connection `id` alone.
    pub fn send_binary_to(&self, id: ConnId, data: &[u8]) -> Result<(), RoomError> {
        code_result(room_send_to(id.to_raw(), MSG_BINARY, data))
    }

    /// The members of `channel`, in the order this worker process learnt of their joins
    /// (members on other workers appear one relay hop after they joined).
    pub fn presence(&self, channel: &str) -> Result<Vec<Member>, RoomError> {
        let members = self.raw.room_presence(channel).map_err(room_error)?;
        Ok(members.into_iter().map(|(id, presence)| Member { id: ConnId::from_raw(id), presence }).collect())
    }
}

fn code_result(code: u32) -> Result<(), RoomError> {
    match code {
        ROOM_OK => Ok(()),
        code => Err(room_error(code)),
    }
}

impl Connection {
    /// This connection's id (made on the first call; the same for the connection's life).
    pub fn id(&self) -> Result<ConnId, RoomError> {
        self.raw().room_id().map(ConnId::from_raw).map_err(room_error)
    }

    /// Joins `channel` with a `presence` record (at most 512 bytes; others see it in
    /// [`Rooms::presence`]), or replaces the record when already a member.
    pub fn join(&self, channel: &str, presence: &[u8]) -> Result<(), RoomError> {
        code_result(self.raw().room_join(channel, presence))
    }

    /// Joins `channel` like [`join`](Self::join) and, atomically with the join, queues to
    /// this connection every message of the channel's history published after the one whose
    /// id is `since` (see [`Rooms::publish_text_with_id`]), in the order published: none is
    /// missed or received twice, whatever is published meanwhile. `true` when the history
    /// still held `since`; `false` when not (expired, pushed out, never seen, or the host
    /// process restarted) — then nothing is replayed and the handler should send a full state.
    ///
    /// Order: the replayed messages are queued before this returns, so anything queued to
    /// the connection afterwards (a later publish, or a [`Rooms::send_text_to`] to itself)
    /// arrives after them. With worker processes, a `send_text_to` itself also arrives after
    /// the logged messages that were still on their way to this worker when it joined. A message the handler sends with [`Connection::send_text`] goes
    /// another way (the connection's own write queue, not the room queue) and may overtake
    /// them; send "recovered" markers with `send_text_to(conn.id()?, ..)`.
    ///
    /// ```no_run
    /// # use wshd_sdk::{Connection, RoomError};
    /// # fn rejoin(conn: &Connection, last_seen_id: &str) -> Result<(), RoomError> {
    /// let recovered = conn.join_since("lobby", b"alice", last_seen_id)?;
    /// let rooms = conn.rooms();
    /// rooms.send_text_to(conn.id()?, &format!(r#"{{"type":"recovered","ok":{recovered}}}"#))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn join_since(&self, channel: &str, presence: &[u8], since: &str) -> Result<bool, RoomError> {
        self.raw().room_join_since(channel, presence, since).map_err(room_error)
    }

    /// Joins `channel` like [`join`](Self::join) (or like [`join_since`](Self::join_since)
    /// with `since`: then the result says whether `since` was found; else it is `false`),
    /// and leaves a [`Will`] there: a message the host queues to the channel's other members
    /// if this connection stops being a member without [`leave`](Self::leave) — its
    /// connection ends while still a member (a crash of the handler, a close it did not
    /// handle), or its worker process or node dies (with `[broker]`: when the node's
    /// liveness key expires in Redis, 3 heartbeats). Each remaining member gets it once.
    /// Joining again replaces the will; [`leave`](Self::leave) discards it (say goodbye
    /// yourself then). A will is at most 4,096 bytes ([`RoomError::PresenceTooLarge`]);
    /// [`RoomError::Unsupported`] from a host older than this call.
    ///
    /// ```no_run
    /// # use wshd_sdk::{Connection, RoomError, Will};
    /// # fn enter(conn: &Connection) -> Result<(), RoomError> {
    /// conn.join_with_will("lobby", b"alice", None, Will::Text(r#"{"left":"alice"}"#))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn join_with_will(
        &self,
        channel: &str,
        presence: &[u8],
        since: Option<&str>,
        will: Will<'_>,
    ) -> Result<bool, RoomError> {
        let (kind, data) = match will {
            Will::Text(text) => (MSG_TEXT, text.as_bytes()),
            Will::Binary(data) => (MSG_BINARY, data),
        };
        let since = since.unwrap_or("");
        self.raw().room_join_with_will(channel, presence, since, kind, data).map_err(room_error)
    }

    /// Leaves `channel`; whether the connection was a member. (The host leaves every channel
    /// for the connection when it ends.)
    pub fn leave(&self, channel: &str) -> Result<bool, RoomError> {
        match self.raw().room_leave(channel) {
            ROOM_OK => Ok(true),
            ROOM_NOT_MEMBER => Ok(false),
            code => Err(room_error(code)),
        }
    }

    /// A cloneable handle to publish, send by id and list members, from any task.
    pub fn rooms(&self) -> Rooms {
        Rooms { raw: self.raw().clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_and_parse_back() {
        let id = ConnId { node: 0x9f3a_0c1d_2e4b_5a69, seq: 0x1f };
        assert_eq!(id.to_string(), "9f3a0c1d2e4b5a69-1f");
        assert_eq!("9f3a0c1d2e4b5a69-1f".parse::<ConnId>(), Ok(id));
        assert_eq!("9f3a-1f".parse::<ConnId>(), Err(ParseConnIdError));
        assert_eq!("9f3a0c1d2e4b5a69-".parse::<ConnId>(), Err(ParseConnIdError));
    }
}
