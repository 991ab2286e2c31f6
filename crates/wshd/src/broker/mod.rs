//! The seam between a node's rooms hub and the other nodes (machines): a [`Remote`] carries
//! the hub's [`Relay`] messages to the other nodes and hands theirs back through an
//! [`Inbound`] callback. The hub is the master's `supervise::room_hub` (or the same hub run
//! in the single process of `workers = 0`); it subscribes once per channel for the whole
//! node, whatever the number of local members.
//!
//! Nothing here names Redis: [`connect`] picks the implementation from the URL (`redis`
//! only for now; a NATS one could follow). See `docs/decisions/0021-redis-broker.md`.

mod redis;

use std::sync::Arc;

use crate::config::BrokerSettings;
use crate::rooms::{ChannelKey, Relay};

/// What another node said, for this node's hub (called on the broker's task; must not block).
pub(crate) type Inbound = Arc<dyn Fn(Relay) + Send + Sync>;

/// This node's link to the other nodes. Every method queues and returns at once (the hub
/// calls them under its lock); the order of the calls is the order on the wire.
pub(crate) trait Remote: Send + Sync + std::fmt::Debug {
    /// This node has a first member of `channel`: receive the others' messages to it, and
    /// their members (handed in as joins).
    fn subscribe(&self, channel: &ChannelKey);
    /// This node has no member of `channel` left: stop receiving; its remote members are
    /// handed in as leaves.
    fn unsubscribe(&self, channel: &ChannelKey);
    /// A process of this node with node id `process` started (`true`) or ended: `send_to`
    /// its connections from other nodes reaches this node.
    fn process(&self, process: u64, alive: bool);
    /// Sends a join, leave, publish or `send_to` (an id of another node) to the others.
    fn send(&self, message: Relay);
}

/// Connects this node to the others as `settings` says, handing what they say to `inbound`.
/// Runs on the current tokio runtime; the connection is made (and remade) in the background.
pub(crate) fn connect(settings: &BrokerSettings, inbound: Inbound) -> Result<Arc<dyn Remote>, String> {
    redis::RedisRemote::start(settings, inbound).map(|r| Arc::new(r) as Arc<dyn Remote>)
}
