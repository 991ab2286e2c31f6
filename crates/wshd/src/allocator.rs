//! The memory allocator's one setting wshd changes: glibc's mmap threshold, fixed at
//! [`MMAP_THRESHOLD`].
//!
//! glibc serves an allocation at or above its threshold with its own `mmap`, returned to the
//! system when freed; below it, from an arena that keeps freed memory for reuse. The
//! threshold starts at 128 KiB but rises to the size of the largest such block freed: after
//! one hot reload has read a 6 MB plugin file and freed it, every later 6 MB read came from
//! an arena and stayed resident (`wshd-bench soak`, a reload every 2 s for 12 minutes:
//! RSS +7.5 MiB, still growing at +24.5 MiB/h; with the threshold fixed: flat, −0.8 MiB/h,
//! and 40 MiB less for two workers). The same rise kept the buffers of partial messages a
//! closed attacker held (the in-flight budget, 0018) resident after they were freed.
//! Setting the threshold turns the rise off (glibc's `mallopt(M_MMAP_THRESHOLD)`).
//!
//! The cost: a buffer of 128 KiB or more is a `mmap`/`munmap` pair (a few microseconds, on
//! top of the page faults a fresh buffer takes anyway); the echo hot path's buffers are far
//! smaller. Other C libraries (musl) do not have the setting; there this does nothing.

/// The fixed threshold: glibc's own starting value.
pub const MMAP_THRESHOLD: usize = 128 << 10;

/// Fixes the allocator's mmap threshold; call once, first thing in `main`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn fix_mmap_threshold() {
    // SAFETY: `mallopt` only changes the allocator's tuning parameters; it is called before
    // any other thread exists, and a refused value (return 0) leaves glibc's default.
    let _ = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) };
}

/// Fixes the allocator's mmap threshold (nothing to do outside glibc).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn fix_mmap_threshold() {}
