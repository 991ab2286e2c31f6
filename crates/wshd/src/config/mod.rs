//! Configuration: `server.toml` (see `config/server.toml` for a commented example), merged
//! with command-line flags into one resolved [`Config`].

mod handler_map;
mod load;
mod schema;

pub use handler_map::parse_handler_map;
pub use load::{ConfigError, load_file, parse_str};
pub use schema::{ClientAuthMode as ClientAuth, ClientIpHeader, FileConfig, LogFormat};

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
    /// Bytes queued for a handler that is not reading before reads stop.
    pub inbound_queue_bytes: usize,
    /// No message either way for this long closes the connection (1001 "idle").
    pub idle_timeout: Option<Duration>,
    /// Keepalive ping interval.
    pub ping_interval: Option<Duration>,
    /// Silence after a keepalive ping that declares the peer dead.
    pub pong_timeout: Duration,
    /// Backlog of outgoing bytes beyond which a peer is closed as a slow reader.
    pub max_send_queue_bytes: usize,
    /// Time without write progress, while data waits, after which a peer is closed as a slow
    /// reader.
    pub send_timeout: Option<Duration>,
    /// Open connections allowed on the route (the global limit applies as well).
    pub max_connections: Option<usize>,
    /// permessage-deflate policy.
    pub deflate: DeflateSettings,
}

/// permessage-deflate policy (see `[websocket.deflate]` in `server.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeflateSettings {
    /// Negotiate at all.
    pub enabled: bool,
    /// Largest window the server compresses with (9–15).
    pub server_max_window_bits: u8,
    /// Reset the compressor after each message.
    pub server_no_context_takeover: bool,
    /// Ask clients to reset theirs.
    pub client_no_context_takeover: bool,
    /// Compression level (0–9).
    pub level: u32,
    /// Messages shorter than this are sent uncompressed.
    pub min_message_bytes: usize,
}

/// A handler built into the host, served by a `[[route]]` with `builtin = "<name>"` without
/// any plugin (and without the plugin boundary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// `"echo"`: every text and binary message comes back with its kind; after echoing the
    /// text `Goodbye` the server closes with 1000 (like the `echo_wsh` plugin).
    Echo,
}

impl Builtin {
    /// Every built-in handler.
    pub const ALL: [Builtin; 1] = [Builtin::Echo];

    /// The built-in handler called `name` in `server.toml`.
    pub fn from_name(name: &str) -> Option<Builtin> {
        Builtin::ALL.into_iter().find(|b| b.name() == name)
    }

    /// Its name in `server.toml` (`echo`).
    pub fn name(self) -> &'static str {
        match self {
            Builtin::Echo => "echo",
        }
    }

    /// Its handler name in logs and `check-config` (`builtin:echo`).
    pub fn handler_name(self) -> &'static str {
        match self {
            Builtin::Echo => "builtin:echo",
        }
    }
}

/// What serves a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteHandler {
    /// The handler plugin with this resource path (`/echo`).
    Resource(String),
    /// A handler built into the host.
    Builtin(Builtin),
}

impl fmt::Display for RouteHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteHandler::Resource(resource) => f.write_str(resource),
            RouteHandler::Builtin(builtin) => f.write_str(builtin.handler_name()),
        }
    }
}

/// A resolved `[[route]]`.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Request path.
    pub path: String,
    /// What serves it: a handler resource, or a built-in handler.
    pub handler: RouteHandler,
    /// Handler configuration (its own instance when present).
    pub config: Option<toml::Table>,
    /// Per-route message limit.
    pub max_message_bytes: Option<usize>,
    /// Per-route permessage-deflate switch.
    pub deflate: Option<bool>,
    /// Per-route limits and timeouts (`None`: the `[websocket]` default).
    pub limits: RouteLimits,
    /// `file:line` of the route, for messages about it.
    pub origin: String,
}

/// Per-route overrides of the `[websocket]` limits and of the connection limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteLimits {
    /// Open connections allowed on the route.
    pub max_connections: Option<usize>,
    /// Idle timeout (`Some(None)`: switched off for this route).
    pub idle_timeout: Option<Option<Duration>>,
    /// Keepalive interval (`Some(None)`: switched off for this route).
    pub ping_interval: Option<Option<Duration>>,
    /// Pong timeout.
    pub pong_timeout: Option<Duration>,
    /// Send queue limit.
    pub max_send_queue_bytes: Option<usize>,
    /// Send timeout (`Some(None)`: switched off for this route).
    pub send_timeout: Option<Option<Duration>>,
}

