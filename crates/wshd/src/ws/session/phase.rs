//! The connection's phase, and every transition of it: the one place that decides whether a
//! frame may still be sent or read, when our close goes out, when TCP is closed, and what the
//! handler and the access log are told about the close.
//!
//! | from | event | to | queued |
//! |---|---|---|---|
//! | `Open` | the peer's close | `Finishing` | the answer (echo, or the handler's reply) |
//! | `Open` | our close (handler, server, handler's return) | `ClosingByUs` | our close |
//! | `Open` | protocol failure | `Failed` | — (the messages before it go first) |
//! | `Open` | end of stream (or a failed write) | `ReadEnded` | — |
//! | `Failed` | messages before it taken, or the handler gone | `ClosingByUs` (`Finishing` if no longer read) | the failure's close |
//! | `Failed` | our close | `ClosingByUs` (`Finishing` if no longer read) | our close |
//! | `Failed` | the peer's close, end of stream | `Failed`, no longer read | — |
//! | `ReadEnded` | our close | `Finishing` | our close |
//! | `ClosingByUs` | the peer's close, end of stream | `Finishing` | — |
//! | `ClosingByUs` | protocol failure | `ClosingByUs`, the deadline restarted | — |
//! | `Finishing` | queue written | `Closed` | — |
//! | `ClosingByUs`, `Finishing` | close deadline passed | `Closed` | — |
//! | `Open`, `Failed` (read) | no answer to a keepalive ping | `Closed` | a best-effort close 1011 |
//! | any | the handler aborts | `Aborted` | — |
//! | any but `Aborted` | the session ends | `Closed` | — |
//!
//! This module is pure: it changes state and says what to send; `ConnState` (`state.rs`)
//! queues the frames and drops the socket.

use bytes::Bytes;
use tokio::time::Instant;
use wshd_sdk::CloseCode;

use crate::ws::transport::Failure;

/// Where a connection is in its life (RFC 6455 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Messages flow both ways.
    Open,
    /// The peer broke the protocol. Our close with the failure's code goes out once the
    /// handler has taken the messages that arrived before the failure (or is gone); until
    /// then the handler may still answer them. Only the peer's close is still read, while
    /// `reading`.
    Failed { failure: Failure, reading: bool },
    /// Our close frame is queued: frames are still read (data is delivered, unless the close
    /// follows a failure) until the peer's close arrives or `deadline` passes.
    ClosingByUs { deadline: Instant },
    /// The stream ended without a close frame and ours is not sent: the handler is told 1006
    /// and may still send; its return sends our close.
    ReadEnded,
    /// Nothing more is read and our close frame (or answer) is queued: TCP closes once the
    /// queue is written, or when `deadline` passes.
    Finishing { deadline: Option<Instant> },
    /// TCP is closed.
    Closed,
    /// The handler dropped TCP without a close frame.
    Aborted,
}

/// A close frame to queue: `code` and `reason`, or an empty body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CloseFrame {
    /// `None`: an empty body.
    pub(super) code: Option<CloseCode>,
    /// UTF-8, at most 123 bytes.
    pub(super) reason: Bytes,
}

/// How the closing handshake went, for the access log and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CloseOutcome {
    /// The close code of the closing handshake (1006 when there was none).
    pub(super) code: CloseCode,
    /// Who closed first: `client`, `server` or `none` (the TCP connection just ended).
    pub(super) initiator: &'static str,
    /// Why the server closed on its own (`idle`, `going away`, `pong timeout`, …), or "".
    pub(super) reason: &'static str,
}

/// The connection's phase and what its transitions recorded.
#[derive(Debug)]
pub(super) struct Lifecycle {
    phase: Phase,
    /// What the handler is told once its queue is empty: the peer's close, ours after a
    /// protocol failure, or 1006 when the connection ended without one (the first wins).
    status: Option<(CloseCode, Bytes)>,
    /// The answer to the peer's close; `None` echoes its code and reason.
    reply: Option<(CloseCode, Bytes)>,
    /// Our close frame's code, and whether it went out before the peer's close arrived.
    ours: Option<(CloseCode, bool)>,
    /// The peer's close frame arrived.
    peer_closed: bool,
    /// Why the server closed on its own, if it did.
    server_reason: Option<&'static str>,
}

