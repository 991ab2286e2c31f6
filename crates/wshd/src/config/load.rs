//! Reading `server.toml`: parse, validate, resolve — every error names the file, line,
//! column and key.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::schema::{
    AuthSection, BrokerSection, CgiSection, FileConfig, Http2Section, ProxySection, RoomsSection,
    RouteSection, ServerSection, TlsSection, WatchdogSection, WebSocketSection, WorkersSection, WorkersValue,
};
use super::{
    AuthSettings, BrokerSettings, BrokerTls, Builtin, CgiSettings, Config, Credential, DeflateSettings,
    Http2Settings, ProxySettings, RoomSettings, RouteConfig, RouteHandler, RouteOverrides, TlsProblem,
    TlsSettings, WatchdogSettings, WorkerSettings, WsSettings, check_realm, normalize_cgi_path,
};

/// The smallest `max_header_bytes` (the HTTP parser's minimum buffer).
const MIN_HEADER_BYTES: u64 = 8192;

/// `0` means "off" for the timeouts that can be switched off.
fn secs_or_off(secs: u64) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// Parses a `[proxy] trusted` entry: a CIDR block, or a single address (a /32 or /128).
pub(super) fn parse_trusted(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<ipnet::IpNet>() {
        if net.addr() != net.network() {
            return Err(format!(
                "`{text}` has host bits set; did you mean `{}`? (write the network address, or a \
                 single address without a prefix length)",
                net.trunc()
            ));
        }
        return Ok(net);
    }
    match text.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(ipnet::IpNet::from(ip)),
        Err(_) => Err(format!(
            "`{text}` is not an address or a CIDR block (e.g. \"127.0.0.1\", \"10.0.0.0/8\" or \"::1/128\")"
        )),
    }
}

/// A configuration error, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or `<string>`).
    pub file: String,
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// 1-based column, 0 when unknown.
    pub column: usize,
    /// The dotted key (`websocket.max_message_bytes`), empty when unknown.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": key `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Reads and resolves a config file.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        line: 0,
        column: 0,
        key: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    let mut config = parse_str(&text, &path.display().to_string())?;
    config.source = Some(path.to_path_buf());
    Ok(config)
}

/// Parses and resolves config text; `file` names it in errors.
pub fn parse_str(text: &str, file: &str) -> Result<Config, ConfigError> {
    let raw: FileConfig = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        located(text, file, span, e.message().to_string())
    })?;
    resolve(raw, Some(text), file)
}

/// Builds a located error from a byte span of `text`.
fn located(text: &str, file: &str, span: Range<usize>, message: String) -> ConfigError {
    let start = span.start.min(text.len());
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..start].chars().count() + 1;
    ConfigError { file: file.to_owned(), line, column, key: key_at(text, line_start), message }
}

/// The dotted key of the `key = value` line starting at `line_start`, prefixed by the table
/// header in force there.
fn key_at(text: &str, line_start: usize) -> String {
    let line = text[line_start..].lines().next().unwrap_or("");
    let section = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    let trimmed = line.trim();
    if trimmed.starts_with('[') {
        return trimmed.trim_matches(|c| c == '[' || c == ']').trim().to_owned();
    }
    let key = line.split_once('=').map(|(k, _)| k.trim().trim_matches('"').to_owned()).unwrap_or_default();
    match (section, key.is_empty()) {
        (Some(s), false) => format!("{s}.{key}"),
        (Some(s), true) => s,
        (None, _) => key,
    }
}

/// Makes errors that name the file, line, column and key being resolved.
#[derive(Clone, Copy)]
struct Locator<'a> {
    /// The file's text (`None` for the built-in defaults: nothing to point at).
    text: Option<&'a str>,
    /// The file's name.
    file: &'a str,
}

impl Locator<'_> {
    /// An error about `key`, located at `span` when there is one (`0..0`: the key as a whole).
    fn err(&self, span: Range<usize>, key: &str, message: String) -> ConfigError {
        match self.text {
            Some(text) if span != (0..0) => {
                let mut e = located(text, self.file, span, message);
                e.key = key.to_owned();
                e
            }
            _ => ConfigError { file: self.file.to_owned(), line: 0, column: 0, key: key.to_owned(), message },
        }
    }

    /// `value` as a `usize`, or an error naming `key` on a machine where it does not fit.
    fn usize_of(&self, value: u64, key: &str) -> Result<usize, ConfigError> {
        usize::try_from(value)
            .map_err(|_| self.err(0..0, key, format!("{value} is too large for this machine")))
    }

    /// `file:line` of `span`, for messages about a route (just the file without the text).
    fn origin(&self, span: Range<usize>) -> String {
        match self.text {
            Some(text) => {
                let e = located(text, self.file, span, String::new());
                format!("{}:{}", e.file, e.line)
            }
            None => self.file.to_owned(),
        }
    }
}

/// Checks a route's `builtin = "<name>"`: a known name, and neither `handler` nor `config`
/// beside it (a built-in handler takes no configuration).
fn resolve_builtin(
    route: &RouteSection,
    builtin: &Spanned<String>,
    at: &Locator<'_>,
) -> Result<Builtin, ConfigError> {
    let name = builtin.get_ref();
    let Some(resolved) = Builtin::from_name(name) else {
        let valid: Vec<String> = Builtin::ALL.iter().map(|b| format!("\"{}\"", b.name())).collect();
        return Err(at.err(
            builtin.span(),
            "route.builtin",
            format!("unknown built-in handler `{name}`; valid: {}", valid.join(", ")),
        ));
    };
    if let Some(handler) = &route.handler {
        return Err(at.err(
            handler.span(),
            "route.handler",
            format!("a route is served by `handler` or by `builtin`, not both (builtin = \"{name}\" here)"),
        ));
    }
    if let Some(config) = &route.config {
        return Err(at.err(
            config.span(),
            "route.config",
            format!("built-in handler \"{name}\" takes no `config`"),
        ));
    }
    Ok(resolved)
}

