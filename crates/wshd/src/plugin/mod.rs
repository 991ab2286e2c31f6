//! Plugins: discovery, loading and checking, the host side of the ABI, the route table, and
//! hot reload.
//!
//! This module owns the plugin ABI (`wshd_sdk::abi`): the rest of the host talks to a
//! plugin only through [`HandlerInstance`]'s safe methods (`handshake`, `start`), the
//! `RequestView` it lends them, and host enums (`HandshakeVerdict`).

mod elf;
mod facade;
mod host;
mod loader;
mod registry;
pub mod reload;
mod request;
pub mod scan;
pub mod watch;

pub(crate) use facade::{Accepted, HandshakeVerdict, Rejected};
pub use loader::{HandlerInstance, LoadError, Plugin, content_hash, live_generations, load, load_bytes};
pub use registry::{LoadedHandler, Refusal, Registry, Route, RouteTable, RouteTarget};
pub use reload::{PassOutcome, Reloader};
pub(crate) use request::RequestView;
