//! WebSocket sessions after the handshake: admission and start-up, the codec, the transport
//! seam, the session driver, and the handlers built into the host.

pub(crate) mod builtin;
pub(crate) mod codec;
pub(crate) mod session;
pub(crate) mod start;
pub(crate) mod transport;
