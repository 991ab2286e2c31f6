//! [`ConnShared`]: the connection as its handler sees it. Every operation takes the
//! connection's lock for itself (none is held across a handler's poll: see
//! `docs/decisions/0006-hot-path-locking.md`).

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::time::Instant;
use wshd_sdk::CloseCode;

use super::mailbox::{Mailbox, MailboxLimits};
use super::state::{ConnState, RoomSlot};
use super::{CURRENT, DRIVER_WAKER, Inbound, KeepAlive, OpError, SessionSettings, poll_time};
use crate::config::RoomSettings;
use crate::ws::transport::{DataKind, WsStream};

/// Outgoing bytes queued before a sender has to wait for the socket.
pub(super) const SEND_HIGH_WATER: usize = 64 * 1024;

/// The longest close reason a close frame can carry (125 bytes of body less the code).
const MAX_CLOSE_REASON: usize = 123;

/// The connection state shared by the driver and the handler's handles.
pub(crate) struct ConnShared {
    state: Mutex<ConnState>,
    /// Whether `poll_recv` may be ready: refreshed by the driver before it polls the handler
    /// and by every locked `poll_recv`, so a handler polled by the driver finds an empty
    /// queue without taking the lock (see [`ConnShared::poll_recv`]).
    pub(super) recv_hint: AtomicBool,
    pub(super) settings: SessionSettings,
    /// Keeps the plugin's code loaded while this object (which may hold the plugin's wakers)
    /// lives; `None` for a built-in handler. Declared last.
    _keep_alive: Option<KeepAlive>,
}

