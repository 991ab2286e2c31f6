//! What an attack test measures besides status and close codes: the server's resident
//! memory, and the round-trip latency a well-behaved control connection sees meanwhile.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::Message;

use crate::{Client, ServerProcess, connect, round_trip};

/// The resident set size of process `pid` in bytes (`VmRSS`), `None` once it is gone.
pub fn process_rss(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:").map(|kib| kib * 1024)
}

/// A `/proc/PID/status` field in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

impl ServerProcess {
    /// The server's processes: the master (or the single process) and every live worker.
    fn pids(&self) -> Vec<u32> {
        let workers = self.worker_starts().into_iter().map(|(_, pid)| pid);
        std::iter::once(self.pid()).chain(workers).filter(|pid| process_rss(*pid).is_some()).collect()
    }

    /// The resident memory of the server (every process), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.pids().into_iter().filter_map(process_rss).sum()
    }

    /// Resets every process's peak resident memory to its current one (`clear_refs` 5), so
    /// that [`ServerProcess::peak_rss_bytes`] gives the peak from now on.
    pub fn reset_peak_rss(&self) {
        for pid in self.pids() {
            std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
                .unwrap_or_else(|e| panic!("reset the peak RSS of {pid}: {e}"));
        }
    }

    /// The sum of every process's peak resident memory (`VmHWM`) since
    /// [`ServerProcess::reset_peak_rss`], in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        self.pids().into_iter().filter_map(|pid| status_kib(pid, "VmHWM:")).sum::<u64>() * 1024
    }
}

/// A control connection that round-trips a small text message every `every` on a thread
/// of its own (its own runtime: an attack running on the test's runtime cannot starve it),
/// recording each round trip's time, until [`ControlProbe::finish`].
#[derive(Debug)]
pub struct ControlProbe {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Duration>>,
}

/// What a [`ControlProbe`] saw.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    /// Round trips completed.
    pub count: usize,
    /// The median round trip.
    pub p50: Duration,
    /// The slowest round trip.
    pub max: Duration,
}

impl std::fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} round trips, p50 {:?}, max {:?}", self.count, self.p50, self.max)
    }
}

/// One end of a control connection: sends a text message, gives back the echo.
pub trait Echo: Send + 'static {
    /// Sends `text`; the text echoed.
    fn echo(&mut self, text: String) -> impl Future<Output = String> + Send + '_;
}

/// A WebSocket client of an echo route (HTTP/1.1).
struct WsEcho(Client);

impl Echo for WsEcho {
    async fn echo(&mut self, text: String) -> String {
        match round_trip(&mut self.0, Message::text(text)).await {
            Message::Text(echoed) => echoed.to_string(),
            other => panic!("the control connection's echo: {other:?}"),
        }
    }
}

impl ControlProbe {
    /// Connects to `url` (an echo route) and starts probing.
    pub async fn start(url: &str, every: Duration) -> ControlProbe {
        let url = url.to_owned();
        ControlProbe::start_with(move || async move { WsEcho(connect(&url).await) }, every).await
    }

    /// Starts probing over the connection `open` makes (on the probe's thread, so it lives
    /// on the probe's runtime).
    pub async fn start_with<E, F, Fut>(open: F, every: Duration) -> ControlProbe
    where
        E: Echo,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = E>,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready, connected) = tokio::sync::oneshot::channel();
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("control-probe".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the control probe");
                runtime.block_on(async move {
                    let mut control = open().await;
                    assert_eq!(control.echo("warm".to_owned()).await, "warm");
                    let _ = ready.send(());
                    probe(control, every, flag).await
                })
            })
            .expect("a thread for the control probe");
        let started = tokio::time::timeout(crate::WAIT, connected).await;
        assert!(matches!(started, Ok(Ok(()))), "the control probe did not connect");
        ControlProbe { stop, thread }
    }

    /// Stops probing and reports; panics if the control connection failed.
    pub async fn finish(self) -> ProbeReport {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread;
        let joined = tokio::task::spawn_blocking(move || thread.join()).await.expect("join the probe thread");
        let mut times = joined.unwrap_or_else(|_| panic!("the control probe failed (see its panic above)"));
        assert!(!times.is_empty(), "the control connection completed no round trip");
        times.sort();
        ProbeReport { count: times.len(), p50: times[times.len() / 2], max: times[times.len() - 1] }
    }
}

async fn probe(mut control: impl Echo, every: Duration, stop: Arc<AtomicBool>) -> Vec<Duration> {
    let mut times = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let text = format!("probe {n}");
        let sent = Instant::now();
        assert_eq!(control.echo(text.clone()).await, text, "the control connection's echo");
        times.push(sent.elapsed());
        tokio::time::sleep(every).await;
    }
    times
}
