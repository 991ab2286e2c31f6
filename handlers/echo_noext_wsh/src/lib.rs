//! `/echo_noext` — mod_pywebsocket's `echo_noext_wsh.py`: the `/echo` handler, except that the
//! handshake declines every extension the client offers (so permessage-deflate is never
//! negotiated and every frame travels uncompressed).
//!
//! Every message comes back with its type; after echoing the text `Goodbye` the handler
//! returns, so the server closes with 1000.

use wshd_sdk::{Accept, Config, Connection, Error, Handler, Message, Reject, Request};

/// The echo handler without extensions. It keeps no state.
pub struct EchoNoExt;

/// The text that ends the conversation, as in mod_pywebsocket.
const GOODBYE: &str = "Goodbye";

impl Handler for EchoNoExt {
    fn new(_config: &Config) -> Result<Self, Error> {
        Ok(EchoNoExt)
    }

    /// Accepts everyone, but without extensions (`request.ws_extension_processors = []`).
    fn do_handshake(&self, _request: &Request<'_>) -> Result<Accept, Reject> {
        Ok(Accept::new().decline_extensions())
    }

    async fn transfer_data(&self, mut conn: Connection) {
        while let Some(message) = conn.recv().await {
            if conn.send(&message).await.is_err() {
                return;
            }
            if matches!(&message, Message::Text(text) if &**text == GOODBYE) {
                return;
            }
        }
    }
}

wshd_sdk::export_handler!(EchoNoExt);
