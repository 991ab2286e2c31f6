//! The master's rooms relay: the authoritative table of which worker holds which member of
//! which channel, and the history of logged publishes in the order the master received
//! them. Each worker's control link hands it the worker's relay messages
//! ([`RoomHub::take`]); the hub forwards, as the same bytes (encoded once):
//!
//! - a join to every worker, its origin included (the others keep a replica of its members,
//!   so `presence` stays a local read; the origin learns the join is known everywhere), a
//!   leave to every other worker;
//! - a plain publish once to each other worker holding members of the channel; an ordered
//!   one (sent while the origin's earlier joins or publishes to the channel are on their
//!   way) to each worker holding members and to its origin;
//! - a logged publish to every worker, its origin included, after appending it to its own
//!   history: every worker appends them in the master's order, so their histories agree;
//! - a `send_to` to the worker whose node id the recipient's id carries (dropped, and
//!   counted, when no worker has that node id).
//!
//! A worker that goes away ([`RoomHub::gone`]) loses its members, and the others are told
//! they left. A worker that starts gets a snapshot first (every member as a join, the
//! history as logged publishes with their age), queued on its link before anything else.
//! Everything runs on the master's one runtime thread; the lock is never contended long.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::control::MasterRooms;
use super::fleet_metrics::FleetMetrics;
use crate::broker::{Inbound, Remote};
use crate::config::BrokerSettings;
use crate::rooms::{ChannelKey, ConnId, HistoryLimits, Record, Relay};

/// How often the hub drops expired history.
const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// How long a channel followed for a join (`Relay::Warm`) stays followed without a local
/// member (the join it was for never came: its connection closed meanwhile).
const WARM_KEPT: Duration = Duration::from_secs(5);

/// A member and the link of the worker holding it.
#[derive(Debug)]
struct Held {
    id: ConnId,
    record: Record,
    link: u64,
}

/// A logged publish in the master's history: when it came, its bounds, its message.
#[derive(Debug)]
struct Logged {
    at: Instant,
    limits: HistoryLimits,
    message: Relay,
}

/// What the hub's lock guards.
#[derive(Debug, Default)]
struct Hub {
    next_link: u64,
    /// Each worker's queue to its control link.
    links: HashMap<u64, mpsc::UnboundedSender<Bytes>>,
    /// Node id → link, for `send_to`.
    nodes: HashMap<u64, u64>,
    /// Each channel's members, in the order they joined.
    members: HashMap<ChannelKey, Vec<Held>>,
    /// Each channel's logged publishes, oldest first.
    history: HashMap<ChannelKey, VecDeque<Logged>>,
    /// Whether the broker to the other nodes is down (told to new workers in the snapshot).
    broker_down: bool,
    /// Channels followed for a `join_since` (`Relay::Warm`) before any local member.
    /// (When: a warmed channel no local member joined within [`WARM_KEPT`] is unfollowed.)
    warmed: HashMap<ChannelKey, Instant>,
    /// Channels whose history from the other nodes has come (`Relay::Followed`).
    followed: HashSet<ChannelKey>,
}

/// The master's rooms relay; see the module docs.
#[derive(Debug)]
pub(crate) struct RoomHub {
    hub: Mutex<Hub>,
    metrics: Arc<FleetMetrics>,
    /// The other nodes, with a broker (`[broker]`).
    remote: OnceLock<Arc<dyn Remote>>,
}

/// The link of the members of other nodes (known through the broker); workers' links are 1
/// and up.
const REMOTE: u64 = 0;

/// What forwarding one message did.
#[derive(Debug, Clone, Copy)]
struct Sent {
    /// Messages queued to workers.
    count: usize,
    /// A `send_to` for no known worker and no broker.
    undeliverable: bool,
}

