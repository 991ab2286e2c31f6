//! The worker's side of the rooms relay: a [`Broker`] that queues this worker's relay
//! messages for its control channel to the master, and the function that applies the
//! master's (the other workers' joins, leaves and publishes) to this process's rooms.
//! Installed at the worker's start, before it serves; see `docs/decisions/0015-rooms-across-workers.md`.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::control::WorkerRooms;
use crate::rooms::{self, Broker, Relay};

/// Relay messages for the master, queued for the control channel's task (never blocks).
#[derive(Debug)]
struct ControlBroker {
    to_master: mpsc::UnboundedSender<Bytes>,
}

impl Broker for ControlBroker {
    fn send(&self, message: Relay) {
        // Closed: the master is gone and this worker is shutting down.
        let _ = self.to_master.send(message.encode());
    }
}

/// Links this process's rooms to the master's relay: what the control channel carries, and
/// a receiver that completes once the master's snapshot (queued first on the link) has
/// been applied.
pub(crate) fn install() -> (WorkerRooms, oneshot::Receiver<()>) {
    let (to_master, out) = mpsc::unbounded_channel();
    if !rooms::global().install_broker(Arc::new(ControlBroker { to_master })) {
        tracing::warn!("the rooms already had a broker; the master's relay is not used");
    }
    let (snapshot_done, snapshot) = oneshot::channel();
    let snapshot_done = Mutex::new(Some(snapshot_done));
    let apply = Box::new(move |payload: Bytes| match Relay::decode(payload) {
        Ok(Relay::SnapshotEnd) => {
            if let Some(done) = snapshot_done.lock().unwrap_or_else(PoisonError::into_inner).take() {
                let _ = done.send(());
            }
        }
        Ok(message) => rooms::global().apply(message),
        Err(e) => tracing::warn!("control channel from the master: {e}"),
    });
    (WorkerRooms { out, apply }, snapshot)
}
