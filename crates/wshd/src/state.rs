//! The server's shared state: the [`Snapshot`] of configuration and routes that connections
//! read, and the handles every connection shares (metrics, the shutdown token, the task
//! tracker, the draining flag).
//!
//! A snapshot is immutable. A reload (a rescan of the handler directory, or SIGHUP) builds a
//! whole new one and swaps it in; a connection loads the current one once and keeps what it
//! loaded, so it sees one consistent configuration and route table, and a WebSocket keeps the
//! handler generation it was routed to. See `docs/decisions/0007-state-snapshot-and-reload.md`.
//!
//! This module depends on the configuration, the route table and the metrics, none of which
//! depends on it; the server, the admin listener, the HTTP service and the reload task
//! depend on it, not on each other.

use std::sync::{Arc, RwLock};

use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::pending::Pending;
use crate::plugin::RouteTable;

/// What a connection works with, swapped whole on reload: the configuration, the route table
/// built from it, and the TLS acceptor.
pub struct Snapshot {
    /// The configuration in force.
    pub config: Arc<Config>,
    /// The route table built from `config`.
    pub routes: Arc<RouteTable>,
    /// The TLS acceptor when the listeners speak TLS: the certificates of the last
    /// configuration whose TLS files loaded (a refused reload keeps the previous ones).
    pub(crate) tls: Option<TlsAcceptor>,
}

impl Snapshot {
    /// A snapshot of `config`, the table built from it, and the TLS acceptor (if TLS is on).
    pub(crate) fn new(config: Arc<Config>, routes: RouteTable, tls: Option<TlsAcceptor>) -> Snapshot {
        Snapshot { config, routes: Arc::new(routes), tls }
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("config", &self.config)
            .field("routes", &self.routes)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// What every connection shares.
pub struct ServerState {
    /// The snapshot in force; only the reload task replaces it.
    snapshot: RwLock<Arc<Snapshot>>,
    /// Whether the listeners speak TLS (fixed at start: switching needs a restart).
    tls: bool,
    /// Metrics, and the open-connection counts behind the limits.
    pub(crate) metrics: Arc<Metrics>,
    /// The drain signal and the connection tasks.
    pub(crate) lifecycle: Lifecycle,
    /// Connections still in their handshake.
    pub(crate) pending: Arc<Pending>,
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState")
            .field("snapshot", &self.snapshot())
            .field("tls", &self.tls)
            .field("draining", &self.is_draining())
            .finish_non_exhaustive()
    }
}

impl ServerState {
    /// A state serving `first`.
    pub(crate) fn new(first: Snapshot, metrics: Arc<Metrics>) -> ServerState {
        ServerState {
            tls: first.tls.is_some(),
            snapshot: RwLock::new(Arc::new(first)),
            pending: Arc::new(Pending::new(metrics.pending())),
            metrics,
            lifecycle: Lifecycle::default(),
        }
    }

    /// The snapshot in force: load it once per connection (or request) and keep it.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Serves `routes`, built from `config`, to new connections from now on; the TLS
    /// acceptor stays. Connections that loaded the previous snapshot keep it.
    pub(crate) fn publish(&self, config: Arc<Config>, routes: RouteTable) {
        let routes = Arc::new(routes);
        self.swap(|current| Snapshot { config, routes, tls: current.tls.clone() });
    }

    /// Serves new TLS connections with `acceptor` from now on; configuration and routes stay.
    pub(crate) fn replace_tls(&self, acceptor: TlsAcceptor) {
        self.swap(|current| Snapshot {
            config: Arc::clone(&current.config),
            routes: Arc::clone(&current.routes),
            tls: Some(acceptor),
        });
    }

    /// Replaces the snapshot with `next(current)`. The previous one is dropped after the
    /// lock is released: if it held the last reference to an old handler generation, its
    /// library is unloaded outside the lock.
    fn swap(&self, next: impl FnOnce(&Snapshot) -> Snapshot) {
        let mut guard = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
        let replacement = Arc::new(next(&guard));
        let previous = std::mem::replace(&mut *guard, replacement);
        drop(guard);
        drop(previous);
    }

    /// Whether the listeners speak TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Whether the server is shutting down.
    pub fn is_draining(&self) -> bool {
        self.lifecycle.is_draining()
    }

    /// Starts the drain: readiness turns false, the hot paths see the flag, sessions and
    /// HTTP connections are told to finish.
    pub(crate) fn start_draining(&self) {
        self.metrics.set_draining();
        self.lifecycle.start_draining();
    }

