//! Room messages to connections with permessage-deflate: compressed once per publish for
//! every member whose server side resets after each message (the default answer), plain for
//! members without the extension, and the same message either way. Raw sockets, so the
//! test sees RSV1 and the bytes on the wire.

use std::time::Duration;

use flate2::{Decompress, FlushDecompress};
use serde_json::Value;
use wshd_tests::*;

const HANDLER: &str = "handlers/libchat_wsh.so";

/// What Chromium and Firefox offer.
const BROWSER_OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
/// An offer that also limits the server's window: another set of parameters.
const SMALL_WINDOW_OFFER: &str =
    "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10; client_max_window_bits\r\n";

/// A chat member over a raw socket, with its own inflater.
struct Member {
    socket: RawSocket,
    inflater: Decompress,
}

impl Member {
    async fn join(server: &ServerProcess, nick: &str, offer: &str) -> Member {
        let path = format!("/chat?room=z&nick={nick}");
        let socket = RawSocket::open_with(server.addr, &path, offer, &[]).await;
        let mut member = Member { socket, inflater: Decompress::new(false) };
        member.until(|event| event["type"] == "join" && event["nick"] == nick).await;
        member
    }

    /// The next text message: whether it came compressed, its size on the wire, its JSON.
    async fn next(&mut self) -> (bool, usize, Value) {
        let frame = self.socket.read_frame().await.expect("a message");
        assert_eq!((frame.fin, frame.opcode), (true, 0x1), "a whole text message: {frame:?}");
        let text = match frame.rsv1 {
            true => inflate(&mut self.inflater, &frame.payload),
            false => frame.payload.clone(),
        };
        let json = serde_json::from_slice(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
        (frame.rsv1, frame.payload.len(), json)
    }

    /// Reads until an event `wanted` accepts; as [`next`](Self::next).
    async fn until(&mut self, wanted: impl Fn(&Value) -> bool) -> (bool, usize, Value) {
        loop {
            // Boxed: a raw socket's read future holds a 64 KiB buffer.
            let next = tokio::time::timeout(Duration::from_secs(10), Box::pin(self.next()))
                .await
                .expect("the event in time");
            if wanted(&next.2) {
                return next;
            }
        }
    }

    async fn say(&mut self, text: &str) {
        self.socket.send_frame(true, 0x1, text.as_bytes(), true).await;
    }
}

/// `wshd_room_compressions_total` and `wshd_room_compressed_deliveries_total`.
async fn compression_counts(server: &ServerProcess) -> (f64, f64) {
    let metrics = http_get(server.admin_addr(), "/metrics").await.text();
    let count = |name| metric_sample(&metrics, name).unwrap_or_else(|| panic!("no {name} in\n{metrics}"));
    (count("wshd_room_compressions_total"), count("wshd_room_compressed_deliveries_total"))
}

/// One message compressed without context takeover (the server resets after each).
fn inflate(inflater: &mut Decompress, payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(64 * 1024);
    inflater.decompress_vec(&input, &mut out, FlushDecompress::Sync).expect("the server's message inflates");
    inflater.reset(false);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_messages_reach_deflate_members_compressed_and_others_plain() {
    let server = ServerProcess::start_with(
        |dir| drop(dir.install("chat_wsh", HANDLER)),
        "workers = 0\nadmin_listen = \"127.0.0.1:0\"\n",
        "",
    );
    let mut plain = Member::join(&server, "plain", "").await;
    let mut browser = Member::join(&server, "browser", BROWSER_OFFER).await;
    let mut browser2 = Member::join(&server, "browser2", BROWSER_OFFER).await;
    let mut small = Member::join(&server, "small", SMALL_WINDOW_OFFER).await;
    let before = compression_counts(&server).await;

    let long = "all members hear this, compressed where they asked; ".repeat(40);
    plain.say(&long).await;
    let said = |e: &Value| e["type"] == "message";
    let (plain_rsv1, plain_len, plain_event) = plain.until(said).await;
    let (browser_rsv1, browser_len, browser_event) = browser.until(said).await;
    let (small_rsv1, small_len, small_event) = small.until(said).await;
    let (browser2_rsv1, browser2_len, browser2_event) = browser2.until(said).await;
    let after = compression_counts(&server).await;
    println!(
        "a {}-byte chat message: plain member {plain_len} bytes (rsv1 {plain_rsv1}), browser offer \
         {browser_len} bytes (rsv1 {browser_rsv1}), server_max_window_bits=10 {small_len} bytes (rsv1 {small_rsv1})",
        long.len()
    );
    assert_eq!(plain_event["text"], long.as_str());
    assert!(!plain_rsv1, "no extension, no compression");
    assert!(browser_rsv1 && small_rsv1, "both deflate members get it compressed");
    assert!(browser_len * 4 < plain_len && small_len * 4 < plain_len, "and much smaller");
    assert_eq!(browser_event, plain_event, "the same message");
    assert_eq!(small_event, plain_event, "the same message with a 10-bit window");
    assert_eq!((browser2_rsv1, browser2_len, &browser2_event), (true, browser_len, &plain_event));
    println!("/metrics (compressions, compressed deliveries): {before:?} -> {after:?}");
    assert_eq!((after.0 - before.0, after.1 - before.1), (2.0, 3.0), "one compression per window, shared");

    // Messages alternate as the deflate code decides (a short one may or may not gain);
    // each is its own deflate stream, so every one inflates whatever came before.
    browser.say("x").await;
    let (_, _, event) = plain.until(said).await;
    assert_eq!(event["text"], "x");
    let (_, _, event) = browser.until(said).await;
    assert_eq!(event["text"], "x");
    small.say(&long).await;
    let (rsv1, _, event) = browser.until(said).await;
    assert!(rsv1 && event["text"] == long.as_str() && event["nick"] == "small", "{event}");
}
