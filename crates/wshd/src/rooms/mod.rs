//! Rooms owned by the host: channels that connections join with a presence record, and
//! messages published to every member (or sent to one connection by id) from any task.
//!
//! Channels belong to the process, not to a handler's plugin generation: a hot reload swaps
//! the handler, and members served by the old and the new generation stay in the same
//! channels. A channel's key carries its namespace ([`Scope`]): the route's own by default.
//!
//! Delivery: a publish builds its frame once (header and payload in one shared `Bytes`;
//! server frames are unmasked, so the same bytes serve every member) and pushes it to each
//! member's bounded [`Mailbox`], in member order, under the registry's read lock; a
//! publisher's messages to a channel therefore reach each member in the order published.
//! The member's session moves them into its write queue between the handler's messages.
//! A member whose connection resets its compressor after every message (permessage-deflate
//! with `server_no_context_takeover`, the default answer) gets the message compressed
//! instead, compressed once for all such members ([`framed`]); others get the plain frame:
//! see `docs/decisions/0014-rooms.md`.
//!
//! The connection's end takes it out of every channel ([`Member`]'s drop), without the
//! handler. A channel also keeps the messages published with an id (`history`), bounded by
//! count and age, for `join_since`.
//!
//! With several worker processes, each has its own registry linked to the others through a
//! [`Broker`] installed at the worker's start (the master's relay): joins, leaves and
//! publishes go out, and [`Rooms::apply`] keeps a replica of the other processes' members
//! (so presence stays a local read, lagging by one relay hop) and delivers their publishes
//! to local members; logged publishes are ordered by the relay. See
//! `docs/decisions/0015-rooms-across-workers.md`. Without a broker (`workers = 0`) nothing
//! of that runs.
//!
//! The modules: `id` (connection ids), `channel` (keys, bounds, errors), `member` (one
//! connection's memberships), `history` (logged messages), `broker` (the seam to the other
//! processes), `wire` (the relay messages' encoding), `warm` (a join waiting for a channel's
//! members and history from other nodes, with a broker to them).

mod broker;
mod channel;
mod framed;
mod history;
mod id;
mod member;
mod warm;
mod will;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;

pub(crate) use self::broker::Broker;
pub(crate) use self::channel::{ChannelKey, RoomError, Scope};
#[cfg(test)]
use self::channel::{MAX_CHANNEL_NAME, MAX_PRESENCE};
use self::framed::Framed;
use self::history::{Entry, History};
pub(crate) use self::history::{HistoryLimits, MessageId};
#[cfg(test)]
use self::id::BadConnId;
pub(crate) use self::id::ConnId;
use self::id::node_id;
pub(crate) use self::member::Member;
pub(crate) use self::will::{MAX_WILL_BYTES, Will};
pub(crate) use self::wire::{Relay, get_will, put_will};
use crate::metrics::rooms::{DropReason, ROOMS};
use crate::ws::session::{ConnShared, Mailbox, MailboxLimits, Overflow, Pushed};
use crate::ws::transport::{DataKind, server_message_frame};

/// A member's queue by default: 1 MiB or 1,024 messages, then closed with 1008.
pub(crate) const DEFAULT_LIMITS: MailboxLimits =
    MailboxLimits { max_bytes: 1 << 20, max_frames: 1024, overflow: Overflow::Close };

/// One member of a channel: a connection of this process (with its mailbox), or of another
/// process (`None`: known from the broker, for presence).
#[derive(Debug)]
struct Subscriber {
    id: ConnId,
    presence: Bytes,
    /// What the others get if it goes without leaving (see [`Will`]).
    will: Option<Will>,
    mailbox: Option<Arc<Mailbox>>,
}

impl Subscriber {
    /// Whether it counts in presence: a remote member, or a local one still open.
    fn is_present(&self) -> bool {
        self.mailbox.as_ref().is_none_or(|m| !m.is_closed())
    }
}

