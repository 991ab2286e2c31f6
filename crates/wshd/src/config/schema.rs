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
    /// `[tls]`: serve `wss://` and `https://` instead of plain TCP.
    pub tls: TlsSection,
    /// `[auth]`: HTTP Basic authentication for every request.
    pub auth: AuthSection,
    /// `[cgi]`: CGI/1.1 scripts under URL path prefixes of the document root.
    pub cgi: CgiSection,
    /// `[proxy]`: which reverse proxies are trusted to report the client's address.
    pub proxy: ProxySection,
    /// `[workers]`: the worker processes' runtime and how the master watches them.
    pub workers: WorkersSection,
    /// `[watchdog]`: handlers that hold a runtime thread too long.
    pub watchdog: WatchdogSection,
    /// `[http2]`: HTTP/2 on TLS listeners (ALPN `h2`) and WebSockets over it (RFC 8441).
    pub http2: Http2Section,
    /// `[broker]`: rooms shared with other wshd nodes through Redis.
    pub broker: BrokerSection,
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
    /// When set, a request whose target is an absolute `ws://host:port/...` URI naming
    /// another host is not treated as a WebSocket request (pywebsocket `-V`). Default: none.
    pub validation_host: Option<String>,
    /// Like `validation_host`, for the port of an absolute target (default port 80 for
    /// `ws://`, 443 for `wss://`; pywebsocket `-P`). Default: none.
    pub validation_port: Option<u16>,
    /// Address of the admin listener serving `/healthz`, `/readyz` and `/metrics` (plain
    /// HTTP, never TLS). Default: none (no admin listener).
    pub admin_listen: Option<Spanned<String>>,
    /// On SIGTERM/SIGINT, how long open WebSocket connections get to finish their closing
    /// handshake (after close 1001) before the process exits anyway. Default 30.
    pub shutdown_grace_secs: u64,
    /// Open WebSocket connections allowed at once over all routes; a handshake beyond it is
    /// answered 503. 0 = no limit. Default 10000.
    pub max_connections: u64,
    /// Largest HTTP request head (request line and headers) in bytes; a larger one is
    /// answered 431. At least 8192. Default 65536.
    pub max_header_bytes: u64,
    /// Connections still in their handshake (accepted, request head not complete) allowed
    /// at once per process; past it, and whenever the process nears its file descriptor
    /// limit, the oldest that sent nothing (then the oldest) are closed to admit new clients.
    /// 0 = no limit (the descriptor limit still sheds). Default 1024.
    pub max_pending_connections: u64,
    /// Worker processes serving the listeners, supervised by a master process that replaces
    /// any that dies or hangs: `"auto"` (the number of CPUs, at least 2) or a number ≥ 1;
    /// `0` runs everything in one process without a master (for debugging, like nginx's
    /// `master_process off`). Default `"auto"`.
    pub workers: Spanned<WorkersValue>,
    /// Jobs handlers run with `wshd_sdk::blocking` at once per worker process, 1–1024; more
    /// wait their turn. Default 16.
    pub blocking_threads: Spanned<u64>,
}

/// The value of `[server] workers`: `"auto"` or a number.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum WorkersValue {
    /// A number of worker processes (0: a single process, no master).
    Count(i64),
    /// A name; only `"auto"` is valid.
    Name(String),
}

