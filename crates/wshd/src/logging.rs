//! Log set-up: `tracing` with a level filter (`RUST_LOG` overrides the configured level), as
//! human-readable text or as JSON lines.
//!
//! Events worth knowing the targets of: `wshd::access` (one per finished WebSocket
//! connection: client, route, status, subprotocol, duration, bytes, close code) and
//! `wshd::handler` (what handlers log through the SDK).

use std::io::IsTerminal;
use std::path::Path;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::log_file::RotatingFile;

/// pywebsocket's `fine` level (per-frame tracing) as a filter.
const FINE: &str = "debug,wshd::frames=trace";

fn filter(level: &str) -> EnvFilter {
    let level = if level.eq_ignore_ascii_case("fine") { FINE } else { level };
    EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the global subscriber writing to stderr. Safe to call more than once (later calls
/// are ignored). `level` is a tracing filter, or `fine` for per-frame tracing.
pub fn init(level: &str, format: LogFormat) {
    let builder = tracing_subscriber::fmt().with_env_filter(filter(level)).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        // Fields at the top level (not under "fields"), so collectors index them directly.
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
    };
}

/// Like [`init`], but into a size-rotated file; fails (naming the file) if it cannot be
/// opened.
pub fn init_file(
    level: &str,
    format: LogFormat,
    file: &Path,
    max_bytes: u64,
    keep: u32,
) -> Result<(), String> {
    let writer = RotatingFile::open(file, max_bytes, keep)
        .map_err(|e| format!("cannot open log file {}: {e}", file.display()))?;
    init_writer(level, format, writer);
    Ok(())
}

/// Like [`init`], into an opened rotating file (the master keeps a clone to write its
/// workers' lines into the same file).
pub fn init_writer(level: &str, format: LogFormat, writer: RotatingFile) {
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter(level)).with_writer(writer).with_ansi(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
    };
}