/// Validates a parsed file and resolves it into a [`Config`], one section at a time. The
/// sections are checked in a fixed order, so a file with several mistakes always reports
/// the same one first.
pub(super) fn resolve(raw: FileConfig, text: Option<&str>, file: &str) -> Result<Config, ConfigError> {
    let at = Locator { text, file };
    let listen = server_listen(&raw.server, &at)?;
    let mut websocket = websocket_section(&raw.websocket, &at)?;
    let routes = route_sections(&raw.route, &at)?;
    let tls = tls_section(&raw.tls, &at)?;
    let auth = auth_section(&raw.auth, &at)?;
    let cgi = cgi_section(&raw.cgi, &at)?;
    let limits = server_limits(&raw.server, &at)?;
    let proxy = proxy_section(&raw.proxy, &at)?;
    let workers = workers_section(&raw.server, &raw.workers, &at)?;
    let watchdog = watchdog_section(&raw.watchdog, &at)?;
    let http2 = http2_section(&raw.http2, limits.max_header_bytes, &at)?;
    let broker = broker_section(&raw.broker, &at)?;
    // Each serving process holds its share of the server's in-flight budget.
    if websocket.inflight_budget_bytes > 0 {
        websocket.inflight_budget_bytes = (websocket.inflight_budget_bytes / workers.count.max(1)).max(1);
    }
    let (server, handlers, log) = (raw.server, raw.handlers, raw.log);
    Ok(Config {
        source: None,
        listen,
        document_root: server.document_root.map(|d| PathBuf::from(d.into_inner())),
        handlers_dir: PathBuf::from(handlers.dir.into_inner()),
        handlers_recursive: handlers.recursive,
        handlers_watch: handlers.watch,
        handlers_debounce: Duration::from_millis(handlers.debounce_ms),
        websocket,
        log_level: log.level,
        routes,
        validation_host: server.validation_host,
        validation_port: server.validation_port,
        handler_map: path_of(&handlers.map_file),
        handlers_scan_dir: path_of(&handlers.scan_dir),
        handlers_allow_outside: handlers.allow_outside_dir,
        tls,
        auth,
        cgi,
        admin_listen: limits.admin_listen,
        shutdown_grace: Duration::from_secs(server.shutdown_grace_secs),
        max_connections: limits.max_connections,
        max_header_bytes: limits.max_header_bytes,
        max_pending_connections: limits.max_pending_connections,
        blocking_threads: limits.blocking_threads,
        proxy,
        log_format: log.format,
        log_file: log.file.map(PathBuf::from),
        log_max_bytes: log.max_bytes,
        log_keep: log.keep,
        workers,
        watchdog,
        http2,
        broker,
    })
}

/// `[broker]`: the Redis URL, the heartbeat and the TLS files.
fn broker_section(raw: &BrokerSection, at: &Locator<'_>) -> Result<Option<BrokerSettings>, ConfigError> {
    if raw.heartbeat_ms < 50 {
        let message = format!("{} is too small: the least is 50", raw.heartbeat_ms);
        return Err(at.err(0..0, "broker.heartbeat_ms", message));
    }
    let Some(url) = &raw.url else {
        if let Some(file) =
            [&raw.tls_ca_file, &raw.tls_cert_file, &raw.tls_key_file].into_iter().flatten().next()
        {
            return Err(at.err(file.span(), "broker.url", "TLS files without a rediss:// url".into()));
        }
        return Ok(None);
    };
    BrokerSettings::check_url(url.get_ref()).map_err(|m| at.err(url.span(), "broker.url", m))?;
    let tls = BrokerTls {
        ca_file: path_of(&raw.tls_ca_file),
        cert_file: path_of(&raw.tls_cert_file),
        key_file: path_of(&raw.tls_key_file),
    };
    BrokerSettings::check_tls(url.get_ref(), &tls).map_err(|(key, why)| {
        let field = match key {
            "broker.tls_ca_file" => &raw.tls_ca_file,
            "broker.tls_key_file" => &raw.tls_key_file,
            _ => &raw.tls_cert_file,
        };
        at.err(field.as_ref().map_or(url.span(), Spanned::span), key, why)
    })?;
    let heartbeat = Duration::from_millis(raw.heartbeat_ms);
    let not_ready_while_down = raw.not_ready_while_down;
    Ok(Some(BrokerSettings { url: url.get_ref().clone(), heartbeat, not_ready_while_down, tls }))
}

/// `[server] workers` and `[workers]`: how many worker processes, their threads, and the
/// heartbeat timeout.
fn workers_section(
    server: &ServerSection,
    raw: &WorkersSection,
    at: &Locator<'_>,
) -> Result<WorkerSettings, ConfigError> {
    let span = server.workers.span();
    let count = match server.workers.get_ref() {
        WorkersValue::Name(name) if name == "auto" => WorkerSettings::auto_count(),
        WorkersValue::Count(n) if (0..=WorkerSettings::MAX_WORKERS as i64).contains(n) => *n as usize,
        WorkersValue::Count(n) => {
            let max = WorkerSettings::MAX_WORKERS;
            return Err(at.err(span, "server.workers", format!("{n} is out of range: 0 to {max}")));
        }
        WorkersValue::Name(name) => {
            let message = format!("`{name}` is not a number of workers: \"auto\" or 0 to 32");
            return Err(at.err(span, "server.workers", message));
        }
    };
    let threads = match &raw.threads {
        None => WorkerSettings::default_threads(count),
        Some(t) if (1..=WorkerSettings::MAX_THREADS).contains(t.get_ref()) => *t.get_ref() as usize,
        Some(t) => {
            let message = format!("{} is out of range: 1 to {}", t.get_ref(), WorkerSettings::MAX_THREADS);
            return Err(at.err(t.span(), "workers.threads", message));
        }
    };
    let heartbeat_timeout = match &raw.heartbeat_timeout_secs {
        None => Duration::from_secs(10),
        Some(secs) if *secs.get_ref() >= 1 => Duration::from_secs(*secs.get_ref()),
        Some(secs) => {
            return Err(at.err(secs.span(), "workers.heartbeat_timeout_secs", "must be at least 1".into()));
        }
    };
    let policy = worker_policy(raw, at)?;
    Ok(WorkerSettings { count, threads, heartbeat_timeout, ..policy })
}

