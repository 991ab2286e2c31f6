//! The shape of `server.toml`. Every key is optional; defaults are documented per field.
//! Unknown keys are errors (a typo must not silently fall back to a default).

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// `[server]`: listeners and the document root.
    pub server: ServerSection,
    /// `[handlers]`: where plugins come from.
    pub handlers: HandlersSection,
    /// `[websocket]`: protocol limits and timeouts.
    pub websocket: WebSocketSection,
    /// `[log]`: logging.
    pub log: LogSection,
    /// `[[route]]`: aliases and per-route settings.
    pub route: Vec<RouteSection>,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Addresses to listen on. Default `["127.0.0.1:9998", "[::1]:9998"]`: loopback only, on
    /// both families, so `ws://localhost:9998/echo` works whichever `localhost` resolves to.
    /// A `[::1]` listener that cannot be bound (no IPv6) is skipped with a warning.
    pub listen: Vec<Spanned<String>>,
    /// Static document root served on the same port (pywebsocket `-d`). Default: none.
    pub document_root: Option<Spanned<String>>,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: vec![
                Spanned::new(0..0, "127.0.0.1:9998".into()),
                Spanned::new(0..0, "[::1]:9998".into()),
            ],
            document_root: None,
        }
    }
}

/// `[handlers]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HandlersSection {
    /// Directory scanned for `*_wsh` plugins (pywebsocket `-w`). Default `handlers`.
    pub dir: Spanned<String>,
    /// Scan subdirectories too (`<dir>/chat/libroom_wsh.so` → `/chat/room`). Default `true`.
    pub recursive: bool,
    /// Watch the directory and hot-reload changed, added and removed handlers. Default `true`.
    pub watch: bool,
    /// Quiet time after the last file event before the directory is rescanned, in
    /// milliseconds. Default 100.
    pub debounce_ms: u64,
}

impl Default for HandlersSection {
    fn default() -> Self {
        HandlersSection {
            dir: Spanned::new(0..0, "handlers".into()),
            recursive: true,
            watch: true,
            debounce_ms: 100,
        }
    }
}

/// `[websocket]`: defaults for every route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocketSection {
    /// Largest message accepted, in bytes; a larger one closes with 1009. Default 16 MiB.
    pub max_message_bytes: u64,
    /// Largest frame accepted, in bytes; a larger one closes with 1009. Default 16 MiB.
    pub max_frame_bytes: u64,
    /// Time a client has to send its complete handshake request. Default 10 s.
    pub handshake_timeout_secs: u64,
    /// Time the server waits for the peer's close frame after sending its own. Default 5 s.
    pub close_timeout_secs: u64,
    /// Size of each connection's read buffer in bytes. Small keeps idle connections cheap;
    /// large helps bulk transfers. Default 8 KiB.
    pub read_buffer_bytes: u64,
    /// Received messages queued for a handler that is not reading, in bytes, before the host
    /// stops reading from the socket (TCP back-pressure). Default 1 MiB (always at least one
    /// message).
    pub inbound_queue_bytes: u64,
}

impl Default for WebSocketSection {
    fn default() -> Self {
        WebSocketSection {
            max_message_bytes: 16 << 20,
            max_frame_bytes: 16 << 20,
            handshake_timeout_secs: 10,
            close_timeout_secs: 5,
            read_buffer_bytes: 8 << 10,
            inbound_queue_bytes: 1 << 20,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `error`, `warn`, `info`, `debug` or `trace` (or a tracing filter such as
    /// `wshd=debug`). `RUST_LOG` overrides it. Default `info`.
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection { level: "info".into() }
    }
}

/// One `[[route]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// The request path this route answers (`/` or `/chat`).
    pub path: Spanned<String>,
    /// The resource path of the handler that serves it (`/echo`). Default: `path` itself
    /// (to give a discovered handler settings without aliasing it).
    pub handler: Option<Spanned<String>>,
    /// Handler configuration, handed to `Handler::new`. A route with its own table gets its
    /// own handler instance.
    pub config: Option<toml::Table>,
    /// Overrides `[websocket] max_message_bytes` for this route.
    pub max_message_bytes: Option<u64>,
}
