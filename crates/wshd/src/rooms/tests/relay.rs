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
    let Some(join) = out.take().pop() else { panic!("the join was not sent") };
    assert!(matches!(&join, Relay::Join { id, .. } if *id == a.id()), "{join:?}");
    rooms.apply(join); // the relay sends it back: known everywhere
    let far = remote_id(7);
    rooms.apply(Relay::Join {
        channel: lobby.clone(),
        id: far,
        presence: Bytes::from_static(b"far"),
        will: None,
    });
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
    assert!(matches!(&sent[0], Relay::Publish { data, .. } if &data[..] == b"hi"), "{sent:?}");
    assert!(matches!(&sent[1], Relay::Leave { id, .. } if *id == a.id()), "{sent:?}");
    rooms.apply(Relay::Leave { channel: lobby.clone(), id: far, farewell: true });
    assert_eq!(rooms.channel_count(), 0);
}

/// A will of text `text`.
fn will(text: &'static str) -> Option<Will> {
    Some(Will { kind: DataKind::Text, data: Bytes::from_static(text.as_bytes()) })
}

#[test]
fn a_member_gone_without_leaving_leaves_its_will_to_the_others_here_once() {
    let (rooms, out) = linked();
    let lobby = key("/chat", "lobby");
    let (a, inbox) = member(&rooms);
    assert_eq!(a.join(&lobby, b"a"), Ok(()));
    for (seq, farewell) in [(7, false), (8, true)] {
        let id = remote_id(seq);
        rooms.apply(Relay::Join {
            channel: lobby.clone(),
            id,
            presence: Bytes::new(),
            will: will("far went"),
        });
        rooms.apply(Relay::Leave { channel: lobby.clone(), id, farewell });
    }
    assert_eq!(payloads(&inbox.drain()), vec![b"far went".to_vec()], "only the member that went");
    // A member here that ends while still a member: the others here get its will, and the
    // relay is told it went (the other processes say it to theirs).
    let (b, _b_inbox) = member(&rooms);
    assert_eq!(b.enter(&lobby, b"b", will("b went"), None), Ok(false));
    out.take();
    drop(b);
    assert_eq!(payloads(&inbox.drain()), vec![b"b went".to_vec()]);
    assert!(matches!(&out.take()[..], [Relay::Leave { farewell: true, .. }]));
    // One that leaves says nothing (its handler announces what it wants).
    let (c, _c_inbox) = member(&rooms);
    assert_eq!(c.enter(&lobby, b"c", will("c went"), None), Ok(false));
    out.take();
    assert!(c.leave(&lobby));
    drop(c);
    assert!(inbox.drain().is_empty());
    assert!(matches!(&out.take()[..], [Relay::Leave { farewell: false, .. }]));
}

#[test]
fn publishes_behind_a_join_on_its_way_go_through_the_relay_in_order() {
    let (rooms, out) = linked();
    out.take();
    let lobby = key("/chat", "lobby");
    let (a, inbox) = member(&rooms);
    assert_eq!(a.join(&lobby, b"a"), Ok(()));
    assert_eq!(publish(&rooms, &lobby, "1"), 1);
    assert_eq!(publish(&rooms, &lobby, "2"), 1);
    assert!(inbox.drain().is_empty(), "held for the relay's order while the join is on its way");
    let sent = out.take();
    let [join, one, two] = &sent[..] else { panic!("{sent:?}") };
    assert!(matches!(join, Relay::Join { .. }), "{sent:?}");
    for (message, text) in [(one, b"1"), (two, b"2")] {
        assert!(
            matches!(message, Relay::Ordered { origin, data, .. } if *origin == id::node_id() && &data[..] == text),
            "{sent:?}"
        );
    }
    rooms.apply(join.clone());
    rooms.apply(one.clone());
    assert_eq!(publish(&rooms, &lobby, "3"), 1);
    let Some(three) = out.take().pop() else { panic!("3 was not sent") };
    assert!(matches!(&three, Relay::Ordered { .. }), "still behind 2: {three:?}");
    rooms.apply(two.clone());
    rooms.apply(three);
    assert_eq!(publish(&rooms, &lobby, "4"), 1);
    assert!(matches!(&out.take()[..], [Relay::Publish { .. }]), "nothing on its way: delivered here at once");
    let texts: Vec<Vec<u8>> = ["1", "2", "3", "4"].iter().map(|t| t.as_bytes().to_vec()).collect();
    assert_eq!(payloads(&inbox.drain()), texts);
    drop(a);
    assert_eq!(rooms.channel_count(), 0, "nothing on its way: the channel is freed");
}

