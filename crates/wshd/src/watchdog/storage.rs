//! Where the thread slots and route names live: installed once at start-up (a master process
//! passes tables in shared memory), or leaked zeroed on first use when nobody installed any.
//! Route interning is here too: one id per (route path, plugin file), handed out at load time.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use super::slot::{MAX_THREADS, NO_ROUTE, RouteNames, ThreadSlot, leak_zeroed};

/// The tables the hot path writes and the watchdog (and a master) reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Storage {
    /// One slot per watched thread.
    pub(crate) slots: &'static [ThreadSlot; MAX_THREADS],
    /// The routes named by the slots' route ids.
    pub(crate) names: &'static RouteNames,
}

/// The installed storage.
static STORAGE: OnceLock<Storage> = OnceLock::new();

/// Installs the tables this process writes into. Call once at start-up, before any handler
/// runs; `Err` gives `storage` back when tables were already installed or already defaulted
/// (a handler ran first).
#[allow(dead_code, reason = "the seam for a master process's shared tables; the default needs no call")]
pub(crate) fn install(storage: Storage) -> Result<(), Storage> {
    STORAGE.set(storage)
}

/// The installed tables; zeroed ones of this process's own heap when none were installed.
pub(crate) fn storage() -> Storage {
    *STORAGE.get_or_init(|| Storage { slots: leak_zeroed(), names: leak_zeroed() })
}

/// The ids given out so far, by (route path, plugin file).
static INTERNED: OnceLock<Mutex<HashMap<(String, String), u32>>> = OnceLock::new();

/// The route id of (`path`, `file`): the same id every time for the same pair; [`NO_ROUTE`]
/// when the table is full. Not for the hot path (a lock and a map lookup): call it when a
/// handler instance is made.
pub(crate) fn intern(path: &str, file: &str) -> u32 {
    let map = INTERNED.get_or_init(Mutex::default);
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    let key = (path.to_owned(), file.to_owned());
    if let Some(id) = map.get(&key) {
        return *id;
    }
    let id = storage().names.push(path, file);
    if id != NO_ROUTE {
        map.insert(key, id);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_the_same_pair_gives_the_same_id() {
        let a = intern("/intern-test/a", "/h/a_wsh.so");
        let b = intern("/intern-test/b", "/h/a_wsh.so");
        assert_ne!(a, b);
        assert_eq!(intern("/intern-test/a", "/h/a_wsh.so"), a);
        assert_eq!(storage().names.get(a), Some(("/intern-test/a".into(), "/h/a_wsh.so".into())));
    }
}
