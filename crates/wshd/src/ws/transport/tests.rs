//! The I/O shell over an in-memory pipe.

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;
use crate::ws::codec::{DataKind, Event};

const LIMITS: Limits = Limits { max_message: 1 << 20, max_frame: 1 << 20 };

/// A waker that counts its wake-ups.
#[derive(Default)]
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn server(capacity: usize) -> (WsIo<DuplexStream>, DuplexStream) {
    let (ours, theirs) = tokio::io::duplex(capacity);
    (WsIo::new(ours, Role::Server, LIMITS, None), theirs)
}

#[tokio::test]
async fn a_small_reply_is_written_straight_through() {
    let (mut ws, mut peer) = server(4096);
    let counter = Arc::new(Counter::default());
    let waker = Waker::from(Arc::clone(&counter));
    let sent = ws.poll_send_data(&mut Context::from_waker(&waker), DataKind::Text, true, b"hi");
    assert_eq!(sent, Ok(()));
    assert_eq!(ws.queued_bytes(), 0, "nothing queued");
    let mut frame = [0u8; 4];
    peer.read_exact(&mut frame).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&frame, b"\x81\x02hi", "written without a flush");
}

#[tokio::test]
async fn what_the_socket_refuses_is_queued_and_the_callers_task_is_woken_for_it() {
    let (mut ws, mut peer) = server(16);
    let counter = Arc::new(Counter::default());
    let waker = Waker::from(Arc::clone(&counter));
    let mut cx = Context::from_waker(&waker);
    let data = [0x5a; 100];
    assert_eq!(ws.poll_send_data(&mut cx, DataKind::Binary, true, &data), Ok(()));
    assert_eq!(ws.queued_bytes(), 102 - 16, "the pipe took 16 bytes");
    assert!(ws.poll_flush(&mut cx).is_pending());
    assert_eq!(counter.0.load(Ordering::SeqCst), 0);
    let mut first = [0u8; 16];
    peer.read_exact(&mut first).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(counter.0.load(Ordering::SeqCst) > 0, "the caller's waker was registered");
    let mut rest = Vec::new();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 102 - 16];
        peer.read_exact(&mut buf).await.map(|_| buf)
    });
    poll_fn(|cx| ws.poll_flush(cx)).await.unwrap_or_else(|e| panic!("{e}"));
    rest.extend(reader.await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(&first[..2], &[0x82, 100]);
    assert!(first[2..].iter().chain(&rest).all(|b| *b == 0x5a));
}

#[tokio::test]
async fn events_are_read_in_order_and_answered_on_the_write_queue() {
    let (mut ws, mut peer) = server(4096);
    let mask = [1, 2, 3, 4];
    let masked = |opcode: u8, payload: &[u8]| {
        let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    };
    let mut wire = masked(0x9, b"ping");
    wire.extend(masked(0x1, b"text"));
    wire.extend(masked(0x8, b"\x03\xe8"));
    peer.write_all(&wire).await.unwrap_or_else(|e| panic!("{e}"));
    let mut events = Vec::new();
    let status = poll_fn(|cx| {
        ws.poll_read(cx, |encoder, event| {
            if let Event::Ping(payload) = &event {
                encoder.queue_pong(payload.clone());
            }
            events.push(event);
        })
    })
    .await;
    assert_eq!(status, ReadStatus::Ended, "the close ends reading");
    assert_eq!(
        events,
        vec![
            Event::Ping(Bytes::from_static(b"ping")),
            Event::Text(b"text".to_vec()),
            Event::Close(wshd_sdk::CloseCode::NORMAL, Bytes::new())
        ]
    );
    poll_fn(|cx| ws.poll_flush(cx)).await.unwrap_or_else(|e| panic!("{e}"));
    let mut pong = [0u8; 6];
    peer.read_exact(&mut pong).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&pong, b"\x8a\x04ping");
    assert_eq!(poll_fn(|cx| ws.poll_read(cx, |_, _| {})).await, ReadStatus::Ended, "nothing more is read");
    drop(peer);
    let (mut ws, peer) = server(64);
    drop(peer);
    assert_eq!(poll_fn(|cx| ws.poll_read(cx, |_, _| {})).await, ReadStatus::Ended, "end of stream");
    assert!(matches!(
        ws.poll_send_data(&mut Context::from_waker(Waker::noop()), DataKind::Text, true, b"x"),
        Ok(())
    ));
    assert!(
        matches!(poll_fn(|cx| Poll::Ready(ws.poll_flush(cx))).await, Poll::Ready(Err(_))),
        "a write to a closed pipe fails"
    );
}
