//! Fuzz target `forwarded`: see `wshd::fuzz_api::forwarded` and docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wshd::fuzz_api::forwarded(data));
