//! The control channel between the master and one worker process: a Unix stream socket pair
//! the master makes before it spawns the worker ([`socket_pair`]); the worker inherits its
//! end as a file descriptor whose number it reads from [`FD_ENV`] ([`from_env`],
//! [`from_inherited_fd`]).
//!
//! **Frames**: a 4-byte big-endian payload length, a one-byte kind, then the payload (the
//! length counts the payload only). A length above [`MAX_PAYLOAD`] is refused, and a frame's
//! buffer grows only as its bytes arrive, never to what the peer claims up front.
//!
//! | kind | direction | message | payload |
//! |---|---|---|---|
//! | `0x01` | master → worker | [`Message::MetricsRequest`] | id: u64 BE |
//! | `0x41` | worker → master | [`Message::MetricsReply`] | id: u64 BE, then the UTF-8 text |
//! | `0x42` | worker → master | [`Message::Ready`] | empty |
//! | `0x43` | worker → master | [`Message::Draining`] | empty |
//! | `0x02` | master → worker | [`Message::RoomsToWorker`] | a rooms relay message (`rooms::Relay`: join, leave, publish, logged publish, send_to, from the other workers; see `rooms/wire.rs`) |
//! | `0x44` | worker → master | [`Message::RoomsToMaster`] | a rooms relay message (hello, join, leave, publish, logged publish, send_to, from this worker) |
//!
//! Kinds `0x02..=0x3f` are free for master → worker messages, `0x44..=0x7f` for worker →
//! master ones, `0x80..` for later needs. A frame of an unknown kind, or with a malformed
//! payload, is read whole and skipped ([`ControlError::UnknownKind`],
//! [`ControlError::BadPayload`]: the stream stays in step); a refused length, a frame cut by
//! EOF or an I/O error ends the link ([`ControlError::is_fatal`]).
//!
//! **EOF means the peer died**: the worker's loop ([`serve_worker`]) returns when the master
//! goes away (its caller drains and exits); the master's [`WorkerLink`] closes its event
//! channel when the worker goes away. Every end but the one each process owns is
//! close-on-exec, so no other process keeps a link open.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::socket::{SockType, UnixAddr, getsockname, getsockopt, sockopt};
use nix::sys::stat::fstat;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The environment variable naming the worker's inherited control descriptor (a number).
pub(crate) const FD_ENV: &str = "WSHD_CONTROL_FD";

/// The largest payload accepted or sent: 16 MiB.
pub(crate) const MAX_PAYLOAD: u32 = 16 * 1024 * 1024;

/// Length and kind.
const HEADER: usize = 5;

/// The most a read grows the buffer by.
const READ_CHUNK: usize = 64 * 1024;

/// Events a link's master side may hold before it drops more (a worker sends two).
const EVENT_QUEUE: usize = 16;

/// Requests queued for the link's writer (one in flight, and a few behind a stuck write).
const REQUEST_QUEUE: usize = 4;

/// Frame kinds.
mod kind {
    /// [`super::Message::MetricsRequest`].
    pub(super) const METRICS_REQUEST: u8 = 0x01;
    /// [`super::Message::MetricsReply`].
    pub(super) const METRICS_REPLY: u8 = 0x41;
    /// [`super::Message::Ready`].
    pub(super) const READY: u8 = 0x42;
    /// [`super::Message::Draining`].
    pub(super) const DRAINING: u8 = 0x43;
    /// [`super::Message::RoomsToWorker`].
    pub(super) const ROOMS_TO_WORKER: u8 = 0x02;
    /// [`super::Message::RoomsToMaster`].
    pub(super) const ROOMS_TO_MASTER: u8 = 0x44;
}

/// One message on the control channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Message {
    /// Master → worker: send your metrics exposition, tagged `id`.
    MetricsRequest {
        /// Echoed in the reply.
        id: u64,
    },
    /// Worker → master: the exposition asked for by request `id`.
    MetricsReply {
        /// The request's id.
        id: u64,
        /// The worker's OpenMetrics text.
        text: String,
    },
    /// Worker → master: listening and serving.
    Ready,
    /// Worker → master: draining (no new connections; open ones finishing).
    Draining,
    /// Master → worker: a rooms relay message from the other workers (opaque here).
    RoomsToWorker(Bytes),
    /// Worker → master: a rooms relay message for the other workers (opaque here).
    RoomsToMaster(Bytes),
}

/// What a worker tells its master unasked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WorkerEvent {
    /// Listening and serving.
    Ready,
    /// Draining: no new connections; open ones finishing.
    Draining,
}

