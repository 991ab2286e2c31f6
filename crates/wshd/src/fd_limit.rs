//! The process's file descriptor limit. Every connection is a descriptor, and many systems
//! start a service with a soft limit of 1,024 whatever its hard limit: at start wshd raises
//! the soft limit to the hard one (as nginx's `worker_rlimit_nofile` lets an operator do),
//! and logs the limit in force next to `max_connections`. Worker processes inherit it.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Descriptors kept for everything but client connections: listeners, the log, the control
/// and scoreboard links, plugin files, CGI and command pipes.
const RESERVED: u64 = 64;

/// The descriptor number from which an accepted connection means the process is near its
/// limit (the soft limit less [`RESERVED`], or less a quarter of a limit under 256): the
/// kernel gives the lowest free number, so descriptor `n` means `0..n` are all in use.
/// `None` when the limit cannot be read.
pub(crate) fn shed_from() -> Option<u64> {
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    Some(soft.saturating_sub(RESERVED.min(soft / 4)))
}

/// Raises the soft descriptor limit to the hard one and logs the result, warning when
/// `max_connections` cannot be reached under it.
pub(crate) fn raise_and_log(max_connections: Option<usize>) {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!("cannot read the file descriptor limit: {e}");
            return;
        }
    };
    let effective = if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => {
                tracing::info!("file descriptor limit raised from {soft} to the hard limit {hard}");
                hard
            }
            Err(e) => {
                tracing::warn!("file descriptor limit stays at {soft} (raising it to {hard} failed: {e})");
                soft
            }
        }
    } else {
        soft
    };
    let connections = effective.saturating_sub(RESERVED);
    match max_connections {
        Some(max) if max as u64 > connections => tracing::warn!(
            "max_connections = {max}, but the file descriptor limit ({effective}) leaves room for \
             about {connections} per process: raise the hard limit (LimitNOFILE= in systemd, \
             ulimit -Hn) or lower max_connections"
        ),
        _ => tracing::info!(
            "file descriptor limit {effective} (hard {hard}); max_connections {max_connections:?}"
        ),
    }
}
