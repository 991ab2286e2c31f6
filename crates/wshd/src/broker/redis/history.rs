//! Logged publishes: appended to the channel's stream and published in one Lua script
//! (loaded at each connection, run by `EVALSHA`), so a
//! message is never published without being in the history (nor the reverse). The stream
//! is bounded by the publisher's route's limits (`MAXLEN ~` by count, `MINID ~` by age, and
//! the key expires with its newest message's age); its epoch, a random value set by the first
//! append, lives beside it and goes with it.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::RedisResult;
use redis::aio::MultiplexedConnection;

use super::keys::{StreamId, channel_topic, epoch_key, open, stream_key};
use super::session::{State, draw_node_id};
use crate::rooms::{ChannelKey, HistoryLimits, Relay};

/// KEYS: stream, epoch, topic. ARGV: envelope, max messages, max age (ms), a new epoch.
const APPEND_AND_PUBLISH: &str = r"
local maxlen = tonumber(ARGV[2])
local age = tonumber(ARGV[3])
if maxlen > 0 then
  redis.call('SET', KEYS[2], ARGV[4], 'NX')
  local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'm', ARGV[1])
  local t = redis.call('TIME')
  local oldest = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - age
  if oldest > 0 then
    redis.call('XTRIM', KEYS[1], 'MINID', '~', oldest)
  end
  redis.call('PEXPIRE', KEYS[1], age)
  redis.call('PEXPIRE', KEYS[2], age)
  return redis.call('PUBLISH', KEYS[3], '\1' .. string.char(#id) .. id .. ARGV[1])
end
return redis.call('PUBLISH', KEYS[3], '\0' .. ARGV[1])
";

/// The longest history age given to Redis (ten years, in ms).
const MAX_AGE_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

/// The script's SHA-1, as Redis names it (`SCRIPT LOAD` answers the same).
fn script_sha() -> &'static str {
    static SHA: OnceLock<String> = OnceLock::new();
    SHA.get_or_init(|| sha1_smol::Sha1::from(APPEND_AND_PUBLISH).digest().to_string())
}

/// Loads the script into Redis (at each connection: a restarted Redis has lost it), so that
/// each logged publish sends its SHA-1 (`EVALSHA`), not its text.
pub(super) async fn load_script(conn: &mut MultiplexedConnection) -> RedisResult<()> {
    let sha: String = redis::cmd("SCRIPT").arg("LOAD").arg(APPEND_AND_PUBLISH).query_async(conn).await?;
    if sha != script_sha() {
        tracing::warn!("rooms broker: Redis named the script {sha}, not {}", script_sha());
    }
    Ok(())
}

/// Adds the script that logs and publishes `envelope` to `channel` to `pipe`.
pub(super) fn append_and_publish(
    pipe: &mut redis::Pipeline,
    channel: &ChannelKey,
    limits: HistoryLimits,
    envelope: &[u8],
) {
    let age = u64::try_from(limits.max_age.as_millis()).unwrap_or(MAX_AGE_MS).clamp(1, MAX_AGE_MS);
    let epoch = format!("{:016x}", draw_node_id());
    pipe.cmd("EVALSHA")
        .arg(script_sha())
        .arg(3)
        .arg(stream_key(channel))
        .arg(epoch_key(channel))
        .arg(channel_topic(channel))
        .arg(envelope)
        .arg(limits.max_messages)
        .arg(age)
        .arg(epoch)
        .ignore();
}

/// Loads `channel`'s history from its stream and hands it in (as logged messages with
/// their age, oldest first); remembers the last one's stream id.
pub(super) async fn load(
    conn: &mut MultiplexedConnection,
    state: &mut State,
    channel: &ChannelKey,
) -> RedisResult<()> {
    type Entries = Vec<(String, HashMap<String, Vec<u8>>)>;
    let entries: Entries =
        redis::cmd("XRANGE").arg(stream_key(channel)).arg("-").arg("+").query_async(conn).await?;
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    for (id, fields) in entries {
        let Some(stream_id) = StreamId::parse(&id) else { continue };
        let Some((_, mut relay)) = fields.get("m").and_then(|m| open(m)) else { continue };
        let Relay::Logged { age, .. } = &mut relay else { continue };
        *age = Duration::from_millis(now_ms.saturating_sub(stream_id.ms));
        state.last_logged.insert(channel.clone(), stream_id);
        (state.inbound)(relay);
    }
    Ok(())
}
