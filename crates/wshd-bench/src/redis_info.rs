//! A few words with a Redis server over RESP, no client crate: an inline command and its
//! reply (a simple string, an integer or a bulk string), and the per-command call counts
//! of `INFO commandstats` (Redis's own statistics), which `cluster` turns into Redis
//! commands per publish.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::BoxError;

/// The longest any exchange with Redis may take.
const LIMIT: Duration = Duration::from_secs(5);

/// Per-command call counts: `publish` → calls.
pub(crate) type Calls = BTreeMap<String, u64>;

/// The length of the first complete reply in `buf` (`None`: not complete yet).
fn complete(buf: &[u8]) -> Option<usize> {
    let line_end = buf.windows(2).position(|w| w == b"\r\n")? + 2;
    if buf.first() != Some(&b'$') {
        return Some(line_end);
    }
    let len: i64 = std::str::from_utf8(buf.get(1..line_end - 2)?).ok()?.parse().ok()?;
    if len < 0 {
        return Some(line_end); // A nil bulk string.
    }
    let total = line_end + usize::try_from(len).ok()? + 2;
    (buf.len() >= total).then_some(total)
}

/// The text of a reply: a bulk string's content, else the line without its type byte.
fn reply_text(reply: &[u8]) -> Result<String, BoxError> {
    let text = String::from_utf8_lossy(reply);
    match reply.first() {
        Some(b'-') => Err(format!("Redis answered {}", text.trim_end()).into()),
        Some(b'$') => Ok(text.split_once("\r\n").map_or("", |(_, rest)| rest).trim_end().to_owned()),
        _ => Ok(text.get(1..).unwrap_or_default().trim_end().to_owned()),
    }
}

