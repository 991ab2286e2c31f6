//! The scoreboard: memory shared by the master and its workers (like Apache's scoreboard).
//! The master creates it (`memfd_create` + `ftruncate` + `mmap(MAP_SHARED)`), each worker
//! inherits the file descriptor and maps it too. It holds only `repr(C)` atomics
//! ([`ZeroIsValid`]), so a worker that dies in the middle of a write leaves nothing a reader
//! could misread, and nothing in it is a pointer.
//!
//! Layout: a [`Header`] (magic, layout version, worker capacity), the [`Global`] part (the
//! server-wide connection counts behind the limits, and the quarantine table), and one
//! [`WorkerCell`] per worker: its pid, state, heartbeat, counters, and the watchdog's
//! [`ThreadSlot`]s and [`RouteNames`], which tell the master what a dead or stuck worker was
//! running.
//!
//! Mapping and unmapping happen only in this module ([`Board::create`], [`Board::open`],
//! `Drop`).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use nix::sys::mman::{MapFlags, ProtFlags};

use crate::scoreboard::counts::ConnectionCounts;
use crate::scoreboard::quarantine::QuarantineTable;
use crate::scoreboard::slot::{MAX_THREADS, RouteNames, ThreadSlot, ZeroIsValid};

/// Identifies a wshd scoreboard ("wshdbord").
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"wshdbord");
/// The layout version; bump when any type below changes.
pub(crate) const LAYOUT_VERSION: u32 = 2;
/// Worker cells in a board: twice the most workers a master can run, so a worker being
/// recycled drains in its cell while its replacement starts in another.
pub(crate) const CAPACITY: usize = crate::scoreboard::counts::MAX_WORKERS;

/// What the board is: written once by the master.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Header {
    /// [`MAGIC`].
    pub(crate) magic: AtomicU64,
    /// [`LAYOUT_VERSION`].
    pub(crate) version: AtomicU32,
    /// [`CAPACITY`].
    pub(crate) capacity: AtomicU32,
}

/// What all workers share.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Global {
    /// Open WebSocket connections, server-wide and per worker (the limits count through it).
    pub(crate) counts: ConnectionCounts,
    /// Quarantined routes.
    pub(crate) quarantine: QuarantineTable,
}

/// A worker's [`WorkerCell::state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum CellState {
    /// No worker.
    Empty = 0,
    /// Spawned, not serving yet.
    Starting = 1,
    /// Serving.
    Serving = 2,
    /// Draining after SIGTERM.
    Draining = 3,
    /// Serving but not ready (no handler loaded): `/readyz` says so.
    Unready = 4,
    /// Being recycled: set by the master a moment before it sends SIGTERM, so the worker
    /// stops accepting first and the connections it accepted last are not closed (1001) at
    /// once by the drain.
    SteppingAside = 5,
}

impl CellState {
    /// Whether a cell in state `raw` has a worker accepting connections.
    pub(crate) fn accepting(raw: u32) -> bool {
        raw == CellState::Serving as u32 || raw == CellState::Unready as u32
    }
}

/// One worker's part of the board.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct WorkerCell {
    /// The worker's pid (0: none).
    pub(crate) pid: AtomicU32,
    /// A [`CellState`].
    pub(crate) state: AtomicU32,
    /// When the worker last proved its runtime alive ([`crate::scoreboard::slot::monotonic_ms`]).
    pub(crate) heartbeat_ms: AtomicU64,
    /// Open WebSocket connections of this worker, as its accept gate last saw them.
    pub(crate) open_connections: AtomicU64,
    /// WebSocket connections this worker admitted over its life (one relaxed increment per
    /// handshake admitted; the master recycles past `[workers] recycle_after_connections`).
    pub(crate) accepted_total: AtomicU64,
    /// The watchdog's slot per runtime thread.
    pub(crate) slots: [ThreadSlot; MAX_THREADS],
    /// The routes the slots name.
    pub(crate) names: RouteNames,
}

/// The whole shared region.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Layout {
    /// What the board is.
    pub(crate) header: Header,
    /// Shared by all workers.
    pub(crate) global: Global,
    /// One per worker.
    pub(crate) cells: [WorkerCell; CAPACITY],
}

