//! Log set-up: `tracing` with a level filter (`RUST_LOG` overrides the configured level).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber writing to stderr. Safe to call more than once (later calls
/// are ignored).
pub fn init(level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
