//! Well-behaved echo traffic: long-lived clients sending at a steady rate and checking every
//! reply, and connection churn (open, one message, close).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{MissedTickBehavior, interval, timeout};

use super::stats::Stats;
use crate::BoxError;
use crate::wsclient::{ClientOptions, OP_BINARY, OP_TEXT, Target, WsClient};

/// Longest wait for any one step (connect, handshake, send, reply).
const STEP: Duration = Duration::from_secs(10);

/// Text the payloads are cut from (so deflate sees realistic, varying data).
const CORPUS: &str = "the quick brown fox jumps over the lazy dog while a websocket host \
    echoes every message it is sent, compressed or not, across hot reloads of its plugins; ";

/// One echo client's shape.
#[derive(Debug, Clone, Copy)]
pub(super) struct EchoShape {
    /// Index (in messages and errors).
    pub(super) id: u64,
    /// Binary rather than text messages.
    pub(super) binary: bool,
    /// Offer permessage-deflate (and insist it was agreed).
    pub(super) deflate: bool,
    /// Messages per second.
    pub(super) rate: f64,
}

/// The payload of message `seq`: its id, sequence number and send stamp, then corpus text.
fn payload(id: u64, seq: u64, stamp_ns: u64) -> Vec<u8> {
    let mut text = format!("e{id} s={seq} t={stamp_ns} ");
    let skip = (seq as usize * 7) % CORPUS.len();
    text.push_str(&CORPUS[skip..]);
    text.push_str(&CORPUS[..skip]);
    text.into_bytes()
}

/// Sends `message` and checks the echo is the same message.
async fn round_trip(client: &mut WsClient, opcode: u8, message: &[u8]) -> Result<(), BoxError> {
    timeout(STEP, client.writer.send(opcode, message)).await.map_err(|_| "send timed out")??;
    let (op, reply) = timeout(STEP, client.reader.recv()).await.map_err(|_| "no echo within 10 s")??;
    if op != opcode || reply != message {
        return Err(format!("wrong echo: opcode {op:#x}, {} bytes", reply.len()).into());
    }
    Ok(())
}

async fn open(target: &Target, shape: EchoShape) -> Result<WsClient, BoxError> {
    let options = ClientOptions { offer_deflate: shape.deflate, deflate_level: 1, seed: shape.id };
    let client = WsClient::open(target, None, options, STEP).await?;
    if shape.deflate && client.deflate.is_none() {
        return Err("permessage-deflate offered but not agreed".into());
    }
    Ok(client)
}

/// A long-lived echo client until the run stops; a lost connection is a lost message, and
/// the client reconnects.
pub(super) async fn echo_client(target: Arc<Target>, stats: Arc<Stats>, shape: EchoShape) {
    let opcode = if shape.binary { OP_BINARY } else { OP_TEXT };
    let mut tick = interval(Duration::from_secs_f64(1.0 / shape.rate.max(0.01)));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut client = None;
    let mut seq = 0;
    while !stats.stopping() {
        tick.tick().await;
        let conn = match client.as_mut() {
            Some(c) => c,
            None => match open(&target, shape).await {
                Ok(c) => client.insert(c),
                Err(e) => {
                    stats.lose(1, format!("echo {}: connect: {e}", shape.id));
                    continue;
                }
            },
        };
        seq += 1;
        let stamp = stats.now_ns();
        Stats::bump(&stats.echo_sent);
        match round_trip(conn, opcode, &payload(shape.id, seq, stamp)).await {
            Ok(()) => {
                Stats::bump(&stats.echo_ok);
                stats.latency_since(stamp);
            }
            Err(e) => {
                stats.lose(1, format!("echo {} message {seq}: {e}", shape.id));
                client = None;
            }
        }
    }
    if let Some(c) = client
        && let Err(e) = c.close(STEP).await
    {
        stats.error(format!("echo {}: closing handshake: {e}", shape.id));
    }
}

/// Opens, echoes one message and closes a new connection every `pause`, until the run stops.
pub(super) async fn churn(target: Arc<Target>, stats: Arc<Stats>, pause: Duration) {
    let mut n: u64 = 0;
    while !stats.stopping() {
        n += 1;
        let shape = EchoShape {
            id: 1_000_000 + n,
            binary: n.is_multiple_of(2),
            deflate: n.is_multiple_of(3),
            rate: 1.0,
        };
        let result = async {
            let mut client = open(&target, shape).await?;
            let opcode = if shape.binary { OP_BINARY } else { OP_TEXT };
            round_trip(&mut client, opcode, &payload(shape.id, 1, stats.now_ns())).await?;
            client.close(STEP).await
        }
        .await;
        match result {
            Ok(()) => Stats::bump(&stats.churn_ok),
            Err(e) => {
                Stats::bump(&stats.churn_failed);
                stats.lose(1, format!("churn connection {n}: {e}"));
            }
        }
        tokio::time::sleep(pause).await;
    }
}
