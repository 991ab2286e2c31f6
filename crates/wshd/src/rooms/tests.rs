//! The registry on bare mailboxes (ids, membership, presence, clean-up, order, the frame
//! built once, the queue policies), then sessions over in-memory pipes (delivery between
//! the handler's messages, the end of a session, a reader that does not read).

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::ws::session::{Mailbox, MailboxLimits, Overflow};
use crate::ws::transport::DataKind;

fn limits(max_frames: usize, overflow: Overflow) -> MailboxLimits {
    MailboxLimits { max_bytes: 1 << 20, max_frames, overflow }
}

fn rooms() -> Arc<Rooms> {
    Arc::new(Rooms::new(limits(1024, Overflow::Close)))
}

fn key(route: &str, name: &str) -> ChannelKey {
    ChannelKey::in_route(route, name).unwrap_or_else(|e| panic!("{e}"))
}

/// A member of `rooms` on a fresh mailbox of `limits`.
fn member_with(rooms: &Arc<Rooms>, limits: MailboxLimits) -> (Member, Arc<Mailbox>) {
    let mailbox = Arc::new(Mailbox::new(limits, None));
    (rooms.member(Arc::clone(&mailbox)), mailbox)
}

fn member(rooms: &Arc<Rooms>) -> (Member, Arc<Mailbox>) {
    member_with(rooms, limits(1024, Overflow::Close))
}

/// The payloads of unmasked, unfragmented server frames with short payloads.
fn payloads(frames: &[Bytes]) -> Vec<Vec<u8>> {
    frames.iter().map(|f| f[2..].to_vec()).collect()
}

