//! `/chat` — a chat app on the host's rooms, with the page `handlers/htdocs/chat.html`.
//!
//! ## Wire contract
//!
//! Join with `ws://host/chat?room=R&nick=N` (`room` defaults to `lobby`; see [`params`] for
//! the rules: nick 1–32 and room 1–64 characters of `A-Z a-z 0-9 _ -`; anything else, a
//! missing nick included, is refused with `400` and the reason as the body).
//!
//! Every text message a client sends is said to its room. The server sends JSON text
//! messages ([`wire`]):
//!
//! * `{"type":"join","nick":N,"online":[…]}` to every member, the joiner included, when
//!   someone joins;
//! * `{"type":"leave","nick":N,"online":[…]}` to the members who remain when someone
//!   leaves;
//! * `{"type":"gone","nick":N}` to the members who remain when N's connection went without
//!   leaving: its worker process or node died (the member's will, queued by the host; see
//!   `Connection::join_with_will`). It has no `online`: remove N from the list (a second
//!   connection with the same nick shows again with the next join or leave);
//! * `{"type":"message","nick":N,"text":T,"id":ID}` to every member, the sender included,
//!   for each message said; `ID` is opaque (`<connection id>-<counter>`).
//!
//! `online` is the room's nicks, deduplicated and sorted, as the server knows them when the
//! event is sent. With several worker processes (the default) members are relayed between
//! them in a fraction of a millisecond: someone who joined in that same instant through
//! another worker may be missing from it and appears in the next event, and events of the
//! instant of a client's join (another member's join or leave) may reach it just before its
//! own `join` or `recovered`.
//!
//! Joining with `&since=ID` (the id of the last message the client saw) first replays the
//! messages said in the room after `ID`, in order, then sends `{"type":"recovered","ok":true}`;
//! when the room's history no longer holds `ID` (too old, pushed out, never said, or the
//! server restarted) nothing is replayed and the client gets `{"type":"recovered","ok":false}`
//! — never a silent gap. The history is the host's (`join_since` and
//! `publish_text_with_id`, bounded by the route's `[route.rooms] history_messages` and
//! `history_secs`: 100 messages and 300 s by default), so it survives a hot reload of this
//! plugin. Join and leave events are not in it.
//!
//! ## Decisions
//!
//! * **Binary messages** close the connection with 1003 "text messages only".
//! * **Text over 4,096 bytes** (UTF-8) closes with 1009 "text over 4096 bytes", checked here
//!   so that it holds under any configuration; an operator can also stop such messages
//!   before they are buffered with `max_message_bytes = 4096` on a `[[route]]` for `/chat`.
//! * **Duplicate nicks** are allowed (two tabs of one person); `online` shows the nick once.
//! * **No origin check**: any page may connect (put a route-level check in front if needed).
//! * The handler keeps no state: the room, its members, their nicks (presence records) and
//!   the history are the host's, so a hot reload of this plugin splits nothing.

mod chat;
pub mod params;
pub mod wire;

pub use chat::Chat;

wshd_sdk::export_handler!(Chat);
