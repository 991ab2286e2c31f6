//! Plugins: discovery, loading and checking, the host side of the ABI, and the route table.
//! Hot reload, which uses all of these, is [`crate::reload`].
//!
//! This module owns the plugin ABI (`wshd_sdk::abi`): the rest of the host talks to a
//! plugin only through [`HandlerInstance`]'s safe methods (`handshake`, `start`), the
//! `RequestView` it lends them, and host enums (`HandshakeVerdict`).

pub(crate) mod blocking;
mod elf;
mod facade;
mod host;
mod loader;
mod registry;
mod request;
pub mod scan;

pub(crate) use facade::{Accepted, HandshakeVerdict, Rejected};
pub use loader::{HandlerInstance, LoadError, Plugin, content_hash, live_generations, load, load_bytes};
pub use registry::{LoadedHandler, Refusal, Route, RouteTable, RouteTarget};
pub(crate) use request::RequestView;
