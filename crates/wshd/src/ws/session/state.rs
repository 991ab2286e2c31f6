//! [`ConnState`]: what the connection's lock guards: the socket, the connection's phase, the
//! inbound queue, the wakers and the upkeep. Here frames read become queued messages, and the
//! phase's transitions (`phase`) get their effects: close frames queued, the socket dropped,
//! waiters woken.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;
use wshd_sdk::CloseCode;

use super::mailbox::Mailbox;
use super::phase::Lifecycle;
use super::upkeep::{self, Upkeep};
use super::{Inbound, SessionSettings, in_driver};
use crate::ws::transport::{Encoder, Event, ReadStatus, WsStream};

/// Messages (and pong notifications) waiting for the handler, and their payload bytes.
#[derive(Debug, Default)]
pub(super) struct InboundQueue {
    items: VecDeque<Inbound>,
    bytes: usize,
}

impl InboundQueue {
    /// Whether nothing waits.
    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether another message may be read in: always when empty (one message is always
    /// taken), else while under `limit` bytes.
    pub(super) fn has_room(&self, limit: usize) -> bool {
        self.items.is_empty() || self.bytes < limit
    }

    fn push(&mut self, item: Inbound) {
        self.bytes += item.queued_len();
        self.items.push_back(item);
    }

    /// The oldest item.
    pub(super) fn pop(&mut self) -> Option<Inbound> {
        let item = self.items.pop_front()?;
        self.bytes -= item.queued_len();
        Some(item)
    }
}

/// The connection state behind the session's lock.
pub(super) struct ConnState {
    /// The socket, its decoder and write queue; `None` once TCP is closed (exactly when the
    /// phase is `Closed` or `Aborted`).
    pub(super) io: Option<WsStream>,
    /// The connection's phase and close bookkeeping.
    pub(super) lifecycle: Lifecycle,
    pub(super) inbound: InboundQueue,
    /// A task other than the driver waiting in `poll_recv`/`poll_closed`.
    recv_waker: Option<Waker>,
    /// The driver task's waker, used for socket I/O the handler does from within the driver.
    driver_waker: Option<Waker>,
    /// Pongs are queued for the handler.
    pub(super) notify_pongs: bool,
    /// The time, read at most once per driver poll (see [`poll_time`](super::poll_time)).
    pub(super) poll_now: Option<Instant>,
    /// Timers' state and accounting (see `upkeep`).
    pub(super) upkeep: Upkeep,
    /// The mailbox of room messages and what owns the connection's memberships; `None`
    /// until something asks for them (most connections).
    pub(super) room: Option<RoomSlot>,
}

/// A connection's mailbox, and the object (from `rooms`, type-erased here) whose drop ends
/// its memberships when the session ends.
pub(super) struct RoomSlot {
    pub(super) mailbox: Arc<Mailbox>,
    pub(super) member: Arc<dyn Any + Send + Sync>,
}

impl ConnState {
    /// The state of a connection whose handshake is done.
    pub(super) fn new(io: WsStream, settings: &SessionSettings) -> ConnState {
        ConnState {
            io: Some(io),
            lifecycle: Lifecycle::new(),
            inbound: InboundQueue::default(),
            recv_waker: None,
            driver_waker: None,
            notify_pongs: false,
            poll_now: None,
            upkeep: Upkeep::new(settings),
            room: None,
        }
    }

    /// A driver poll starts: the clock is unread, and the driver's waker is `waker`.
    pub(super) fn start_poll(&mut self, waker: &Waker) {
        self.poll_now = None;
        if !self.driver_waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.driver_waker = Some(waker.clone());
        }
    }

    /// Whether `poll_recv` would return something now.
    pub(super) fn recv_may_be_ready(&self) -> bool {
        !self.inbound.is_empty() || self.lifecycle.status().is_some() || !self.lifecycle.is_reading()
    }