/// `[workers]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersSection {
    /// Runtime threads per worker process (or of the single process with `workers = 0`),
    /// 1–64. Default: the number of CPUs divided by the number of workers, at least 2, so
    /// one handler blocking its thread never stalls its whole worker.
    pub threads: Option<Spanned<u64>>,
    /// A worker whose heartbeat is older than this, or whose handler code has held one
    /// runtime thread without returning for this long, is killed and replaced. At least 1.
    /// Default 10.
    pub heartbeat_timeout_secs: Option<Spanned<u64>>,
    /// A route whose handler code was running when workers died (by a signal, or killed as
    /// stuck) this many times within `quarantine_window_secs` is quarantined: its new
    /// handshakes are answered 503 until its plugin file changes. 0 = never. Default 3.
    pub quarantine_after_crashes: Option<Spanned<u64>>,
    /// The window in which `quarantine_after_crashes` crashes count. At least 1. Default 60.
    pub quarantine_window_secs: Option<Spanned<u64>>,
    /// A worker whose resident memory passes this many MiB is recycled: drained (as on
    /// SIGTERM) while a replacement starts at once. 0 = off (the default).
    pub recycle_rss_mib: Option<Spanned<u64>>,
    /// A worker that accepted this many WebSocket connections over its life is recycled
    /// (Apache's `MaxConnectionsPerChild`, php-fpm's `pm.max_requests`). 0 = off (the default).
    pub recycle_after_connections: Option<Spanned<u64>>,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: vec![
                Spanned::new(0..0, "127.0.0.1:9998".into()),
                Spanned::new(0..0, "[::1]:9998".into()),
            ],
            document_root: None,
            validation_host: None,
            validation_port: None,
            admin_listen: None,
            shutdown_grace_secs: 30,
            max_connections: 10_000,
            max_header_bytes: 64 << 10,
            max_pending_connections: 1024,
            workers: Spanned::new(0..0, WorkersValue::Name("auto".into())),
            blocking_threads: Spanned::new(0..0, super::DEFAULT_BLOCKING_THREADS as u64),
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
    /// Handler map file (pywebsocket `-m`): lines `alias_path existing_path`, each becoming a
    /// route alias. Default: none.
    pub map_file: Option<Spanned<String>>,
    /// Scan only this subtree of `dir` (pywebsocket `-s`); resource paths stay relative to
    /// `dir`. Must be inside `dir`. Default: all of `dir`.
    pub scan_dir: Option<Spanned<String>>,
    /// Serve handler files that are symlinks to files outside `dir` (pywebsocket
    /// `--allow-handlers-outside-root-dir`). Default `false`: such files are skipped.
    pub allow_outside_dir: bool,
}

impl Default for HandlersSection {
    fn default() -> Self {
        HandlersSection {
            dir: Spanned::new(0..0, "handlers".into()),
            recursive: true,
            watch: true,
            debounce_ms: 100,
            map_file: None,
            scan_dir: None,
            allow_outside_dir: false,
        }
    }
}

/// `[websocket]`: defaults for every route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocketSection {
    /// Largest message accepted, in bytes; a larger one closes with 1009. Default 1 MiB
    /// (Python websockets' default; see `docs/decisions/0018-memory-budget.md`).
    pub max_message_bytes: u64,
    /// Largest frame accepted, in bytes (never more than `max_message_bytes`); a larger one
    /// closes with 1009. Default 16 MiB.
    pub max_frame_bytes: u64,
    /// Time a client has to send its complete handshake request. Default 10 s.
    pub handshake_timeout_secs: u64,
    /// Time the server waits for the peer's close frame after sending its own. Default 5 s.
    pub close_timeout_secs: u64,
    /// Received messages queued for a handler that is not reading, in bytes, before the host
    /// stops reading from the socket (TCP back-pressure). Default 1 MiB (always at least one
    /// message).
    pub inbound_queue_bytes: u64,
    /// Close a connection (1001 "idle") when no message went either way for this long;
    /// pings and pongs do not count. 0 = never. Default 0.
    pub idle_timeout_secs: u64,
    /// Send a keepalive ping when this long passed since the last one. 0 = no keepalive.
    /// Default 30 (below nginx's 60 s `proxy_read_timeout`).
    pub ping_interval_secs: u64,
    /// A peer that sends nothing (no pong, no frame at all) for this long after a keepalive
    /// ping is dead: the connection is dropped. Default 20.
    pub pong_timeout_secs: u64,
    /// Bytes waiting to be written to a peer that is not reading, beyond which it is closed
    /// as a slow reader (1008 "send queue full"). Default 1 MiB.
    pub max_send_queue_bytes: u64,
    /// A peer that accepts no byte for this long while data waits for it is closed as a slow
    /// reader (1008 "send timeout"); nginx's `send_timeout`. 0 = never. Default 60.
    pub send_timeout_secs: u64,
    /// A message in progress (or a frame) that gains fewer than `message_min_bytes` of
    /// payload in a window this long is dropped and its connection closed (1008 "message too
    /// slow"): dribbling senders, like nginx's `client_body_timeout`. Idle connections
    /// between messages are left to the keepalive. 0 = never. Default 30.
    pub message_timeout_secs: u64,
    /// See `message_timeout_secs`. Default 1024 (so at least ~34 B/s).
    pub message_min_bytes: u64,
    /// Bytes the server holds for clients in partially received messages and send queues,
    /// over all connections, shared out evenly over the worker processes. A connection that
    /// needs more than that whole share is closed with 1009, one that finds it used up by
    /// others with 1013 ("try again later"), and its partial message is freed. 0 = no limit.
    /// Default 256 MiB.
    pub inflight_budget_bytes: u64,
    /// `[websocket.deflate]`: permessage-deflate (RFC 7692).
    pub deflate: DeflateSection,
}

