//! `/abort_handshake` — mod_pywebsocket's `abort_handshake_wsh.py`: the handshake hook aborts
//! (`AbortedByUserException`), so the client gets no HTTP response at all: the TCP connection
//! is closed. The data phase is never reached.

use wshd_sdk::{Accept, Config, Connection, Error, Handler, Reject, Request};

/// The abort-in-handshake handler.
pub struct AbortHandshake;

impl Handler for AbortHandshake {
    fn new(_config: &Config) -> Result<Self, Error> {
        Ok(AbortHandshake)
    }

    fn do_handshake(&self, _request: &Request<'_>) -> Result<Accept, Reject> {
        Err(Reject::abort())
    }

    /// Never called: every handshake is aborted.
    async fn transfer_data(&self, _conn: Connection) {}
}

wshd_sdk::export_handler!(AbortHandshake);