/// `[workers]`' quarantine and recycling keys (the rest of the settings left at zero, for
/// [`workers_section`] to fill).
fn worker_policy(raw: &WorkersSection, at: &Locator<'_>) -> Result<WorkerSettings, ConfigError> {
    let crashes = match &raw.quarantine_after_crashes {
        None => 3,
        Some(n) if *n.get_ref() <= 1000 => *n.get_ref() as u32,
        Some(n) => {
            let message = format!("{} is out of range: 0 (never) to 1000", n.get_ref());
            return Err(at.err(n.span(), "workers.quarantine_after_crashes", message));
        }
    };
    let window = match &raw.quarantine_window_secs {
        None => Duration::from_secs(60),
        Some(secs) if *secs.get_ref() >= 1 => Duration::from_secs(*secs.get_ref()),
        Some(secs) => {
            return Err(at.err(secs.span(), "workers.quarantine_window_secs", "must be at least 1".into()));
        }
    };
    let rss = match &raw.recycle_rss_mib {
        Some(mib) if *mib.get_ref() > 1 << 30 => {
            let message = format!("{} MiB is out of range: 0 (off) to {}", mib.get_ref(), 1u64 << 30);
            return Err(at.err(mib.span(), "workers.recycle_rss_mib", message));
        }
        Some(mib) if *mib.get_ref() > 0 => Some(*mib.get_ref() << 20),
        _ => None,
    };
    let connections = raw.recycle_after_connections.as_ref().map(|n| *n.get_ref()).filter(|n| *n > 0);
    Ok(WorkerSettings {
        count: 0,
        threads: 0,
        heartbeat_timeout: Duration::ZERO,
        quarantine_after_crashes: crashes,
        quarantine_window: window,
        recycle_rss_bytes: rss,
        recycle_after_connections: connections,
    })
}

/// An optional path key as a path.
fn path_of(value: &Option<Spanned<String>>) -> Option<PathBuf> {
    value.as_ref().map(|p| PathBuf::from(p.get_ref()))
}

/// `[server] listen`: at least one `address:port`.
fn server_listen(server: &ServerSection, at: &Locator<'_>) -> Result<Vec<SocketAddr>, ConfigError> {
    let mut listen = Vec::new();
    for addr in &server.listen {
        let parsed: SocketAddr = addr.get_ref().parse().map_err(|_| {
            at.err(
                addr.span(),
                "server.listen",
                format!(
                    "`{}` is not an address:port (e.g. \"127.0.0.1:9998\" or \"[::1]:9998\")",
                    addr.get_ref()
                ),
            )
        })?;
        listen.push(parsed);
    }
    if listen.is_empty() {
        return Err(at.err(0..0, "server.listen", "at least one listen address is needed".into()));
    }
    Ok(listen)
}

/// The rest of `[server]` that needs checking: the admin address and the limits.
struct ServerLimits {
    admin_listen: Option<SocketAddr>,
    max_connections: Option<usize>,
    max_header_bytes: usize,
    max_pending_connections: Option<usize>,
    blocking_threads: usize,
}

/// The most `[server] blocking_threads` may be.
const MAX_BLOCKING_THREADS: u64 = 1024;

/// `[server] admin_listen`, `max_header_bytes`, `max_connections` and `blocking_threads`.
fn server_limits(server: &ServerSection, at: &Locator<'_>) -> Result<ServerLimits, ConfigError> {
    let admin_listen = match &server.admin_listen {
        None => None,
        Some(addr) => Some(addr.get_ref().parse::<SocketAddr>().map_err(|_| {
            at.err(
                addr.span(),
                "server.admin_listen",
                format!("`{}` is not an address:port (e.g. \"127.0.0.1:9990\")", addr.get_ref()),
            )
        })?),
    };
    if server.max_header_bytes < MIN_HEADER_BYTES {
        return Err(at.err(
            0..0,
            "server.max_header_bytes",
            format!("{} is too small: the least is {MIN_HEADER_BYTES}", server.max_header_bytes),
        ));
    }
    let max_connections = match server.max_connections {
        0 => None,
        max => Some(at.usize_of(max, "server.max_connections")?),
    };
    let max_header_bytes = at.usize_of(server.max_header_bytes, "server.max_header_bytes")?;
    let max_pending_connections = match server.max_pending_connections {
        0 => None,
        max => Some(at.usize_of(max, "server.max_pending_connections")?),
    };
    let blocking = &server.blocking_threads;
    if !(1..=MAX_BLOCKING_THREADS).contains(blocking.get_ref()) {
        let message = format!("{} is out of range: 1 to {MAX_BLOCKING_THREADS}", blocking.get_ref());
        return Err(at.err(blocking.span(), "server.blocking_threads", message));
    }
    let blocking_threads = at.usize_of(*blocking.get_ref(), "server.blocking_threads")?;
    Ok(ServerLimits {
        admin_listen,
        max_connections,
        max_header_bytes,
        max_pending_connections,
        blocking_threads,
    })
}

/// `[websocket]` and `[websocket.deflate]`: the default settings of every route.
fn websocket_section(ws: &WebSocketSection, at: &Locator<'_>) -> Result<WsSettings, ConfigError> {
    let d = &ws.deflate;
    for (bits, key) in [
        (d.server_max_window_bits, "websocket.deflate.server_max_window_bits"),
        (d.client_max_window_bits, "websocket.deflate.client_max_window_bits"),
    ] {
        if !(9..=15).contains(&bits) {
            return Err(at.err(0..0, key, "must be between 9 and 15".into()));
        }
    }
    if d.level > 9 {
        return Err(at.err(0..0, "websocket.deflate.level", "must be between 0 and 9".into()));
    }
    if ws.pong_timeout_secs == 0 {
        return Err(at.err(0..0, "websocket.pong_timeout_secs", "must be at least 1".into()));
    }
    if ws.handshake_timeout_secs == 0 {
        return Err(at.err(0..0, "websocket.handshake_timeout_secs", "must be at least 1".into()));
    }
    Ok(WsSettings {
        max_message_bytes: at.usize_of(ws.max_message_bytes, "websocket.max_message_bytes")?,
        max_frame_bytes: at.usize_of(ws.max_frame_bytes, "websocket.max_frame_bytes")?,
        handshake_timeout: Duration::from_secs(ws.handshake_timeout_secs),
        close_timeout: Duration::from_secs(ws.close_timeout_secs),
        inbound_queue_bytes: at.usize_of(ws.inbound_queue_bytes, "websocket.inbound_queue_bytes")?,
        idle_timeout: secs_or_off(ws.idle_timeout_secs),
        ping_interval: secs_or_off(ws.ping_interval_secs),
        pong_timeout: Duration::from_secs(ws.pong_timeout_secs),
        max_send_queue_bytes: at.usize_of(ws.max_send_queue_bytes, "websocket.max_send_queue_bytes")?,
        send_timeout: secs_or_off(ws.send_timeout_secs),
        message_timeout: secs_or_off(ws.message_timeout_secs),
        message_min_bytes: at.usize_of(ws.message_min_bytes, "websocket.message_min_bytes")?,
        inflight_budget_bytes: at.usize_of(ws.inflight_budget_bytes, "websocket.inflight_budget_bytes")?,
        max_connections: None,
        deflate: DeflateSettings {
            enabled: d.enabled,
            server_max_window_bits: d.server_max_window_bits,
            server_no_context_takeover: d.server_no_context_takeover,
            client_no_context_takeover: d.client_no_context_takeover,
            client_max_window_bits: d.client_max_window_bits,
            level: d.level,
            min_message_bytes: at.usize_of(d.min_message_bytes, "websocket.deflate.min_message_bytes")?,
        },
        rooms: RoomSettings::default(),
    })
}

