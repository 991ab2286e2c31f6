//! Entry points for coverage-guided fuzzing (`fuzz/`, see `docs/fuzzing.md`) and for the
//! replay of its corpora in `cargo test` (`crates/wshd/tests/fuzz_corpora.rs`).
//!
//! Each function takes arbitrary bytes, runs the real parser on them and asserts its
//! invariants: a panic is a finding. Nothing here is used by the server.

mod codec;
mod config;
mod http;

pub use self::codec::{frame_decoder, inflater};
pub use self::config::config;
pub use self::http::{forwarded, request_head};

/// Splits `data` into pieces whose lengths come from `seed`: 0 gives `data` whole, other
/// seeds pieces of 1 to `2^(seed % 8 + 1)` bytes in a pseudo-random order (the same for
/// the same seed), as a socket might deliver them.
fn chunks(seed: u8, data: &[u8]) -> Vec<&[u8]> {
    if seed == 0 {
        return vec![data];
    }
    let bound = 2usize << (seed % 8);
    let mut state = u32::from(seed).wrapping_mul(0x9e37_79b9) | 1;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        // xorshift32: cheap and deterministic.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (1 + state as usize % bound).min(rest.len());
        let (piece, tail) = rest.split_at(n);
        out.push(piece);
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::chunks;

    #[test]
    fn chunks_cover_the_input_in_order() {
        let data: Vec<u8> = (0..=255).collect();
        for seed in [0, 1, 7, 8, 200, 255] {
            let joined: Vec<u8> = chunks(seed, &data).concat();
            assert_eq!(joined, data, "seed {seed}");
        }
        assert_eq!(chunks(0, &data).len(), 1);
        assert!(chunks(1, &data).len() > 1);
    }
}