/// `[websocket.deflate]`: permessage-deflate negotiation and cost.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeflateSection {
    /// Negotiate permessage-deflate when a client offers it. Default `true`.
    pub enabled: bool,
    /// Largest LZ77 window the server compresses with, 9–15 (memory: `2^(bits+2)` bytes).
    /// Default 15.
    pub server_max_window_bits: u8,
    /// Answer `server_no_context_takeover`: the compressor is reset after every message, so
    /// it is borrowed from a per-thread pool for the message and an idle connection owns none
    /// (with `false`: ~260 KiB per connection at window 15, kept). Default `true`
    /// (see `docs/decisions/0019-compression-memory.md`).
    pub server_no_context_takeover: bool,
    /// Answer `client_no_context_takeover` (RFC 7692 §7.1.1.2 lets a server require it): the
    /// client resets its compressor after every message, so our decompressor is borrowed per
    /// message too (with `false`: ~40 KiB per connection, kept). Default `true`.
    pub client_no_context_takeover: bool,
    /// When a client offers `client_max_window_bits` (browsers do), answer at most this, 9–15:
    /// the client then compresses with a window of at most `2^bits` bytes, and a decompressor
    /// kept per connection (`client_no_context_takeover = false`) needs only that window
    /// instead of 32 KiB. Never answered to a client that did not offer the parameter (RFC
    /// 7692 §7.1.2.2). Default 15.
    pub client_max_window_bits: u8,
    /// Compression level 0–9. Default 6.
    pub level: u32,
    /// Messages shorter than this many bytes are sent uncompressed. Default 0.
    pub min_message_bytes: u64,
}

impl Default for DeflateSection {
    fn default() -> Self {
        DeflateSection {
            enabled: true,
            server_max_window_bits: 15,
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            client_max_window_bits: 15,
            level: 6,
            min_message_bytes: 0,
        }
    }
}

impl Default for WebSocketSection {
    fn default() -> Self {
        WebSocketSection {
            max_message_bytes: 1 << 20,
            max_frame_bytes: 16 << 20,
            handshake_timeout_secs: 10,
            close_timeout_secs: 5,
            inbound_queue_bytes: 1 << 20,
            idle_timeout_secs: 0,
            ping_interval_secs: 30,
            pong_timeout_secs: 20,
            max_send_queue_bytes: 1 << 20,
            send_timeout_secs: 60,
            message_timeout_secs: 30,
            message_min_bytes: 1024,
            inflight_budget_bytes: 256 << 20,
            deflate: DeflateSection::default(),
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
    /// `"text"` (human-readable, the default) or `"json"` (one JSON object per line).
    /// `--log-format` overrides it.
    pub format: LogFormat,
    /// Write the log to this file instead of stderr (pywebsocket `--log-file`).
    pub file: Option<String>,
    /// Rotate the file when it would grow past this many bytes. Default 262144, like
    /// pywebsocket's `--log-max`.
    pub max_bytes: u64,
    /// Rotated files kept (`wshd.log.1` …). Default 5, like `--log-count`.
    pub keep: u32,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection { level: "info".into(), format: LogFormat::Text, file: None, max_bytes: 262_144, keep: 5 }
    }
}

/// The log line format of `[log] format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Which forwarding headers `[proxy] client_ip_header` honours from trusted proxies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum ClientIpHeader {
    /// `X-Forwarded-For`, with `X-Forwarded-Proto` and `X-Forwarded-Host` (the default).
    #[default]
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    /// RFC 7239 `Forwarded` (`for=`, `proto=`, `host=`).
    #[serde(rename = "forwarded")]
    Forwarded,
    /// None: the client is always the TCP peer.
    #[serde(rename = "none")]
    None,
}

/// `[proxy]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySection {
    /// Peers (CIDR blocks such as `"10.0.0.0/8"`, or single addresses) whose forwarding
    /// headers are believed. Default: none (forwarding headers are never believed).
    pub trusted: Vec<Spanned<String>>,
    /// `"x-forwarded-for"` (default), `"forwarded"` (RFC 7239) or `"none"`.
    pub client_ip_header: ClientIpHeader,
    /// Walk the address list right to left past every trusted hop (nginx
    /// `real_ip_recursive on`); `false` takes the rightmost entry. Default `true`.
    pub recursive: bool,
}

