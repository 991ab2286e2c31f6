//! WebSocket sessions after the handshake.

pub(crate) mod session;
pub(crate) mod transport;