impl RoomHub {
    /// An empty relay counting into `metrics`, with its history sweep running (call from the
    /// master's runtime).
    pub(crate) fn start(metrics: Arc<FleetMetrics>) -> Arc<RoomHub> {
        let hub = Arc::new(RoomHub { hub: Mutex::new(Hub::default()), metrics, remote: OnceLock::new() });
        let weak = Arc::downgrade(&hub);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_EVERY).await;
                let Some(hub) = weak.upgrade() else { return };
                let mut locked = hub.lock();
                locked.sweep(Instant::now());
                if let Some(remote) = hub.remote.get() {
                    locked.unfollow_idle(remote.as_ref(), Instant::now());
                }
            }
        });
        hub
    }

    fn lock(&self) -> MutexGuard<'_, Hub> {
        self.hub.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new worker's side of the relay, for its control link: the snapshot of every member
    /// and of the history is queued on it first.
    pub(crate) fn attach(self: &Arc<Self>) -> MasterRooms {
        let (to_worker, queue) = mpsc::unbounded_channel();
        let link = {
            let mut hub = self.lock();
            hub.sweep(Instant::now());
            let sent =
                hub.snapshot(&to_worker) + usize::from(to_worker.send(Relay::SnapshotEnd.encode()).is_ok());
            self.metrics.relay_forwarded(sent);
            hub.next_link += 1;
            let link = hub.next_link;
            hub.links.insert(link, to_worker);
            link
        };
        let (from, gone) = (Arc::clone(self), Arc::clone(self));
        MasterRooms {
            to_worker: queue,
            from_worker: Box::new(move |payload| from.take(link, payload)),
            gone: Box::new(move || gone.gone(link)),
        }
    }

    /// Takes a relay message from the worker of `link` and forwards it (module docs), to
    /// the other nodes too when there is a broker.
    pub(crate) fn take(&self, link: u64, payload: Bytes) {
        let message = match Relay::decode(payload.clone()) {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!("control channel from a worker: {e}");
                return;
            }
        };
        let mut hub = self.lock();
        let remote = self.remote.get();
        if let Some(remote) = remote {
            hub.before_local(remote.as_ref(), &message);
        }
        let sent = hub.forward_local(link, &message, &payload, remote.is_some());
        if let Some(remote) = remote {
            hub.after_local(remote.as_ref(), message);
        } else if sent.undeliverable {
            self.metrics.relay_undeliverable();
        }
        self.metrics.relay_forwarded(sent.count);
    }

    /// Takes a relay message from another node (through the broker): its members' joins
    /// and leaves go to every worker, its publishes to the workers holding members, its
    /// `send_to` to the worker of the recipient.
    pub(crate) fn take_remote(&self, message: Relay) {
        let payload = message.encode();
        let mut hub = self.lock();
        let sent = match message {
            Relay::Hello { .. } | Relay::SnapshotEnd => 0,
            Relay::Forget { channel } => {
                hub.history.remove(&channel);
                hub.followed.remove(&channel);
                hub.send_all(&payload, None)
            }
            Relay::BrokerState { up } => {
                hub.broker_down = !up;
                hub.send_all(&payload, None)
            }
            Relay::Followed { channel } => {
                hub.followed.insert(channel);
                hub.send_all(&payload, None)
            }
            Relay::Warm { .. } => 0,
            Relay::Join { channel, id, presence, will } => {
                hub.hold(channel, id, Record { presence, will }, REMOTE);
                hub.send_all(&payload, None)
            }
            Relay::Leave { channel, id, .. } => {
                hub.remove(&channel, id);
                hub.send_all(&payload, None)
            }
            Relay::Publish { channel, .. } | Relay::Ordered { channel, .. } => {
                hub.send_holders(&channel, &payload, None)
            }
            Relay::Logged { ref channel, limits, .. } => {
                let channel = channel.clone();
                hub.append(channel, Logged { at: Instant::now(), limits, message });
                hub.send_all(&payload, None)
            }
            Relay::SendTo { id, .. } => match hub.nodes.get(&id.node) {
                Some(link) => hub.send_to_link(*link, &payload),
                None => 0,
            },
        };
        self.metrics.relay_forwarded(sent);
    }

    /// Links this hub to the other nodes through `remote` (once; false if it was already).
    /// Until the broker says it is connected, publishes fail (`RoomError::Unavailable`).
    pub(crate) fn set_remote(&self, remote: Arc<dyn Remote>) -> bool {
        let mut hub = self.lock();
        if self.remote.set(remote).is_err() {
            return false;
        }
        hub.broker_down = true;
        let sent = hub.send_all(&Relay::BrokerState { up: false }.encode(), None);
        self.metrics.relay_forwarded(sent);
        true
    }

    /// Links this hub to the other nodes through the broker of `settings` (call from the
    /// runtime that is to run the broker).
    pub(crate) fn link_broker(self: &Arc<Self>, settings: &BrokerSettings) -> Result<(), String> {
        let hub = Arc::downgrade(self);
        let inbound: Inbound = Arc::new(move |message| {
            if let Some(hub) = hub.upgrade() {
                hub.take_remote(message);
            }
        });
        let remote = crate::broker::connect(settings, inbound)?;
        if !self.set_remote(remote) {
            return Err("the rooms hub already has a broker".to_owned());
        }
        Ok(())
    }

    /// A link for rooms in this very process (the single process of `workers = 0` with a
    /// broker): its id, and the queue of what the hub sends them (the snapshot first).
    pub(crate) fn attach_local(self: &Arc<Self>) -> (u64, mpsc::UnboundedReceiver<Bytes>) {
        let (to_rooms, queue) = mpsc::unbounded_channel();
        let mut hub = self.lock();
        let sent = hub.snapshot(&to_rooms) + usize::from(to_rooms.send(Relay::SnapshotEnd.encode()).is_ok());
        self.metrics.relay_forwarded(sent);
        hub.next_link += 1;
        let link = hub.next_link;
        hub.links.insert(link, to_rooms);
        (link, queue)
    }

    /// The worker of `link` has gone: its members leave (the others are told), its node id
    /// is forgotten.
    pub(crate) fn gone(&self, link: u64) {
        let mut hub = self.lock();
        hub.links.remove(&link);
        let mut processes = Vec::new();
        hub.nodes.retain(|node, l| {
            if *l == link {
                processes.push(*node);
            }
            *l != link
        });
        let mut leaves = Vec::new();
        hub.members.retain(|channel, members| {
            members.retain(|held| {
                let stays = held.link != link;
                if !stays {
                    leaves.push(Relay::Leave { channel: channel.clone(), id: held.id, farewell: true });
                }
                stays
            });
            !members.is_empty()
        });
        let sent: usize = leaves.iter().map(|leave| hub.send_all(&leave.encode(), None)).sum();
        self.metrics.relay_forwarded(sent);
        if !leaves.is_empty() {
            tracing::info!(members = leaves.len(), "rooms: a worker's members left with it");
        }
        if let Some(remote) = self.remote.get() {
            processes.into_iter().for_each(|node| remote.process(node, false));
            leaves.into_iter().for_each(|leave| hub.after_local(remote.as_ref(), leave));
        }
    }
}

