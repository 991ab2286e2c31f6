//! The child's side of a connection, on the plugin generation's I/O runtime
//! (`wshd_sdk::io::run`): its pipes and pidfd registered with tokio, a supervisor that waits
//! for whichever comes first — the child's exit (pidfd) or the connection's end (the
//! lifeline pipe's write end, held by the connection's task, closes) — then kills what is
//! left of its process group, reaps it and reports its end after its last stdout line.
//! No signal handler is installed: no `tokio::process`, no `SIGCHLD`.

use std::io::{self, PipeReader};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;

use crate::outbox::{End, Outbox};
use crate::process::{Reaper, Started};

/// After the connection ends: `SIGTERM` to the child's group, then `SIGKILL` this much later.
const KILL_GRACE: Duration = Duration::from_secs(1);
/// After the child exits: how long its remaining output may take (a grandchild it left
/// behind could hold the pipes open; the group is killed first, so this is rarely reached).
const DRAIN: Duration = Duration::from_secs(2);

/// The way to the child's stdin, and the stdout reader's wake-up. The connection holds only a
/// [`Weak`] to it (upgraded inside `io::run`), so it is always dropped on the runtime.
#[derive(Debug)]
pub(crate) struct Port {
    stdin: Mutex<pipe::Sender>,
    room: Notify,
}

/// What a connection hands to the runtime.
#[derive(Debug)]
pub(crate) struct Parts {
    /// The child.
    pub(crate) started: Started,
    /// Reaches end of file when the connection's task ends.
    pub(crate) lifeline: PipeReader,
    /// Where stdout lines and the end go.
    pub(crate) outbox: Arc<Outbox>,
    /// The connection's id, for stderr lines in the log.
    pub(crate) conn: String,
    /// The longest line sent as one message.
    pub(crate) max_line: usize,
}

/// Registers the child's pipes with the runtime and starts its tasks. Must run inside
/// `io::run`. On an error the child is killed and reaped (its [`Reaper`] is dropped).
pub(crate) fn open(parts: Parts) -> io::Result<Weak<Port>> {
    let Parts { started, lifeline, outbox, conn, max_line } = parts;
    let Started { reaper, stdin, stdout, stderr, pidfd } = started;
    let stdin = pipe::Sender::from_owned_fd(OwnedFd::from(stdin))?;
    let stdout = pipe::Receiver::from_owned_fd(OwnedFd::from(stdout))?;
    let stderr = pipe::Receiver::from_owned_fd(OwnedFd::from(stderr))?;
    let lifeline = pipe::Receiver::from_owned_fd(OwnedFd::from(lifeline))?;
    let pidfd = crate::sys::watch(pidfd)?;
    let port = Arc::new(Port { stdin: Mutex::new(stdin), room: Notify::new() });
    let weak = Arc::downgrade(&port);
    let out = tokio::spawn(pump_stdout(stdout, Arc::clone(&outbox), Arc::clone(&port), max_line));
    let err = tokio::spawn(pump_stderr(stderr, format!("conn={conn} pid={}", reaper.pid()), max_line));
    let watch = Watch { reaper, pidfd, lifeline, out, err, outbox };
    tokio::spawn(supervise(watch, port));
    Ok(weak)
}

/// Writes `data` to the child's stdin (inside `io::run`); `BrokenPipe` once it is gone.
pub(crate) async fn write(port: Weak<Port>, data: Vec<u8>) -> io::Result<()> {
    let Some(port) = port.upgrade() else { return Err(io::ErrorKind::BrokenPipe.into()) };
    let mut stdin = port.stdin.lock().await;
    stdin.write_all(&data).await
}

/// Wakes the stdout reader waiting for room in the outbox (inside `io::run`).
pub(crate) async fn make_room(port: Weak<Port>) {
    if let Some(port) = port.upgrade() {
        port.room.notify_one();
    }
}

/// What the supervisor watches and owns.
struct Watch {
    reaper: Reaper,
    pidfd: AsyncFd<OwnedFd>,
    lifeline: pipe::Receiver,
    out: JoinHandle<()>,
    err: JoinHandle<()>,
    outbox: Arc<Outbox>,
}

/// Waits for the child's exit or the connection's end, reaps the child and reports its end
/// after its last stdout line.
async fn supervise(mut w: Watch, port: Arc<Port>) {
    let mut byte = [0u8; 1];
    let connection_gone = tokio::select! {
        _ = w.pidfd.readable() => false,
        _ = w.lifeline.read(&mut byte) => true,
    };
    if connection_gone {
        w.reaper.signal_group(libc::SIGTERM);
        if tokio::time::timeout(KILL_GRACE, w.pidfd.readable()).await.is_err() {
            w.reaper.signal_group(libc::SIGKILL);
            let _ = tokio::time::timeout(KILL_GRACE, w.pidfd.readable()).await;
        }
    }
    // Kills what is left of the group, then waits: the child has exited (or was just sent
    // SIGKILL), so this does not block for long.
    let pid = w.reaper.pid();
    let end = match w.reaper.reap() {
        Ok(status) => End::Exited(status),
        Err(e) => End::Failed(format!("cannot reap the child: {e}")),
    };
    let by = if connection_gone { "the connection ended" } else { "it exited" };
    wshd_sdk::debug!("child pid={pid} reaped ({by}): {end:?}");
    for task in [&mut w.out, &mut w.err] {
        if connection_gone || tokio::time::timeout(DRAIN, &mut *task).await.is_err() {
            task.abort();
        }
    }
    w.outbox.finish(end);
    drop(port);
}

/// Reads stdout lines into the outbox, waiting for room when it is full.
async fn pump_stdout(stdout: pipe::Receiver, outbox: Arc<Outbox>, port: Arc<Port>, max_line: usize) {
    let mut reader = BufReader::with_capacity(64 * 1024, stdout);
    let mut line = Vec::new();
    while read_line(&mut reader, &mut line, max_line).await {
        outbox.push(String::from_utf8_lossy(&line).into_owned());
        while outbox.full_or_stall() {
            port.room.notified().await;
        }
    }
}

/// Logs stderr lines through the host, with the connection id and pid.
async fn pump_stderr(stderr: pipe::Receiver, who: String, max_line: usize) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    while read_line(&mut reader, &mut line, max_line).await {
        wshd_sdk::info!("{who} stderr: {}", String::from_utf8_lossy(&line));
    }
}

/// Reads one line (at most `max` bytes: a longer one comes in pieces) without its `\n` or
/// `\r\n`; false at end of file or on an error.
async fn read_line(reader: &mut BufReader<pipe::Receiver>, line: &mut Vec<u8>, max: usize) -> bool {
    line.clear();
    let limit = u64::try_from(max).unwrap_or(u64::MAX);
    match reader.take(limit).read_until(b'\n', line).await {
        Ok(0) | Err(_) => false,
        Ok(_) => {
            if line.last() == Some(&b'\n') {
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
            }
            true
        }
    }
}
