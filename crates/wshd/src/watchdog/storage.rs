//! Where the thread slots and route names live (this process's cell of the scoreboard), and
//! route interning: one id per (route path, plugin file), handed out at load time.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use super::slot::{MAX_THREADS, NO_ROUTE, RouteNames, ThreadSlot};

/// The tables the hot path writes and the watchdog (and a master) reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Storage {
    /// One slot per watched thread.
    pub(crate) slots: &'static [ThreadSlot; MAX_THREADS],
    /// The routes named by the slots' route ids.
    pub(crate) names: &'static RouteNames,
}

/// This process's tables: its cell of the scoreboard ([`crate::scoreboard::local`]), which a
/// worker process maps from the master's shared memory.
#[inline]
pub(crate) fn storage() -> Storage {
    let local = crate::scoreboard::local();
    Storage { slots: local.slots, names: local.names }
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
