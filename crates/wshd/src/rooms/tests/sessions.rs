//! Room messages through real sessions over in-memory pipes (the process's rooms, so each
//! test uses channel names of its own).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wshd_sdk::CloseCode;

use super::*;
use crate::ws::codec::{Decoder, Limits, Role};
use crate::ws::session::{
    ConnShared, Driver, HandlerExit, HandlerFuture, Inbound, SessionEnd, SessionSettings,
};
use crate::ws::transport::{self, Event, Socket};

fn settings() -> SessionSettings {
    SessionSettings {
        close_timeout: Duration::from_secs(5),
        inbound_queue_bytes: 1 << 20,
        idle_timeout: None,
        ping_interval: None,
        pong_timeout: Duration::from_secs(10),
        max_send_queue_bytes: 16 << 20,
        send_timeout: None,
        message_timeout: None,
        message_min_bytes: 0,
        metrics: None,
        wire: None,
        rooms: crate::config::RoomSettings::default(),
        room_deflate: None,
    }
}

/// The client end: decodes what the server sends.
struct Client {
    io: DuplexStream,
    decoder: Decoder,
    events: VecDeque<Event>,
}

impl Client {
    /// The next event; `None` at the end of the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Some(event);
            }
            let mut buf = vec![0u8; 64 * 1024];
            let read = tokio::time::timeout(Duration::from_secs(10), self.io.read(&mut buf)).await;
            let n = read.unwrap_or_else(|_| panic!("nothing from the server")).unwrap_or(0);
            if n == 0 {
                return None;
            }
            let mut input = &buf[..n];
            while let Some(event) = self.decoder.decode(&mut input) {
                self.events.push_back(event);
            }
        }
    }

    /// Sends a masked close frame with `code`.
    async fn close(&mut self, code: u16) {
        let mask = [1, 2, 3, 4];
        let body = code.to_be_bytes();
        let mut frame = vec![0x88, 0x80 | 2];
        frame.extend_from_slice(&mask);
        frame.extend(body.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.io.write_all(&frame).await.unwrap_or_else(|e| panic!("write: {e}"));
    }
}

/// Starts a session on a pipe of `capacity` bytes served by `handler`.
fn start(
    capacity: usize,
    handler: impl FnOnce(Arc<ConnShared>) -> HandlerFuture,
) -> (Client, JoinHandle<SessionEnd>) {
    let (server, client) = tokio::io::duplex(capacity);
    let limits = Limits { max_message: 1 << 24, max_frame: 1 << 24 };
    let (stream, wire) = transport::over(Socket::Memory(server), limits, None);
    let shared = ConnShared::new(stream, SessionSettings { wire: Some(wire), ..settings() }, None);
    let future = handler(Arc::clone(&shared));
    let session = tokio::spawn(Driver::new(future, shared));
    (
        Client { io: client, decoder: Decoder::new(Role::Client, limits, None), events: VecDeque::new() },
        session,
    )
}

/// Waits until the peer's close (the handler's receive loop).
async fn until_closed(shared: &ConnShared) {
    while !matches!(poll_fn(|cx| shared.poll_recv(cx)).await, Inbound::Closed(..)) {}
}

/// A handler that joins `channel` with `presence`, says so on `joined`, then waits for the
/// peer's close.
fn joiner(
    channel: ChannelKey,
    presence: &'static [u8],
    joined: oneshot::Sender<ConnId>,
) -> impl FnOnce(Arc<ConnShared>) -> HandlerFuture {
    move |shared| {
        HandlerFuture::Native(Box::pin(async move {
            let member = member_of(&shared).unwrap_or_else(|e| panic!("{e}"));
            member.join(&channel, presence).unwrap_or_else(|e| panic!("{e}"));
            let _ = joined.send(member.id());
            drop(member);
            until_closed(&shared).await;
            HandlerExit::Returned
        }))
    }
}

async fn ended(session: JoinHandle<SessionEnd>) -> SessionEnd {
    tokio::time::timeout(Duration::from_secs(30), session)
        .await
        .unwrap_or_else(|_| panic!("the session did not end"))
        .unwrap_or_else(|e| panic!("the session panicked: {e}"))
}

