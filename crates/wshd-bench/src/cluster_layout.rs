//! What `cluster` measures: its options, the layouts (where the publisher and the
//! subscribers are) and what one layout gave; shared by `cluster` (which runs them) and
//! `cluster_report` (which reports them).

use std::path::PathBuf;

use crate::BoxError;
use crate::fanout::Outcome;
use crate::fanout_load::Phases;

/// Options of `cluster`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ClusterArgs {
    /// Subscribers in every layout (spread evenly over the nodes that have subscribers).
    #[arg(long, default_value_t = 100)]
    pub(crate) subscribers: usize,
    /// The fixed offered rate, in deliveries/s (publishes/s × subscribers).
    #[arg(long, default_value_t = 10_000.0)]
    pub(crate) rate: f64,
    /// Max throughput: messages in flight beyond the slowest subscriber's receipts.
    #[arg(long, default_value_t = 64)]
    pub(crate) window: u64,
    /// Message bytes (at least 32).
    #[arg(long, default_value_t = 64)]
    pub(crate) size: usize,
    /// Warm-up before each measured window, in seconds.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) warmup: f64,
    /// Measured window of each phase, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) seconds: f64,
    /// wshd's `workers` on every node (0: one process per node; the machine has few CPUs).
    #[arg(long, default_value_t = 0)]
    pub(crate) workers: u32,
    /// Where `wshd`, `libfanout_wsh.so` and `wshd-bench` are.
    #[arg(long, default_value = "target/release")]
    pub(crate) release_dir: PathBuf,
    /// Where the JSON is written.
    #[arg(long, default_value = "target/bench")]
    pub(crate) bench_dir: PathBuf,
}

impl ClusterArgs {
    /// The phases `fanout-load` runs: the fixed rate, then max throughput.
    pub(crate) fn phases(&self) -> Phases {
        Phases {
            size: self.size,
            binary: false,
            rates: vec![self.rate],
            window: self.window,
            warmup: self.warmup,
            seconds: self.seconds,
        }
    }

    /// Refuses options that cannot be measured.
    pub(crate) fn check(&self) -> Result<(), BoxError> {
        if self.subscribers < 2 || self.size < 32 || self.window == 0 {
            return Err("--subscribers must be at least 2, --size at least 32, --window at least 1".into());
        }
        if !(self.rate > 0.0 && self.seconds > 0.0 && self.warmup >= 0.0) {
            return Err("--rate and --seconds must be positive, --warmup not negative".into());
        }
        Ok(())
    }
}

/// Where a layout puts the publisher and the subscribers.
pub(crate) struct Layout {
    pub(crate) key: &'static str,
    pub(crate) label: &'static str,
    /// Index into the nodes of the publisher's node (3: the node without a broker).
    pub(crate) publisher: usize,
    /// The subscribers' nodes, round robin.
    pub(crate) subscribers: &'static [usize],
    /// The group of each entry of `subscribers`.
    pub(crate) groups: &'static [usize],
    /// The label of each group.
    pub(crate) group_labels: &'static [&'static str],
    /// Publishes with ids (history: with the broker, `EVALSHA` of the script that appends
    /// to the channel's Redis stream and publishes; delivered on the way back, same node
    /// too).
    pub(crate) logged: bool,
}

/// The layouts, in the order they run.
pub(crate) const LAYOUTS: [Layout; 5] = [
    Layout {
        key: "one-node-no-broker",
        label: "one node, no broker",
        publisher: 3,
        subscribers: &[3],
        groups: &[0],
        group_labels: &["all (same node)"],
        logged: false,
    },
    Layout {
        key: "one-node-redis",
        label: "one node, Redis broker",
        publisher: 0,
        subscribers: &[0],
        groups: &[0],
        group_labels: &["all (same node)"],
        logged: false,
    },
    Layout {
        key: "three-nodes-spread",
        label: "three nodes, subscribers spread",
        publisher: 0,
        // Node 1 last: `fanout-load`'s designated subscriber (the last of the highest group)
        // is a cross-node one (the window itself is paced on the slowest: --pace-slowest).
        subscribers: &[1, 2, 0],
        groups: &[1, 1, 0],
        group_labels: &["same-node (node 1)", "cross-node (nodes 2, 3)"],
        logged: false,
    },
    Layout {
        key: "three-nodes-all-cross",
        label: "three nodes, all subscribers cross-node",
        publisher: 0,
        subscribers: &[1, 2],
        groups: &[0, 0],
        group_labels: &["cross-node (nodes 2, 3)"],
        logged: false,
    },
    Layout {
        key: "three-nodes-spread-logged",
        label: "three nodes, spread, logged publishes",
        publisher: 0,
        subscribers: &[1, 2, 0],
        groups: &[1, 1, 0],
        group_labels: &["same-node (node 1)", "cross-node (nodes 2, 3)"],
        logged: true,
    },
];

/// What one layout gave: the client's outcome and the CPU seconds each process used.
pub(crate) struct Measured {
    pub(crate) outcome: Outcome,
    /// (process, CPU seconds during the layout's client run).
    pub(crate) cpu: Vec<(String, f64)>,
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    /// `cluster`'s options alone, as the command line gives them.
    #[derive(Debug, clap::Parser)]
    struct Line {
        #[command(flatten)]
        args: ClusterArgs,
    }

    fn parse(argv: &[&str]) -> ClusterArgs {
        Line::try_parse_from(std::iter::once("cluster").chain(argv.iter().copied()))
            .expect("valid options")
            .args
    }

    #[test]
    fn the_defaults_offer_the_issue_s_rate_and_pass_the_phases_on() {
        let args = parse(&[]);
        assert!(args.check().is_ok());
        assert_eq!((args.subscribers, args.rate, args.window), (100, 10_000.0, 64));
        let passed = args.phases().to_args();
        let after =
            |flag: &str| passed.iter().position(|a| a == flag).and_then(|i| passed.get(i + 1)).cloned();
        assert_eq!(after("--rates").as_deref(), Some("10000"));
        assert_eq!(after("--window").as_deref(), Some("64"));
    }

    #[test]
    fn options_that_cannot_be_measured_are_refused() {
        assert!(parse(&["--subscribers", "1"]).check().is_err());
        assert!(parse(&["--rate", "0"]).check().is_err());
        assert!(parse(&["--size", "16"]).check().is_err());
        assert!(parse(&["--window", "0"]).check().is_err());
        assert!(parse(&["--seconds", "0"]).check().is_err());
    }

    #[test]
    fn every_layout_has_a_group_label_for_each_group_it_uses() {
        for layout in &LAYOUTS {
            assert_eq!(layout.subscribers.len(), layout.groups.len(), "{}", layout.key);
            let highest = layout.groups.iter().max().copied().unwrap_or(0);
            assert_eq!(layout.group_labels.len(), highest + 1, "{}", layout.key);
        }
    }
}
