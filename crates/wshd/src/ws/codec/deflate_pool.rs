//! Per-thread pools of zlib contexts for the directions that reset after every message
//! (`*_no_context_takeover`): such a context carries nothing from one message to the next,
//! so a connection borrows one when a message starts and gives it back, reset, when the
//! message ends. Between messages a connection owns no compression memory at all; a thread
//! keeps at most [`KEEP`] idle contexts of each kind (a compressor is ~260 KiB at window 15,
//! a decompressor ~40 KiB), so the pools cost a few MiB per runtime thread, not per
//! connection.
//!
//! A message whose fragments are compressed on different threads (a task moved between
//! them) is fine: the context travels with the connection until the message ends and is
//! returned to the pool of the thread that ended it.

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress};

/// Idle contexts kept per thread and kind.
const KEEP: usize = 4;

/// An idle compressor and the (level, window bits) it was made with.
type IdleCompressor = (u32, u8, Compress);

thread_local! {
    static COMPRESSORS: RefCell<Vec<IdleCompressor>> = const { RefCell::new(Vec::new()) };
    static DECOMPRESSORS: RefCell<Vec<Decompress>> = const { RefCell::new(Vec::new()) };
}

/// A reset compressor with this level and window: an idle one of this thread, or a new one.
pub(super) fn take_compressor(level: u32, window_bits: u8) -> Compress {
    let idle = COMPRESSORS.with(|pool| {
        let mut pool = pool.borrow_mut();
        let at = pool.iter().position(|(l, w, _)| (*l, *w) == (level, window_bits))?;
        Some(pool.swap_remove(at).2)
    });
    idle.unwrap_or_else(|| Compress::new_with_window_bits(Compression::new(level), false, window_bits))
}

/// Gives back a compressor taken with [`take_compressor`]; it must be reset (at a message
/// boundary). Dropped when this thread already keeps enough.
pub(super) fn give_compressor(level: u32, window_bits: u8, compressor: Compress) {
    COMPRESSORS.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < KEEP {
            pool.push((level, window_bits, compressor));
        }
    });
}

/// A reset decompressor with a 15-bit window (reads any window): an idle one of this thread,
/// or a new one.
pub(super) fn take_decompressor() -> Decompress {
    DECOMPRESSORS
        .with(|pool| pool.borrow_mut().pop())
        .unwrap_or_else(|| Decompress::new_with_window_bits(false, 15))
}

/// Gives back a decompressor taken with [`take_decompressor`]; it must be reset.
pub(super) fn give_decompressor(decompressor: Decompress) {
    DECOMPRESSORS.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < KEEP {
            pool.push(decompressor);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_reuses_what_it_was_given_and_keeps_a_bounded_number() {
        let c = take_compressor(6, 12);
        give_compressor(6, 12, c);
        assert_eq!(COMPRESSORS.with(|p| p.borrow().len()), 1);
        let _other = take_compressor(6, 15);
        assert_eq!(COMPRESSORS.with(|p| p.borrow().len()), 1, "another window: a new one");
        let _same = take_compressor(6, 12);
        assert_eq!(COMPRESSORS.with(|p| p.borrow().len()), 0, "the idle one was reused");
        for _ in 0..KEEP + 3 {
            give_decompressor(Decompress::new_with_window_bits(false, 15));
        }
        assert_eq!(DECOMPRESSORS.with(|p| p.borrow().len()), KEEP);
        let _d = take_decompressor();
        assert_eq!(DECOMPRESSORS.with(|p| p.borrow().len()), KEEP - 1);
    }
}
