//! The JSON messages the server sends (serialized with `serde_json`, never by hand):
//!
//! ```text
//! {"type":"join","nick":N,"online":[sorted nicks]}
//! {"type":"leave","nick":N,"online":[sorted nicks]}
//! {"type":"gone","nick":N}
//! {"type":"message","nick":N,"text":T,"id":ID}
//! {"type":"recovered","ok":true|false}
//! ```

use std::collections::BTreeSet;

use serde::Serialize;
use wshd_sdk::{ConnId, Member};

/// One server message.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum Event<'a> {
    /// `nick` joined; `online` is everyone in the room now.
    Join {
        /// Who joined.
        nick: &'a str,
        /// The nicks in the room, deduplicated and sorted.
        online: Vec<String>,
    },
    /// `nick` left; `online` is everyone still in the room.
    Leave {
        /// Who left.
        nick: &'a str,
        /// The nicks in the room, deduplicated and sorted.
        online: Vec<String>,
    },
    /// `nick` said `text`.
    Message {
        /// Who said it.
        nick: &'a str,
        /// What was said.
        text: &'a str,
        /// Opaque id (`<connection id>-<counter>`), for `&since=` after a reconnect.
        id: &'a str,
    },
    /// `nick`'s connection went without leaving (its server process or node died): the
    /// member's will, said by the host, so without `online` (remove `nick` from the list).
    Gone {
        /// Who went.
        nick: &'a str,
    },
    /// After a `since` replay: whether the history covered the id (false: messages were
    /// missed).
    Recovered {
        /// Whether every message after `since` was replayed.
        ok: bool,
    },
}

impl Event<'_> {
    /// The message as JSON text.
    pub(crate) fn to_json(&self) -> String {
        // Serializing strings, booleans and lists of strings cannot fail; should it ever,
        // an empty object is still valid JSON for the client.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// The nicks of a room's members (presence records) but the connection `except`,
/// deduplicated and sorted: two connections with the same nick show once.
pub(crate) fn online(members: &[Member], except: Option<ConnId>) -> Vec<String> {
    let nicks: BTreeSet<String> = members
        .iter()
        .filter(|m| Some(m.id) != except)
        .map(|m| String::from_utf8_lossy(&m.presence).into_owned())
        .collect();
    nicks.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_serialize_to_the_wire_contract() {
        let join = Event::Join { nick: "bob", online: vec!["alice".into(), "bob".into()] };
        assert_eq!(join.to_json(), r#"{"type":"join","nick":"bob","online":["alice","bob"]}"#);
        let said = Event::Message { nick: "a", text: "\"<b>\"\n\u{1}é", id: "x-1-2" };
        assert_eq!(said.to_json(), r#"{"type":"message","nick":"a","text":"\"<b>\"\n\u0001é","id":"x-1-2"}"#);
        assert_eq!(Event::Recovered { ok: false }.to_json(), r#"{"type":"recovered","ok":false}"#);
        assert_eq!(Event::Gone { nick: "a" }.to_json(), r#"{"type":"gone","nick":"a"}"#);
        let leave = Event::Leave { nick: "a", online: vec![] };
        assert_eq!(leave.to_json(), r#"{"type":"leave","nick":"a","online":[]}"#);
    }
}
