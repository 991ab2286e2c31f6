//! Fuzz target `frame_decoder`: see `wshd::fuzz_api::frame_decoder` and docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wshd::fuzz_api::frame_decoder(data));
