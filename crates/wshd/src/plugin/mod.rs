//! Plugins: discovery, loading and checking, the host side of the ABI, and the route table.

mod host_vtable;
mod loader;
mod registry;
pub mod scan;

pub(crate) use host_vtable::{HandshakeAnswer, conn_for};
pub use loader::{HandlerInstance, LoadError, Plugin, load};
pub use registry::{LoadedHandler, Refusal, Registry, Route, RouteTable};
