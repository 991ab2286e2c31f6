//! Async I/O with tokio inside a plugin (cargo feature `io`): [`run`] runs a future on a
//! small tokio runtime owned by this plugin generation, so `tokio::net`, `tokio::time`, tokio's
//! pipes and `AsyncFd`, and crates built on them work inside it.
//!
//! Every tokio resource and thread-local lives on the runtime's own threads, never on the
//! host's: the future is handed over through a `std` channel to a feeder thread of the
//! plugin's, and its output comes back through a `std`-only one-shot. The runtime starts on
//! first use and is shut down (its threads joined) when the generation's last handler
//! instance is dropped, before the host unloads the library. In-flight I/O on a hot reload
//! finishes on the old generation's runtime while its connections last.
//!
//! ```no_run
//! use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
//! use wshd_sdk::{Config, Connection, Error, Handler};
//!
//! /// Forwards each message as a line to a TCP service and answers with its reply line.
//! struct Relay;
//!
//! impl Handler for Relay {
//!     fn new(_config: &Config) -> Result<Self, Error> {
//!         Ok(Relay)
//!     }
//!
//!     async fn transfer_data(&self, mut conn: Connection) {
//!         while let Some(message) = conn.recv().await {
//!             let line = message.as_text().unwrap_or_default().to_owned();
//!             let reply = wshd_sdk::io::run(async move {
//!                 let stream = tokio::net::TcpStream::connect("127.0.0.1:7000").await?;
//!                 let (read, mut write) = stream.into_split();
//!                 write.write_all(format!("{line}\n").as_bytes()).await?;
//!                 let mut reply = String::new();
//!                 BufReader::new(read).read_line(&mut reply).await?;
//!                 Ok::<_, std::io::Error>(reply)
//!             })
//!             .await;
//!             let text = match reply {
//!                 Ok(Ok(reply)) => reply,
//!                 Ok(Err(e)) => format!("error: {e}"),
//!                 Err(e) => format!("error: {e}"),
//!             };
//!             if conn.send_text(&text).await.is_err() {
//!                 return;
//!             }
//!         }
//!     }
//! }
//!
//! wshd_sdk::export_handler!(Relay);
//! # fn main() {}
//! ```
//!
//! Not supported: `tokio::process` and `tokio::signal` (their driver keeps process-global
//! state, a socketpair and a `SIGCHLD` handler, that outlives an unloaded generation), and
//! `tokio::spawn` from outside `run` (a host thread has no runtime); inside `run`, spawning
//! on the plugin's runtime works. Inside `run`, block with `tokio::task::spawn_blocking` (the
//! plugin runtime's own threads), not [`blocking`](crate::blocking): that one answers
//! `Unavailable` there (no host runtime on a plugin thread), and waking a plugin-runtime task
//! from a host thread would leave tokio's thread-locals on it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};

use crate::export::host;
use crate::export::raw_thread::{self, RawThread};
use crate::oneshot;

/// Threads of the plugin's I/O runtime.
const IO_THREADS: usize = 2;

/// A future handed to the runtime.
type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Why [`run`] produced no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoError {
    /// The future panicked; the panic's message.
    Panicked(String),
    /// The runtime could not be started, or was shut down before the future finished.
    Unavailable,
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoError::Panicked(message) => write!(f, "the I/O future panicked: {message}"),
            IoError::Unavailable => f.write_str("the plugin's I/O runtime is not available"),
        }
    }
}

impl std::error::Error for IoError {}

/// Runs `future` to completion on this plugin's I/O runtime and resolves to its output.
/// The calling task is suspended meanwhile (the host thread serves other connections).
/// Dropping the returned future does not cancel `future`; it runs on, and its output is
/// dropped.
pub async fn run<F>(future: F) -> Result<F::Output, IoError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (completer, receiver) = oneshot::channel(|| Err(IoError::Unavailable));
    let task: Task = Box::pin(async move {
        let output = Caught(Box::pin(future)).await;
        completer.complete(output);
    });
    // If the runtime cannot take it, the task is dropped and its completer sends
    // `Unavailable`.
    submit(task);
    receiver.await
}

/// A future polled under `catch_unwind`: a panic becomes [`IoError::Panicked`].
struct Caught<F>(Pin<Box<F>>);

impl<F: Future> Future for Caught<F> {
    type Output = Result<F::Output, IoError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match host::catch(|| self.0.as_mut().poll(cx)) {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(crate::BlockingError::Panicked(message)) => Poll::Ready(Err(IoError::Panicked(message))),
            Err(crate::BlockingError::Unavailable) => Poll::Ready(Err(IoError::Unavailable)),
        }
    }
}

/// The running runtime: its feeder thread (which owns it) and the way in.
struct IoRuntime {
    feeder: mpsc::Sender<Task>,
    thread: RawThread,
}

/// This generation's runtime, started on first use.
static RUNTIME: Mutex<Option<IoRuntime>> = Mutex::new(None);

/// Hands `task` to the runtime, starting it if needed; drops `task` if it cannot start.
fn submit(task: Task) {
    let mut runtime = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    if runtime.is_none() {
        *runtime = start();
    }
    if let Some(r) = runtime.as_ref() {
        // A send fails only if the feeder is gone; the task is then dropped.
        let _ = r.feeder.send(task);
    }
}

/// Starts the runtime's feeder thread (a bare pthread of the plugin's, see
/// [`raw_thread`]): it builds the runtime (whose worker threads it spawns), spawns each task
/// it receives, and when the channel closes it drops the runtime, joining the workers.
fn start() -> Option<IoRuntime> {
    let (feeder, tasks) = mpsc::channel::<Task>();
    let thread = raw_thread::spawn(Box::new(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(IO_THREADS)
            .thread_name("wshd-plugin-io")
            .enable_all()
            .build();
        let runtime = match runtime {
            Ok(runtime) => runtime,
            Err(e) => {
                host::log(crate::log::Level::Error, &format!("cannot start the plugin's I/O runtime: {e}"));
                return;
            }
        };
        for task in tasks {
            drop(runtime.spawn(task));
        }
        drop(runtime);
    }));
    match thread {
        Some(thread) => Some(IoRuntime { feeder, thread }),
        None => {
            host::log(crate::log::Level::Error, "cannot start the plugin's I/O thread");
            None
        }
    }
}

/// Shuts the runtime down, if it runs: unfinished tasks are dropped and every runtime
/// thread is joined. Called when the generation's last handler instance is dropped (by the
/// host, off its async threads, before it unloads the library).
pub(crate) fn shutdown() {
    let runtime = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner).take();
    if let Some(IoRuntime { feeder, thread }) = runtime {
        drop(feeder);
        thread.join();
    }
}
