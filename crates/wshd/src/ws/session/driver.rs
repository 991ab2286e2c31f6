//! The [`Driver`]: the task that runs one session. Each poll takes three steps: the
//! connection step (read, upkeep, closing handshake) under the lock, then the handler step
//! (poll the handler's future without the lock), then the re-check that decides whether the
//! handler's actions need another round.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};
use wshd_sdk::CloseCode;

use super::state::ConnState;
use super::upkeep::{self, Summary};
use super::{CURRENT, ConnShared, poll_time, remember_driver_waker};

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

/// How a handler's `transfer_data` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandlerExit {
    /// It returned: close with 1000.
    Returned,
    /// It panicked: close with 1011.
    Panicked,
}

/// The handler's `transfer_data` future.
pub(crate) enum HandlerFuture {
    /// A plugin's, through the plugin boundary (made by `plugin/`).
    Plugin(Pin<Box<dyn Future<Output = HandlerExit> + Send>>),
    /// A built-in handler's: host code on the host's own types.
    Native(Pin<Box<dyn Future<Output = HandlerExit> + Send>>),
}

impl Future for HandlerFuture {
    type Output = HandlerExit;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<HandlerExit> {
        match self.get_mut() {
            HandlerFuture::Plugin(future) | HandlerFuture::Native(future) => future.as_mut().poll(cx),
        }
    }
}

/// Drives one session to its end; see the module docs.
pub(crate) struct Driver {
    /// The handler's future; dropped (running the plugin's drop code) before `shared`.
    handler: Option<HandlerFuture>,
    shared: Arc<ConnShared>,
    /// The timer of the closing handshake's deadline, and the deadline it is set for.
    close_timer: Option<(Instant, Pin<Box<Sleep>>)>,
    panicked: bool,
    /// Keepalive, idle and send timers, and the shutdown signal.
    timers: upkeep::Timers,
}

/// What the connection step left for the handler step.
#[derive(Debug, Clone, Copy)]
struct ConnectionStep {
    /// TCP is closed: the closing handshake is over (or was cut short).
    tcp_closed: bool,
    /// The inbound queue was full, so reading had stopped.
    queue_was_full: bool,
    /// The close deadline before the handler ran.
    close_deadline: Option<Instant>,
}

/// What the driver does after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Another round: the handler did something the connection step must act on.
    Again,
    /// Wait to be woken.
    Wait,
    /// The session is over.
    End,
}

impl Driver {
    /// The driver of the session on `shared`, served by `handler`.
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

    /// Reads, runs the upkeep and advances the closing handshake, under the lock; `None`
    /// when the handler aborted the connection.
    fn connection_step(&mut self, cx: &mut Context<'_>) -> Option<ConnectionStep> {
        let settings = &self.shared.settings;
        let mut st = self.shared.lock();
        if st.lifecycle.is_aborted() {
            return None;
        }
        st.start_poll(cx.waker());
        remember_driver_waker(cx.waker());
        let handler_done = self.handler.is_none();
        st.read_step(cx, !handler_done, settings.inbound_queue_bytes, settings.close_timeout);
        st.send_due_failure_close(handler_done, settings.close_timeout);
        if st.room.is_some() {
            st.deliver_mailbox(settings, cx);
        }
        self.timers.check(&mut st, settings, cx);
        let tcp_closed = close_step(&mut self.close_timer, &mut st, cx);
        if st.close_if_write_refused(settings) {
            cx.waker().wake_by_ref(); // another poll writes the close
        }
        if st.room.is_some() && st.mail_fits() {
            // Room frames wait and the write queue has room again: another poll takes them.
            cx.waker().wake_by_ref();
        }
        let step = ConnectionStep {
            tcp_closed,
            queue_was_full: !st.inbound.has_room(settings.inbound_queue_bytes),
            close_deadline: st.lifecycle.close_deadline(),
        };
        self.shared.recv_hint.store(st.recv_may_be_ready(), Ordering::Relaxed);
        Some(step)
    }

