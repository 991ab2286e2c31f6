//! The handler: validates the query in `do_handshake`, then seats the connection in its room
//! (the host's channel), says each of its text messages to the room and announces its leave.

use wshd_sdk::{
    Accept, CloseCode, Config, ConnId, Connection, Error, Handler, Reject, Request, RoomError, Rooms, Will,
};

use crate::params::{self, JoinParams, Refusal};
use crate::wire::{self, Event};

/// The longest text message a client may say, in bytes (UTF-8); longer closes with 1009.
pub(crate) const MAX_TEXT_BYTES: usize = 4096;

/// The chat handler (it keeps no state: rooms, presence and history are the host's).
pub struct Chat;

impl Handler for Chat {
    fn new(_config: &Config) -> Result<Self, Error> {
        Ok(Chat)
    }

    fn do_handshake(&self, request: &Request<'_>) -> Result<Accept, Reject> {
        match params::parse(request.query()) {
            Ok(_) => Ok(Accept::new()),
            Err(Refusal(why)) => Err(Reject::status(400).body(why)),
        }
    }

    async fn transfer_data(&self, mut conn: Connection) {
        let Ok(params) = params::parse(conn.info().query()) else {
            // Checked in do_handshake already; the same query cannot fail here.
            let _ = conn.close(CloseCode::POLICY_VIOLATION, "bad query").await;
            return;
        };
        let mut seat = match Seat::take(&conn, params) {
            Ok(seat) => seat,
            Err(e) => {
                wshd_sdk::error!("chat: cannot join a room: {e}");
                let _ = conn.close(CloseCode::INTERNAL_ERROR, "rooms unavailable").await;
                return;
            }
        };
        let end = converse(&mut conn, &mut seat).await;
        seat.vacate(&conn);
        if let Some((code, reason)) = end {
            let _ = conn.close(code, reason).await;
        }
    }
}

/// Says every text message of the connection to its room, until the connection ends (`None`)
/// or the client breaks a rule (the close code and reason to send).
async fn converse(conn: &mut Connection, seat: &mut Seat) -> Option<(CloseCode, &'static str)> {
    while let Some(message) = conn.recv().await {
        match message.as_text() {
            None => return Some((CloseCode::UNSUPPORTED_DATA, "text messages only")),
            Some(text) if text.len() > MAX_TEXT_BYTES => {
                return Some((CloseCode::MESSAGE_TOO_BIG, "text over 4096 bytes"));
            }
            Some(text) => seat.say(text),
        }
    }
    None
}

/// A connection's place in its room.
struct Seat {
    params: JoinParams,
    id: ConnId,
    rooms: Rooms,
    /// Messages said so far (the counter in their ids).
    said: u64,
}

impl Seat {
    /// Joins the room and announces the join to every member, the joiner included. With
    /// `since`, the host first replays the messages of the room's history said after it, then
    /// this sends `recovered` (`ok: false` when the history no longer holds `since`).
    fn take(conn: &Connection, params: JoinParams) -> Result<Seat, RoomError> {
        let (id, rooms) = (conn.id()?, conn.rooms());
        let (room, nick) = (&params.room, params.nick.as_bytes());
        // Said by the host to the others if this connection goes without `vacate` (its
        // process or node died).
        let will = Event::Gone { nick: &params.nick }.to_json();
        let since = params.since.as_deref();
        // With `since`, the host queues the replay as it joins; a message queued to this
        // connection afterwards (send_text_to) arrives after it.
        let ok = conn.join_with_will(room, nick, since, Will::Text(&will))?;
        if since.is_some() {
            rooms.send_text_to(id, &Event::Recovered { ok }.to_json())?;
        }
        let seat = Seat { params, id, rooms, said: 0 };
        seat.announce(None, |nick, online| Event::Join { nick, online });
        Ok(seat)
    }

    /// Says `text` to the room under the next message id.
    fn say(&mut self, text: &str) {
        self.said += 1;
        let id = format!("{}-{}", self.id, self.said);
        let event = Event::Message { nick: &self.params.nick, text, id: &id };
        // With the id, into the room's history (the host's): `since` replays from it.
        if let Err(e) = self.rooms.publish_text_with_id(&self.params.room, &id, &event.to_json()) {
            wshd_sdk::debug!("chat: message {id} not published: {e}");
        }
    }

    /// Leaves the room and tells the members who remain.
    fn vacate(&self, conn: &Connection) {
        // Leaving (also after the peer's close) discards the will, so the room hears `leave`
        // and not also `gone`; the announcement leaves the connection out by id either way.
        if let Err(e) = conn.leave(&self.params.room) {
            wshd_sdk::debug!("chat: leave: {e}");
        }
        self.announce(Some(self.id), |nick, online| Event::Leave { nick, online });
    }

    /// Publishes the event `make(nick, online)` to the room, with the room's members now
    /// (but the connection `except`).
    fn announce(&self, except: Option<ConnId>, make: impl for<'n> Fn(&'n str, Vec<String>) -> Event<'n>) {
        let room = &self.params.room;
        let online =
            self.rooms.presence(room).map(|members| wire::online(&members, except)).unwrap_or_default();
        if let Err(e) = self.rooms.publish_text(room, &make(&self.params.nick, online).to_json()) {
            wshd_sdk::debug!("chat: announcement not published: {e}");
        }
    }
}
