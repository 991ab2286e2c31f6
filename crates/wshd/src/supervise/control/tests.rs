//! Tests of the control channel over real socket pairs.

use std::os::fd::{AsFd, IntoRawFd};
use std::sync::atomic::AtomicUsize;

use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

use super::*;

const SECOND: Duration = Duration::from_secs(5);

fn pair() -> (UnixStream, UnixStream) {
    UnixStream::pair().unwrap_or_else(|e| panic!("socket pair: {e}"))
}

/// A worker serving `b` whose metrics are "metrics <n>" (n counts requests), and its event
/// sender; the join handle gives the loop's result.
fn spawn_worker(b: UnixStream) -> (JoinHandle<Result<(), ControlError>>, mpsc::Sender<WorkerEvent>) {
    let (events, events_rx) = mpsc::channel(4);
    let count = AtomicUsize::new(0);
    let answer = move || format!("metrics {}", count.fetch_add(1, Ordering::Relaxed));
    (tokio::spawn(serve_worker(b, answer, events_rx)), events)
}

async fn next<R: AsyncRead + Unpin>(reader: &mut FrameReader<R>) -> Result<Option<Message>, ControlError> {
    timeout(SECOND, reader.next()).await.unwrap_or_else(|_| panic!("no frame in time"))
}

fn frame(message: &Message) -> Vec<u8> {
    message.encode().unwrap_or_else(|e| panic!("encode: {e}"))
}

#[tokio::test]
async fn frames_round_trip() {
    let messages = [
        Message::MetricsRequest { id: u64::MAX },
        Message::MetricsReply { id: 7, text: "# EOF\n".to_owned() },
        Message::MetricsReply { id: 0, text: String::new() },
        Message::Ready,
        Message::Draining,
    ];
    let bytes: Vec<u8> = messages.iter().flat_map(frame).collect();
    assert_eq!(&bytes[..HEADER + 8], [0, 0, 0, 8, 0x01, 255, 255, 255, 255, 255, 255, 255, 255]);
    let mut reader = FrameReader::new(bytes.as_slice());
    for message in messages {
        assert_eq!(next(&mut reader).await.ok().flatten(), Some(message));
    }
    assert!(matches!(next(&mut reader).await, Ok(None)));
}

#[tokio::test]
async fn requests_are_answered() {
    let (a, b) = pair();
    let (worker, _events) = spawn_worker(b);
    let (link, _events) = WorkerLink::new(a);
    assert_eq!(link.metrics(SECOND).await.as_deref(), Some("metrics 0"));
    assert_eq!(link.metrics(SECOND).await.as_deref(), Some("metrics 1"));
    let (x, y) = tokio::join!(link.metrics(SECOND), link.metrics(SECOND));
    let mut both = [x, y].map(|m| m.unwrap_or_else(|| panic!("no answer")));
    both.sort();
    assert_eq!(both, ["metrics 2", "metrics 3"], "concurrent requests take turns");
    assert_eq!(link.timeouts(), 0);
    drop(link);
    let ended = timeout(SECOND, worker).await.unwrap_or_else(|_| panic!("the worker loop did not end"));
    assert!(matches!(ended, Ok(Ok(()))), "EOF ends the worker loop cleanly: {ended:?}");
}

#[tokio::test]
async fn eof_ends_the_worker_loop() {
    let (a, b) = pair();
    let (worker, events) = spawn_worker(b);
    drop(a);
    let ended = timeout(SECOND, worker).await.unwrap_or_else(|_| panic!("the worker loop did not end"));
    assert!(matches!(ended, Ok(Ok(()))), "EOF ends the loop cleanly, events open or not: {ended:?}");
    drop(events);
}

