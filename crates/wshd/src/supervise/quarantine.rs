//! Quarantine of routes whose handler keeps taking workers down: the master counts the
//! crashes it attributes to a route ([`CrashLedger`]); at the limit it writes the route into
//! a [`QuarantineTable`] in the scoreboard, which every worker checks at each handshake
//! (503 while listed). The entry remembers the plugin file's [`fingerprint`]; when the file
//! on disk changes (a new build, which hot reload loads), the master lifts the quarantine.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::watchdog::slot::{FILE_BYTES, PATH_BYTES, ZeroIsValid, load_bytes, store_bytes};

/// Routes that can be quarantined at once.
pub(crate) const MAX_QUARANTINED: usize = 32;

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

/// Entry states.
const FREE: u32 = 0;
const WRITING: u32 = 1;
const ACTIVE: u32 = 2;

/// One quarantined route.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct QuarantineEntry {
    state: AtomicU32,
    path_len: AtomicU32,
    file_len: AtomicU32,
    fingerprint: AtomicU64,
    path: [AtomicU64; PATH_BYTES / 8],
    file: [AtomicU64; FILE_BYTES / 8],
}

/// The quarantined routes, in shared memory: written by the master, read by every worker.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct QuarantineTable {
    entries: [QuarantineEntry; MAX_QUARANTINED],
}

// SAFETY: repr(C), atomics only.
#[allow(unsafe_code)]
unsafe impl ZeroIsValid for QuarantineTable {}

/// A quarantined route as the master reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Quarantined {
    /// Its index in the table (for [`QuarantineTable::lift`]).
    pub(crate) index: usize,
    /// The resource path.
    pub(crate) path: String,
    /// The plugin file that crashed.
    pub(crate) file: String,
    /// The file's [`fingerprint`] when it was quarantined.
    pub(crate) fingerprint: u64,
}

impl QuarantineTable {
    /// Lists `path` (served by `file` with `fingerprint`); false when the table is full.
    /// Master only.
    pub(crate) fn add(&self, path: &str, file: &str, fingerprint: u64) -> bool {
        for entry in &self.entries {
            if entry.state.compare_exchange(FREE, WRITING, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                entry.path_len.store(store_bytes(&entry.path, path), Ordering::Relaxed);
                entry.file_len.store(store_bytes(&entry.file, file), Ordering::Relaxed);
                entry.fingerprint.store(fingerprint, Ordering::Relaxed);
                entry.state.store(ACTIVE, Ordering::Release);
                return true;
            }
        }
        false
    }

    /// Whether new connections to `path` must be refused (the worker's handshake check:
    /// a scan of at most [`MAX_QUARANTINED`] words when nothing is quarantined).
    pub(crate) fn contains(&self, path: &str) -> bool {
        self.entries.iter().any(|entry| {
            entry.state.load(Ordering::Acquire) == ACTIVE
                && entry.path_len.load(Ordering::Relaxed) as usize == path.len().min(PATH_BYTES)
                && load_bytes(&entry.path, entry.path_len.load(Ordering::Relaxed)) == cut(path)
        })
    }

    /// Every listed route.
    pub(crate) fn list(&self) -> Vec<Quarantined> {
        let mut out = Vec::new();
        for (index, entry) in self.entries.iter().enumerate() {
            if entry.state.load(Ordering::Acquire) == ACTIVE {
                out.push(Quarantined {
                    index,
                    path: load_bytes(&entry.path, entry.path_len.load(Ordering::Relaxed)),
                    file: load_bytes(&entry.file, entry.file_len.load(Ordering::Relaxed)),
                    fingerprint: entry.fingerprint.load(Ordering::Relaxed),
                });
            }
        }
        out
    }

    /// Removes the entry at `index`. Master only.
    pub(crate) fn lift(&self, index: usize) {
        if let Some(entry) = self.entries.get(index) {
            entry.state.store(FREE, Ordering::Release);
        }
    }
}

/// `path` as the table stores it (cut to [`PATH_BYTES`] at a character boundary).
fn cut(path: &str) -> &str {
    let mut end = path.len().min(PATH_BYTES);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watchdog::slot::leak_zeroed;

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
    fn a_listed_route_is_found_until_lifted_and_others_never_are() {
        let table = leak_zeroed::<QuarantineTable>();
        assert!(!table.contains("/bad"));
        assert!(table.add("/bad", "/h/bad_wsh.so", 42));
        assert!(table.contains("/bad"));
        assert!(!table.contains("/ba") && !table.contains("/bad/x") && !table.contains("/echo"));
        let listed = table.list();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].path.as_str(), listed[0].fingerprint), ("/bad", 42));
        table.lift(listed[0].index);
        assert!(!table.contains("/bad") && table.list().is_empty());
    }

    #[test]
    fn the_table_refuses_entries_past_its_size() {
        let table = leak_zeroed::<QuarantineTable>();
        for i in 0..MAX_QUARANTINED {
            assert!(table.add(&format!("/r{i}"), "f", 1));
        }
        assert!(!table.add("/one-more", "f", 1));
        let long = format!("/{}", "x".repeat(300));
        table.lift(0);
        assert!(table.add(&long, "f", 1));
        assert!(table.contains(&long), "long paths compare on their stored prefix");
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
