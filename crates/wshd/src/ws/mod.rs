//! WebSocket sessions after the handshake: the codec, the transport seam, and the session
//! driver.

pub(crate) mod codec;
pub(crate) mod session;
pub(crate) mod transport;
