//! The chat app (`handlers/chat_wsh`, `/chat?room=R&nick=N`) over real sockets: members of
//! one room see each other's join, messages and leave with the right `online` lists while
//! another room sees none of it; bad nicks and rooms are refused with 400; binary and
//! over-long messages close the connection; `since` replays what was missed from the host's
//! history, or says it cannot; members served by two generations of the plugin chat across
//! a hot reload. Run with `--nocapture` to see the transcripts.

use std::sync::{Arc, Mutex};

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use wshd_tests::*;

const HANDLER: &str = "handlers/libchat_wsh.so";

/// A server serving `chat_wsh` at `/chat`, with the default worker processes (2 or more):
/// the members of a room may be served by different workers.
fn start() -> ServerProcess {
    ServerProcess::start_with(|dir| drop(dir.install("chat_wsh", HANDLER)), "", "debounce_ms = 20\n")
}

/// What every client sent and received, in order, for printing.
#[derive(Clone, Default)]
struct Transcript(Arc<Mutex<Vec<String>>>);

impl Transcript {
    /// Records one line; texts over 100 characters are cut, with their size.
    fn record(&self, who: &str, arrow: &str, text: &str) {
        let text = match text.char_indices().nth(100) {
            Some((cut, _)) => format!("{}… ({} bytes)", &text[..cut], text.len()),
            None => text.to_owned(),
        };
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(format!("{who:>8} {arrow} {text}"));
    }

    /// Prints the transcript under `title` (shown with `--nocapture`).
    fn print(&self, title: &str) {
        let lines = self.0.lock().unwrap_or_else(|p| p.into_inner()).join("\n");
        println!("--- {title} ---\n{lines}\n--- end ---");
    }
}

/// A chat client: who it is (for the transcript) and its socket.
struct Peer {
    who: String,
    client: Client,
    log: Transcript,
}

impl Peer {
    /// Connects to `/chat?<query>`; `who` names it in the transcript.
    async fn join(server: &ServerProcess, who: &str, query: &str, log: &Transcript) -> Peer {
        log.record(who, "::", &format!("connects to /chat?{query}"));
        let client = connect(&server.ws_url(&format!("/chat?{query}"))).await;
        Peer { who: who.to_owned(), client, log: log.clone() }
    }

    /// Sends a text message.
    async fn say(&mut self, text: &str) {
        self.log.record(&self.who, ">>", text);
        self.client.send(Message::text(text)).await.unwrap_or_else(|e| panic!("{}: send: {e}", self.who));
    }

    /// The next message, parsed as JSON.
    async fn next(&mut self) -> Value {
        let text = match next_message(&mut self.client).await {
            Some(Ok(Message::Text(text))) => text.to_string(),
            other => panic!("{}: expected a text message, got {other:?}", self.who),
        };
        self.log.record(&self.who, "<<", &text);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON ({e}): {text}", self.who))
    }

    /// Asserts that the next message is `want`.
    async fn expect(&mut self, want: Value) {
        let got = self.next().await;
        assert_eq!(got, want, "{} got the wrong message", self.who);
    }

    /// Asserts that this peer's own join event is `want`, skipping what comes before it:
    /// events published just before the join may still be on their way from another worker
    /// process and reach the new member (at-most-once delivery, no "only after I joined"
    /// cut-off across workers).
    async fn expect_joined(&mut self, want: Value) {
        let mut got = self.next().await;
        while !(got["type"] == "join" && got["nick"] == want["nick"]) {
            got = self.next().await;
        }
        assert_eq!(got, want, "{} got the wrong join", self.who);
    }

    /// Asserts that `{"type":"recovered","ok":ok}` comes, skipping only other members'
    /// join and leave events (those of the moment of this join may come first: see
    /// [`Peer::expect_joined`]).
    async fn expect_recovered(&mut self, ok: bool) {
        let mut got = self.next().await;
        while matches!(got["type"].as_str(), Some("join" | "leave")) {
            got = self.next().await;
        }
        assert_eq!(got, json!({"type": "recovered", "ok": ok}), "{}", self.who);
    }

