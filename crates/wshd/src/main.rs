//! The `wshd` binary.

use std::process::ExitCode;

use clap::Parser;
use std::sync::Arc;
use wshd::cli::{Cli, Command, Options};

use wshd::plugin::{RouteTarget, scan};
use wshd::reload::Reloader;
use wshd::{ConfigSource, Server, logging};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wshd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(cli));
    // Connections still open after the drain window are dropped, not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    code
}

async fn run(cli: Cli) -> ExitCode {
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
            return wshd::client::run(args).await;
        }
        Some(Command::CheckConfig(later)) => (true, cli.options.merged(&later)),
        Some(Command::Serve(later)) => (false, cli.options.merged(&later)),
        None => (false, cli.options),
    };
    let config = match options.resolve() {
        Ok(config) => config,
        Err(e) => {
            logging::init("error", wshd::config::LogFormat::Text);
            eprintln!("wshd: configuration error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match &config.log_file {
        Some(file) => {
            if let Err(e) = logging::init_file(
                &config.log_level,
                config.log_format,
                file,
                config.log_max_bytes,
                config.log_keep,
            ) {
                eprintln!("wshd: {e}");
                return ExitCode::FAILURE;
            }
        }
        None => logging::init(&config.log_level, config.log_format),
    }
    if check {
        return check_config(&config);
    }
    let options = Arc::new(options);
    let source: ConfigSource = Arc::new(move || options.resolve().map_err(|e| e.to_string()));
    serve(config, source).await
}

async fn serve(config: wshd::Config, source: ConfigSource) -> ExitCode {
    match &config.source {
        Some(file) => tracing::info!("configuration: {}", file.display()),
        None => tracing::info!("configuration: built-in defaults (no config/server.toml here)"),
    }
    tracing::info!("handler directory: {}", config.handlers_dir.display());
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(e) => {
            tracing::error!("cannot listen for SIGTERM/SIGINT: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut server = match Server::start(config, Some(source)).await {
        Ok(server) => server,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let signal = tokio::select! {
        () = server.wait() => return ExitCode::SUCCESS,
        signal = signals.next() => signal,
    };
    // The drain window is read from the configuration in force (SIGHUP may have changed it).
    let grace = server.state().snapshot().config.shutdown_grace;
    tracing::info!(
        signal,
        open_connections = server.state().open_connections(),
        grace_secs = grace.as_secs_f64(),
        "shutting down: not accepting, closing every WebSocket with 1001; send the signal again to exit at once"
    );
    tokio::select! {
        drained = server.shutdown(grace) => {
            if drained.left == 0 {
                tracing::info!(open_at_start = drained.open_at_start, took_ms = drained.took.as_millis() as u64, "drained; exiting");
            } else {
                tracing::warn!(
                    open_at_start = drained.open_at_start,
                    left = drained.left,
                    "drain window of {grace:?} over; dropping the connections left and exiting"
                );
            }
            ExitCode::SUCCESS
        }
        signal = signals.next() => {
            tracing::warn!(signal, "second signal: exiting without waiting for the drain");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM and SIGINT (Ctrl-C), as one stream.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal's name.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
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
    println!(
        "watchdog: blocked handler warning after {} ms, /healthz 503 after {}s",
        config.watchdog.blocked_warn.as_millis(),
        config.watchdog.unhealthy_after.as_secs()
    );
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
    if config.auth.basic {
        println!("basic auth: user {}, realm \"{}\"", config.auth.credential.user(), config.auth.realm);
    }
    if !config.cgi.paths.is_empty() {
        println!("cgi: {} (timeout {:?})", config.cgi.paths.join(", "), config.cgi.timeout);
    }
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