/// A channel: its members, in the order they joined, and its logged messages.
#[derive(Debug, Default)]
struct Channel {
    members: Vec<Subscriber>,
    history: History,
    /// With a broker: this process's joins and publishes to the channel that the relay
    /// has not sent back yet. While any is on its way, a plain publish goes through the
    /// relay too (see [`Rooms::publish`]).
    in_flight: AtomicU32,
}

impl Channel {
    /// Nothing to keep: no member, no history, nothing on its way (the channel is removed).
    fn is_unused(&self) -> bool {
        self.members.is_empty() && self.history.is_empty() && self.in_flight.load(Ordering::Acquire) == 0
    }

    /// Counts one more item on its way through the relay if one already is; whether so.
    fn queue_behind_in_flight(&self) -> bool {
        let more = |n: u32| if n > 0 { n.checked_add(1) } else { None };
        self.in_flight.fetch_update(Ordering::AcqRel, Ordering::Acquire, more).is_ok()
    }
}

type Channels = HashMap<ChannelKey, Channel>;

/// How often the sweep frees expired histories.
const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// The channels of a process, and its connections that have an id.
#[derive(Debug)]
pub(crate) struct Rooms {
    /// The channels with members or history (a channel with neither is removed).
    channels: RwLock<Channels>,
    /// Connections by id, for `send_to`.
    conns: RwLock<HashMap<ConnId, Weak<Mailbox>>>,
    /// Each member's queue bounds and policy (the overflow policy is the route's).
    limits: MailboxLimits,
    /// Set once the sweep thread runs (started by the first logged message).
    sweeping: OnceLock<()>,
    /// The link to the other processes' rooms, when there are others (worker processes).
    broker: OnceLock<Arc<dyn Broker>>,
    /// Set while the node's broker to the other nodes is down (`Relay::BrokerState`):
    /// publishes fail with [`RoomError::Unavailable`].
    broker_down: std::sync::atomic::AtomicBool,
    /// Set once the node's hub said it has a broker to other nodes (a `BrokerState`): a
    /// `join_since` this process cannot answer then waits for the channel's history.
    remote_nodes: std::sync::atomic::AtomicBool,
    /// The channels the node's hub follows, for `join_since` (see `warm`).
    warming: warm::Warming,
    /// With a broker: this process's joins, and its `send_to`s routed through the relay,
    /// that the relay has not sent back yet. While any is on its way, a `send_to` a
    /// connection of this process goes through the relay too, behind them: so a message a
    /// handler sends to its own connection after `join_since` comes after every logged
    /// message the relay ordered before the join (see [`Rooms::send_to`]).
    direct_in_flight: AtomicU32,
}

/// The process's rooms.
pub(crate) fn global() -> &'static Arc<Rooms> {
    static ROOMS_OF_PROCESS: OnceLock<Arc<Rooms>> = OnceLock::new();
    ROOMS_OF_PROCESS.get_or_init(|| Arc::new(Rooms::new(DEFAULT_LIMITS)))
}

/// The room member of the connection `conn` in the process's rooms (made on first use:
/// the connection gets its id and mailbox then, with its route's overflow policy).
pub(crate) fn member_of(conn: &ConnShared) -> Result<Arc<Member>, RoomError> {
    let rooms = global();
    let overflow = if conn.room_settings().drop_oldest { Overflow::DropOldest } else { Overflow::Close };
    let limits = MailboxLimits { overflow, ..rooms.limits };
    conn.room_member(limits, |mailbox| rooms.member(mailbox)).map_err(|_| RoomError::Gone)
}

/// `conn`'s rooms side if it has one, also after its TCP connection closed (for leaving).
pub(crate) fn existing_member_of(conn: &ConnShared) -> Option<Arc<Member>> {
    conn.existing_room_member()
}

/// The channel `name` for a connection of `conn`'s route: in the shared namespace when the
/// route opted into it, else in the route's own.
pub(crate) fn channel_of(conn: &ConnShared, name: &str) -> Result<ChannelKey, RoomError> {
    match conn.room_settings().shared {
        true => ChannelKey::new(Scope::Shared, name),
        false => ChannelKey::in_route(conn.route(), name),
    }
}

