//! `/close` — mod_pywebsocket's `close_wsh.py`: the client tells the server how to close.
//!
//! Each text message `"<code> <reason>"` (split at the first space) makes the server start
//! the closing handshake with that code and reason: `3333 sunsunsunsun` closes with
//! 3333 `sunsunsunsun`, `1000 ` with 1000 and an empty reason.
//!
//! * A code the protocol does not allow on the wire (999 and 5000 are no [`CloseCode`];
//!   1005, 1006, 1015, or a reason over 123 bytes are refused by [`Connection::close`] with
//!   [`SendError::Invalid`]): the handler then closes with 1011 (internal error), as
//!   pywebsocket does when `close_connection` raises `BadOperationException`.
//! * A text without a space, a code that is not an integer, or a binary message is a broken
//!   command: pywebsocket's handler raises and its connection is dropped without a close
//!   frame, so this one calls [`Connection::abort`].
//! * When the client closes first, the host has already answered with the client's own code
//!   and reason (pywebsocket's handler echoes them in its passive-close hook):
//!   [`Connection::recv`] gives `None` and the handler just returns.

use wshd_sdk::{CloseCode, Config, Connection, Error, Handler, Message, SendError};

/// The close handler. It keeps no state.
pub struct Close;

/// What a client message asks for.
enum Command<'a> {
    /// Close with this code (maybe out of range for a close code) and reason.
    Close { code: i64, reason: &'a str },
    /// Not a `"<code> <reason>"` text.
    Malformed,
}

fn parse(message: &Message) -> Command<'_> {
    let Some((code, reason)) = message.as_text().and_then(|text| text.split_once(' ')) else {
        return Command::Malformed;
    };
    match code.parse() {
        Ok(code) => Command::Close { code, reason },
        Err(_) => Command::Malformed,
    }
}

impl Handler for Close {
    fn new(_config: &Config) -> Result<Self, Error> {
        Ok(Close)
    }

    async fn transfer_data(&self, mut conn: Connection) {
        // `None`: the client closed and the host already echoed its close.
        let Some(message) = conn.recv().await else { return };
        let (code, reason) = match parse(&message) {
            Command::Close { code, reason } => (code, reason.to_owned()),
            Command::Malformed => return conn.abort(),
        };
        // A number that is no close code at all (5000, or one that does not fit in 16 bits)
        // is as invalid as one that may not be sent (1005).
        let code = u16::try_from(code).ok().and_then(CloseCode::new);
        let result = match code {
            Some(code) => conn.close(code, &reason).await,
            None => Err(SendError::Invalid),
        };
        if result == Err(SendError::Invalid) {
            let _ = conn.close(CloseCode::INTERNAL_ERROR, "").await;
        }
        // Either way the connection is now closed (or the client closed it first): done.
    }
}

wshd_sdk::export_handler!(Close);
