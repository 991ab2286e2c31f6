//! `/hsts` — mod_pywebsocket's `hsts_wsh.py`: the `101` response carries
//! `Strict-Transport-Security: max-age=86400`; the handler then sends the text `Hello` and
//! returns, so the server closes with 1000.
//!
//! (Browsers only honour the header over TLS; over plain `ws://` it is just sent.)

use wshd_sdk::{Accept, Config, Connection, Error, Handler, Reject, Request};

/// The HSTS handler.
pub struct Hsts;

impl Handler for Hsts {
    fn new(_config: &Config) -> Result<Self, Error> {
        Ok(Hsts)
    }

    fn do_handshake(&self, _request: &Request<'_>) -> Result<Accept, Reject> {
        Ok(Accept::new().header("Strict-Transport-Security", "max-age=86400"))
    }

    async fn transfer_data(&self, mut conn: Connection) {
        let _ = conn.send_text("Hello").await;
    }
}

wshd_sdk::export_handler!(Hsts);