#[tokio::test]
async fn events_are_forwarded_and_a_dead_worker_closes_the_link() {
    let (a, b) = pair();
    let (worker, events) = spawn_worker(b);
    let (link, mut events_rx) = WorkerLink::new(a);
    for event in [WorkerEvent::Ready, WorkerEvent::Draining] {
        events.send(event).await.unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(timeout(SECOND, events_rx.recv()).await.ok().flatten(), Some(WorkerEvent::Ready));
    assert_eq!(timeout(SECOND, events_rx.recv()).await.ok().flatten(), Some(WorkerEvent::Draining));
    drop(events);
    assert_eq!(link.metrics(SECOND).await.as_deref(), Some("metrics 0"), "still answering");
    worker.abort();
    assert_eq!(timeout(SECOND, events_rx.recv()).await.ok().flatten(), None, "closed at EOF");
    assert!(link.is_closed());
    let started = tokio::time::Instant::now();
    assert_eq!(link.metrics(SECOND).await, None);
    assert!(started.elapsed() < SECOND / 2, "a closed link answers at once");
}

#[tokio::test]
async fn a_request_in_flight_gets_none_when_the_worker_dies() {
    let (a, b) = pair();
    let (link, _events) = WorkerLink::new(a);
    let mut reader = FrameReader::new(b);
    let (answer, read) = tokio::join!(link.metrics(SECOND), async {
        let request = next(&mut reader).await;
        drop(reader);
        request
    });
    assert!(matches!(read, Ok(Some(Message::MetricsRequest { .. }))));
    assert_eq!(answer, None);
}

#[tokio::test]
async fn a_late_reply_is_dropped_and_the_next_request_works() {
    let (a, b) = pair();
    let (link, _events) = WorkerLink::new(a);
    // A slow worker: answers the first request only after the second came, stale first.
    let slow = tokio::spawn(async move {
        let (read, mut write) = b.into_split();
        let mut reader = FrameReader::new(read);
        let mut ids = Vec::new();
        for _ in 0..2 {
            match next(&mut reader).await {
                Ok(Some(Message::MetricsRequest { id })) => ids.push(id),
                other => panic!("expected a request, got {other:?}"),
            }
        }
        for (id, text) in [(ids[0], "stale"), (ids[1], "fresh")] {
            let reply = Message::MetricsReply { id, text: text.to_owned() };
            write_message(&mut write, &reply).await.unwrap_or_else(|e| panic!("{e}"));
        }
        write
    });
    assert_eq!(link.metrics(Duration::from_millis(50)).await, None);
    assert_eq!(link.timeouts(), 1);
    assert_eq!(link.metrics(SECOND).await.as_deref(), Some("fresh"));
    let _write = slow.await;
}

#[tokio::test]
async fn a_stale_reply_before_the_next_request_is_dropped_too() {
    let (a, b) = pair();
    let (link, _events) = WorkerLink::new(a);
    let (read, mut write) = b.into_split();
    let mut reader = FrameReader::new(read);
    assert_eq!(link.metrics(Duration::from_millis(20)).await, None);
    let Ok(Some(Message::MetricsRequest { id })) = next(&mut reader).await else {
        panic!("expected a request");
    };
    let stale = Message::MetricsReply { id, text: "stale".to_owned() };
    write_message(&mut write, &stale).await.unwrap_or_else(|e| panic!("{e}"));
    let worker = async {
        let Ok(Some(Message::MetricsRequest { id })) = next(&mut reader).await else {
            panic!("expected a request");
        };
        let fresh = Message::MetricsReply { id, text: "fresh".to_owned() };
        write_message(&mut write, &fresh).await.unwrap_or_else(|e| panic!("{e}"));
    };
    let (answer, ()) = tokio::join!(link.metrics(SECOND), worker);
    assert_eq!(answer.as_deref(), Some("fresh"));
}

#[tokio::test]
async fn an_oversized_length_is_refused() {
    let too_long = MAX_PAYLOAD + 1;
    let mut bytes = too_long.to_be_bytes().to_vec();
    bytes.push(kind::METRICS_REPLY);
    let mut reader = FrameReader::new(bytes.as_slice());
    let refused = next(&mut reader).await;
    assert!(matches!(refused, Err(ControlError::TooLarge(n)) if n == u64::from(too_long)), "{refused:?}");
    assert!(refused.as_ref().is_err_and(ControlError::is_fatal));
    assert!(matches!(next(&mut reader).await, Err(ControlError::TooLarge(_))), "and stays refused");

    let (mut a, b) = pair();
    let (worker, _events) = spawn_worker(b);
    a.write_all(&u32::MAX.to_be_bytes()).await.unwrap_or_else(|e| panic!("{e}"));
    a.write_all(&[kind::METRICS_REQUEST]).await.unwrap_or_else(|e| panic!("{e}"));
    let ended = timeout(SECOND, worker).await.unwrap_or_else(|_| panic!("the worker loop did not end"));
    assert!(matches!(ended, Ok(Err(ControlError::TooLarge(_)))), "{ended:?}");

    let huge = Message::MetricsReply { id: 1, text: "x".repeat(MAX_PAYLOAD as usize) };
    assert!(matches!(huge.encode(), Err(ControlError::TooLarge(_))), "nor sent");
}

#[tokio::test]
async fn unknown_kinds_and_bad_payloads_are_skipped() {
    let mut bytes = vec![0, 0, 0, 3, 0x7f, b'x', b'y', b'z'];
    bytes.extend_from_slice(&[0, 0, 0, 3, kind::METRICS_REQUEST, 1, 2, 3]);
    bytes.extend_from_slice(&[0, 0, 0, 9, kind::METRICS_REPLY, 0, 0, 0, 0, 0, 0, 0, 1, 0xff]);
    bytes.extend_from_slice(&[0, 0, 0, 1, kind::READY, 0]);
    bytes.extend_from_slice(&frame(&Message::MetricsRequest { id: 9 }));
    let mut reader = FrameReader::new(bytes.as_slice());
    assert!(matches!(next(&mut reader).await, Err(ControlError::UnknownKind(0x7f))));
    for _ in 0..3 {
        let skipped = next(&mut reader).await;
        assert!(matches!(skipped, Err(ControlError::BadPayload { .. })), "{skipped:?}");
        assert!(!skipped.as_ref().is_err_and(ControlError::is_fatal));
    }
    assert_eq!(next(&mut reader).await.ok().flatten(), Some(Message::MetricsRequest { id: 9 }));

    let (mut a, b) = pair();
    let (_worker, _events) = spawn_worker(b);
    a.write_all(&bytes).await.unwrap_or_else(|e| panic!("{e}"));
    let mut replies = FrameReader::new(a);
    let reply = next(&mut replies).await.ok().flatten();
    assert_eq!(reply, Some(Message::MetricsReply { id: 9, text: "metrics 0".to_owned() }));
}

#[tokio::test]
async fn frames_split_across_writes_are_reassembled() {
    let (a, b) = pair();
    let (_worker, _events) = spawn_worker(b);
    let (read, mut write) = a.into_split();
    let mut bytes = frame(&Message::MetricsRequest { id: 1 });
    bytes.extend(frame(&Message::MetricsRequest { id: 2 }));
    for byte in &bytes[..bytes.len() - 3] {
        write.write_all(&[*byte]).await.unwrap_or_else(|e| panic!("{e}"));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut replies = FrameReader::new(read);
    let first = next(&mut replies).await.ok().flatten();
    assert_eq!(first, Some(Message::MetricsReply { id: 1, text: "metrics 0".to_owned() }));
    write.write_all(&bytes[bytes.len() - 3..]).await.unwrap_or_else(|e| panic!("{e}"));
    let second = next(&mut replies).await.ok().flatten();
    assert_eq!(second, Some(Message::MetricsReply { id: 2, text: "metrics 1".to_owned() }));
}

#[tokio::test]
async fn eof_inside_a_frame_is_truncation() {
    let bytes = frame(&Message::MetricsReply { id: 3, text: "abc".to_owned() });
    let mut reader = FrameReader::new(&bytes[..bytes.len() - 1]);
    assert!(matches!(next(&mut reader).await, Err(ControlError::Truncated)));
    let mut reader = FrameReader::new(&bytes[..2]);
    assert!(matches!(next(&mut reader).await, Err(ControlError::Truncated)));
}

fn cloexec(fd: impl AsFd) -> bool {
    let flags = fcntl(fd, FcntlArg::F_GETFD).unwrap_or_else(|e| panic!("F_GETFD: {e}"));
    FdFlag::from_bits_truncate(flags).contains(FdFlag::FD_CLOEXEC)
}

/// Whether a child process spawned now sees descriptor `fd` open.
fn child_sees(fd: RawFd) -> bool {
    std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("test -e /proc/self/fd/{fd}"))
        .status()
        .unwrap_or_else(|e| panic!("spawn sh: {e}"))
        .success()
}

#[tokio::test]
async fn a_socket_pair_passes_only_the_child_end_on() {
    let (master, child) = socket_pair().unwrap_or_else(|e| panic!("{e}"));
    assert!(cloexec(&master) && !cloexec(&child.fd));
    assert!(child_sees(child.raw_fd()), "the child end is inherited");
    assert!(!child_sees(master.as_raw_fd()), "the master end is not");
    assert_eq!(child.env(), (FD_ENV, child.raw_fd().to_string()));

    // The worker's side, as after exec: the inherited number becomes its stream.
    let worker = from_inherited_fd(child.fd.into_raw_fd()).unwrap_or_else(|e| panic!("{e}"));
    assert!(cloexec(&worker), "made close-on-exec again for the worker's own children");
    let (_worker, _events) = spawn_worker(worker);
    let (link, _events) = WorkerLink::new(master);
    assert_eq!(link.metrics(SECOND).await.as_deref(), Some("metrics 0"));
}

#[tokio::test]
async fn an_inherited_descriptor_is_taken_once() {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap_or_else(|e| panic!("{e}"));
    let fd = b.into_raw_fd();
    let mut stream = from_inherited_fd(fd).unwrap_or_else(|e| panic!("{e}"));
    let again = from_inherited_fd(fd);
    assert!(again.as_ref().is_err_and(|e| e.to_string().contains("already taken")), "{again:?}");
    drop(a);
    let mut rest = Vec::new();
    let read = timeout(SECOND, stream.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0))), "the stream works (EOF from the peer): {read:?}");
}

