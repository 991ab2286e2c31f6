//! [`Relay`]: what one process's rooms tell the others (through a [`Broker`](super::Broker)),
//! and its byte encoding for brokers that carry bytes (the master's relay over the control
//! channel). The encoding is private to one build of wshd: master and workers are the same
//! executable.
//!
//! | sub-kind | message | fields after the sub-kind byte |
//! |---|---|---|
//! | 1 | `Hello` | node: u64 |
//! | 2 | `Join` | channel, conn id, presence: u32 length + bytes, will: u8 0 (none) or a data kind, then its data |
//! | 3 | `Leave` | channel, conn id, farewell: u8 (1: the member went without leaving, its will is published) |
//! | 4 | `Publish` | channel, data kind: u8 (1 text, 2 binary), data: u32 length + bytes |
//! | 5 | `Logged` | channel, origin node: u64, message id: u8 length + bytes, max messages: u32, max age ms: u64, age ms: u64, data kind, data |
//! | 6 | `SendTo` | conn id, origin node: u64, data kind, data |
//! | 7 | `SnapshotEnd` | (none) |
//! | 8 | `Ordered` | channel, origin node: u64, data kind, data |
//! | 9 | `Forget` | channel |
//! | 10 | `BrokerState` | up: u8 (0 or 1) |
//! | 11 | `Warm` | channel |
//! | 12 | `Followed` | channel |
//!
//! A channel is its scope (0: a route's, then the route as u16 length + bytes; 1: shared)
//! and its name (u16 length + bytes); a conn id is node and counter, u64 each. Integers are
//! big-endian.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::channel::{ChannelKey, Scope};
use super::history::{HistoryLimits, MessageId};
use super::id::ConnId;
use super::will::Will;
use crate::ws::transport::DataKind;

/// One message between the rooms of two processes; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Relay {
    /// A process's node id (the first part of its connections' ids), so `SendTo` reaches it.
    Hello {
        /// The node id.
        node: u64,
    },
    /// `id` joined `channel` with `presence` (or replaced its record) and its `will`.
    Join {
        /// The channel.
        channel: ChannelKey,
        /// The member.
        id: ConnId,
        /// Its presence record.
        presence: Bytes,
        /// What the channel's other members get if it goes without leaving.
        will: Option<Will>,
    },
    /// `id` left `channel` (or its connection ended).
    Leave {
        /// The channel.
        channel: ChannelKey,
        /// The member.
        id: ConnId,
        /// It went without leaving (its connection ended, its process or node died): every
        /// process delivers its will to its own members of the channel.
        farewell: bool,
    },
    /// A plain publish to `channel`'s members.
    Publish {
        /// The channel.
        channel: ChannelKey,
        /// Text or binary.
        kind: DataKind,
        /// The payload.
        data: Bytes,
    },
    /// A publish logged under `msg_id` in `channel`'s history, `age` old already (a snapshot
    /// of the master's history for a new process).
    Logged {
        /// The channel.
        channel: ChannelKey,
        /// The node id of the process that published it.
        origin: u64,
        /// The publisher's id for it.
        msg_id: MessageId,
        /// The history bounds of the publisher's route.
        limits: HistoryLimits,
        /// How long ago it was published.
        age: Duration,
        /// Text or binary.
        kind: DataKind,
        /// The payload.
        data: Bytes,
    },
    /// A plain publish the relay orders: sent by a process that has joins or ordered
    /// publishes to `channel` still on their way through the relay, delivered by every
    /// process (the origin too) when the relay sends it back. See [`Rooms::publish`](super::Rooms::publish).
    Ordered {
        /// The channel.
        channel: ChannelKey,
        /// The node id of the process that published it.
        origin: u64,
        /// Text or binary.
        kind: DataKind,
        /// The payload.
        data: Bytes,
    },
    /// The end of the snapshot a relay sends a process that just started (the members and
    /// history before it are the others' state).
    SnapshotEnd,
    /// `channel`'s history may have a gap (the broker to the other nodes was down): every
    /// process drops it, so `join_since` answers `false` rather than replay across the gap.
    Forget {
        /// The channel.
        channel: ChannelKey,
    },
    /// Whether the broker to the other nodes is up; while it is down, publishes fail with
    /// [`RoomError::Unavailable`](super::RoomError::Unavailable).
    BrokerState {
        /// Up.
        up: bool,
    },
    /// A `join_since` that this process's history cannot answer: the node's hub is to
    /// follow `channel` and bring its history from the other nodes.
    Warm {
        /// The channel.
        channel: ChannelKey,
    },
    /// The node follows `channel`, and its history from the other nodes has been sent.
    Followed {
        /// The channel.
        channel: ChannelKey,
    },
    /// A message to the connection `id` alone.
    SendTo {
        /// The recipient.
        id: ConnId,
        /// The node id of the process that sent it.
        origin: u64,
        /// Text or binary.
        kind: DataKind,
        /// The payload.
        data: Bytes,
    },
}

