//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) through the same
//! `wshd::fuzz_api` functions the libFuzzer targets call, so stable CI re-checks every seed
//! and every past finding without libFuzzer (see docs/fuzzing.md).

use std::path::{Path, PathBuf};

/// The corpus directory of `target`.
fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target)
}

/// Runs `check` on every file of `target`'s corpus; fails when the corpus is missing or
/// empty, so a moved directory cannot make this pass silently.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = corpus(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a readable corpus directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // Name the input in the failure: the panic itself comes from the invariant.
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "fuzz input {} fails", path.display());
    }
    eprintln!("{target}: {} inputs replayed", files.len());
}

#[test]
fn request_head_corpus() {
    replay("request_head", wshd::fuzz_api::request_head);
}

#[test]
fn frame_decoder_corpus() {
    replay("frame_decoder", wshd::fuzz_api::frame_decoder);
}

#[test]
fn inflater_corpus() {
    replay("inflater", wshd::fuzz_api::inflater);
}

#[test]
fn config_corpus() {
    replay("config", wshd::fuzz_api::config);
}

#[test]
fn forwarded_corpus() {
    replay("forwarded", wshd::fuzz_api::forwarded);
}