/// Every `[[route]]`, in file order; a path may appear once.
fn route_sections(raw: &[RouteSection], at: &Locator<'_>) -> Result<Vec<RouteConfig>, ConfigError> {
    let mut routes: Vec<RouteConfig> = Vec::new();
    for route in raw {
        let path = route.path.get_ref();
        if !path.starts_with('/') {
            return Err(at.err(route.path.span(), "route.path", format!("`{path}` must start with `/`")));
        }
        let handler = match (&route.builtin, &route.handler) {
            (Some(builtin), _) => RouteHandler::Builtin(resolve_builtin(route, builtin, at)?),
            (None, Some(h)) if !h.get_ref().starts_with('/') => {
                return Err(at.err(
                    h.span(),
                    "route.handler",
                    format!("`{}` must start with `/`", h.get_ref()),
                ));
            }
            (None, Some(h)) => RouteHandler::Resource(h.get_ref().clone()),
            (None, None) => RouteHandler::Resource(path.clone()),
        };
        if routes.iter().any(|r| &r.path == path) {
            return Err(at.err(route.path.span(), "route.path", format!("route `{path}` is defined twice")));
        }
        routes.push(RouteConfig {
            path: path.clone(),
            handler,
            config: route.config.as_ref().map(|c| c.get_ref().clone()),
            origin: at.origin(route.path.span()),
            overrides: route_overrides(route, at)?,
        });
    }
    Ok(routes)
}

/// A `[[route]]`'s overrides of the `[websocket]` defaults and of the connection limit.
fn route_overrides(route: &RouteSection, at: &Locator<'_>) -> Result<RouteOverrides, ConfigError> {
    if route.pong_timeout_secs == Some(0) {
        return Err(at.err(route.path.span(), "route.pong_timeout_secs", "must be at least 1".into()));
    }
    let bytes = |value: Option<u64>, key: &str| value.map(|v| at.usize_of(v, key)).transpose();
    Ok(RouteOverrides {
        max_connections: bytes(route.max_connections.filter(|&v| v > 0), "route.max_connections")?,
        idle_timeout: route.idle_timeout_secs.map(secs_or_off),
        ping_interval: route.ping_interval_secs.map(secs_or_off),
        pong_timeout: route.pong_timeout_secs.map(Duration::from_secs),
        max_send_queue_bytes: bytes(route.max_send_queue_bytes, "route.max_send_queue_bytes")?,
        send_timeout: route.send_timeout_secs.map(secs_or_off),
        max_message_bytes: bytes(route.max_message_bytes, "route.max_message_bytes")?,
        deflate: route.deflate,
        rooms: route.rooms.as_ref().map(|r| rooms_section(r, at)).transpose()?,
    })
}

/// The largest `history_messages` of a `[route.rooms]`.
const MAX_HISTORY_MESSAGES: u64 = 100_000;
/// The largest `history_secs` of a `[route.rooms]` (a day).
const MAX_HISTORY_SECS: u64 = 86_400;

/// A `[route.rooms]` table: the defaults of [`RoomSettings`] with what it sets.
fn rooms_section(rooms: &RoomsSection, at: &Locator<'_>) -> Result<RoomSettings, ConfigError> {
    let mut settings = RoomSettings { shared: rooms.shared, ..RoomSettings::default() };
    if let Some(overflow) = &rooms.overflow {
        settings.drop_oldest = match overflow.get_ref().as_str() {
            "close" => false,
            "drop_oldest" => true,
            other => {
                let message = format!("`{other}` is not \"close\" or \"drop_oldest\"");
                return Err(at.err(overflow.span(), "route.rooms.overflow", message));
            }
        };
    }
    if let Some(count) = &rooms.history_messages {
        if *count.get_ref() > MAX_HISTORY_MESSAGES {
            let message = format!("{} is out of range: 0 to {MAX_HISTORY_MESSAGES}", count.get_ref());
            return Err(at.err(count.span(), "route.rooms.history_messages", message));
        }
        settings.history_messages = at.usize_of(*count.get_ref(), "route.rooms.history_messages")?;
    }
    if let Some(secs) = &rooms.history_secs {
        if !(1..=MAX_HISTORY_SECS).contains(secs.get_ref()) {
            let message = format!("{} is out of range: 1 to {MAX_HISTORY_SECS}", secs.get_ref());
            return Err(at.err(secs.span(), "route.rooms.history_secs", message));
        }
        settings.history_age = Duration::from_secs(*secs.get_ref());
    }
    Ok(settings)
}

/// `[tls]`. Whether the settings can work is [`TlsSettings::problem`]'s call; here a problem
/// is reported against its key. TLS switched on without a client certificate policy it can
/// meet is left to [`Config::finish`], since the flags may still switch TLS on.
fn tls_section(raw: &TlsSection, at: &Locator<'_>) -> Result<TlsSettings, ConfigError> {
    let tls = TlsSettings {
        enabled: raw.enabled.unwrap_or(raw.cert.is_some() || raw.key.is_some()),
        cert: path_of(&raw.cert),
        key: path_of(&raw.key),
        client_auth: raw.client_auth,
        client_ca: path_of(&raw.client_ca),
    };
    match tls.problem() {
        None | Some(TlsProblem::ClientAuthWithoutTls) => Ok(tls),
        Some(problem) => Err(at.err(0..0, problem.key(), problem.in_file().into())),
    }
}

/// `[auth]`: the credential and the realm.
fn auth_section(raw: &AuthSection, at: &Locator<'_>) -> Result<AuthSettings, ConfigError> {
    let credential = Credential::parse(raw.credential.get_ref())
        .map_err(|m| at.err(raw.credential.span(), "auth.credential", m))?;
    check_realm(raw.realm.get_ref()).map_err(|m| at.err(raw.realm.span(), "auth.realm", m))?;
    Ok(AuthSettings { basic: raw.basic, credential, realm: raw.realm.get_ref().clone() })
}

