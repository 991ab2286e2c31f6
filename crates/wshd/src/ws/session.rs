//! One WebSocket connection: the socket, the handler's `transfer_data` future, and the
//! closing handshake, all driven by one task.
//!
//! The [`Driver`] future polls, in turn, the socket's read side (into a bounded inbound queue),
//! and the plugin's future, which receives from that queue and sends through
//! [`ConnShared`]. Everything normally happens in this one task: no channels, no cross-task
//! hops. A [`Sender`](wshd_sdk::Sender) the handler moved to another task uses the same
//! object through its mutex.
//!
//! When the queue is full the driver stops reading, so TCP flow control pushes back on the
//! client. Once the handler returns (or panics) the driver closes with 1000 (or 1011) and
//! waits for the peer's close, at most `close_timeout`.

use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Sink, Stream};
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::transport::{self, WsStream};
use crate::plugin::Plugin;

/// What the handler receives.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A text message (UTF-8 validated by the codec).
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A pong (only with notifications on).
    Pong(Bytes),
    /// The connection is closed: the peer's code and reason, or ours after a failure.
    Closed(u16, Bytes),
}

/// Why an operation on the connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpError {
    /// Closed or closing.
    Closed,
    /// Bad argument.
    Invalid,
}

/// Settings a session needs.
#[derive(Debug, Clone)]
pub(crate) struct SessionSettings {
    /// How long to wait for the peer's close frame.
    pub(crate) close_timeout: Duration,
    /// Inbound queue limit in bytes (at least one message is always queued).
    pub(crate) inbound_queue_bytes: usize,
}

/// Message kinds as the plugin ABI numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataKind {
    Text,
    Binary,
}

/// The connection state shared by the driver and the handler's handles.
pub(crate) struct ConnShared {
    state: Mutex<ConnState>,
    settings: SessionSettings,
    /// Keeps the plugin's code loaded while this object (which may hold the plugin's wakers)
    /// lives. Declared last.
    _plugin: Arc<Plugin>,
}

struct ConnState {
    /// `None` once the session ended or was aborted: the TCP connection is closed.
    stream: Option<WsStream>,
    inbound: VecDeque<Inbound>,
    inbound_bytes: usize,
    /// The read side ended (stream finished, failed or timed out).
    read_done: bool,
    /// The close the handler is told about: the peer's, or ours after a protocol failure.
    close_status: Option<(u16, Bytes)>,
    /// We have sent (or queued) our close frame.
    close_sent: bool,
    close_deadline: Option<Instant>,
    /// A task other than the driver waiting in `poll_recv`/`poll_closed`.
    recv_waker: Option<Waker>,
    /// The driver task's waker, used for socket I/O the handler does from within the driver.
    driver_waker: Option<Waker>,
    /// A fragmented message we are sending is open (its next frame is a continuation).
    sending_fragments: bool,
    notify_pongs: bool,
    aborted: bool,
}

thread_local! {
    /// The session whose driver is polling the handler on this thread right now.
    static CURRENT: Cell<*const ConnShared> = const { Cell::new(std::ptr::null()) };
}

impl ConnShared {
    pub(crate) fn new(stream: WsStream, settings: SessionSettings, plugin: Arc<Plugin>) -> Arc<ConnShared> {
        Arc::new(ConnShared {
            state: Mutex::new(ConnState {
                stream: Some(stream),
                inbound: VecDeque::new(),
                inbound_bytes: 0,
                read_done: false,
                close_status: None,
                close_sent: false,
                close_deadline: None,
                recv_waker: None,
                driver_waker: None,
                sending_fragments: false,
                notify_pongs: false,
                aborted: false,
            }),
            settings,
            _plugin: plugin,
        })
    }