/// The bytes are not a [`Relay`] message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadRelay(pub(crate) &'static str);

impl std::fmt::Display for BadRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad rooms relay message: {}", self.0)
    }
}

impl Relay {
    /// The message's bytes.
    pub(crate) fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(64);
        match self {
            Relay::Hello { node } => {
                out.put_u8(1);
                out.put_u64(*node);
            }
            Relay::Join { channel, id, presence, will } => {
                out.put_u8(2);
                put_channel(&mut out, channel);
                put_id(&mut out, *id);
                put_data(&mut out, presence);
                put_will(&mut out, will.as_ref());
            }
            Relay::Leave { channel, id, farewell } => {
                out.put_u8(3);
                put_channel(&mut out, channel);
                put_id(&mut out, *id);
                out.put_u8(u8::from(*farewell));
            }
            Relay::Publish { channel, kind, data } => {
                out.put_u8(4);
                put_channel(&mut out, channel);
                put_kind_data(&mut out, *kind, data);
            }
            Relay::Logged { channel, origin, msg_id, limits, age, kind, data } => {
                out.put_u8(5);
                put_channel(&mut out, channel);
                out.put_u64(*origin);
                out.put_u8(msg_id.as_str().len() as u8);
                out.put_slice(msg_id.as_str().as_bytes());
                out.put_u32(u32::try_from(limits.max_messages).unwrap_or(u32::MAX));
                out.put_u64(limits.max_age.as_millis().try_into().unwrap_or(u64::MAX));
                out.put_u64(age.as_millis().try_into().unwrap_or(u64::MAX));
                put_kind_data(&mut out, *kind, data);
            }
            Relay::SnapshotEnd => out.put_u8(7),
            Relay::Forget { channel } => {
                out.put_u8(9);
                put_channel(&mut out, channel);
            }
            Relay::BrokerState { up } => {
                out.put_u8(10);
                out.put_u8(u8::from(*up));
            }
            Relay::Warm { channel } => {
                out.put_u8(11);
                put_channel(&mut out, channel);
            }
            Relay::Followed { channel } => {
                out.put_u8(12);
                put_channel(&mut out, channel);
            }
            Relay::Ordered { channel, origin, kind, data } => {
                out.put_u8(8);
                put_channel(&mut out, channel);
                out.put_u64(*origin);
                put_kind_data(&mut out, *kind, data);
            }
            Relay::SendTo { id, origin, kind, data } => {
                out.put_u8(6);
                put_id(&mut out, *id);
                out.put_u64(*origin);
                put_kind_data(&mut out, *kind, data);
            }
        }
        out.freeze()
    }

    /// The message in `bytes`.
    pub(crate) fn decode(mut bytes: Bytes) -> Result<Relay, BadRelay> {
        let b = &mut bytes;
        let relay = match get_u8(b)? {
            1 => Relay::Hello { node: get_u64(b)? },
            2 => Relay::Join {
                channel: get_channel(b)?,
                id: get_id(b)?,
                presence: get_data(b)?,
                will: get_will(b)?,
            },
            3 => Relay::Leave { channel: get_channel(b)?, id: get_id(b)?, farewell: get_u8(b)? == 1 },
            4 => Relay::Publish { channel: get_channel(b)?, kind: get_kind(b)?, data: get_data(b)? },
            5 => {
                let channel = get_channel(b)?;
                let origin = get_u64(b)?;
                let id_len = usize::from(get_u8(b)?);
                let msg_id = std::str::from_utf8(&take(b, id_len)?)
                    .map_err(|_| BadRelay("message id"))
                    .and_then(|id| MessageId::new(id).map_err(|_| BadRelay("message id")))?;
                let max_messages = get_u32(b)? as usize;
                let max_age = Duration::from_millis(get_u64(b)?);
                let age = Duration::from_millis(get_u64(b)?);
                let limits = HistoryLimits { max_messages, max_age };
                Relay::Logged { channel, origin, msg_id, limits, age, kind: get_kind(b)?, data: get_data(b)? }
            }
            6 => {
                Relay::SendTo { id: get_id(b)?, origin: get_u64(b)?, kind: get_kind(b)?, data: get_data(b)? }
            }
            7 => Relay::SnapshotEnd,
            9 => Relay::Forget { channel: get_channel(b)? },
            10 => Relay::BrokerState { up: get_u8(b)? == 1 },
            11 => Relay::Warm { channel: get_channel(b)? },
            12 => Relay::Followed { channel: get_channel(b)? },
            8 => Relay::Ordered {
                channel: get_channel(b)?,
                origin: get_u64(b)?,
                kind: get_kind(b)?,
                data: get_data(b)?,
            },
            _ => return Err(BadRelay("unknown sub-kind")),
        };
        if b.has_remaining() {
            return Err(BadRelay("trailing bytes"));
        }
        Ok(relay)
    }
}

