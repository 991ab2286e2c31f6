//! [`ConnAddrs`]: the addresses of the connection a request arrived on, as the HTTP layer
//! resolved them (trusted proxies included); shared by `http/`, `plugin/` and `ws/`.

use std::net::SocketAddr;

/// Addresses of the connection a request arrived on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnAddrs {
    /// The client: the TCP peer, or who trusted proxies say the client is.
    pub(crate) peer: SocketAddr,
    /// The TCP peer (a proxy, when behind one).
    pub(crate) socket: SocketAddr,
    /// Our address on the connection.
    pub(crate) local: SocketAddr,
    /// The client's connection is TLS (to us, or to a trusted proxy that says so).
    pub(crate) secure: bool,
}
