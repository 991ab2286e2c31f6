//! Room counters: process-wide, like the rooms themselves (channels belong to the process,
//! not to a route's plugin generation). The `rooms` module counts into [`ROOMS`]; a scrape
//! reads it through [`RoomCollector`].

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;

/// Why a room message did not reach a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// The member's queue was full under the drop-oldest policy: an older message went.
    Oldest,
    /// The member's queue was full under the close policy: it is being closed with 1008.
    Overflow,
    /// The member's connection had ended (or was already closing after an overflow).
    Gone,
}

/// The room counters of the process.
#[derive(Debug, Default)]
pub(crate) struct RoomCounters {
    publishes: AtomicU64,
    deliveries: AtomicU64,
    dropped_oldest: AtomicU64,
    dropped_overflow: AtomicU64,
    dropped_gone: AtomicU64,
    relay_out: AtomicU64,
    relay_in: AtomicU64,
    compressions: AtomicU64,
    compressed_deliveries: AtomicU64,
}

/// The counters every room in this process counts into.
pub(crate) static ROOMS: RoomCounters = RoomCounters {
    publishes: AtomicU64::new(0),
    deliveries: AtomicU64::new(0),
    dropped_oldest: AtomicU64::new(0),
    dropped_overflow: AtomicU64::new(0),
    dropped_gone: AtomicU64::new(0),
    relay_out: AtomicU64::new(0),
    relay_in: AtomicU64::new(0),
    compressions: AtomicU64::new(0),
    compressed_deliveries: AtomicU64::new(0),
};

impl RoomCounters {
    /// Counts one publish (or one `send_to`) and its `deliveries` to members' queues.
    pub(crate) fn published(&self, deliveries: u64) {
        self.publishes.fetch_add(1, Ordering::Relaxed);
        self.deliveries.fetch_add(deliveries, Ordering::Relaxed);
    }

    /// Counts `compressions` deflate runs for one message, whose compressed frames went to
    /// `deliveries` members.
    pub(crate) fn compressed(&self, compressions: u64, deliveries: u64) {
        self.compressions.fetch_add(compressions, Ordering::Relaxed);
        self.compressed_deliveries.fetch_add(deliveries, Ordering::Relaxed);
    }

    /// Counts one message sent to the other processes' rooms.
    pub(crate) fn relayed_out(&self) {
        self.relay_out.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one message from the other processes' rooms.
    pub(crate) fn relayed_in(&self) {
        self.relay_in.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `count` messages dropped for `reason`.
    pub(crate) fn dropped(&self, reason: DropReason, count: u64) {
        let counter = match reason {
            DropReason::Oldest => &self.dropped_oldest,
            DropReason::Overflow => &self.dropped_overflow,
            DropReason::Gone => &self.dropped_gone,
        };
        counter.fetch_add(count, Ordering::Relaxed);
    }

    /// Messages dropped for `reason` so far.
    #[cfg(test)]
    pub(crate) fn dropped_for(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::Oldest => &self.dropped_oldest,
            DropReason::Overflow => &self.dropped_overflow,
            DropReason::Gone => &self.dropped_gone,
        }
        .load(Ordering::Relaxed)
    }
}

/// The `reason` label of `wshd_room_dropped_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The `direction` label of `wshd_room_relay_messages_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

/// Encodes [`ROOMS`] at each scrape.
#[derive(Debug)]
pub(crate) struct RoomCollector;

impl Collector for RoomCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counter = |value: &AtomicU64| ConstCounter::new(value.load(Ordering::Relaxed));
        for (name, help, value) in [
            (
                "wshd_room_publishes",
                "Room messages published (and sent to one connection by id)",
                &ROOMS.publishes,
            ),
            (
                "wshd_room_deliveries",
                "Room messages queued for a member (one per member per publish)",
                &ROOMS.deliveries,
            ),
            (
                "wshd_room_compressions",
                "Room messages compressed for permessage-deflate members (once per message and set of parameters, shared by those members)",
                &ROOMS.compressions,
            ),
            (
                "wshd_room_compressed_deliveries",
                "Room messages queued for a member as a compressed frame (part of wshd_room_deliveries_total)",
                &ROOMS.compressed_deliveries,
            ),
        ] {
            counter(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "wshd_room_dropped",
            "Room messages not delivered: oldest (dropped for a newer one), overflow (the member is closed 1008), gone (the member had left)",
            None,
            MetricType::Counter,
        )?;
        for (reason, value) in [
            ("oldest", &ROOMS.dropped_oldest),
            ("overflow", &ROOMS.dropped_overflow),
            ("gone", &ROOMS.dropped_gone),
        ] {
            counter(value).encode(family.encode_family(&ReasonLabel { reason })?)?;
        }
        if ROOMS.relay_out.load(Ordering::Relaxed) + ROOMS.relay_in.load(Ordering::Relaxed) > 0 {
            let mut family = encoder.encode_descriptor(
                "wshd_room_relay_messages",
                "Room messages exchanged with the other processes' rooms (joins, leaves, publishes, send_to): out (sent) and in (applied)",
                None,
                MetricType::Counter,
            )?;
            for (direction, value) in [("out", &ROOMS.relay_out), ("in", &ROOMS.relay_in)] {
                counter(value).encode(family.encode_family(&DirectionLabel { direction })?)?;
            }
        }
        Ok(())
    }
}
