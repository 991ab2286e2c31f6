//! Well-behaved room traffic on the `chat_wsh` handler (`/chat`): per room, subscribers join
//! first, then one publisher says `s=<seq> t=<stamp>` at a steady rate; every member (the
//! publisher included, as chat echoes to the sender) checks it gets every sequence number in
//! order. Silent subscribers send an unsolicited pong every 10 s so that wshd's keepalive
//! does not take them for dead.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::{MissedTickBehavior, interval, timeout};

use super::stats::Stats;
use crate::BoxError;
use crate::wsclient::{ClientOptions, OP_CLOSE, OP_TEXT, Reader, Target, Writer, WsClient};

/// Longest wait for connect, handshake or a send.
const STEP: Duration = Duration::from_secs(10);
/// How long members keep reading after the run stopped, for messages still in flight.
const DRAIN: Duration = Duration::from_secs(15);

/// One room's shared state.
pub(super) struct Room {
    /// Its name (`room=`).
    pub(super) name: String,
    /// The last sequence number published, once the publisher has stopped.
    last: AtomicU64,
}

impl Room {
    /// A room named `name`, not yet published to.
    pub(super) fn new(name: String) -> Room {
        Room { name, last: AtomicU64::new(u64::MAX) }
    }

    fn last(&self) -> Option<u64> {
        Some(self.last.load(Ordering::Acquire)).filter(|&l| l != u64::MAX)
    }
}

fn publisher_nick(room: &Room) -> String {
    format!("pub_{}", room.name)
}

async fn open(base: &str, room: &Room, nick: &str, seed: u64) -> Result<WsClient, BoxError> {
    let target = Target::parse(&format!("{base}/chat?room={}&nick={nick}", room.name))?;
    let options = ClientOptions { offer_deflate: seed % 2 == 1, deflate_level: 1, seed };
    let mut client = WsClient::open(&target, None, options, STEP).await?;
    // Joined once our own join event arrives.
    let own = format!("\"nick\":\"{nick}\"");
    loop {
        let (op, text) = timeout(STEP, client.reader.recv()).await.map_err(|_| "no join event")??;
        let text = String::from_utf8_lossy(text);
        if op == OP_TEXT && text.contains("\"type\":\"join\"") && text.contains(&own) {
            return Ok(client);
        }
    }
}

/// `(seq, stamp)` of a message event from `nick`, if that is what `text` is.
fn parse(text: &[u8], nick: &str) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(text).ok()?;
    if !text.contains("\"type\":\"message\"") || !text.contains(&format!("\"nick\":\"{nick}\"")) {
        return None;
    }
    let body = &text[text.find("\"text\":\"")? + 8..];
    let body = &body[..body.find('"')?];
    let mut fields = body.split(' ');
    let seq = fields.next()?.strip_prefix("s=")?.parse().ok()?;
    let stamp = fields.next()?.strip_prefix("t=")?.parse().ok()?;
    Some((seq, stamp))
}

/// Checks one member's deliveries until it has seen the last message published (or the drain
/// time after the stop has passed); counts gaps, reorderings and what never came as lost.
async fn check(
    reader: &mut Reader<OwnedReadHalf>,
    mut pong: Option<&mut Writer<OwnedWriteHalf>>,
    who: &str,
    room: &Room,
    stats: &Stats,
) {
    let nick = publisher_nick(room);
    let (mut next, mut broken, mut last_pong, mut stop_at) = (1u64, false, Instant::now(), None);
    loop {
        if room.last().is_some_and(|last| next > last) {
            break;
        }
        if stats.stopping() && stop_at.get_or_insert_with(Instant::now).elapsed() > DRAIN {
            break;
        }
        if broken {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        match timeout(Duration::from_secs(1), reader.recv()).await {
            Err(_) => {}
            Ok(Err(e)) => {
                stats.error(format!("{who}: {e}"));
                broken = true;
            }
            Ok(Ok((OP_CLOSE, _))) => {
                stats.error(format!("{who}: closed by the server"));
                broken = true;
            }
            Ok(Ok((_, text))) => match parse(text, &nick) {
                Some((seq, stamp)) if seq == next => {
                    Stats::bump(&stats.delivered);
                    stats.latency_since(stamp);
                    next += 1;
                }
                Some((seq, _)) if seq > next => {
                    stats.lose(seq - next, format!("{who}: got {seq}, expected {next}"));
                    Stats::bump(&stats.delivered);
                    next = seq + 1;
                }
                Some((seq, _)) => stats.lose(1, format!("{who}: got {seq} again or late (expected {next})")),
                None => {}
            },
        }
        if let Some(w) = pong.as_mut()
            && last_pong.elapsed() > Duration::from_secs(10)
        {
            last_pong = Instant::now();
            match timeout(STEP, w.send(0xA, b"")).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => stats.error(format!("{who}: pong: {e}")),
                Err(_) => stats.error(format!("{who}: pong: send timed out")),
            }
        }
    }
    match room.last() {
        Some(last) if next <= last => {
            stats.lose(last + 1 - next, format!("{who}: {next}..={last} never came"))
        }
        Some(_) => {}
        None => stats.lose(1, format!("{who}: the publisher never finished")),
    }
}

/// A subscriber of `room` (already joined: `client`).
pub(super) async fn subscriber(mut client: WsClient, who: String, room: Arc<Room>, stats: Arc<Stats>) {
    check(&mut client.reader, Some(&mut client.writer), &who, &room, &stats).await;
    let _ = client.close(Duration::from_secs(2)).await;
}

/// Opens `count` subscribers of `room` (all joined when this returns).
pub(super) async fn join(base: &str, room: &Room, count: usize) -> Result<Vec<(WsClient, String)>, BoxError> {
    let mut members = Vec::new();
    for k in 0..count {
        let nick = format!("sub_{}_{k}", room.name);
        let client = open(base, room, &nick, k as u64).await.map_err(|e| format!("{nick}: {e}"))?;
        members.push((client, nick));
    }
    Ok(members)
}

/// The publisher of `room`: says a message `rate` times a second until the run stops, and
/// checks its own copies.
pub(super) async fn publisher(base: String, room: Arc<Room>, stats: Arc<Stats>, rate: f64) {
    let nick = publisher_nick(&room);
    let mut client = match open(&base, &room, &nick, 0).await {
        Ok(c) => c,
        Err(e) => {
            room.last.store(0, Ordering::Release);
            stats.lose(1, format!("{nick}: {e}"));
            return;
        }
    };
    let WsClient { reader, writer, .. } = &mut client;
    let send = async {
        let mut tick = interval(Duration::from_secs_f64(1.0 / rate.max(0.01)));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut seq = 0;
        while !stats.stopping() {
            tick.tick().await;
            let text = format!("s={} t={}", seq + 1, stats.now_ns());
            match timeout(STEP, writer.send(OP_TEXT, text.as_bytes())).await {
                Ok(Ok(())) => {
                    seq += 1;
                    Stats::bump(&stats.published);
                }
                _ => {
                    stats.lose(1, format!("{nick}: publishing {} failed", seq + 1));
                    break;
                }
            }
        }
        room.last.store(seq, Ordering::Release);
    };
    tokio::join!(send, check(reader, None, &nick, &room, &stats));
    let _ = client.close(Duration::from_secs(2)).await;
}
