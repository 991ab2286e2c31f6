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

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, Sleep};
use wshd_sdk::CloseCode;

use super::transport::{DataKind, Failure, Incoming, QueueError, ReadProgress, Wire, WsStream};
use crate::metrics::RouteMetrics;
use crate::plugin::Plugin;

mod upkeep;
pub(crate) use upkeep::Summary;

/// What the handler receives.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A text message (UTF-8 validated by the codec).
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A pong (only with notifications on).
    Pong(Bytes),
    /// The connection is closed: the peer's code and reason, or ours after a failure
    /// (1006 when there was no close frame).
    Closed(CloseCode, Bytes),
}

/// Why an operation on the connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpError {
    /// Closed or closing.
    Closed,
    /// Bad argument.
    Invalid,
}

impl From<QueueError> for OpError {
    fn from(e: QueueError) -> OpError {
        match e {
            QueueError::Closed => OpError::Closed,
            QueueError::Invalid => OpError::Invalid,
        }
    }
}

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
    /// The route's counters.
    pub(crate) metrics: Option<Arc<RouteMetrics>>,
    /// The socket's byte counts.
    pub(crate) wire: Option<Arc<Wire>>,
}

/// Outgoing bytes queued before a sender has to wait for the socket.
const SEND_HIGH_WATER: usize = 64 * 1024;

/// The connection state shared by the driver and the handler's handles.
pub(crate) struct ConnShared {
    state: Mutex<ConnState>,
    /// Whether `poll_recv` may be ready: refreshed by the driver before it polls the handler
    /// and by every locked `poll_recv`, so a handler polled by the driver finds an empty
    /// queue without taking the lock (see [`ConnShared::poll_recv`]).
    recv_hint: AtomicBool,
    settings: SessionSettings,
    /// Keeps the plugin's code loaded while this object (which may hold the plugin's wakers)
    /// lives; `None` for a built-in handler. Declared last.
    _plugin: Option<Arc<Plugin>>,
}

