//! Plugins: discovery, loading and checking, the host side of the ABI, the route table, and
//! hot reload.

mod elf;
mod host_vtable;
mod loader;
mod registry;
pub mod reload;
pub mod scan;
pub mod watch;

pub(crate) use host_vtable::{HandshakeAnswer, conn_for};
pub use loader::{HandlerInstance, LoadError, Plugin, content_hash, live_generations, load, load_bytes};
pub use registry::{LoadedHandler, Refusal, Route, RouteTable, RouteTarget};
pub use reload::{PassOutcome, Reloader};