impl Hub {
    /// Forwards a worker's message to this node's workers (module docs). `remote`: there
    /// is a broker (a `send_to` an unknown node goes there, not undeliverable).
    fn forward_local(&mut self, link: u64, message: &Relay, payload: &Bytes, remote: bool) -> Sent {
        let count = match message {
            Relay::SnapshotEnd
            | Relay::Forget { .. }
            | Relay::BrokerState { .. }
            | Relay::Followed { .. } => 0,
            // Without a broker to other nodes, this node's history is all there is.
            Relay::Warm { channel } if !remote || self.followed.contains(channel) => {
                self.send_to_link(link, &Relay::Followed { channel: channel.clone() }.encode())
            }
            Relay::Warm { .. } => 0,
            // With a broker, the other nodes' order is Redis's: applied when it comes back.
            Relay::Logged { .. } if remote => 0,
            Relay::Hello { node } => {
                self.nodes.insert(*node, link);
                0
            }
            Relay::Join { channel, id, presence, will } => {
                self.nodes.insert(id.node, link);
                self.hold(
                    channel.clone(),
                    *id,
                    Record { presence: presence.clone(), will: will.clone() },
                    link,
                );
                // Back to its origin too: the join is known everywhere once that comes.
                self.send_all(payload, None)
            }
            Relay::Leave { channel, id, .. } => {
                self.remove(channel, *id);
                self.send_all(payload, Some(link))
            }
            Relay::Publish { channel, .. } => self.send_holders(channel, payload, Some(link)),
            Relay::Ordered { channel, .. } => {
                let holders = self.send_holders(channel, payload, None);
                let holds = self.members.get(channel).is_some_and(|m| m.iter().any(|h| h.link == link));
                holders + if holds { 0 } else { self.send_to_link(link, payload) }
            }
            Relay::Logged { channel, limits, .. } => {
                let logged = Logged { at: Instant::now(), limits: *limits, message: message.clone() };
                self.append(channel.clone(), logged);
                self.send_all(payload, None)
            }
            Relay::SendTo { id, .. } => match self.nodes.get(&id.node).and_then(|l| self.links.get(l)) {
                Some(to) => usize::from(to.send(payload.clone()).is_ok()),
                None => return Sent { count: 0, undeliverable: !remote },
            },
        };
        Sent { count, undeliverable: false }
    }

