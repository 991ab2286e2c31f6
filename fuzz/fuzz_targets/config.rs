//! Fuzz target `config`: see `wshd::fuzz_api::config` and docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wshd::fuzz_api::config(data));
