//! The records the watchdog and the supervisor read: one [`ThreadSlot`] per runtime thread
//! saying whether that thread is inside handler code (and for which route), and a
//! [`RouteNames`] table naming the routes. Both are `repr(C)` and made only of atomics, so
//! they can live in memory shared with the master process (the scoreboard) as well as in the
//! worker's own heap.
//!
//! The hot path writes two atomics per call into a handler (the slot's sequence number, odd
//! while inside, and the route id); everything else is read and written by the watchdog
//! thread or the master.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Thread slots per worker process (runtime and blocking-pool threads beyond it are not
/// watched).
pub(crate) const MAX_THREADS: usize = 64;
/// Routes that can be named per worker process (interned by resource path and plugin file).
pub(crate) const MAX_ROUTES: usize = 1024;
/// Longest route path kept (longer ones are cut at a character boundary).
pub(crate) const PATH_BYTES: usize = 120;
/// Longest plugin file name kept.
pub(crate) const FILE_BYTES: usize = 256;
/// The route id meaning "no route known" (table full, or not set).
pub(crate) const NO_ROUTE: u32 = u32::MAX;

/// One runtime thread's state.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct ThreadSlot {
    /// Incremented when the thread enters handler code and again when it leaves: odd while
    /// inside. Written only by the thread that owns the slot.
    pub(crate) seq: AtomicU64,
    /// The [`RouteNames`] id of the handler being run; meaningful while `seq` is odd.
    pub(crate) route: AtomicU32,
    /// Written by the watchdog: the monotonic time in ms ([`monotonic_ms`]) at which it
    /// first saw the current odd `seq`; 0 when the thread is not inside handler code.
    pub(crate) busy_since_ms: AtomicU64,
    /// Written by the watchdog: the `seq` value `busy_since_ms` refers to.
    pub(crate) busy_seq: AtomicU64,
}

impl ThreadSlot {
    /// Marks entry into handler code for `route`.
    #[inline]
    pub(crate) fn enter(&self, route: u32) {
        self.route.store(route, Ordering::Relaxed);
        self.seq.fetch_add(1, Ordering::Release);
    }

    /// Marks the return from handler code.
    #[inline]
    pub(crate) fn leave(&self) {
        self.seq.fetch_add(1, Ordering::Release);
    }

    /// The route being run, when the thread is inside handler code.
    #[allow(dead_code, reason = "for readers of the slots other than the watchdog thread")]
    pub(crate) fn busy_route(&self) -> Option<u32> {
        let seq = self.seq.load(Ordering::Acquire);
        (seq % 2 == 1).then(|| self.route.load(Ordering::Relaxed))
    }
}

/// One interned route: its resource path and plugin file, as bytes with their lengths.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct RouteName {
    /// Length of `path` in use; 0 while the entry is being written or unused.
    pub(crate) path_len: AtomicU32,
    /// Length of `file` in use.
    pub(crate) file_len: AtomicU32,
    /// The resource path, UTF-8.
    pub(crate) path: [AtomicU8x8; PATH_BYTES / 8],
    /// The plugin file, UTF-8 (lossy).
    pub(crate) file: [AtomicU8x8; FILE_BYTES / 8],
}

/// Eight bytes stored as one atomic word (so the table is atomics only).
pub(crate) type AtomicU8x8 = AtomicU64;

/// The routes of one worker process, by id (an index). Append-only: an id, once given,
/// names the same route for the process's life.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct RouteNames {
    /// Entries in use.
    pub(crate) len: AtomicU32,
    /// The entries.
    pub(crate) entries: [RouteName; MAX_ROUTES],
}

/// The current `CLOCK_MONOTONIC` time in milliseconds: the same clock in every process on
/// the machine, so a master can compare a worker's timestamps with its own.
pub(crate) fn monotonic_ms() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(now) => (now.tv_sec() as u64).saturating_mul(1000) + (now.tv_nsec() as u64) / 1_000_000,
        Err(_) => 0,
    }
}

/// Stores `text` (cut at a character boundary to fit) in `words`; the length stored.
pub(crate) fn store_bytes(words: &[AtomicU64], text: &str) -> u32 {
    let mut cut = text.len().min(words.len() * 8);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let bytes = &text.as_bytes()[..cut];
    for (word, chunk) in words.iter().zip(bytes.chunks(8)) {
        let mut buf = [0u8; 8];
        buf[..chunk.len()].copy_from_slice(chunk);
        word.store(u64::from_le_bytes(buf), Ordering::Relaxed);
    }
    cut as u32
}

