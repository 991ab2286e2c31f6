//! The master's memory of crashes: which route took a worker down and when
//! ([`CrashLedger`]), and the identity of a plugin file on disk ([`fingerprint`]), so a
//! quarantine can be lifted when a new build replaces the file.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::path::Path;

/// Crashes per route within a sliding window, in the master.
#[derive(Debug)]
pub(crate) struct CrashLedger {
    limit: usize,
    window_ms: u64,
    crashes: HashMap<String, VecDeque<u64>>,
}

impl CrashLedger {
    /// A ledger that trips at `limit` crashes within `window_ms`.
    pub(crate) fn new(limit: u32, window_ms: u64) -> CrashLedger {
        CrashLedger { limit: limit.max(1) as usize, window_ms, crashes: HashMap::new() }
    }

    /// Records a crash of `route` at `now_ms`; whether the route has now crashed `limit`
    /// times within the window (its history is then cleared).
    pub(crate) fn record(&mut self, route: &str, now_ms: u64) -> bool {
        let times = self.crashes.entry(route.to_owned()).or_default();
        times.push_back(now_ms);
        while times.front().is_some_and(|&t| now_ms.saturating_sub(t) > self.window_ms) {
            times.pop_front();
        }
        if times.len() >= self.limit {
            self.crashes.remove(route);
            return true;
        }
        false
    }

    /// Crashes of `route` still inside the window.
    #[cfg(test)]
    pub(crate) fn count(&self, route: &str) -> usize {
        self.crashes.get(route).map_or(0, VecDeque::len)
    }
}

/// A plugin file's identity on disk (device, inode, size, modification time), hashed: it
/// changes when a new build replaces the file, whether written in place or renamed over.
pub(crate) fn fingerprint(file: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(file).ok()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (meta.dev(), meta.ino(), meta.size(), meta.mtime(), meta.mtime_nsec()).hash(&mut hasher);
    Some(hasher.finish() | 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_crashes_within_the_window_trip_the_ledger_and_older_ones_do_not_count() {
        let mut ledger = CrashLedger::new(3, 60_000);
        assert!(!ledger.record("/bad", 1_000));
        assert!(!ledger.record("/bad", 2_000));
        assert!(!ledger.record("/other", 2_500));
        assert!(ledger.record("/bad", 3_000));
        assert_eq!(ledger.count("/bad"), 0, "history cleared once tripped");
        assert!(!ledger.record("/slow", 0));
        assert!(!ledger.record("/slow", 40_000));
        assert!(!ledger.record("/slow", 99_000), "the first crash left the window");
        assert_eq!(ledger.count("/slow"), 2);
    }

    #[test]
    fn the_fingerprint_changes_when_the_file_is_replaced() {
        let dir = std::env::temp_dir().join(format!("wshd-fp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let file = dir.join("p.so");
        std::fs::write(&file, b"one").unwrap_or_else(|e| panic!("{e}"));
        let first = fingerprint(&file);
        assert!(first.is_some());
        assert_eq!(fingerprint(&file), first);
        let next = dir.join("p.so.new");
        std::fs::write(&next, b"two!").unwrap_or_else(|e| panic!("{e}"));
        std::fs::rename(&next, &file).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(fingerprint(&file), first);
        assert_eq!(fingerprint(&dir.join("missing")), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