/// Sends one inline command (`PING`, `INFO commandstats`) to Redis on 127.0.0.1:`port`
/// and returns the reply's text (blocking, at most [`LIMIT`] per read).
pub(crate) fn command(port: u16, line: &str) -> Result<String, BoxError> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(LIMIT))?;
    stream.write_all(format!("{line}\r\n").as_bytes())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(n) = complete(&buf) {
            return reply_text(&buf[..n]);
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err("Redis closed the connection before replying".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// [`command`] for a tokio runtime (the load client's single thread must not block).
pub(crate) async fn command_async(port: u16, line: &str) -> Result<String, BoxError> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(format!("{line}\r\n").as_bytes()).await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(n) = complete(&buf) {
                return reply_text(&buf[..n]);
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err::<String, BoxError>("Redis closed the connection before replying".into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(LIMIT, exchange).await.map_err(|_| format!("Redis did not answer in {LIMIT:?}"))?
}

/// The call counts in the text of `INFO commandstats` (`cmdstat_publish:calls=3,...`).
pub(crate) fn parse_commandstats(info: &str) -> Calls {
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.strip_prefix("calls=")?.split(',').next()?.parse().ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// Redis's call counts now.
pub(crate) async fn calls(port: u16) -> Result<Calls, BoxError> {
    Ok(parse_commandstats(&command_async(port, "INFO commandstats").await?))
}

/// The calls made between `before` and `after`, per command (commands not called left out).
pub(crate) fn delta(before: &Calls, after: &Calls) -> Calls {
    after
        .iter()
        .map(|(name, n)| (name.clone(), n.saturating_sub(before.get(name).copied().unwrap_or(0))))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The publish→receive latencies (ns) of Redis pub/sub alone on this machine: `count`
/// messages at `rate` per second `PUBLISH`ed on one connection, received on another
/// `SUBSCRIBE`d one, each carrying its send time (blocking; at most [`LIMIT`] per read).
/// The floor under a cross-node delivery, measured in the same run.
pub(crate) fn pubsub_latencies(port: u16, count: u32, rate: f64) -> Result<Vec<u64>, BoxError> {
    let mut sub = TcpStream::connect(("127.0.0.1", port))?;
    sub.set_read_timeout(Some(LIMIT))?;
    sub.write_all(b"SUBSCRIBE wshd-bench:probe\r\n")?;
    let mut pending = Vec::new();
    read_pushes(&mut sub, &mut pending, 1)?; // The subscription's confirmation.
    let base = std::time::Instant::now();
    let publisher = std::thread::spawn(move || -> Result<(), String> {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        let interval = Duration::from_secs_f64(1.0 / rate);
        for i in 0..count {
            let due = base + interval * i;
            std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
            let sent = base.elapsed().as_nanos();
            conn.write_all(format!("PUBLISH wshd-bench:probe {sent}\r\n").as_bytes())
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    let mut latencies = Vec::new();
    while latencies.len() < count as usize {
        for payload in read_pushes(&mut sub, &mut pending, 1)? {
            let received = base.elapsed().as_nanos();
            let sent: u128 = payload.trim().parse().map_err(|_| format!("probe payload {payload:?}"))?;
            latencies.push(u64::try_from(received.saturating_sub(sent)).unwrap_or(u64::MAX));
        }
    }
    publisher.join().map_err(|_| "the probe's publisher panicked")??;
    Ok(latencies)
}

/// Reads until at least `at_least` whole pushes (`*3` arrays) are in `pending`; returns
/// their last elements (a message's payload) and keeps any partial rest in `pending`.
fn read_pushes(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    at_least: usize,
) -> Result<Vec<String>, BoxError> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        while let Some((len, last)) = push(pending) {
            out.push(last);
            pending.drain(..len);
        }
        if out.len() >= at_least {
            return Ok(out);
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err("Redis closed the subscription".into());
        }
        pending.extend_from_slice(&chunk[..n]);
    }
}

/// The length and last element (as text) of the RESP array of three at the start of
/// `buf`, if it is whole.
fn push(buf: &[u8]) -> Option<(usize, String)> {
    let mut at = buf.strip_prefix(b"*3\r\n").map(|_| 4)?;
    let mut last = String::new();
    for _ in 0..3 {
        let n = complete(&buf[at..])?;
        let element = &buf[at..at + n];
        last = match element.first() {
            Some(b'$') => reply_text(element).ok()?,
            _ => String::from_utf8_lossy(element.get(1..n - 2)?).into_owned(),
        };
        at += n;
    }
    Some((at, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_complete_only_with_their_whole_bulk_string() {
        assert_eq!(complete(b"+PONG\r\n"), Some(7));
        assert_eq!(complete(b"+PON"), None);
        assert_eq!(complete(b"$5\r\nhel"), None);
        assert_eq!(complete(b"$5\r\nhello\r\n"), Some(11));
        assert_eq!(complete(b"$-1\r\n"), Some(5));
        assert_eq!(reply_text(b"$5\r\nhello\r\n").expect("bulk"), "hello");
        assert_eq!(reply_text(b"+PONG\r\n").expect("simple"), "PONG");
        assert!(reply_text(b"-ERR unknown\r\n").is_err());
    }

    #[test]
    fn pushes_are_taken_whole_with_their_payload() {
        let confirm = b"*3\r\n$9\r\nsubscribe\r\n$5\r\nprobe\r\n:1\r\n";
        assert_eq!(push(confirm), Some((confirm.len(), "1".to_owned())));
        let message = b"*3\r\n$7\r\nmessage\r\n$5\r\nprobe\r\n$4\r\n1234\r\n";
        assert_eq!(push(message), Some((message.len(), "1234".to_owned())));
        assert_eq!(push(&message[..message.len() - 3]), None, "partial");
    }

    #[test]
    fn commandstats_give_calls_per_command_and_deltas() {
        let before = parse_commandstats(
            "# Commandstats\r\ncmdstat_publish:calls=10,usec=5,usec_per_call=0.5,rejected_calls=0,failed_calls=0\r\n\
             cmdstat_set:calls=2,usec=1\r\ncmdstat_info:calls=1,usec=9\r\n",
        );
        assert_eq!(before.get("publish"), Some(&10));
        let after = parse_commandstats(
            "cmdstat_publish:calls=110,usec=5\r\ncmdstat_set:calls=2,usec=1\r\ncmdstat_info:calls=2,usec=9\r\n\
             cmdstat_exists:calls=3,usec=1\r\n",
        );
        let d = delta(&before, &after);
        assert_eq!(d.get("publish"), Some(&100));
        assert_eq!(d.get("exists"), Some(&3));
        assert_eq!(d.get("info"), Some(&1));
        assert_eq!(d.get("set"), None, "not called in between");
    }
}
