//! The `wshd` binary.

use std::process::ExitCode;

use clap::Parser;
use std::sync::Arc;
use wshd::cli::{Cli, Command, Options};

use wshd::plugin::{Reloader, scan};
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
    runtime.block_on(run(cli))
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
            logging::init("error");
            eprintln!("wshd: configuration error: {e}");
            return ExitCode::FAILURE;
        }
    };
    logging::init(&config.log_level);
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
    let server = match Server::start(config, Some(source)).await {
        Ok(server) => server,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::select! {
        () = server.wait() => {}
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; exiting"),
    }
    ExitCode::SUCCESS
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
        let plugin = &route.instance.plugin;
        let alias = if route.path == route.resource {
            String::new()
        } else {
            format!(" (alias of {})", route.resource)
        };
        println!("  {}{alias} -> {} [{}]", route.path, plugin.file.display(), plugin.handler_name);
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