/// The first `len` bytes of `words`, as text.
pub(crate) fn load_bytes(words: &[AtomicU64], len: u32) -> String {
    let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes()).collect();
    bytes.truncate((len as usize).min(bytes.len()));
    String::from_utf8_lossy(&bytes).into_owned()
}

impl RouteNames {
    /// Adds a route and returns its id; [`NO_ROUTE`] when the table is full. Called by one
    /// thread at a time (the caller serialises interning; readers never block).
    pub(crate) fn push(&self, path: &str, file: &str) -> u32 {
        let id = self.len.load(Ordering::Acquire) as usize;
        let Some(entry) = self.entries.get(id) else { return NO_ROUTE };
        let file_len = store_bytes(&entry.file, file);
        entry.file_len.store(file_len, Ordering::Relaxed);
        let path_len = store_bytes(&entry.path, path);
        entry.path_len.store(path_len, Ordering::Release);
        self.len.store(id as u32 + 1, Ordering::Release);
        id as u32
    }

    /// The route path and plugin file of `id`, if it was given out.
    pub(crate) fn get(&self, id: u32) -> Option<(String, String)> {
        if id >= self.len.load(Ordering::Acquire) {
            return None;
        }
        let entry = self.entries.get(id as usize)?;
        let path = load_bytes(&entry.path, entry.path_len.load(Ordering::Acquire));
        let file = load_bytes(&entry.file, entry.file_len.load(Ordering::Relaxed));
        Some((path, file))
    }
}

/// Types made only of atomic integers in a `repr(C)` layout, for which all-zero bytes are a
/// valid (empty) value, so they can be allocated zeroed or mapped from zeroed shared memory.
///
/// # Safety
/// Implement only for `repr(C)` types whose every field is an atomic integer or an array or
/// `repr(C)` struct of them.
#[allow(unsafe_code)]
pub(crate) unsafe trait ZeroIsValid: Sized {}

// SAFETY: atomics only (seq, route, busy_since_ms, busy_seq).
#[allow(unsafe_code)]
unsafe impl ZeroIsValid for ThreadSlot {}
// SAFETY: atomics only (lengths and byte words).
#[allow(unsafe_code)]
unsafe impl ZeroIsValid for RouteNames {}
// SAFETY: an array of a ZeroIsValid type.
#[allow(unsafe_code)]
unsafe impl<T: ZeroIsValid, const N: usize> ZeroIsValid for [T; N] {}

/// A zeroed `T` on the heap, leaked: for tables that live as long as the process.
pub(crate) fn leak_zeroed<T: ZeroIsValid>() -> &'static T {
    let layout = std::alloc::Layout::new::<T>();
    if layout.size() == 0 {
        std::alloc::handle_alloc_error(layout);
    }
    // SAFETY: the layout has a non-zero size (checked above); `T: ZeroIsValid` makes the zeroed
    // bytes a valid `T`; the allocation is never freed, so the reference is 'static.
    #[allow(unsafe_code)]
    unsafe {
        let ptr = std::alloc::alloc_zeroed(layout).cast::<T>();
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        &*ptr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pushed_route_reads_back_and_long_names_are_cut_at_a_char_boundary() {
        let names = leak_zeroed::<RouteNames>();
        let id = names.push("/chat/room", "/srv/h/chat/room_wsh.so");
        assert_eq!(names.get(id), Some(("/chat/room".into(), "/srv/h/chat/room_wsh.so".into())));
        let long = "é".repeat(100);
        let id2 = names.push(&long, "f");
        let (path, _) = names.get(id2).unwrap_or_default();
        assert!(path.len() <= PATH_BYTES && long.starts_with(&path) && !path.is_empty());
        assert_eq!(names.get(99), None);
    }

    #[test]
    fn a_slot_is_busy_between_enter_and_leave() {
        let slot = ThreadSlot::default();
        assert_eq!(slot.busy_route(), None);
        slot.enter(7);
        assert_eq!(slot.busy_route(), Some(7));
        slot.leave();
        assert_eq!(slot.busy_route(), None);
    }
}
