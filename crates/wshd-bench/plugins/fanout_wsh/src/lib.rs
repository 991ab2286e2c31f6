//! `/fanout` — the wshd side of `wshd-bench fanout` (a benchmark plugin, not a shipped
//! example). `?role=sub` joins the channel `bench` and reads (and ignores) what it is sent;
//! `?role=pub` publishes every message it receives to `bench` with the host's rooms
//! (`publish_text` / `publish_binary`, matching the message's type: the frame is built once
//! and queued to every member). The publisher gets nothing back. `?role=pub&logged=1`
//! publishes with an id instead (`publish_text_with_id` / `publish_binary_with_id`, ids
//! 1, 2, 3…): each message goes to the channel's history too (with a broker: a Redis
//! stream, appended and published by one script), as `join_since` needs.

use wshd_sdk::{Config, Connection, Error, Handler};

/// The channel every subscriber joins.
const CHANNEL: &str = "bench";

/// The fan-out handler. It keeps no state: the host owns the channel.
pub struct Fanout;

/// The value of `key=` in the query string, if any.
fn param<'q>(query: Option<&'q str>, key: &str) -> Option<&'q str> {
    query?.split('&').find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
}

impl Handler for Fanout {
    fn new(_config: &Config) -> Result<Self, Error> {
        Ok(Fanout)
    }

    async fn transfer_data(&self, mut conn: Connection) {
        let role = param(conn.info().query(), "role").map(str::to_owned);
        let logged = param(conn.info().query(), "logged") == Some("1");
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
                let mut id = 0u64;
                while let Some(message) = conn.recv().await {
                    id += 1;
                    let published = match (message.as_text(), logged) {
                        (Some(text), false) => rooms.publish_text(CHANNEL, text),
                        (None, false) => rooms.publish_binary(CHANNEL, message.as_bytes()),
                        (Some(text), true) => rooms.publish_text_with_id(CHANNEL, &id.to_string(), text),
                        (None, true) => {
                            rooms.publish_binary_with_id(CHANNEL, &id.to_string(), message.as_bytes())
                        }
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