impl Default for ProxySection {
    fn default() -> Self {
        ProxySection { trusted: Vec::new(), client_ip_header: ClientIpHeader::XForwardedFor, recursive: true }
    }
}

/// `[watchdog]`: what counts as a handler blocking its thread (read at start; a SIGHUP
/// reload warns that changes need a restart).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchdogSection {
    /// A handler call (`do_handshake`, a poll of `transfer_data` or of a spawned task) that
    /// holds its thread longer than this is logged as blocked (WARN, then every 5 s while it
    /// lasts) and counted in `wshd_handler_blocked_total`. At least 10 (the watchdog's tick).
    /// Default 100.
    pub blocked_warn_ms: u64,
    /// `/healthz` answers 503 while a handler call has held its thread this long. At least
    /// 1. Default 5.
    pub unhealthy_after_secs: u64,
}

impl Default for WatchdogSection {
    fn default() -> Self {
        WatchdogSection { blocked_warn_ms: 100, unhealthy_after_secs: 5 }
    }
}

/// `[http2]`: HTTP/2 and WebSockets over HTTP/2 streams (RFC 8441); see `docs/http2.md`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http2Section {
    /// Offer HTTP/2 on TLS listeners (ALPN `h2`, then `http/1.1`). Default `true`.
    pub enabled: bool,
    /// Serve HTTP/2 with prior knowledge (h2c) on plain listeners too, for a proxy that
    /// speaks it; HTTP/1.1 clients are still served. Default `false`.
    pub cleartext: bool,
    /// Streams (requests and WebSockets) open at once on one connection; more are refused
    /// with `REFUSED_STREAM`. 1 to 65536. Default 128.
    pub max_concurrent_streams: u64,
    /// Bytes a client may send on one stream before the server reads them (the per-stream
    /// flow-control window). 65535 to 16777216. Default 262144.
    pub initial_stream_window_bytes: u64,
    /// Bytes a client may send on the whole connection before the server reads them.
    /// 65535 to 67108864. Default 1048576.
    pub initial_connection_window_bytes: u64,
    /// Largest decoded header list of one request (HPACK, CONTINUATION included); a larger
    /// one is refused. 1024 to 1048576. Default: `[server] max_header_bytes`.
    pub max_header_list_bytes: Option<u64>,
    /// Streams a client may reset before the server accepted them, at once (rapid reset,
    /// CVE-2023-44487); past it the connection is closed with `ENHANCE_YOUR_CALM`. 1 to
    /// 10000. Default 20.
    pub max_pending_accept_reset_streams: u64,
    /// Streams the server may reset for a client's protocol errors on one connection before
    /// it closes the connection. 1 to 100000. Default 1024.
    pub max_local_error_reset_streams: u64,
}

impl Default for Http2Section {
    fn default() -> Self {
        Http2Section {
            enabled: true,
            cleartext: false,
            max_concurrent_streams: 128,
            initial_stream_window_bytes: 256 << 10,
            initial_connection_window_bytes: 1 << 20,
            max_header_list_bytes: None,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 1024,
        }
    }
}

/// `[broker]`: rooms spanning several wshd nodes (machines) through Redis. Absent: the
/// rooms span this node's processes only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerSection {
    /// `redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB]` (`rediss`: TLS). Unset: no broker.
    pub url: Option<Spanned<String>>,
    /// How often this node renews its liveness key in Redis; a node silent for three
    /// heartbeats is dead and its members leave. At least 50. Default 5,000.
    pub heartbeat_ms: u64,
    /// `/readyz` answers 503 while Redis is unreachable (a load balancer sends new clients
    /// to the nodes that have it). Default true.
    pub not_ready_while_down: bool,
    /// PEM bundle of the CAs that sign Redis's certificate (`rediss://` only), used instead
    /// of the system's roots. Unset: the system's roots.
    pub tls_ca_file: Option<Spanned<String>>,
    /// PEM certificate chain of this node, for Redis's `tls-auth-clients yes` (with
    /// `tls_key_file`).
    pub tls_cert_file: Option<Spanned<String>>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<Spanned<String>>,
}

impl Default for BrokerSection {
    fn default() -> Self {
        let (tls_ca_file, tls_cert_file, tls_key_file) = (None, None, None);
        BrokerSection {
            url: None,
            heartbeat_ms: 5000,
            not_ready_while_down: true,
            tls_ca_file,
            tls_cert_file,
            tls_key_file,
        }
    }
}

