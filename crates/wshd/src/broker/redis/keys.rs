//! Redis names and the message envelope. Every key and topic starts with `wshd:`.
//!
//! | name | what |
//! |---|---|
//! | `wshd:c:<channel>` | pub/sub topic of a channel: joins, leaves, publishes |
//! | `wshd:p:<channel>` | hash of a channel's members: conn id → origin node (u64) + presence |
//! | `wshd:n:<process>` | pub/sub topic of a process (16 hex digits): `send_to` its connections |
//! | `wshd:s:<channel>` | stream of a channel's logged messages (field `m`: the envelope) |
//! | `wshd:e:<channel>` | the epoch of that stream: random, set by the first append |
//! | `wshd:alive:<node>` | a node's liveness key, renewed every heartbeat, expiring after three |
//!
//! `<channel>` is `r<route length>:<route>:<name>` for a route's channel, `s:<name>` for a
//! shared one (the length keeps `/a:b` + `c` apart from `/a` + `b:c`). A message on a topic
//! is the origin node (u64, big-endian) and the [`Relay`] encoding (the "envelope"), after
//! a kind byte: 0, or 1 for a logged message followed by its stream id (u8 length + ASCII),
//! which the Lua script that appended it adds.

use bytes::{BufMut, Bytes, BytesMut};

use crate::rooms::{ChannelKey, Record, Relay, Scope, get_will, put_will};

/// The channel's part of its names.
fn channel_part(channel: &ChannelKey) -> String {
    match channel.scope() {
        Scope::Route(route) => format!("r{}:{route}:{}", route.len(), channel.name()),
        Scope::Shared => format!("s:{}", channel.name()),
    }
}

/// The pub/sub topic of `channel`.
pub(super) fn channel_topic(channel: &ChannelKey) -> String {
    format!("wshd:c:{}", channel_part(channel))
}

/// The members hash of `channel`.
pub(super) fn presence_key(channel: &ChannelKey) -> String {
    format!("wshd:p:{}", channel_part(channel))
}

/// The history stream of `channel`.
pub(super) fn stream_key(channel: &ChannelKey) -> String {
    format!("wshd:s:{}", channel_part(channel))
}

/// The epoch of `channel`'s history stream.
pub(super) fn epoch_key(channel: &ChannelKey) -> String {
    format!("wshd:e:{}", channel_part(channel))
}

/// The pub/sub topic of the process whose node id is `process`.
pub(super) fn process_topic(process: u64) -> String {
    format!("wshd:n:{process:016x}")
}

/// The liveness key of `node`.
pub(super) fn alive_key(node: u64) -> String {
    format!("wshd:alive:{node:016x}")
}

/// `message` from `node`, for a topic.
pub(super) fn envelope(node: u64, message: &Relay) -> Bytes {
    let encoded = message.encode();
    let mut out = BytesMut::with_capacity(8 + encoded.len());
    out.put_u64(node);
    out.put_slice(&encoded);
    out.freeze()
}

/// The origin node and message of an envelope (`None`: not one).
pub(super) fn open(bytes: &[u8]) -> Option<(u64, Relay)> {
    let node = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
    let message = Relay::decode(Bytes::copy_from_slice(bytes.get(8..)?)).ok()?;
    Some((node, message))
}

/// A topic message: its stream id if it was logged, the origin node and the message.
pub(super) fn open_topic(bytes: &[u8]) -> Option<(Option<StreamId>, u64, Relay)> {
    match bytes.first()? {
        0 => open(bytes.get(1..)?).map(|(node, relay)| (None, node, relay)),
        1 => {
            let len = usize::from(*bytes.get(1)?);
            let id = StreamId::parse(std::str::from_utf8(bytes.get(2..2 + len)?).ok()?)?;
            open(bytes.get(2 + len..)?).map(|(node, relay)| (Some(id), node, relay))
        }
        _ => None,
    }
}

