//! The state of this process's broker to the other nodes (`[broker]`, kept by the broker's
//! session task): up or down, reconnections, the last round trip. A scrape reads it through
//! [`BrokerCollector`] (nothing is encoded in a process without a broker, so a master's
//! merged `/metrics` has the master's figures only), and `/readyz` through
//! [`BrokerStatus::readiness`].

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// No broker in this process.
const NONE: u8 = 0;
/// Connected.
const UP: u8 = 1;
/// Not connected (before the first connection, or lost).
const DOWN: u8 = 2;

/// See the module docs.
#[derive(Debug)]
pub(crate) struct BrokerStatus {
    state: AtomicU8,
    reconnects: AtomicU64,
    round_trip_us: AtomicU64,
    down_not_ready: AtomicBool,
}

/// This process's broker state.
pub(crate) static BROKER: BrokerStatus = BrokerStatus {
    state: AtomicU8::new(NONE),
    reconnects: AtomicU64::new(0),
    round_trip_us: AtomicU64::new(0),
    down_not_ready: AtomicBool::new(true),
};

impl BrokerStatus {
    /// A broker starts in this process (down until connected); `down_not_ready`: `/readyz`
    /// answers 503 while it is down.
    pub(crate) fn configured(&self, down_not_ready: bool) {
        self.down_not_ready.store(down_not_ready, Ordering::Relaxed);
        self.state.store(DOWN, Ordering::Release);
    }

    /// Connected (`true`) or lost; a connection after a loss counts as a reconnection.
    pub(crate) fn set_up(&self, up: bool) {
        let before = self.state.swap(if up { UP } else { DOWN }, Ordering::AcqRel);
        if up && before == DOWN && self.round_trip_us.load(Ordering::Relaxed) > 0 {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The round trip of the last batch of commands.
    pub(crate) fn round_trip(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        self.round_trip_us.store(us, Ordering::Relaxed);
    }

    /// `Err(why)` while the broker is down and that makes the node not ready.
    pub(crate) fn readiness(&self) -> Result<(), String> {
        if self.state.load(Ordering::Acquire) == DOWN && self.down_not_ready.load(Ordering::Relaxed) {
            return Err("the rooms broker (Redis) is down".to_owned());
        }
        Ok(())
    }
}

/// Encodes [`BROKER`] at each scrape (nothing without a broker).
#[derive(Debug)]
pub(crate) struct BrokerCollector;

impl Collector for BrokerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let state = BROKER.state.load(Ordering::Acquire);
        if state == NONE {
            return Ok(());
        }
        let up = ConstGauge::new(i64::from(state == UP));
        up.encode(encoder.encode_descriptor(
            "wshd_broker_up",
            "Whether this node's rooms broker (Redis) is connected",
            None,
            up.metric_type(),
        )?)?;
        let reconnects = ConstCounter::new(BROKER.reconnects.load(Ordering::Relaxed));
        reconnects.encode(encoder.encode_descriptor(
            "wshd_broker_reconnects",
            "Times the rooms broker connected again after losing Redis",
            None,
            reconnects.metric_type(),
        )?)?;
        let seconds = BROKER.round_trip_us.load(Ordering::Relaxed) as f64 / 1e6;
        let round_trip = ConstGauge::new(seconds);
        round_trip.encode(encoder.encode_descriptor(
            "wshd_broker_round_trip_seconds",
            "Round trip of the rooms broker's last batch of Redis commands",
            None,
            round_trip.metric_type(),
        )?)?;
        Ok(())
    }
}
