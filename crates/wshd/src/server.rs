//! Listeners, the accept loop, the admin listener, and graceful shutdown.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::http::first_head::FirstHead;
use crate::http::service::{self, ConnAddrs};
use crate::metrics::Metrics;
use crate::pending::{ShedReason, Ticket};
use crate::reload::{self, ConfigSource};
pub use crate::state::ServerState;
use crate::state::Snapshot;

/// A running server.
#[derive(Debug)]
pub struct Server {
    addrs: Vec<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    state: Arc<ServerState>,
    stop: watch::Sender<bool>,
    listeners: JoinSet<()>,
    admin: Option<tokio::task::JoinHandle<()>>,
}

/// How a graceful shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// WebSocket connections open when the drain started.
    pub open_at_start: usize,
    /// Connection tasks still running when the drain window closed (0: all finished).
    pub left: usize,
    /// How long the drain took.
    pub took: Duration,
}

/// Why the server could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// Binds every configured address. A port of 0 is chosen once and shared by all listeners.
/// An IPv6 loopback that cannot be bound (no IPv6 on the machine) is skipped with a warning
/// when another listener exists.
pub(crate) async fn bind_all(listen: &[SocketAddr]) -> Result<Vec<TcpListener>, StartError> {
    let mut listeners: Vec<TcpListener> = Vec::new();
    let mut chosen_port = None;
    for addr in listen {
        let mut addr = *addr;
        if addr.port() == 0
            && let Some(port) = chosen_port
        {
            addr.set_port(port);
        }
        match TcpListener::bind(addr).await {
            Ok(listener) => {
                if addr.port() == 0 {
                    chosen_port = listener.local_addr().ok().map(|a| a.port());
                }
                listeners.push(listener);
            }
            Err(e) if addr.is_ipv6() && listen.len() > 1 && e.kind() == io::ErrorKind::AddrNotAvailable => {
                tracing::warn!("not listening on {addr}: {e} (no IPv6 here?)");
            }
            Err(e) => return Err(StartError(format!("cannot listen on {addr}: {e}"))),
        }
    }
    if listeners.is_empty() {
        return Err(StartError("no address could be bound".into()));
    }
    Ok(listeners)
}

/// Listeners bound before the server starts: by [`Server::start`] itself, or by a master
/// process whose worker inherits them.
pub struct Bound {
    /// The WebSocket/HTTP listeners.
    pub listeners: Vec<TcpListener>,
    /// The admin listener, if this process serves it.
    pub admin: Option<TcpListener>,
    /// Inherited from a master (which logged `listening on` already).
    pub inherited: bool,
    /// Asked before each accept, with this process's open WebSocket connections: `true`
    /// leaves the next connection to another worker sharing the listeners (see
    /// [`AcceptGate`]). `None`: always accept.
    pub gate: Option<AcceptGate>,
    /// Called with the server's state once it exists and before the first accept (a worker
    /// publishes its metrics source and tells its master it is ready: a connection served
    /// before that would be missing from the master's `/metrics`).
    pub before_accepting: Option<BeforeAccepting>,
}

/// See [`Bound::before_accepting`].
pub type BeforeAccepting = Box<dyn FnOnce(&Arc<ServerState>) + Send>;

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("listeners", &self.listeners)
            .field("admin", &self.admin)
            .field("inherited", &self.inherited)
            .field("gate", &self.gate.is_some())
            .field("before_accepting", &self.before_accepting.is_some())
            .finish()
    }
}

/// Balances accepts between worker processes sharing one listening socket: every worker's
/// accept is woken for a new connection and the first to call `accept` wins, which tends
/// to be the same worker; one that has more connections than another live worker stops
/// accepting for a few milliseconds at a time (nginx's `accept_disabled`), so the others
/// take them.
pub type AcceptGate = Arc<dyn Fn(usize) -> bool + Send + Sync>;

