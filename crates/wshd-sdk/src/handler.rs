//! The handler trait: mod_pywebsocket's two hooks, `do_handshake` and `transfer_data`.

use std::future::Future;

use crate::{Config, Connection, Request};

/// The error type handlers return from [`Handler::new`].
pub type Error = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A WebSocket handler: one instance per route, shared by all its connections.
///
/// Export it from a `cdylib` crate whose file name ends in `_wsh` with
/// [`export_handler!`](crate::export_handler).
pub trait Handler: Send + Sync + Sized + 'static {
    /// Builds the handler from the route's `[route.config]` table in `server.toml`
    /// (empty when the route has none). An error refuses the plugin, with its message logged.
    fn new(config: &Config) -> Result<Self, Error>;

    /// Inspects the opening handshake (origin, subprotocols, headers, cookies) and accepts or
    /// rejects it, like `web_socket_do_extra_handshake`. The default accepts everything
    /// without choosing a subprotocol.
    fn do_handshake(&self, request: &Request<'_>) -> Result<Accept, Reject> {
        let _ = request;
        Ok(Accept::new())
    }

    /// The conversation, like `web_socket_transfer_data`. When it returns without having
    /// closed the connection, the host closes it with 1000.
    fn transfer_data(&self, conn: Connection) -> impl Future<Output = ()> + Send;
}

/// A successful handshake: optionally a chosen subprotocol and extra response headers.
#[derive(Debug, Default, Clone)]
pub struct Accept {
    pub(crate) protocol: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) decline_extensions: bool,
}

impl Accept {
    /// Accepts with no subprotocol and no extra headers.
    pub fn new() -> Accept {
        Accept::default()
    }

    /// Chooses one of the subprotocols the client offered. Choosing one it did not offer is a
    /// handler bug: the host answers 500 and logs it.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Accept {
        self.protocol = Some(protocol.into());
        self
    }

    /// Adds a header to the `101 Switching Protocols` response (e.g. `Set-Cookie`).
    /// `Upgrade`, `Connection` and `Sec-WebSocket-*` are the host's and cannot be set.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Accept {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Declines every extension the client offered (e.g. permessage-deflate), like setting
    /// `request.ws_extension_processors = []` in mod_pywebsocket.
    pub fn decline_extensions(mut self) -> Accept {
        self.decline_extensions = true;
        self
    }
}

/// A refused handshake: an HTTP error response, or a silent abort.
#[derive(Debug, Clone)]
pub struct Reject {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
    pub(crate) abort: bool,
}

impl Reject {
    /// Refuses with an HTTP status (4xx or 5xx).
    pub fn status(status: u16) -> Reject {
        Reject { status, headers: Vec::new(), body: String::new(), abort: false }
    }

    /// Refuses with `403 Forbidden`, what mod_pywebsocket answers when the hook raises.
    pub fn forbidden() -> Reject {
        Reject::status(403)
    }

    /// Drops the TCP connection without any response (`AbortedByUserException`).
    pub fn abort() -> Reject {
        Reject { abort: true, ..Reject::status(0) }
    }

    /// Adds a header to the error response.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Reject {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body of the error response (plain text).
    pub fn body(mut self, body: impl Into<String>) -> Reject {
        self.body = body.into();
        self
    }
}