/// The history bounds of `conn`'s route.
pub(crate) fn history_limits(conn: &ConnShared) -> HistoryLimits {
    let settings = conn.room_settings();
    HistoryLimits { max_messages: settings.history_messages, max_age: settings.history_age }
}

impl Rooms {
    /// Empty rooms whose members' queues have `limits`.
    pub(crate) fn new(limits: MailboxLimits) -> Rooms {
        Rooms {
            channels: RwLock::new(HashMap::new()),
            conns: RwLock::new(HashMap::new()),
            limits,
            sweeping: OnceLock::new(),
            broker: OnceLock::new(),
            broker_down: std::sync::atomic::AtomicBool::new(false),
            remote_nodes: std::sync::atomic::AtomicBool::new(false),
            warming: warm::Warming::default(),
            direct_in_flight: AtomicU32::new(0),
        }
    }

    fn channels(&self) -> RwLockReadGuard<'_, Channels> {
        self.channels.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn channels_mut(&self) -> RwLockWriteGuard<'_, Channels> {
        self.channels.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn conns_mut(&self) -> RwLockWriteGuard<'_, HashMap<ConnId, Weak<Mailbox>>> {
        self.conns.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new member (with a new id) receiving through `mailbox`.
    pub(crate) fn member(self: &Arc<Self>, mailbox: Arc<Mailbox>) -> Member {
        let id = ConnId::next();
        self.conns_mut().insert(id, Arc::downgrade(&mailbox));
        Member::new(id, mailbox, Arc::clone(self))
    }

    /// Adds `id` to `channel` (or replaces its presence record and will).
    fn subscribe(&self, channel: &ChannelKey, id: ConnId, record: Record, mailbox: &Arc<Mailbox>) {
        let mut channels = self.channels_mut();
        let entry = channels.entry(channel.clone()).or_default();
        add_member(entry, id, record.clone(), Some(mailbox));
        self.count_in_flight(entry);
        self.count_join_in_flight();
        drop(channels);
        let Record { presence, will } = record;
        self.tell(|| Relay::Join { channel: channel.clone(), id, presence, will });
    }

    /// With a broker, counts one of this process's items (a join, an ordered or logged
    /// publish) on its way through the relay to `entry`; [`settle`](Self::settle) uncounts
    /// it when the relay sends it back.
    fn count_in_flight(&self, entry: &mut Channel) {
        if self.broker.get().is_some() {
            *entry.in_flight.get_mut() += 1;
        }
    }