#[test]
fn a_send_to_self_after_join_since_comes_after_what_the_relay_ordered_before_the_join() {
    let (rooms, out) = linked();
    out.take();
    let lobby = key("/chat", "lobby");
    let limits = HistoryLimits { max_messages: 10, max_age: Duration::from_secs(60) };
    let logged = |n: &str| Relay::Logged {
        channel: lobby.clone(),
        origin: id::node_id() ^ 1,
        msg_id: MessageId::new(n).unwrap_or_else(|e| panic!("{e}")),
        limits,
        age: Duration::ZERO,
        kind: DataKind::Text,
        data: Bytes::from(n.to_owned()),
    };
    rooms.apply(logged("m1"));
    let (b, inbox) = member(&rooms);
    assert_eq!(b.join_since(&lobby, b"b", "m1"), Ok(true));
    // The handler marks the end of the replay; m2, ordered by the relay before b's join,
    // has not reached this process yet.
    assert_eq!(rooms.send_to(b.id(), DataKind::Text, b"recovered"), Ok(()));
    let sent = out.take();
    let [join, marker] = &sent[..] else { panic!("{sent:?}") };
    assert!(matches!(marker, Relay::SendTo { id, .. } if *id == b.id()), "routed behind the join: {sent:?}");
    rooms.apply(logged("m2"));
    rooms.apply(join.clone());
    rooms.apply(marker.clone());
    assert_eq!(payloads(&inbox.drain()), vec![b"m2".to_vec(), b"recovered".to_vec()]);
    assert_eq!(rooms.send_to(b.id(), DataKind::Text, b"now"), Ok(()));
    assert!(out.take().is_empty(), "nothing on its way: delivered at once");
    assert_eq!(payloads(&inbox.drain()), vec![b"now".to_vec()]);
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
        Relay::Join {
            channel: key("/chat", "lobby"),
            id: remote_id(1),
            presence: Bytes::from_static(b"p"),
            will: None,
        },
        Relay::Join {
            channel: key("/chat", "lobby"),
            id: remote_id(1),
            presence: Bytes::new(),
            will: Some(Will { kind: DataKind::Binary, data: Bytes::from_static(b"\x00w") }),
        },
        Relay::Leave {
            channel: ChannelKey::new(Scope::Shared, "x").unwrap_or_else(|e| panic!("{e}")),
            id: remote_id(2),
            farewell: true,
        },
        Relay::Publish {
            channel: key("/c", "n"),
            kind: DataKind::Binary,
            data: Bytes::from_static(b"\xff\x00"),
        },
        Relay::Logged {
            channel: key("/c", "n"),
            origin: 7,
            msg_id: MessageId::new("abc").unwrap_or_else(|e| panic!("{e}")),
            limits,
            age: Duration::from_millis(1500),
            kind: DataKind::Text,
            data: Bytes::from_static(b"t"),
        },
        Relay::SendTo { id: remote_id(9), origin: 4, kind: DataKind::Text, data: Bytes::new() },
        Relay::SnapshotEnd,
        Relay::Ordered {
            channel: key("/c", "n"),
            origin: 8,
            kind: DataKind::Text,
            data: Bytes::from_static(b"o"),
        },
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
