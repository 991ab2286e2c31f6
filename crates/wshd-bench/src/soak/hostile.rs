//! Clients the server may rightly drop; how each connection ends is counted, never as a loss.
//!
//! - A **slow reader** sends 16 KiB binary messages to `/echo` 20 times a second but reads
//!   only 4 KiB of the echoes every 250 ms (16 KiB/s): the echoes pile up in wshd's send
//!   queue until a limit drops it (`max_send_queue_bytes`, `send_timeout_secs`).
//! - A **dribbler** sends the header of a 4,096-byte text message and then one byte of it
//!   every 2 s (the message would take 2.3 hours): a receive or message-completion timeout
//!   ends it; without one it stays open until the run ends.
//!
//! Each reconnects 1 s after its connection ended, until the run stops.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::time::timeout;

use super::stats::{Endings, Stats};
use crate::BoxError;
use crate::wsclient::{ClientOptions, OP_BINARY, OP_CLOSE, OP_TEXT, Target, WsClient, encode_frame};

/// Longest wait for connect and handshake.
const STEP: Duration = Duration::from_secs(10);

/// How a connection ended, from the error that ended it.
fn ending(e: &BoxError) -> String {
    let text = e.to_string();
    if text.contains("closed by the server") {
        "server closed TCP".to_owned()
    } else if text.contains("reset") {
        "reset by the server".to_owned()
    } else if text.contains("Broken pipe") {
        "broken pipe".to_owned()
    } else {
        text
    }
}

fn record(endings: &Mutex<Endings>, how: &str, life: Duration) {
    if let Ok(mut e) = endings.lock() {
        e.end(how, life);
    }
}

fn opened(endings: &Mutex<Endings>) {
    if let Ok(mut e) = endings.lock() {
        e.opened += 1;
    }
}

/// One slow-reader connection: how it ended.
async fn slow_once(target: &Target, stats: &Stats, seed: u64) -> Result<String, BoxError> {
    let options = ClientOptions { offer_deflate: false, deflate_level: 1, seed };
    let mut client = WsClient::open(target, None, options, STEP).await?;
    opened(&stats.slow);
    let message = vec![b's'; 16 << 10];
    let mut k: u64 = 0;
    while !stats.stopping() {
        k += 1;
        // When the server stops reading from us (back-pressure) a send does not finish: from
        // then on we only read, slowly, until the server ends the connection.
        match timeout(Duration::from_secs(1), client.writer.send(OP_BINARY, &message)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Ok(ending(&e)),
            Err(_) => return Ok(drain_until_closed(&mut client, stats).await),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if k.is_multiple_of(5)
            && let Ok(Err(e)) = timeout(Duration::from_millis(100), client.reader.recv_exact(4096)).await
        {
            return Ok(ending(&e));
        }
    }
    Ok("open at the end of the run".to_owned())
}

/// After our sends stalled: keep reading slowly (4 KiB every 250 ms) until the server ends
/// the connection or the run stops.
async fn drain_until_closed(client: &mut WsClient, stats: &Stats) -> String {
    while !stats.stopping() {
        match timeout(Duration::from_millis(250), client.reader.recv_exact(4096)).await {
            Ok(Err(e)) => return format!("{} (after our sends stalled)", ending(&e)),
            Ok(Ok(_)) => tokio::time::sleep(Duration::from_millis(250)).await,
            Err(_) => {}
        }
    }
    "open at the end of the run (sends stalled)".to_owned()
}

/// A slow reader, reconnecting until the run stops.
pub(super) async fn slow_reader(target: Arc<Target>, stats: Arc<Stats>, id: u64) {
    let mut n = 0;
    while !stats.stopping() {
        n += 1;
        let start = Instant::now();
        match slow_once(&target, &stats, id * 1000 + n).await {
            Ok(how) => record(&stats.slow, &how, start.elapsed()),
            Err(e) => record(&stats.slow, &format!("could not open: {e}"), start.elapsed()),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One dribbling connection: how it ended.
async fn dribble_once(target: &Target, stats: &Stats, seed: u64) -> Result<String, BoxError> {
    let options = ClientOptions { offer_deflate: false, deflate_level: 1, seed };
    let client = WsClient::open(target, None, options, STEP).await?;
    opened(&stats.dribble);
    let WsClient { mut reader, mut writer, .. } = client;
    let frame = encode_frame(OP_TEXT, &[b'd'; 4096], [1, 2, 3, 4]);
    let header = 8; // 2 bytes, a 16-bit length, the mask
    let send = async {
        writer.send_raw(&frame[..header]).await?;
        for byte in &frame[header..] {
            tokio::time::sleep(Duration::from_secs(2)).await;
            writer.send_raw(std::slice::from_ref(byte)).await?;
        }
        Ok::<(), BoxError>(())
    };
    let watch = async {
        while !stats.stopping() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::select! {
        sent = send => Ok(match sent {
            Ok(()) => "sent the whole message".to_owned(),
            Err(e) => ending(&e),
        }),
        got = reader.recv() => Ok(match got {
            Ok((OP_CLOSE, p)) if p.len() >= 2 => format!("close {}", u16::from_be_bytes([p[0], p[1]])),
            Ok((op, _)) => format!("unexpected frame {op:#x}"),
            Err(e) => ending(&e),
        }),
        () = watch => Ok("open at the end of the run".to_owned()),
    }
}

/// A dribbler, reconnecting until the run stops.
pub(super) async fn dribbler(target: Arc<Target>, stats: Arc<Stats>, id: u64) {
    let mut n = 0;
    while !stats.stopping() {
        n += 1;
        let start = Instant::now();
        match dribble_once(&target, &stats, id * 1000 + n).await {
            Ok(how) => record(&stats.dribble, &how, start.elapsed()),
            Err(e) => record(&stats.dribble, &format!("could not open: {e}"), start.elapsed()),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
