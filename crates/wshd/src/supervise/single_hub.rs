//! The node hub of the single process of `workers = 0` when a broker links it to other
//! nodes: the master's [`RoomHub`] run in this process, with this process's rooms attached
//! as its one link (their broker hands messages to the hub; the hub's queue is applied to
//! them), so one node behaves the same whatever its number of processes. Without a broker
//! nothing of this runs.

use std::sync::Arc;

use bytes::Bytes;

use super::fleet_metrics::FleetMetrics;
use super::room_hub::RoomHub;
use crate::config::BrokerSettings;
use crate::rooms::{self, Broker, Relay};

/// This process's rooms' broker: straight into the hub.
#[derive(Debug)]
struct ToHub {
    hub: Arc<RoomHub>,
    link: u64,
}

impl Broker for ToHub {
    fn send(&self, message: Relay) {
        self.hub.take(self.link, message.encode());
    }
}

/// Starts the hub linked to the other nodes through `settings`' broker and attaches this
/// process's rooms to it (call on the serving runtime, before serving).
pub(crate) fn start(settings: &BrokerSettings) -> Result<(), String> {
    let hub = RoomHub::start(Arc::new(FleetMetrics::default()));
    hub.link_broker(settings)?;
    let (link, mut queue) = hub.attach_local();
    tokio::spawn(async move {
        while let Some(payload) = queue.recv().await {
            apply(payload);
        }
    });
    if !rooms::global().install_broker(Arc::new(ToHub { hub, link })) {
        return Err("the rooms already had a broker".to_owned());
    }
    Ok(())
}

/// Applies one of the hub's messages to this process's rooms.
fn apply(payload: Bytes) {
    match Relay::decode(payload) {
        Ok(Relay::SnapshotEnd) => {}
        Ok(message) => rooms::global().apply(message),
        Err(e) => tracing::warn!("rooms hub: {e}"),
    }
}
