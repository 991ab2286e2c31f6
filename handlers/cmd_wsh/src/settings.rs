//! The route's `[route.config]`: which program to run and the limits around it.

use wshd_sdk::{Config, Error};

/// Children at once per route instance (per worker process) when `max_children` is absent.
const DEFAULT_MAX_CHILDREN: usize = 64;
/// The longest stdout line sent as one message; longer lines go out in pieces of this size.
const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;
/// The keys a route may set.
const KEYS: &[&str] = &["program", "args", "env", "max_children", "max_line_bytes"];

/// What a route runs and how.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The program (a path, or a name looked up in `PATH`); `None`: the route answers 404.
    pub(crate) program: Option<String>,
    /// Its arguments (argv\[1..\]; never through a shell).
    pub(crate) args: Vec<String>,
    /// Variables of the server's environment passed on (besides `PATH`).
    pub(crate) pass_env: Vec<String>,
    /// Children at once; past it the handshake answers 503.
    pub(crate) max_children: usize,
    /// The longest stdout line sent as one message.
    pub(crate) max_line_bytes: usize,
}

impl Settings {
    /// Reads and checks the table; an unknown key or a wrong type is an error naming it.
    pub(crate) fn from_config(config: &Config) -> Result<Settings, Error> {
        if let Some(key) = config.keys().find(|k| !KEYS.contains(k)) {
            return Err(format!("unknown key `{key}` (known: {})", KEYS.join(", ")).into());
        }
        let program = match config.contains("program") {
            true => Some(config.str("program").ok_or("`program` must be a string")?.to_owned()),
            false => None,
        };
        if program.as_deref() == Some("") {
            return Err("`program` is empty".into());
        }
        Ok(Settings {
            program,
            args: string_list(config, "args")?,
            pass_env: string_list(config, "env")?,
            max_children: positive(config, "max_children", DEFAULT_MAX_CHILDREN)?,
            max_line_bytes: positive(config, "max_line_bytes", DEFAULT_MAX_LINE_BYTES)?,
        })
    }
}

/// An optional array of strings.
fn string_list(config: &Config, key: &str) -> Result<Vec<String>, Error> {
    if !config.contains(key) {
        return Ok(Vec::new());
    }
    let list = config.str_list(key).ok_or_else(|| format!("`{key}` must be an array of strings"))?;
    Ok(list.into_iter().map(str::to_owned).collect())
}

/// An optional integer ≥ 1.
fn positive(config: &Config, key: &str, default: usize) -> Result<usize, Error> {
    if !config.contains(key) {
        return Ok(default);
    }
    config
        .int(key)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n >= 1)
        .ok_or_else(|| format!("`{key}` must be an integer of at least 1").into())
}