    fn lock(&self) -> MutexGuard<'_, ConnState> {
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
        let in_driver = CURRENT.with(|c| std::ptr::eq(c.get(), self));
        // Clone the waker out first: `f` takes the lock itself.
        let driver_waker = if in_driver { self.lock().driver_waker.clone() } else { None };
        match driver_waker {
            Some(waker) => f(&mut Context::from_waker(&waker)),
            None => foreign(&mut f),
        }
    }

    /// Next inbound item, or `Pending`.
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Inbound> {
        let mut st = self.lock();
        if let Some(item) = st.inbound.pop_front() {
            if let Inbound::Text(b) | Inbound::Binary(b) | Inbound::Pong(b) = &item {
                st.inbound_bytes -= b.len();
            }
            // The driver may have stopped reading on a full queue: let it read on.
            st.wake_driver();
            return Poll::Ready(item);
        }
        if let Some((code, reason)) = &st.close_status {
            return Poll::Ready(Inbound::Closed(*code, reason.clone()));
        }
        if st.read_done || st.stream.is_none() {
            return Poll::Ready(Inbound::Closed(1006, Bytes::new()));
        }
        st.recv_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Ready when one more frame can be queued.
    pub(crate) fn poll_send_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), OpError>> {
        let mut st = self.lock();
        if st.close_sent || st.close_status.is_some() {
            return Poll::Ready(Err(OpError::Closed));
        }
        let Some(stream) = st.stream.as_mut() else { return Poll::Ready(Err(OpError::Closed)) };
        Pin::new(stream).poll_ready(cx).map_err(|_| OpError::Closed)
    }

    /// Queues a data frame (copying `data`).
    pub(crate) fn start_send(&self, kind: DataKind, fin: bool, data: &[u8]) -> Result<(), OpError> {
        let mut st = self.lock();
        if st.close_sent || st.close_status.is_some() {
            return Err(OpError::Closed);
        }
        let continuation = st.sending_fragments;
        let message = transport::data_message(kind, fin, continuation, data).ok_or(OpError::Invalid)?;
        st.sending_fragments = !fin;
        let Some(stream) = st.stream.as_mut() else { return Err(OpError::Closed) };
        Pin::new(stream).start_send(message).map_err(|_| OpError::Closed)
    }

    /// Queues a ping.
    pub(crate) fn start_ping(&self, data: &[u8]) -> Result<(), OpError> {
        if data.len() > 125 {
            return Err(OpError::Invalid);
        }
        let mut st = self.lock();
        if st.close_sent || st.close_status.is_some() {
            return Err(OpError::Closed);
        }
        let Some(stream) = st.stream.as_mut() else { return Err(OpError::Closed) };
        Pin::new(stream)
            .start_send(WsMessage::Ping(Bytes::copy_from_slice(data)))
            .map_err(|_| OpError::Closed)
    }

    /// Writes queued frames out.
    pub(crate) fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<Result<(), OpError>> {
        let mut st = self.lock();
        let Some(stream) = st.stream.as_mut() else { return Poll::Ready(Err(OpError::Closed)) };
        Pin::new(stream).poll_flush(cx).map_err(|_| OpError::Closed)
    }

    /// Starts the closing handshake on the handler's request.
    pub(crate) fn start_close(&self, code: u16, reason: &[u8]) -> Result<(), OpError> {
        if !transport::is_sendable_close_code(code) || reason.len() > 123 {
            return Err(OpError::Invalid);
        }
        let reason = std::str::from_utf8(reason).map_err(|_| OpError::Invalid)?;
        let mut st = self.lock();
        st.begin_close(code, reason, self.settings.close_timeout);
        st.wake_driver();
        Ok(())
    }

    /// Ready when the closing handshake is over; yields the peer's close.
    pub(crate) fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<(u16, Bytes)> {
        let mut st = self.lock();
        let peer_answered = st.close_status.is_some() && st.close_sent;
        if st.read_done || st.stream.is_none() || peer_answered {
            return Poll::Ready(st.close_status.clone().unwrap_or((1006, Bytes::new())));
        }
        st.recv_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Turns pong notifications on or off.
    pub(crate) fn set_pong_notifications(&self, enabled: bool) {
        self.lock().notify_pongs = enabled;
    }

    /// Drops the TCP connection now, without a close frame.
    pub(crate) fn abort(&self) {
        let mut st = self.lock();
        st.aborted = true;
        st.stream = None;
        st.wake_driver();
    }
}

