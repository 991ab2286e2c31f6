//! The broker seam: what a process's rooms send (joins, leaves, publishes, logged publishes
//! to be ordered elsewhere, `send_to` another node) and how they apply what comes back (a
//! replica of the others' members, deliveries to local members only), and the wire encoding.

use std::sync::Mutex;
use std::time::Duration;

use super::*;

/// A broker that keeps what it is given.
#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<Relay>>);

impl Broker for Recorder {
    fn send(&self, message: Relay) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(message);
    }
}

impl Recorder {
    fn take(&self) -> Vec<Relay> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

fn linked() -> (Arc<Rooms>, Arc<Recorder>) {
    let rooms = rooms();
    let recorder = Arc::new(Recorder::default());
    assert!(rooms.install_broker(Arc::clone(&recorder) as Arc<dyn Broker>));
    assert!(!rooms.install_broker(Arc::clone(&recorder) as Arc<dyn Broker>), "once");
    (rooms, recorder)
}

/// An id of another process.
fn remote_id(seq: u64) -> ConnId {
    ConnId { node: id::node_id() ^ 1, seq }
}

#[test]
fn joins_leaves_and_publishes_go_out_and_a_replica_comes_in() {
    let (rooms, out) = linked();
    assert!(matches!(out.take()[..], [Relay::Hello { .. }]));
    let lobby = key("/chat", "lobby");
    let (a, inbox) = member(&rooms);
    assert_eq!(a.join(&lobby, b"a"), Ok(()));
    let far = remote_id(7);
    rooms.apply(Relay::Join { channel: lobby.clone(), id: far, presence: Bytes::from_static(b"far") });
    assert_eq!(
        rooms.presence(&lobby),
        vec![(a.id(), Bytes::from_static(b"a")), (far, Bytes::from_static(b"far"))]
    );
    assert_eq!(publish(&rooms, &lobby, "hi"), 2, "the remote member counts");
    rooms.apply(Relay::Publish {
        channel: lobby.clone(),
        kind: DataKind::Text,
        data: Bytes::from_static(b"there"),
    });
    assert_eq!(payloads(&inbox.drain()), vec![b"hi".to_vec(), b"there".to_vec()]);
    assert!(a.leave(&lobby));
    let sent = out.take();
    assert!(matches!(&sent[0], Relay::Join { id, .. } if *id == a.id()), "{sent:?}");
    assert!(matches!(&sent[1], Relay::Publish { data, .. } if &data[..] == b"hi"), "{sent:?}");
    assert!(matches!(&sent[2], Relay::Leave { id, .. } if *id == a.id()), "{sent:?}");
    rooms.apply(Relay::Leave { channel: lobby.clone(), id: far });
    assert_eq!(rooms.channel_count(), 0);
}

#[test]
fn logged_publishes_wait_for_their_order_and_send_to_another_node_is_forwarded() {
    let (rooms, out) = linked();
    out.take();
    let lobby = key("/chat", "lobby");
    let (a, inbox) = member(&rooms);
    assert_eq!(a.join(&lobby, b"a"), Ok(()));
    out.take();
    let limits = HistoryLimits { max_messages: 10, max_age: Duration::from_secs(60) };
    let msg_id = MessageId::new("1").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rooms.publish_logged(&lobby, DataKind::Text, b"one", msg_id, limits), Ok(1));
    assert!(inbox.drain().is_empty(), "not delivered before the relay orders it");
    let Some(logged) = out.take().pop() else { panic!("nothing sent") };
    rooms.apply(logged);
    assert_eq!(payloads(&inbox.drain()), vec![b"one".to_vec()]);
    let (b, late) = member(&rooms);
    assert_eq!(b.join_since(&lobby, b"b", "1"), Ok(true), "the relayed message is in the history");
    assert!(late.drain().is_empty());
    out.take();
    assert_eq!(rooms.send_to(remote_id(3), DataKind::Text, b"x"), Ok(()));
    assert!(matches!(&out.take()[..], [Relay::SendTo { .. }]));
    let mine = ConnId { node: id::node_id(), seq: u64::MAX };
    assert_eq!(rooms.send_to(mine, DataKind::Text, b"x"), Err(RoomError::Gone), "a local id: known gone");
}

#[test]
fn relay_messages_encode_and_decode() {
    let limits = HistoryLimits { max_messages: 5, max_age: Duration::from_millis(300_000) };
    let messages = [
        Relay::Hello { node: 42 },
        Relay::Join { channel: key("/chat", "lobby"), id: remote_id(1), presence: Bytes::from_static(b"p") },
        Relay::Leave {
            channel: ChannelKey::new(Scope::Shared, "x").unwrap_or_else(|e| panic!("{e}")),
            id: remote_id(2),
        },
        Relay::Publish {
            channel: key("/c", "n"),
            kind: DataKind::Binary,
            data: Bytes::from_static(b"\xff\x00"),
        },
        Relay::Logged {
            channel: key("/c", "n"),
            msg_id: MessageId::new("abc").unwrap_or_else(|e| panic!("{e}")),
            limits,
            age: Duration::from_millis(1500),
            kind: DataKind::Text,
            data: Bytes::from_static(b"t"),
        },
        Relay::SendTo { id: remote_id(9), kind: DataKind::Text, data: Bytes::new() },
        Relay::SnapshotEnd,
    ];
    for message in messages {
        assert_eq!(Relay::decode(message.encode()), Ok(message.clone()));
        let bytes = message.encode();
        if bytes.len() > 1 {
            assert!(Relay::decode(bytes.slice(..bytes.len() - 1)).is_err(), "truncated: {message:?}");
        }
    }
    assert!(Relay::decode(Bytes::from_static(b"\x09")).is_err());
}
