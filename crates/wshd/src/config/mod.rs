//! Configuration: `server.toml` (see `config/server.toml` for a commented example), merged
//! with command-line flags into one resolved [`Config`].

mod broker_url;
mod handler_map;
mod load;
mod schema;

pub use broker_url::scrub as scrub_secret;
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
    /// A message in progress that gains fewer than `message_min_bytes` in a window this long
    /// is dropped and its connection closed (1008 "message too slow"); `None` = never.
    pub message_timeout: Option<Duration>,
    /// See `message_timeout`.
    pub message_min_bytes: usize,
    /// This process's in-flight budget: bytes held in partial messages and send queues over
    /// all its connections (`[websocket] inflight_budget_bytes` shared out over the worker
    /// processes); 0 = no limit.
    pub inflight_budget_bytes: usize,
    /// Open connections allowed on the route (the global limit applies as well).
    pub max_connections: Option<usize>,
    /// permessage-deflate policy.
    pub deflate: DeflateSettings,
    /// How the route's connections use the host's rooms (`[route.rooms]`).
    pub rooms: RoomSettings,
}

/// A route's rooms settings (`[route.rooms]` in `server.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomSettings {
    /// Channels in the namespace shared by every route that sets it (else the route's own).
    pub shared: bool,
    /// A member whose queue is full loses its oldest messages instead of being closed (1008).
    pub drop_oldest: bool,
    /// Messages published with an id kept per channel (0: none).
    pub history_messages: usize,
    /// How long such a message is kept.
    pub history_age: Duration,
}

impl Default for RoomSettings {
    fn default() -> Self {
        RoomSettings {
            shared: false,
            drop_oldest: false,
            history_messages: 100,
            history_age: Duration::from_secs(300),
        }
    }
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
    /// Largest window answered to a client that offered `client_max_window_bits` (9–15).
    pub client_max_window_bits: u8,
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
    /// Its overrides of the `[websocket]` defaults (`None` fields: the default).
    pub overrides: RouteOverrides,
    /// `file:line` of the route, for messages about it.
    pub origin: String,
}

/// A route's overrides of the `[websocket]` settings and of the connection limit: every
/// per-route key of `[[route]]` but the handler and its configuration. `None`: the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteOverrides {
    /// Largest message accepted.
    pub max_message_bytes: Option<usize>,
    /// permessage-deflate on or off.
    pub deflate: Option<bool>,
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
    /// `[route.rooms]`, when the route has the table.
    pub rooms: Option<RoomSettings>,
}

impl RouteOverrides {
    /// Applies these overrides to a route's settings.
    pub fn apply(&self, settings: &mut WsSettings) {
        if let Some(max) = self.max_message_bytes {
            settings.max_message_bytes = max;
        }
        if let Some(enabled) = self.deflate {
            settings.deflate.enabled = enabled;
        }
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
        if let Some(rooms) = self.rooms {
            settings.rooms = rooms;
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

/// The default of `[server] blocking_threads`: `wshd_sdk::blocking` jobs at once.
pub const DEFAULT_BLOCKING_THREADS: usize = 16;

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
    /// Connections in their handshake allowed at once per process before the oldest are
    /// shed (`[server] max_pending_connections`; `None`: no limit).
    pub max_pending_connections: Option<usize>,
    /// Jobs run with `wshd_sdk::blocking` at once (`[server] blocking_threads`).
    pub blocking_threads: usize,
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
    /// Worker processes and how they are supervised (`[server] workers`, `[workers]`).
    pub workers: WorkerSettings,
    /// What counts as a blocked handler (`[watchdog]`).
    pub watchdog: WatchdogSettings,
    /// HTTP/2 (`[http2]`).
    pub http2: Http2Settings,
    /// The broker linking this node's rooms to other nodes' (`[broker]`, `--broker`).
    pub broker: Option<BrokerSettings>,
}

/// Resolved `[broker]`. Its `Debug` shows the URL redacted (no password).
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerSettings {
    /// The Redis URL (`redis://…` or `rediss://…`, TLS), password included.
    pub url: String,
    /// How often the node renews its liveness key; three missed make it dead.
    pub heartbeat: Duration,
    /// `/readyz` answers 503 while the broker is down.
    pub not_ready_while_down: bool,
    /// The TLS files of a `rediss://` URL.
    pub tls: BrokerTls,
}

/// `[broker] tls_ca_file`, `tls_cert_file`, `tls_key_file` (PEM; only with `rediss://`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerTls {
    /// The CAs that sign Redis's certificate, instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// This node's certificate chain, for Redis's `tls-auth-clients yes`.
    pub cert_file: Option<PathBuf>,
    /// The key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

impl BrokerTls {
    /// Whether any TLS file is set.
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }
}

impl fmt::Debug for BrokerSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerSettings")
            .field("url", &self.redacted_url())
            .field("heartbeat", &self.heartbeat)
            .field("not_ready_while_down", &self.not_ready_while_down)
            .field("tls", &self.tls)
            .finish()
    }
}

