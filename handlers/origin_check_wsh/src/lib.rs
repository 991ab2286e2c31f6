//! `/origin_check` — mod_pywebsocket's `origin_check_wsh.py`: only pages served from
//! `http://example.com` may connect.
//!
//! The handshake hook accepts exactly `Origin: http://example.com` (no other scheme, port or
//! trailing slash); any other origin, or none, is refused with `403 Forbidden`.
//!
//! In the data phase, the handler sends the text
//! `origin_check_wsh is called for <resource>, <protocol>` (the resource as the client asked
//! for it, query included, like pywebsocket's `ws_resource`; the protocol is `None` when no
//! subprotocol was chosen) and returns, so the server closes with 1000.
//!
//! **Deliberate difference:** pywebsocket's handler writes that text straight to the socket
//! (`request.connection.write(str)`), not as a WebSocket frame. On Python 2 the client
//! received raw non-frame bytes (a protocol error); on Python 3 writing a `str` to the byte
//! socket raises `TypeError` and the connection is dropped. Neither is useful to copy, so the
//! text is sent as an ordinary text message.

use wshd_sdk::{Accept, Config, Connection, Error, Handler, Reject, Request};

/// The origin-checking handler.
pub struct OriginCheck;

/// The only origin allowed to connect.
const ALLOWED_ORIGIN: &str = "http://example.com";

impl Handler for OriginCheck {
    fn new(_config: &Config) -> Result<Self, Error> {
        Ok(OriginCheck)
    }

    fn do_handshake(&self, request: &Request<'_>) -> Result<Accept, Reject> {
        if request.origin() == Some(ALLOWED_ORIGIN) { Ok(Accept::new()) } else { Err(Reject::forbidden()) }
    }

    async fn transfer_data(&self, mut conn: Connection) {
        let info = conn.info();
        let resource = match info.query() {
            Some(query) => format!("{}?{query}", info.path()),
            None => info.path().to_owned(),
        };
        let text =
            format!("origin_check_wsh is called for {resource}, {}", info.protocol().unwrap_or("None"));
        let _ = conn.send_text(&text).await;
    }
}

wshd_sdk::export_handler!(OriginCheck);
