//! Hot reload, in one place: the handler-directory watch (`watch.rs`), the decisions of a
//! pass — which files are kept, read, loaded, refused or removed — (`decide.rs`, free of
//! I/O), the pass that carries them out and builds the route table (`pass.rs`, the
//! [`Reloader`]), SIGHUP and the configuration re-read (`sighup.rs`), and the task that ties
//! them together and publishes each new snapshot (`task.rs`).
//!
//! Everything that blocks — scanning the directory, reading and hashing files, `dlopen` and
//! handler `init`, re-reading the configuration and the TLS files, (re)starting the watch —
//! runs on tokio's blocking pool, never on a runtime worker. See
//! `docs/decisions/0007-state-snapshot-and-reload.md`.

mod decide;
mod pass;
mod sighup;
mod task;
mod watch;

pub use pass::{PassOutcome, Reloader};
pub use sighup::{ConfigSource, hangup};
pub(crate) use task::{run, start};