impl ConnState {
    fn has_room(&self, limit: usize) -> bool {
        self.inbound.is_empty() || self.inbound_bytes < limit
    }

    fn push(&mut self, item: Inbound) {
        if let Inbound::Text(b) | Inbound::Binary(b) | Inbound::Pong(b) = &item {
            self.inbound_bytes += b.len();
        }
        self.inbound.push_back(item);
    }

    fn wake_driver(&self) {
        let in_driver = CURRENT.with(|c| !c.get().is_null());
        if !in_driver && let Some(w) = &self.driver_waker {
            w.wake_by_ref();
        }
    }

    fn wake_receiver(&mut self) {
        if let Some(w) = self.recv_waker.take() {
            w.wake();
        }
    }

    /// Queues our close frame once.
    fn begin_close(&mut self, code: u16, reason: &str, timeout: Duration) {
        if self.close_sent {
            return;
        }
        self.close_sent = true;
        self.close_deadline = Some(Instant::now() + timeout);
        if let Some(stream) = self.stream.as_mut() {
            // After the peer's close this fails harmlessly: tungstenite already answered it.
            let _ = Pin::new(stream).start_send(transport::close_message(code, reason));
        }
    }

    /// Reads from the socket while there is room. When `deliver` is false (the handler has
    /// finished) data messages are discarded.
    fn pump_reads(&mut self, cx: &mut Context<'_>, deliver: bool, limit: usize, close_timeout: Duration) {
        let mut changed = false;
        while !self.read_done && (!deliver || self.has_room(limit)) {
            let Some(stream) = self.stream.as_mut() else {
                self.read_done = true;
                break;
            };
            match Pin::new(stream).poll_next(cx) {
                Poll::Pending => break,
                Poll::Ready(Some(Ok(message))) => match message {
                    WsMessage::Text(t) if deliver => {
                        self.push(Inbound::Text(t.into()));
                        changed = true;
                    }
                    WsMessage::Binary(b) if deliver => {
                        self.push(Inbound::Binary(b));
                        changed = true;
                    }
                    WsMessage::Pong(p) if deliver && self.notify_pongs => {
                        self.push(Inbound::Pong(p));
                        changed = true;
                    }
                    WsMessage::Close(frame) => {
                        // tungstenite has queued the reply (echoing the code); it is flushed
                        // by the next poll, which then ends the stream.
                        if self.close_status.is_none() {
                            self.close_status = Some(transport::close_status(frame.as_ref()));
                        }
                        changed = true;
                    }
                    _ => {}
                },
                Poll::Ready(Some(Err(error))) => {
                    match transport::failure_close(&error) {
                        Some((code, reason)) => {
                            tracing::debug!(%error, code, "closing after a protocol failure");
                            if self.close_status.is_none() {
                                self.close_status = Some((code, Bytes::from(reason.clone())));
                            }
                            if self.close_sent {
                                self.read_done = true;
                            } else {
                                self.begin_close(code, &reason, close_timeout);
                            }
                        }
                        None => {
                            tracing::debug!(%error, "connection ended");
                            self.read_done = true;
                        }
                    }
                    changed = true;
                }
                Poll::Ready(None) => {
                    self.read_done = true;
                    changed = true;
                }
            }
        }
        if changed {
            self.wake_receiver();
        }
    }
}

/// How a session ended, for the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionEnd {
    /// The handler panicked.
    pub(crate) panicked: bool,
    /// The handler aborted the TCP connection.
    pub(crate) aborted: bool,
    /// The close code the client sent (or 1006 when none).
    pub(crate) peer_code: u16,
}

/// Drives one session to its end; see the module docs.
pub(crate) struct Driver {
    /// The handler's future; dropped (running the plugin's drop code) before `shared`.
    plugin: Option<async_ffi::FfiFuture<u32>>,
    shared: Arc<ConnShared>,
    close_timer: Option<Pin<Box<Sleep>>>,
    panicked: bool,
}

