//! Per-connection upkeep, driven by the session's [`Driver`](super::Driver): keepalive pings
//! and the pong timeout, the idle timeout, the send-queue limit and send timeout (slow
//! readers), the close 1001 on shutdown, and the accounting behind metrics and the access log.
//!
//! Closes the server starts on its own:
//!
//! | why | what the peer gets | what the handler and the access log see |
//! |---|---|---|
//! | shutdown | close 1001 "going away", then the closing handshake (at most `close_timeout`) | the peer's close (1001 echoed) |
//! | idle timeout | close 1001 "idle", then the closing handshake | the peer's close |
//! | send queue over `max_send_queue_bytes` | close 1008 "send queue full", then the closing handshake; TCP is dropped after `close_timeout` if the peer does not read | the peer's close, or 1006 |
//! | no write progress for `send_timeout` | close 1008 "send timeout", as above | the peer's close, or 1006 |
//! | a message in progress gained less than `message_min_bytes` in `message_timeout` | close 1008 "message too slow" (the message is freed), then the closing handshake | 1008 |
//! | the write queue grew past the in-flight budget | close 1013 "memory budget exhausted", then the closing handshake | the peer's close, or 1006 |
//! | no byte from the peer for `pong_timeout` after a keepalive ping | a best-effort close 1011 "pong timeout", and TCP is dropped at once | 1006 |
//!
//! Cost: one timer per connection, re-armed only when a deadline moves earlier (activity only
//! moves deadlines later, so a busy connection does not touch the timer wheel per message);
//! per message a few counter updates.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use wshd_sdk::CloseCode;

use super::phase::CloseOutcome;
use super::state::ConnState;
use super::{SessionSettings, poll_time};
use crate::budget::BUDGET;
use crate::metrics::traffic::TrafficHandle;
use crate::ws::transport::{Event, Failure, Wire};

/// The payload of wshd's keepalive pings; their pongs are not shown to handlers.
pub(super) const KEEPALIVE: &[u8] = b"wshd-keepalive";

/// Accounting and timer state, kept with the connection state.
#[derive(Debug)]
pub(super) struct Upkeep {
    /// Message counts and delivery latency: the access log's, and the route's metrics' until
    /// the session ends.
    traffic: TrafficHandle,
    wire: Option<Arc<Wire>>,
    /// `messages_in + messages_out` when activity was last noticed.
    activity_seen: u64,
    last_activity: Instant,
    last_ping: Instant,
    ping_outstanding: bool,
    read_at_ping: u64,
    /// Bytes written when the last keepalive ping was queued, if data was waiting then.
    backlog_written_at_ping: Option<u64>,
    written_seen: u64,
    /// Since when data has waited without the socket taking any of it.
    stall_since: Option<Instant>,
    /// While a message is in progress: when its current `message_timeout` window started,
    /// and the decoder's progress then.
    message_window: Option<(Instant, u64)>,
    /// Arrival times of the items in the inbound queue, for the delivery-latency histogram:
    /// `None` for an item that arrived during the current driver poll (stamped only if it is
    /// still queued when the poll ends, so the usual message costs no clock read).
    arrivals: VecDeque<Option<Instant>>,
}

/// What a finished session did, for the access log and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    /// Data messages received.
    pub(crate) messages_in: u64,
    /// Data messages sent.
    pub(crate) messages_out: u64,
    /// Payload bytes received (after decompression).
    pub(crate) bytes_in: u64,
    /// Payload bytes sent (before compression).
    pub(crate) bytes_out: u64,
    /// Bytes read from the socket.
    pub(crate) wire_in: u64,
    /// Bytes written to the socket.
    pub(crate) wire_out: u64,
    /// The close code of the closing handshake (1006 when there was none).
    pub(crate) close_code: CloseCode,
    /// Who closed first: `client`, `server` or `none` (the TCP connection just ended).
    pub(crate) initiator: &'static str,
    /// Why the server closed on its own (`idle`, `going away`, `pong timeout`, …), or "".
    pub(crate) reason: &'static str,
}

