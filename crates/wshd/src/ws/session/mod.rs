//! One WebSocket connection: the socket, the handler's `transfer_data` future, and the
//! closing handshake, all driven by one task.
//!
//! The [`Driver`] future polls, in turn, the socket's read side (into a bounded inbound queue)
//! and the handler's future (a plugin's through the FFI boundary, or a built-in handler's),
//! which receives from that queue and sends through [`ConnShared`].
//! Everything normally happens in this one task: no channels, no cross-task hops. A
//! [`Sender`](wshd_sdk::Sender) the handler moved to another task uses the same object
//! through its mutex.
//!
//! When the queue is full the driver stops reading, so TCP flow control pushes back on the
//! client. A protocol failure is queued behind the messages that arrived before it, so the
//! handler still sees (and may answer) them before the connection is closed with the
//! failure's code. Once the handler returns (or panics) the driver closes with 1000 (or 1011)
//! and waits for the peer's close, at most `close_timeout`.
//!
//! The modules: `shared` (the handler's operations on the connection), `state` (what the
//! connection's lock guards, and how frames read become queued messages), `phase` (the
//! connection's phase: the closing handshake's one state machine), `driver` (the task),
//! `upkeep` (timers and accounting), and `mailbox` (frames built elsewhere, room messages,
//! waiting for the write queue).

mod driver;
mod mailbox;
mod phase;
mod shared;
mod state;
mod upkeep;

#[cfg(test)]
mod tests;

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use wshd_sdk::CloseCode;

use super::transport::{SharedDeflate, Wire};
use crate::config::{RoomSettings, WsSettings};
use crate::metrics::RouteMetrics;

pub(crate) use self::driver::{Driver, HandlerExit, HandlerFuture, SessionEnd};
pub(crate) use self::mailbox::{Mailbox, MailboxLimits, Overflow, Pushed};
pub(crate) use self::shared::ConnShared;

/// What the handler receives.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A text message (UTF-8 validated by the codec).
    Text(Vec<u8>),
    /// A binary message.
    Binary(Vec<u8>),
    /// A pong (only with notifications on).
    Pong(Bytes),
    /// The connection is closed: the peer's code and reason, or ours after a failure
    /// (1006 when there was no close frame).
    Closed(CloseCode, Bytes),
}

impl Inbound {
    /// The payload bytes it holds against the inbound queue's limit (a close holds none).
    fn queued_len(&self) -> usize {
        match self {
            Inbound::Text(b) | Inbound::Binary(b) => b.len(),
            Inbound::Pong(b) => b.len(),
            Inbound::Closed(..) => 0,
        }
    }
}

/// Why an operation on the connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpError {
    /// Closed or closing.
    Closed,
    /// Bad argument.
    Invalid,
}

/// Something that keeps a handler's code loaded (the session holds it without knowing what
/// it is: for a plugin, its library).
pub(crate) type KeepAlive = Arc<dyn std::any::Any + Send + Sync>;

/// Settings a session needs.
#[derive(Debug, Clone)]
pub(crate) struct SessionSettings {
    /// How long to wait for the peer's close frame.
    pub(crate) close_timeout: Duration,
    /// Inbound queue limit in bytes (at least one message is always queued).
    pub(crate) inbound_queue_bytes: usize,
    /// No message either way for this long: close 1001 "idle".
    pub(crate) idle_timeout: Option<Duration>,
    /// Keepalive ping interval.
    pub(crate) ping_interval: Option<Duration>,
    /// Silence after a keepalive ping that drops the connection.
    pub(crate) pong_timeout: Duration,
    /// Outgoing backlog that closes a slow reader (1008).
    pub(crate) max_send_queue_bytes: usize,
    /// Time without write progress that closes a slow reader (1008).
    pub(crate) send_timeout: Option<Duration>,
    /// A message in progress must advance by `message_min_bytes` in each window this long
    /// (1008 "message too slow").
    pub(crate) message_timeout: Option<Duration>,
    /// See `message_timeout`.
    pub(crate) message_min_bytes: u64,
    /// The route's counters.
    pub(crate) metrics: Option<Arc<RouteMetrics>>,
    /// The socket's byte counts.
    pub(crate) wire: Option<Arc<Wire>>,
    /// The route's rooms settings (namespace, mailbox policy, history bounds).
    pub(crate) rooms: RoomSettings,
    /// Room messages reach this connection compressed with these parameters (built once
    /// per publish for every member that has them); `None`: uncompressed.
    pub(crate) room_deflate: Option<SharedDeflate>,
}

impl SessionSettings {
    /// A route's settings, with its counters and the socket's byte counts.
    pub(crate) fn for_route(
        route: &WsSettings,
        metrics: Arc<RouteMetrics>,
        wire: Arc<Wire>,
    ) -> SessionSettings {
        SessionSettings {
            close_timeout: route.close_timeout,
            inbound_queue_bytes: route.inbound_queue_bytes,
            idle_timeout: route.idle_timeout,
            ping_interval: route.ping_interval,
            pong_timeout: route.pong_timeout,
            max_send_queue_bytes: route.max_send_queue_bytes,
            send_timeout: route.send_timeout,
            message_timeout: route.message_timeout,
            message_min_bytes: route.message_min_bytes as u64,
            metrics: Some(metrics),
            wire: Some(wire),
            rooms: route.rooms,
            room_deflate: None,
        }
    }
}

thread_local! {
    /// The session whose driver is polling the handler on this thread right now.
    static CURRENT: Cell<*const ConnShared> = const { Cell::new(std::ptr::null()) };
    /// That driver's waker (kept between polls; replaced only when it would not wake the
    /// same task), so the handler's socket I/O registers the driver's own waker.
    static DRIVER_WAKER: RefCell<Option<Waker>> = const { RefCell::new(None) };
}

/// Records the driving task's waker for [`ConnShared::with_task_context`].
fn remember_driver_waker(waker: &Waker) {
    DRIVER_WAKER.with(|slot| {
        let mut slot = slot.borrow_mut();
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    });
}

/// Whether some session's driver is polling its handler on this thread right now.
fn in_driver() -> bool {
    CURRENT.with(|c| !c.get().is_null())
}

/// The current time, read from the clock at most once per driver poll (`poll_now` is reset
/// when a poll starts) and only when something needs it: the arrival stamps of messages still
/// queued when the poll ends, their delivery latency, and the timers share it.
fn poll_time(poll_now: &mut Option<Instant>) -> Instant {
    *poll_now.get_or_insert_with(Instant::now)
}
