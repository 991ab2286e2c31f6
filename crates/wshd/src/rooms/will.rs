//! [`Will`]: what the host says for a member that goes without leaving.
//!
//! A handler may give a member a will when it joins (MQTT's "last will"): a message the host
//! queues for the channel's other members when the member stops being one without calling
//! `leave`: its connection ended with the membership still in place, its worker process
//! died, or its node died (seen through the node's expired liveness key in Redis). Every
//! process delivers it to its own members of the channel when it removes the member from
//! its view, so each remaining member gets it once. A `leave` says nothing: the handler that
//! leaves announces what it wants itself.

use bytes::Bytes;

use crate::ws::transport::DataKind;

/// The longest will, in bytes (like a presence record: it is kept by every process).
pub(crate) const MAX_WILL_BYTES: usize = 4096;

/// A member's will: one message, text or binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Will {
    /// Text or binary.
    pub(crate) kind: DataKind,
    /// The payload.
    pub(crate) data: Bytes,
}
