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
//! ```ignore
//! use wshd_sdk::{Config, Connection, Error, Handler, Message};
//!
//! struct Echo;
//!
//! impl Handler for Echo {
//!     fn new(_config: &Config) -> Result<Self, Error> {
//!         Ok(Echo)
//!     }
//!
//!     async fn transfer_data(&self, mut conn: Connection) {
//!         while let Some(message) = conn.recv().await {
//!             if conn.send(&message).await.is_err() {
//!                 break;
//!             }
//!         }
//!     }
//! }
//!
//! wshd_sdk::export_handler!(Echo);
//! ```
//!
//! In `Cargo.toml`: `[lib] crate-type = ["cdylib"]`, and keep the default `panic = "unwind"`
//! (a plugin built with `panic = "abort"` is refused, since its panics would kill the server).
//!
//! ## What a plugin must not do
//!
//! * Use tokio's runtime directly (`tokio::time`, `tokio::spawn`, tokio I/O): the plugin's
//!   copy of tokio has no runtime. Use [`time`], [`spawn`] and the [`log`] macros, which run
//!   on the host's runtime. `tokio::sync` and `futures` work.
//! * Start OS threads that outlive the handler: they would keep running after a hot reload
//!   unloads the library.
//! * Block in async code: it stalls every connection on that host thread.
//!
//! A panic in either hook is caught: `do_handshake` answers 500, `transfer_data` closes the
//! connection with 1011; the server and other connections carry on.

pub mod abi;
mod close_code;
mod config;
mod connection;
mod export;
mod handler;
mod request;
mod services;

pub use close_code::{CloseCode, InvalidCloseCode};
pub use config::Config;
pub use connection::{
    CloseReply, CloseStatus, Connection, ConnectionInfo, Event, Message, SendError, Sender,
};
pub use export::{Payload, Text};
pub use handler::{Accept, Error, Handler, Reject};
pub use request::{Header, Request};
pub use services::{log, spawn, time};
pub use toml;

/// The version of this SDK, recorded in every plugin.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Items the [`export_handler!`] macro expands to. Not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::SDK_VERSION;
    pub use crate::abi::{ABI_VERSION, LAYOUT_FINGERPRINT, PluginDescriptor, RStr};
    pub use crate::export::{abi_version, do_handshake, drop_instance, init, transfer_data};
}
