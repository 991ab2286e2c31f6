//! Configuration: `server.toml` (see `config/server.toml` for a commented example), merged
//! with command-line flags into one resolved [`Config`].

mod load;
mod schema;

pub use load::{ConfigError, load_file, parse_str};
pub use schema::FileConfig;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Protocol settings for a route (defaults from `[websocket]`, overridable per route).
#[derive(Debug, Clone)]
pub struct WsSettings {
    /// Largest message accepted (1009 beyond).
    pub max_message_bytes: usize,
    /// Largest frame accepted (1009 beyond).
    pub max_frame_bytes: usize,
    /// Time to receive the whole handshake request.
    pub handshake_timeout: Duration,
    /// Time to wait for the peer's close frame.
    pub close_timeout: Duration,
    /// Read buffer per connection.
    pub read_buffer_bytes: usize,
    /// Bytes queued for a handler that is not reading before reads stop.
    pub inbound_queue_bytes: usize,
}

/// A resolved `[[route]]`.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Request path.
    pub path: String,
    /// Target handler resource.
    pub handler: String,
    /// Handler configuration (its own instance when present).
    pub config: Option<toml::Table>,
    /// Per-route message limit.
    pub max_message_bytes: Option<usize>,
    /// `file:line` of the route, for messages about it.
    pub origin: String,
}

/// The resolved configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, if any.
    pub source: Option<PathBuf>,
    /// Listen addresses.
    pub listen: Vec<SocketAddr>,
    /// Static document root.
    pub document_root: Option<PathBuf>,
    /// Handler directory.
    pub handlers_dir: PathBuf,
    /// Scan subdirectories of the handler directory.
    pub handlers_recursive: bool,
    /// Watch the handler directory for changes.
    pub handlers_watch: bool,
    /// Debounce before a rescan.
    pub handlers_debounce: Duration,
    /// Default protocol settings.
    pub websocket: WsSettings,
    /// Log filter.
    pub log_level: String,
    /// Routes from the file.
    pub routes: Vec<RouteConfig>,
}

impl Default for Config {
    fn default() -> Self {
        // The built-in defaults are exactly an empty file's.
        load::resolve(FileConfig::default(), None, "").unwrap_or_else(|_| unreachable!("defaults are valid"))
    }
}