impl From<WorkerEvent> for Message {
    fn from(event: WorkerEvent) -> Message {
        match event {
            WorkerEvent::Ready => Message::Ready,
            WorkerEvent::Draining => Message::Draining,
        }
    }
}

/// Why a frame could not be read or written.
#[derive(Debug)]
pub(crate) enum ControlError {
    /// The socket failed (fatal).
    Io(io::Error),
    /// A payload longer than [`MAX_PAYLOAD`], announced by the peer (fatal) or about to be
    /// sent (nothing was written).
    TooLarge(u64),
    /// EOF in the middle of a frame (fatal).
    Truncated,
    /// A frame of a kind this build does not know; it was skipped.
    UnknownKind(u8),
    /// A frame of a known kind with a malformed payload; it was skipped.
    BadPayload {
        /// The frame's kind.
        kind: u8,
        /// What was wrong.
        reason: &'static str,
    },
}

impl ControlError {
    /// Whether the link is unusable after this error (the frame could not be skipped).
    pub(crate) fn is_fatal(&self) -> bool {
        matches!(self, ControlError::Io(_) | ControlError::TooLarge(_) | ControlError::Truncated)
    }
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlError::Io(e) => write!(f, "control socket: {e}"),
            ControlError::TooLarge(len) => write!(f, "frame of {len} bytes refused (limit {MAX_PAYLOAD})"),
            ControlError::Truncated => f.write_str("EOF in the middle of a frame"),
            ControlError::UnknownKind(kind) => write!(f, "frame of unknown kind {kind:#04x} skipped"),
            ControlError::BadPayload { kind, reason } => {
                write!(f, "frame of kind {kind:#04x} skipped: {reason}")
            }
        }
    }
}

impl std::error::Error for ControlError {}

impl From<io::Error> for ControlError {
    fn from(e: io::Error) -> ControlError {
        ControlError::Io(e)
    }
}

impl Message {
    /// The message's name, for logs (never its payload).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Message::MetricsRequest { .. } => "MetricsRequest",
            Message::MetricsReply { .. } => "MetricsReply",
            Message::Ready => "Ready",
            Message::Draining => "Draining",
            Message::RoomsToWorker(_) => "RoomsToWorker",
            Message::RoomsToMaster(_) => "RoomsToMaster",
        }
    }

    /// The whole frame: header and payload.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, ControlError> {
        let (kind, id, text) = match self {
            Message::MetricsRequest { id } => (kind::METRICS_REQUEST, Some(*id), &b""[..]),
            Message::MetricsReply { id, text } => (kind::METRICS_REPLY, Some(*id), text.as_bytes()),
            Message::Ready => (kind::READY, None, &b""[..]),
            Message::Draining => (kind::DRAINING, None, &b""[..]),
            Message::RoomsToWorker(payload) => (kind::ROOMS_TO_WORKER, None, &payload[..]),
            Message::RoomsToMaster(payload) => (kind::ROOMS_TO_MASTER, None, &payload[..]),
        };
        let len = id.map_or(0, |_| 8) + text.len();
        let len32 = u32::try_from(len).ok().filter(|&l| l <= MAX_PAYLOAD);
        let Some(len32) = len32 else {
            return Err(ControlError::TooLarge(len as u64));
        };
        let mut frame = Vec::with_capacity(HEADER + len);
        frame.extend_from_slice(&len32.to_be_bytes());
        frame.push(kind);
        if let Some(id) = id {
            frame.extend_from_slice(&id.to_be_bytes());
        }
        frame.extend_from_slice(text);
        Ok(frame)
    }

    /// The message of a frame of `kind` carrying `payload`.
    fn decode(kind: u8, payload: BytesMut) -> Result<Message, ControlError> {
        let bad = |reason| ControlError::BadPayload { kind, reason };
        let id = || payload.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes);
        match kind {
            kind::METRICS_REQUEST if payload.len() == 8 => {
                Ok(Message::MetricsRequest { id: id().ok_or_else(|| bad("no id"))? })
            }
            kind::METRICS_REQUEST => Err(bad("the payload is not an 8-byte id")),
            kind::METRICS_REPLY => {
                let id = id().ok_or_else(|| bad("no id"))?;
                let text = std::str::from_utf8(&payload[8..]).map_err(|_| bad("the text is not UTF-8"))?;
                Ok(Message::MetricsReply { id, text: text.to_owned() })
            }
            kind::READY | kind::DRAINING if !payload.is_empty() => Err(bad("unexpected payload")),
            kind::READY => Ok(Message::Ready),
            kind::DRAINING => Ok(Message::Draining),
            kind::ROOMS_TO_WORKER => Ok(Message::RoomsToWorker(payload.freeze())),
            kind::ROOMS_TO_MASTER => Ok(Message::RoomsToMaster(payload.freeze())),
            _ => Err(ControlError::UnknownKind(kind)),
        }
    }
}

