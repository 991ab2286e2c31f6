//! `/fanout` — the wshd side of `wshd-bench fanout` (a benchmark plugin, not a shipped
//! example). `?role=sub` joins the channel `bench` and reads (and ignores) what it is sent;
//! `?role=pub` publishes every message it receives to `bench` with the host's rooms
//! (`publish_text` / `publish_binary`, matching the message's type: the frame is built once
//! and queued to every member). The publisher gets nothing back.

use wshd_sdk::{Config, Connection, Error, Handler};

/// The channel every subscriber joins.
const CHANNEL: &str = "bench";

/// The fan-out handler. It keeps no state: the host owns the channel.
pub struct Fanout;

/// The value of `role=` in the query string, if any.
fn role(query: Option<&str>) -> Option<&str> {
    query?.split('&').find_map(|pair| pair.strip_prefix("role="))
}

impl Handler for Fanout {
    fn new(_config: &Config) -> Result<Self, Error> {
        Ok(Fanout)
    }

    async fn transfer_data(&self, mut conn: Connection) {
        let role = role(conn.info().query()).map(str::to_owned);
        match role.as_deref() {
            Some("sub") => {
                if conn.join(CHANNEL, b"").is_err() {
                    return;
                }
                // Stay until the client goes; room messages reach it without handler code.
                while conn.recv().await.is_some() {}
            }
            Some("pub") => {
                let rooms = conn.rooms();
                while let Some(message) = conn.recv().await {
                    let published = match message.as_text() {
                        Some(text) => rooms.publish_text(CHANNEL, text),
                        None => rooms.publish_binary(CHANNEL, message.as_bytes()),
                    };
                    if published.is_err() {
                        return;
                    }
                }
            }
            // Neither: close (1000) at once.
            _ => {}
        }
    }
}

wshd_sdk::export_handler!(Fanout);