    /// Keeps `waker` for `wake_receiver` (a clone only when it would wake another task).
    pub(super) fn remember_receiver(&mut self, waker: &Waker) {
        if !self.recv_waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.recv_waker = Some(waker.clone());
        }
    }

    /// Wakes the driver, unless a driver is running on this thread (it polls again anyway).
    pub(super) fn wake_driver(&self) {
        if !in_driver()
            && let Some(w) = &self.driver_waker
        {
            w.wake_by_ref();
        }
    }

    /// The driver task's waker, once it has polled.
    pub(super) fn driver_waker(&self) -> Option<&Waker> {
        self.driver_waker.as_ref()
    }

    /// Wakes the driver even from within its own poll (it then polls once more).
    pub(super) fn wake_driver_task(&self) {
        if let Some(w) = &self.driver_waker {
            w.wake_by_ref();
        }
    }

    /// Wakes a handler waiting in `poll_recv`/`poll_closed`. Only the driver calls this, and
    /// it polls the handler right after: a handler waiting with the driver's own waker needs
    /// no wake-up (waking the running task would only make tokio poll it once more for
    /// nothing).
    pub(super) fn wake_receiver(&mut self) {
        if let (Some(receiver), Some(driver)) = (&self.recv_waker, &self.driver_waker)
            && receiver.will_wake(driver)
        {
            return;
        }
        if let Some(w) = self.recv_waker.take() {
            w.wake();
        }
    }

    /// Reads from the socket while the phase reads and the queue has room. When `deliver`
    /// is false (the handler has finished) data messages are discarded.
    pub(super) fn read_step(
        &mut self,
        cx: &mut Context<'_>,
        deliver: bool,
        limit: usize,
        close_timeout: Duration,
    ) {
        let mut changed = false;
        while self.lifecycle.is_reading() && (!deliver || self.inbound.has_room(limit)) {
            let ConnState { io, lifecycle, inbound, notify_pongs, upkeep, .. } = self;
            let Some(io) = io.as_mut() else { break };
            let mut reader =
                Reader { lifecycle, inbound, upkeep, deliver, notify_pongs: *notify_pongs, close_timeout };
            match io.poll_read(cx, |encoder, event| reader.on_event(encoder, event)) {
                Poll::Pending => break,
                Poll::Ready(ReadStatus::Data) => changed = true,
                Poll::Ready(ReadStatus::Ended) => {
                    self.lifecycle.read_ended();
                    changed = true;
                }
            }
        }
        if changed {
            self.wake_receiver();
        }
    }

    /// Our close (the handler's, or the one its return means): queued once, while TCP is
    /// open; the peer then has `timeout` to answer.
    pub(super) fn begin_close(&mut self, code: CloseCode, reason: &[u8], timeout: Duration) {
        if self.lifecycle.begin_close(code, || Instant::now() + timeout)
            && let Some(io) = self.io.as_mut()
        {
            io.encoder().queue_close(Some(code), reason);
        }
    }

    /// A close the server decided on (`reason` is also the close reason).
    pub(super) fn server_close(&mut self, code: CloseCode, reason: &'static str, settings: &SessionSettings) {
        if !self.lifecycle.server_close(reason) {
            return;
        }
        tracing::debug!(code = code.as_u16(), reason, "closing the connection");
        self.begin_close(code, reason.as_bytes(), settings.close_timeout);
    }

    /// Sends a pending failure's close once the messages before it were consumed (or the
    /// handler is gone), and gives the peer `timeout` to answer it.
    pub(super) fn send_due_failure_close(&mut self, handler_done: bool, timeout: Duration) {
        let due = self
            .lifecycle
            .failure_close_due(self.inbound.is_empty(), handler_done, || Instant::now() + timeout);
        if let Some(failure) = due
            && let Some(io) = self.io.as_mut()
        {
            io.encoder().queue_close(Some(failure.code), failure.reason.as_bytes());
        }
    }

    /// Writes out what is queued (pongs, close frames, the handler's frames); `true` when all
    /// of it is written, or can never be (the peer is gone: nothing more is read either).
    pub(super) fn flush(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(io) = self.io.as_mut() else { return true };
        match io.poll_flush(cx) {
            Poll::Ready(Ok(())) => true,
            Poll::Ready(Err(_)) => {
                self.lifecycle.read_ended();
                true
            }
            Poll::Pending => false,
        }
    }

    /// Closes TCP once the closing handshake is over and everything is `written`; whether
    /// TCP is closed.
    pub(super) fn finish_if_written(&mut self, written: bool) -> bool {
        let closed = self.lifecycle.finish_if_written(written);
        if closed {
            self.close_tcp();
        }
        closed
    }

    /// The peer did not complete the closing handshake in time: TCP is closed.
    pub(super) fn close_timed_out(&mut self) {
        tracing::debug!("closing handshake timed out");
        self.lifecycle.close_timed_out();
        self.close_tcp();
    }

    /// The peer sent nothing after a keepalive ping: a best-effort close 1011, then TCP is
    /// dropped.
    pub(super) fn drop_dead_peer(&mut self, cx: &mut Context<'_>) {
        tracing::debug!("no answer to the keepalive ping; dropping the connection");
        if let Some(io) = self.io.as_mut() {
            io.encoder().queue_close(Some(CloseCode::INTERNAL_ERROR), b"pong timeout");
            let _ = io.poll_flush(cx);
        }
        self.lifecycle.peer_dead();
        self.close_tcp();
    }

    /// The handler drops TCP without a close frame.
    pub(super) fn abort(&mut self) {
        self.lifecycle.abort();
        self.io = None;
        self.wake_driver();
    }

    /// The session is over: TCP is closed, even if a `Sender` handle outlives the session;
    /// the mailbox refuses further frames and the memberships end (their owner is dropped).
    pub(super) fn end(&mut self) {
        self.lifecycle.end();
        self.close_tcp();
        if let Some(slot) = self.room.take() {
            slot.mailbox.close();
        }
    }

    /// Drops the socket (the phase says TCP is closed) and tells a waiting handler.
    fn close_tcp(&mut self) {
        debug_assert!(self.lifecycle.is_tcp_closed());
        self.io = None;
        self.wake_receiver();
    }
}