impl BrokerSettings {
    /// The default heartbeat.
    pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);

    /// Checks `url`: `redis://` or `rediss://` with a host, no `#fragment` (an error
    /// message otherwise, showing the URL without its password).
    pub fn check_url(url: &str) -> Result<(), String> {
        broker_url::check(url)
    }

    /// Checks that `tls` goes with `url`: TLS files only with `rediss://`, a certificate
    /// with its key. Returns the key at fault and why.
    pub fn check_tls(url: &str, tls: &BrokerTls) -> Result<(), (&'static str, String)> {
        if tls.is_set() && !broker_url::is_tls(url) {
            let why = "TLS files are for a rediss:// URL; this one is redis:// (plain TCP)";
            let key = if tls.ca_file.is_some() { "broker.tls_ca_file" } else { "broker.tls_cert_file" };
            return Err((key, why.to_owned()));
        }
        match (&tls.cert_file, &tls.key_file) {
            (Some(_), None) => {
                Err(("broker.tls_key_file", "tls_cert_file needs its tls_key_file".to_owned()))
            }
            (None, Some(_)) => {
                Err(("broker.tls_cert_file", "tls_key_file needs its tls_cert_file".to_owned()))
            }
            _ => Ok(()),
        }
    }

    /// The URL without its password, for logs and messages.
    pub fn redacted_url(&self) -> String {
        broker_url::redact(&self.url)
    }
}

/// Resolved `[server] workers` and `[workers]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerSettings {
    /// Worker processes under a master; 0: one process serves everything, no master.
    pub count: usize,
    /// Runtime threads per worker (or of the single process).
    pub threads: usize,
    /// Heartbeat age, or time one handler call may hold a thread, before a worker is killed.
    pub heartbeat_timeout: Duration,
    /// Crashes of a route within [`Self::quarantine_window`] that quarantine it; 0 = never.
    pub quarantine_after_crashes: u32,
    /// The window in which crashes count towards a quarantine.
    pub quarantine_window: Duration,
    /// Resident memory in bytes past which a worker is recycled; `None` = never.
    pub recycle_rss_bytes: Option<u64>,
    /// WebSocket connections accepted over a worker's life after which it is recycled;
    /// `None` = never.
    pub recycle_after_connections: Option<u64>,
}

impl WorkerSettings {
    /// The most runtime threads a worker can have (the scoreboard's thread slots per worker).
    pub const MAX_THREADS: u64 = 64;
    /// The most worker processes (the scoreboard's cells).
    pub const MAX_WORKERS: u64 = 32;

    /// The CPUs this process may run on (1 when unknown).
    pub fn cpus() -> usize {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    }

    /// `"auto"`: one worker per CPU, at least 2 (so one crash costs at most half the
    /// connections), at most [`Self::MAX_WORKERS`].
    pub fn auto_count() -> usize {
        Self::cpus().clamp(2, Self::MAX_WORKERS as usize)
    }

    /// The default threads per worker for `count` workers: the CPUs shared out, at least 2.
    pub fn default_threads(count: usize) -> usize {
        (Self::cpus() / count.max(1)).clamp(2, Self::MAX_THREADS as usize)
    }
}

/// Resolved `[watchdog]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchdogSettings {
    /// A handler call holding its thread longer than this is logged and counted as blocked.
    pub blocked_warn: Duration,
    /// `/healthz` answers 503 while a handler call has held its thread this long.
    pub unhealthy_after: Duration,
}

