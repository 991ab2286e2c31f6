//! The opening-handshake request as a handler sees it in [`Handler::do_handshake`](crate::Handler::do_handshake).

use std::net::SocketAddr;

/// One request header.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    /// Name as received.
    pub name: &'a str,
    /// Raw value.
    pub value: &'a [u8],
}

/// The handshake request, borrowed for the duration of `do_handshake`.
#[derive(Debug)]
pub struct Request<'a> {
    pub(crate) method: &'a str,
    pub(crate) uri: &'a str,
    pub(crate) path: &'a str,
    pub(crate) resource: &'a str,
    pub(crate) query: Option<&'a str>,
    pub(crate) http_version: &'a str,
    pub(crate) headers: Vec<Header<'a>>,
    pub(crate) peer_addr: Option<SocketAddr>,
    pub(crate) socket_addr: Option<SocketAddr>,
    pub(crate) local_addr: Option<SocketAddr>,
    pub(crate) is_secure: bool,
}

impl<'a> Request<'a> {
    /// The HTTP method (`GET`).
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The raw request target, with query (`/echo?x=1`).
    pub fn uri(&self) -> &'a str {
        self.uri
    }

    /// The path the client asked for, without query (an alias when routed through one).
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The handler's resource path (from its file name), like pywebsocket's `ws_resource`
    /// without the query.
    pub fn resource(&self) -> &'a str {
        self.resource
    }

    /// The query string without `?`, if any.
    pub fn query(&self) -> Option<&'a str> {
        self.query
    }

    /// `HTTP/1.1`.
    pub fn http_version(&self) -> &'a str {
        self.http_version
    }

    /// All headers, in arrival order.
    pub fn headers(&self) -> &[Header<'a>] {
        &self.headers
    }

    /// The first header with this name (case-insensitive), if its value is UTF-8.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    }

    /// The `Host` header.
    pub fn host(&self) -> Option<&'a str> {
        self.header("host")
    }

    /// The `Origin` header (`ws_origin`).
    pub fn origin(&self) -> Option<&'a str> {
        self.header("origin")
    }

    /// The subprotocols the client offered, in order (`ws_requested_protocols`).
    pub fn requested_protocols(&self) -> Vec<&'a str> {
        self.token_list("sec-websocket-protocol")
    }

    /// The extension offers, one string each (`permessage-deflate; client_max_window_bits`).
    pub fn requested_extensions(&self) -> Vec<&'a str> {
        self.token_list("sec-websocket-extensions")
    }

    /// Cookies from every `Cookie` header, as `(name, value)` pairs.
    pub fn cookies(&self) -> Vec<(&'a str, &'a str)> {
        self.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
            .filter_map(|h| std::str::from_utf8(h.value).ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                Some((name.trim(), value.trim()))
            })
            .collect()
    }

    /// One cookie's value.
    pub fn cookie(&self, name: &str) -> Option<&'a str> {
        self.cookies().into_iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The client's address: the TCP peer, or the client a trusted proxy reported.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_addr
    }

    /// The TCP peer's address (the proxy, when behind one).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.socket_addr
    }

    /// The local address the connection arrived on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Whether the client connected over TLS (directly or through a trusted proxy).
    pub fn is_secure(&self) -> bool {
        self.is_secure
    }

    fn token_list(&self, name: &str) -> Vec<&'a str> {
        self.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .filter_map(|h| std::str::from_utf8(h.value).ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect()
    }
}
