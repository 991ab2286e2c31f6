//! The command line, in the spirit of mod_pywebsocket's `standalone.py`: flags override
//! `server.toml`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::{ArgAction, Args, Parser, Subcommand};

pub use crate::client::ClientArgs;
use crate::config::{self, ClientAuth, Config, ConfigError, Credential};

/// The config file used when `-c` is not given, if it exists.
pub const DEFAULT_CONFIG: &str = "config/server.toml";

/// wshd — a WebSocket host server. Drop compiled `*_wsh` handler plugins into a directory and
/// each serves a WebSocket endpoint (`<dir>/chat/libroom_wsh.so` → `ws://host/chat/room`);
/// replacing a file hot-reloads it.
///
/// Server options go before or after `serve` / `check-config`; `wshd client` has options of
/// its own (see `wshd client --help`).
#[derive(Debug, Parser)]
#[command(name = "wshd", version, about, long_about = None, disable_version_flag = true)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Server options.
    #[command(flatten)]
    pub options: Options,
    /// Print version.
    #[arg(long = "version", action = ArgAction::Version)]
    version: Option<bool>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve (the default).
    Serve(Options),
    /// Validate the configuration and the handler directory (what would be served where),
    /// then exit: 0 when everything loads, 1 otherwise. Like `nginx -t`.
    CheckConfig(Options),
    /// Check one plugin file the way the server would load it, print what it is, and exit
    /// non-zero if the server would refuse it.
    CheckPlugin {
        /// The plugin file (e.g. target/debug/libecho_wsh.so).
        file: PathBuf,
    },
    /// An echo client, like pywebsocket's `echo_client.py`: sends messages, prints
    /// `Send: …` / `Recv: …`, and closes.
    Client(ClientArgs),
}

/// Server options (`wshd [OPTIONS]`, `wshd serve [OPTIONS]`, `wshd check-config [OPTIONS]`).
/// Spellings with underscores (`--server_host`) are accepted like pywebsocket's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct Options {
    /// Configuration file [default: config/server.toml if it exists, else built-in defaults].
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Port to listen on (replaces the port of every configured listen address; 0 = any).
    #[arg(short = 'p', long = "port")]
    pub port: Option<u16>,
    /// Host or address to listen on ("" = all interfaces, IPv4 and IPv6).
    #[arg(short = 'H', long = "host", visible_alias = "server-host", alias = "server_host")]
    pub host: Option<String>,
    /// Handler directory, scanned for *_wsh plugins.
    #[arg(
        short = 'w',
        long = "handler-dir",
        visible_alias = "websock-handlers",
        alias = "websock_handlers",
        value_name = "DIR"
    )]
    pub handler_dir: Option<PathBuf>,
    /// Static document root served on the same port.
    #[arg(short = 'd', long = "document-root", alias = "document_root", value_name = "DIR")]
    pub document_root: Option<PathBuf>,
    /// Log level or filter (error, warn, info, debug, trace; or e.g. "wshd=debug").
    #[arg(long = "log-level", alias = "log_level")]
    pub log_level: Option<String>,
    /// Log line format: `text` (human-readable) or `json` (one object per line)
    /// [default: log.format in server.toml, else text].
    #[arg(long = "log-format", alias = "log_format", value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// Write the log to FILE instead of stderr, rotated by size.
    #[arg(short = 'l', long = "log-file", alias = "log_file", value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Rotate the log file past this many bytes [default: 262144].
    #[arg(long = "log-max", alias = "log_max", value_name = "BYTES")]
    pub log_max: Option<u64>,
    /// Rotated log files kept [default: 5].
    #[arg(long = "log-count", alias = "log_count", value_name = "N")]
    pub log_count: Option<u32>,

    /// Handler map file: lines `alias_path existing_path` ("#" comments), each an alias route.
    #[arg(
        short = 'm',
        long = "websock-handlers-map-file",
        visible_alias = "handler-map",
        alias = "websock_handlers_map_file",
        value_name = "FILE",
        help_heading = "Handlers"
    )]
    pub handler_map: Option<PathBuf>,
    /// Scan only this subdirectory of the handler directory (resources stay relative to -w).
    #[arg(short = 's', long = "scan-dir", alias = "scan_dir", value_name = "DIR", help_heading = "Handlers")]
    pub scan_dir: Option<PathBuf>,
    /// Also serve handler files that are symlinks to files outside the handler directory.
    #[arg(
        long = "allow-handlers-outside-root-dir",
        alias = "allow_handlers_outside_root_dir",
        help_heading = "Handlers"
    )]
    pub allow_handlers_outside_root_dir: bool,
    /// Absolute `ws://HOST/...` request targets naming another host are not WebSocket requests.
    #[arg(short = 'V', long = "validation-host", alias = "validation_host", help_heading = "Handlers")]
    pub validation_host: Option<String>,
    /// Absolute `ws://host:PORT/...` request targets naming another port are not WebSocket
    /// requests.
    #[arg(short = 'P', long = "validation-port", alias = "validation_port", help_heading = "Handlers")]
    pub validation_port: Option<u16>,

    /// Serve TLS (wss://, https://) on every listener; needs --certificate and -k.
    #[arg(short = 't', long = "tls", help_heading = "TLS")]
    pub tls: bool,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[arg(
        short = 'k',
        long = "private-key",
        alias = "private_key",
        value_name = "FILE",
        help_heading = "TLS"
    )]
    pub private_key: Option<PathBuf>,
    /// PEM certificate chain, server certificate first (pywebsocket's `-c`; wshd's `-c` is --config).
    #[arg(long = "certificate", value_name = "FILE", help_heading = "TLS")]
    pub certificate: Option<PathBuf>,
    /// Require a client certificate signed by --tls-client-ca.
    #[arg(long = "tls-client-auth", help_heading = "TLS")]
    pub tls_client_auth: bool,
    /// With --tls-client-auth: also serve clients without a certificate.
    #[arg(long = "tls-client-cert-optional", help_heading = "TLS")]
    pub tls_client_cert_optional: bool,
    /// PEM bundle of the CAs that sign client certificates.
    #[arg(long = "tls-client-ca", value_name = "FILE", help_heading = "TLS")]
    pub tls_client_ca: Option<PathBuf>,

    /// Require HTTP Basic authentication on every request (401 otherwise).
    #[arg(long = "basic-auth", help_heading = "HTTP")]
    pub basic_auth: bool,
    /// The credential --basic-auth expects [default: test:test].
    #[arg(
        long = "basic-auth-credential",
        alias = "basic_auth_credential",
        value_name = "USER:PASSWORD",
        help_heading = "HTTP"
    )]
    pub basic_auth_credential: Option<String>,
    /// Comma-separated URL path prefixes whose executable files in the document root run as
    /// CGI scripts (e.g. /cgi-bin).
    #[arg(short = 'x', long = "cgi-paths", alias = "cgi_paths", value_name = "PATHS", help_heading = "HTTP")]
    pub cgi_paths: Option<String>,
    /// Share rooms with other wshd nodes through this Redis (`[broker] url`).
    #[arg(long = "broker", value_name = "URL", help_heading = "Rooms")]
    pub broker: Option<String>,
}