/// Reads frames off a byte stream. [`FrameReader::next`] is cancel-safe: bytes read stay in
/// the buffer, so it may be raced in `select!`.
#[derive(Debug)]
pub(crate) struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader of `inner`.
    pub(crate) fn new(inner: R) -> FrameReader<R> {
        FrameReader { inner, buf: BytesMut::new() }
    }

    /// The next message, or `None` at EOF between frames. After a fatal error (see
    /// [`ControlError::is_fatal`]) the reader keeps failing; after another, it goes on.
    pub(crate) async fn next(&mut self) -> Result<Option<Message>, ControlError> {
        loop {
            if let Some((kind, payload)) = self.take_frame()? {
                return Message::decode(kind, payload).map(Some);
            }
            self.buf.reserve(self.missing().clamp(HEADER, READ_CHUNK));
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() { Ok(None) } else { Err(ControlError::Truncated) };
            }
        }
    }

    /// The announced payload length, once the header is in.
    fn announced(&self) -> Option<u32> {
        let header: [u8; 4] = self.buf.get(..4)?.try_into().ok()?;
        Some(u32::from_be_bytes(header))
    }

    /// Bytes still missing for the frame at the front of the buffer.
    fn missing(&self) -> usize {
        let total = self.announced().map_or(HEADER, |len| HEADER + len as usize);
        total.saturating_sub(self.buf.len())
    }

    /// Splits the first whole frame off the buffer: its kind and its payload.
    fn take_frame(&mut self) -> Result<Option<(u8, BytesMut)>, ControlError> {
        let Some(len) = self.announced() else {
            return Ok(None);
        };
        if len > MAX_PAYLOAD {
            return Err(ControlError::TooLarge(len.into()));
        }
        if self.buf.len() < HEADER + len as usize {
            return Ok(None);
        }
        self.buf.advance(4);
        let kind = self.buf.get_u8();
        Ok(Some((kind, self.buf.split_to(len as usize))))
    }
}

/// Writes one message as a whole frame. Not cancel-safe: a write dropped half-way leaves half
/// a frame on the stream, so callers write from one task and never race it.
pub(crate) async fn write_message<W: AsyncWrite + Unpin>(
    writer: &mut W,
    message: &Message,
) -> Result<(), ControlError> {
    let frame = message.encode()?;
    writer.write_all(&frame).await?;
    writer.flush().await?;
    Ok(())
}

/// The worker's side: answers the master's metrics requests with `answer_metrics()` and
/// forwards `events` (until their sender is dropped), until the master goes away.
///
/// Returns `Ok` at EOF (the master closed the link or died) and an error when the link broke
/// (a write failed, or a frame could not be skipped); either way the master is gone: the
/// caller drains and exits. Skippable frames are logged and skipped.
pub(crate) async fn serve_worker(
    stream: UnixStream,
    answer_metrics: impl Fn() -> String,
    events: mpsc::Receiver<WorkerEvent>,
) -> Result<(), ControlError> {
    serve_worker_with_rooms(stream, answer_metrics, events, None).await
}

/// The worker's rooms over its control channel: relay messages for the master, and what to
/// do with the master's (see `supervise/room_link.rs`).
pub(crate) struct WorkerRooms {
    /// Relay messages to send to the master, in order.
    pub(crate) out: mpsc::UnboundedReceiver<Bytes>,
    /// Applies a relay message from the master.
    pub(crate) apply: Box<dyn Fn(Bytes) + Send>,
}

