//! The session driven over an in-memory pipe: the built-in echo or a small test handler on
//! one end, a raw client (hand-made masked frames, the codec's decoder) on the other. The
//! timer tests run on tokio's paused clock, which jumps ahead whenever every task waits.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use wshd_sdk::CloseCode;

use super::driver::SessionEnd;
use super::upkeep::KEEPALIVE;
use super::*;
use crate::config::Builtin;
use crate::ws::builtin;
use crate::ws::codec::{Decoder, Limits, Role};
use crate::ws::transport::{self, DataKind, Event, Socket};

const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PONG: u8 = 0xa;

const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

fn settings() -> SessionSettings {
    SessionSettings {
        close_timeout: CLOSE_TIMEOUT,
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

fn code(n: u16) -> CloseCode {
    CloseCode::new(n).unwrap_or_else(|| panic!("{n}"))
}

/// A masked client frame with FIN set.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// A close frame's body.
fn close_body(code: u16, reason: &str) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(reason.as_bytes());
    body
}

/// The client end: writes raw frames, decodes what the server sends.
struct Peer {
    io: DuplexStream,
    decoder: Decoder,
    events: VecDeque<Event>,
}

impl Peer {
    async fn send_raw(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.unwrap_or_else(|e| panic!("write: {e}"));
    }

    async fn send(&mut self, opcode: u8, payload: &[u8]) {
        self.send_raw(&frame(opcode, payload)).await;
    }

    /// The next frame's event from the server; `None` at the end of the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Some(event);
            }
            let mut buf = [0u8; 4096];
            let n = self.io.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return None;
            }
            let mut input = &buf[..n];
            while let Some(event) = self.decoder.decode(&mut input) {
                self.events.push_back(event);
            }
        }
    }

    /// Reads everything up to the end of the stream.
    async fn rest(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        events
    }
}

/// Starts a session with `settings` on a pipe of `capacity` bytes, served by the handler
/// `make` builds.
fn start_with(
    settings: SessionSettings,
    capacity: usize,
    make: impl FnOnce(Arc<ConnShared>) -> HandlerFuture,
) -> (Peer, JoinHandle<SessionEnd>) {
    let (server, client) = tokio::io::duplex(capacity);
    let limits = Limits { max_message: 1 << 20, max_frame: 1 << 20 };
    let (stream, wire) = transport::over(Socket::Memory(server), limits, None);
    let shared = ConnShared::new(stream, SessionSettings { wire: Some(wire), ..settings }, None);
    let handler = make(Arc::clone(&shared));
    let session = tokio::spawn(Driver::new(handler, shared));
    let peer =
        Peer { io: client, decoder: Decoder::new(Role::Client, limits, None), events: VecDeque::new() };
    (peer, session)
}

fn start(make: impl FnOnce(Arc<ConnShared>) -> HandlerFuture) -> (Peer, JoinHandle<SessionEnd>) {
    start_with(settings(), 64 * 1024, make)
}

fn echo(shared: Arc<ConnShared>) -> HandlerFuture {
    builtin::transfer_data(Builtin::Echo, shared)
}

/// A test handler: `body` on the connection, then `transfer_data` returns.
fn handler<F>(body: impl FnOnce(Arc<ConnShared>) -> F) -> impl FnOnce(Arc<ConnShared>) -> HandlerFuture
where
    F: Future<Output = ()> + Send + 'static,
{
    move |shared| {
        let future = body(shared);
        HandlerFuture::Native(Box::pin(async move {
            future.await;
            HandlerExit::Returned
        }))
    }
}

async fn ended(session: JoinHandle<SessionEnd>) -> SessionEnd {
    tokio::time::timeout(Duration::from_secs(60), session)
        .await
        .unwrap_or_else(|_| panic!("the session did not end"))
        .unwrap_or_else(|e| panic!("the session panicked: {e}"))
}

fn text(s: &str) -> Event {
    Event::Text(s.as_bytes().to_vec())
}

fn close(n: u16, reason: &str) -> Event {
    Event::Close(code(n), Bytes::copy_from_slice(reason.as_bytes()))
}

