//! The client side of `wshd-bench h2`: WebSockets over HTTP/1.1 upgrades on TLS
//! (tokio-tungstenite) and over RFC 8441 streams (`wshd_tests::h2ws`), and the measurements.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use wshd_tests::h2ws::{H2Client, H2Opener, H2WebSocket, tls_client, tls_connect};

use crate::BoxError;
use crate::h2bench::{H2Args, Wshd};
use crate::h2bench_report::RoundTrips;

/// How long one reply may take before the run fails.
const LIMIT: Duration = Duration::from_secs(10);

type Wss = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Opens WebSockets to `/echo` one way.
#[derive(Clone)]
pub(crate) enum Dialer {
    /// An HTTP/1.1 upgrade on a new TLS connection each (ALPN `http/1.1`).
    H1 { url: String, addr: std::net::SocketAddr, tls: tokio_rustls::TlsConnector },
    /// A new RFC 8441 stream on one HTTP/2 connection.
    H2(H2Opener),
}

impl Dialer {
    /// HTTP/1.1 upgrades over TLS to `wshd`.
    pub(crate) fn h1(wshd: &Wshd) -> Dialer {
        let url = format!("wss://localhost:{}/echo", wshd.addr.port());
        Dialer::H1 { url, addr: wshd.addr, tls: tls_client(&wshd.cert, &[b"http/1.1"]) }
    }

    /// A new HTTP/2 connection to `wshd` (ALPN `h2`) and a dialer of streams on it; the
    /// connection lives as long as the returned client.
    pub(crate) async fn h2(wshd: &Wshd) -> (H2Client, Dialer) {
        let client = H2Client::connect(wshd.addr, &wshd.cert).await;
        let opener = client.opener();
        (client, Dialer::H2(opener))
    }

    async fn open(&mut self) -> Result<Socket, BoxError> {
        match self {
            Dialer::H1 { url, addr, tls } => {
                let (stream, _) = tls_connect(*addr, tls).await;
                let (ws, _) = timeout(LIMIT, tokio_tungstenite::client_async(url.as_str(), stream))
                    .await
                    .map_err(|_| "HTTP/1.1 upgrade timed out")??;
                Ok(Socket::H1(Box::new(ws)))
            }
            Dialer::H2(opener) => {
                let response = opener.websocket("/echo", &[]).await?;
                if response.status != 200 {
                    return Err(format!("extended CONNECT refused: {}", response.status).into());
                }
                Ok(Socket::H2(Box::new(H2WebSocket::accepted(response))))
            }
        }
    }
}

/// What an idle-memory measurement opens.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Idle {
    /// WebSockets over HTTP/1.1, a TLS connection each.
    H1,
    /// WebSocket streams on one HTTP/2 connection.
    H2Stream,
    /// HTTP/2 connections over TLS with one request served and no stream open.
    H2Connection,
}

/// One open WebSocket.
enum Socket {
    H1(Box<Wss>),
    H2(Box<H2WebSocket>),
}

impl Socket {
    /// Sends `text` and waits for its echo.
    async fn ask(&mut self, text: &str) -> Result<(), BoxError> {
        let len = match self {
            Socket::H1(ws) => {
                ws.send(Message::text(text)).await?;
                match timeout(LIMIT, ws.next()).await.map_err(|_| "no echo in time")? {
                    Some(Ok(Message::Text(reply))) => reply.len(),
                    other => return Err(format!("expected a text echo, got {other:?}").into()),
                }
            }
            Socket::H2(ws) => ws.ask(text).await.len(),
        };
        if len != text.len() {
            return Err(format!("echo of {} bytes came back with {len}", text.len()).into());
        }
        Ok(())
    }

    /// The closing handshake: close 1000, then the server's close (and, for HTTP/1.1, the
    /// end of the connection).
    async fn close(self) -> Result<(), BoxError> {
        match self {
            Socket::H1(mut ws) => {
                Wss::close(&mut ws, None).await?;
                let drained = async { while let Some(Ok(_)) = ws.next().await {} };
                timeout(LIMIT, drained).await.map_err(|_| "no close from the server")?;
            }
            Socket::H2(mut ws) => {
                if ws.close(1000).await != Some(1000) {
                    return Err("the server did not echo close 1000".into());
                }
            }
        }
        Ok(())
    }
}

/// The bounds of the measurements.
pub(crate) struct Bench {
    server: String,
    handshakes: usize,
    round_trips: usize,
    seconds: Duration,
    sockets: usize,
    idle: usize,
}

impl Bench {
    /// The bounds from the command line.
    pub(crate) fn new(args: &H2Args, wshd: &Wshd) -> Bench {
        Bench {
            server: wshd.pid().to_string(),
            handshakes: args.handshakes,
            round_trips: args.round_trips,
            seconds: Duration::from_secs_f64(args.seconds),
            sockets: args.sockets,
            idle: args.idle,
        }
    }