impl RouteLimits {
    /// Applies these overrides to a route's settings.
    pub fn apply(&self, settings: &mut WsSettings) {
        if let Some(max) = self.max_connections {
            settings.max_connections = Some(max);
        }
        if let Some(idle) = self.idle_timeout {
            settings.idle_timeout = idle;
        }
        if let Some(ping) = self.ping_interval {
            settings.ping_interval = ping;
        }
        if let Some(pong) = self.pong_timeout {
            settings.pong_timeout = pong;
        }
        if let Some(queue) = self.max_send_queue_bytes {
            settings.max_send_queue_bytes = queue;
        }
        if let Some(send) = self.send_timeout {
            settings.send_timeout = send;
        }
    }
}

/// Resolved `[proxy]`: whose forwarding headers are believed, and which ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxySettings {
    /// Trusted proxy networks.
    pub trusted: Vec<ipnet::IpNet>,
    /// The header family honoured from them.
    pub client_ip_header: ClientIpHeader,
    /// Skip every trusted hop (right to left) rather than take the rightmost one.
    pub recursive: bool,
}

impl ProxySettings {
    /// Whether `ip` belongs to a trusted proxy (an IPv4-mapped IPv6 address counts as its
    /// IPv4 address).
    pub fn is_trusted(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        self.trusted.iter().any(|net| net.contains(&ip))
    }
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
    /// Routes from the file (and, after [`Config::finish`], from the handler map).
    pub routes: Vec<RouteConfig>,
    /// Absolute `ws://` targets must name this host to be WebSocket requests.
    pub validation_host: Option<String>,
    /// Absolute `ws://` targets must name this port to be WebSocket requests.
    pub validation_port: Option<u16>,
    /// The handler map file whose aliases [`Config::finish`] adds to `routes`.
    pub handler_map: Option<PathBuf>,
    /// Only this subtree of the handler directory is scanned.
    pub handlers_scan_dir: Option<PathBuf>,
    /// Serve handler files whose real path is outside the handler directory.
    pub handlers_allow_outside: bool,
    /// TLS.
    pub tls: TlsSettings,
    /// HTTP Basic authentication.
    pub auth: AuthSettings,
    /// CGI scripts.
    pub cgi: CgiSettings,
    /// The admin listener (`/healthz`, `/readyz`, `/metrics`), if any.
    pub admin_listen: Option<SocketAddr>,
    /// The drain window on SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
    /// Open WebSocket connections allowed over all routes.
    pub max_connections: Option<usize>,
    /// Largest HTTP request head.
    pub max_header_bytes: usize,
    /// Trusted reverse proxies.
    pub proxy: ProxySettings,
    /// Log line format.
    pub log_format: LogFormat,
    /// Log file (stderr when `None`), rotated at `log_max_bytes`, `log_keep` old files kept.
    pub log_file: Option<PathBuf>,
    /// Rotation size of the log file.
    pub log_max_bytes: u64,
    /// Rotated log files kept.
    pub log_keep: u32,
}

/// Resolved `[tls]` (plus the TLS flags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// Every listener speaks TLS.
    pub enabled: bool,
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
    /// Client certificate policy.
    pub client_auth: ClientAuth,
    /// PEM CA bundle for client certificates.
    pub client_ca: Option<PathBuf>,
}

/// A `user:password` pair. Its `Debug` form hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(String);

impl Credential {
    /// Checks the `user:password` form.
    pub fn parse(text: &str) -> Result<Credential, String> {
        if !text.contains(':') {
            return Err("a credential must be of the form user:password".into());
        }
        if text.chars().any(char::is_control) {
            return Err("a credential cannot contain control characters".into());
        }
        Ok(Credential(text.to_owned()))
    }

    /// The `user:password` text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The user name.
    pub fn user(&self) -> &str {
        self.0.split_once(':').map_or(self.0.as_str(), |(user, _)| user)
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credential({}:***)", self.user())
    }
}

/// Resolved `[auth]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// Every request must carry the credential.
    pub basic: bool,
    /// The expected credential.
    pub credential: Credential,
    /// The realm of `WWW-Authenticate`.
    pub realm: String,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings { basic: false, credential: Credential("test:test".into()), realm: "wshd".into() }
    }
}

/// Checks a realm: printable, and no `"` or `\\` (it is sent as a quoted string).
pub fn check_realm(realm: &str) -> Result<(), String> {
    if realm.is_empty() || realm.chars().any(|c| c.is_control() || c == '"' || c == '\\') {
        return Err(format!(
            "realm `{realm}` must be non-empty, without quotes, backslashes or control characters"
        ));
    }
    Ok(())
}