/// What the connection's activity says about the upkeep's deadlines, at one driver poll.
#[derive(Debug, Clone, Copy)]
struct Watch {
    /// Bytes queued to be written.
    queued: usize,
    /// Bytes read so far.
    read: u64,
    /// Bytes written so far.
    written: u64,
    /// When the idle timeout closes the connection.
    idle: Option<Instant>,
    /// When the next keepalive ping is due, or (one outstanding) when the peer is dead.
    keepalive: Option<Instant>,
    /// When the send timeout closes a slow reader.
    stall: Option<Instant>,
    /// When the message in progress must have advanced by `message_min_bytes`.
    message: Option<Instant>,
    /// The decoder's progress in the message in progress, if one is.
    progress: Option<u64>,
}

impl Watch {
    /// The earliest deadline.
    fn next(&self) -> Option<Instant> {
        [self.idle, self.keepalive, self.stall, self.message].into_iter().flatten().min()
    }
}

impl Upkeep {
    pub(super) fn new(settings: &SessionSettings) -> Upkeep {
        let now = Instant::now();
        Upkeep {
            traffic: settings.metrics.as_ref().map_or_else(TrafficHandle::unattached, |m| m.traffic.attach()),
            wire: settings.wire.clone(),
            activity_seen: 0,
            last_activity: now,
            last_ping: now,
            ping_outstanding: false,
            read_at_ping: 0,
            backlog_written_at_ping: None,
            written_seen: 0,
            stall_since: None,
            message_window: None,
            arrivals: VecDeque::new(),
        }
    }

    fn read(&self) -> u64 {
        self.wire.as_ref().map_or(0, |w| w.read())
    }

    fn written(&self) -> u64 {
        self.wire.as_ref().map_or(0, |w| w.written())
    }

    /// A data message arrived (`len` payload bytes).
    pub(super) fn message_in(&mut self, len: usize) {
        self.traffic.message_in(len);
    }

    /// An item was put in the inbound queue during the current driver poll.
    pub(super) fn queued(&mut self) {
        self.arrivals.push_back(None);
    }

    /// The driver poll ends at `now`: items that arrived during it and are still queued get
    /// `now` as their arrival time.
    pub(super) fn poll_ended(&mut self, now: impl FnOnce() -> Instant) {
        if self.arrivals.back().is_some_and(Option::is_none) {
            let now = now();
            for at in self.arrivals.iter_mut().rev().take_while(|at| at.is_none()) {
                *at = Some(now);
            }
        }
    }

    /// The handler took an item from the inbound queue; `now` gives the time, asked only when
    /// the item waited past the driver poll it arrived in (otherwise it waited no time).
    pub(super) fn delivered(&mut self, now: impl FnOnce() -> Instant) {
        let Some(arrived) = self.arrivals.pop_front() else { return };
        self.traffic.delivered(arrived.map_or(Duration::ZERO, |at| now().saturating_duration_since(at)));
    }

    /// A data frame of `len` payload bytes was queued; `fin` ends a message.
    pub(super) fn frame_out(&mut self, len: usize, fin: bool) {
        self.traffic.frame_out(len, fin);
    }

    /// The session ended: its counts join its route's finished ones.
    pub(super) fn detach_traffic(&mut self) {
        self.traffic.detach();
    }

    /// The summary at the end of the session, with how its closing handshake went.
    pub(super) fn summary(&self, close: CloseOutcome) -> Summary {
        let traffic = self.traffic.totals();
        Summary {
            messages_in: traffic.messages_in,
            messages_out: traffic.messages_out,
            bytes_in: traffic.bytes_in,
            bytes_out: traffic.bytes_out,
            wire_in: self.read(),
            wire_out: self.written(),
            close_code: close.code,
            initiator: close.initiator,
            reason: close.reason,
        }
    }