// SAFETY: atomics only (magic, version, capacity).
#[allow(unsafe_code)]
unsafe impl ZeroIsValid for Header {}
// SAFETY: repr(C) structs of ZeroIsValid types.
#[allow(unsafe_code)]
unsafe impl ZeroIsValid for Global {}
// SAFETY: atomics, and arrays or structs of ZeroIsValid types (ThreadSlot, RouteNames).
#[allow(unsafe_code)]
unsafe impl ZeroIsValid for WorkerCell {}
// SAFETY: repr(C) structs and an array of ZeroIsValid types.
#[allow(unsafe_code)]
unsafe impl ZeroIsValid for Layout {}

impl WorkerCell {
    /// Clears the cell for a new worker: no pid, starting, heartbeat `now_ms`, idle slots and
    /// no route names (route names are overwritten in place; `len` 0 hides the old ones).
    pub(crate) fn reset(&self, now_ms: u64) {
        self.pid.store(0, Ordering::Relaxed);
        self.open_connections.store(0, Ordering::Relaxed);
        self.accepted_total.store(0, Ordering::Relaxed);
        for slot in &self.slots {
            slot.seq.store(0, Ordering::Relaxed);
            slot.route.store(0, Ordering::Relaxed);
            slot.busy_since_ms.store(0, Ordering::Relaxed);
            slot.busy_seq.store(0, Ordering::Relaxed);
        }
        self.names.len.store(0, Ordering::Relaxed);
        self.heartbeat_ms.store(now_ms, Ordering::Relaxed);
        self.state.store(CellState::Starting as u32, Ordering::Release);
    }

    /// The routes (path and plugin file) whose handler code a thread is running now.
    pub(crate) fn busy_routes(&self) -> Vec<(String, String)> {
        busy_routes(&self.slots, &self.names)
    }
}

/// The routes (path and plugin file) whose handler code one of `slots` is running now.
pub(crate) fn busy_routes(slots: &[ThreadSlot], names: &RouteNames) -> Vec<(String, String)> {
    let mut routes: Vec<(String, String)> = Vec::new();
    for slot in slots {
        let Some(id) = slot.busy_route() else { continue };
        let named = names.get(id).unwrap_or_else(|| (format!("route #{id}"), String::new()));
        if !routes.contains(&named) {
            routes.push(named);
        }
    }
    routes
}

/// Formats busy routes for a log line: `/bad (handlers/bad_wsh.so), /x`; `none known` when empty.
pub(crate) fn describe_routes(routes: &[(String, String)]) -> String {
    if routes.is_empty() {
        return "none known".to_owned();
    }
    let named: Vec<String> = routes
        .iter()
        .map(|(path, file)| if file.is_empty() { path.clone() } else { format!("{path} ({file})") })
        .collect();
    named.join(", ")
}

/// A mapping of the board.
#[derive(Debug)]
pub(crate) struct Board {
    /// The mapping.
    ptr: NonNull<Layout>,
    /// The memfd (inherited by workers).
    fd: OwnedFd,
}

// SAFETY: the mapping is made of atomics only and lives as long as `Board`; sharing it between
// threads is what atomics are for.
#[allow(unsafe_code)]
unsafe impl Send for Board {}
// SAFETY: as above: only `&Layout` (atomics) is handed out.
#[allow(unsafe_code)]
unsafe impl Sync for Board {}

/// The size of the mapping.
const SIZE: usize = std::mem::size_of::<Layout>();

