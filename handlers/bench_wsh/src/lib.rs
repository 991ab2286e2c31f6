//! `/bench` — mod_pywebsocket's `bench_wsh.py`: a paced message generator.
//!
//! The first message must be the text `"<wait> <count> <message>"`, three fields separated by
//! single spaces (so `<message>` has no spaces), e.g. `0.01 3 hi`. The handler then sends the
//! text `<message>` `count` times, sleeping `wait` seconds after each send, and returns, so
//! the server closes with 1000. A negative `count` sends nothing.
//!
//! Anything else (a binary message, the wrong number of fields, a `wait` that is not a
//! non-negative number of seconds, a `count` that is not an integer) is a malformed request:
//! pywebsocket's handler raises `ValueError` and drops the TCP connection without a close
//! frame, so this one calls [`Connection::abort`].
//!
//! The pause uses [`wshd_sdk::time::sleep`], which runs on the host's timers: a plugin has no
//! tokio runtime of its own, and a blocking `std::thread::sleep` would stall every other
//! connection served by the same host thread.

use std::time::Duration;

use wshd_sdk::{Config, Connection, Error, Handler, Message, time};

/// The bench handler. It keeps no state.
pub struct Bench;

/// A parsed `"<wait> <count> <message>"` request.
struct Request<'a> {
    wait: Duration,
    count: i64,
    message: &'a str,
}

/// Parses the request; `None` when it is malformed.
fn parse(message: &Message) -> Option<Request<'_>> {
    let fields: Vec<&str> = message.as_text()?.split(' ').collect();
    let [wait, count, message] = fields[..] else { return None };
    // `try_from_secs_f64` refuses negative, infinite and NaN waits.
    let wait = Duration::try_from_secs_f64(wait.parse().ok()?).ok()?;
    Some(Request { wait, count: count.parse().ok()?, message })
}

impl Handler for Bench {
    fn new(_config: &Config) -> Result<Self, Error> {
        Ok(Bench)
    }

    async fn transfer_data(&self, mut conn: Connection) {
        let Some(first) = conn.recv().await else { return };
        let Some(request) = parse(&first) else { return conn.abort() };
        for _ in 0..request.count {
            if conn.send_text(request.message).await.is_err() {
                return; // the client went away
            }
            time::sleep(request.wait).await;
        }
    }
}

wshd_sdk::export_handler!(Bench);
