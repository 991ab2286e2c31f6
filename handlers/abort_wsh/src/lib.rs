//! `/abort` — mod_pywebsocket's `abort_wsh.py`: accepts the handshake, then drops the TCP
//! connection at once without a close frame (pywebsocket raises `AbortedByUserException`).
//! A client sees the `101` response followed by end of stream (close code 1006).

use wshd_sdk::{Config, Connection, Error, Handler};

/// The abort handler.
pub struct Abort;

impl Handler for Abort {
    fn new(_config: &Config) -> Result<Self, Error> {
        Ok(Abort)
    }

    async fn transfer_data(&self, conn: Connection) {
        conn.abort();
    }
}

wshd_sdk::export_handler!(Abort);
