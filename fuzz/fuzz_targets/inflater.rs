//! Fuzz target `inflater`: see `wshd::fuzz_api::inflater` and docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wshd::fuzz_api::inflater(data));