fn publish(rooms: &Rooms, channel: &ChannelKey, text: &str) -> usize {
    rooms.publish(channel, DataKind::Text, text.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn ids_are_unique_and_print_as_a_short_string_that_parses_back() {
    let ids: Vec<ConnId> = (0..10_000).map(|_| ConnId::next()).collect();
    let distinct: HashSet<ConnId> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len());
    assert!(ids.iter().all(|id| id.node == ids[0].node), "one node id per process");
    for id in &ids[..10] {
        let text = id.to_string();
        assert!(text.len() <= 33, "{text}");
        assert_eq!(text.parse::<ConnId>(), Ok(*id));
    }
    assert_eq!("zz-1".parse::<ConnId>(), Err(BadConnId));
    assert_eq!("0123456789abcdef-".parse::<ConnId>(), Err(BadConnId));
}

#[test]
fn join_presence_and_leave() {
    let rooms = rooms();
    let lobby = key("/chat", "lobby");
    let (a, _) = member(&rooms);
    let (b, _) = member(&rooms);
    assert_eq!(a.join(&lobby, b"alice"), Ok(()));
    assert_eq!(b.join(&lobby, b"bob"), Ok(()));
    let seen = rooms.presence(&lobby);
    assert_eq!(seen, vec![(a.id(), Bytes::from_static(b"alice")), (b.id(), Bytes::from_static(b"bob"))]);
    assert_eq!(a.join(&lobby, b"alice (away)"), Ok(()), "joining again replaces the record");
    assert_eq!(rooms.presence(&lobby)[0].1, Bytes::from_static(b"alice (away)"));
    assert!(a.leave(&lobby));
    assert!(!a.leave(&lobby), "not a member any more");
    assert_eq!(rooms.presence(&lobby), vec![(b.id(), Bytes::from_static(b"bob"))]);
    assert!(b.leave(&lobby));
    assert_eq!(rooms.channel_count(), 0, "an empty channel is removed");
}

#[test]
fn bounds_on_names_records_and_channels_joined() {
    let rooms = rooms();
    let (a, _) = member(&rooms);
    assert_eq!(ChannelKey::in_route("/chat", ""), Err(RoomError::BadName));
    assert_eq!(ChannelKey::in_route("/chat", &"x".repeat(MAX_CHANNEL_NAME + 1)), Err(RoomError::BadName));
    assert_eq!(a.join(&key("/chat", "big"), &[0; MAX_PRESENCE + 1]), Err(RoomError::PresenceTooLarge));
    for n in 0..channel::MAX_JOINED {
        assert_eq!(a.join(&key("/chat", &n.to_string()), b""), Ok(()));
    }
    assert_eq!(a.join(&key("/chat", "one more"), b""), Err(RoomError::TooManyChannels));
    assert_eq!(a.channels().len(), channel::MAX_JOINED);
}

#[test]
fn channels_are_namespaced_per_route() {
    let rooms = rooms();
    let (a, inbox_a) = member(&rooms);
    let (b, inbox_b) = member(&rooms);
    assert_eq!(a.join(&key("/chat", "lobby"), b""), Ok(()));
    assert_eq!(b.join(&key("/game", "lobby"), b""), Ok(()));
    assert_eq!(publish(&rooms, &key("/chat", "lobby"), "hi"), 1);
    assert_eq!(payloads(&inbox_a.drain()), vec![b"hi".to_vec()]);
    assert!(inbox_b.drain().is_empty());
    let shared = ChannelKey::new(Scope::Shared, "lobby").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(shared.name(), "lobby");
    assert_eq!(shared.scope(), &Scope::Shared);
    assert!(rooms.presence(&shared).is_empty());
}

#[test]
fn a_members_drop_takes_it_out_of_every_channel_and_the_id_table() {
    let rooms = rooms();
    let (a, _) = member(&rooms);
    let (b, _) = member(&rooms);
    let id = a.id();
    for name in ["one", "two"] {
        assert_eq!(a.join(&key("/chat", name), b"a"), Ok(()));
        assert_eq!(b.join(&key("/chat", name), b"b"), Ok(()));
    }
    assert_eq!(rooms.send_to(id, DataKind::Text, b"psst"), Ok(()));
    drop(a);
    for name in ["one", "two"] {
        assert_eq!(rooms.presence(&key("/chat", name)), vec![(b.id(), Bytes::from_static(b"b"))]);
    }
    assert_eq!(rooms.send_to(id, DataKind::Text, b"psst"), Err(RoomError::Gone));
}

#[test]
fn a_publishers_messages_arrive_in_order_and_share_one_frame() {
    let rooms = rooms();
    let lobby = key("/chat", "lobby");
    let members: Vec<(Member, Arc<Mailbox>)> = (0..3).map(|_| member(&rooms)).collect();
    for (m, _) in &members {
        assert_eq!(m.join(&lobby, b""), Ok(()));
    }
    let sent: Vec<String> = (0..100).map(|n| format!("message {n}")).collect();
    for text in &sent {
        assert_eq!(publish(&rooms, &lobby, text), 3);
    }
    let inboxes: Vec<Vec<Bytes>> = members.iter().map(|(_, inbox)| inbox.drain()).collect();
    for inbox in &inboxes {
        let got: Vec<Vec<u8>> = payloads(inbox);
        let want: Vec<Vec<u8>> = sent.iter().map(|s| s.clone().into_bytes()).collect();
        assert_eq!(got, want, "FIFO per publisher per channel");
    }
    for n in 0..sent.len() {
        let first = inboxes[0][n].as_ptr();
        assert!(inboxes.iter().all(|inbox| inbox[n].as_ptr() == first), "one buffer for every member");
    }
    assert_eq!(&inboxes[0][0][..2], &[0x81, 9], "a whole text frame, unmasked, RSV1 unset");
}

#[test]
fn text_that_is_not_utf8_is_refused() {
    let rooms = rooms();
    let lobby = key("/chat", "lobby");
    assert_eq!(rooms.publish(&lobby, DataKind::Text, b"\xff"), Err(RoomError::NotUtf8));
    assert_eq!(rooms.publish(&lobby, DataKind::Binary, b"\xff"), Ok(0));
}

#[test]
fn a_full_queue_drops_its_oldest_under_that_policy() {
    let rooms = rooms();
    let lobby = key("/chat", "lobby");
    let (a, inbox) = member_with(&rooms, limits(2, Overflow::DropOldest));
    assert_eq!(a.join(&lobby, b""), Ok(()));
    let before = ROOMS.dropped_for(DropReason::Oldest);
    for n in 0..5 {
        assert_eq!(publish(&rooms, &lobby, &n.to_string()), 1);
    }
    assert_eq!(payloads(&inbox.drain()), vec![b"3".to_vec(), b"4".to_vec()]);
    assert!(ROOMS.dropped_for(DropReason::Oldest) >= before + 3);
}

#[test]
fn a_full_queue_closes_the_member_under_the_default_policy() {
    let rooms = rooms();
    let lobby = key("/chat", "lobby");
    let (a, inbox) = member_with(&rooms, limits(2, Overflow::Close));
    let (b, _) = member(&rooms);
    assert_eq!(a.join(&lobby, b""), Ok(()));
    assert_eq!(b.join(&lobby, b""), Ok(()));
    assert_eq!(publish(&rooms, &lobby, "1"), 2);
    assert_eq!(publish(&rooms, &lobby, "2"), 2);
    assert_eq!(inbox.push(Bytes::from_static(b"\x81\x01x"), 1), Pushed::Overflowed);
    assert!(inbox.is_closed());
    assert_eq!(publish(&rooms, &lobby, "3"), 1, "only the other member");
    assert_eq!(rooms.presence(&lobby).len(), 1, "a closing member is not present");
    assert_eq!(rooms.send_to(a.id(), DataKind::Text, b"x"), Err(RoomError::Gone));
}

mod history;
mod relay;
mod sessions;

/// The cost of a publish, measured: `cargo test --release -p wshd --lib -- --ignored
/// --nocapture publish_to_1000_members_cost`. Mailboxes without a session, drained between
/// rounds outside the measured time; each has a no-op waker registered, woken by the first
/// publish of a round (a tokio task's wake-up costs more, once per member per drain). Once
/// with plain members and 100 bytes of `x` (the figure of decision 0014), once with a
/// 102-byte chat message to members that agreed to the browser's permessage-deflate offer
/// (compressed once per publish).
#[test]
#[ignore = "a measurement, not a check; run it in a release build"]
fn publish_to_1000_members_cost() {
    let browser = crate::ws::transport::negotiate_deflate(
        &["permessage-deflate; client_max_window_bits"],
        &crate::config::DeflateSettings::default(),
    )
    .and_then(|agreement| agreement.shared_server_side());
    assert!(browser.is_some(), "the default answer shares compression");
    let chat = r#"{"type":"message","nick":"alice","text":"see you at the standup in five","id":"1c5d59c4728e0a91-1-42"}"#;
    for (what, deflate, payload) in [("plain", None, "x".repeat(100)), ("deflate", browser, chat.to_owned())]
    {
        let (per_publish, per_delivery) = publish_cost(deflate, &payload);
        eprintln!(
            "publish of {} bytes to 1000 {what} members: {per_publish:.1} µs CPU per publish, {per_delivery:.1} ns per delivery",
            payload.len()
        );
    }
}

/// CPU per publish (µs) and per delivery (ns) of `payload` to 1,000 members whose
/// connections have these shared-compression parameters.
fn publish_cost(deflate: Option<crate::ws::transport::SharedDeflate>, payload: &str) -> (f64, f64) {
    const MEMBERS: usize = 1000;
    const ROUNDS: usize = 200;
    const PER_ROUND: usize = 10;
    let rooms = rooms();
    let lobby = key("/bench", "lobby");
    let members: Vec<(Member, Arc<Mailbox>)> = (0..MEMBERS)
        .map(|_| {
            let mailbox = Arc::new(Mailbox::new(limits(1024, Overflow::Close), deflate));
            (rooms.member(Arc::clone(&mailbox)), mailbox)
        })
        .collect();
    for (m, _) in &members {
        assert_eq!(m.join(&lobby, b"someone"), Ok(()));
    }
    let cpu = || {
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(0, |t| {
            u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec()).unwrap_or(0)
        })
    };
    let mut spent = 0;
    for _ in 0..ROUNDS {
        let started = cpu();
        for _ in 0..PER_ROUND {
            assert_eq!(publish(&rooms, &lobby, payload), MEMBERS);
        }
        spent += cpu() - started;
        for (_, inbox) in &members {
            drop(inbox.drain());
            inbox.register(std::task::Waker::noop());
        }
    }
    let publishes = (ROUNDS * PER_ROUND) as f64;
    (spent as f64 / publishes / 1000.0, spent as f64 / publishes / MEMBERS as f64)
}
