//! [`Mailbox`]: frames built elsewhere (room messages) waiting to join a connection's write
//! queue. Any task pushes a pre-built frame (a shared `Bytes`: the same buffer for every
//! recipient); the connection's driver moves them into its encoder between the handler's
//! messages, never inside a fragmented one, and only while the socket keeps up, so a reader
//! that does not read fills this bounded queue, not the encoder. Past the bound, the
//! [`Overflow`] policy applies.
//!
//! A connection gets a mailbox only when something asks for it (it joins a room or asks its
//! id): the driver of a connection without one does one `Option` check per poll.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Waker};

use bytes::Bytes;
use wshd_sdk::CloseCode;

use super::SessionSettings;
use super::shared::SEND_HIGH_WATER;
use super::state::ConnState;
use crate::ws::transport::SharedDeflate;

/// What happens when a frame would take a mailbox past its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overflow {
    /// Close the connection with 1008 (the frame and all later ones are dropped).
    Close,
    /// Drop the oldest queued frames until the new one fits (a route's choice:
    /// `[route.rooms] overflow = "drop_oldest"`).
    DropOldest,
}

/// A mailbox's bounds and overflow policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MailboxLimits {
    /// Bytes of frames queued (at least one frame is always taken).
    pub(crate) max_bytes: usize,
    /// Frames queued.
    pub(crate) max_frames: usize,
    /// What to do past either bound.
    pub(crate) overflow: Overflow,
}

/// What became of a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued; `dropped` older frames made room for it.
    Queued {
        /// Frames dropped (the `DropOldest` policy).
        dropped: usize,
    },
    /// It overflowed the mailbox under the `Close` policy: the connection closes with 1008.
    Overflowed,
    /// The connection is gone or overflowed before: nothing was queued.
    Closed,
}

/// A frame waiting, and the payload length it counts as (for the traffic counters).
#[derive(Debug)]
struct Waiting {
    frame: Bytes,
    payload_len: usize,
}

/// What the mailbox's lock guards.
#[derive(Debug, Default)]
struct Inner {
    frames: VecDeque<Waiting>,
    bytes: usize,
    /// The session ended (or the mailbox overflowed under `Close`): pushes are refused.
    closed: bool,
    /// It overflowed under `Close`: the driver closes with 1008.
    overflowed: bool,
    /// The driver's waker, woken when the first frame arrives.
    waker: Option<Waker>,
}

/// Frames built elsewhere, waiting for one connection's write queue; see the module docs.
#[derive(Debug)]
pub(crate) struct Mailbox {
    limits: MailboxLimits,
    /// The connection takes frames compressed once for many connections with these
    /// parameters (`rooms::framed`); `None`: plain frames only.
    deflate: Option<SharedDeflate>,
    inner: Mutex<Inner>,
}

/// What the driver takes out in one step.
#[derive(Debug, Default)]
pub(super) struct Taken {
    /// The frames, oldest first, with their payload lengths.
    pub(super) frames: Vec<(Bytes, usize)>,
    /// The mailbox overflowed under `Close`.
    pub(super) overflowed: bool,
}

impl Mailbox {
    /// An empty mailbox with `limits`.
    pub(crate) fn new(limits: MailboxLimits, deflate: Option<SharedDeflate>) -> Mailbox {
        Mailbox { limits, deflate, inner: Mutex::new(Inner::default()) }
    }