    /// Polls the handler (without the lock), if it still runs.
    fn handler_step(&mut self, cx: &mut Context<'_>, step: ConnectionStep) -> Next {
        let Some(handler) = self.handler.as_mut() else {
            return if step.tcp_closed { Next::End } else { Next::Wait };
        };
        let polled =
            as_current(&self.shared, || catch_unwind(AssertUnwindSafe(|| Pin::new(handler).poll(cx))));
        match polled {
            Ok(Poll::Pending) => self.after_handler(step),
            Ok(Poll::Ready(exit)) => {
                self.handler_finished(exit == HandlerExit::Panicked);
                Next::Again
            }
            Err(_) => {
                // async-ffi reports a panic the SDK did not catch by panicking here; a
                // built-in handler's panic is a bug in wshd.
                match self.handler {
                    Some(HandlerFuture::Native(_)) => tracing::error!("built-in handler panicked"),
                    _ => tracing::error!("handler future panicked across the plugin boundary"),
                }
                self.handler_finished(true);
                Next::Again
            }
        }
    }

    /// The handler is waiting: another round when it drained a full queue (read on), took
    /// the messages before a failure (send its close) or started a close (flush it, arm the
    /// timer); else the poll ends.
    fn after_handler(&mut self, step: ConnectionStep) -> Next {
        let settings = &self.shared.settings;
        let mut st = self.shared.lock();
        if st.lifecycle.is_aborted() {
            return Next::End;
        }
        let drained = step.queue_was_full
            && st.inbound.has_room(settings.inbound_queue_bytes)
            && st.lifecycle.is_reading();
        let failure_due = st.lifecycle.has_pending_failure() && st.inbound.is_empty();
        let close_started = st.lifecycle.close_deadline() != step.close_deadline;
        st.send_due_failure_close(false, settings.close_timeout);
        if drained || failure_due || close_started {
            return Next::Again;
        }
        let ConnState { upkeep, poll_now, .. } = &mut *st;
        upkeep.poll_ended(|| poll_time(poll_now));
        Next::Wait
    }

    /// The handler is done: close with 1000, or 1011 after a panic (a pending failure's
    /// close goes first).
    fn handler_finished(&mut self, panicked: bool) {
        self.handler = None;
        self.panicked = panicked;
        let timeout = self.shared.settings.close_timeout;
        let mut st = self.shared.lock();
        st.send_due_failure_close(true, timeout);
        st.begin_close(if panicked { CloseCode::INTERNAL_ERROR } else { CloseCode::NORMAL }, b"", timeout);
    }

    /// Ends the session: TCP is closed, and the summary taken.
    fn end(&self) -> SessionEnd {
        let mut st = self.shared.lock();
        let aborted = st.lifecycle.is_aborted();
        let peer_code = st.lifecycle.status_code();
        let summary = st.upkeep.summary(st.lifecycle.outcome());
        st.upkeep.detach_traffic();
        st.end();
        SessionEnd { panicked: self.panicked, aborted, peer_code, summary }
    }
}

impl Future for Driver {
    type Output = SessionEnd;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SessionEnd> {
        let this = &mut *self;
        loop {
            let next = match this.connection_step(cx) {
                Some(step) => this.handler_step(cx, step),
                None => Next::End,
            };
            match next {
                Next::Again => continue,
                Next::Wait => return Poll::Pending,
                Next::End => return Poll::Ready(this.end()),
            }
        }
    }
}

/// The closing handshake's step: writes out what is queued, closes TCP when the close
/// deadline passed or the handshake is over; whether TCP is closed.
fn close_step(
    timer: &mut Option<(Instant, Pin<Box<Sleep>>)>,
    st: &mut ConnState,
    cx: &mut Context<'_>,
) -> bool {
    let written = st.flush(cx);
    if close_timed_out(timer, st.lifecycle.close_deadline(), cx) {
        st.close_timed_out();
    }
    st.finish_if_written(written)
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
