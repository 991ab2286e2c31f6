//! Fuzz target `request_head`: see `wshd::fuzz_api::request_head` and docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wshd::fuzz_api::request_head(data));