/// Why the options could not be turned into a configuration.
#[derive(Debug)]
pub enum OptionsError {
    /// The config file is invalid.
    Config(ConfigError),
    /// A flag is invalid.
    Flag(String),
    /// The merged configuration is inconsistent, or a file it names is unusable.
    Invalid(String),
}

impl std::fmt::Display for OptionsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OptionsError::Config(e) => write!(f, "{e}"),
            OptionsError::Flag(e) | OptionsError::Invalid(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for OptionsError {}

impl Options {
    /// These options, with those given in `later` (after the subcommand) taking precedence.
    pub fn merged(&self, later: &Options) -> Options {
        fn pick<T: Clone>(first: &Option<T>, later: &Option<T>) -> Option<T> {
            later.clone().or_else(|| first.clone())
        }
        Options {
            config: pick(&self.config, &later.config),
            port: later.port.or(self.port),
            host: pick(&self.host, &later.host),
            handler_dir: pick(&self.handler_dir, &later.handler_dir),
            document_root: pick(&self.document_root, &later.document_root),
            log_level: pick(&self.log_level, &later.log_level),
            log_format: pick(&self.log_format, &later.log_format),
            log_file: pick(&self.log_file, &later.log_file),
            log_max: later.log_max.or(self.log_max),
            log_count: later.log_count.or(self.log_count),
            handler_map: pick(&self.handler_map, &later.handler_map),
            scan_dir: pick(&self.scan_dir, &later.scan_dir),
            allow_handlers_outside_root_dir: self.allow_handlers_outside_root_dir
                || later.allow_handlers_outside_root_dir,
            validation_host: pick(&self.validation_host, &later.validation_host),
            validation_port: later.validation_port.or(self.validation_port),
            tls: self.tls || later.tls,
            private_key: pick(&self.private_key, &later.private_key),
            certificate: pick(&self.certificate, &later.certificate),
            tls_client_auth: self.tls_client_auth || later.tls_client_auth,
            tls_client_cert_optional: self.tls_client_cert_optional || later.tls_client_cert_optional,
            tls_client_ca: pick(&self.tls_client_ca, &later.tls_client_ca),
            basic_auth: self.basic_auth || later.basic_auth,
            basic_auth_credential: pick(&self.basic_auth_credential, &later.basic_auth_credential),
            cgi_paths: pick(&self.cgi_paths, &later.cgi_paths),
            broker: pick(&self.broker, &later.broker),
        }
    }

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
        if let Some(file) = &self.log_file {
            config.log_file = Some(file.clone());
        }
        if let Some(max) = self.log_max {
            config.log_max_bytes = max;
        }
        if let Some(count) = self.log_count {
            config.log_keep = count;
        }
        if let Some(format) = &self.log_format {
            config.log_format = match format.as_str() {
                "json" => config::LogFormat::Json,
                "text" => config::LogFormat::Text,
                other => {
                    return Err(OptionsError::Flag(format!("--log-format {other}: use `text` or `json`")));
                }
            };
        }
        self.apply_handler_flags(&mut config);
        self.apply_tls_flags(&mut config)?;
        if self.basic_auth {
            config.auth.basic = true;
        }
        if let Some(credential) = &self.basic_auth_credential {
            config.auth.credential = Credential::parse(credential)
                .map_err(|e| OptionsError::Flag(format!("--basic-auth-credential: {e}")))?;
        }
        if let Some(paths) = &self.cgi_paths {
            config.cgi.paths = paths
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .map(config::normalize_cgi_path)
                .collect::<Result<_, _>>()
                .map_err(|e| OptionsError::Flag(format!("-x/--cgi-paths: {e}")))?;
        }
        self.apply_broker_flag(&mut config)?;
        config.finish().map_err(OptionsError::Invalid)?;
        Ok(config)
    }

    /// `--broker URL`: replaces the file's URL, keeps its other `[broker]` keys.
    fn apply_broker_flag(&self, config: &mut Config) -> Result<(), OptionsError> {
        let Some(url) = &self.broker else { return Ok(()) };
        config::BrokerSettings::check_url(url).map_err(|e| OptionsError::Flag(format!("--broker: {e}")))?;
        let (heartbeat, not_ready_while_down, tls) =
            config.broker.take().map_or(
                (config::BrokerSettings::DEFAULT_HEARTBEAT, true, config::BrokerTls::default()),
                |b| (b.heartbeat, b.not_ready_while_down, b.tls),
            );
        config::BrokerSettings::check_tls(url, &tls)
            .map_err(|(key, why)| OptionsError::Flag(format!("--broker with the file's {key}: {why}")))?;
        config.broker =
            Some(config::BrokerSettings { url: url.clone(), heartbeat, not_ready_while_down, tls });
        Ok(())
    }

    fn apply_handler_flags(&self, config: &mut Config) {
        if let Some(map) = &self.handler_map {
            config.handler_map = Some(map.clone());
        }
        if let Some(dir) = &self.scan_dir {
            config.handlers_scan_dir = Some(dir.clone());
        }
        if self.allow_handlers_outside_root_dir {
            config.handlers_allow_outside = true;
        }
        if let Some(host) = &self.validation_host {
            config.validation_host = Some(host.clone());
        }
        if let Some(port) = self.validation_port {
            config.validation_port = Some(port);
        }
    }

    fn apply_tls_flags(&self, config: &mut Config) -> Result<(), OptionsError> {
        if self.tls {
            config.tls.enabled = true;
        }
        let needs_tls = [
            (self.private_key.is_some(), "-k/--private-key"),
            (self.certificate.is_some(), "--certificate"),
            (self.tls_client_auth, "--tls-client-auth"),
            (self.tls_client_ca.is_some(), "--tls-client-ca"),
        ];
        if !config.tls.enabled
            && let Some((_, flag)) = needs_tls.iter().find(|(given, _)| *given)
        {
            return Err(OptionsError::Flag(format!("{flag} needs -t/--tls (or [tls] in the configuration)")));
        }
        if let Some(key) = &self.private_key {
            config.tls.key = Some(key.clone());
        }
        if let Some(cert) = &self.certificate {
            config.tls.cert = Some(cert.clone());
        }
        if let Some(ca) = &self.tls_client_ca {
            config.tls.client_ca = Some(ca.clone());
        }
        if self.tls_client_auth {
            config.tls.client_auth =
                if self.tls_client_cert_optional { ClientAuth::Optional } else { ClientAuth::Required };
        } else if self.tls_client_cert_optional {
            if config.tls.client_auth == ClientAuth::None {
                return Err(OptionsError::Flag("--tls-client-cert-optional needs --tls-client-auth".into()));
            }
            config.tls.client_auth = ClientAuth::Optional;
        }
        Ok(())
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