/// Marks `shared` as the session being driven on this thread for the duration of `f`.
fn as_current<R>(shared: &ConnShared, f: impl FnOnce() -> R) -> R {
    struct Reset(*const ConnShared);
    impl Drop for Reset {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let previous = CURRENT.with(|c| c.replace(shared));
    let _reset = Reset(previous);
    f()
}

impl Driver {
    pub(crate) fn new(plugin: async_ffi::FfiFuture<u32>, shared: Arc<ConnShared>) -> Driver {
        Driver { plugin: Some(plugin), shared, close_timer: None, panicked: false }
    }

    fn end(&self) -> SessionEnd {
        let mut st = self.shared.lock();
        let aborted = st.aborted;
        let peer_code = st.close_status.as_ref().map_or(1006, |(c, _)| *c);
        // Close TCP now, even if a `Sender` handle outlives the session.
        st.stream = None;
        st.read_done = true;
        st.wake_receiver();
        SessionEnd { panicked: self.panicked, aborted, peer_code }
    }
}

impl Future for Driver {
    type Output = SessionEnd;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SessionEnd> {
        let this = &mut *self;
        let limit = this.shared.settings.inbound_queue_bytes;
        let close_timeout = this.shared.settings.close_timeout;
        loop {
            let mut st = this.shared.lock();
            if st.aborted {
                drop(st);
                return Poll::Ready(this.end());
            }
            if !st.driver_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                st.driver_waker = Some(cx.waker().clone());
            }
            let deliver = this.plugin.is_some();
            st.pump_reads(cx, deliver, limit, close_timeout);
            // Push out whatever tungstenite queued on its own (pongs, close replies).
            if let Some(stream) = st.stream.as_mut() {
                let _ = Pin::new(stream).poll_flush(cx);
            }
            if let Some(deadline) = st.close_deadline
                && !st.read_done
            {
                let timer =
                    this.close_timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.as_mut().poll(cx).is_ready() {
                    tracing::debug!("closing handshake timed out");
                    st.read_done = true;
                    st.wake_receiver();
                }
            }
            let read_done = st.read_done;
            let was_full = !st.has_room(limit);
            drop(st);

            let Some(plugin) = this.plugin.as_mut() else {
                if read_done {
                    return Poll::Ready(this.end());
                }
                return Poll::Pending;
            };
            let polled =
                as_current(&this.shared, || catch_unwind(AssertUnwindSafe(|| Pin::new(plugin).poll(cx))));
            match polled {
                Ok(Poll::Pending) => {
                    let st = this.shared.lock();
                    if st.aborted {
                        drop(st);
                        return Poll::Ready(this.end());
                    }
                    // The handler drained a full queue: read on now rather than wait.
                    if was_full && st.has_room(limit) && !st.read_done {
                        continue;
                    }
                    // The handler queued a close: flush it and arm the timer.
                    if st.close_sent && this.close_timer.is_none() && !st.read_done {
                        continue;
                    }
                    drop(st);
                    return Poll::Pending;
                }
                Ok(Poll::Ready(code)) => {
                    this.plugin = None;
                    let panicked = code != wshd_sdk::abi::TRANSFER_DONE;
                    this.finish_handler(panicked, close_timeout);
                }
                Err(_) => {
                    // async-ffi reports a panic the SDK did not catch by panicking here.
                    tracing::error!("handler future panicked across the plugin boundary");
                    this.plugin = None;
                    this.finish_handler(true, close_timeout);
                }
            }
        }
    }
}

impl Driver {
    /// The handler is done: close with 1000, or 1011 after a panic.
    fn finish_handler(&mut self, panicked: bool, close_timeout: Duration) {
        self.panicked = panicked;
        let mut st = self.shared.lock();
        if panicked {
            st.begin_close(1011, "", close_timeout);
        } else {
            st.begin_close(1000, "", close_timeout);
        }
    }
}