#[tokio::test]
async fn the_echo_handler_echoes_and_a_peer_close_is_echoed() {
    let (mut peer, session) = start(echo);
    peer.send(OP_TEXT, b"hello").await;
    peer.send(OP_BINARY, b"\x00\x01").await;
    assert_eq!(peer.next().await, Some(text("hello")));
    assert_eq!(peer.next().await, Some(Event::Binary(b"\x00\x01".to_vec())));
    peer.send(OP_CLOSE, &close_body(4000, "bye")).await;
    assert_eq!(peer.rest().await, vec![close(4000, "bye")], "the close echoed, then TCP closed");
    let end = ended(session).await;
    assert_eq!((end.peer_code, end.aborted, end.panicked), (code(4000), false, false));
    let s = &end.summary;
    assert_eq!((s.close_code, s.initiator, s.reason), (code(4000), "client", ""));
    assert_eq!((s.messages_in, s.messages_out, s.bytes_in, s.bytes_out), (2, 2, 7, 7));
    assert_eq!((s.wire_in, s.wire_out), (11 + 8 + 11, 7 + 4 + 7));
}

#[tokio::test]
async fn the_handler_is_told_the_peers_close_and_may_choose_the_answer() {
    let told = Arc::new(Mutex::new(None));
    let seen = Arc::clone(&told);
    let (mut peer, session) = start(handler(move |shared| async move {
        assert_eq!(shared.set_close_reply(Some(CloseCode::NORMAL), b"\xff"), Err(OpError::Invalid));
        assert_eq!(shared.set_close_reply(Some(CloseCode::ABNORMAL), b""), Err(OpError::Invalid));
        assert_eq!(shared.set_close_reply(Some(code(4100)), b"mine"), Ok(()));
        assert_eq!(poll_fn(|cx| shared.poll_send(cx, DataKind::Text, true, b"ready")).await, Ok(true));
        if let Inbound::Closed(code, reason) = poll_fn(|cx| shared.poll_recv(cx)).await {
            *seen.lock().unwrap_or_else(|e| e.into_inner()) = Some((code, reason));
        }
        let late = poll_fn(|cx| shared.poll_send(cx, DataKind::Text, true, b"late")).await;
        assert_eq!(late, Err(OpError::Closed), "nothing after the close");
    }));
    assert_eq!(peer.next().await, Some(text("ready")));
    peer.send(OP_CLOSE, &close_body(4000, "bye")).await;
    assert_eq!(peer.rest().await, vec![close(4100, "mine")]);
    let end = ended(session).await;
    assert_eq!(
        *told.lock().unwrap_or_else(|e| e.into_inner()),
        Some((code(4000), Bytes::from_static(b"bye")))
    );
    assert_eq!((end.summary.close_code, end.summary.initiator), (code(4000), "client"));
}

