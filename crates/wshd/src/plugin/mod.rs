//! Plugins: discovery, loading and checking, the host side of the ABI, and the route table.
//! Hot reload, which uses all of these, is [`crate::reload`].

mod elf;
mod host_vtable;
mod loader;
mod registry;
pub mod scan;

pub(crate) use host_vtable::{HandshakeAnswer, conn_for};
pub use loader::{HandlerInstance, LoadError, Plugin, content_hash, live_generations, load, load_bytes};
pub use registry::{LoadedHandler, Refusal, Route, RouteTable, RouteTarget};
