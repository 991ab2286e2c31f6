//! The Redis implementation of [`Remote`]: one pub/sub connection per node (a topic per
//! channel with local members, and one per local process for `send_to`), one multiplexed
//! connection for commands, a liveness key renewed every heartbeat. Everything runs on one
//! task ([`session`]); the hub's calls are queued to it in order.

mod client;
mod history;
mod keys;
mod session;

use std::time::Duration;

use tokio::sync::mpsc;

use super::{Inbound, Remote};
use crate::config::BrokerSettings;
use crate::rooms::{ChannelKey, Relay};

/// What the hub asked for, in order.
#[derive(Debug)]
enum Command {
    Subscribe(ChannelKey),
    Unsubscribe(ChannelKey),
    Process(u64, bool),
    Send(Relay),
}

/// The hub's side: a queue to the session task.
#[derive(Debug)]
pub(super) struct RedisRemote {
    to_session: mpsc::UnboundedSender<Command>,
}

impl RedisRemote {
    /// Starts the session task (on the current runtime) for `settings.url`.
    pub(super) fn start(settings: &BrokerSettings, inbound: Inbound) -> Result<RedisRemote, String> {
        let client = client::build(settings)?;
        let (to_session, commands) = mpsc::unbounded_channel();
        let node = session::draw_node_id();
        let heartbeat = settings.heartbeat.max(Duration::from_millis(50));
        let url = settings.redacted_url();
        tracing::info!(node = format_args!("{node:016x}"), "rooms broker: Redis at {url}, connecting");
        crate::metrics::broker::BROKER.configured(settings.not_ready_while_down);
        tokio::spawn(session::run(client, commands, session::State::new(node, heartbeat, inbound)));
        Ok(RedisRemote { to_session })
    }

    fn queue(&self, command: Command) {
        // Closed: the runtime is shutting down.
        let _ = self.to_session.send(command);
    }
}

impl Remote for RedisRemote {
    fn subscribe(&self, channel: &ChannelKey) {
        self.queue(Command::Subscribe(channel.clone()));
    }

    fn unsubscribe(&self, channel: &ChannelKey) {
        self.queue(Command::Unsubscribe(channel.clone()));
    }

    fn process(&self, process: u64, alive: bool) {
        self.queue(Command::Process(process, alive));
    }

    fn send(&self, message: Relay) {
        self.queue(Command::Send(message));
    }
}
