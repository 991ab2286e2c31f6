//! Worker log lines: every worker's stderr is a pipe to the master, which writes each line to
//! its own log destination (stderr, or the one rotating `[log] file`: a single writer, so
//! rotation stays correct), marked with the worker's index: text lines get a `worker=N `
//! prefix, JSON lines a `"worker":N` field (anything else a worker prints, such as a Rust
//! runtime message before it dies, is wrapped in a JSON object).

use std::io::{BufRead, BufReader, Write};
use std::process::ChildStderr;

use crate::config::LogFormat;
use crate::log_file::RotatingFile;

/// Where the master's log goes.
#[derive(Debug, Clone)]
pub enum Sink {
    /// The master's stderr.
    Stderr,
    /// The rotating log file.
    File(RotatingFile),
}

impl Sink {
    /// Writes one line (a newline is added).
    fn write_line(&self, line: &str) {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        let _ = match self {
            Sink::Stderr => std::io::stderr().lock().write_all(&bytes),
            Sink::File(file) => file.clone().write_all(&bytes),
        };
    }
}

/// Relays `stderr` of worker `index` to `sink` on a thread of its own, until the pipe closes
/// (the worker exited).
pub(crate) fn relay(index: usize, stderr: ChildStderr, sink: Sink, format: LogFormat) {
    let spawned = std::thread::Builder::new().name(format!("wshd-relay-{index}")).spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut buf = Vec::new();
        while matches!(reader.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
            let line = String::from_utf8_lossy(&buf);
            sink.write_line(&mark(index, line.trim_end_matches(['\n', '\r']), format));
            buf.clear();
        }
    });
    if let Err(e) = spawned {
        tracing::error!("cannot relay the log of worker {index}: {e}");
    }
}

/// `line` marked as worker `index`'s.
pub(crate) fn mark(index: usize, line: &str, format: LogFormat) -> String {
    match format {
        LogFormat::Text => format!("worker={index} {line}"),
        LogFormat::Json => match line.strip_prefix('{') {
            Some(rest) if line.ends_with('}') => {
                let sep = if rest.trim_start().starts_with('}') { "" } else { "," };
                format!("{{\"worker\":{index}{sep}{rest}")
            }
            _ => format!("{{\"worker\":{index},\"level\":\"ERROR\",\"message\":{}}}", json_string(line)),
        },
    }
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_marked_and_json_stays_json() {
        assert_eq!(mark(2, "INFO hello", LogFormat::Text), "worker=2 INFO hello");
        assert_eq!(mark(1, "{\"a\":1}", LogFormat::Json), "{\"worker\":1,\"a\":1}");
        assert_eq!(mark(1, "{}", LogFormat::Json), "{\"worker\":1}");
        assert_eq!(
            mark(3, "thread 'x' has overflowed its \"stack\"", LogFormat::Json),
            "{\"worker\":3,\"level\":\"ERROR\",\"message\":\"thread 'x' has overflowed its \\\"stack\\\"\"}"
        );
    }
}
