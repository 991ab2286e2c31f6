//! The seam between this process's rooms and the others': a [`Broker`] carries [`Relay`]
//! messages out (installed once, at a worker's start: the master's relay over the control
//! channel; a Redis broker later), and [`Rooms::apply`] takes in what it brings back.
//! Without a broker (`workers = 0`) nothing here runs.
//!
//! What goes out: every join and leave (so the others keep a replica of this process's
//! members, for `presence`; a join comes back too, to mark it known everywhere), every plain
//! publish (delivered here at once and sent on by the relay to the processes with members;
//! or, while one of this process's joins or publishes to the channel is on its way, an
//! `Ordered` publish the relay sends back to be delivered here too, see
//! [`Rooms::publish`]), every logged publish (not applied here: the relay orders them and
//! sends each to every process, this one too), and `send_to` an id of another process.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::channel::ChannelKey;
use super::history::Entry;
use super::id::{ConnId, node_id};
use super::wire::Relay;
use super::{Record, RoomError, Rooms, Tally, add_member, deliver, push_to, remove_member};
use crate::metrics::rooms::ROOMS;
use crate::ws::transport::{DataKind, server_message_frame};

/// Carries this process's [`Relay`] messages to the other processes' rooms. `send` must not
/// block (it runs under the callers' locks): queue and return.
pub(crate) trait Broker: Send + Sync + std::fmt::Debug {
    /// Sends `message` to the others.
    fn send(&self, message: Relay);
}

impl Rooms {
    /// Links these rooms to the other processes' through `broker` (once; a second call is
    /// refused: false), and introduces this process's node id to them.
    pub(crate) fn install_broker(&self, broker: Arc<dyn Broker>) -> bool {
        if self.broker.set(broker).is_err() {
            return false;
        }
        self.tell(|| Relay::Hello { node: node_id() });
        true
    }

    /// Sends the message `make` builds through the broker, if there is one.
    pub(super) fn tell(&self, make: impl FnOnce() -> Relay) {
        if let Some(broker) = self.broker.get() {
            ROOMS.relayed_out();
            broker.send(make());
        }
    }

    /// `send_to` an id that is not a connection of this process: forwarded when the id is
    /// another process's and there is a broker (whether it still exists is known there:
    /// `Ok` does not mean delivered), else [`RoomError::Gone`].
    pub(super) fn send_to_remote(&self, id: ConnId, kind: DataKind, data: &[u8]) -> Result<(), RoomError> {
        if id.node == node_id() || self.broker.get().is_none() {
            return Err(RoomError::Gone);
        }
        server_message_frame(kind, data).map_err(|_| RoomError::NotUtf8)?;
        let origin = node_id();
        self.tell(|| Relay::SendTo { id, origin, kind, data: Bytes::copy_from_slice(data) });
        Ok(())
    }

    /// Applies what another process's rooms said (through the broker): its members' joins
    /// and leaves to the replica, its publishes to this process's members.
    pub(crate) fn apply(&self, message: Relay) {
        ROOMS.relayed_in();
        match message {
            Relay::Hello { .. } | Relay::SnapshotEnd => {}
            Relay::BrokerState { up } => {
                self.remote_nodes.store(true, std::sync::atomic::Ordering::Release);
                self.broker_down.store(!up, std::sync::atomic::Ordering::Release);
            }
            Relay::Warm { .. } => {}
            Relay::Followed { channel } => self.warming.followed(channel),
            Relay::Join { channel, id, presence, will } if id.node != node_id() => {
                add_member(
                    self.channels_mut().entry(channel).or_default(),
                    id,
                    Record { presence, will },
                    None,
                );
            }
            // This process's own join, sent back once the others have it.
            Relay::Join { channel, .. } => {
                self.settle(&channel);
                self.settle_direct();
            }
            Relay::Leave { channel, id, farewell } if id.node != node_id() => {
                let gone = remove_member(&mut self.channels_mut(), &channel, id);
                if let Some(will) = gone.and_then(|member| member.will).filter(|_| farewell) {
                    self.deliver_here(&channel, will.kind, &will.data);
                }
            }
            Relay::Leave { .. } => {}
            Relay::Publish { channel, kind, data } => self.deliver_here(&channel, kind, &data),
            Relay::Forget { channel } => {
                self.warming.unfollowed(&channel);
                let mut channels = self.channels_mut();
                if let Some(entry) = channels.get_mut(&channel) {
                    entry.history.clear();
                    if entry.is_unused() {
                        channels.remove(&channel);
                    }
                }
            }
            Relay::Ordered { channel, origin, kind, data } => {
                self.deliver_here(&channel, kind, &data);
                if origin == node_id() {
                    self.settle(&channel);
                }
            }
            Relay::Logged { channel, origin, msg_id, limits, age, kind, data } => {
                let Ok(frame) = server_message_frame(kind, &data) else { return };
                let at = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
                self.append_and_deliver(&channel, Entry::at(msg_id, frame, data.len(), at), limits);
                if origin == node_id() {
                    self.settle(&channel);
                }
            }
            Relay::SendTo { id, origin, kind, data } => {
                if origin == node_id() {
                    self.settle_direct();
                }
                // Gone meanwhile: counted as such.
                if let Some(mailbox) = self.local_mailbox(id) {
                    let _ = push_to(&mailbox, kind, &data);
                }
            }
        }
    }

    /// Queues a relayed publish (or a will) for this process's members of `channel`.
    pub(super) fn deliver_here(&self, channel: &ChannelKey, kind: DataKind, data: &Bytes) {
        let Ok(frame) = server_message_frame(kind, data) else { return };
        let mut tally = Tally::default();
        if let Some(entry) = self.channels().get(channel) {
            deliver(&entry.members, &frame, data.len(), &mut tally);
        }
        tally.record();
    }
}
