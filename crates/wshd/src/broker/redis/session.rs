//! The Redis session task: connects (and reconnects with backoff), keeps the node's
//! subscriptions, carries the hub's messages out in order (pipelined: everything queued
//! at once goes in one round trip), hands the other nodes' messages in, renews this node's
//! liveness key and removes the members of nodes whose key expired (their leaves are
//! handed in, so the hub tells the local members).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink};
use redis::{Msg, RedisResult};
use tokio::sync::mpsc;

use super::Command;
use super::keys::{
    StreamId, alive_key, channel_topic, envelope, member_value, open_member, open_topic, presence_key,
    process_topic, topic_message,
};
use crate::broker::Inbound;
use crate::metrics::broker::BROKER;
use crate::rooms::{ChannelKey, ConnId, Record, Relay};

/// The longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the session keeps across reconnections.
pub(super) struct State {
    /// This node's id in Redis (random per start).
    node: u64,
    heartbeat: Duration,
    pub(super) inbound: Inbound,
    /// The channels this node has members of (subscribed while connected).
    channels: HashSet<ChannelKey>,
    /// This node's processes (their `send_to` topics).
    processes: HashSet<u64>,
    /// The other nodes' members this node knows of, by node.
    remote: HashMap<u64, HashSet<(ChannelKey, ConnId)>>,
    /// This node's members (registered again, and announced, after a reconnection: Redis
    /// may have restarted empty).
    local: HashMap<(ChannelKey, ConnId), Record>,
    /// The last logged message handed in per followed channel (its stream id): a message
    /// loaded with the history and then received live is handed in once.
    pub(super) last_logged: HashMap<ChannelKey, StreamId>,
    /// Whether the last attempt reached Redis (`None` before the first).
    connected: Option<bool>,
}

impl State {
    /// A session's start: node id `node`, liveness renewed every `heartbeat`.
    pub(super) fn new(node: u64, heartbeat: Duration, inbound: Inbound) -> State {
        let (channels, processes) = (HashSet::new(), HashSet::new());
        let (remote, local) = (HashMap::new(), HashMap::new());
        let last_logged = HashMap::new();
        State { node, heartbeat, inbound, channels, processes, remote, local, last_logged, connected: None }
    }

    /// Logs a change of connection state (once per change).
    fn set_connected(&mut self, now: bool, why: &str) {
        if self.connected != Some(now) {
            (self.inbound)(Relay::BrokerState { up: now });
            BROKER.set_up(now);
            match now {
                true => tracing::info!("rooms broker: connected to Redis"),
                false => tracing::warn!("rooms broker: Redis unreachable ({why}); retrying with backoff"),
            }
        }
        self.connected = Some(now);
    }

    /// A member of `node` joined: remembered, handed in.
    fn remote_join(&mut self, node: u64, channel: ChannelKey, id: ConnId, record: Record) {
        self.remote.entry(node).or_default().insert((channel.clone(), id));
        let Record { presence, will } = record;
        (self.inbound)(Relay::Join { channel, id, presence, will });
    }

    /// A member of `node` left (`farewell`: without leaving, so its will is said):
    /// forgotten, handed in.
    fn remote_leave(&mut self, node: u64, channel: ChannelKey, id: ConnId, farewell: bool) {
        if let Some(members) = self.remote.get_mut(&node) {
            members.remove(&(channel.clone(), id));
            if members.is_empty() {
                self.remote.remove(&node);
            }
        }
        (self.inbound)(Relay::Leave { channel, id, farewell });
    }

    /// Every remote member of `channel` leaves (this node no longer follows it).
    fn drop_channel(&mut self, channel: &ChannelKey) {
        let mut gone = Vec::new();
        for (node, members) in &self.remote {
            gone.extend(members.iter().filter(|(c, _)| c == channel).map(|(c, id)| (*node, c.clone(), *id)));
        }
        for (node, channel, id) in gone {
            self.remote_leave(node, channel, id, false);
        }
    }
}

/// A random node id (the time and pid without the OS's randomness).
pub(super) fn draw_node_id() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        return (nanos as u64) ^ (u64::from(std::process::id()) << 32);
    }
    u64::from_le_bytes(bytes)
}