    /// Notes what happened since the last look (messages, write progress, signs of life after
    /// a keepalive ping) and computes the deadlines. The clock (`now`, read once per driver
    /// poll) is read only when a deadline needs it: not for a message on a connection without
    /// an idle timeout whose replies were written.
    fn watch(
        &mut self,
        queued: usize,
        progress: Option<u64>,
        settings: &SessionSettings,
        mut now: impl FnMut() -> Instant,
    ) -> Watch {
        let (read, written) = (self.read(), self.written());
        let activity = self.traffic.messages();
        if activity != self.activity_seen {
            self.activity_seen = activity;
            if settings.idle_timeout.is_some() {
                self.last_activity = now();
            }
        }
        if queued == 0 {
            self.stall_since = None;
        } else if self.stall_since.is_none() || written != self.written_seen {
            self.written_seen = written;
            self.stall_since = Some(now());
        }
        match (progress, settings.message_timeout) {
            (Some(at), Some(_)) if self.message_window.is_none() => self.message_window = Some((now(), at)),
            (Some(_), Some(_)) => {}
            _ => self.message_window = None,
        }
        if self.ping_outstanding
            && (read != self.read_at_ping || self.backlog_written_at_ping.is_some_and(|w| written != w))
        {
            self.ping_outstanding = false; // alive
        }
        Watch {
            queued,
            read,
            written,
            idle: settings.idle_timeout.map(|t| self.last_activity + t),
            keepalive: match settings.ping_interval {
                Some(_) if self.ping_outstanding => Some(self.last_ping + settings.pong_timeout),
                Some(interval) => Some(self.last_ping + interval),
                None => None,
            },
            stall: settings.send_timeout.zip(self.stall_since).map(|(t, since)| since + t),
            message: settings.message_timeout.zip(self.message_window).map(|(t, (since, _))| since + t),
            progress,
        }
    }

    /// A keepalive ping was queued at `now`.
    fn pinged(&mut self, now: Instant, watch: &Watch) {
        self.last_ping = now;
        self.ping_outstanding = true;
        self.read_at_ping = watch.read;
        self.backlog_written_at_ping = (watch.queued > 0).then_some(watch.written);
    }
}

impl ConnState {
    /// Whether a data frame may be queued now: `false` when the peer is a slow reader, after
    /// starting its close.
    pub(super) fn admit_send(&mut self, settings: &SessionSettings) -> bool {
        let backlog = self.io.as_ref().map_or(0, |io| io.queued_bytes());
        if backlog < settings.max_send_queue_bytes {
            return true;
        }
        self.server_close(CloseCode::POLICY_VIOLATION, "send queue full", settings);
        self.wake_driver();
        false
    }

    /// A `message_timeout` window of the message in progress ended at `now`: a new window
    /// when it advanced by `message_min_bytes`, else the message is freed and the connection
    /// failed with 1008 "message too slow" (nginx's `client_body_timeout`).
    fn message_window_ended(&mut self, now: Instant, watch: &Watch, settings: &SessionSettings) {
        let Some((_, start)) = self.upkeep.message_window else { return };
        let progress = watch.progress.unwrap_or(start);
        if progress.saturating_sub(start) >= settings.message_min_bytes {
            self.upkeep.message_window = Some((now, progress));
            return;
        }
        self.upkeep.message_window = None;
        BUDGET.message_timed_out();
        tracing::debug!("a message in progress stalled; closing the connection");
        let failure = Failure { code: CloseCode::POLICY_VIOLATION, reason: "message too slow" };
        let timeout = settings.close_timeout;
        let ConnState { io, lifecycle, .. } = self;
        if let Some(io) = io.as_mut() {
            io.abandon_message(failure, |_, event| {
                if let Event::Failure(failure) = event {
                    lifecycle.failed(failure, || Instant::now() + timeout);
                }
            });
        }
        self.send_due_failure_close(false, timeout);
    }

    /// Closes with 1013 when the write queue grew past the in-flight budget (it stays
    /// bounded by `max_send_queue_bytes`; the close frame goes behind it); whether it did.
    pub(super) fn close_if_write_refused(&mut self, settings: &SessionSettings) -> bool {
        if !self.io.as_mut().is_some_and(|io| io.take_write_refused()) {
            return false;
        }
        self.server_close(CloseCode::TRY_AGAIN_LATER, "memory budget exhausted", settings);
        true
    }
}

/// The driver's timer and shutdown signal.
pub(super) struct Timers {
    sleep: Option<Pin<Box<Sleep>>>,
    armed: Option<Instant>,
    /// Wakes the driver when the shutdown starts. Polled once to register, then only once
    /// `draining` is set: polling it means taking the token's lock, which every session
    /// shares, so it is kept off the per-poll path.
    shutdown: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    draining: Option<Arc<AtomicBool>>,
    registered: bool,
}

impl std::fmt::Debug for Timers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timers")
            .field("armed", &self.armed)
            .field("shutdown", &self.shutdown.is_some())
            .finish()
    }
}