    /// WebSocket handshakes/s: `tasks` client tasks each open a WebSocket, echo once and close
    /// it, until `handshakes` are done or the time is up.
    pub(crate) async fn handshakes(&self, dialer: &Dialer, tasks: usize) -> Result<f64, BoxError> {
        let left = Arc::new(AtomicUsize::new(self.handshakes));
        let done = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + self.seconds;
        let started = Instant::now();
        let mut joins = Vec::new();
        for _ in 0..tasks {
            let (mut dialer, left, done) = (dialer.clone(), Arc::clone(&left), Arc::clone(&done));
            joins.push(tokio::spawn(async move {
                while Instant::now() < deadline && take_one(&left) {
                    let mut ws = dialer.open().await?;
                    ws.ask("hi").await?;
                    ws.close().await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<(), BoxError>(())
            }));
        }
        for join in joins {
            join.await??;
        }
        Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
    }

    /// Echo round trips/s of `bytes`-byte messages on one socket, one at a time, and what
    /// each cost the server and this client in CPU time and context switches.
    pub(crate) async fn round_trips(&self, dialer: &Dialer, bytes: usize) -> Result<RoundTrips, BoxError> {
        let mut ws = dialer.clone().open().await?;
        let text = "x".repeat(bytes);
        ws.ask(&text).await?;
        let before = Costs::now(&self.server)?;
        let deadline = Instant::now() + self.seconds;
        let started = Instant::now();
        let mut done = 0usize;
        while done < self.round_trips && Instant::now() < deadline {
            ws.ask(&text).await?;
            done += 1;
        }
        let took = started.elapsed();
        let after = Costs::now(&self.server)?;
        ws.close().await?;
        let n = done.max(1) as f64;
        let us = |a: Duration, b: Duration| a.saturating_sub(b).as_secs_f64() * 1e6 / n;
        Ok(RoundTrips {
            per_sec: done as f64 / took.as_secs_f64(),
            server_cpu_us: us(after.server_cpu, before.server_cpu),
            client_cpu_us: us(after.client_cpu, before.client_cpu),
            server_switches: after.server_switches.saturating_sub(before.server_switches) as f64 / n,
        })
    }

    /// Echoes/s over `sockets` WebSockets at once (each one message at a time), the sockets
    /// opened round robin over `dialers`, for `seconds`.
    pub(crate) async fn parallel(&self, dialers: &[Dialer], bytes: usize) -> Result<f64, BoxError> {
        let mut sockets = Vec::new();
        for i in 0..self.sockets {
            let mut dialer = dialers[i % dialers.len()].clone();
            sockets.push(dialer.open().await?);
        }
        let text: Arc<str> = "x".repeat(bytes).into();
        let started = Instant::now();
        let deadline = started + self.seconds;
        let mut joins = Vec::new();
        for mut ws in sockets {
            let text = Arc::clone(&text);
            joins.push(tokio::spawn(async move {
                let mut done = 0usize;
                while Instant::now() < deadline {
                    ws.ask(&text).await?;
                    done += 1;
                }
                ws.close().await?;
                Ok::<usize, BoxError>(done)
            }));
        }
        let mut total = 0usize;
        for join in joins {
            total += join.await??;
        }
        Ok(total as f64 / self.seconds.as_secs_f64())
    }

    /// Server RSS per idle unit of `kind`, in KiB: `idle` of them opened on `wshd` (a
    /// server of its own, warmed by one WebSocket each way), the RSS delta over their count.
    pub(crate) async fn idle_memory(&self, wshd: &Wshd, kind: Idle) -> Result<f64, BoxError> {
        let rss = || crate::procinfo::vm_rss_kib(wshd.pid()).ok_or("cannot read the server's RSS");
        let settle = || tokio::time::sleep(Duration::from_millis(300));
        let (warm_client, warm_h2) = Dialer::h2(wshd).await;
        let warm = [self.open_some(&warm_h2, 1).await?, self.open_some(&Dialer::h1(wshd), 1).await?];
        settle().await;
        let base = rss()?;
        let mut clients = Vec::new();
        let mut sockets = Vec::new();
        match kind {
            Idle::H1 => sockets = self.open_some(&Dialer::h1(wshd), self.idle).await?,
            Idle::H2Stream => {
                let (client, h2) = Dialer::h2(wshd).await;
                sockets = self.open_some(&h2, self.idle).await?;
                clients.push(client);
            }
            Idle::H2Connection => {
                for _ in 0..self.idle {
                    let mut c = H2Client::connect(wshd.addr, &wshd.cert).await;
                    let r = c.request("GET", "/nowhere", None, &[]).await?;
                    if r.status != 404 {
                        return Err(format!("GET /nowhere over h2: {}", r.status).into());
                    }
                    clients.push(c);
                }
            }
        }
        settle().await;
        let grown = rss()?.saturating_sub(base);
        drop((sockets, clients, warm, warm_client));
        Ok(grown as f64 / self.idle as f64)
    }

    /// `n` WebSockets opened with `dialer`, each having echoed once.
    async fn open_some(&self, dialer: &Dialer, n: usize) -> Result<Vec<Socket>, BoxError> {
        let mut dialer = dialer.clone();
        let mut sockets = Vec::with_capacity(n);
        for _ in 0..n {
            let mut ws = dialer.open().await?;
            ws.ask("x").await?;
            sockets.push(ws);
        }
        Ok(sockets)
    }
}

/// CPU time and context switches so far.
struct Costs {
    server_cpu: Duration,
    client_cpu: Duration,
    server_switches: u64,
}

impl Costs {
    fn now(server: &str) -> Result<Costs, BoxError> {
        Ok(Costs {
            server_cpu: crate::cpu::process_cpu(server).ok_or("cannot read the server's CPU time")?,
            client_cpu: crate::cpu::process_cpu("self").ok_or("cannot read this process's CPU time")?,
            server_switches: crate::procinfo::context_switches(server)
                .ok_or("cannot read the server's context switches")?,
        })
    }
}

/// Takes one unit from `left`; false when none is left.
fn take_one(left: &AtomicUsize) -> bool {
    left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok()
}
