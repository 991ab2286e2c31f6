//! Client-to-server masking (RFC 6455 §5.3), eight bytes at a time, and the client's
//! masking keys.

use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh masking key for one client frame: unpredictable, as §10.3 requires, from the
/// operating system's random source.
pub(crate) fn new_key() -> [u8; 4] {
    let mut key = [0u8; 4];
    match getrandom::fill(&mut key) {
        Ok(()) => key,
        Err(_) => fallback_key(),
    }
}

/// Only if the OS random source fails: SipHash, keyed randomly once per process, over a
/// counter (still unpredictable to the peer).
fn fallback_key() -> [u8; 4] {
    static STATE: OnceLock<RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let hash = STATE.get_or_init(RandomState::new).hash_one(n);
    let bytes = hash.to_ne_bytes();
    [bytes[0], bytes[1], bytes[2], bytes[3]]
}

/// XORs `buf` with `mask`, where `buf` starts `offset` bytes into the masked payload.
pub(crate) fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let shift = offset % 4;
    let m = [mask[shift], mask[(shift + 1) % 4], mask[(shift + 2) % 4], mask[(shift + 3) % 4]];
    let wide = u64::from_ne_bytes([m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]]);
    let (chunks, rest) = buf.as_chunks_mut::<8>();
    for chunk in chunks {
        *chunk = (u64::from_ne_bytes(*chunk) ^ wide).to_ne_bytes();
    }
    for (i, b) in rest.iter_mut().enumerate() {
        *b ^= m[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &mut [u8], mask: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= mask[(offset + i) % 4];
        }
    }

    #[test]
    fn matches_the_bytewise_definition_at_every_offset_and_length() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        for offset in 0..8 {
            for len in 0..40 {
                let data: Vec<u8> = (0..len as u8).collect();
                let (mut fast, mut slow) = (data.clone(), data);
                apply_mask(&mut fast, mask, offset);
                naive(&mut slow, mask, offset);
                assert_eq!(fast, slow, "offset {offset} len {len}");
            }
        }
    }

    #[test]
    fn keys_differ_from_frame_to_frame() {
        let keys: std::collections::HashSet<[u8; 4]> = (0..64).map(|_| new_key()).collect();
        assert!(keys.len() > 60, "{keys:?}");
        let fallback: std::collections::HashSet<[u8; 4]> = (0..64).map(|_| fallback_key()).collect();
        assert!(fallback.len() > 60, "{fallback:?}");
    }
}
