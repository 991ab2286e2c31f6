//! The `wshd` binary.

use std::process::ExitCode;

use clap::Parser;
use std::sync::Arc;
use wshd::cli::{Cli, Command, Options};

use wshd::log_file::RotatingFile;
use wshd::plugin::{RouteTarget, scan};
use wshd::reload::Reloader;
use wshd::supervise::{self, Inherited, Sink};
use wshd::{ConfigSource, logging};

fn main() -> ExitCode {
    wshd::allocator::fix_mmap_threshold();
    let cli = Cli::parse();
    let (check, options) = match cli.command {
        Some(Command::CheckPlugin { file }) => return check_plugin(&file),
        Some(Command::Client(args)) => {
            if cli.options != Options::default() {
                eprintln!(
                    "wshd: server options before `client` do not apply to it; \
                     put the client's options after `client` (see `wshd client --help`)"
                );
                return ExitCode::FAILURE;
            }
            return client(args);
        }
        Some(Command::CheckConfig(later)) => (true, cli.options.merged(&later)),
        Some(Command::Serve(later)) => (false, cli.options.merged(&later)),
        None => (false, cli.options),
    };
    // Set by a master for the workers it starts (the same binary and arguments).
    let inherited = if check { None } else { Inherited::from_env() };
    let inherited = match inherited.transpose() {
        Ok(inherited) => inherited,
        Err(e) => {
            eprintln!("wshd: malformed worker environment: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = match options.resolve() {
        Ok(config) => config,
        Err(e) => {
            logging::init("error", wshd::config::LogFormat::Text);
            eprintln!("wshd: configuration error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let sink = match init_logging(&config, inherited.is_some()) {
        Ok(sink) => sink,
        Err(e) => {
            eprintln!("wshd: {e}");
            return ExitCode::FAILURE;
        }
    };
    if check {
        return check_config(&config);
    }
    let options = Arc::new(options);
    let source: ConfigSource = Arc::new(move || options.resolve().map_err(|e| e.to_string()));
    supervise::run(config, source, inherited, sink)
}

/// Sets up logging: a worker logs to its stderr (a pipe the master relays); otherwise to
/// the log file when one is set (the master writes its workers' lines there too), else to
/// stderr.
fn init_logging(config: &wshd::Config, worker: bool) -> Result<Sink, String> {
    match &config.log_file {
        Some(file) if !worker => {
            let writer = RotatingFile::open(file, config.log_max_bytes, config.log_keep)
                .map_err(|e| format!("cannot open log file {}: {e}", file.display()))?;
            logging::init_writer(&config.log_level, config.log_format, writer.clone());
            Ok(Sink::File(writer))
        }
        _ => {
            logging::init(&config.log_level, config.log_format);
            Ok(Sink::Stderr)
        }
    }
}

/// `wshd client`.
fn client(args: wshd::cli::ClientArgs) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(wshd::client::run(args)),
        Err(e) => {
            eprintln!("wshd: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `[workers]`' quarantine and recycling settings in words, for `check-config`.
fn describe_policy(workers: &wshd::config::WorkerSettings) -> String {
    let quarantine = match workers.quarantine_after_crashes {
        0 => "never quarantine a route".to_owned(),
        n => format!("quarantine a route after {n} crashes within {}s", workers.quarantine_window.as_secs()),
    };
    let mut recycle = Vec::new();
    if let Some(bytes) = workers.recycle_rss_bytes {
        recycle.push(format!("past {} MiB resident", bytes >> 20));
    }
    if let Some(n) = workers.recycle_after_connections {
        recycle.push(format!("after {n} connections"));
    }
    match recycle.is_empty() {
        true => format!("{quarantine}; recycling off"),
        false => format!("{quarantine}; recycle a worker {}", recycle.join(" or ")),
    }
}

/// `check-config`'s HTTP/2 line, when HTTP/2 is served at all (ALPN `h2` on TLS listeners, or
/// h2c with prior knowledge on plain ones).
fn print_http2(config: &wshd::Config) {
    let h = &config.http2;
    let how = match (config.tls.enabled, h.enabled, h.cleartext) {
        (true, true, _) => "ALPN h2 on TLS",
        (false, _, true) => "h2c with prior knowledge",
        _ => return,
    };
    println!(
        "http2: {how} (WebSockets as RFC 8441 streams), {} streams per connection, windows {}/{} bytes",
        h.max_concurrent_streams, h.initial_stream_window, h.initial_connection_window
    );
}

/// `check-config`'s lines about processes: the workers and the watchdog.
fn print_processes(config: &wshd::Config) {
    let workers = &config.workers;
    match workers.count {
        0 => println!("workers: none (one process, no master), {} threads", workers.threads),
        n => println!(
            "workers: {n} processes, {} threads each, heartbeat timeout {}s",
            workers.threads,
            workers.heartbeat_timeout.as_secs()
        ),
    }
    if workers.count > 0 {
        println!("workers: {}", describe_policy(workers));
    }
    println!(
        "watchdog: blocked handler warning after {} ms, /healthz 503 after {}s",
        config.watchdog.blocked_warn.as_millis(),
        config.watchdog.unhealthy_after.as_secs()
    );
}

fn check_config(config: &wshd::Config) -> ExitCode {
    let source = config.source.as_ref().map_or("built-in defaults".to_owned(), |p| p.display().to_string());
    println!("configuration {source}: ok");
    println!("listen: {}", config.listen.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "));
    println!(
        "handler directory: {} ({})",
        config.handlers_dir.display(),
        if config.handlers_recursive { "recursive" } else { "top level only" }
    );
    if let Some(root) = &config.document_root {
        println!("document root: {}", root.display());
    }
    match config.admin_listen {
        Some(admin) => println!("admin: http://{admin} (/healthz, /readyz, /metrics)"),
        None => println!("admin: off"),
    }
    if !config.proxy.trusted.is_empty() {
        let trusted: Vec<String> = config.proxy.trusted.iter().map(ToString::to_string).collect();
        println!("trusted proxies: {} ({:?})", trusted.join(", "), config.proxy.client_ip_header);
    }
    let ws = &config.websocket;
    let secs = |d: Option<std::time::Duration>| d.map_or("off".to_owned(), |d| format!("{}s", d.as_secs()));
    println!(
        "limits: max_connections {}, ping {}, pong timeout {}s, idle {}, send queue {} B, send timeout {}, drain {}s",
        config.max_connections.map_or("none".to_owned(), |n| n.to_string()),
        secs(ws.ping_interval),
        ws.pong_timeout.as_secs(),
        secs(ws.idle_timeout),
        ws.max_send_queue_bytes,
        secs(ws.send_timeout),
        config.shutdown_grace.as_secs()
    );
    print_processes(config);
    if let Some(scan) = &config.handlers_scan_dir {
        println!("scan directory: {}", scan.display());
    }
    if let Some(map) = &config.handler_map {
        println!("handler map: {}", map.display());
    }
    let mut failed = false;
    if config.tls.enabled {
        match wshd::tls::server_config(&config.tls) {
            Ok(_) => println!(
                "tls: on, certificate {}, client certificates {:?}",
                config.tls.cert.as_ref().map_or(String::new(), |c| c.display().to_string()),
                config.tls.client_auth
            ),
            Err(e) => {
                println!("tls: REFUSED: {e}");
                eprintln!("wshd: {e}");
                failed = true;
            }
        }
    }
    print_http2(config);
    if config.auth.basic {
        println!("basic auth: user {}, realm \"{}\"", config.auth.credential.user(), config.auth.realm);
    }
    if !config.cgi.paths.is_empty() {
        println!("cgi: {} (timeout {:?})", config.cgi.paths.join(", "), config.cgi.timeout);
    }
    failed |= !check_broker(config);
    let table = Reloader::new(Arc::new(config.clone())).pass().table;
    for route in table.routes() {
        match &route.target {
            RouteTarget::Plugin { resource, instance } => {
                let plugin = &instance.plugin;
                let alias =
                    if route.path == *resource { String::new() } else { format!(" (alias of {resource})") };
                println!("  {}{alias} -> {} [{}]", route.path, plugin.file.display(), plugin.handler_name);
            }
            RouteTarget::Builtin(builtin) => {
                println!("  {} -> {} (built in, no plugin)", route.path, builtin.handler_name());
            }
        }
    }
    for refusal in &table.refusals {
        println!("  REFUSED {}: {}", refusal.file.display(), refusal.reason);
    }
    if table.refusals.is_empty() && !failed { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// `check-config`: the broker's URL (password redacted) and its TLS files; false if a file
/// is unusable.
fn check_broker(config: &wshd::Config) -> bool {
    let Some(broker) = &config.broker else { return true };
    println!("rooms broker: {} (heartbeat {:?})", broker.redacted_url(), broker.heartbeat);
    let tls = &broker.tls;
    let mut checks = Vec::new();
    if let Some(ca) = &tls.ca_file {
        checks.push(wshd::tls::load_certs("[broker] tls_ca_file", ca).map(drop));
    }
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        checks.push(wshd::tls::load_certs("[broker] tls_cert_file", cert).map(drop));
        checks.push(wshd::tls::load_key(key).map(drop));
    }
    let mut ok = true;
    for error in checks.into_iter().filter_map(Result::err) {
        println!("rooms broker: REFUSED: {error}");
        eprintln!("wshd: {error}");
        ok = false;
    }
    ok
}

fn check_plugin(file: &std::path::Path) -> ExitCode {
    let resource = file.file_name().and_then(|n| scan::resource_for(std::path::Path::new(n)));
    let loaded = wshd::plugin::load(file).and_then(|plugin| {
        plugin.instantiate(&Default::default())?;
        Ok(plugin)
    });
    match loaded {
        Ok(plugin) => {
            println!("{}: ok", file.display());
            match &resource {
                Some(r) => println!("  resource: {r} (when placed at the top of the handler directory)"),
                None => println!(
                    "  resource: none (the file name does not end in _wsh.so; it would not be served)"
                ),
            }
            println!("  handler: {}", plugin.handler_name);
            println!("  crate: {}", plugin.crate_version);
            println!("  sdk: {}, plugin ABI v{}", plugin.sdk_version, wshd_sdk::abi::ABI_VERSION);
            if resource.is_some() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            println!("{}: refused: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}