#[tokio::test]
async fn our_close_is_answered_and_the_handler_sees_the_answer() {
    let answer = Arc::new(Mutex::new(None));
    let seen = Arc::clone(&answer);
    let (mut peer, session) = start(handler(move |shared| async move {
        assert_eq!(shared.start_close(CloseCode::NO_STATUS, b""), Err(OpError::Invalid), "not sendable");
        assert_eq!(shared.start_close(code(4001), &[b'x'; 124]), Err(OpError::Invalid), "reason too long");
        assert_eq!(shared.start_close(code(4001), b"done"), Ok(()));
        let closed = poll_fn(|cx| shared.poll_closed(cx)).await;
        *seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(closed);
    }));
    assert_eq!(peer.next().await, Some(close(4001, "done")));
    peer.send(OP_CLOSE, &close_body(4001, "ok")).await;
    assert_eq!(peer.rest().await, vec![], "no second close; TCP closed");
    let end = ended(session).await;
    let answered = answer.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(answered, Some((code(4001), Bytes::from_static(b"ok"))));
    let s = &end.summary;
    assert_eq!((end.peer_code, s.close_code, s.initiator), (code(4001), code(4001), "server"));
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_close_drops_tcp_after_the_close_timeout_with_1006() {
    let started = Instant::now();
    let (mut peer, session) = start(handler(|_| async {}));
    assert_eq!(peer.next().await, Some(close(1000, "")), "the handler's return closes with 1000");
    assert_eq!(peer.next().await, None, "dropped without an answer");
    let waited = started.elapsed();
    assert!(waited >= CLOSE_TIMEOUT && waited < CLOSE_TIMEOUT + Duration::from_millis(100), "{waited:?}");
    let end = ended(session).await;
    let s = &end.summary;
    assert_eq!(
        (end.peer_code, s.close_code, s.initiator),
        (CloseCode::ABNORMAL, CloseCode::NORMAL, "server")
    );
}

#[tokio::test]
async fn a_protocol_failure_closes_after_the_messages_before_it_are_answered() {
    let (mut peer, session) = start(echo);
    let mut wire = frame(OP_TEXT, b"a");
    wire.extend(frame(OP_TEXT, b"b"));
    wire.extend(frame(OP_TEXT, b"c\xffd"));
    wire.extend(frame(OP_TEXT, b"never seen"));
    peer.send_raw(&wire).await;
    assert_eq!(peer.next().await, Some(text("a")));
    assert_eq!(peer.next().await, Some(text("b")));
    assert_eq!(peer.next().await, Some(close(1007, "invalid UTF-8 in a text message")));
    peer.send(OP_CLOSE, &close_body(1000, "")).await;
    assert_eq!(peer.rest().await, vec![]);
    let end = ended(session).await;
    let s = &end.summary;
    assert_eq!((end.peer_code, s.close_code, s.initiator), (code(1007), code(1007), "server"));
    assert_eq!(s.messages_in, 2);
}

#[tokio::test]
async fn an_invalid_close_frame_is_answered_with_1002_and_tcp_closes_at_once() {
    let (mut peer, session) = start(echo);
    peer.send(OP_CLOSE, &close_body(1005, "")).await;
    assert_eq!(peer.rest().await, vec![close(1002, "invalid close code")]);
    let end = ended(session).await;
    assert_eq!(
        (end.peer_code, end.summary.close_code, end.summary.initiator),
        (code(1002), code(1002), "server")
    );
}

#[tokio::test]
async fn the_end_of_the_stream_is_1006_to_the_handler() {
    let told = Arc::new(Mutex::new(None));
    let seen = Arc::clone(&told);
    let (peer, session) = start(handler(move |shared| async move {
        let item = poll_fn(|cx| shared.poll_recv(cx)).await;
        *seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{item:?}"));
    }));
    drop(peer);
    let end = ended(session).await;
    assert_eq!(
        told.lock().unwrap_or_else(|e| e.into_inner()).as_deref(),
        Some("Closed(1006 (abnormal closure), b\"\")")
    );
    assert_eq!(end.peer_code, CloseCode::ABNORMAL);
}

#[tokio::test]
async fn an_abort_drops_tcp_without_a_close_frame() {
    let (mut peer, session) = start(handler(|shared| async move {
        shared.abort();
        std::future::pending::<()>().await;
    }));
    assert_eq!(peer.rest().await, vec![]);
    let end = ended(session).await;
    let s = &end.summary;
    assert!(end.aborted);
    assert_eq!(
        (s.close_code, s.initiator, s.reason),
        (CloseCode::ABNORMAL, "server", "aborted by the handler")
    );
}

/// A handler that takes messages and never answers.
fn receiver(shared: Arc<ConnShared>) -> HandlerFuture {
    handler(|shared: Arc<ConnShared>| async move {
        while !matches!(poll_fn(|cx| shared.poll_recv(cx)).await, Inbound::Closed(..)) {}
    })(shared)
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_with_1001_and_a_message_restarts_the_wait() {
    let idle = Duration::from_secs(30);
    let settings = SessionSettings { idle_timeout: Some(idle), ..settings() };
    let started = Instant::now();
    let (mut peer, session) = start_with(settings.clone(), 4096, receiver);
    assert_eq!(peer.next().await, Some(close(1001, "idle")));
    let waited = started.elapsed();
    assert!(waited >= idle && waited < idle + Duration::from_millis(100), "{waited:?}");
    peer.send(OP_CLOSE, &close_body(1001, "")).await;
    assert_eq!(peer.rest().await, vec![]);
    let s = ended(session).await.summary;
    assert_eq!((s.close_code, s.initiator, s.reason), (CloseCode::GOING_AWAY, "server", "idle"));

    let (mut peer, session) = start_with(settings, 4096, receiver);
    tokio::time::sleep(idle / 2).await;
    peer.send(OP_BINARY, b"still here").await;
    let sent = Instant::now();
    assert_eq!(peer.next().await, Some(close(1001, "idle")));
    let waited = sent.elapsed();
    assert!(waited >= idle && waited < idle + Duration::from_millis(100), "{waited:?}");
    drop(peer);
    assert_eq!(ended(session).await.summary.messages_in, 1);
}

#[tokio::test(start_paused = true)]
async fn keepalive_pings_keep_a_live_peer_and_drop_a_silent_one() {
    let (interval, pong_timeout) = (Duration::from_secs(10), Duration::from_secs(4));
    let settings = SessionSettings { ping_interval: Some(interval), pong_timeout, ..settings() };
    let started = Instant::now();
    let (mut peer, session) = start_with(settings, 4096, echo);
    for round in 1..=3u32 {
        assert_eq!(peer.next().await, Some(Event::Ping(Bytes::from_static(KEEPALIVE))), "round {round}");
        let at = started.elapsed();
        assert!(at >= interval * round && at < interval * round + Duration::from_millis(100), "{at:?}");
        peer.send(OP_PONG, KEEPALIVE).await;
    }
    // Silent from now on: the next ping goes unanswered.
    assert_eq!(peer.next().await, Some(Event::Ping(Bytes::from_static(KEEPALIVE))));
    let pinged = started.elapsed();
    assert_eq!(peer.rest().await, vec![close(1011, "pong timeout")], "a best-effort close, then TCP dropped");
    let waited = started.elapsed() - pinged;
    assert!(waited >= pong_timeout && waited < pong_timeout + Duration::from_millis(100), "{waited:?}");
    let end = ended(session).await;
    let s = &end.summary;
    assert_eq!(
        (end.peer_code, s.close_code, s.initiator, s.reason),
        (CloseCode::ABNORMAL, CloseCode::ABNORMAL, "server", "pong timeout")
    );
}

#[tokio::test(start_paused = true)]
async fn a_reader_that_stops_reading_is_closed_after_the_send_timeout() {
    // The driver notices the backlog at its next poll: here the first keepalive ping's (the
    // peer counts as alive while its backlog moves; it does not, but the pong timeout is long).
    let (interval, send_timeout) = (Duration::from_secs(1), Duration::from_secs(3));
    let settings = SessionSettings {
        send_timeout: Some(send_timeout),
        ping_interval: Some(interval),
        pong_timeout: Duration::from_secs(60),
        ..settings()
    };
    let stalled_at = Arc::new(Mutex::new(None));
    let stalled = Arc::clone(&stalled_at);
    let (peer, session) = start_with(
        settings,
        1024,
        handler(move |shared| async move {
            let chunk = vec![0u8; 16 * 1024];
            loop {
                match poll_fn(|cx| shared.poll_send(cx, DataKind::Binary, true, &chunk)).await {
                    Ok(true) => {}
                    Ok(false) => {
                        stalled.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(Instant::now);
                    }
                    Err(_) => return,
                }
            }
        }),
    );
    let end = ended(session).await;
    drop(peer);
    let stalled_at =
        stalled_at.lock().unwrap_or_else(|e| e.into_inner()).unwrap_or_else(|| panic!("never stalled"));
    // The close goes out behind what the peer does not read, so TCP is dropped after the
    // close timeout.
    let expected = interval + send_timeout + CLOSE_TIMEOUT;
    let waited = stalled_at.elapsed();
    assert!(waited >= expected && waited < expected + Duration::from_millis(100), "{waited:?}");
    let s = &end.summary;
    assert_eq!(
        (end.peer_code, s.close_code, s.initiator, s.reason),
        (CloseCode::ABNORMAL, CloseCode::POLICY_VIOLATION, "server", "send timeout")
    );
}