/// How long a worker that is ahead leaves accepting to the others before it looks again. Short
/// on purpose: a decision taken on counts that have since changed can leave every worker
/// stepping back at once, and with 5 ms that cost 35 % of the handshakes/s of two workers
/// (`wshd-bench run --workloads handshakes`); with 1 ms, 8 %.
const GATE_PAUSE: Duration = Duration::from_millis(1);

/// Binds `[server] listen` and `admin_listen`.
pub async fn bind(config: &Config) -> Result<Bound, StartError> {
    let listeners = bind_all(&config.listen).await?;
    let admin = match config.admin_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| StartError(format!("cannot listen on {addr} ([server] admin_listen): {e}")))?,
        ),
        None => None,
    };
    Ok(Bound { listeners, admin, inherited: false, gate: None, before_accepting: None })
}

impl Server {
    /// Loads the handlers, binds the listeners and starts serving, with hot reload of the
    /// handler directory. Without a `source`, SIGHUP only rescans the handler directory.
    pub async fn start(config: Config, source: Option<ConfigSource>) -> Result<Server, StartError> {
        let bound = bind(&config).await?;
        Server::start_on(config, source, bound).await
    }

    /// Like [`Server::start`], on listeners bound already.
    pub async fn start_on(
        config: Config,
        source: Option<ConfigSource>,
        bound: Bound,
    ) -> Result<Server, StartError> {
        let tls = if config.tls.enabled {
            let acceptor = crate::tls::acceptor(&config.tls).map_err(|e| StartError(e.to_string()))?;
            let cert = config.tls.cert.as_ref().map_or(String::new(), |c| c.display().to_string());
            tracing::info!(client_auth = ?config.tls.client_auth, "TLS on every listener, certificate {cert}");
            Some(acceptor)
        } else {
            None
        };
        let metrics =
            Arc::new(Metrics::new(crate::plugin::live_generations).sharing(crate::scoreboard::local()));
        crate::plugin::blocking::configure(config.blocking_threads);
        crate::budget::BUDGET.set_limit(config.websocket.inflight_budget_bytes);
        crate::budget::warn_if_messages_cannot_fit(&config);
        let watchdog = config.watchdog;
        crate::watchdog::start(tokio::runtime::Handle::current(), watchdog, Arc::clone(&metrics));
        let (reload, config, routes) =
            reload::start(config, metrics.plugin_counters()).await.map_err(StartError)?;
        let state = Arc::new(ServerState::new(Snapshot::new(config, routes, tls), metrics));
        if let Some(before_accepting) = bound.before_accepting {
            before_accepting(&state);
        }
        let (stop, stopped) = watch::channel(false);
        let mut addrs = Vec::new();
        let mut tasks = JoinSet::new();
        for listener in bound.listeners {
            let addr = listener.local_addr().map_err(|e| StartError(e.to_string()))?;
            if bound.inherited {
                tracing::info!("accepting on {addr} (listener inherited from the master)");
            } else {
                tracing::info!("listening on {addr}");
            }
            addrs.push(addr);
            tasks.spawn(accept_loop(listener, Arc::clone(&state), stopped.clone(), bound.gate.clone()));
        }
        tokio::spawn(reload::run(Arc::clone(&state), reload, source, stopped));
        let mut admin_addr = None;
        let admin = match bound.admin {
            Some(listener) => {
                let addr = listener.local_addr().map_err(|e| StartError(e.to_string()))?;
                tracing::info!("serving /healthz, /readyz and /metrics on http://{addr}");
                admin_addr = Some(addr);
                Some(tokio::spawn(crate::admin::serve(
                    listener,
                    Arc::clone(&state) as Arc<dyn crate::admin::AdminSource>,
                )))
            }
            None => None,
        };
        Ok(Server { addrs, admin_addr, state, stop, listeners: tasks, admin })
    }