fn put_str16(out: &mut BytesMut, text: &str) {
    out.put_u16(u16::try_from(text.len()).unwrap_or(u16::MAX));
    out.put_slice(&text.as_bytes()[..text.len().min(usize::from(u16::MAX))]);
}

fn put_channel(out: &mut BytesMut, channel: &ChannelKey) {
    match channel.scope() {
        Scope::Route(route) => {
            out.put_u8(0);
            put_str16(out, route);
        }
        Scope::Shared => out.put_u8(1),
    }
    put_str16(out, channel.name());
}

fn put_id(out: &mut BytesMut, id: ConnId) {
    out.put_u64(id.node);
    out.put_u64(id.seq);
}

fn put_data(out: &mut BytesMut, data: &[u8]) {
    out.put_u32(u32::try_from(data.len()).unwrap_or(u32::MAX));
    out.put_slice(data);
}

/// A will: 0 for none, else its kind and data.
pub(crate) fn put_will(out: &mut BytesMut, will: Option<&Will>) {
    match will {
        None => out.put_u8(0),
        Some(will) => put_kind_data(out, will.kind, &will.data),
    }
}

/// The will [`put_will`] wrote.
pub(crate) fn get_will(b: &mut Bytes) -> Result<Option<Will>, BadRelay> {
    if b.first() == Some(&0) {
        b.advance(1);
        return Ok(None);
    }
    Ok(Some(Will { kind: get_kind(b)?, data: get_data(b)? }))
}

fn put_kind_data(out: &mut BytesMut, kind: DataKind, data: &[u8]) {
    out.put_u8(match kind {
        DataKind::Text => 1,
        DataKind::Binary => 2,
    });
    put_data(out, data);
}

fn take(b: &mut Bytes, len: usize) -> Result<Bytes, BadRelay> {
    if b.remaining() < len {
        return Err(BadRelay("truncated"));
    }
    Ok(b.split_to(len))
}

fn get_u8(b: &mut Bytes) -> Result<u8, BadRelay> {
    Ok(take(b, 1)?[0])
}

fn get_u32(b: &mut Bytes) -> Result<u32, BadRelay> {
    Ok(take(b, 4)?.get_u32())
}

fn get_u64(b: &mut Bytes) -> Result<u64, BadRelay> {
    Ok(take(b, 8)?.get_u64())
}

fn get_str16(b: &mut Bytes) -> Result<Arc<str>, BadRelay> {
    let len = usize::from(take(b, 2)?.get_u16());
    let bytes = take(b, len)?;
    std::str::from_utf8(&bytes).map(Arc::from).map_err(|_| BadRelay("not UTF-8"))
}

fn get_channel(b: &mut Bytes) -> Result<ChannelKey, BadRelay> {
    let scope = match get_u8(b)? {
        0 => Scope::Route(get_str16(b)?),
        1 => Scope::Shared,
        _ => return Err(BadRelay("scope")),
    };
    ChannelKey::new(scope, &get_str16(b)?).map_err(|_| BadRelay("channel name"))
}

fn get_id(b: &mut Bytes) -> Result<ConnId, BadRelay> {
    Ok(ConnId { node: get_u64(b)?, seq: get_u64(b)? })
}

fn get_data(b: &mut Bytes) -> Result<Bytes, BadRelay> {
    let len = get_u32(b)? as usize;
    take(b, len)
}

fn get_kind(b: &mut Bytes) -> Result<DataKind, BadRelay> {
    match get_u8(b)? {
        1 => Ok(DataKind::Text),
        2 => Ok(DataKind::Binary),
        _ => Err(BadRelay("data kind")),
    }
}
