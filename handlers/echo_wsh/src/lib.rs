//! `/echo` — mod_pywebsocket's `echo_wsh.py`: every message comes back with its type;
//! after echoing the text `Goodbye` the handler returns, so the server closes with 1000.

use wshd_sdk::{Config, Connection, Error, Handler, Message};

/// The echo handler. It keeps no state.
pub struct Echo;

/// The text that ends the conversation, as in mod_pywebsocket.
const GOODBYE: &str = "Goodbye";

impl Handler for Echo {
    fn new(_config: &Config) -> Result<Self, Error> {
        Ok(Echo)
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

wshd_sdk::export_handler!(Echo);