/// Client certificate policy of `[tls] client_auth`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuthMode {
    /// No client certificate is asked for (the default).
    #[default]
    None,
    /// A client certificate is asked for; one that is presented must be signed by
    /// `client_ca`, but a client without one is served too.
    Optional,
    /// Only clients presenting a certificate signed by `client_ca` are served.
    Required,
}

/// `[tls]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// Turn TLS on or off. Default: on when `cert` or `key` is set.
    pub enabled: Option<bool>,
    /// PEM certificate chain, server certificate first (pywebsocket `-c`).
    pub cert: Option<Spanned<String>>,
    /// PEM private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC) (pywebsocket `-k`).
    pub key: Option<Spanned<String>>,
    /// `"none"` (default), `"optional"` or `"required"`.
    pub client_auth: ClientAuthMode,
    /// PEM bundle of the CAs that sign accepted client certificates; needed unless
    /// `client_auth = "none"`.
    pub client_ca: Option<Spanned<String>>,
}

/// `[auth]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// Require HTTP Basic authentication on every request. Default `false`.
    pub basic: bool,
    /// `user:password`. Default `test:test` (pywebsocket's default).
    pub credential: Spanned<String>,
    /// The realm announced in `WWW-Authenticate`. Default `wshd`.
    pub realm: Spanned<String>,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            basic: false,
            credential: Spanned::new(0..0, "test:test".into()),
            realm: Spanned::new(0..0, "wshd".into()),
        }
    }
}

/// `[cgi]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CgiSection {
    /// URL path prefixes (`/cgi-bin`) under which executable files of the document root run
    /// as CGI scripts (pywebsocket `-x`). Default: none.
    pub paths: Vec<Spanned<String>>,
    /// Time a script may run, in seconds; it is killed and the client gets 504 after it.
    /// Default 30.
    pub timeout_secs: u64,
    /// Largest script output (headers and body) in bytes; beyond it the script is killed and
    /// the client gets 502. Default 10 MiB.
    pub max_output_bytes: u64,
    /// Largest request body handed to a script, in bytes; a larger one gets 413.
    /// Default 10 MiB.
    pub max_input_bytes: u64,
}

impl Default for CgiSection {
    fn default() -> Self {
        CgiSection {
            paths: Vec::new(),
            timeout_secs: 30,
            max_output_bytes: 10 << 20,
            max_input_bytes: 10 << 20,
        }
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
    /// A handler built into the host that serves it instead of a plugin (`"echo"`); excludes
    /// `handler` and `config`.
    pub builtin: Option<Spanned<String>>,
    /// Handler configuration, handed to `Handler::new`. A route with its own table gets its
    /// own handler instance.
    pub config: Option<Spanned<toml::Table>>,
    /// Overrides `[websocket] max_message_bytes` for this route.
    pub max_message_bytes: Option<u64>,
    /// Overrides `[websocket.deflate] enabled` for this route.
    pub deflate: Option<bool>,
    /// Open connections allowed on this route at once (503 beyond it); 0 = no route limit.
    /// Default: only the global `[server] max_connections` applies.
    pub max_connections: Option<u64>,
    /// Overrides `[websocket] idle_timeout_secs` for this route.
    pub idle_timeout_secs: Option<u64>,
    /// Overrides `[websocket] ping_interval_secs` for this route.
    pub ping_interval_secs: Option<u64>,
    /// Overrides `[websocket] pong_timeout_secs` for this route.
    pub pong_timeout_secs: Option<u64>,
    /// Overrides `[websocket] max_send_queue_bytes` for this route.
    pub max_send_queue_bytes: Option<u64>,
    /// Overrides `[websocket] send_timeout_secs` for this route.
    pub send_timeout_secs: Option<u64>,
    /// `[route.rooms]`: the route's rooms (namespace, member queue policy, history).
    pub rooms: Option<RoomsSection>,
}

/// `[route.rooms]`: how the route's connections use the host's rooms.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomsSection {
    /// `true`: the route's channels live in the namespace shared by every route that sets it
    /// (`lobby` on `/a` is `lobby` on `/b`). Default `false`: the route's own namespace.
    pub shared: bool,
    /// A member whose queue is full: `"close"` (1008 "room backlog full", the default) or
    /// `"drop_oldest"` (its oldest queued room messages are dropped).
    pub overflow: Option<Spanned<String>>,
    /// Messages published with an id kept per channel for `join_since`; 0 = none kept.
    /// At most 100000. Default 100.
    pub history_messages: Option<Spanned<u64>>,
    /// How long such a message stays in the history, in seconds, 1–86400. Default 300.
    pub history_secs: Option<Spanned<u64>>,
}
