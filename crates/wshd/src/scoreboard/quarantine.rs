//! The quarantined routes: the master lists a route whose handler keeps taking workers down;
//! every worker checks the list at each handshake (503 while listed). An entry remembers the
//! plugin file's fingerprint; when the file on disk changes (a new build, which hot reload
//! loads), the master lifts the quarantine.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::slot::{FILE_BYTES, PATH_BYTES, ZeroIsValid, load_bytes, store_bytes};

/// Routes that can be quarantined at once.
pub(crate) const MAX_QUARANTINED: usize = 32;

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
    use crate::scoreboard::slot::leak_zeroed;

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
}