    /// The bound addresses.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The admin listener's address, when there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Drains and stops: readiness turns false, the listeners close, every WebSocket session
    /// gets close 1001 "going away" and HTTP connections finish their request; waits until
    /// every connection is gone or `grace` has passed. The admin listener serves until the
    /// end.
    pub async fn shutdown(mut self, grace: Duration) -> Drained {
        let started = tokio::time::Instant::now();
        let open_at_start = self.state.open_connections();
        // Stop accepting first: a connection accepted after the drain started would only be
        // refused (503), where another worker, or a restarted server, could serve it.
        let _ = self.stop.send(true);
        while self.listeners.join_next().await.is_some() {}
        self.state.start_draining();
        self.state.lifecycle.tasks.close();
        let _ = tokio::time::timeout(grace, self.state.lifecycle.tasks.wait()).await;
        if let Some(admin) = self.admin.take() {
            admin.abort();
        }
        Drained { open_at_start, left: self.state.lifecycle.tasks.len(), took: started.elapsed() }
    }

    /// Shared state (the snapshot of configuration and routes, metrics, shutdown).
    pub fn state(&self) -> &Arc<ServerState> {
        &self.state
    }

    /// Stops accepting new connections.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.listeners.join_next().await.is_some() {}
    }

    /// Serves until the listeners stop (forever, unless stopped).
    pub async fn wait(&mut self) {
        while self.listeners.join_next().await.is_some() {}
    }
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<ServerState>,
    mut stopped: watch::Receiver<bool>,
    gate: Option<AcceptGate>,
) {
    let mut failures = AcceptFailures::default();
    let shed_from = crate::fd_limit::shed_from();
    loop {
        if let Some(gate) = &gate
            && gate(state.open_connections())
        {
            tokio::select! {
                () = tokio::time::sleep(GATE_PAUSE) => continue,
                _ = stopped.changed() => return,
            }
        }
        let accepted = tokio::select! {
            biased;
            _ = stopped.changed() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                failures.recovered();
                make_room(&state, &stream, shed_from);
                let ticket = state.pending.admit();
                state.lifecycle.tasks.spawn(serve_connection(stream, peer, Arc::clone(&state), ticket));
            }
            Err(e) if out_of_descriptors(&e) && shed_silent(&state) > 0 => {
                // Pending connections were closed to free descriptors: try again soon.
                tracing::debug!("out of descriptors ({e}): pending connections shed");
                tokio::time::sleep(SHED_PAUSE).await;
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                failures.failed(&e);
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// The pause after shedding pending connections on EMFILE, for their tasks to close them.
const SHED_PAUSE: Duration = Duration::from_millis(2);

/// Whether a failed `accept` means the process (EMFILE) or the system (ENFILE) is out of
/// file descriptors.
fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Out of descriptors: closes pending connections that have sent nothing for
/// [`SILENT_FOR`], an eighth of the pending, 1 to 32 (nginx's `ngx_drain_connections`).
/// Returns how many.
fn shed_silent(state: &ServerState) -> usize {
    let batch = (state.pending.len() / 8).clamp(1, 32);
    state.pending.shed_silent(batch, SILENT_FOR, ShedReason::FdLimit)
}

/// How long a connection that sent nothing since it was accepted counts as idle when
/// `accept` fails for want of descriptors (a real client sends its head right after its
/// connect completes).
const SILENT_FOR: Duration = Duration::from_millis(100);

/// Before a new connection is admitted: when its descriptor number says the process is near
/// its limit (`shed_from`), or `[server] max_pending_connections` are pending, the oldest
/// silent pending connection (else the oldest) is closed.
fn make_room(state: &ServerState, stream: &TcpStream, shed_from: Option<u64>) {
    use std::os::fd::AsRawFd;
    let fd = u64::try_from(stream.as_raw_fd()).unwrap_or(0);
    if shed_from.is_some_and(|from| fd >= from) {
        state.pending.shed(1, ShedReason::FdLimit);
        return;
    }
    if let Some(max) = state.snapshot().config.max_pending_connections {
        let over = (state.pending.len() + 1).saturating_sub(max);
        if over > 0 {
            state.pending.shed(over, ShedReason::PendingLimit);
        }
    }
}

/// The pause after a failed `accept` (EMFILE, ENFILE, ENOBUFS…) before the next try.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A run of failed `accept`s: logged once when it starts and once when it ends (with how
/// many attempts failed), not once per attempt (20 lines a second while the process is out
/// of descriptors).
#[derive(Debug, Default)]
struct AcceptFailures {
    /// Attempts failed since the last success.
    run: u64,
}

impl AcceptFailures {
    fn failed(&mut self, e: &std::io::Error) {
        if self.run == 0 {
            tracing::warn!(
                "accept failed: {e}; retrying every {ACCEPT_BACKOFF:?} (logged again when accepting works)"
            );
        }
        self.run += 1;
    }

    fn recovered(&mut self) {
        if self.run > 0 {
            tracing::info!("accepting again after {} failed attempts", self.run);
            self.run = 0;
        }
    }
}

/// What an HTTP connection needs from the snapshot, read once when it is accepted.
#[derive(Clone, Copy)]
struct ConnSettings {
    /// Time for the TLS handshake, and for each request head.
    handshake_timeout: Duration,
    /// Largest request head.
    max_header_bytes: usize,
}

/// Serves one accepted connection, unless it is shed while pending (dropped: closed).
async fn serve_connection(stream: TcpStream, peer: SocketAddr, state: Arc<ServerState>, ticket: Arc<Ticket>) {
    let shed = Arc::clone(&ticket);
    tokio::select! {
        () = shed.shed() => tracing::debug!(%peer, "pending connection shed"),
        () = serve_accepted(stream, peer, state, ticket) => {}
    }
}

async fn serve_accepted(stream: TcpStream, peer: SocketAddr, state: Arc<ServerState>, ticket: Arc<Ticket>) {
    let _ = stream.set_nodelay(true);
    let Ok(local) = stream.local_addr() else { return };
    // One load of the snapshot; the connection keeps only what it needs, so an old route
    // table (and the handler generations in it) is not kept alive by idle connections.
    let (settings, acceptor) = {
        let snapshot = state.snapshot();
        let config = &snapshot.config;
        let settings = ConnSettings {
            handshake_timeout: config.websocket.handshake_timeout,
            max_header_bytes: config.max_header_bytes,
        };
        (settings, snapshot.tls.clone())
    };
    let timeout = settings.handshake_timeout;
    let watch = Arc::clone(ticket.watch());
    let Some(acceptor) = acceptor else {
        let addrs = ConnAddrs { peer, socket: peer, local, secure: false };
        let io = FirstHead::http(stream, watch, timeout, settings.max_header_bytes);
        serve_http(TokioIo::new(io), addrs, state, settings, ticket).await;
        return;
    };
    // The TLS handshake shares the handshake timeout, so a silent client cannot hold a slot.
    let stream = FirstHead::heard_only(stream, Arc::clone(&watch));
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            let addrs = ConnAddrs { peer, socket: peer, local, secure: true };
            let io = FirstHead::http(tls, watch, timeout, settings.max_header_bytes);
            serve_http(TokioIo::new(io), addrs, state, settings, ticket).await;
        }
        Ok(Err(e)) => tracing::info!(%peer, "TLS handshake failed: {e}"),
        Err(_) => tracing::info!(%peer, "TLS handshake timed out after {timeout:?}"),
    }
}

async fn serve_http<I>(
    io: I,
    addrs: ConnAddrs,
    state: Arc<ServerState>,
    settings: ConnSettings,
    ticket: Arc<Ticket>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let peer = addrs.peer;
    let shutdown = state.lifecycle.shutdown.clone();
    let svc = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        // Called as soon as the head is parsed: the connection is no longer pending, and the
        // first head's fragment (if any) is reported once.
        if !ticket.watch().is_complete() {
            ticket.head_complete();
            if ticket.watch().has_fragment() {
                req.extensions_mut().insert(service::TargetFragment);
            }
        }
        service::handle(Arc::clone(&state), addrs, req)
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.handshake_timeout)
        .max_buf_size(settings.max_header_bytes);
    let conn = builder.serve_connection(io, svc).with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        () = shutdown.cancelled() => {
            // Finish the request in flight (if any), then close; idle keep-alive connections
            // close at once.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(%peer, "connection ended: {e}");
    }
}
