//! Listeners and the accept loop.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::http::service::{self, ConnAddrs};
use crate::plugin::Registry;
use crate::reload_task::{self, ConfigSource};

/// What every connection shares.
#[derive(Debug)]
pub struct ServerState {
    /// The route table (with the configuration it was built from).
    pub registry: Registry,
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    addrs: Vec<SocketAddr>,
    state: Arc<ServerState>,
    stop: watch::Sender<bool>,
    listeners: JoinSet<()>,
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
async fn bind_all(listen: &[SocketAddr]) -> Result<Vec<TcpListener>, StartError> {
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

impl Server {
    /// Loads the handlers, binds the listeners and starts serving, with hot reload of the
    /// handler directory. Without a `source`, SIGHUP only rescans the handler directory.
    pub async fn start(config: Config, source: Option<ConfigSource>) -> Result<Server, StartError> {
        let listeners = bind_all(&config.listen).await?;
        let mut reloader = crate::plugin::Reloader::new(Arc::new(config));
        let first = reloader.pass();
        let state = Arc::new(ServerState { registry: Registry::new(first.table) });
        let (stop, stopped) = watch::channel(false);
        let mut addrs = Vec::new();
        let mut tasks = JoinSet::new();
        for listener in listeners {
            let addr = listener.local_addr().map_err(|e| StartError(e.to_string()))?;
            tracing::info!("listening on {addr}");
            addrs.push(addr);
            tasks.spawn(accept_loop(listener, Arc::clone(&state), stopped.clone()));
        }
        tokio::spawn(reload_task::run(Arc::clone(&state), reloader, source, first.unsettled, stopped));
        Ok(Server { addrs, state, stop, listeners: tasks })
    }

    /// The bound addresses.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Shared state (route table, config).
    pub fn state(&self) -> &Arc<ServerState> {
        &self.state
    }

    /// Stops accepting new connections.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.listeners.join_next().await.is_some() {}
    }

    /// Serves until the listeners stop (forever, unless stopped).
    pub async fn wait(mut self) {
        while self.listeners.join_next().await.is_some() {}
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<ServerState>, mut stopped: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.changed() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                tokio::spawn(serve_connection(stream, peer, Arc::clone(&state)));
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, state: Arc<ServerState>) {
    let _ = stream.set_nodelay(true);
    let Ok(local) = stream.local_addr() else { return };
    let addrs = ConnAddrs { peer, local };
    let timeout = state.registry.current().config.websocket.handshake_timeout;
    let svc_state = Arc::clone(&state);
    let svc = service_fn(move |req| service::handle(Arc::clone(&svc_state), addrs, req));
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(timeout).max_buf_size(64 * 1024);
    if let Err(e) = builder.serve_connection(TokioIo::new(stream), svc).with_upgrades().await {
        tracing::debug!(%peer, "connection ended: {e}");
    }
}
