//! The configuration loader.

/// The name the fuzzed text is loaded under.
const FILE: &str = "fuzz.toml";

/// Loads `data` as `server.toml` text: it either loads or gives an error that names the
/// file and, when it has one, a line and column inside the text.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Err(e) = crate::config::parse_str(text, FILE) else { return };
    assert_eq!(e.file, FILE, "{e}");
    assert!(!e.message.is_empty(), "{e:?}");
    let lines = text.split('\n').count();
    assert!(e.line <= lines, "line {} of a {lines}-line text: {e}", e.line);
    assert!(e.line == 0 || e.column > 0, "line without a column: {e}");
    assert!(e.to_string().starts_with(FILE), "{e}");
}