/// What a fired timer leaves to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterFire {
    /// Look at the deadlines again (a close started, a ping went out, or the timer fired
    /// early because a deadline moved later).
    Recheck,
    /// The connection is gone.
    Stop,
}

impl Timers {
    pub(super) fn new() -> Timers {
        Timers { sleep: None, armed: None, shutdown: None, draining: None, registered: false }
    }

    /// Closes the connection with 1001 when `token` is cancelled; `draining` is set before
    /// it is.
    pub(super) fn shutdown_on(&mut self, token: CancellationToken, draining: Arc<AtomicBool>) {
        self.shutdown = Some(Box::pin(token.cancelled_owned()));
        self.draining = Some(draining);
        self.registered = false;
    }

    /// Runs the upkeep: shutdown, send-queue limit, and every deadline that has passed; arms
    /// the timer for the next one.
    pub(super) fn check(&mut self, st: &mut ConnState, settings: &SessionSettings, cx: &mut Context<'_>) {
        self.watch_shutdown(st, settings, cx);
        loop {
            if !st.lifecycle.runs_timers() {
                return; // the close deadline takes over
            }
            let Some(io) = st.io.as_ref() else { return };
            let (queued, progress) = (io.queued_bytes(), io.partial_progress());
            if io.queued_behind_front() > settings.max_send_queue_bytes {
                // Frames queued on the handler's behalf (pongs) piled up: the peer does not read.
                st.server_close(CloseCode::POLICY_VIOLATION, "send queue full", settings);
                return;
            }
            let ConnState { upkeep, poll_now, .. } = &mut *st;
            let watch = upkeep.watch(queued, progress, settings, || poll_time(poll_now));
            let Some(next) = watch.next() else { return };
            if !self.poll_timer(next, cx) {
                return;
            }
            if self.fire(st, settings, &watch, cx) == AfterFire::Stop {
                return;
            }
        }
    }

    /// Starts the close 1001 once the server shuts down.
    fn watch_shutdown(&mut self, st: &mut ConnState, settings: &SessionSettings, cx: &mut Context<'_>) {
        let draining = self.draining.as_ref().is_some_and(|d| d.load(Ordering::Acquire));
        if let Some(shutdown) = self.shutdown.as_mut()
            && (draining || !self.registered)
        {
            self.registered = true;
            if shutdown.as_mut().poll(cx).is_ready() {
                self.shutdown = None;
                st.server_close(CloseCode::GOING_AWAY, "going away", settings);
            }
        }
    }

    /// Arms the timer for `next` if that is earlier than it is armed for; whether it fired.
    fn poll_timer(&mut self, next: Instant, cx: &mut Context<'_>) -> bool {
        let rearm = self.armed.is_none_or(|at| next < at);
        if rearm {
            match self.sleep.as_mut() {
                Some(sleep) => sleep.as_mut().reset(next),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(next))),
            }
            self.armed = Some(next);
        }
        // A timer polled once stays registered with this task's waker: poll it again only
        // after re-arming or once it has elapsed, not on every message.
        let due = self.sleep.as_ref().is_some_and(|s| s.is_elapsed());
        (rearm || due) && self.sleep.as_mut().is_some_and(|s| s.as_mut().poll(cx).is_ready())
    }

    /// The timer fired: acts on the first deadline that has passed, in the order idle, send
    /// timeout, keepalive.
    fn fire(
        &mut self,
        st: &mut ConnState,
        settings: &SessionSettings,
        watch: &Watch,
        cx: &mut Context<'_>,
    ) -> AfterFire {
        self.armed = None;
        let now = poll_time(&mut st.poll_now);
        let passed = |deadline: Option<Instant>| deadline.is_some_and(|at| at <= now);
        if passed(watch.idle) {
            st.server_close(CloseCode::GOING_AWAY, "idle", settings);
        } else if passed(watch.stall) {
            st.server_close(CloseCode::POLICY_VIOLATION, "send timeout", settings);
        } else if passed(watch.message) {
            st.message_window_ended(now, watch, settings);
        } else if passed(watch.keepalive) {
            if st.upkeep.ping_outstanding {
                st.drop_dead_peer(cx);
                return AfterFire::Stop;
            }
            if let Some(io) = st.io.as_mut()
                && io.encoder().queue_ping(KEEPALIVE).is_ok()
            {
                st.upkeep.pinged(now, watch);
            }
        }
        AfterFire::Recheck
    }
}