/// [`serve_worker`], also carrying the worker's rooms relay messages both ways.
pub(crate) async fn serve_worker_with_rooms(
    mut stream: UnixStream,
    answer_metrics: impl Fn() -> String,
    mut events: mpsc::Receiver<WorkerEvent>,
    mut rooms: Option<WorkerRooms>,
) -> Result<(), ControlError> {
    let (read, mut write) = stream.split();
    let mut reader = FrameReader::new(read);
    let mut events_open = true;
    loop {
        let rooms_out = async {
            match rooms.as_mut() {
                Some(r) => r.out.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            message = reader.next() => match message {
                Ok(None) => return Ok(()),
                Ok(Some(Message::RoomsToWorker(payload))) => {
                    if let Some(r) = rooms.as_ref() {
                        (r.apply)(payload);
                    }
                }
                Ok(Some(message)) => answer(&mut write, message, &answer_metrics).await?,
                Err(e) if e.is_fatal() => return Err(e),
                Err(e) => tracing::warn!("control channel from the master: {e}"),
            },
            event = events.recv(), if events_open => match event {
                Some(event) => write_message(&mut write, &event.into()).await?,
                None => events_open = false,
            },
            payload = rooms_out => match payload {
                Some(payload) => write_message(&mut write, &Message::RoomsToMaster(payload)).await?,
                None => rooms = None,
            },
        }
    }
}

/// Answers one message from the master.
async fn answer<W: AsyncWrite + Unpin>(
    write: &mut W,
    message: Message,
    answer_metrics: &impl Fn() -> String,
) -> Result<(), ControlError> {
    let Message::MetricsRequest { id } = message else {
        tracing::warn!("control channel: unexpected {} from the master, ignored", message.name());
        return Ok(());
    };
    let mut text = answer_metrics();
    if text.len() > MAX_PAYLOAD as usize - 8 {
        tracing::warn!("metrics exposition of {} bytes too large for the control channel", text.len());
        text.clear();
    }
    write_message(write, &Message::MetricsReply { id, text }).await
}

/// The metrics request waiting for its reply.
#[derive(Debug)]
struct Pending {
    id: u64,
    reply: oneshot::Sender<String>,
}

/// The state of a link's one request slot.
#[derive(Debug)]
enum Slot {
    Idle,
    Waiting(Pending),
    /// The worker went away.
    Closed,
}

fn lock(slot: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The master's side of one worker's control channel: metrics on request, and the worker's
/// events. Two tasks serve it (a reader and a writer); dropping the link stops them and
/// closes the socket, which the worker takes as the master's death (it drains and exits).
#[derive(Debug)]
pub(crate) struct WorkerLink {
    /// Ids of requests for the writer task.
    requests: mpsc::Sender<u64>,
    /// The next request id; held for a whole request, so one is in flight at a time.
    next_id: tokio::sync::Mutex<u64>,
    slot: Arc<Mutex<Slot>>,
    /// Requests the worker never answered in time (their late replies are dropped).
    timeouts: AtomicU64,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

/// The master's side of one worker's rooms relay (see `supervise/room_hub.rs`).
pub(crate) struct MasterRooms {
    /// Relay messages for the worker, in order.
    pub(crate) to_worker: mpsc::UnboundedReceiver<Bytes>,
    /// Takes a relay message from the worker.
    pub(crate) from_worker: Box<dyn Fn(Bytes) + Send>,
    /// Called once when the worker has gone away (EOF or a broken link).
    pub(crate) gone: Box<dyn FnOnce() + Send>,
}

impl std::fmt::Debug for MasterRooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterRooms")
    }
}

impl WorkerLink {
    /// Serves the master's end of a worker's control socket. The receiver gets the worker's
    /// events, and `None` once the worker has gone away.
    ///
    /// Spawns two tasks: panics outside a tokio runtime, like `tokio::spawn`.
    pub(crate) fn new(stream: UnixStream) -> (WorkerLink, mpsc::Receiver<WorkerEvent>) {
        WorkerLink::with_rooms(stream, None)
    }

    /// [`new`](Self::new), also relaying the worker's rooms messages through `rooms`.
    pub(crate) fn with_rooms(
        stream: UnixStream,
        rooms: Option<MasterRooms>,
    ) -> (WorkerLink, mpsc::Receiver<WorkerEvent>) {
        let (read, write) = stream.into_split();
        let slot = Arc::new(Mutex::new(Slot::Idle));
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let (requests, requests_rx) = mpsc::channel(REQUEST_QUEUE);
        let (to_worker, from_worker, gone) = match rooms {
            Some(r) => (Some(r.to_worker), Some(r.from_worker), Some(r.gone)),
            None => (None, None, None),
        };
        let (read, reader_slot) = (FrameReader::new(read), Arc::clone(&slot));
        let reader = tokio::spawn(async move {
            read_worker(read, reader_slot, events_tx, from_worker).await;
            if let Some(gone) = gone {
                gone();
            }
        });
        let writer = tokio::spawn(write_requests(write, requests_rx, to_worker));
        let link = WorkerLink {
            requests,
            next_id: tokio::sync::Mutex::new(1),
            slot,
            timeouts: AtomicU64::new(0),
            reader,
            writer,
        };
        (link, events_rx)
    }

    /// The worker's metrics exposition, or `None` if it did not answer within `timeout`
    /// (a late reply is dropped when it comes) or has gone away. Concurrent calls wait for
    /// each other (within their own timeouts).
    pub(crate) async fn metrics(&self, timeout: Duration) -> Option<String> {
        let answer = tokio::time::timeout(timeout, self.request()).await;
        if answer.is_err() {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        answer.ok().flatten()
    }

    /// Whether the worker has gone away (EOF, or a broken link).
    pub(crate) fn is_closed(&self) -> bool {
        matches!(*lock(&self.slot), Slot::Closed)
    }

    /// Metrics requests that timed out so far.
    pub(crate) fn timeouts(&self) -> u64 {
        self.timeouts.load(Ordering::Relaxed)
    }

    /// One request, start to reply.
    async fn request(&self) -> Option<String> {
        let mut next_id = self.next_id.lock().await;
        let id = *next_id;
        *next_id += 1;
        let (reply, answer) = oneshot::channel();
        {
            let mut slot = lock(&self.slot);
            if matches!(*slot, Slot::Closed) {
                return None;
            }
            // Replaces a request that timed out: its late reply no longer matches.
            *slot = Slot::Waiting(Pending { id, reply });
        }
        self.requests.try_send(id).ok()?;
        answer.await.ok()
    }
}

impl Drop for WorkerLink {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

/// The link's writer task: one request frame per id, and the rooms relay messages for the
/// worker, until the link is dropped or a write fails.
async fn write_requests(
    mut write: OwnedWriteHalf,
    mut requests: mpsc::Receiver<u64>,
    mut rooms: Option<mpsc::UnboundedReceiver<Bytes>>,
) {
    loop {
        let rooms_next = async {
            match rooms.as_mut() {
                Some(r) => r.recv().await,
                None => std::future::pending().await,
            }
        };
        let message = tokio::select! {
            id = requests.recv() => match id {
                Some(id) => Message::MetricsRequest { id },
                None => return,
            },
            payload = rooms_next => match payload {
                Some(payload) => Message::RoomsToWorker(payload),
                None => {
                    rooms = None;
                    continue;
                }
            },
        };
        if let Err(e) = write_message(&mut write, &message).await {
            tracing::debug!("control channel to a worker: {e}");
            return;
        }
    }
}

/// The link's reader task: replies to the waiting request, events to the receiver, until the
/// worker goes away; then marks the slot closed (a waiting request gets `None`).
async fn read_worker(
    mut reader: FrameReader<OwnedReadHalf>,
    slot: Arc<Mutex<Slot>>,
    events: mpsc::Sender<WorkerEvent>,
    rooms: Option<Box<dyn Fn(Bytes) + Send>>,
) {
    loop {
        let event = match reader.next().await {
            Ok(None) => break,
            Ok(Some(Message::MetricsReply { id, text })) => {
                deliver(&slot, id, text);
                continue;
            }
            Ok(Some(Message::RoomsToMaster(payload))) => {
                if let Some(rooms) = rooms.as_ref() {
                    rooms(payload);
                }
                continue;
            }
            Ok(Some(Message::Ready)) => WorkerEvent::Ready,
            Ok(Some(Message::Draining)) => WorkerEvent::Draining,
            Ok(Some(other)) => {
                tracing::warn!("control channel: unexpected {} from a worker, ignored", other.name());
                continue;
            }
            Err(e) if e.is_fatal() => {
                tracing::warn!("control channel from a worker: {e}");
                break;
            }
            Err(e) => {
                tracing::warn!("control channel from a worker: {e}");
                continue;
            }
        };
        if let Err(mpsc::error::TrySendError::Full(event)) = events.try_send(event) {
            tracing::warn!("control channel: worker event {event:?} dropped (nobody reads them)");
        }
    }
    *lock(&slot) = Slot::Closed;
}

/// Hands a reply to the request waiting for it; a stale one (its request timed out) is
/// dropped.
fn deliver(slot: &Mutex<Slot>, id: u64, text: String) {
    let mut slot = lock(slot);
    match std::mem::replace(&mut *slot, Slot::Idle) {
        Slot::Waiting(pending) if pending.id == id => {
            // The requester may have timed out just now: then nobody wants it.
            let _ = pending.reply.send(text);
        }
        other => {
            tracing::debug!(id, "control channel: stale metrics reply dropped");
            *slot = other;
        }
    }
}

/// The worker's end of a new control socket, to be inherited by the worker process.
#[derive(Debug)]
pub(crate) struct ChildEnd {
    fd: OwnedFd,
}

impl ChildEnd {
    /// The descriptor number, the same in the child after `exec`.
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The environment variable that tells the worker its descriptor: ([`FD_ENV`], number).
    pub(crate) fn env(&self) -> (&'static str, String) {
        (FD_ENV, self.raw_fd().to_string())
    }
}

/// A new control socket pair for one worker (call from a tokio runtime): the master's end,
/// ready for [`WorkerLink::new`] and close-on-exec, and the worker's end with close-on-exec
/// cleared, so the next spawned child inherits it.
///
/// Spawn that worker (with [`ChildEnd::env`] in its environment) right away and drop the
/// `ChildEnd` right after: while it lives, *every* child the master spawns inherits it, and
/// the master would not see EOF when its worker dies while another child holds a copy. So
/// spawn workers one at a time.
pub(crate) fn socket_pair() -> io::Result<(UnixStream, ChildEnd)> {
    tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
    // Both ends are made close-on-exec (std uses SOCK_CLOEXEC).
    let (master, child) = std::os::unix::net::UnixStream::pair()?;
    let child = OwnedFd::from(child);
    fcntl(&child, FcntlArg::F_SETFD(FdFlag::empty()))?;
    master.set_nonblocking(true)?;
    Ok((UnixStream::from_std(master)?, ChildEnd { fd: child }))
}

/// The worker's control socket, from the descriptor number in [`FD_ENV`]: `None` when the
/// variable is not set (not started by a master), an error when it is not a number or
/// [`from_inherited_fd`] refuses it.
pub(crate) fn from_env() -> Option<io::Result<UnixStream>> {
    let value = std::env::var_os(FD_ENV)?;
    let fd = value.to_str().and_then(|v| v.trim().parse::<RawFd>().ok());
    Some(match fd {
        Some(fd) => from_inherited_fd(fd),
        None => {
            Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{FD_ENV}={value:?} is not a number")))
        }
    })
}

/// Sockets already taken by [`from_inherited_fd`]: descriptor number and inode (a number
/// reused by a later socket names another inode).
static ADOPTED: Mutex<Vec<(RawFd, u64)>> = Mutex::new(Vec::new());

/// Takes ownership of the inherited control descriptor `fd` (call from a tokio runtime, once):
/// checks that it is an open Unix stream socket, makes it close-on-exec (the worker's own
/// children, CGI scripts, must not hold the link open) and non-blocking.
///
/// Refused, leaving the descriptor untouched: standard input, output and error, a descriptor
/// that is not open, not a Unix stream socket, or already taken by an earlier call.
pub(crate) fn from_inherited_fd(fd: RawFd) -> io::Result<UnixStream> {
    tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
    let owned = adopt(fd)?;
    fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    let stream = std::os::unix::net::UnixStream::from(owned);
    stream.set_nonblocking(true)?;
    UnixStream::from_std(stream)
}

/// Checks `fd` (see [`from_inherited_fd`]) and takes ownership of it.
#[allow(unsafe_code)]
fn adopt(fd: RawFd) -> io::Result<OwnedFd> {
    let refuse = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("descriptor {fd}: {why}"));
    if fd <= 2 {
        return Err(refuse("standard input, output or error"));
    }
    // SAFETY: F_GETFD on a plain number only reads that descriptor's flags; a number that
    // names no open descriptor fails with EBADF. No memory is passed.
    if unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is open (checked just above), and this borrow only lives for the queries
    // below, which close nothing.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    if getsockopt(&borrowed, sockopt::SockType)? != SockType::Stream {
        return Err(refuse("not a stream socket"));
    }
    getsockname::<UnixAddr>(fd).map_err(|_| refuse("not a Unix socket"))?;
    let socket = (fd, fstat(borrowed)?.st_ino);
    let mut adopted = ADOPTED.lock().unwrap_or_else(PoisonError::into_inner);
    if adopted.contains(&socket) {
        return Err(refuse("already taken"));
    }
    adopted.push(socket);
    // SAFETY: the descriptor is open and is a Unix stream socket (checked above) that the
    // master passed to this process for the control channel alone: by the contract of
    // `FD_ENV` no other code of this process owns it, and `ADOPTED` refuses to take the same
    // socket twice, so this is its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests;
