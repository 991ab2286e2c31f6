//! History and recovery: `publish_logged` appends, `join_since` replays after an id in
//! order and atomically with the join, the bounds (count, age, id length), a history that
//! outlives its last member, and the sweep that frees expired ones.

use std::time::{Duration, Instant};

use super::*;

fn bounds(max_messages: usize, secs: u64) -> HistoryLimits {
    HistoryLimits { max_messages, max_age: Duration::from_secs(secs) }
}

fn id(text: &str) -> MessageId {
    MessageId::new(text).unwrap_or_else(|e| panic!("{e}"))
}

fn logged(rooms: &Arc<Rooms>, channel: &ChannelKey, msg: &str, limits: HistoryLimits) -> usize {
    rooms
        .publish_logged(channel, DataKind::Text, msg.as_bytes(), id(msg), limits)
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn join_since_replays_what_followed_the_id_in_order_then_live_messages() {
    let rooms = rooms();
    let lobby = key("/chat", "lobby");
    let (a, _) = member(&rooms);
    assert_eq!(a.join(&lobby, b"a"), Ok(()));
    for n in 1..=5 {
        assert_eq!(logged(&rooms, &lobby, &n.to_string(), bounds(100, 300)), 1);
    }
    let (b, inbox) = member(&rooms);
    assert_eq!(b.join_since(&lobby, b"b", "2"), Ok(true));
    assert_eq!(rooms.send_to(b.id(), DataKind::Text, b"recovered"), Ok(()));
    assert_eq!(logged(&rooms, &lobby, "6", bounds(100, 300)), 2);
    let got = payloads(&inbox.drain());
    assert_eq!(got, ["3", "4", "5", "recovered", "6"].map(|s| s.as_bytes().to_vec()));
    assert_eq!(rooms.presence(&lobby).len(), 2, "join_since joins");
}

#[test]
fn join_since_an_unknown_or_trimmed_id_joins_and_replays_nothing() {
    let rooms = rooms();
    let lobby = key("/chat", "lobby");
    for n in 1..=5 {
        assert_eq!(logged(&rooms, &lobby, &n.to_string(), bounds(3, 300)), 0);
    }
    let (a, inbox) = member(&rooms);
    assert_eq!(a.join_since(&lobby, b"a", "2"), Ok(false), "pushed out by the count bound");
    assert_eq!(a.join_since(&lobby, b"a", "nope"), Ok(false), "never logged");
    assert!(inbox.drain().is_empty());
    assert_eq!(a.join_since(&lobby, b"a", "3"), Ok(true));
    assert_eq!(payloads(&inbox.drain()), vec![b"4".to_vec(), b"5".to_vec()]);
    assert_eq!(a.join_since(&lobby, b"a", "5"), Ok(true), "the newest: nothing missed");
    assert!(inbox.drain().is_empty());
}

#[test]
fn history_outlives_the_last_member_until_it_expires_and_the_sweep_frees_it() {
    let rooms = rooms();
    let lobby = key("/chat", "lobby");
    let (a, _) = member(&rooms);
    assert_eq!(a.join(&lobby, b"a"), Ok(()));
    assert_eq!(logged(&rooms, &lobby, "1", bounds(10, 1)), 1);
    assert_eq!(logged(&rooms, &lobby, "2", bounds(10, 1)), 1);
    drop(a);
    assert_eq!(rooms.channel_count(), 1, "the history keeps the channel");
    let (b, inbox) = member(&rooms);
    assert_eq!(b.join_since(&lobby, b"b", "1"), Ok(true), "an empty room still recovers");
    assert_eq!(payloads(&inbox.drain()), vec![b"2".to_vec()]);
    drop(b);
    rooms.sweep(Instant::now());
    assert_eq!(rooms.channel_count(), 1, "not expired yet");
    rooms.sweep(Instant::now() + Duration::from_secs(2));
    assert_eq!(rooms.channel_count(), 0, "expired: freed with its channel");
}

#[test]
fn expired_messages_are_not_replayed() {
    let rooms = rooms();
    let lobby = key("/chat", "lobby");
    let mut history = History::default();
    let frame = Bytes::from_static(b"\x81\x01x");
    history.append(Entry::new(id("old"), frame.clone(), 1), bounds(10, 1));
    history.expire(Instant::now() + Duration::from_secs(2));
    assert!(history.is_empty());
    assert_eq!(logged(&rooms, &lobby, "1", bounds(0, 300)), 0);
    assert_eq!(rooms.channel_count(), 0, "history_messages = 0 keeps nothing");
}

#[test]
fn message_ids_are_1_to_64_bytes() {
    assert_eq!(MessageId::new(""), Err(RoomError::BadId));
    assert_eq!(MessageId::new(&"x".repeat(65)), Err(RoomError::BadId));
    assert!(MessageId::new(&"x".repeat(64)).is_ok());
}

#[test]
fn a_join_since_racing_logged_publishes_sees_each_message_exactly_once() {
    let rooms = rooms();
    let lobby = key("/chat", "lobby");
    assert_eq!(logged(&rooms, &lobby, "0", bounds(100_000, 300)), 0);
    let publisher = {
        let (rooms, lobby) = (Arc::clone(&rooms), lobby.clone());
        std::thread::spawn(move || {
            for n in 1..=2000 {
                logged(&rooms, &lobby, &n.to_string(), bounds(100_000, 300));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(1));
    let (a, inbox) = member_with(&rooms, limits(100_000, Overflow::Close));
    assert_eq!(a.join_since(&lobby, b"a", "0"), Ok(true));
    publisher.join().unwrap_or_else(|_| panic!("the publisher panicked"));
    let got: Vec<Vec<u8>> = inbox.drain().iter().map(|f| f[2..].to_vec()).collect();
    let want: Vec<Vec<u8>> = (1..=2000).map(|n: u32| n.to_string().into_bytes()).collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "no duplicate, no miss, in order");
}
