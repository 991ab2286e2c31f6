//! Recycling a worker before a leaking handler makes it a problem, like Apache's
//! `MaxConnectionsPerChild` and php-fpm's `pm.max_requests`: past a resident-memory limit or
//! a number of connections served, the master drains the worker (as on SIGTERM: it stops
//! accepting, its WebSockets get 1001) and starts a replacement at once.

/// When a worker is recycled (`None`: never).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RecycleLimits {
    /// Resident memory, in bytes.
    pub(crate) rss_bytes: Option<u64>,
    /// WebSocket connections accepted over the worker's life.
    pub(crate) connections: Option<u64>,
}

/// Why a worker is recycled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recycle {
    /// Its resident memory passed the limit (bytes, limit).
    Memory(u64, u64),
    /// It accepted this many connections (count, limit).
    Connections(u64, u64),
}

impl std::fmt::Display for Recycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Recycle::Memory(rss, limit) => {
                write!(f, "resident memory {} MiB over the limit of {} MiB", rss >> 20, limit >> 20)
            }
            Recycle::Connections(n, limit) => write!(f, "{n} connections served (limit {limit})"),
        }
    }
}

impl Recycle {
    /// The `cause` label of `wshd_worker_recycles_total`.
    pub(crate) fn cause(&self) -> &'static str {
        match self {
            Recycle::Memory(..) => "memory",
            Recycle::Connections(..) => "connections",
        }
    }
}

impl RecycleLimits {
    /// The limits of `[workers] recycle_rss_mib` and `recycle_after_connections`.
    pub(crate) fn of(settings: &crate::config::WorkerSettings) -> RecycleLimits {
        RecycleLimits {
            rss_bytes: settings.recycle_rss_bytes,
            connections: settings.recycle_after_connections,
        }
    }

    /// Whether any limit is set.
    pub(crate) fn any(&self) -> bool {
        self.rss_bytes.is_some() || self.connections.is_some()
    }

    /// Whether a worker with this memory and connection count is due.
    pub(crate) fn check(&self, rss_bytes: Option<u64>, accepted: u64) -> Option<Recycle> {
        if let (Some(limit), Some(rss)) = (self.rss_bytes, rss_bytes)
            && rss > limit
        {
            return Some(Recycle::Memory(rss, limit));
        }
        match self.connections {
            Some(limit) if accepted >= limit => Some(Recycle::Connections(accepted, limit)),
            _ => None,
        }
    }
}

/// The resident memory of process `pid`, from the `VmRSS` line of `/proc/PID/status`.
pub(crate) fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_checked_before_connections_and_no_limit_never_recycles() {
        let limits = RecycleLimits { rss_bytes: Some(100 << 20), connections: Some(1000) };
        assert_eq!(limits.check(Some(50 << 20), 10), None);
        assert_eq!(limits.check(Some(200 << 20), 5000), Some(Recycle::Memory(200 << 20, 100 << 20)));
        assert_eq!(limits.check(None, 1000), Some(Recycle::Connections(1000, 1000)));
        assert_eq!(RecycleLimits::default().check(Some(u64::MAX), u64::MAX), None);
        assert!(Recycle::Memory(200 << 20, 100 << 20).to_string().contains("200 MiB"));
    }

    #[test]
    fn this_process_has_a_resident_size() {
        let rss = resident_bytes(std::process::id()).unwrap_or(0);
        assert!(rss > 1 << 20, "rss {rss}");
        assert_eq!(resident_bytes(u32::MAX), None);
    }
}