/// Resolved `[http2]` (each key's meaning and default: `docs/http2.md`, `config/server.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Settings {
    /// ALPN `h2` on TLS listeners.
    pub enabled: bool,
    /// h2c with prior knowledge on plain listeners.
    pub cleartext: bool,
    /// Streams open at once per connection.
    pub max_concurrent_streams: u32,
    /// The per-stream receive window.
    pub initial_stream_window: u32,
    /// The per-connection receive window.
    pub initial_connection_window: u32,
    /// Largest decoded header list.
    pub max_header_list: u32,
    /// Streams reset by the client before being accepted, at once.
    pub max_pending_accept_reset_streams: usize,
    /// Streams reset by the server for the client's errors, per connection.
    pub max_local_error_reset_streams: usize,
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

/// Why TLS settings cannot work. [`TlsSettings::problem`] holds the rules; the file
/// (`[tls]`, against a key) and the merged configuration (naming the flags too) word them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsProblem {
    /// TLS is on without a certificate.
    NoCertificate,
    /// TLS is on without a private key.
    NoPrivateKey,
    /// Client certificates are asked for without the CA that signs them.
    NoClientCa,
    /// Client certificates are asked for with TLS off.
    ClientAuthWithoutTls,
}

impl TlsSettings {
    /// The first reason these settings cannot work, if any: with TLS on, a certificate, a
    /// key and (for client certificates) a CA are needed; client certificates need TLS.
    pub fn problem(&self) -> Option<TlsProblem> {
        if self.enabled {
            if self.cert.is_none() {
                return Some(TlsProblem::NoCertificate);
            }
            if self.key.is_none() {
                return Some(TlsProblem::NoPrivateKey);
            }
            if self.client_auth != ClientAuth::None && self.client_ca.is_none() {
                return Some(TlsProblem::NoClientCa);
            }
        } else if self.client_auth != ClientAuth::None {
            return Some(TlsProblem::ClientAuthWithoutTls);
        }
        None
    }
}

