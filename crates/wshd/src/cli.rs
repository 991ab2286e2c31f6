//! The command line, in the spirit of mod_pywebsocket's `standalone.py`: flags override
//! `server.toml`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config, ConfigError};

/// The config file used when `-c` is not given, if it exists.
pub const DEFAULT_CONFIG: &str = "config/server.toml";

/// wshd — a WebSocket host server. Drop compiled `*_wsh` handler plugins into a directory and
/// each serves a WebSocket endpoint (`<dir>/chat/libroom_wsh.so` → `ws://host/chat/room`);
/// replacing a file hot-reloads it.
#[derive(Debug, Parser)]
#[command(name = "wshd", version, about, long_about = None)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Server options.
    #[command(flatten)]
    pub options: Options,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve (the default).
    Serve,
    /// Validate the configuration and the handler directory (what would be served where),
    /// then exit: 0 when everything loads, 1 otherwise. Like `nginx -t`.
    CheckConfig,
    /// Check one plugin file the way the server would load it, print what it is, and exit
    /// non-zero if the server would refuse it.
    CheckPlugin {
        /// The plugin file (e.g. target/debug/libecho_wsh.so).
        file: PathBuf,
    },
}

/// Options shared by every subcommand.
#[derive(Debug, Args)]
pub struct Options {
    /// Configuration file [default: config/server.toml if it exists, else built-in defaults].
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Port to listen on (replaces the port of every configured listen address; 0 = any).
    #[arg(short = 'p', long = "port", global = true)]
    pub port: Option<u16>,
    /// Host or address to listen on ("" = all interfaces, IPv4 and IPv6).
    #[arg(short = 'H', long = "host", visible_alias = "server-host", global = true)]
    pub host: Option<String>,
    /// Handler directory, scanned for *_wsh plugins.
    #[arg(
        short = 'w',
        long = "handler-dir",
        visible_alias = "websock-handlers",
        global = true,
        value_name = "DIR"
    )]
    pub handler_dir: Option<PathBuf>,
    /// Static document root served on the same port.
    #[arg(short = 'd', long = "document-root", global = true, value_name = "DIR")]
    pub document_root: Option<PathBuf>,
    /// Log level or filter (error, warn, info, debug, trace; or e.g. "wshd=debug").
    #[arg(long = "log-level", global = true)]
    pub log_level: Option<String>,
}

/// Why the options could not be turned into a configuration.
#[derive(Debug)]
pub enum OptionsError {
    /// The config file is invalid.
    Config(ConfigError),
    /// A flag is invalid.
    Flag(String),
}

impl std::fmt::Display for OptionsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OptionsError::Config(e) => write!(f, "{e}"),
            OptionsError::Flag(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for OptionsError {}

impl Options {
    /// Loads the config file (explicit, or the default one if present) and applies the flags.
    pub fn resolve(&self) -> Result<Config, OptionsError> {
        let mut config = match &self.config {
            Some(path) => config::load_file(path).map_err(OptionsError::Config)?,
            None if Path::new(DEFAULT_CONFIG).is_file() => {
                config::load_file(Path::new(DEFAULT_CONFIG)).map_err(OptionsError::Config)?
            }
            None => Config::default(),
        };
        if let Some(host) = &self.host {
            let port = self.port.unwrap_or_else(|| config.listen.first().map_or(9998, SocketAddr::port));
            config.listen = resolve_host(host, port)?;
        } else if let Some(port) = self.port {
            for addr in &mut config.listen {
                addr.set_port(port);
            }
        }
        if let Some(dir) = &self.handler_dir {
            config.handlers_dir = dir.clone();
        }
        if let Some(root) = &self.document_root {
            config.document_root = Some(root.clone());
        }
        if let Some(level) = &self.log_level {
            config.log_level = level.clone();
        }
        Ok(config)
    }
}

fn resolve_host(host: &str, port: u16) -> Result<Vec<SocketAddr>, OptionsError> {
    if host.is_empty() {
        return Ok(vec![
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
        ]);
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map_err(|e| OptionsError::Flag(format!("--host {host}: cannot resolve: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(OptionsError::Flag(format!("--host {host}: no addresses")));
    }
    Ok(addrs)
}