    /// Ready for traffic: not draining, and at least one handler routable (the listeners are
    /// bound before this state exists). `Err` says why not.
    pub fn readiness(&self) -> Result<(), String> {
        if self.is_draining() {
            return Err("draining: shutting down".into());
        }
        let snapshot = self.snapshot();
        if snapshot.routes.is_empty() {
            return Err(format!("no handlers loaded from {}", snapshot.config.handlers_dir.display()));
        }
        crate::metrics::broker::BROKER.readiness()
    }

    /// Open WebSocket connections.
    pub fn open_connections(&self) -> usize {
        self.metrics.open_connections()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A configuration with one built-in route at `path`.
    fn config_with(path: &str) -> Arc<Config> {
        let text = format!("[[route]]\npath = \"{path}\"\nbuiltin = \"echo\"\n");
        Arc::new(crate::config::parse_str(&text, "s.toml").unwrap_or_else(|e| panic!("{e}")))
    }

    fn table(config: &Config) -> RouteTable {
        RouteTable::assemble(config, BTreeMap::new(), Vec::new(), |_, _, _| None)
    }

    /// A resolver with no certificate: enough to make an acceptor to compare by identity.
    #[derive(Debug)]
    struct NoCertificate;

    impl rustls::server::ResolvesServerCert for NoCertificate {
        fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
            None
        }
    }

    fn acceptor() -> TlsAcceptor {
        let config = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|e| panic!("{e}"))
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(NoCertificate));
        TlsAcceptor::from(Arc::new(config))
    }

    fn same_acceptor(a: Option<&TlsAcceptor>, b: &TlsAcceptor) -> bool {
        a.is_some_and(|a| Arc::ptr_eq(a.config(), b.config()))
    }

    #[test]
    fn a_publish_swaps_config_and_routes_together_and_holders_keep_theirs() {
        let first = config_with("/one");
        let state = ServerState::new(
            Snapshot::new(Arc::clone(&first), table(&first), None),
            Arc::new(Metrics::new(|| 0)),
        );
        let held = state.snapshot();
        let second = config_with("/two");
        state.publish(Arc::clone(&second), table(&second));

        assert!(held.routes.get("/one").is_some() && held.routes.get("/two").is_none());
        assert!(Arc::ptr_eq(&held.config, &first), "a connection keeps the snapshot it loaded");
        let now = state.snapshot();
        assert!(now.routes.get("/two").is_some() && now.routes.get("/one").is_none());
        assert!(Arc::ptr_eq(&now.config, &second), "the config comes with the table built from it");
        assert!(Arc::ptr_eq(&state.snapshot().routes, &now.routes), "one snapshot until the next swap");
    }

    #[test]
    fn tls_and_routes_are_replaced_independently() {
        let config = config_with("/one");
        let original = acceptor();
        let snapshot = Snapshot::new(Arc::clone(&config), table(&config), Some(original.clone()));
        let state = ServerState::new(snapshot, Arc::new(Metrics::new(|| 0)));
        assert!(state.is_tls());

        let routes_before = Arc::clone(&state.snapshot().routes);
        let renewed = acceptor();
        state.replace_tls(renewed.clone());
        let now = state.snapshot();
        assert!(same_acceptor(now.tls.as_ref(), &renewed) && !same_acceptor(now.tls.as_ref(), &original));
        assert!(Arc::ptr_eq(&now.routes, &routes_before) && Arc::ptr_eq(&now.config, &config));

        let next = config_with("/two");
        state.publish(Arc::clone(&next), table(&next));
        assert!(
            same_acceptor(state.snapshot().tls.as_ref(), &renewed),
            "a route reload keeps the certificate"
        );
    }

    #[test]
    fn readiness_needs_a_route_and_no_drain() {
        let empty = Arc::new(Config::default());
        let state = ServerState::new(
            Snapshot::new(Arc::clone(&empty), RouteTable::empty(), None),
            Arc::new(Metrics::new(|| 0)),
        );
        assert!(!state.is_tls());
        let why = state.readiness().expect_err("no route");
        assert_eq!(why, format!("no handlers loaded from {}", empty.handlers_dir.display()));
        let config = config_with("/one");
        state.publish(Arc::clone(&config), table(&config));
        assert_eq!(state.readiness(), Ok(()));
        state.start_draining();
        assert_eq!(state.readiness(), Err("draining: shutting down".to_owned()));
        assert!(state.is_draining() && state.lifecycle.shutdown.is_cancelled());
    }
}