impl TlsProblem {
    /// The `server.toml` key a problem is reported against.
    pub fn key(self) -> &'static str {
        match self {
            TlsProblem::NoCertificate => "tls.cert",
            TlsProblem::NoPrivateKey => "tls.key",
            TlsProblem::NoClientCa => "tls.client_ca",
            TlsProblem::ClientAuthWithoutTls => "tls.client_auth",
        }
    }

    /// The message for a problem found in `[tls]`.
    pub fn in_file(self) -> &'static str {
        match self {
            TlsProblem::NoCertificate | TlsProblem::NoPrivateKey => {
                "TLS is enabled, so both `cert` and `key` are needed"
            }
            TlsProblem::NoClientCa => {
                "client_auth needs `client_ca`, the PEM bundle of the CAs that sign client certificates"
            }
            TlsProblem::ClientAuthWithoutTls => "client_auth needs TLS: set `cert` and `key`",
        }
    }

    /// The message for a problem of the merged configuration (file plus flags).
    pub fn merged(self) -> &'static str {
        match self {
            TlsProblem::NoCertificate => {
                "TLS is on but no certificate is given (--certificate FILE or [tls] cert)"
            }
            TlsProblem::NoPrivateKey => {
                "TLS is on but no private key is given (-k/--private-key FILE or [tls] key)"
            }
            TlsProblem::NoClientCa => {
                "TLS client authentication needs the CA that signs client certificates \
                 (--tls-client-ca FILE or [tls] client_ca)"
            }
            TlsProblem::ClientAuthWithoutTls => {
                "TLS client authentication needs TLS (-t/--tls or [tls] cert and key)"
            }
        }
    }
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
        if let Some(problem) = self.tls.problem() {
            return Err(problem.merged().into());
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
            self.add_handler_map(&map)?;
        }
        Ok(())
    }

    /// Adds the aliases of the handler map file `map` to `routes`; an alias that repeats a
    /// route is skipped, one that contradicts it is an error.
    fn add_handler_map(&mut self, map: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(map)
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
        Ok(())
    }

    /// The protocol settings of the route at `path`: the `[websocket]` defaults with its
    /// `[[route]]` overrides applied.
    pub fn route_settings(&self, path: &str) -> WsSettings {
        let mut settings = self.websocket.clone();
        if let Some(route) = self.routes.iter().find(|r| r.path == path) {
            route.overrides.apply(&mut settings);
        }
        settings
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_only_what_they_set() {
        let defaults = Config::default().websocket;
        let mut settings = defaults.clone();
        RouteOverrides::default().apply(&mut settings);
        assert_eq!(format!("{settings:?}"), format!("{defaults:?}"), "no override, no change");
        let overrides = RouteOverrides {
            max_message_bytes: Some(100),
            deflate: Some(false),
            max_connections: Some(3),
            idle_timeout: Some(Some(Duration::from_secs(7))),
            ping_interval: Some(None),
            pong_timeout: Some(Duration::from_secs(2)),
            max_send_queue_bytes: Some(4096),
            send_timeout: Some(None),
            rooms: None,
        };
        overrides.apply(&mut settings);
        assert_eq!((settings.max_message_bytes, settings.deflate.enabled), (100, false));
        assert_eq!(settings.max_connections, Some(3));
        assert_eq!(settings.idle_timeout, Some(Duration::from_secs(7)));
        assert_eq!((settings.ping_interval, settings.send_timeout), (None, None));
        assert_eq!((settings.pong_timeout, settings.max_send_queue_bytes), (Duration::from_secs(2), 4096));
        assert_eq!(settings.max_frame_bytes, defaults.max_frame_bytes, "not a route key");
        assert_eq!(settings.deflate.level, defaults.deflate.level, "only the switch is per route");
    }

    #[test]
    fn route_settings_take_the_routes_own_overrides() {
        let text = "[websocket]\nmax_message_bytes = 1000\nping_interval_secs = 9\n\
                    [[route]]\npath = \"/small\"\nhandler = \"/echo\"\nmax_message_bytes = 10\n\
                    [[route]]\npath = \"/quiet\"\nbuiltin = \"echo\"\nping_interval_secs = 0\ndeflate = false\n";
        let config = parse_str(text, "r.toml").unwrap_or_else(|e| panic!("{e}"));
        let small = config.route_settings("/small");
        assert_eq!((small.max_message_bytes, small.ping_interval), (10, Some(Duration::from_secs(9))));
        let quiet = config.route_settings("/quiet");
        assert_eq!(
            (quiet.max_message_bytes, quiet.ping_interval, quiet.deflate.enabled),
            (1000, None, false)
        );
        let other = config.route_settings("/echo");
        assert_eq!((other.max_message_bytes, other.deflate.enabled), (1000, true), "no route: defaults");
    }

    #[test]
    fn tls_rules_are_reported_in_file_and_flag_words() {
        let on = TlsSettings { enabled: true, ..TlsSettings::default() };
        assert_eq!(on.problem(), Some(TlsProblem::NoCertificate));
        let cert = TlsSettings { cert: Some("c.pem".into()), ..on.clone() };
        assert_eq!(cert.problem(), Some(TlsProblem::NoPrivateKey));
        let both = TlsSettings { key: Some("k.pem".into()), ..cert };
        assert_eq!(both.problem(), None);
        let clients = TlsSettings { client_auth: ClientAuth::Required, ..both.clone() };
        assert_eq!(clients.problem(), Some(TlsProblem::NoClientCa));
        let with_ca = TlsSettings { client_ca: Some("ca.pem".into()), ..clients };
        assert_eq!(with_ca.problem(), None);
        let off = TlsSettings { enabled: false, ..with_ca };
        assert_eq!(off.problem(), Some(TlsProblem::ClientAuthWithoutTls));

        // In the file, client_auth with TLS off waits for the flags; finish() refuses it.
        let mut config =
            parse_str("[tls]\nclient_auth = \"required\"\n", "t.toml").unwrap_or_else(|e| panic!("{e}"));
        let e = config.finish().expect_err("client certificates without TLS");
        assert_eq!(e, "TLS client authentication needs TLS (-t/--tls or [tls] cert and key)");
        let e = parse_str("[tls]\nkey = \"k.pem\"\n", "t.toml").expect_err("no certificate");
        assert_eq!((e.key.as_str(), e.message.as_str()), ("tls.cert", TlsProblem::NoCertificate.in_file()));
        let text = "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nclient_auth = \"optional\"\n";
        let e = parse_str(text, "t.toml").expect_err("no CA");
        assert_eq!(
            e.to_string(),
            format!("t.toml: key `tls.client_ca`: {}", TlsProblem::NoClientCa.in_file())
        );
        let mut flags = Config::default();
        flags.tls.enabled = true;
        flags.tls.key = Some("k.pem".into());
        let e = flags.finish().expect_err("no certificate");
        assert!(e.contains("no certificate is given (--certificate FILE or [tls] cert)"), "{e}");
    }
}