struct ConnState {
    /// `None` once the session ended or was aborted: the TCP connection is closed.
    stream: Option<WsStream>,
    inbound: VecDeque<Inbound>,
    inbound_bytes: usize,
    /// Nothing more will be read (peer's close, EOF, failure, or close timeout).
    read_done: bool,
    /// The close the handler is told about: the peer's, or ours after a protocol failure.
    close_status: Option<(CloseCode, Bytes)>,
    /// A protocol failure waiting for the messages before it to be consumed.
    pending_failure: Option<Failure>,
    close_deadline: Option<Instant>,
    /// A task other than the driver waiting in `poll_recv`/`poll_closed`.
    recv_waker: Option<Waker>,
    /// The driver task's waker, used for socket I/O the handler does from within the driver.
    driver_waker: Option<Waker>,
    notify_pongs: bool,
    aborted: bool,
    /// The time, read at most once per driver poll (see [`poll_time`]).
    poll_now: Option<Instant>,
    /// Timers' state and accounting (see `upkeep`).
    upkeep: upkeep::Upkeep,
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

impl ConnShared {
    /// `plugin`: the library whose handler serves the connection (`None` for a built-in one).
    pub(crate) fn new(
        stream: WsStream,
        settings: SessionSettings,
        plugin: Option<Arc<Plugin>>,
    ) -> Arc<ConnShared> {
        Arc::new(ConnShared {
            state: Mutex::new(ConnState {
                stream: Some(stream),
                inbound: VecDeque::new(),
                inbound_bytes: 0,
                read_done: false,
                close_status: None,
                pending_failure: None,
                close_deadline: None,
                recv_waker: None,
                driver_waker: None,
                notify_pongs: false,
                aborted: false,
                poll_now: None,
                upkeep: upkeep::Upkeep::new(&settings),
            }),
            recv_hint: AtomicBool::new(false),
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
    fn is_being_driven(&self) -> bool {
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
        if let Some(item) = st.inbound.pop_front() {
            // Inside the driver the poll's time is close enough (the item waited since an
            // earlier poll); a handler task elsewhere reads the clock.
            let driven = self.is_being_driven();
            let ConnState { upkeep, poll_now, .. } = st;
            upkeep.delivered(|| if driven { poll_time(poll_now) } else { Instant::now() });
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
        self.lock().start_send(&self.settings, kind, fin, data)
    }

    /// [`poll_send_ready`](Self::poll_send_ready), [`start_send`](Self::start_send) and
    /// [`poll_flush`](Self::poll_flush) under one lock: `Pending` when no frame can be queued
    /// yet (nothing was queued); else `true` when all that is queued is written, `false` when
    /// some still waits for `poll_flush`.
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
        if let Err(e) = st.start_send(&self.settings, kind, fin, data) {
            return Poll::Ready(Err(e));
        }
        let Some(stream) = st.stream.as_mut() else { return Poll::Ready(Err(OpError::Closed)) };
        Poll::Ready(match stream.poll_flush(cx) {
            Poll::Ready(Ok(())) => Ok(true),
            Poll::Ready(Err(_)) => Err(OpError::Closed),
            Poll::Pending => Ok(false),
        })
    }

    /// Queues a ping.
    pub(crate) fn start_ping(&self, data: &[u8]) -> Result<(), OpError> {
        let mut st = self.lock();
        let Some(stream) = st.stream.as_mut() else { return Err(OpError::Closed) };
        Ok(stream.queue_ping(data)?)
    }

    /// Writes queued frames out.
    pub(crate) fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<Result<(), OpError>> {
        let mut st = self.lock();
        let Some(stream) = st.stream.as_mut() else { return Poll::Ready(Err(OpError::Closed)) };
        stream.poll_flush(cx).map_err(|_| OpError::Closed)
    }

    /// Starts the closing handshake on the handler's request: `code` must be sendable and
    /// `reason` UTF-8 of at most 123 bytes.
    pub(crate) fn start_close(&self, code: CloseCode, reason: &[u8]) -> Result<(), OpError> {
        if !code.is_sendable() || reason.len() > 123 {
            return Err(OpError::Invalid);
        }
        let reason = std::str::from_utf8(reason).map_err(|_| OpError::Invalid)?;
        let mut st = self.lock();
        st.begin_close(code, reason, self.settings.close_timeout);
        st.wake_driver();
        Ok(())
    }

    /// Ready when the closing handshake is over; yields the peer's close (1006 when none).
    pub(crate) fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<(CloseCode, Bytes)> {
        let mut st = self.lock();
        if st.read_done || st.stream.is_none() {
            return Poll::Ready(st.close_status.clone().unwrap_or((CloseCode::ABNORMAL, Bytes::new())));
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
            Some(code) => {
                if !code.is_sendable() || reason.len() > 123 {
                    return Err(OpError::Invalid);
                }
                Some((code, std::str::from_utf8(reason).map_err(|_| OpError::Invalid)?.to_owned()))
            }
        };
        let mut st = self.lock();
        let Some(stream) = st.stream.as_mut() else { return Err(OpError::Closed) };
        stream.set_close_reply(reply);
        Ok(())
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
    /// Ready when one more frame can be queued.
    fn poll_send_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OpError>> {
        let Some(stream) = self.stream.as_mut() else { return Poll::Ready(Err(OpError::Closed)) };
        if stream.close_sent() {
            return Poll::Ready(Err(OpError::Closed));
        }
        if stream.queued_bytes() < SEND_HIGH_WATER {
            return Poll::Ready(Ok(()));
        }
        match stream.poll_flush(cx) {
            Poll::Ready(Err(_)) => Poll::Ready(Err(OpError::Closed)),
            _ if stream.queued_bytes() < SEND_HIGH_WATER => Poll::Ready(Ok(())),
            _ => Poll::Pending,
        }
    }

    /// Queues a data frame (copying `data`).
    fn start_send(
        &mut self,
        settings: &SessionSettings,
        kind: DataKind,
        fin: bool,
        data: &[u8],
    ) -> Result<(), OpError> {
        if !self.admit_send(settings) {
            return Err(OpError::Closed);
        }
        let Some(stream) = self.stream.as_mut() else { return Err(OpError::Closed) };
        stream.queue_data(kind, fin, data)?;
        self.upkeep.frame_out(data.len(), fin);
        Ok(())
    }

    /// Whether `poll_recv` would return something now.
    fn recv_may_be_ready(&self) -> bool {
        !self.inbound.is_empty() || self.close_status.is_some() || self.read_done || self.stream.is_none()
    }

    /// Keeps `waker` for `wake_receiver` (a clone only when it would wake another task).
    fn remember_receiver(&mut self, waker: &Waker) {
        if !self.recv_waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.recv_waker = Some(waker.clone());
        }
    }

    fn has_room(&self, limit: usize) -> bool {
        self.inbound.is_empty() || self.inbound_bytes < limit
    }

    fn wake_driver(&self) {
        let in_driver = CURRENT.with(|c| !c.get().is_null());
        if !in_driver && let Some(w) = &self.driver_waker {
            w.wake_by_ref();
        }
    }

    /// Wakes a handler waiting in `poll_recv`/`poll_closed`. Only the driver calls this, and
    /// it polls the handler right after: a handler waiting with the driver's own waker needs
    /// no wake-up (waking the running task would only make tokio poll it once more for
    /// nothing).
    fn wake_receiver(&mut self) {
        if let (Some(receiver), Some(driver)) = (&self.recv_waker, &self.driver_waker)
            && receiver.will_wake(driver)
        {
            return;
        }
        if let Some(w) = self.recv_waker.take() {
            w.wake();
        }
    }

    /// Queues our close frame once and starts the close timer.
    fn begin_close(&mut self, code: CloseCode, reason: &str, timeout: Duration) {
        let Some(stream) = self.stream.as_mut() else { return };
        if stream.close_sent() {
            return;
        }
        stream.queue_close(code, reason);
        self.upkeep.close_sent(code);
        if !self.read_done {
            self.close_deadline = Some(Instant::now() + timeout);
        }
    }

    /// Reads from the socket while there is room. When `deliver` is false (the handler has
    /// finished) data messages are discarded.
    fn pump_reads(&mut self, cx: &mut Context<'_>, deliver: bool, limit: usize) {
        let mut changed = false;
        while !self.read_done && (!deliver || self.has_room(limit)) {
            let ConnState { stream, inbound, inbound_bytes, close_status, notify_pongs, upkeep, .. } = self;
            let Some(stream) = stream.as_mut() else {
                self.read_done = true;
                break;
            };
            let notify_pongs = *notify_pongs;
            let mut push = |item: Incoming| {
                let queued = match item {
                    Incoming::Text(b) if deliver => Inbound::Text(b),
                    Incoming::Binary(b) if deliver => Inbound::Binary(b),
                    Incoming::Pong(b) if deliver && notify_pongs && b != upkeep::KEEPALIVE => {
                        Inbound::Pong(b)
                    }
                    Incoming::Close(code, reason) => {
                        upkeep.peer_closed = true;
                        close_status.get_or_insert((code, reason));
                        return;
                    }
                    _ => return,
                };
                if let Inbound::Text(b) | Inbound::Binary(b) | Inbound::Pong(b) = &queued {
                    *inbound_bytes += b.len();
                }
                if let Inbound::Text(b) | Inbound::Binary(b) = &queued {
                    upkeep.message_in(b.len());
                }
                upkeep.queued();
                inbound.push_back(queued);
            };
            match stream.poll_read(cx, &mut push) {
                Poll::Pending => break,
                Poll::Ready(Ok(ReadProgress::Data)) => changed = true,
                Poll::Ready(Ok(ReadProgress::Closed)) => {
                    self.read_done = true;
                    changed = true;
                }
                Poll::Ready(Ok(ReadProgress::Eof)) => {
                    self.read_done = true;
                    self.close_status.get_or_insert((CloseCode::ABNORMAL, Bytes::new()));
                    changed = true;
                }
                Poll::Ready(Err(failure)) => {
                    // The codec keeps reading only to find the peer's answer to our close.
                    tracing::debug!(
                        code = failure.code.as_u16(),
                        reason = failure.reason,
                        "protocol failure"
                    );
                    self.close_status
                        .get_or_insert((failure.code, Bytes::from_static(failure.reason.as_bytes())));
                    self.pending_failure = Some(failure);
                    changed = true;
                }
            }
        }
        if changed {
            self.wake_receiver();
        }
    }

    /// Sends a pending failure's close once the messages before it were consumed (or the
    /// handler is gone).
    fn close_on_failure(&mut self, handler_done: bool, timeout: Duration) {
        if (self.inbound.is_empty() || handler_done)
            && let Some(failure) = self.pending_failure.take()
        {
            self.begin_close(failure.code, failure.reason, timeout);
            // Give a peer that broke the protocol the close timeout to answer our close.
            self.close_deadline = Some(Instant::now() + timeout);
        }
    }
}

/// The current time, read from the clock at most once per driver poll (`poll_now` is reset
/// when a poll starts) and only when something needs it: the arrival stamps of messages still
/// queued when the poll ends, their delivery latency, and the timers share it.
fn poll_time(poll_now: &mut Option<Instant>) -> Instant {
    *poll_now.get_or_insert_with(Instant::now)
}

/// How a session ended, for the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionEnd {
    /// The handler panicked.
    pub(crate) panicked: bool,
    /// The handler aborted the TCP connection.
    pub(crate) aborted: bool,
    /// The close code the handler was told: the client's (or ours after a protocol failure),
    /// 1006 when none.
    pub(crate) peer_code: CloseCode,
    /// Counts and the closing handshake, for the access log and the metrics.
    pub(crate) summary: Summary,
}

/// The handler's `transfer_data` future; its output is a `wshd_sdk::abi::TRANSFER_*` code.
pub(crate) enum HandlerFuture {
    /// A plugin's, through the FFI boundary.
    Plugin(async_ffi::FfiFuture<u32>),
    /// A built-in handler's: host code on the host's own types.
    Native(Pin<Box<dyn Future<Output = u32> + Send>>),
}

impl Future for HandlerFuture {
    type Output = u32;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
        match self.get_mut() {
            HandlerFuture::Plugin(future) => Pin::new(future).poll(cx),
            HandlerFuture::Native(future) => future.as_mut().poll(cx),
        }
    }
}

/// Drives one session to its end; see the module docs.
pub(crate) struct Driver {
    /// The handler's future; dropped (running the plugin's drop code) before `shared`.
    handler: Option<HandlerFuture>,
    shared: Arc<ConnShared>,
    close_timer: Option<(Instant, Pin<Box<Sleep>>)>,
    panicked: bool,
    /// Keepalive, idle and send timers, and the shutdown signal.
    timers: upkeep::Timers,
}

/// Whether the close deadline passed (arming `timer` for it otherwise).
fn close_timed_out(
    timer: &mut Option<(Instant, Pin<Box<Sleep>>)>,
    deadline: Option<Instant>,
    cx: &mut Context<'_>,
) -> bool {
    let Some(deadline) = deadline else { return false };
    match timer {
        Some((at, sleep)) if *at == deadline => sleep.as_mut().poll(cx).is_ready(),
        _ => {
            let mut sleep = Box::pin(tokio::time::sleep_until(deadline));
            let fired = sleep.as_mut().poll(cx).is_ready();
            *timer = Some((deadline, sleep));
            fired
        }
    }
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
    pub(crate) fn new(handler: HandlerFuture, shared: Arc<ConnShared>) -> Driver {
        Driver {
            handler: Some(handler),
            shared,
            close_timer: None,
            panicked: false,
            timers: upkeep::Timers::new(),
        }
    }

    /// Makes the session close with 1001 "going away" when `token` is cancelled (shutdown);
    /// `draining` is set just before.
    pub(crate) fn shutdown_on(
        mut self,
        token: tokio_util::sync::CancellationToken,
        draining: Arc<std::sync::atomic::AtomicBool>,
    ) -> Driver {
        self.timers.shutdown_on(token, draining);
        self
    }

    fn end(&self) -> SessionEnd {
        let mut st = self.shared.lock();
        let aborted = st.aborted;
        let peer_code = st.close_status.as_ref().map_or(CloseCode::ABNORMAL, |(c, _)| *c);
        let summary = st.upkeep.summary(st.close_status.as_ref().map(|(c, _)| *c), aborted);
        st.upkeep.detach_traffic();
        // Close TCP now, even if a `Sender` handle outlives the session.
        st.stream = None;
        st.read_done = true;
        st.wake_receiver();
        SessionEnd { panicked: self.panicked, aborted, peer_code, summary }
    }

    /// The handler is done: close with 1000, or 1011 after a panic.
    fn finish_handler(&mut self, panicked: bool, close_timeout: Duration) {
        self.panicked = panicked;
        let mut st = self.shared.lock();
        st.close_on_failure(true, close_timeout);
        st.begin_close(
            if panicked { CloseCode::INTERNAL_ERROR } else { CloseCode::NORMAL },
            "",
            close_timeout,
        );
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
            st.poll_now = None;
            if !st.driver_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                st.driver_waker = Some(cx.waker().clone());
            }
            remember_driver_waker(cx.waker());
            let handler_done = this.handler.is_none();
            st.pump_reads(cx, !handler_done, limit);
            st.close_on_failure(handler_done, close_timeout);
            this.timers.check(&mut st, &this.shared.settings, cx);
            // Push out what the codec queued on its own (pongs, close replies).
            let flushed = match st.stream.as_mut() {
                Some(stream) => match stream.poll_flush(cx) {
                    Poll::Ready(Ok(())) => true,
                    Poll::Ready(Err(_)) => {
                        // The peer is gone: nothing more can be written or read.
                        st.read_done = true;
                        st.close_status.get_or_insert((CloseCode::ABNORMAL, Bytes::new()));
                        true
                    }
                    Poll::Pending => false,
                },
                None => true,
            };
            let deadline = st.close_deadline;
            if close_timed_out(&mut this.close_timer, deadline, cx) {
                tracing::debug!("closing handshake timed out");
                st.read_done = true;
                st.close_status.get_or_insert((CloseCode::ABNORMAL, Bytes::new()));
                st.stream = None;
                st.wake_receiver();
            }
            let closing_done = st.read_done
                && (flushed || st.stream.is_none())
                && st.stream.as_ref().is_none_or(|s| s.close_sent());
            if st.read_done && st.stream.as_ref().is_some_and(|s| !s.close_sent()) && handler_done {
                // EOF or failure without a close exchange: nothing to wait for.
                drop(st);
                return Poll::Ready(this.end());
            }
            if closing_done {
                // The closing handshake is complete: close TCP; the handler (if still running)
                // sees the connection closed.
                st.stream = None;
                st.wake_receiver();
            }
            let was_full = !st.has_room(limit);
            this.shared.recv_hint.store(st.recv_may_be_ready(), Ordering::Relaxed);
            drop(st);

            let Some(handler) = this.handler.as_mut() else {
                if closing_done {
                    return Poll::Ready(this.end());
                }
                return Poll::Pending;
            };
            let polled =
                as_current(&this.shared, || catch_unwind(AssertUnwindSafe(|| Pin::new(handler).poll(cx))));
            match polled {
                Ok(Poll::Pending) => {
                    let mut st = this.shared.lock();
                    if st.aborted {
                        drop(st);
                        return Poll::Ready(this.end());
                    }
                    // The handler drained the queue: read on (and send a pending failure's
                    // close) now rather than wait.
                    let drained = was_full && st.has_room(limit) && !st.read_done;
                    let failure_due = st.pending_failure.is_some() && st.inbound.is_empty();
                    // The handler queued a close: flush it and arm the timer.
                    let close_due = st.close_deadline != deadline;
                    st.close_on_failure(false, close_timeout);
                    if drained || failure_due || close_due {
                        drop(st);
                        continue;
                    }
                    let ConnState { upkeep, poll_now, .. } = &mut *st;
                    upkeep.poll_ended(|| poll_time(poll_now));
                    return Poll::Pending;
                }
                Ok(Poll::Ready(code)) => {
                    this.handler = None;
                    let panicked = code != wshd_sdk::abi::TRANSFER_DONE;
                    this.finish_handler(panicked, close_timeout);
                }
                Err(_) => {
                    // async-ffi reports a panic the SDK did not catch by panicking here; a
                    // built-in handler's panic is a bug in wshd.
                    match this.handler {
                        Some(HandlerFuture::Native(_)) => tracing::error!("built-in handler panicked"),
                        _ => tracing::error!("handler future panicked across the plugin boundary"),
                    }
                    this.handler = None;
                    this.finish_handler(true, close_timeout);
                }
            }
        }
    }
}