/// `[cgi]`: the path prefixes and the bounds of a script run.
fn cgi_section(raw: &CgiSection, at: &Locator<'_>) -> Result<CgiSettings, ConfigError> {
    let mut paths = Vec::new();
    for path in &raw.paths {
        paths.push(normalize_cgi_path(path.get_ref()).map_err(|m| at.err(path.span(), "cgi.paths", m))?);
    }
    if raw.timeout_secs == 0 {
        return Err(at.err(0..0, "cgi.timeout_secs", "must be at least 1".into()));
    }
    Ok(CgiSettings {
        paths,
        timeout: Duration::from_secs(raw.timeout_secs),
        max_output_bytes: at.usize_of(raw.max_output_bytes, "cgi.max_output_bytes")?,
        max_input_bytes: at.usize_of(raw.max_input_bytes, "cgi.max_input_bytes")?,
    })
}

/// `[proxy]`: the trusted networks and the header family believed from them.
fn proxy_section(raw: &ProxySection, at: &Locator<'_>) -> Result<ProxySettings, ConfigError> {
    let mut trusted = Vec::new();
    for entry in &raw.trusted {
        trusted.push(parse_trusted(entry.get_ref()).map_err(|m| at.err(entry.span(), "proxy.trusted", m))?);
    }
    Ok(ProxySettings { trusted, client_ip_header: raw.client_ip_header, recursive: raw.recursive })
}

/// `[watchdog]`: the blocked-handler thresholds.
fn watchdog_section(raw: &WatchdogSection, at: &Locator<'_>) -> Result<WatchdogSettings, ConfigError> {
    if raw.blocked_warn_ms < 10 {
        let message = format!("{} is too small: the least is 10 (the watchdog's tick)", raw.blocked_warn_ms);
        return Err(at.err(0..0, "watchdog.blocked_warn_ms", message));
    }
    if raw.unhealthy_after_secs == 0 {
        return Err(at.err(0..0, "watchdog.unhealthy_after_secs", "must be at least 1".into()));
    }
    Ok(WatchdogSettings {
        blocked_warn: Duration::from_millis(raw.blocked_warn_ms),
        unhealthy_after: Duration::from_secs(raw.unhealthy_after_secs),
    })
}

/// A `[http2]` number within `range`, or an error naming the key.
fn in_range(
    value: u64,
    range: std::ops::RangeInclusive<u64>,
    key: &str,
    at: &Locator<'_>,
) -> Result<u64, ConfigError> {
    if range.contains(&value) {
        return Ok(value);
    }
    let message = format!("{value} is out of range: {} to {}", range.start(), range.end());
    Err(at.err(0..0, key, message))
}