    /// Counts a join of this process on its way through the relay (with a broker).
    fn count_join_in_flight(&self) {
        if self.broker.get().is_some() {
            self.direct_in_flight.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// One of this process's joins or routed `send_to`s came back from the relay.
    fn settle_direct(&self) {
        let less = |n: u32| Some(n.saturating_sub(1));
        let _ = self.direct_in_flight.fetch_update(Ordering::AcqRel, Ordering::Acquire, less);
    }

    /// One of this process's items to `channel` came back from the relay.
    fn settle(&self, channel: &ChannelKey) {
        let mut channels = self.channels_mut();
        let Some(entry) = channels.get_mut(channel) else { return };
        let in_flight = entry.in_flight.get_mut();
        *in_flight = in_flight.saturating_sub(1);
        if entry.is_unused() {
            channels.remove(channel);
        }
    }

    /// Adds `id` to `channel` like [`subscribe`](Self::subscribe) and, under the same lock
    /// (so no logged message is missed or queued twice), queues into `mailbox` the channel's
    /// logged messages after the last one whose id is `since`; whether `since` was found.
    fn subscribe_since(
        &self,
        channel: &ChannelKey,
        id: ConnId,
        record: Record,
        mailbox: &Arc<Mailbox>,
        since: &str,
    ) -> bool {
        let mut channels = self.channels_mut();
        let entry = channels.entry(channel.clone()).or_default();
        add_member(entry, id, record.clone(), Some(mailbox));
        self.count_in_flight(entry);
        self.count_join_in_flight();
        let found = entry.history.since(since).map(|missed| {
            let mut tally = Tally::default();
            for message in missed {
                let frame = Framed::new(&message.frame, message.payload_len).for_mailbox(mailbox);
                tally.count(mailbox.push(frame, message.payload_len));
            }
            tally.record();
        });
        drop(channels);
        let Record { presence, will } = record;
        self.tell(|| Relay::Join { channel: channel.clone(), id, presence, will });
        found.is_some()
    }

    /// Takes `id` out of `channel`.
    fn unsubscribe(&self, channel: &ChannelKey, id: ConnId) {
        let mut channels = self.channels_mut();
        remove_member(&mut channels, channel, id);
        drop(channels);
        self.tell(|| Relay::Leave { channel: channel.clone(), id, farewell: false });
    }

    /// The connection `id` is gone without leaving `joined`: out of them (their other
    /// members here get its will, if it left one) and of the id table.
    fn forget(&self, id: ConnId, joined: &[ChannelKey]) {
        if !joined.is_empty() {
            let mut wills = Vec::new();
            let mut channels = self.channels_mut();
            for channel in joined {
                if let Some(will) = remove_member(&mut channels, channel, id).and_then(|gone| gone.will) {
                    wills.push((channel, will));
                }
            }
            drop(channels);
            for (channel, will) in wills {
                self.deliver_here(channel, will.kind, &will.data);
            }
            for channel in joined {
                self.tell(|| Relay::Leave { channel: channel.clone(), id, farewell: true });
            }
        }
        self.conns_mut().remove(&id);
    }

    /// [`presence`](Self::presence) as a handler asks it: with a broker to other nodes, a
    /// channel this node does not follow is followed first (the call waits for its members,
    /// at most [`warm::WARM_WAIT`]; the node keeps following it a few seconds), so the other
    /// nodes' members are listed too.
    pub(crate) fn presence_everywhere(&self, channel: &ChannelKey) -> Vec<(ConnId, Bytes)> {
        self.warm(channel, None);
        self.presence(channel)
    }

    /// The members of `channel` (id and presence record), in the order they joined.
    pub(crate) fn presence(&self, channel: &ChannelKey) -> Vec<(ConnId, Bytes)> {
        let channels = self.channels();
        let Some(entry) = channels.get(channel) else { return Vec::new() };
        entry.members.iter().filter(|s| s.is_present()).map(|s| (s.id, s.presence.clone())).collect()
    }

    /// Sends `data` to every member of `channel`: one frame built, queued for each; how
    /// many members it was queued for (with a broker: how many this process knows of).
    ///
    /// With a broker, this process's members get it at once and the relay takes it to the
    /// others, unless one of this process's joins or publishes to the channel is still on
    /// its way through the relay: then this one goes through the relay as well, and every
    /// process (this one too) delivers it when the relay sends it back. So a publisher's
    /// messages keep their order, and a publish after a join reaches the other processes
    /// after the join does (a member that saw its own join announced is in every process's
    /// presence).
    pub(crate) fn publish(
        &self,
        channel: &ChannelKey,
        kind: DataKind,
        data: &[u8],
    ) -> Result<usize, RoomError> {
        let frame = server_message_frame(kind, data).map_err(|_| RoomError::NotUtf8)?;
        self.check_broker()?;
        let mut tally = Tally::default();
        let mut remote = 0;
        if let Some(entry) = self.channels().get(channel) {
            if self.broker.get().is_some() && entry.queue_behind_in_flight() {
                let members = entry.members.len();
                let (channel, origin) = (channel.clone(), node_id());
                self.tell(|| Relay::Ordered { channel, origin, kind, data: Bytes::copy_from_slice(data) });
                return Ok(members);
            }
            remote = deliver(&entry.members, &frame, data.len(), &mut tally);
        }
        self.tell(|| Relay::Publish { channel: channel.clone(), kind, data: Bytes::copy_from_slice(data) });
        Ok(tally.record() + remote)
    }

    /// Sends `data` to every member of `channel` like [`publish`](Self::publish), and appends
    /// it under `id` to the channel's history (bounded by `limits`), under the write lock so
    /// that a concurrent `join_since` sees it either in the history or as a member.
    pub(crate) fn publish_logged(
        self: &Arc<Self>,
        channel: &ChannelKey,
        kind: DataKind,
        data: &[u8],
        id: MessageId,
        limits: HistoryLimits,
    ) -> Result<usize, RoomError> {
        let frame = server_message_frame(kind, data).map_err(|_| RoomError::NotUtf8)?;
        self.check_broker()?;
        self.sweeping.get_or_init(|| start_sweep(Arc::downgrade(self)));
        if let Some(broker) = self.broker.get() {
            // The master orders logged messages: every process (this one too) appends and
            // delivers them when they come back, so every history has the same order.
            let members = {
                let mut channels = self.channels_mut();
                let entry = channels.entry(channel.clone()).or_default();
                self.count_in_flight(entry);
                entry.members.len()
            };
            let data = Bytes::copy_from_slice(data);
            ROOMS.relayed_out();
            broker.send(Relay::Logged {
                channel: channel.clone(),
                origin: node_id(),
                msg_id: id,
                limits,
                age: Duration::ZERO,
                kind,
                data,
            });
            return Ok(members);
        }
        Ok(self.append_and_deliver(channel, Entry::new(id, frame, data.len()), limits))
    }

    /// `Err(Unavailable)` while the broker to the other nodes is down.
    fn check_broker(&self) -> Result<(), RoomError> {
        match self.broker_down.load(Ordering::Acquire) {
            true => Err(RoomError::Unavailable),
            false => Ok(()),
        }
    }

    /// Appends `entry` to `channel`'s history and queues it for the local members; how many.
    fn append_and_deliver(&self, channel: &ChannelKey, entry: Entry, limits: HistoryLimits) -> usize {
        let mut tally = Tally::default();
        let mut remote = 0;
        let mut channels = self.channels_mut();
        if limits.max_messages > 0 || channels.contains_key(channel) {
            let state = channels.entry(channel.clone()).or_default();
            remote = deliver(&state.members, &entry.frame, entry.payload_len, &mut tally);
            state.history.append(entry, limits);
            if state.is_unused() {
                channels.remove(channel);
            }
        }
        tally.record() + remote
    }

    /// Frees the history that expired by `now`, and the channels left with nothing.
    pub(crate) fn sweep(&self, now: Instant) {
        self.channels_mut().retain(|_, channel| {
            channel.history.expire(now);
            !channel.is_unused()
        });
    }

    /// Sends `data` to the connection `id` alone (it need not be in any channel).
    ///
    /// With a broker, a connection of this process gets it at once unless one of this
    /// process's joins (or a `send_to` routed for that reason) is still on its way through
    /// the relay: then it goes through the relay too and is delivered when it comes back.
    pub(crate) fn send_to(&self, id: ConnId, kind: DataKind, data: &[u8]) -> Result<(), RoomError> {
        let Some(mailbox) = self.local_mailbox(id) else { return self.send_to_remote(id, kind, data) };
        let behind = |n: u32| if n > 0 { n.checked_add(1) } else { None };
        if self.broker.get().is_some()
            && !mailbox.is_closed()
            && self.direct_in_flight.fetch_update(Ordering::AcqRel, Ordering::Acquire, behind).is_ok()
        {
            server_message_frame(kind, data).map_err(|_| RoomError::NotUtf8)?;
            let origin = node_id();
            self.tell(|| Relay::SendTo { id, origin, kind, data: Bytes::copy_from_slice(data) });
            return Ok(());
        }
        push_to(&mailbox, kind, data)
    }

    /// The mailbox of this process's connection `id`, if it is still open.
    fn local_mailbox(&self, id: ConnId) -> Option<Arc<Mailbox>> {
        let conns = self.conns.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        conns.get(&id).and_then(Weak::upgrade)
    }

    /// How many channels have members.
    #[cfg(test)]
    pub(crate) fn channel_count(&self) -> usize {
        self.channels().len()
    }
}

/// Queues `data` for one connection's `mailbox`, counted.
fn push_to(mailbox: &Mailbox, kind: DataKind, data: &[u8]) -> Result<(), RoomError> {
    let frame = server_message_frame(kind, data).map_err(|_| RoomError::NotUtf8)?;
    let mut tally = Tally::default();
    let pushed = mailbox.push(Framed::new(&frame, data.len()).for_mailbox(mailbox), data.len());
    tally.count(pushed);
    tally.record();
    match pushed {
        Pushed::Queued { .. } => Ok(()),
        Pushed::Overflowed | Pushed::Closed => Err(RoomError::Gone),
    }
}

/// What a member joins with: its presence record and its will.
#[derive(Debug, Clone, Default)]
pub(crate) struct Record {
    /// The presence record (listed by `presence`).
    pub(crate) presence: Bytes,
    /// What the others get if it goes without leaving.
    pub(crate) will: Option<Will>,
}

/// Adds `id` to `channel`'s members (`None`: a member of another process), or replaces its
/// presence record and will.
fn add_member(channel: &mut Channel, id: ConnId, record: Record, mailbox: Option<&Arc<Mailbox>>) {
    let Record { presence, will } = record;
    match channel.members.iter_mut().find(|s| s.id == id) {
        Some(member) => (member.presence, member.will) = (presence, will),
        None => channel.members.push(Subscriber { id, presence, will, mailbox: mailbox.cloned() }),
    }
}

/// Queues `frame` for the local ones of `members`, counting into `tally`; how many members
/// are remote (their process delivers to them).
fn deliver(members: &[Subscriber], frame: &Bytes, payload_len: usize, tally: &mut Tally) -> usize {
    let mut remote = 0;
    let mut framed = Framed::new(frame, payload_len);
    for member in members {
        match &member.mailbox {
            Some(mailbox) => tally.count(mailbox.push(framed.for_mailbox(mailbox), payload_len)),
            None => remote += 1,
        }
    }
    remote
}

/// Takes `id` out of `channel` in `channels`; a channel left with neither members nor
/// history is removed (its history stays until it expires, for members that come back).
/// The member removed, if it was one.
fn remove_member(channels: &mut Channels, channel: &ChannelKey, id: ConnId) -> Option<Subscriber> {
    let entry = channels.get_mut(channel)?;
    let removed = entry.members.iter().position(|s| s.id == id).map(|at| entry.members.remove(at));
    if entry.is_unused() {
        channels.remove(channel);
    }
    removed
}

/// Starts the thread that sweeps `rooms` every [`SWEEP_EVERY`] while they exist.
fn start_sweep(rooms: Weak<Rooms>) {
    let spawned = std::thread::Builder::new().name("wshd-rooms-sweep".into()).spawn(move || {
        loop {
            std::thread::sleep(SWEEP_EVERY);
            let Some(rooms) = rooms.upgrade() else { return };
            rooms.sweep(Instant::now());
        }
    });
    if let Err(e) = spawned {
        // Expired history is still dropped when its channel is next used.
        tracing::warn!("no rooms sweep thread ({e}): idle channels keep their history");
    }
}

/// What one publish did, counted into the metrics at the end.
#[derive(Debug, Default)]
struct Tally {
    delivered: u64,
    dropped_oldest: u64,
    overflowed: u64,
    gone: u64,
}

impl Tally {
    fn count(&mut self, pushed: Pushed) {
        match pushed {
            Pushed::Queued { dropped } => {
                self.delivered += 1;
                self.dropped_oldest += dropped as u64;
            }
            Pushed::Overflowed => self.overflowed += 1,
            Pushed::Closed => self.gone += 1,
        }
    }

    /// Records the counts; the deliveries.
    fn record(self) -> usize {
        ROOMS.published(self.delivered);
        for (reason, count) in [
            (DropReason::Oldest, self.dropped_oldest),
            (DropReason::Overflow, self.overflowed),
            (DropReason::Gone, self.gone),
        ] {
            if count > 0 {
                ROOMS.dropped(reason, count);
            }
        }
        usize::try_from(self.delivered).unwrap_or(usize::MAX)
    }
}
