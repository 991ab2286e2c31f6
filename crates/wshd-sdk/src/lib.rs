//! # wshd-sdk: write WebSocket handlers for wshd
//!
//! A handler is a `cdylib` crate whose library file ends in `_wsh` (`echo_wsh` builds
//! `libecho_wsh.so`). Drop it into wshd's handler directory and it serves a WebSocket
//! endpoint whose path is the file's name without `lib`, `_wsh` and the extension:
//! `<dir>/chat/libroom_wsh.so` serves `/chat/room`. Replacing the file hot-reloads it.
//!
//! It implements mod_pywebsocket's two hooks:
//!
//! * [`Handler::do_handshake`] inspects the request (origin, subprotocols, headers, cookies)
//!   and accepts or rejects it;
//! * [`Handler::transfer_data`] is the conversation: [`Connection::recv`], `send_*`,
//!   [`Connection::ping`], [`Connection::close`]. Returning closes with 1000.
//!
//! ```
//! use wshd_sdk::{Accept, CloseCode, Config, Connection, Error, Handler, Reject, Request};
//!
//! /// Echoes every message; closes with 4000 on "bye".
//! struct Echo {
//!     origin: Option<String>,
//! }
//!
//! impl Handler for Echo {
//!     fn new(config: &Config) -> Result<Self, Error> {
//!         Ok(Echo { origin: config.str("origin").map(str::to_owned) })
//!     }
//!
//!     fn do_handshake(&self, request: &Request<'_>) -> Result<Accept, Reject> {
//!         match (&self.origin, request.origin()) {
//!             (Some(allowed), Some(origin)) if origin != allowed => Err(Reject::forbidden()),
//!             _ => Ok(Accept::new()),
//!         }
//!     }
//!
//!     async fn transfer_data(&self, mut conn: Connection) {
//!         while let Some(message) = conn.recv().await {
//!             if message.as_text() == Some("bye") {
//!                 let bye = CloseCode::new(4000).unwrap_or(CloseCode::NORMAL);
//!                 let _ = conn.close(bye, "bye").await;
//!                 return;
//!             }
//!             if conn.send(&message).await.is_err() {
//!                 return;
//!             }
//!         }
//!     }
//! }
//!
//! wshd_sdk::export_handler!(Echo);
//! # fn main() {}
//! ```
//!
//! In `Cargo.toml`: `[lib] crate-type = ["cdylib"]`, and keep the default `panic = "unwind"`
//! (a plugin built with `panic = "abort"` is refused, since its panics would kill the server).
//!
//! ## What a plugin must not do
//!
//! * Use tokio's runtime directly (`tokio::time`, `tokio::spawn`, tokio I/O) outside
//!   `io::run` (feature `io`): the plugin's copy of tokio has no runtime on host threads. Use [`time`], [`spawn`] and the [`log`] macros, which run
//!   on the host's runtime. `tokio::sync` and `futures` work.
//! * Start OS threads that outlive the handler: they would keep running after a hot reload
//!   unloads the library.
//! * Block in async code: it stalls every connection on that host thread. Run blocking work
//!   with [`blocking`] instead.
//!
//! ## Async I/O with tokio
//!
//! With the cargo feature `io`, `wshd_sdk::io::run(future)` runs a future on a small tokio
//! runtime owned by the plugin generation, so `tokio::net`, `tokio::time` and crates built on
//! them work inside it (see the `io` module for an example and its limits).
//!
//! ## Blocking work
//!
//! [`blocking`] runs a closure on the host's bounded blocking pool (`[server]
//! blocking_threads`, 16 by default; more jobs wait their turn) and resolves to its result;
//! a panic in it is an [`BlockingError::Panicked`], never a crash:
//!
//! ```no_run
//! use wshd_sdk::{Config, Connection, Error, Handler};
//!
//! /// Answers each message with the size of the file it names.
//! struct FileSize;
//!
//! impl Handler for FileSize {
//!     fn new(_config: &Config) -> Result<Self, Error> {
//!         Ok(FileSize)
//!     }
//!
//!     async fn transfer_data(&self, mut conn: Connection) {
//!         while let Some(message) = conn.recv().await {
//!             let path = message.as_text().unwrap_or_default().to_owned();
//!             let reply = match wshd_sdk::blocking(move || std::fs::metadata(path)).await {
//!                 Ok(Ok(meta)) => meta.len().to_string(),
//!                 Ok(Err(e)) => format!("error: {e}"),
//!                 Err(e) => format!("error: {e}"),
//!             };
//!             if conn.send_text(&reply).await.is_err() {
//!                 return;
//!             }
//!         }
//!     }
//! }
//!
//! wshd_sdk::export_handler!(FileSize);
//! # fn main() {}
//! ```
//!
//! A panic in either hook is caught: `do_handshake` answers 500, `transfer_data` closes the
//! connection with 1011; the server and other connections carry on.

#[doc(hidden)]
pub mod abi;
mod blocking;
mod close_code;
mod config;
mod connection;
mod export;
mod handler;
#[cfg(feature = "io")]
pub mod io;
mod lent;
mod message;
mod oneshot;
mod request;
pub mod rooms;
mod services;

pub use blocking::{Blocking, BlockingError, blocking};
pub use close_code::{CloseCode, InvalidCloseCode};
pub use config::Config;
pub use connection::{CloseReply, CloseStatus, Connection, ConnectionInfo, SendError, Sender};
pub use handler::{Accept, Error, Handler, Reject};
pub use message::{Event, Message, MessageKind, Payload, Text};
pub use request::{Header, Request};
pub use rooms::{ConnId, Member, RoomError, Rooms, Will};
pub use services::{log, spawn, time};

/// The README's Rust examples ("Your first handler" and the room), compiled as doctests so
/// that they keep building against this SDK.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeExamples;

/// The version of this SDK, recorded in every plugin.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Items the [`export_handler!`] macro expands to. Not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::SDK_VERSION;
    pub use crate::abi::{ABI_VERSION, LAYOUT_FINGERPRINT, PluginDescriptor, RStr};
    pub use crate::export::{abi_version, do_handshake, drop_instance, init, transfer_data};
}
