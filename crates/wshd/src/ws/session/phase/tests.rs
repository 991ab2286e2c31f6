//! The phase's transitions, without a socket.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use wshd_sdk::CloseCode;

use super::*;

fn failure() -> Failure {
    Failure { code: CloseCode::INVALID_PAYLOAD, reason: "invalid UTF-8 in a text message" }
}

fn code(n: u16) -> CloseCode {
    CloseCode::new(n).unwrap_or_else(|| panic!("{n}"))
}

#[test]
fn a_peer_close_is_answered_with_its_code_or_the_chosen_reply() {
    let mut l = Lifecycle::new();
    let answer = l.peer_closed(code(4000), Bytes::from_static(b"bye"));
    assert_eq!(answer, Some(CloseFrame { code: Some(code(4000)), reason: Bytes::from_static(b"bye") }));
    assert_eq!(l.phase(), Phase::Finishing { deadline: None });
    assert!(!l.may_send() && !l.is_reading());
    assert_eq!(l.status(), Some(&(code(4000), Bytes::from_static(b"bye"))));
    assert!(l.finish_if_written(true) && l.is_tcp_closed());
    assert_eq!(l.outcome(), CloseOutcome { code: code(4000), initiator: "client", reason: "" });

    let mut l = Lifecycle::new();
    assert_eq!(
        l.peer_closed(CloseCode::NO_STATUS, Bytes::new()),
        Some(CloseFrame { code: None, reason: Bytes::new() })
    );
    let mut l = Lifecycle::new();
    l.set_reply(Some((code(4001), Bytes::from_static(b"mine"))));
    let answer = l.peer_closed(CloseCode::NORMAL, Bytes::new());
    assert_eq!(answer, Some(CloseFrame { code: Some(code(4001)), reason: Bytes::from_static(b"mine") }));
}

#[test]
fn our_close_waits_for_the_peers_until_the_deadline() {
    let now = Instant::now();
    let deadline = now + Duration::from_secs(5);
    let mut l = Lifecycle::new();
    assert!(l.begin_close(CloseCode::NORMAL, || deadline));
    assert!(!l.begin_close(CloseCode::GOING_AWAY, || deadline), "once");
    assert_eq!((l.phase(), l.close_deadline()), (Phase::ClosingByUs { deadline }, Some(deadline)));
    assert!(l.is_reading() && !l.may_send() && !l.runs_timers());
    assert!(!l.finish_if_written(true), "the peer has not answered");
    assert_eq!(l.peer_closed(CloseCode::NORMAL, Bytes::new()), None, "no answer to an answer");
    assert_eq!(l.phase(), Phase::Finishing { deadline: Some(deadline) });
    assert!(!l.finish_if_written(false), "our close is not written yet");
    assert!(l.finish_if_written(true));
    assert_eq!(l.outcome(), CloseOutcome { code: CloseCode::NORMAL, initiator: "server", reason: "" });

    let mut l = Lifecycle::new();
    l.begin_close(CloseCode::NORMAL, || deadline);
    l.close_timed_out();
    assert_eq!((l.phase(), l.status_code()), (Phase::Closed, CloseCode::ABNORMAL));
    assert_eq!(l.outcome().initiator, "server");
}

#[test]
fn a_failure_waits_for_the_messages_before_it_then_closes_with_its_code() {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut l = Lifecycle::new();
    l.failed(failure(), || panic!("no deadline yet"));
    assert_eq!(l.phase(), Phase::Failed { failure: failure(), reading: true });
    assert!(l.may_send(), "the handler may still answer what came before");
    assert_eq!(l.status_code(), CloseCode::INVALID_PAYLOAD, "the handler is told the failure");
    assert_eq!(l.failure_close_due(false, false, || deadline), None, "messages still queued");
    assert_eq!(l.failure_close_due(true, false, || deadline), Some(failure()));
    assert_eq!(l.phase(), Phase::ClosingByUs { deadline });
    l.peer_closed(CloseCode::NORMAL, Bytes::new());
    assert_eq!(l.status_code(), CloseCode::INVALID_PAYLOAD, "the first close the handler is told stays");
    assert_eq!(
        l.outcome(),
        CloseOutcome { code: CloseCode::INVALID_PAYLOAD, initiator: "server", reason: "" }
    );

    // The handler's return sends it even with messages queued; after the end of the stream
    // TCP closes once it is written.
    let mut l = Lifecycle::new();
    l.failed(failure(), || panic!("no deadline yet"));
    l.read_ended();
    assert_eq!(l.phase(), Phase::Failed { failure: failure(), reading: false });
    assert_eq!(l.failure_close_due(false, true, || deadline), Some(failure()));
    assert_eq!(l.phase(), Phase::Finishing { deadline: Some(deadline) });

    // After our close, a failure restarts the peer's time to answer.
    let later = deadline + Duration::from_secs(1);
    let mut l = Lifecycle::new();
    l.begin_close(CloseCode::NORMAL, || deadline);
    l.failed(failure(), || later);
    assert_eq!(l.phase(), Phase::ClosingByUs { deadline: later });
}

#[test]
fn the_end_of_the_stream_is_1006_and_the_handler_may_still_close() {
    let mut l = Lifecycle::new();
    l.read_ended();
    assert_eq!((l.phase(), l.status_code()), (Phase::ReadEnded, CloseCode::ABNORMAL));
    assert!(l.may_send() && !l.is_reading() && !l.runs_timers());
    assert!(l.begin_close(CloseCode::NORMAL, || panic!("nothing to wait for")));
    assert_eq!(l.phase(), Phase::Finishing { deadline: None });
    assert!(l.finish_if_written(true));
    assert_eq!(l.outcome(), CloseOutcome { code: CloseCode::NORMAL, initiator: "server", reason: "" });

    let mut l = Lifecycle::new();
    l.read_ended();
    l.end();
    assert_eq!(l.outcome(), CloseOutcome { code: CloseCode::ABNORMAL, initiator: "none", reason: "" });
}

#[test]
fn server_closes_dead_peers_and_aborts_are_recorded() {
    let mut l = Lifecycle::new();
    assert!(l.server_close("idle"));
    assert!(l.begin_close(CloseCode::GOING_AWAY, Instant::now));
    assert!(!l.server_close("going away"), "a close is under way");
    assert_eq!(
        l.outcome(),
        CloseOutcome { code: CloseCode::GOING_AWAY, initiator: "server", reason: "idle" }
    );

    let mut l = Lifecycle::new();
    l.peer_dead();
    assert_eq!((l.phase(), l.status_code()), (Phase::Closed, CloseCode::ABNORMAL));
    assert_eq!(
        l.outcome(),
        CloseOutcome { code: CloseCode::ABNORMAL, initiator: "server", reason: "pong timeout" }
    );

    let mut l = Lifecycle::new();
    l.abort();
    l.end();
    assert!(l.is_aborted() && l.is_tcp_closed() && !l.may_send() && !l.is_reading());
    assert_eq!(
        l.outcome(),
        CloseOutcome { code: CloseCode::ABNORMAL, initiator: "server", reason: "aborted by the handler" }
    );
}