/// Runs sessions until the hub's queue closes, waiting with backoff between attempts.
pub(super) async fn run(
    client: redis::Client,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut state: State,
) {
    let mut backoff = Duration::from_millis(100);
    // Redis's errors should not quote the password; scrubbed in case one does.
    let password = client.get_connection_info().redis_settings().password().unwrap_or_default().to_owned();
    loop {
        match session(&client, &mut commands, &mut state).await {
            Ok(()) => return,
            Err(e) => {
                if state.connected == Some(true) {
                    backoff = Duration::from_millis(100);
                }
                state.set_connected(false, &crate::config::scrub_secret(&e.to_string(), &password));
            }
        }
        // Meanwhile: subscriptions are remembered for the next session, messages dropped.
        let wait = tokio::time::sleep(backoff);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = &mut wait => break,
                command = commands.recv() => match command {
                    None => return,
                    Some(command) => remember(&mut state, command),
                },
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Applies a subscription change to the state alone (while disconnected).
fn remember(state: &mut State, command: Command) {
    match command {
        Command::Subscribe(channel) => {
            state.channels.insert(channel);
        }
        Command::Unsubscribe(channel) => {
            state.channels.remove(&channel);
            state.drop_channel(&channel);
            state.last_logged.remove(&channel);
        }
        Command::Process(process, true) => {
            state.processes.insert(process);
        }
        Command::Process(process, false) => {
            state.processes.remove(&process);
        }
        Command::Send(message) => track_local(state, &message),
    }
}

/// Keeps this node's own members up to date from a message it sends.
fn track_local(state: &mut State, message: &Relay) {
    match message {
        Relay::Join { channel, id, presence, will } => {
            let record = Record { presence: presence.clone(), will: will.clone() };
            state.local.insert((channel.clone(), *id), record);
        }
        Relay::Leave { channel, id, .. } => {
            state.local.remove(&(channel.clone(), *id));
        }
        _ => {}
    }
}

/// Registers this node's members again and announces them (after a reconnection).
async fn register_local(conn: &mut MultiplexedConnection, state: &State) -> RedisResult<()> {
    if state.local.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for ((channel, id), record) in &state.local {
        let Record { presence, will } = record.clone();
        let join = Relay::Join { channel: channel.clone(), id: *id, presence, will };
        add_message(&mut pipe, state.node, &join);
    }
    pipe.exec_async(conn).await
}

/// One connected session: until the queue closes (`Ok`) or Redis fails (`Err`).
async fn session(
    client: &redis::Client,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    state: &mut State,
) -> RedisResult<()> {
    let mut conn = client.get_multiplexed_async_connection().await?;
    let (mut sink, mut stream) = client.get_async_pubsub().await?.split();
    renew(&mut conn, state).await?;
    super::history::load_script(&mut conn).await?;
    register_local(&mut conn, state).await?;
    for process in state.processes.clone() {
        sink.subscribe(process_topic(process)).await?;
    }
    let resumed = state.connected.is_some();
    for channel in state.channels.clone() {
        if resumed {
            // Logged messages may have been missed meanwhile: no replay across the gap (the
            // history is loaded again from Redis, which may have lost it).
            state.last_logged.remove(&channel);
            (state.inbound)(Relay::Forget { channel: channel.clone() });
        }
        follow(&mut conn, &mut sink, state, &channel).await?;
    }
    state.set_connected(true, "");
    let mut tick = tokio::time::interval(state.heartbeat);
    loop {
        tokio::select! {
            command = commands.recv() => {
                let Some(command) = command else { return Ok(()) };
                let mut batch = vec![command];
                while let Ok(more) = commands.try_recv() {
                    batch.push(more);
                }
                execute(&mut conn, &mut sink, state, batch).await?;
            }
            message = stream.next() => {
                let Some(message) = message else {
                    return Err((redis::ErrorKind::Io, "the subscription connection closed").into());
                };
                take(state, &message);
            }
            _ = tick.tick() => {
                renew(&mut conn, state).await?;
                sweep_dead(&mut conn, state).await?;
            }
        }
    }
}

/// Subscribes to `channel` and hands in its members on other nodes.
async fn follow(
    conn: &mut MultiplexedConnection,
    sink: &mut PubSubSink,
    state: &mut State,
    channel: &ChannelKey,
) -> RedisResult<()> {
    sink.subscribe(channel_topic(channel)).await?;
    let members: HashMap<String, Vec<u8>> =
        redis::cmd("HGETALL").arg(presence_key(channel)).query_async(conn).await?;
    let mut present = HashSet::new();
    for (field, value) in members {
        let (Ok(id), Some((node, record))) = (field.parse::<ConnId>(), open_member(&value)) else {
            continue;
        };
        if node != state.node {
            present.insert(id);
            state.remote_join(node, channel.clone(), id, record);
        }
    }
    // Known before a reconnection but no longer registered: gone meanwhile.
    let mut gone = Vec::new();
    for (node, members) in &state.remote {
        let stale = members.iter().filter(|(c, id)| c == channel && !present.contains(id));
        gone.extend(stale.map(|(c, id)| (*node, c.clone(), *id)));
    }
    // (Whether they left or died is not known: no will is said for them.)
    for (node, channel, id) in gone {
        state.remote_leave(node, channel, id, false);
    }
    super::history::load(conn, state, channel).await?;
    (state.inbound)(Relay::Followed { channel: channel.clone() });
    Ok(())
}

/// Carries out `batch` in order: messages pipelined, subscriptions between them.
async fn execute(
    conn: &mut MultiplexedConnection,
    sink: &mut PubSubSink,
    state: &mut State,
    batch: Vec<Command>,
) -> RedisResult<()> {
    let started = std::time::Instant::now();
    let mut pipe = redis::pipe();
    let mut queued = 0usize;
    for command in batch {
        if let Command::Send(message) = command {
            track_local(state, &message);
            queued += add_message(&mut pipe, state.node, &message);
            continue;
        }
        if queued > 0 {
            pipe.exec_async(conn).await?;
            (pipe, queued) = (redis::pipe(), 0);
        }
        match command {
            Command::Subscribe(channel) => {
                if state.channels.insert(channel.clone()) {
                    follow(conn, sink, state, &channel).await?;
                }
            }
            Command::Unsubscribe(channel) => {
                if state.channels.remove(&channel) {
                    sink.unsubscribe(channel_topic(&channel)).await?;
                    state.drop_channel(&channel);
                    state.last_logged.remove(&channel);
                }
            }
            Command::Process(process, true) => {
                if state.processes.insert(process) {
                    sink.subscribe(process_topic(process)).await?;
                }
            }
            Command::Process(process, false) => {
                if state.processes.remove(&process) {
                    sink.unsubscribe(process_topic(process)).await?;
                }
            }
            Command::Send(_) => {}
        }
    }
    if queued > 0 {
        pipe.exec_async(conn).await?;
    }
    BROKER.round_trip(started.elapsed());
    Ok(())
}

/// Adds the commands that carry `message` to `pipe`; how many.
fn add_message(pipe: &mut redis::Pipeline, node: u64, message: &Relay) -> usize {
    let (topic, bytes) = match message {
        Relay::Hello { .. }
        | Relay::SnapshotEnd
        | Relay::BrokerState { .. }
        | Relay::Warm { .. }
        | Relay::Followed { .. } => return 0,
        Relay::Join { channel, id, presence, will } => {
            let value = member_value(node, &Record { presence: presence.clone(), will: will.clone() });
            pipe.cmd("HSET").arg(presence_key(channel)).arg(id.to_string()).arg(value).ignore();
            (channel_topic(channel), topic_message(node, message))
        }
        Relay::Leave { channel, id, .. } => {
            pipe.cmd("HDEL").arg(presence_key(channel)).arg(id.to_string()).ignore();
            (channel_topic(channel), topic_message(node, message))
        }
        Relay::Publish { channel, .. } | Relay::Ordered { channel, .. } => {
            (channel_topic(channel), topic_message(node, message))
        }
        Relay::Logged { channel, limits, .. } => {
            super::history::append_and_publish(pipe, channel, *limits, &envelope(node, message));
            return 1;
        }
        Relay::Forget { .. } => return 0,
        Relay::SendTo { id, .. } => (process_topic(id.node), topic_message(node, message)),
    };
    pipe.cmd("PUBLISH").arg(topic).arg(&bytes[..]).ignore();
    1
}

/// Hands in what another node published on a topic this node follows.
fn take(state: &mut State, message: &Msg) {
    let Some((stream_id, node, relay)) = open_topic(message.get_payload_bytes()) else {
        tracing::warn!(topic = message.get_channel_name(), "rooms broker: a message that is not wshd's");
        return;
    };
    // This node's own messages are not handed in again, but for logged ones: Redis orders
    // those, and every node (this one too) applies them when they come back.
    if node == state.node && !matches!(relay, Relay::Logged { .. }) {
        return;
    }
    if let (Some(stream_id), Relay::Logged { channel, .. }) = (stream_id, &relay) {
        if state.last_logged.get(channel).is_some_and(|last| stream_id <= *last) {
            return; // Loaded with the history already.
        }
        state.last_logged.insert(channel.clone(), stream_id);
    }
    match relay {
        Relay::Join { channel, id, presence, will } => {
            state.remote_join(node, channel, id, Record { presence, will })
        }
        Relay::Leave { channel, id, farewell } => state.remote_leave(node, channel, id, farewell),
        other => (state.inbound)(other),
    }
}

/// Renews this node's liveness key: it expires after three heartbeats.
async fn renew(conn: &mut MultiplexedConnection, state: &State) -> RedisResult<()> {
    let ttl = u64::try_from((state.heartbeat * 3).as_millis()).unwrap_or(u64::MAX);
    redis::cmd("SET").arg(alive_key(state.node)).arg(1).arg("PX").arg(ttl).exec_async(conn).await
}

/// The members of nodes whose liveness key expired leave (handed in, and removed from the
/// members hashes in Redis).
async fn sweep_dead(conn: &mut MultiplexedConnection, state: &mut State) -> RedisResult<()> {
    let nodes: Vec<u64> = state.remote.keys().copied().collect();
    if nodes.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for node in &nodes {
        pipe.cmd("EXISTS").arg(alive_key(*node));
    }
    let alive: Vec<i64> = pipe.query_async(conn).await?;
    let (mut cleanup, mut removed) = (redis::pipe(), 0usize);
    for (node, _) in nodes.iter().zip(alive).filter(|(_, alive)| *alive == 0) {
        let members = state.remote.get(node).cloned().unwrap_or_default();
        tracing::info!(
            node = format_args!("{node:016x}"),
            members = members.len(),
            "rooms broker: a node died; its members leave"
        );
        for (channel, id) in members {
            cleanup.cmd("HDEL").arg(presence_key(&channel)).arg(id.to_string()).ignore();
            removed += 1;
            state.remote_leave(*node, channel, id, true);
        }
    }
    if removed == 0 {
        return Ok(());
    }
    cleanup.exec_async(conn).await
}