/// `[http2]`: the switches and the bounds of one HTTP/2 connection.
fn http2_section(
    raw: &Http2Section,
    max_header_bytes: usize,
    at: &Locator<'_>,
) -> Result<Http2Settings, ConfigError> {
    let u32_in = |v: u64, range, key: &str| -> Result<u32, ConfigError> {
        let v = in_range(v, range, key, at)?;
        u32::try_from(v).map_err(|_| at.err(0..0, key, format!("{v} is too large")))
    };
    let default_list = u64::try_from(max_header_bytes).unwrap_or(u64::MAX).min(1 << 20);
    let list = raw.max_header_list_bytes.unwrap_or(default_list);
    let pending = in_range(
        raw.max_pending_accept_reset_streams,
        1..=10_000,
        "http2.max_pending_accept_reset_streams",
        at,
    )?;
    let local =
        in_range(raw.max_local_error_reset_streams, 1..=100_000, "http2.max_local_error_reset_streams", at)?;
    Ok(Http2Settings {
        enabled: raw.enabled,
        cleartext: raw.cleartext,
        max_concurrent_streams: u32_in(
            raw.max_concurrent_streams,
            1..=65_536,
            "http2.max_concurrent_streams",
        )?,
        initial_stream_window: u32_in(
            raw.initial_stream_window_bytes,
            65_535..=16 << 20,
            "http2.initial_stream_window_bytes",
        )?,
        initial_connection_window: u32_in(
            raw.initial_connection_window_bytes,
            65_535..=64 << 20,
            "http2.initial_connection_window_bytes",
        )?,
        max_header_list: u32_in(list, 1024..=1 << 20, "http2.max_header_list_bytes")?,
        max_pending_accept_reset_streams: at.usize_of(pending, "http2.max_pending_accept_reset_streams")?,
        max_local_error_reset_streams: at.usize_of(local, "http2.max_local_error_reset_streams")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http2_defaults_and_bounds() {
        let config = parse_str("", "d.toml").expect("defaults");
        assert!(config.http2.enabled && !config.http2.cleartext);
        assert_eq!(config.http2.max_concurrent_streams, 128);
        assert_eq!(config.http2.max_header_list, 64 << 10, "follows [server] max_header_bytes");
        let config =
            parse_str("[http2]\nenabled = false\ncleartext = true\nmax_header_list_bytes = 4096\n", "o.toml")
                .expect("valid");
        assert!(!config.http2.enabled && config.http2.cleartext);
        assert_eq!(config.http2.max_header_list, 4096);
        for (text, key) in [
            ("[http2]\nmax_concurrent_streams = 0\n", "http2.max_concurrent_streams"),
            ("[http2]\ninitial_stream_window_bytes = 10\n", "http2.initial_stream_window_bytes"),
            ("[http2]\ninitial_connection_window_bytes = 1\n", "http2.initial_connection_window_bytes"),
            ("[http2]\nmax_header_list_bytes = 10\n", "http2.max_header_list_bytes"),
            ("[http2]\nmax_pending_accept_reset_streams = 0\n", "http2.max_pending_accept_reset_streams"),
            ("[http2]\nmax_local_error_reset_streams = 0\n", "http2.max_local_error_reset_streams"),
        ] {
            let e = parse_str(text, "h.toml").expect_err(key);
            assert_eq!(e.key, key, "{e}");
            assert!(e.message.contains("out of range"), "{e}");
        }
        let e = parse_str("[http2]\nmax_streams = 5\n", "u.toml").expect_err("unknown key");
        assert_eq!((e.line, e.key.as_str()), (2, "http2.max_streams"), "{e}");
    }

    #[test]
    fn unknown_key_names_line_column_and_key() {
        let text = "[server]\nlisten = [\"127.0.0.1:1\"]\n\n[websocket]\nmax_mesage_bytes = 5\n";
        let e = parse_str(text, "x.toml").expect_err("must be refused");
        assert_eq!((e.line, e.column), (5, 1), "{e}");
        assert_eq!(e.key, "websocket.max_mesage_bytes");
        assert!(e.message.contains("unknown field"), "{e}");
        assert!(e.to_string().starts_with("x.toml:5:1: key `websocket.max_mesage_bytes`"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e =
            parse_str("[websocket]\nclose_timeout_secs = \"soon\"\n", "y.toml").expect_err("must be refused");
        assert_eq!(e.line, 2);
        assert_eq!(e.key, "websocket.close_timeout_secs");
    }

    #[test]
    fn bad_listen_address_is_located() {
        let e = parse_str("[server]\nlisten = [\"localhost\"]\n", "z.toml").expect_err("must be refused");
        assert_eq!((e.line, e.key.as_str()), (2, "server.listen"), "{e}");
    }

    #[test]
    fn new_sections_resolve_and_errors_are_located() {
        let text = "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nclient_auth = \"optional\"\nclient_ca = \"ca.pem\"\n\
                    [auth]\nbasic = true\ncredential = \"a:b\"\n[cgi]\npaths = [\"/cgi-bin/\"]\ntimeout_secs = 2\n";
        let c = parse_str(text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        assert!(c.tls.enabled);
        assert_eq!(c.tls.client_auth, super::super::ClientAuth::Optional);
        assert_eq!(c.auth.credential.as_str(), "a:b");
        assert_eq!(c.cgi.paths, ["/cgi-bin"]);
        let e = parse_str("[auth]\ncredential = \"nocolon\"\n", "a.toml").expect_err("must be refused");
        assert_eq!((e.line, e.key.as_str()), (2, "auth.credential"), "{e}");
        assert!(!e.to_string().contains("nocolon"), "the secret is not echoed: {e}");
        let e = parse_str("[tls]\ncert = \"c.pem\"\n", "b.toml").expect_err("must be refused");
        assert_eq!(e.key, "tls.key", "{e}");
        let e = parse_str("[tls]\nclient_auth = \"maybe\"\n", "b.toml").expect_err("must be refused");
        assert_eq!(e.key, "tls.client_auth", "{e}");
        let e = parse_str("[cgi]\npaths = [\"cgi-bin\"]\n", "c.toml").expect_err("must be refused");
        assert_eq!((e.line, e.key.as_str()), (2, "cgi.paths"), "{e}");
    }

    #[test]
    fn the_broker_section_resolves_and_its_errors_name_line_and_key() {
        assert_eq!(parse_str("", "d.toml").unwrap_or_else(|e| panic!("{e}")).broker, None);
        let text = "[broker]\nurl = \"redis://:secret@10.0.0.5:6380/2\"\nheartbeat_ms = 1000\nnot_ready_while_down = false\n";
        let c = parse_str(text, "b.toml").unwrap_or_else(|e| panic!("{e}"));
        let broker = c.broker.unwrap_or_else(|| panic!("a broker"));
        assert_eq!(broker.url, "redis://:secret@10.0.0.5:6380/2");
        assert_eq!((broker.heartbeat, broker.not_ready_while_down), (Duration::from_millis(1000), false));
        let e = parse_str("[broker]\n\nurl = \"http://x\"\n", "b.toml").expect_err("must be refused");
        assert_eq!((e.line, e.key.as_str()), (3, "broker.url"), "{e}");
        let e =
            parse_str("[broker]\nurl = \"rediss://:s3cret@x/#insecure\"\n", "b.toml").expect_err("refused");
        assert!(e.to_string().contains("#insecure") && !e.to_string().contains("s3cret"), "{e}");
        let e = parse_str("[broker]\nurl = \"http://:s3cret@x\"\n", "b.toml").expect_err("must be refused");
        assert!(!e.to_string().contains("s3cret") && !format!("{e:?}").contains("s3cret"), "{e}");
        let e =
            parse_str("[broker]\nurl = \"redis://x\"\nheartbeat_ms = 10\n", "b.toml").expect_err("too short");
        assert_eq!(e.key, "broker.heartbeat_ms", "{e}");
    }

    #[test]
    fn the_broker_tls_keys_resolve_and_go_with_rediss_only() {
        let text = "[broker]\nurl = \"rediss://app:s3cret@r:6380/0\"\ntls_ca_file = \"ca.pem\"\n\
                    tls_cert_file = \"node.pem\"\ntls_key_file = \"node.key\"\n";
        let broker = parse_str(text, "b.toml").unwrap_or_else(|e| panic!("{e}")).broker;
        let broker = broker.unwrap_or_else(|| panic!("a broker"));
        assert_eq!(broker.tls.ca_file.as_deref(), Some(Path::new("ca.pem")));
        assert_eq!(broker.tls.key_file.as_deref(), Some(Path::new("node.key")));
        assert!(!format!("{broker:?}").contains("s3cret"), "Debug redacts the URL: {broker:?}");
        assert_eq!(broker.redacted_url(), "rediss://app:***@r:6380/0");
        let e = parse_str("[broker]\nurl = \"redis://r\"\n\ntls_ca_file = \"ca.pem\"\n", "b.toml")
            .expect_err("plain redis:// with a CA");
        assert_eq!((e.line, e.key.as_str()), (4, "broker.tls_ca_file"), "{e}");
        let e = parse_str("[broker]\nurl = \"rediss://r\"\ntls_cert_file = \"n.pem\"\n", "b.toml")
            .expect_err("a certificate without its key");
        assert_eq!(e.key, "broker.tls_key_file", "{e}");
        let e = parse_str("[broker]\ntls_ca_file = \"ca.pem\"\n", "b.toml").expect_err("no url");
        assert_eq!((e.line, e.key.as_str()), (2, "broker.url"), "{e}");
    }

    #[test]
    fn operations_keys_resolve() {
        let text = "[server]\nadmin_listen = \"127.0.0.1:9990\"\nshutdown_grace_secs = 2\nmax_connections = 0\n\
                    [proxy]\ntrusted = [\"127.0.0.1/32\", \"::1\", \"10.0.0.0/8\"]\nclient_ip_header = \"forwarded\"\n\
                    [websocket]\nidle_timeout_secs = 5\nping_interval_secs = 0\n[log]\nformat = \"json\"\n\
                    [[route]]\npath = \"/echo\"\nmax_connections = 3\nping_interval_secs = 2\nidle_timeout_secs = 0\n";
        let c = parse_str(text, "o.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.admin_listen, Some("127.0.0.1:9990".parse().unwrap_or_else(|e| panic!("{e}"))));
        assert_eq!(c.shutdown_grace, Duration::from_secs(2));
        assert_eq!(c.max_connections, None);
        assert_eq!(c.proxy.trusted.len(), 3);
        assert!(c.proxy.is_trusted("10.1.2.3".parse().unwrap_or_else(|e| panic!("{e}"))));
        assert!(c.proxy.is_trusted("::ffff:127.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"))));
        assert!(!c.proxy.is_trusted("192.0.2.1".parse().unwrap_or_else(|e| panic!("{e}"))));
        assert_eq!(c.proxy.client_ip_header, super::super::ClientIpHeader::Forwarded);
        assert_eq!(c.websocket.idle_timeout, Some(Duration::from_secs(5)));
        assert_eq!(c.websocket.ping_interval, None);
        assert_eq!(c.log_format, super::super::LogFormat::Json);
        let limits = &c.routes[0].overrides;
        assert_eq!(limits.max_connections, Some(3));
        assert_eq!(limits.ping_interval, Some(Some(Duration::from_secs(2))));
        assert_eq!(limits.idle_timeout, Some(None));
    }

    #[test]
    fn operations_keys_are_checked() {
        let e = parse_str("[proxy]\ntrusted = [\"10.0.0.1/8\"]\n", "p.toml").expect_err("host bits");
        assert_eq!((e.line, e.key.as_str()), (2, "proxy.trusted"), "{e}");
        assert!(e.message.contains("10.0.0.0/8"), "{e}");
        let e = parse_str("[proxy]\ntrusted = [\"localhost\"]\n", "p.toml").expect_err("not an address");
        assert_eq!(e.key, "proxy.trusted", "{e}");
        let e = parse_str("[proxy]\nclient_ip_header = \"x-real-ip\"\n", "p.toml").expect_err("unknown");
        assert_eq!(e.key, "proxy.client_ip_header", "{e}");
        let e = parse_str("[server]\nmax_header_bytes = 100\n", "p.toml").expect_err("too small");
        assert_eq!(e.key, "server.max_header_bytes", "{e}");
        let e = parse_str("[server]\nadmin_listen = \"9990\"\n", "p.toml").expect_err("no host");
        assert_eq!((e.line, e.key.as_str()), (2, "server.admin_listen"), "{e}");
        let e = parse_str("[log]\nformat = \"xml\"\n", "p.toml").expect_err("unknown format");
        assert_eq!(e.key, "log.format", "{e}");
        let e = parse_str("[websocket]\npong_timeout_secs = 0\n", "p.toml").expect_err("zero");
        assert_eq!(e.key, "websocket.pong_timeout_secs", "{e}");
    }

    #[test]
    fn worker_keys_resolve_and_are_checked() {
        let c = parse_str(
            "[server]\nworkers = 3\n[workers]\nthreads = 4\nheartbeat_timeout_secs = 2\n",
            "w.toml",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.workers.count, c.workers.threads), (3, 4));
        assert_eq!(c.workers.heartbeat_timeout, Duration::from_secs(2));
        let d = Config::default().workers;
        assert_eq!(d.count, WorkerSettings::auto_count());
        assert!(d.count >= 2 && d.threads >= 2, "{d:?}");
        assert_eq!(d.heartbeat_timeout, Duration::from_secs(10));
        assert_eq!((d.quarantine_after_crashes, d.quarantine_window), (3, Duration::from_secs(60)));
        assert_eq!((d.recycle_rss_bytes, d.recycle_after_connections), (None, None));
        let policy = "[workers]\nquarantine_after_crashes = 0\nquarantine_window_secs = 2\n\
                      recycle_rss_mib = 100\nrecycle_after_connections = 3\n";
        let p = parse_str(policy, "w.toml").unwrap_or_else(|e| panic!("{e}")).workers;
        assert_eq!((p.quarantine_after_crashes, p.quarantine_window), (0, Duration::from_secs(2)));
        assert_eq!((p.recycle_rss_bytes, p.recycle_after_connections), (Some(100 << 20), Some(3)));
        let single = parse_str("[server]\nworkers = 0\n", "w.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(single.workers.count, 0);
        for (text, line, key) in [
            ("[server]\nworkers = \"many\"\n", 2, "server.workers"),
            ("[server]\nworkers = -1\n", 2, "server.workers"),
            ("[server]\nworkers = 33\n", 2, "server.workers"),
            ("[workers]\nthreads = 0\n", 2, "workers.threads"),
            ("[workers]\n\nthreads = 65\n", 3, "workers.threads"),
            ("[workers]\nheartbeat_timeout_secs = 0\n", 2, "workers.heartbeat_timeout_secs"),
            ("[workers]\nthread = 2\n", 2, "workers.thread"),
            ("[workers]\nquarantine_after_crashes = 1001\n", 2, "workers.quarantine_after_crashes"),
            ("[workers]\nquarantine_after_crashes = -1\n", 2, "workers.quarantine_after_crashes"),
            ("[workers]\n\nquarantine_window_secs = 0\n", 3, "workers.quarantine_window_secs"),
            ("[workers]\nrecycle_rss_mib = 9999999999999\n", 2, "workers.recycle_rss_mib"),
            ("[workers]\nrecycle_after_connections = -3\n", 2, "workers.recycle_after_connections"),
        ] {
            let e = parse_str(text, "w.toml").expect_err(text);
            assert_eq!((e.line, e.key.as_str()), (line, key), "{e}");
        }
    }

    #[test]
    fn blocking_threads_default_and_range() {
        assert_eq!(Config::default().blocking_threads, 16);
        let c = parse_str("[server]\nblocking_threads = 3\n", "b.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.blocking_threads, 3);
        for text in ["[server]\n\nblocking_threads = 0\n", "[server]\n\nblocking_threads = 1025\n"] {
            let e = parse_str(text, "b.toml").expect_err(text);
            assert_eq!((e.line, e.key.as_str()), (3, "server.blocking_threads"), "{e}");
        }
    }

    #[test]
    fn routes_resolve_aliases() {
        let c = parse_str("[[route]]\npath = \"/\"\nhandler = \"/echo\"\n", "r.toml")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.routes[0].path, "/");
        assert_eq!(c.routes[0].handler, RouteHandler::Resource("/echo".into()));
        assert_eq!(c.routes[0].origin, "r.toml:2");
    }

    #[test]
    fn route_rooms_tables_resolve_and_errors_name_line_and_key() {
        let text = "[[route]]\npath = \"/chat\"\n[route.rooms]\nshared = true\noverflow = \"drop_oldest\"\nhistory_messages = 7\nhistory_secs = 9\n";
        let c = parse_str(text, "r.toml").expect("valid rooms table");
        let rooms = c.route_settings("/chat").rooms;
        assert!(rooms.shared && rooms.drop_oldest);
        assert_eq!((rooms.history_messages, rooms.history_age), (7, Duration::from_secs(9)));
        assert_eq!(c.route_settings("/other").rooms, RoomSettings::default());
        let e = parse_str("[[route]]\npath = \"/x\"\n[route.rooms]\noverflow = \"drop\"\n", "o.toml")
            .expect_err("unknown policy");
        assert_eq!((e.line, e.key.as_str()), (4, "route.rooms.overflow"), "{e}");
        let e = parse_str("[[route]]\npath = \"/x\"\n[route.rooms]\nhistory_secs = 0\n", "s.toml")
            .expect_err("zero age");
        assert_eq!((e.line, e.key.as_str()), (4, "route.rooms.history_secs"), "{e}");
        let e = parse_str("[[route]]\npath = \"/x\"\n[route.rooms]\nhistory = 1\n", "k.toml")
            .expect_err("unknown key");
        assert_eq!(e.line, 4, "{e}");
    }

    #[test]
    fn the_inflight_budget_is_shared_out_over_the_workers() {
        let c = parse_str("", "d.toml").unwrap_or_else(|e| panic!("{e}"));
        let ws = &c.websocket;
        assert_eq!(ws.inflight_budget_bytes, (256 << 20) / c.workers.count.max(1));
        assert_eq!((ws.max_message_bytes, ws.message_min_bytes), (1 << 20, 1024));
        assert_eq!(ws.message_timeout, Some(Duration::from_secs(30)));
        let text =
            "[server]\nworkers = 4\n[websocket]\ninflight_budget_bytes = 4000\nmessage_timeout_secs = 0\n";
        let c = parse_str(text, "b.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.websocket.inflight_budget_bytes, c.websocket.message_timeout), (1000, None));
        assert_eq!(c.route_settings("/any").inflight_budget_bytes, 1000);
        let off =
            parse_str("[websocket]\ninflight_budget_bytes = 0\n", "o.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(off.websocket.inflight_budget_bytes, 0, "0: no limit");
        let e = parse_str("[websocket]\ninflight_budget_bytes = \"big\"\n", "e.toml").expect_err("a string");
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn builtin_routes_resolve_with_their_settings() {
        let text =
            "[[route]]\npath = \"/_echo\"\nbuiltin = \"echo\"\nmax_message_bytes = 100\ndeflate = false\n";
        let c = parse_str(text, "b.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.routes[0].handler, RouteHandler::Builtin(Builtin::Echo));
        assert_eq!(c.routes[0].handler.to_string(), "builtin:echo");
        let overrides = &c.routes[0].overrides;
        assert_eq!((overrides.max_message_bytes, overrides.deflate), (Some(100), Some(false)));
    }

    #[test]
    fn builtin_errors_name_line_column_and_key() {
        let e = parse_str("[[route]]\npath = \"/x\"\nbuiltin = \"ech0\"\n", "b.toml").expect_err("unknown");
        assert_eq!((e.line, e.column, e.key.as_str()), (3, 11, "route.builtin"), "{e}");
        assert!(e.message.contains("unknown built-in handler `ech0`; valid: \"echo\""), "{e}");
        let text = "[[route]]\npath = \"/x\"\nbuiltin = \"echo\"\nhandler = \"/echo\"\n";
        let e = parse_str(text, "b.toml").expect_err("both");
        assert_eq!((e.line, e.column, e.key.as_str()), (4, 11, "route.handler"), "{e}");
        assert!(e.message.contains("not both"), "{e}");
        let text = "[[route]]\npath = \"/x\"\nbuiltin = \"echo\"\n[route.config]\ngreeting = \"hi\"\n";
        let e = parse_str(text, "b.toml").expect_err("config");
        assert_eq!((e.line, e.key.as_str()), (4, "route.config"), "{e}");
        let text = "[[route]]\npath = \"/x\"\nbuiltin = \"echo\"\nconfig = { greeting = \"hi\" }\n";
        let e = parse_str(text, "b.toml").expect_err("inline config");
        assert_eq!((e.line, e.key.as_str()), (4, "route.config"), "{e}");
    }

    #[test]
    fn every_section_names_its_key() {
        let cases = [
            ("[server]\nlisten = []\n", 0, "server.listen"),
            ("[websocket]\nhandshake_timeout_secs = 0\n", 0, "websocket.handshake_timeout_secs"),
            ("[websocket.deflate]\nlevel = 10\n", 0, "websocket.deflate.level"),
            (
                "[websocket.deflate]\nserver_max_window_bits = 8\n",
                0,
                "websocket.deflate.server_max_window_bits",
            ),
            (
                "[websocket.deflate]\nclient_max_window_bits = 16\n",
                0,
                "websocket.deflate.client_max_window_bits",
            ),
            ("[[route]]\npath = \"x\"\n", 2, "route.path"),
            ("[[route]]\npath = \"/x\"\nhandler = \"y\"\n", 3, "route.handler"),
            ("[[route]]\npath = \"/x\"\n[[route]]\npath = \"/x\"\n", 4, "route.path"),
            ("[[route]]\npath = \"/x\"\npong_timeout_secs = 0\n", 2, "route.pong_timeout_secs"),
            ("[auth]\nrealm = \"a\\\"b\"\n", 2, "auth.realm"),
            ("[cgi]\ntimeout_secs = 0\n", 0, "cgi.timeout_secs"),
            ("[watchdog]\nblocked_warn_ms = 5\n", 0, "watchdog.blocked_warn_ms"),
            ("[watchdog]\nunhealthy_after_secs = 0\n", 0, "watchdog.unhealthy_after_secs"),
        ];
        for (text, line, key) in cases {
            let e = parse_str(text, "s.toml").expect_err(text);
            assert_eq!((e.line, e.key.as_str()), (line, key), "{text}: {e}");
            assert_eq!(e.file, "s.toml");
        }
    }

    #[test]
    fn the_first_mistake_in_section_order_is_reported() {
        // [websocket] is checked before [[route]], [tls] before [auth], [cgi] before the
        // server limits, whatever the order in the file.
        let text = "[[route]]\npath = \"x\"\n[websocket]\npong_timeout_secs = 0\n";
        assert_eq!(
            parse_str(text, "o.toml").map(|_| ()).expect_err("two").key,
            "websocket.pong_timeout_secs"
        );
        let text = "[auth]\ncredential = \"nocolon\"\n[tls]\ncert = \"c.pem\"\n";
        assert_eq!(parse_str(text, "o.toml").map(|_| ()).expect_err("two").key, "tls.key");
        let text = "[server]\nadmin_listen = \"x\"\n[cgi]\ntimeout_secs = 0\n";
        assert_eq!(parse_str(text, "o.toml").map(|_| ()).expect_err("two").key, "cgi.timeout_secs");
    }
}