/// Resolved `[cgi]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgiSettings {
    /// URL path prefixes, normalised (leading `/`, no trailing `/` except for `/` itself).
    pub paths: Vec<String>,
    /// Longest run of a script.
    pub timeout: Duration,
    /// Largest output of a script.
    pub max_output_bytes: usize,
    /// Largest request body handed to a script.
    pub max_input_bytes: usize,
}

impl Default for CgiSettings {
    fn default() -> Self {
        CgiSettings {
            paths: Vec::new(),
            timeout: Duration::from_secs(30),
            max_output_bytes: 10 << 20,
            max_input_bytes: 10 << 20,
        }
    }
}

/// Normalises a CGI path prefix: it must start with `/` and contain no `..` segment; a
/// trailing `/` is dropped.
pub fn normalize_cgi_path(path: &str) -> Result<String, String> {
    let path = path.trim();
    if !path.starts_with('/') {
        return Err(format!("CGI path `{path}` must start with `/`"));
    }
    if path.split('/').any(|segment| segment == "..") {
        return Err(format!("CGI path `{path}` cannot contain `..`"));
    }
    let trimmed = path.trim_end_matches('/');
    Ok(if trimmed.is_empty() { "/".to_owned() } else { trimmed.to_owned() })
}

impl Config {
    /// Checks what only the merged configuration (file plus flags) can tell, and adds the
    /// handler map's aliases to `routes`. Call once, after the flags are applied.
    pub fn finish(&mut self) -> Result<(), String> {
        if self.tls.enabled {
            if self.tls.cert.is_none() {
                return Err("TLS is on but no certificate is given (--certificate FILE or [tls] cert)".into());
            }
            if self.tls.key.is_none() {
                return Err(
                    "TLS is on but no private key is given (-k/--private-key FILE or [tls] key)".into()
                );
            }
            if self.tls.client_auth != ClientAuth::None && self.tls.client_ca.is_none() {
                return Err("TLS client authentication needs the CA that signs client certificates \
                            (--tls-client-ca FILE or [tls] client_ca)"
                    .into());
            }
        } else if self.tls.client_auth != ClientAuth::None {
            return Err("TLS client authentication needs TLS (-t/--tls or [tls] cert and key)".into());
        }
        if !self.cgi.paths.is_empty() && self.document_root.is_none() {
            return Err(format!(
                "CGI paths ({}) need a document root to find the scripts in (-d DIR or [server] document_root)",
                self.cgi.paths.join(", ")
            ));
        }
        if let Some(scan) = &self.handlers_scan_dir {
            check_scan_dir(&self.handlers_dir, scan)?;
        }
        if let Some(map) = self.handler_map.clone() {
            let text = std::fs::read_to_string(&map)
                .map_err(|e| format!("handler map {}: cannot read: {e}", map.display()))?;
            for alias in parse_handler_map(&text, &map.display().to_string())? {
                match self.routes.iter().find(|r| r.path == alias.path) {
                    Some(existing) if existing.handler == alias.handler => continue,
                    Some(existing) => {
                        return Err(format!(
                            "{}: alias {} -> {} conflicts with the route {} -> {} at {}",
                            alias.origin,
                            alias.path,
                            alias.handler,
                            existing.path,
                            existing.handler,
                            existing.origin
                        ));
                    }
                    None => self.routes.push(alias),
                }
            }
        }
        Ok(())
    }
}

/// The scan directory must exist and lie inside the handler directory (real paths).
fn check_scan_dir(handlers: &Path, scan: &Path) -> Result<(), String> {
    let root = std::fs::canonicalize(handlers)
        .map_err(|e| format!("handler directory {}: {e}", handlers.display()))?;
    let sub = std::fs::canonicalize(scan).map_err(|e| format!("scan directory {}: {e}", scan.display()))?;
    if !sub.starts_with(&root) {
        return Err(format!(
            "scan directory {} is not inside the handler directory {} (-s must name a subdirectory of -w)",
            scan.display(),
            handlers.display()
        ));
    }
    Ok(())
}

impl Default for DeflateSettings {
    /// The `[websocket.deflate]` defaults (those of an empty `server.toml`).
    fn default() -> Self {
        Config::default().websocket.deflate
    }
}

impl Default for Config {
    fn default() -> Self {
        // The built-in defaults are exactly an empty file's.
        load::resolve(FileConfig::default(), None, "").unwrap_or_else(|_| unreachable!("defaults are valid"))
    }
}