    /// Asserts that the next message is `nick` saying `text`; returns its id.
    async fn expect_said(&mut self, nick: &str, text: &str) -> String {
        let got = self.next().await;
        let id = got["id"].as_str().unwrap_or_else(|| panic!("{}: no id in {got}", self.who)).to_owned();
        assert_eq!(got, json!({"type": "message", "nick": nick, "text": text, "id": id}), "{}", self.who);
        id
    }

    /// Reads until the server's close frame; its code and reason.
    async fn expect_close(&mut self) -> (u16, String) {
        let close = expect_close(&mut self.client).await;
        self.log.record(&self.who, "<<", &format!("close {} {:?}", close.0, close.1));
        close
    }
}

fn join(nick: &str, online: &[&str]) -> Value {
    json!({"type": "join", "nick": nick, "online": online})
}

fn leave(nick: &str, online: &[&str]) -> Value {
    json!({"type": "leave", "nick": nick, "online": online})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_of_a_room_chat_and_another_room_sees_nothing() {
    let server = start();
    let log = Transcript::default();
    let mut carol = Peer::join(&server, "carol", "room=B&nick=carol", &log).await;
    carol.expect_joined(join("carol", &["carol"])).await;
    let mut alice = Peer::join(&server, "alice", "room=A&nick=alice", &log).await;
    alice.expect_joined(join("alice", &["alice"])).await;
    let mut bob = Peer::join(&server, "bob", "room=A&nick=bob", &log).await;
    bob.expect_joined(join("bob", &["alice", "bob"])).await;
    alice.expect(join("bob", &["alice", "bob"])).await;

    alice.say("hi bob <b>&\"quotes\"").await;
    let id = alice.expect_said("alice", "hi bob <b>&\"quotes\"").await;
    assert_eq!(bob.expect_said("alice", "hi bob <b>&\"quotes\"").await, id, "one id for every member");
    bob.say("hi alice, ünïcödé").await;
    let bobs = bob.expect_said("bob", "hi alice, ünïcödé").await;
    assert_eq!(alice.expect_said("bob", "hi alice, ünïcödé").await, bobs);
    assert_ne!(id, bobs);
    alice.say("again").await;
    let second = alice.expect_said("alice", "again").await;
    assert_eq!(bob.expect_said("alice", "again").await, second);
    assert_ne!(second, id, "each message has its own id");

    bob.client.close(None).await.unwrap_or_else(|e| panic!("close: {e}"));
    log.record("bob", "::", "closes");
    alice.expect(leave("bob", &["alice"])).await;
    // A member that closed and was announced leaving is not also "gone" (its will is for
    // connections that end without leaving): alice's next message is her own.
    alice.say("bye bob").await;
    alice.expect_said("alice", "bye bob").await;

    // Room B's member got nothing of room A: the next thing it reads is its own message.
    carol.say("anyone in B?").await;
    carol.expect_said("carol", "anyone in B?").await;
    log.print("two rooms: alice and bob in A, carol in B");
}

#[tokio::test]
async fn bad_nicks_and_rooms_are_refused_with_400() {
    let server = start();
    for query in [
        "",
        "?room=A",
        "?nick=",
        "?nick=has%20space",
        "?nick=a+b",
        "?nick=%3Cimg%3E",
        "?nick=%C3%A9t%C3%A9",
        "?nick=bad%zz",
        &format!("?nick={}", "n".repeat(33)),
        "?nick=a&nick=b",
        "?nick=ok&room=",
        "?nick=ok&room=a.b",
        "?nick=ok&room=a%2Fb",
        &format!("?nick=ok&room={}", "r".repeat(65)),
        "?nick=ok&since=",
    ] {
        let response = raw_http(server.addr, &handshake_request(&format!("/chat{query}"), "")).await;
        assert_eq!(response.status, 400, "/chat{query}: {}", response.text());
        println!("/chat{query} -> {} {}", response.status, response.text());
    }
    for query in
        ["?nick=ok", &format!("?nick={}&room={}", "n".repeat(32), "r".repeat(64)), "?nick=a_b-C9&x=1"]
    {
        let response = raw_http(server.addr, &handshake_request(&format!("/chat{query}"), "")).await;
        assert_eq!(response.status, 101, "/chat{query}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_nicks_show_once_and_rule_breakers_are_closed() {
    let server = start();
    let log = Transcript::default();
    let mut first = Peer::join(&server, "sam#1", "nick=sam", &log).await;
    first.expect_joined(join("sam", &["sam"])).await;
    let mut second = Peer::join(&server, "sam#2", "nick=sam", &log).await;
    second.expect_joined(join("sam", &["sam"])).await;
    first.expect(join("sam", &["sam"])).await;

    second.client.send(Message::binary(vec![1u8, 2, 3])).await.unwrap_or_else(|e| panic!("send: {e}"));
    log.record("sam#2", ">>", "(3 binary bytes)");
    assert_eq!(second.expect_close().await, (1003, "text messages only".to_owned()));
    first.expect(leave("sam", &["sam"])).await;

    let mut third = Peer::join(&server, "tom", "nick=tom", &log).await;
    third.expect_joined(join("tom", &["sam", "tom"])).await;
    first.expect(join("tom", &["sam", "tom"])).await;
    let exactly = "x".repeat(4096);
    third.say(&exactly).await;
    third.expect_said("tom", &exactly).await;
    first.expect_said("tom", &exactly).await;
    third.say(&"y".repeat(4097)).await;
    assert_eq!(third.expect_close().await, (1009, "text over 4096 bytes".to_owned()));
    first.expect(leave("tom", &["sam"])).await;
    log.print("duplicate nicks, binary and over-long messages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_replays_what_was_said_after_it_or_says_it_cannot() {
    let server = ServerProcess::start_with(
        |dir| drop(dir.install("chat_wsh", HANDLER)),
        "",
        "debounce_ms = 20\n\n[[route]]\npath = \"/chat\"\n[route.rooms]\nhistory_messages = 3\n",
    );
    let log = Transcript::default();
    let mut alice = Peer::join(&server, "alice", "room=h&nick=alice", &log).await;
    alice.expect_joined(join("alice", &["alice"])).await;
    let mut ids = Vec::new();
    for n in 1..=5 {
        alice.say(&format!("message {n}")).await;
        ids.push(alice.expect_said("alice", &format!("message {n}")).await);
    }
    log.record("server", "::", "keeps the last 3 messages of a room (history_messages = 3)");

    // Since message 3: messages 4 and 5 again, in order and with their ids, then recovered.
    let mut bob = Peer::join(&server, "bob", &format!("room=h&nick=bob&since={}", ids[2]), &log).await;
    assert_eq!(bob.expect_said("alice", "message 4").await, ids[3]);
    assert_eq!(bob.expect_said("alice", "message 5").await, ids[4]);
    bob.expect(json!({"type": "recovered", "ok": true})).await;
    bob.expect_joined(join("bob", &["alice", "bob"])).await;
    alice.expect(join("bob", &["alice", "bob"])).await;

    // Since the last message: nothing to replay, and nothing missed.
    let mut carol = Peer::join(&server, "carol", &format!("room=h&nick=carol&since={}", ids[4]), &log).await;
    carol.expect_recovered(true).await;
    carol.expect_joined(join("carol", &["alice", "bob", "carol"])).await;

    // Message 1 was pushed out, and an id never said is unknown: no replay, ok false.
    for (who, since) in [("dave", ids[0].as_str()), ("erin", "0123456789abcdef-1-1")] {
        let mut late = Peer::join(&server, who, &format!("room=h&nick={who}&since={since}"), &log).await;
        late.expect_recovered(false).await;
        // Events of others may come first: the previous late peer's leave (its connection
        // ends as this one joins), or an earlier join still on its way from another worker.
        let mut now = late.next().await;
        while now["nick"] != who {
            now = late.next().await;
        }
        assert_eq!((now["type"].as_str(), now["nick"].as_str()), (Some("join"), Some(who)), "{now}");
    }
    // Another room's history does not cover this room's ids.
    let mut frank =
        Peer::join(&server, "frank", &format!("room=other&nick=frank&since={}", ids[3]), &log).await;
    frank.expect_recovered(false).await;
    frank.expect_joined(join("frank", &["frank"])).await;
    log.print("since: replay in order, then recovered");
}

/// The generation number in a `handler loaded` line's `key=` field.
fn field(line: &str, key: &str) -> u64 {
    let value = line.split(&format!(" {key}=")).nth(1).and_then(|rest| rest.split(' ').next());
    value.and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no {key}= in {line}"))
}

/// Installs the same build of `chat_wsh` again with a few bytes appended (new content, so a
/// new generation), renamed over the old file like `mv`.
fn reinstall(server: &ServerProcess) {
    let dest = server.dir().join(HANDLER);
    let mut bytes = std::fs::read(plugin_lib("chat_wsh")).unwrap_or_else(|e| panic!("read: {e}"));
    bytes.extend_from_slice(b"\0a rebuild of chat_wsh\0");
    let staging = dest.with_file_name(".incoming.tmp");
    std::fs::write(&staging, &bytes).unwrap_or_else(|e| panic!("write: {e}"));
    std::fs::rename(&staging, &dest).unwrap_or_else(|e| panic!("rename: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_served_by_two_generations_chat_across_a_hot_reload() {
    let server = start();
    let log = Transcript::default();
    let loaded = |replaces: u64| {
        let line = server.wait_log_where(
            |l| {
                l.contains("handler loaded")
                    && l.contains("resource=/chat")
                    && field(l, "replaces") == replaces
            },
            WAIT,
        );
        line.unwrap_or_else(|| panic!("no load of /chat replacing {replaces}:\n{}", server.logs()))
    };
    let first = field(&loaded(0), "generation");
    let mut old = Peer::join(&server, "old", "room=r&nick=old", &log).await;
    old.expect_joined(join("old", &["old"])).await;
    old.say("before the reload").await;
    let before = old.expect_said("old", "before the reload").await;

    reinstall(&server);
    let second = field(&loaded(first), "generation");
    assert!(second > first, "a new generation: {second} after {first}");
    assert!(
        server.wait_log_everywhere_in_order(&format!("generation={second} "), "route table published", WAIT),
        "the new generation was never published:\n{}",
        server.logs()
    );
    log.record("server", "::", &format!("generation {second} replaces {first}"));

    let mut new = Peer::join(&server, "new", "room=r&nick=new", &log).await;
    new.expect_joined(join("new", &["new", "old"])).await;
    old.expect(join("new", &["new", "old"])).await;
    old.say("from the old generation").await;
    let id = old.expect_said("old", "from the old generation").await;
    assert_eq!(new.expect_said("old", "from the old generation").await, id);
    new.say("from the new generation").await;
    let id = new.expect_said("new", "from the new generation").await;
    assert_eq!(old.expect_said("new", "from the new generation").await, id);

    // The history is the host's: it spans both generations.
    let mut back = Peer::join(&server, "back", &format!("room=r&nick=back&since={before}"), &log).await;
    back.expect_said("old", "from the old generation").await;
    back.expect_said("new", "from the new generation").await;
    back.expect(json!({"type": "recovered", "ok": true})).await;
    back.expect_joined(join("back", &["back", "new", "old"])).await;
    old.expect(join("back", &["back", "new", "old"])).await;
    new.expect(join("back", &["back", "new", "old"])).await;
    drop(back);
    log.record("back", "::", "disconnects");
    old.expect(leave("back", &["new", "old"])).await;
    new.expect(leave("back", &["new", "old"])).await;

    drop(old);
    log.record("old", "::", "disconnects");
    new.expect(leave("old", &["new"])).await;
    // The old member was served by the first generation: it is released once it is gone.
    let released = server.wait_log_where(
        |l| l.contains("generation released") && l.contains(&format!("generation={first} ")),
        WAIT,
    );
    assert!(released.is_some(), "generation {first} was not released:\n{}", server.logs());
    log.record("server", "::", &format!("generation {first} released"));
    log.print("a hot reload of chat_wsh with members connected");
}