    /// Before a worker's message is applied here: a first local member of a channel makes
    /// the node follow it.
    fn before_local(&mut self, remote: &dyn Remote, message: &Relay) {
        match message {
            Relay::Join { channel, .. } if !self.held_here(channel) && !self.warmed.contains_key(channel) => {
                remote.subscribe(channel);
            }
            Relay::Warm { channel }
                if !self.held_here(channel)
                    && !self.warmed.contains_key(channel)
                    && !self.followed.contains(channel) =>
            {
                self.warmed.insert(channel.clone(), Instant::now());
                remote.subscribe(channel);
            }
            _ => {}
        }
    }

    /// After a worker's message was applied here: what the other nodes need of it goes to
    /// `remote` (a `send_to` only when the recipient is not on this node), and a channel
    /// left without local members is no longer followed; its history is forgotten here and
    /// in every worker (logged messages said while it is not followed never reach this
    /// node, so what is kept would have a gap: `join_since` answers `false` instead).
    fn after_local(&mut self, remote: &dyn Remote, message: Relay) {
        match message {
            Relay::SnapshotEnd
            | Relay::Forget { .. }
            | Relay::BrokerState { .. }
            | Relay::Warm { .. }
            | Relay::Followed { .. } => {}
            Relay::Hello { node } => remote.process(node, true),
            Relay::SendTo { id, .. } if self.nodes.contains_key(&id.node) => {}
            Relay::Leave { ref channel, .. } => {
                let unfollow = !self.held_here(channel);
                let channel = channel.clone();
                remote.send(message);
                if unfollow {
                    remote.unsubscribe(&channel);
                    self.warmed.remove(&channel);
                    self.followed.remove(&channel);
                    self.history.remove(&channel);
                    self.send_all(&Relay::Forget { channel }.encode(), None);
                }
            }
            other => remote.send(other),
        }
    }

    /// Stops following the channels followed for a join that never came (see [`WARM_KEPT`]).
    fn unfollow_idle(&mut self, remote: &dyn Remote, now: Instant) {
        let idle: Vec<ChannelKey> = self
            .warmed
            .iter()
            .filter(|(channel, at)| {
                now.saturating_duration_since(**at) > WARM_KEPT && !self.held_here(channel)
            })
            .map(|(channel, _)| channel.clone())
            .collect();
        for channel in idle {
            remote.unsubscribe(&channel);
            self.warmed.remove(&channel);
            self.followed.remove(&channel);
            self.history.remove(&channel);
            self.send_all(&Relay::Forget { channel }.encode(), None);
        }
    }

    /// Whether a worker of this node holds a member of `channel`.
    fn held_here(&self, channel: &ChannelKey) -> bool {
        self.members.get(channel).is_some_and(|m| m.iter().any(|h| h.link != REMOTE))
    }

    /// Sends `payload` to every link but `except`; how many.
    fn send_all(&self, payload: &Bytes, except: Option<u64>) -> usize {
        let to = self.links.iter().filter(|(l, _)| Some(**l) != except);
        to.filter(|(_, tx)| tx.send(payload.clone()).is_ok()).count()
    }