#[tokio::test]
async fn other_descriptors_are_refused_and_left_open() {
    let refused = |fd: RawFd| from_inherited_fd(fd).map(|_| ()).expect_err("refused");
    assert_eq!(refused(1).kind(), io::ErrorKind::InvalidInput);
    assert_eq!(refused(1_000_000).raw_os_error(), Some(nix::libc::EBADF));
    let file = std::fs::File::open("/dev/null").unwrap_or_else(|e| panic!("{e}"));
    let (datagram, _peer) = std::os::unix::net::UnixDatagram::pair().unwrap_or_else(|e| panic!("{e}"));
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(refused(file.as_raw_fd()).raw_os_error(), Some(nix::libc::ENOTSOCK));
    assert!(refused(datagram.as_raw_fd()).to_string().ends_with("not a stream socket"));
    assert!(refused(tcp.as_raw_fd()).to_string().ends_with("not a Unix socket"));
    for open in [file.as_fd(), datagram.as_fd(), tcp.as_fd()] {
        assert!(fcntl(open, FcntlArg::F_GETFD).is_ok(), "left open");
    }
    assert!(tcp.local_addr().is_ok() && datagram.local_addr().is_ok() && file.metadata().is_ok());
}

#[tokio::test]
async fn from_env_is_none_without_the_variable() {
    if std::env::var_os(FD_ENV).is_none() {
        assert!(from_env().is_none());
    }
}