/// What the read step needs while the socket's events come in.
struct Reader<'a> {
    lifecycle: &'a mut Lifecycle,
    inbound: &'a mut InboundQueue,
    upkeep: &'a mut Upkeep,
    /// Data messages go to the handler (it has not returned).
    deliver: bool,
    notify_pongs: bool,
    close_timeout: Duration,
}

impl Reader<'_> {
    /// Handles one event from the socket; `encoder` is the connection's write queue.
    fn on_event(&mut self, encoder: &mut Encoder, event: Event) {
        let item = match event {
            Event::Text(b) if self.deliver => Inbound::Text(b),
            Event::Binary(b) if self.deliver => Inbound::Binary(b),
            Event::Pong(b) if self.deliver && self.notify_pongs && b != upkeep::KEEPALIVE => Inbound::Pong(b),
            Event::Ping(payload) => {
                if self.lifecycle.may_send() {
                    encoder.queue_pong(payload);
                }
                return;
            }
            Event::Close(code, reason) => {
                if let Some(answer) = self.lifecycle.peer_closed(code, reason) {
                    encoder.queue_close(answer.code, &answer.reason);
                }
                return;
            }
            Event::Failure(failure) => {
                // Decoding goes on only to find the peer's answer to our close.
                tracing::debug!(code = failure.code.as_u16(), reason = failure.reason, "protocol failure");
                let timeout = self.close_timeout;
                self.lifecycle.failed(failure, || Instant::now() + timeout);
                return;
            }
            Event::Text(_) | Event::Binary(_) | Event::Pong(_) => return,
        };
        if let Inbound::Text(b) | Inbound::Binary(b) = &item {
            self.upkeep.message_in(b.len());
        }
        self.upkeep.queued();
        self.inbound.push(item);
    }
}