/// A plain topic message (kind 0) carrying `message` from `node`.
pub(super) fn topic_message(node: u64, message: &Relay) -> Bytes {
    let envelope = envelope(node, message);
    let mut out = BytesMut::with_capacity(1 + envelope.len());
    out.put_u8(0);
    out.put_slice(&envelope);
    out.freeze()
}

/// A Redis stream entry id, `<ms>-<seq>`: ordered by both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct StreamId {
    /// Redis's time of the append, in ms since the epoch.
    pub(super) ms: u64,
    /// The sequence within that ms.
    pub(super) seq: u64,
}

impl StreamId {
    /// `<ms>-<seq>`.
    pub(super) fn parse(text: &str) -> Option<StreamId> {
        let (ms, seq) = text.split_once('-')?;
        Some(StreamId { ms: ms.parse().ok()?, seq: seq.parse().ok()? })
    }
}

/// A members-hash value: the member's node (u64), its presence record (u32 length +
/// bytes) and its will (as in the relay's `Join`).
pub(super) fn member_value(node: u64, record: &Record) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(13 + record.presence.len());
    out.put_u64(node);
    out.put_u32(u32::try_from(record.presence.len()).unwrap_or(u32::MAX));
    out.put_slice(&record.presence);
    put_will(&mut out, record.will.as_ref());
    out.to_vec()
}

/// The node and record of a members-hash value (`None`: not one).
pub(super) fn open_member(value: &[u8]) -> Option<(u64, Record)> {
    let node = u64::from_be_bytes(value.get(..8)?.try_into().ok()?);
    let len = usize::try_from(u32::from_be_bytes(value.get(8..12)?.try_into().ok()?)).ok()?;
    let presence = Bytes::copy_from_slice(value.get(12..12usize.checked_add(len)?)?);
    let mut rest = Bytes::copy_from_slice(value.get(12 + len..)?);
    let will = get_will(&mut rest).ok()?;
    Some((node, Record { presence, will }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_routes_and_names_apart_and_envelopes_round_trip() {
        let key = |route: &str, name: &str| ChannelKey::in_route(route, name).expect("valid");
        assert_ne!(channel_topic(&key("/a:b", "c")), channel_topic(&key("/a", "b:c")));
        assert_eq!(channel_topic(&key("/chat", "lobby")), "wshd:c:r5:/chat:lobby");
        let shared = ChannelKey::new(Scope::Shared, "x").expect("valid");
        assert_eq!(presence_key(&shared), "wshd:p:s:x");
        let hello = Relay::Hello { node: 7 };
        assert_eq!(open(&envelope(42, &hello)), Some((42, hello.clone())));
        assert_eq!(open_topic(&topic_message(42, &hello)), Some((None, 42, hello.clone())));
        let mut logged = vec![1u8, 5];
        logged.extend_from_slice(b"123-4");
        logged.extend_from_slice(&envelope(42, &hello));
        assert_eq!(open_topic(&logged), Some((Some(StreamId { ms: 123, seq: 4 }), 42, hello)));
        assert!(StreamId { ms: 123, seq: 4 } < StreamId { ms: 123, seq: 10 });
        assert_eq!(open(b"short"), None);
        let record = Record { presence: Bytes::from_static(b"nick"), will: None };
        let opened = open_member(&member_value(9, &record)).map(|(node, r)| (node, r.presence, r.will));
        assert_eq!(opened, Some((9, Bytes::from_static(b"nick"), None)));
        let will = Some(crate::rooms::Will {
            kind: crate::ws::transport::DataKind::Text,
            data: Bytes::from_static(b"bye"),
        });
        let record = Record { presence: Bytes::new(), will: will.clone() };
        let opened = open_member(&member_value(1, &record)).map(|(node, r)| (node, r.presence, r.will));
        assert_eq!(opened, Some((1, Bytes::new(), will)));
        assert!(open_member(b"short").is_none());
    }
}
