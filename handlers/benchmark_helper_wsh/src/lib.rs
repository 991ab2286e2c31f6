//! `/benchmark_helper` — mod_pywebsocket's `benchmark_helper_wsh.py`: the server side of the
//! throughput benchmark page (`benchmark.html`).
//!
//! The handshake declines extensions, so nothing is compressed and the benchmark measures raw
//! framing. Then the client drives a loop of text commands:
//!
//! * `receive N` — the server sends one binary message of `N` bytes, all `a` (0x61);
//! * `send 1` — the next message must be binary and all `a`; the server answers with its
//!   size as text (`"10240"`);
//! * `send 0` (or `send` with anything but `1`) — the next message, of any kind, is not
//!   checked; the server answers with its length as text (for a text message, its length in
//!   characters, as Python's `len(str)` counts).
//!
//! The conversation ends when the client closes. Any bad command (a binary command, an
//! unknown verb, a wrong number of arguments, a size that is not an integer or is over
//! [`MAX_RECEIVE_BYTES`]) or a failed verification is an error: pywebsocket's handler raises
//! and the TCP connection is dropped without a close frame, so this one calls
//! [`Connection::abort`].

use wshd_sdk::{Accept, Config, Connection, Error, Handler, Message, Reject, Request};

/// The benchmark helper. It keeps no state between connections.
pub struct BenchmarkHelper;

/// The largest `receive N` served (128 MiB). pywebsocket allocates whatever is asked and
/// would fail with `MemoryError`; a server shared by many connections needs a bound. The
/// benchmark page's default stop threshold (102,400,000 bytes) fits.
pub const MAX_RECEIVE_BYTES: usize = 128 << 20;

/// The byte every benchmark payload is made of.
const FILL: u8 = b'a';

/// One client command.
enum Command {
    /// `receive N`: send `N` bytes of `a`.
    Receive(usize),
    /// `send V`: take the next message, verifying it when `V` is `1`, and answer its size.
    Send { verify: bool },
}

/// Parses a command message; `None` for a bad one.
fn parse(message: &Message) -> Option<Command> {
    let mut words = message.as_text()?.split(' ');
    let (verb, argument) = (words.next()?, words.next()?);
    if words.next().is_some() {
        return None;
    }
    match verb {
        // Python's `b'a' * n` is empty for a negative `n`.
        "receive" => {
            let size: i64 = argument.parse().ok()?;
            let size = usize::try_from(size.max(0)).ok()?;
            (size <= MAX_RECEIVE_BYTES).then_some(Command::Receive(size))
        }
        "send" => Some(Command::Send { verify: argument == "1" }),
        _ => None,
    }
}

/// The size reported back for a `send` payload, or `None` when verification fails.
fn checked_size(message: &Message, verify: bool) -> Option<usize> {
    match message {
        Message::Binary(data) if verify => data.iter().all(|&b| b == FILL).then_some(data.len()),
        Message::Binary(data) => Some(data.len()),
        Message::Text(text) if !verify => Some(text.chars().count()),
        // Text cannot be checked against the fill byte.
        _ => None,
    }
}

impl Handler for BenchmarkHelper {
    fn new(_config: &Config) -> Result<Self, Error> {
        Ok(BenchmarkHelper)
    }

    /// Accepts everyone, without extensions (no compression).
    fn do_handshake(&self, _request: &Request<'_>) -> Result<Accept, Reject> {
        Ok(Accept::new().decline_extensions())
    }

    async fn transfer_data(&self, mut conn: Connection) {
        // The last `receive` payload, reused while the size does not change.
        let mut payload = Vec::new();
        while let Some(message) = conn.recv().await {
            let sent = match parse(&message) {
                Some(Command::Receive(size)) => {
                    if payload.len() != size {
                        payload = vec![FILL; size];
                    }
                    conn.send_binary(&payload).await
                }
                Some(Command::Send { verify }) => {
                    let Some(data) = conn.recv().await else { return };
                    match checked_size(&data, verify) {
                        Some(size) => conn.send_text(&size.to_string()).await,
                        None => return conn.abort(),
                    }
                }
                None => return conn.abort(),
            };
            if sent.is_err() {
                return; // the client went away
            }
        }
    }
}

wshd_sdk::export_handler!(BenchmarkHelper);