    /// Sends `payload` to the link `link`; how many (0 or 1).
    fn send_to_link(&self, link: u64, payload: &Bytes) -> usize {
        self.links.get(&link).map_or(0, |tx| usize::from(tx.send(payload.clone()).is_ok()))
    }

    /// Sends `payload` once to each link but `except` holding members of `channel`; how many.
    fn send_holders(&self, channel: &ChannelKey, payload: &Bytes, except: Option<u64>) -> usize {
        let Some(members) = self.members.get(channel) else { return 0 };
        let mut links: Vec<u64> = members.iter().map(|h| h.link).filter(|l| Some(*l) != except).collect();
        links.sort_unstable();
        links.dedup();
        let to = links.iter().filter_map(|l| self.links.get(l));
        to.filter(|tx| tx.send(payload.clone()).is_ok()).count()
    }

    /// Adds `id` to `channel`'s members, held by `link` (or replaces its record).
    fn hold(&mut self, channel: ChannelKey, id: ConnId, record: Record, link: u64) {
        let members = self.members.entry(channel).or_default();
        match members.iter_mut().find(|h| h.id == id) {
            Some(held) => held.record = record,
            None => members.push(Held { id, record, link }),
        }
    }

    /// Takes `id` out of `channel`.
    fn remove(&mut self, channel: &ChannelKey, id: ConnId) {
        let Some(members) = self.members.get_mut(channel) else { return };
        members.retain(|h| h.id != id);
        if members.is_empty() {
            self.members.remove(channel);
        }
    }

    /// Appends a logged publish to `channel`'s history, within its bounds.
    fn append(&mut self, channel: ChannelKey, logged: Logged) {
        let limits = logged.limits;
        let history = self.history.entry(channel.clone()).or_default();
        history.push_back(logged);
        while history.len() > limits.max_messages {
            history.pop_front();
        }
        if history.is_empty() {
            self.history.remove(&channel);
        }
    }

    /// Drops the history older than its bounds at `now`.
    fn sweep(&mut self, now: Instant) {
        self.history.retain(|_, history| {
            while history.front().is_some_and(|l| now.saturating_duration_since(l.at) > l.limits.max_age) {
                history.pop_front();
            }
            !history.is_empty()
        });
    }