    /// The shared-compression parameters of the connection, if it takes compressed frames.
    #[inline]
    pub(crate) fn deflate(&self) -> Option<SharedDeflate> {
        self.deflate
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `frame` (a whole frame whose payload is `payload_len` bytes) and wakes the
    /// connection's driver; the policy applies past the limits.
    pub(crate) fn push(&self, frame: Bytes, payload_len: usize) -> Pushed {
        let mut inner = self.lock();
        if inner.closed {
            return Pushed::Closed;
        }
        let mut dropped = 0;
        while !inner.frames.is_empty()
            && (inner.bytes + frame.len() > self.limits.max_bytes
                || inner.frames.len() >= self.limits.max_frames)
        {
            if self.limits.overflow == Overflow::Close {
                inner.closed = true;
                inner.overflowed = true;
                inner.frames.clear();
                inner.bytes = 0;
                wake(&mut inner);
                return Pushed::Overflowed;
            }
            if let Some(old) = inner.frames.pop_front() {
                inner.bytes -= old.frame.len();
                dropped += 1;
            }
        }
        inner.bytes += frame.len();
        inner.frames.push_back(Waiting { frame, payload_len });
        wake(&mut inner);
        Pushed::Queued { dropped }
    }

    /// Keeps `waker` (the connection's driver's) to be woken by the next push.
    pub(crate) fn register(&self, waker: &Waker) {
        let mut inner = self.lock();
        if !inner.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            inner.waker = Some(waker.clone());
        }
    }

    /// Whether the connection is gone (or closing after an overflow).
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// The session ended: later pushes are refused and what waits is dropped.
    pub(crate) fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.frames.clear();
        inner.bytes = 0;
        inner.waker = None;
    }

    /// Frames waiting now.
    pub(crate) fn len(&self) -> usize {
        self.lock().frames.len()
    }

    /// Whether no frame waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes every waiting frame (unit tests: a mailbox without a session).
    #[cfg(test)]
    pub(crate) fn drain(&self) -> Vec<Bytes> {
        let mut inner = self.lock();
        inner.bytes = 0;
        inner.frames.drain(..).map(|w| w.frame).collect()
    }

    /// Takes frames, oldest first, up to `budget` bytes (at least one when any waits and
    /// `budget` is not 0), and keeps `waker` to be woken by the next push.
    pub(super) fn take(&self, budget: usize, waker: &Waker) -> Taken {
        self.register(waker);
        let mut inner = self.lock();
        let mut taken = Taken { overflowed: inner.overflowed, ..Taken::default() };
        let mut used = 0;
        while let Some(front) = inner.frames.front() {
            if budget == 0 || (used > 0 && used + front.frame.len() > budget) {
                break;
            }
            used += front.frame.len();
            if let Some(w) = inner.frames.pop_front() {
                inner.bytes -= w.frame.len();
                taken.frames.push((w.frame, w.payload_len));
            }
        }
        taken
    }
}

/// Wakes the driver waiting on `inner` (taking its waker: the driver registers again on its
/// next take).
fn wake(inner: &mut Inner) {
    if let Some(w) = inner.waker.take() {
        w.wake();
    }
}

impl ConnState {
    /// Moves room frames from the mailbox (if the connection has one) into the write queue:
    /// not inside a fragmented message of the handler's, and only while the write queue is
    /// under the high-water mark (the rest waits in the bounded mailbox). An overflow under
    /// the `Close` policy closes with 1008.
    pub(super) fn deliver_mailbox(&mut self, settings: &SessionSettings, cx: &mut Context<'_>) {
        let Some(slot) = self.room.as_ref() else { return };
        let mailbox = std::sync::Arc::clone(&slot.mailbox);
        let budget = match self.io.as_mut() {
            Some(io) if self.lifecycle.may_send() && !io.is_mid_message() => {
                SEND_HIGH_WATER.saturating_sub(io.queued_bytes())
            }
            _ => 0,
        };
        let taken = mailbox.take(budget, cx.waker());
        if taken.overflowed {
            self.server_close(CloseCode::POLICY_VIOLATION, "room backlog full", settings);
            return;
        }
        let Some(io) = self.io.as_mut() else { return };
        for (frame, payload_len) in taken.frames {
            io.encoder().queue_prebuilt(frame);
            self.upkeep.frame_out(payload_len, true);
        }
    }

    /// Whether room frames wait although they could join the write queue now.
    pub(super) fn mail_fits(&mut self) -> bool {
        let Some(slot) = self.room.as_ref() else { return false };
        let may_send = self.lifecycle.may_send();
        match self.io.as_mut() {
            Some(io) => {
                may_send
                    && !io.is_mid_message()
                    && io.queued_bytes() < SEND_HIGH_WATER
                    && !slot.mailbox.is_empty()
            }
            None => false,
        }
    }
}