impl Board {
    /// Creates a zeroed board (the master). Its fd is close-on-exec; spawning a worker clears
    /// that flag in the child only.
    pub(crate) fn create() -> std::io::Result<Board> {
        let fd = nix::sys::memfd::memfd_create(c"wshd-board", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
        nix::unistd::ftruncate(&fd, SIZE as i64)?;
        let board = Board::map(fd)?;
        let header = &board.header;
        header.capacity.store(CAPACITY as u32, Ordering::Relaxed);
        header.version.store(LAYOUT_VERSION, Ordering::Relaxed);
        header.magic.store(MAGIC, Ordering::Release);
        Ok(board)
    }

    /// Maps the board inherited as `fd` (a worker) and checks its header.
    pub(crate) fn open(fd: OwnedFd) -> Result<Board, String> {
        let size = nix::sys::stat::fstat(&fd).map_err(|e| format!("scoreboard fd: {e}"))?.st_size;
        if usize::try_from(size).map_or(true, |size| size < SIZE) {
            return Err(format!("scoreboard is {size} bytes, expected {SIZE}"));
        }
        let board = Board::map(fd).map_err(|e| format!("cannot map the scoreboard: {e}"))?;
        let header = &board.header;
        let (magic, version) = (header.magic.load(Ordering::Acquire), header.version.load(Ordering::Relaxed));
        if magic != MAGIC || version != LAYOUT_VERSION {
            return Err(format!("not a scoreboard of this wshd (magic {magic:#x}, layout v{version})"));
        }
        Ok(board)
    }

    /// Maps `fd` shared, read-write, whole.
    fn map(fd: OwnedFd) -> std::io::Result<Board> {
        let len = std::num::NonZeroUsize::new(SIZE).ok_or(std::io::ErrorKind::InvalidInput)?;
        let prot = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
        // SAFETY: a fresh mapping chosen by the kernel (no address hint), so it aliases no Rust
        // object; `fd` is at least SIZE bytes (ftruncate'd by the master, fstat-checked by a
        // worker); the bytes are zero or were written as a `Layout` by another process, and a
        // `Layout` is atomics only (`ZeroIsValid`), so any bytes are a valid value; mmap returns
        // page-aligned memory, enough for its 8-byte alignment.
        #[allow(unsafe_code)]
        let ptr = unsafe { nix::sys::mman::mmap(None, len, prot, MapFlags::MAP_SHARED, &fd, 0)? };
        Ok(Board { ptr: ptr.cast::<Layout>(), fd })
    }

    /// The memfd, for a worker to inherit.
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The memfd, borrowed.
    #[cfg(test)]
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.fd)
    }

    /// Keeps the mapping for the process's life.
    pub(crate) fn leak(self) -> &'static Layout {
        let board: &'static Board = Box::leak(Box::new(self));
        board
    }

    /// Worker `index`'s cell (0-based), if the board has one.
    #[cfg(test)]
    pub(crate) fn cell(&self, index: usize) -> Option<&WorkerCell> {
        self.cells.get(index)
    }
}

impl std::ops::Deref for Board {
    type Target = Layout;

    fn deref(&self) -> &Layout {
        // SAFETY: `ptr` is a live mapping of SIZE bytes holding a valid `Layout` (see `map`),
        // unmapped only in `drop`, after every borrow of `self` ended.
        #[allow(unsafe_code)]
        unsafe {
            self.ptr.as_ref()
        }
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, of SIZE bytes; no reference into it outlives
        // `self` (they all borrow `self`).
        #[allow(unsafe_code)]
        let _ = unsafe { nix::sys::mman::munmap(self.ptr.cast(), SIZE) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_board_created_is_seen_by_a_second_mapping_of_its_fd() {
        let board = Board::create().unwrap_or_else(|e| panic!("{e}"));
        let fd = board.fd().try_clone_to_owned().unwrap_or_else(|e| panic!("{e}"));
        let other = Board::open(fd).unwrap_or_else(|e| panic!("{e}"));
        let cell = board.cell(3).unwrap_or_else(|| panic!("no cell 3"));
        cell.reset(42);
        cell.pid.store(1234, Ordering::Relaxed);
        let id = cell.names.push("/bad", "handlers/bad_wsh.so");
        cell.slots[5].enter(id);
        let seen = other.cell(3).unwrap_or_else(|| panic!("no cell 3"));
        assert_eq!(seen.pid.load(Ordering::Relaxed), 1234);
        assert_eq!(seen.heartbeat_ms.load(Ordering::Relaxed), 42);
        assert_eq!(seen.busy_routes(), vec![("/bad".to_owned(), "handlers/bad_wsh.so".to_owned())]);
        assert_eq!(describe_routes(&seen.busy_routes()), "/bad (handlers/bad_wsh.so)");
        cell.slots[5].leave();
        assert!(seen.busy_routes().is_empty());
        assert!(other.cell(CAPACITY).is_none());
    }

    #[test]
    fn a_foreign_memfd_is_refused() {
        let fd = nix::sys::memfd::memfd_create(c"x", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(Board::open(fd).is_err_and(|e| e.contains("bytes")));
    }
}