    /// Queues every member (as joins) and the history (as logged publishes with their age)
    /// on `to`; how many messages.
    fn snapshot(&self, to: &mpsc::UnboundedSender<Bytes>) -> usize {
        let mut sent = 0;
        if self.broker_down {
            sent += usize::from(to.send(Relay::BrokerState { up: false }.encode()).is_ok());
        }
        for (channel, members) in &self.members {
            for held in members {
                let Record { presence, will } = held.record.clone();
                let join = Relay::Join { channel: channel.clone(), id: held.id, presence, will };
                sent += usize::from(to.send(join.encode()).is_ok());
            }
        }
        for history in self.history.values() {
            for logged in history {
                let mut message = logged.message.clone();
                if let Relay::Logged { age, .. } = &mut message {
                    *age = logged.at.elapsed();
                }
                sent += usize::from(to.send(message.encode()).is_ok());
            }
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::transport::DataKind;

    fn channel() -> ChannelKey {
        ChannelKey::in_route("/chat", "lobby").unwrap_or_else(|e| panic!("{e}"))
    }

    fn id(node: u64, seq: u64) -> ConnId {
        ConnId { node, seq }
    }

    /// Everything queued on a worker's side so far, decoded.
    fn drain(rooms: &mut MasterRooms) -> Vec<Relay> {
        let mut out = Vec::new();
        while let Ok(payload) = rooms.to_worker.try_recv() {
            out.push(Relay::decode(payload).unwrap_or_else(|e| panic!("{e}")));
        }
        out
    }

    fn join(node: u64, seq: u64, who: &'static [u8]) -> Bytes {
        Relay::Join { channel: channel(), id: id(node, seq), presence: Bytes::from_static(who), will: None }
            .encode()
    }

    #[tokio::test]
    async fn publishes_go_once_to_each_holder_logged_ones_to_all_and_snapshots_replay_both() {
        let hub = RoomHub::start(Arc::new(FleetMetrics::default()));
        let (mut w1, mut w2, mut w3) = (hub.attach(), hub.attach(), hub.attach());
        (w1.from_worker)(Relay::Hello { node: 1 }.encode());
        (w1.from_worker)(join(1, 1, b"a"));
        (w2.from_worker)(join(2, 1, b"b"));
        (w2.from_worker)(join(2, 2, b"c"));
        assert_eq!(drain(&mut w1).len(), 4, "its (empty) snapshot's end, its join back, w2's two joins");
        assert_eq!(drain(&mut w2).len(), 4, "the end, w1's join, its two back");
        assert_eq!(drain(&mut w3).len(), 4, "the end, every join");
        let publish =
            Relay::Publish { channel: channel(), kind: DataKind::Text, data: Bytes::from_static(b"hi") };
        (w1.from_worker)(publish.encode());
        assert_eq!(drain(&mut w2), vec![publish.clone()], "once for its two members");
        assert!(drain(&mut w3).is_empty(), "no member there");
        assert!(drain(&mut w1).is_empty(), "the origin delivered already");
        let ordered =
            Relay::Ordered { channel: channel(), origin: 3, kind: DataKind::Text, data: Bytes::new() };
        (w3.from_worker)(ordered.encode());
        assert_eq!(drain(&mut w3), vec![ordered.clone()], "back to its origin, which holds no member");
        assert_eq!(drain(&mut w1), vec![ordered.clone()]);
        assert_eq!(drain(&mut w2), vec![ordered], "once for its two members");
        let limits = HistoryLimits { max_messages: 2, max_age: Duration::from_secs(60) };
        let logged = |n: &str| Relay::Logged {
            channel: channel(),
            origin: 2,
            msg_id: crate::rooms::MessageId::new(n).unwrap_or_else(|e| panic!("{e}")),
            limits,
            age: Duration::ZERO,
            kind: DataKind::Text,
            data: Bytes::from(n.to_owned()),
        };
        for n in ["1", "2", "3"] {
            (w2.from_worker)(logged(n).encode());
        }
        assert_eq!(drain(&mut w2).len(), 3, "the origin gets its logged messages back");
        assert_eq!(drain(&mut w3).len(), 3);
        let send_to = Relay::SendTo { id: id(1, 1), origin: 3, kind: DataKind::Text, data: Bytes::new() };
        (w3.from_worker)(send_to.encode());
        assert_eq!(drain(&mut w1).pop(), Some(send_to));
        let mut fresh = hub.attach();
        let snapshot = drain(&mut fresh);
        assert_eq!(snapshot.len(), 6, "three members, the two kept logged, the end: {snapshot:?}");
        assert_eq!(snapshot.last(), Some(&Relay::SnapshotEnd));
        assert!(matches!(&snapshot[3], Relay::Logged { msg_id, .. } if msg_id.as_str() == "2"));
        (w2.gone)();
        let leaves = drain(&mut w1);
        assert_eq!(leaves.len(), 2, "w2's members left: {leaves:?}");
        assert!(leaves.iter().all(|m| matches!(m, Relay::Leave { id, .. } if id.node == 2)));
    }

    /// A broker that records what the hub asks of it.
    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Remote for Recorder {
        fn subscribe(&self, channel: &ChannelKey) {
            self.record(format!("subscribe {}", channel.name()));
        }
        fn unsubscribe(&self, channel: &ChannelKey) {
            self.record(format!("unsubscribe {}", channel.name()));
        }
        fn process(&self, process: u64, alive: bool) {
            self.record(format!("process {process} {alive}"));
        }
        fn send(&self, message: Relay) {
            let what = match message {
                Relay::Join { id, .. } => format!("join {}", id.seq),
                Relay::Leave { id, .. } => format!("leave {}", id.seq),
                Relay::Publish { .. } => "publish".to_owned(),
                Relay::SendTo { id, .. } => format!("send_to {}", id.node),
                other => format!("{other:?}"),
            };
            self.record(what);
        }
    }

    impl Recorder {
        fn record(&self, line: String) {
            self.0.lock().unwrap_or_else(PoisonError::into_inner).push(line);
        }
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
        }
    }

    #[tokio::test]
    async fn a_node_follows_a_channel_once_sends_each_publish_once_and_relays_other_nodes() {
        let hub = RoomHub::start(Arc::new(FleetMetrics::default()));
        let recorder = Arc::new(Recorder::default());
        assert!(hub.set_remote(Arc::clone(&recorder) as Arc<dyn Remote>));
        let (mut w1, mut w2) = (hub.attach(), hub.attach());
        (w1.from_worker)(Relay::Hello { node: 1 }.encode());
        (w1.from_worker)(join(1, 1, b"a"));
        (w2.from_worker)(join(2, 1, b"b"));
        (w2.from_worker)(join(2, 2, b"c"));
        assert_eq!(recorder.take(), ["process 1 true", "subscribe lobby", "join 1", "join 1", "join 2"]);
        let publish =
            Relay::Publish { channel: channel(), kind: DataKind::Text, data: Bytes::from_static(b"hi") };
        (w1.from_worker)(publish.encode());
        assert_eq!(recorder.take(), ["publish"], "one broker message for three members");
        (w1.from_worker)(
            Relay::SendTo { id: id(9, 1), origin: 1, kind: DataKind::Text, data: Bytes::new() }.encode(),
        );
        (w1.from_worker)(
            Relay::SendTo { id: id(2, 1), origin: 1, kind: DataKind::Text, data: Bytes::new() }.encode(),
        );
        assert_eq!(recorder.take(), ["send_to 9"], "only the id of no local process goes out");
        drain(&mut w1);
        drain(&mut w2);
        hub.take_remote(Relay::Join {
            channel: channel(),
            id: id(9, 5),
            presence: Bytes::from_static(b"z"),
            will: None,
        });
        hub.take_remote(publish.clone());
        assert_eq!(drain(&mut w1).len(), 2, "the remote join and the publish");
        assert_eq!(drain(&mut w2).len(), 2);
        let snapshot = drain(&mut hub.attach());
        assert_eq!(snapshot.len(), 6, "the broker state, the remote member too: {snapshot:?}");
        assert_eq!(snapshot[0], Relay::BrokerState { up: false }, "no session said it is connected");
        for seq in [1, 2] {
            (w2.from_worker)(Relay::Leave { channel: channel(), id: id(2, seq), farewell: false }.encode());
        }
        (w1.gone)();
        assert_eq!(
            recorder.take(),
            ["leave 1", "leave 2", "process 1 false", "leave 1", "unsubscribe lobby"]
        );
    }

    #[tokio::test]
    async fn a_channel_followed_for_a_join_that_never_came_is_unfollowed() {
        let hub = RoomHub::start(Arc::new(FleetMetrics::default()));
        let recorder = Arc::new(Recorder::default());
        assert!(hub.set_remote(Arc::clone(&recorder) as Arc<dyn Remote>));
        let mut w1 = hub.attach();
        (w1.from_worker)(Relay::Warm { channel: channel() }.encode());
        (w1.from_worker)(Relay::Warm { channel: channel() }.encode());
        assert_eq!(recorder.take(), ["subscribe lobby"], "followed once, not answered before it loaded");
        hub.take_remote(Relay::Followed { channel: channel() });
        drain(&mut w1);
        (w1.from_worker)(Relay::Warm { channel: channel() }.encode());
        assert_eq!(drain(&mut w1), [Relay::Followed { channel: channel() }], "answered at once now");
        hub.lock().unfollow_idle(recorder.as_ref(), Instant::now());
        assert!(recorder.take().is_empty(), "still in its grace");
        hub.lock().unfollow_idle(recorder.as_ref(), Instant::now() + WARM_KEPT * 2);
        assert_eq!(recorder.take(), ["unsubscribe lobby"]);
        assert_eq!(drain(&mut w1), [Relay::Forget { channel: channel() }]);
    }
}