impl Lifecycle {
    /// A connection whose handshake is done.
    pub(super) fn new() -> Lifecycle {
        Lifecycle {
            phase: Phase::Open,
            status: None,
            reply: None,
            ours: None,
            peer_closed: false,
            server_reason: None,
        }
    }

    /// The current phase.
    #[cfg(test)]
    pub(super) fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the socket is still read.
    pub(super) fn is_reading(&self) -> bool {
        matches!(self.phase, Phase::Open | Phase::Failed { reading: true, .. } | Phase::ClosingByUs { .. })
    }

    /// Whether frames may still be queued: our close is not, and TCP is open.
    pub(super) fn may_send(&self) -> bool {
        matches!(self.phase, Phase::Open | Phase::Failed { .. } | Phase::ReadEnded)
    }

    /// Whether TCP is closed (the socket dropped).
    pub(super) fn is_tcp_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed | Phase::Aborted)
    }

    /// Whether the handler aborted the connection.
    pub(super) fn is_aborted(&self) -> bool {
        self.phase == Phase::Aborted
    }

    /// Whether the keepalive, idle and slow-reader timers run: only while both directions
    /// are open (a close under way has its own deadline).
    pub(super) fn runs_timers(&self) -> bool {
        matches!(self.phase, Phase::Open | Phase::Failed { reading: true, .. })
    }

    /// A protocol failure waits for its close.
    pub(super) fn has_pending_failure(&self) -> bool {
        matches!(self.phase, Phase::Failed { .. })
    }

    /// When TCP is closed if the closing handshake has not completed by then.
    pub(super) fn close_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::ClosingByUs { deadline } => Some(deadline),
            Phase::Finishing { deadline } => deadline,
            _ => None,
        }
    }

    /// What the handler is told once its queue is empty, if anything yet.
    pub(super) fn status(&self) -> Option<&(CloseCode, Bytes)> {
        self.status.as_ref()
    }

    /// The close code the handler was told, 1006 when none.
    pub(super) fn status_code(&self) -> CloseCode {
        self.status.as_ref().map_or(CloseCode::ABNORMAL, |(code, _)| *code)
    }

    /// Chooses the answer to the peer's close (`None`: echo it).
    pub(super) fn set_reply(&mut self, reply: Option<(CloseCode, Bytes)>) {
        self.reply = reply;
    }

    fn tell(&mut self, code: CloseCode, reason: Bytes) {
        self.status.get_or_insert((code, reason));
    }

    /// The peer's close frame arrived. Returns the answer to queue when ours is not queued
    /// yet (none after a protocol failure: that close is still due).
    pub(super) fn peer_closed(&mut self, code: CloseCode, reason: Bytes) -> Option<CloseFrame> {
        self.peer_closed = true;
        let answer = match self.phase {
            Phase::Open => {
                self.phase = Phase::Finishing { deadline: None };
                Some(match &self.reply {
                    Some((code, reason)) => CloseFrame { code: Some(*code), reason: reason.clone() },
                    None if code != CloseCode::NO_STATUS => {
                        CloseFrame { code: Some(code), reason: reason.clone() }
                    }
                    None => CloseFrame { code: None, reason: Bytes::new() },
                })
            }
            Phase::Failed { failure, .. } => {
                self.phase = Phase::Failed { failure, reading: false };
                None
            }
            Phase::ClosingByUs { deadline } => {
                self.phase = Phase::Finishing { deadline: Some(deadline) };
                None
            }
            Phase::ReadEnded | Phase::Finishing { .. } | Phase::Closed | Phase::Aborted => None,
        };
        self.tell(code, reason);
        answer
    }

    /// The peer broke the protocol. A failure after our close gives the peer the close
    /// timeout afresh (from `restart`).
    pub(super) fn failed(&mut self, failure: Failure, restart: impl FnOnce() -> Instant) {
        self.tell(failure.code, Bytes::from_static(failure.reason.as_bytes()));
        match self.phase {
            Phase::Open => self.phase = Phase::Failed { failure, reading: true },
            Phase::ClosingByUs { .. } => self.phase = Phase::ClosingByUs { deadline: restart() },
            _ => {}
        }
    }

    /// Nothing more will be read: the stream ended (or failed, or cannot be decoded further),
    /// or the peer's close arrived.
    pub(super) fn read_ended(&mut self) {
        self.tell(CloseCode::ABNORMAL, Bytes::new());
        match self.phase {
            Phase::Open => self.phase = Phase::ReadEnded,
            Phase::Failed { failure, .. } => self.phase = Phase::Failed { failure, reading: false },
            Phase::ClosingByUs { deadline } => self.phase = Phase::Finishing { deadline: Some(deadline) },
            _ => {}
        }
    }

    /// Our close with `code` (the handler's, the server's, or the one the handler's return
    /// means): `true` when the caller must queue it, i.e. it is the first one and TCP is open.
    /// The peer then has until `deadline()` to answer (when it is still read).
    pub(super) fn begin_close(&mut self, code: CloseCode, deadline: impl FnOnce() -> Instant) -> bool {
        let reading = match self.phase {
            Phase::Open | Phase::Failed { reading: true, .. } => true,
            Phase::ReadEnded | Phase::Failed { reading: false, .. } => false,
            Phase::ClosingByUs { .. } | Phase::Finishing { .. } | Phase::Closed | Phase::Aborted => {
                return false;
            }
        };
        self.ours.get_or_insert((code, !self.peer_closed));
        self.phase = if reading {
            Phase::ClosingByUs { deadline: deadline() }
        } else {
            Phase::Finishing { deadline: None }
        };
        true
    }

    /// The pending failure's close, once it is due (the messages before the failure were
    /// taken, or the handler is gone): the caller queues it. The peer has until `deadline()`
    /// to answer.
    pub(super) fn failure_close_due(
        &mut self,
        queue_empty: bool,
        handler_done: bool,
        deadline: impl FnOnce() -> Instant,
    ) -> Option<Failure> {
        let Phase::Failed { failure, reading } = self.phase else { return None };
        if !(queue_empty || handler_done) {
            return None;
        }
        self.ours.get_or_insert((failure.code, !self.peer_closed));
        let deadline = deadline();
        self.phase = if reading {
            Phase::ClosingByUs { deadline }
        } else {
            Phase::Finishing { deadline: Some(deadline) }
        };
        Some(failure)
    }

    /// A close the server decided on with `reason`: whether it starts now (the caller then
    /// makes it with [`begin_close`](Self::begin_close)).
    pub(super) fn server_close(&mut self, reason: &'static str) -> bool {
        if !self.may_send() {
            return false;
        }
        self.server_reason.get_or_insert(reason);
        true
    }

    /// Whether everything queued went out in [`Phase::Finishing`]: the closing handshake is
    /// over, TCP is closed. Returns whether TCP is closed now.
    pub(super) fn finish_if_written(&mut self, written: bool) -> bool {
        match self.phase {
            Phase::Finishing { .. } if written => {
                self.phase = Phase::Closed;
                true
            }
            Phase::Closed | Phase::Aborted => true,
            _ => false,
        }
    }

    /// The close deadline passed without the closing handshake completing: TCP is closed.
    pub(super) fn close_timed_out(&mut self) {
        self.tell(CloseCode::ABNORMAL, Bytes::new());
        self.phase = Phase::Closed;
    }

    /// The peer sent nothing after a keepalive ping: TCP is closed after a best-effort close
    /// (which the caller sends), as if no close had been exchanged.
    pub(super) fn peer_dead(&mut self) {
        self.server_reason.get_or_insert("pong timeout");
        self.ours.get_or_insert((CloseCode::ABNORMAL, true));
        self.tell(CloseCode::ABNORMAL, Bytes::new());
        self.phase = Phase::Closed;
    }

    /// The handler dropped TCP.
    pub(super) fn abort(&mut self) {
        self.phase = Phase::Aborted;
    }

    /// The session is over: TCP is closed (if it was not already).
    pub(super) fn end(&mut self) {
        if self.phase != Phase::Aborted {
            self.phase = Phase::Closed;
        }
    }

    /// How the closing handshake went.
    pub(super) fn outcome(&self) -> CloseOutcome {
        let aborted = self.is_aborted();
        let (code, initiator) = match (self.ours, &self.status) {
            (Some((code, true)), _) => (code, "server"),
            (_, Some((code, _))) if self.peer_closed => (*code, "client"),
            _ if aborted => (CloseCode::ABNORMAL, "server"),
            _ => (CloseCode::ABNORMAL, "none"),
        };
        let reason = match self.server_reason {
            None if aborted => "aborted by the handler",
            reason => reason.unwrap_or(""),
        };
        CloseOutcome { code, initiator, reason }
    }
}

#[cfg(test)]
mod tests;