#[tokio::test]
async fn a_room_message_waits_behind_the_handlers_fragmented_message() {
    let channel = key("", "sessions-fragments");
    let (ready_tx, ready) = oneshot::channel();
    let (go, go_rx) = oneshot::channel::<()>();
    let joined = channel.clone();
    let (mut client, session) = start(64 * 1024, move |shared| {
        HandlerFuture::Native(Box::pin(async move {
            let member = member_of(&shared).unwrap_or_else(|e| panic!("{e}"));
            member.join(&joined, b"").unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(shared.start_send(DataKind::Text, false, b"first "), Ok(()));
            let _ = ready_tx.send(());
            let _ = go_rx.await;
            assert_eq!(shared.start_send(DataKind::Text, true, b"half"), Ok(()));
            until_closed(&shared).await;
            HandlerExit::Returned
        }))
    });
    ready.await.unwrap_or_else(|_| panic!("the handler did not start"));
    assert_eq!(publish(global(), &channel, "from the room"), 1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let _ = go.send(());
    assert_eq!(client.next().await, Some(Event::Text(b"first half".to_vec())));
    assert_eq!(client.next().await, Some(Event::Text(b"from the room".to_vec())));
    client.close(1000).await;
    let end = ended(session).await;
    assert_eq!(end.summary.messages_out, 2, "the room message counts as sent");
    assert!(global().presence(&channel).is_empty(), "the session's end left the channel");
}

#[tokio::test]
async fn members_receive_publishes_and_send_to_and_leave_with_their_session() {
    let channel = key("", "sessions-members");
    let (a_joined, a_id) = oneshot::channel();
    let (b_joined, b_id) = oneshot::channel();
    let (mut a, a_session) = start(64 * 1024, joiner(channel.clone(), b"a", a_joined));
    let (mut b, b_session) = start(64 * 1024, joiner(channel.clone(), b"b", b_joined));
    let a_id = a_id.await.unwrap_or_else(|_| panic!("a did not join"));
    let b_id = b_id.await.unwrap_or_else(|_| panic!("b did not join"));
    assert_eq!(global().presence(&channel).len(), 2);
    assert_eq!(publish(global(), &channel, "to all"), 2);
    assert_eq!(global().send_to(b_id, DataKind::Binary, b"to b"), Ok(()));
    assert_eq!(a.next().await, Some(Event::Text(b"to all".to_vec())));
    assert_eq!(b.next().await, Some(Event::Text(b"to all".to_vec())));
    assert_eq!(b.next().await, Some(Event::Binary(b"to b".to_vec())));
    a.close(1000).await;
    ended(a_session).await;
    assert_eq!(global().presence(&channel), vec![(b_id, Bytes::from_static(b"b"))]);
    assert_eq!(global().send_to(a_id, DataKind::Text, b"late"), Err(RoomError::Gone));
    b.close(1000).await;
    ended(b_session).await;
    assert!(global().presence(&channel).is_empty());
}

#[tokio::test]
async fn a_member_that_does_not_read_is_closed_with_1008() {
    let channel = key("", "sessions-slow");
    let (joined, id) = oneshot::channel();
    let (mut slow, session) = start(16 * 1024, joiner(channel.clone(), b"", joined));
    id.await.unwrap_or_else(|_| panic!("did not join"));
    let before = ROOMS.dropped_for(DropReason::Overflow);
    let big = vec![7u8; 64 * 1024];
    for _ in 0..40 {
        global().publish(&channel, DataKind::Binary, &big).unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(ROOMS.dropped_for(DropReason::Overflow) > before);
    let mut last = None;
    while let Some(event) = slow.next().await {
        if let Event::Close(..) = event {
            last = Some(event);
            break;
        }
    }
    assert_eq!(
        last,
        Some(Event::Close(CloseCode::POLICY_VIOLATION, Bytes::from_static(b"room backlog full")))
    );
    slow.close(1000).await;
    ended(session).await;
    assert!(global().presence(&channel).is_empty());
}