impl ConnShared {
    /// `keep_alive`: what keeps the handler's code loaded (`None` for a built-in handler).
    pub(crate) fn new(
        stream: WsStream,
        settings: SessionSettings,
        keep_alive: Option<KeepAlive>,
    ) -> Arc<ConnShared> {
        Arc::new(ConnShared {
            state: Mutex::new(ConnState::new(stream, &settings)),
            recv_hint: AtomicBool::new(false),
            settings,
            _keep_alive: keep_alive,
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, ConnState> {
        // A panic while holding the lock cannot leave the state inconsistent in a way that
        // matters more than losing the connection; keep going.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` with the best task context: inside the driver, the driver's own waker (no
    /// FFI waker wrapping, and the driver re-polls the handler after every change anyway);
    /// elsewhere, the caller's context via `foreign`.
    pub(crate) fn with_task_context<R>(
        &self,
        foreign: impl FnOnce(&mut dyn FnMut(&mut Context<'_>) -> R) -> R,
        mut f: impl FnMut(&mut Context<'_>) -> R,
    ) -> R {
        if self.is_being_driven() {
            let done =
                DRIVER_WAKER.with(|w| w.borrow().as_ref().map(|waker| f(&mut Context::from_waker(waker))));
            if let Some(result) = done {
                return result;
            }
        }
        foreign(&mut f)
    }

    /// Whether this session's driver is polling the handler on this thread right now.
    pub(super) fn is_being_driven(&self) -> bool {
        CURRENT.with(|c| std::ptr::eq(c.get(), self))
    }

    /// Next inbound item, or `Pending`.
    ///
    /// Polled by the driver with nothing to receive (the usual case right after a reply) it
    /// returns `Pending` without the lock and without registering a waker: the driver polls
    /// the handler again after anything it queues, and nothing else queues inbound items.
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Inbound> {
        if !self.recv_hint.load(Ordering::Relaxed) && self.is_being_driven() {
            return Poll::Pending;
        }
        let mut st = self.lock();
        let polled = self.poll_recv_locked(&mut st, cx);
        self.recv_hint.store(st.recv_may_be_ready(), Ordering::Relaxed);
        polled
    }

    fn poll_recv_locked(&self, st: &mut ConnState, cx: &mut Context<'_>) -> Poll<Inbound> {
        if let Some(item) = st.inbound.pop() {
            // Inside the driver the poll's time is close enough (the item waited since an
            // earlier poll); a handler task elsewhere reads the clock.
            let driven = self.is_being_driven();
            let ConnState { upkeep, poll_now, .. } = st;
            upkeep.delivered(|| if driven { poll_time(poll_now) } else { Instant::now() });
            // The driver may have stopped reading on a full queue: let it read on.
            st.wake_driver();
            return Poll::Ready(item);
        }
        if let Some((code, reason)) = st.lifecycle.status() {
            return Poll::Ready(Inbound::Closed(*code, reason.clone()));
        }
        if !st.lifecycle.is_reading() {
            return Poll::Ready(Inbound::Closed(CloseCode::ABNORMAL, Bytes::new()));
        }
        st.remember_receiver(cx.waker());
        Poll::Pending
    }

    /// Ready when one more frame can be queued.
    pub(crate) fn poll_send_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), OpError>> {
        self.lock().poll_send_ready(cx)
    }

    /// Queues a data frame (copying `data`).
    pub(crate) fn start_send(&self, kind: DataKind, fin: bool, data: &[u8]) -> Result<(), OpError> {
        self.lock().start_send(&self.settings, kind, fin, data, None)
    }

    /// [`poll_send_ready`](Self::poll_send_ready), [`start_send`](Self::start_send) and
    /// [`poll_flush`](Self::poll_flush) under one lock: `Pending` when no frame can be queued
    /// yet (nothing was queued); else `true` when all that is queued is written, `false` when
    /// some still waits for `poll_flush`. A small reply with nothing queued before it is
    /// written straight from `data`, with `cx`.
    pub(crate) fn poll_send(
        &self,
        cx: &mut Context<'_>,
        kind: DataKind,
        fin: bool,
        data: &[u8],
    ) -> Poll<Result<bool, OpError>> {
        let mut st = self.lock();
        match st.poll_send_ready(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {}
        }
        if let Err(e) = st.start_send(&self.settings, kind, fin, data, Some(cx)) {
            return Poll::Ready(Err(e));
        }
        let Some(io) = st.io.as_mut() else { return Poll::Ready(Err(OpError::Closed)) };
        Poll::Ready(match io.poll_flush(cx) {
            Poll::Ready(Ok(())) => Ok(true),
            Poll::Ready(Err(_)) => Err(OpError::Closed),
            Poll::Pending => Ok(false),
        })
    }

    /// Queues a ping.
    pub(crate) fn start_ping(&self, data: &[u8]) -> Result<(), OpError> {
        let mut st = self.lock();
        if !st.lifecycle.may_send() {
            return Err(OpError::Closed);
        }
        let Some(io) = st.io.as_mut() else { return Err(OpError::Closed) };
        io.encoder().queue_ping(data).map_err(|_| OpError::Invalid)
    }

    /// Writes queued frames out.
    pub(crate) fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<Result<(), OpError>> {
        let mut st = self.lock();
        let Some(io) = st.io.as_mut() else { return Poll::Ready(Err(OpError::Closed)) };
        io.poll_flush(cx).map_err(|_| OpError::Closed)
    }

    /// Starts the closing handshake on the handler's request: `code` must be sendable and
    /// `reason` UTF-8 of at most 123 bytes.
    pub(crate) fn start_close(&self, code: CloseCode, reason: &[u8]) -> Result<(), OpError> {
        let reason = close_reason(code, reason)?;
        let mut st = self.lock();
        st.begin_close(code, reason.as_bytes(), self.settings.close_timeout);
        st.wake_driver();
        Ok(())
    }

    /// Ready when the closing handshake is over; yields the peer's close (1006 when none).
    pub(crate) fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<(CloseCode, Bytes)> {
        let mut st = self.lock();
        if !st.lifecycle.is_reading() {
            return Poll::Ready(
                st.lifecycle.status().cloned().unwrap_or((CloseCode::ABNORMAL, Bytes::new())),
            );
        }
        st.remember_receiver(cx.waker());
        Poll::Pending
    }

    /// Sets the answer to the peer's close: `code` and `reason` (as for
    /// [`start_close`](Self::start_close)), or with `None` the peer's code and reason echoed
    /// (the default).
    pub(crate) fn set_close_reply(&self, code: Option<CloseCode>, reason: &[u8]) -> Result<(), OpError> {
        let reply = match code {
            None => None,
            Some(code) => Some((code, Bytes::copy_from_slice(close_reason(code, reason)?.as_bytes()))),
        };
        let mut st = self.lock();
        if st.lifecycle.is_tcp_closed() {
            return Err(OpError::Closed);
        }
        st.lifecycle.set_reply(reply);
        Ok(())
    }

    /// The route this connection was accepted on (`""` without counters: unit tests); the
    /// namespace of its channels.
    pub(crate) fn route(&self) -> &str {
        self.settings.metrics.as_ref().map_or("", |m| m.route.as_str())
    }

    /// The rooms settings of the route this connection was accepted on.
    pub(crate) fn room_settings(&self) -> &RoomSettings {
        &self.settings.rooms
    }

    /// The connection's room-membership owner of type `T`, made on the first call with the
    /// connection's new mailbox (bounded by `limits`) by `make`; the session drops it when
    /// it ends. `Closed` once TCP is closed; `Invalid` when another type was attached.
    pub(crate) fn room_member<T: Any + Send + Sync>(
        &self,
        limits: MailboxLimits,
        make: impl FnOnce(Arc<Mailbox>) -> T,
    ) -> Result<Arc<T>, OpError> {
        let mut st = self.lock();
        if st.lifecycle.is_tcp_closed() {
            return Err(OpError::Closed);
        }
        let slot = match st.room.as_ref() {
            Some(slot) => slot,
            None => {
                let mailbox = Arc::new(Mailbox::new(limits, self.settings.room_deflate));
                if let Some(waker) = st.driver_waker() {
                    mailbox.register(waker);
                }
                let member: Arc<dyn Any + Send + Sync> = Arc::new(make(Arc::clone(&mailbox)));
                st.room.insert(RoomSlot { mailbox, member })
            }
        };
        Arc::clone(&slot.member).downcast::<T>().map_err(|_| OpError::Invalid)
    }

    /// The connection's room-membership owner of type `T` if one was made, also after TCP
    /// closed: a handler that leaves its channels after the peer's close still leaves them
    /// (and so discards its wills) until the session ends.
    pub(crate) fn existing_room_member<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let st = self.lock();
        st.room.as_ref().and_then(|slot| Arc::clone(&slot.member).downcast::<T>().ok())
    }

    /// Turns pong notifications on or off.
    pub(crate) fn set_pong_notifications(&self, enabled: bool) {
        self.lock().notify_pongs = enabled;
    }

    /// Drops the TCP connection now, without a close frame.
    pub(crate) fn abort(&self) {
        self.lock().abort();
    }
}

/// `reason` as the reason of a close with `code`, if both may be sent.
fn close_reason(code: CloseCode, reason: &[u8]) -> Result<&str, OpError> {
    if !code.is_sendable() || reason.len() > MAX_CLOSE_REASON {
        return Err(OpError::Invalid);
    }
    std::str::from_utf8(reason).map_err(|_| OpError::Invalid)
}

impl ConnState {
    /// Ready when one more frame can be queued.
    pub(super) fn poll_send_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OpError>> {
        if !self.lifecycle.may_send() {
            return Poll::Ready(Err(OpError::Closed));
        }
        let Some(io) = self.io.as_mut() else { return Poll::Ready(Err(OpError::Closed)) };
        if io.queued_bytes() < SEND_HIGH_WATER {
            return Poll::Ready(Ok(()));
        }
        match io.poll_flush(cx) {
            Poll::Ready(Err(_)) => Poll::Ready(Err(OpError::Closed)),
            _ if io.queued_bytes() < SEND_HIGH_WATER => Poll::Ready(Ok(())),
            _ => Poll::Pending,
        }
    }

    /// Queues a data frame (copying `data`), or with `write_now` first tries to write it
    /// straight out with that context.
    pub(super) fn start_send(
        &mut self,
        settings: &SessionSettings,
        kind: DataKind,
        fin: bool,
        data: &[u8],
        write_now: Option<&mut Context<'_>>,
    ) -> Result<(), OpError> {
        if !self.admit_send(settings) || !self.lifecycle.may_send() {
            return Err(OpError::Closed);
        }
        let Some(io) = self.io.as_mut() else { return Err(OpError::Closed) };
        match write_now {
            Some(cx) => io.poll_send_data(cx, kind, fin, data),
            None => io.encoder().queue_data(kind, fin, data),
        }
        .map_err(|_| OpError::Invalid)?;
        self.upkeep.frame_out(data.len(), fin);
        if fin && self.room.as_ref().is_some_and(|slot| !slot.mailbox.is_empty()) {
            // Room frames may wait behind this message: the driver takes them next poll.
            self.wake_driver_task();
        }
        Ok(())
    }
}
