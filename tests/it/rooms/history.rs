//! History and recovery (`publish_text_with_id`, `join_since`) and the `[route.rooms]`
//! options (`overflow`, `history_messages`, `shared`), over real sockets, one worker.

use super::*;

/// Publishes `message 1` … `message 5` with ids `1` … `5` to `chat`, as a member, and waits
/// until they come back: with worker processes, a logged publish is in the history once the
/// master ordered it (one relay round trip after `publish` returned).
async fn log_five(publisher: &mut Peer) {
    assert_eq!(publisher.ask("join chat publisher").await, "ok joined chat");
    for n in 1..=5 {
        assert_eq!(publisher.ask(&format!("lpub chat {n} message {n}")).await, "ok published 1");
    }
    for n in 1..=5 {
        assert_eq!(publisher.room_message().await, format!("v1 message {n}"));
    }
}

/// A server with the rooms fixture at `/rooms` and `routes` (TOML) appended.
fn start_with_routes(routes: &str) -> ServerProcess {
    ServerProcess::start_with(
        |dir| drop(dir.install("fixture_rooms_one", HANDLER)),
        "workers = 1",
        &format!("debounce_ms = 20\n\n{routes}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_since_replays_the_missed_messages_in_order_then_the_recovered_marker() {
    let server = start();
    let mut publisher = Peer::connect(&server).await;
    log_five(&mut publisher).await;
    assert_eq!(publisher.ask("leave chat").await, "ok left chat true");
    let mut late = Peer::connect(&server).await;
    assert_eq!(late.ask("since chat 2 late").await, "ok since true");
    for n in 3..=5 {
        assert_eq!(late.room_message().await, format!("v1 message {n}"));
    }
    assert_eq!(late.room_message().await, "v1 recovered true");
    assert_eq!(publisher.ask("lpub chat 6 message 6").await, "ok published 1");
    assert_eq!(late.room_message().await, "v1 message 6");
    assert_eq!(publisher.ask("who chat").await, "ok late");
    drop(late);
    wait_presence(&mut publisher, "chat", "ok ").await;
    let mut back = Peer::connect(&server).await;
    assert_eq!(back.ask("since chat 5 back").await, "ok since true", "the empty room kept its history");
    assert_eq!(back.room_message().await, "v1 message 6");
    assert_eq!(back.room_message().await, "v1 recovered true");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_since_a_trimmed_or_unknown_id_replays_nothing() {
    let server = start_with_routes("[[route]]\npath = \"/rooms\"\n[route.rooms]\nhistory_messages = 3\n");
    let mut publisher = Peer::connect(&server).await;
    log_five(&mut publisher).await;
    let mut late = Peer::connect(&server).await;
    assert_eq!(late.ask("since chat 1 late").await, "ok since false", "pushed out of the 3 kept");
    assert_eq!(late.room_message().await, "v1 recovered false");
    assert_eq!(late.ask("since chat never-seen late").await, "ok since false");
    assert_eq!(late.room_message().await, "v1 recovered false");
    assert_eq!(late.ask("since chat 3 late").await, "ok since true");
    assert_eq!(late.room_message().await, "v1 message 4");
    assert_eq!(late.room_message().await, "v1 message 5");
    assert_eq!(late.room_message().await, "v1 recovered true");
    let long = "x".repeat(65);
    assert_eq!(publisher.ask(&format!("lpub chat {long} too long")).await, "err bad message id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_oldest_route_keeps_a_slow_member_open() {
    let server =
        start_with_routes("[[route]]\npath = \"/rooms\"\n[route.rooms]\noverflow = \"drop_oldest\"\n");
    let mut slow = Peer::connect(&server).await;
    assert_eq!(slow.ask("join feed slow").await, "ok joined feed");
    let mut publisher = Peer::connect(&server).await;
    // 25 MiB: past the member's 1 MiB queue, whatever the socket buffers take.
    assert_eq!(publisher.ask("flood feed 400 65536").await, "ok flooded 400", "every publish queued");
    assert_eq!(publisher.ask("pub feed last").await, "ok published 1");
    let mut binaries = 0;
    loop {
        match next_message(&mut slow.client).await {
            Some(Ok(Message::Binary(_))) => binaries += 1,
            Some(Ok(Message::Text(text))) if text.as_str() == "v1 last" => break,
            other => panic!("expected binaries then the last text, got {other:?}"),
        }
    }
    assert!(binaries < 400, "the oldest were dropped: {binaries} arrived");
    assert_eq!(slow.ask("who feed").await, "ok slow", "still a member, still open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_routes_share_channels_and_other_routes_do_not() {
    let shared = "[route.rooms]\nshared = true\n";
    let server = start_with_routes(&format!(
        "[[route]]\npath = \"/a\"\nhandler = \"/rooms\"\n{shared}\n[[route]]\npath = \"/b\"\nhandler = \"/rooms\"\n{shared}"
    ));
    let (mut a, mut b) = (Peer::connect_to(&server, "/a").await, Peer::connect_to(&server, "/b").await);
    let mut own = Peer::connect(&server).await;
    assert_eq!(a.ask("join lobby on-a").await, "ok joined lobby");
    assert_eq!(b.ask("join lobby on-b").await, "ok joined lobby");
    assert_eq!(own.ask("join lobby on-rooms").await, "ok joined lobby");
    assert_eq!(a.ask("who lobby").await, "ok on-a,on-b");
    assert_eq!(own.ask("who lobby").await, "ok on-rooms", "/rooms keeps its own namespace");
    assert_eq!(b.ask("pub lobby hello").await, "ok published 2");
    assert_eq!(a.room_message().await, "v1 hello");
    assert_eq!(b.room_message().await, "v1 hello");
    assert_eq!(own.ask("pub lobby mine").await, "ok published 1");
    assert_eq!(own.room_message().await, "v1 mine");
}
