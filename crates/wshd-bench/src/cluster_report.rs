//! The report of `cluster`: the markdown tables (fixed rate, max throughput, Redis commands
//! per publish, CPU), the two goals, and the JSON.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::cluster_layout::{ClusterArgs, LAYOUTS, Layout, Measured};
use crate::fanout::{Fields, Outcome, get};
use crate::fanout_report::{fields_json, fmt};
use crate::run::{group, num, quoted};

/// The goal for cross-node p99 at the fixed rate, in µs.
pub(crate) const P99_GOAL_US: f64 = 5_000.0;
/// The goal for cross-node deliveries/s ÷ single-node deliveries/s.
pub(crate) const RATIO_GOAL: f64 = 0.7;

/// What the report needs besides the results.
pub(crate) struct Context<'a> {
    pub(crate) args: &'a ClusterArgs,
    pub(crate) redis_version: String,
    /// Redis pub/sub alone in the same run: p50, p99, p99.9, max (µs).
    pub(crate) redis_probe: [f64; 4],
}

/// The phase line of group `g` of `layout` (`PHASE` when it has one group, else `GROUP`).
fn phase<'o>(o: &'o Outcome, layout: &Layout, name: &str, target: f64, g: usize) -> Option<&'o Fields> {
    if layout.group_labels.len() < 2 {
        return o.phase(name, target);
    }
    o.groups.iter().find(|f| {
        f.get("name").map(String::as_str) == Some(name)
            && (get(f, "target") - target).abs() < 0.5
            && get(f, "group") == g as f64
    })
}

/// How many of `n` subscribers (round robin over `layout`'s nodes) are in group `g`.
pub(crate) fn subscribers_in(layout: &Layout, n: usize, g: usize) -> usize {
    let per = layout.groups;
    (0..n).filter(|i| per.get(i % per.len().max(1)) == Some(&g)).count()
}

/// The fixed-rate phase's target and the max-throughput phase's (0).
fn targets(args: &ClusterArgs) -> [(&'static str, f64); 2] {
    [("rate", args.rate), ("saturation", 0.0)]
}

/// `lost / misordered / failed` of a layout, or why it failed.
fn faults(o: &Outcome) -> String {
    match &o.failure {
        Some(e) => format!("**FAILED**: {e}"),
        None => format!(
            "{} / {} / {}",
            get(&o.result, "lost"),
            get(&o.result, "misordered"),
            get(&o.result, "errors")
        ),
    }
}

/// One table: a row per layout and group for phase `which` (0: fixed rate, 1: max).
fn latency_table(t: &mut String, args: &ClusterArgs, results: &[Measured], which: usize) {
    let (name, target) = targets(args)[which];
    let baseline =
        results.first().and_then(|m| m.outcome.phase(name, target)).map_or(f64::NAN, |p| get(p, "per_s"));
    let _ = writeln!(
        t,
        "| layout | subscribers | deliveries/s | publishes/s | p50 µs | p99 µs | max µs | ÷ one node, no broker | servers' CPU s per 1M deliveries | lost / misordered / failed |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|---|---|---|---|");
    for (layout, m) in LAYOUTS.iter().zip(results) {
        let o = &m.outcome;
        let whole = o.phase(name, target);
        let messages = whole.map_or(f64::NAN, |p| get(p, "messages")) / args.seconds;
        let cpu = whole.map_or(f64::NAN, |p| get(p, "cluster_cpu_s") / get(p, "deliveries") * 1e6);
        for (g, label) in layout.group_labels.iter().enumerate() {
            let p = phase(o, layout, name, target, g);
            let v = |k: &str| p.map_or(f64::NAN, |p| get(p, k));
            let _ = writeln!(
                t,
                "| {}: {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                layout.label,
                subscribers_in(layout, args.subscribers, g),
                fmt(v("per_s"), 0),
                fmt(messages, 0),
                fmt(v("p50_us"), 0),
                fmt(v("p99_us"), 0),
                fmt(v("max_us"), 0),
                if which == 1 && layout.group_labels.len() == 1 {
                    format!("{:.2}", v("per_s") / baseline)
                } else {
                    String::new()
                },
                if g == 0 { fmt(cpu, 2) } else { "(same)".into() },
                faults(o)
            );
        }
    }
}

/// Redis commands per publish over the measured windows of the three-node layouts.
fn redis_table(t: &mut String, args: &ClusterArgs, results: &[Measured]) {
    let _ = writeln!(
        t,
        "| layout | phase | publishes | Redis calls per publish (INFO commandstats; `info` is the benchmark's own) |"
    );
    let _ = writeln!(t, "|---|---|---|---|");
    redis_rows(t, args, results);
    let _ = writeln!(
        t,
        "\nCalls made by the history script (`EVALSHA`) are counted too: `set` (the epoch, NX), `time`, `xadd`, `xtrim`, `pexpire` ×2, `publish`. Outside the script, only heartbeats: `set` (this node's liveness key) and `exists` (the other nodes' keys)."
    );
}

/// The rows of [`redis_table`]: every layout with the broker, both phases.
fn redis_rows(t: &mut String, args: &ClusterArgs, results: &[Measured]) {
    for (layout, m) in LAYOUTS.iter().zip(results).skip(1) {
        for (name, target) in targets(args) {
            let Some(p) = m.outcome.phase(name, target) else { continue };
            let messages = get(p, "messages");
            let calls: Vec<String> = p
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix("redis_")?, v.parse::<f64>().ok()?)))
                .filter(|(k, _)| *k != "info")
                .map(|(k, n)| format!("`{k}` {} ({:.3})", group(n), n / messages))
                .collect();
            let phase = if name == "rate" { format!("{} deliveries/s", group(target)) } else { "max".into() };
            let _ =
                writeln!(t, "| {} | {phase} | {} | {} |", layout.label, group(messages), calls.join(", "));
        }
    }
}

/// The two goals of the issue, judged.
fn goals(args: &ClusterArgs, results: &[Measured]) -> Vec<String> {
    let find = |i: usize, name: &str, target: f64, g: usize| {
        let (layout, m) = (LAYOUTS.get(i)?, results.get(i)?);
        phase(&m.outcome, layout, name, target, g).map(|p| (get(p, "p99_us"), get(p, "per_s")))
    };
    let nan = (f64::NAN, f64::NAN);
    let (spread_p99, _) = find(2, "rate", args.rate, 1).unwrap_or(nan);
    let (all_cross_p99, _) = find(3, "rate", args.rate, 0).unwrap_or(nan);
    let (single_p99, _) = find(0, "rate", args.rate, 0).unwrap_or(nan);
    let (_, single) = find(0, "saturation", 0.0, 0).unwrap_or(nan);
    let (_, single_redis) = find(1, "saturation", 0.0, 0).unwrap_or(nan);
    let (_, cross) = find(3, "saturation", 0.0, 0).unwrap_or(nan);
    let best_single = single.max(single_redis);
    let verdict = |met: bool| if met { "MET" } else { "NOT MET" };
    vec![
        format!(
            "Cross-node p99 at {} deliveries/s: {:.2} ms with subscribers spread, {:.2} ms with all cross-node (one node without broker, same run: {:.2} ms; goal ≤ {:.0} ms): {}.",
            group(args.rate),
            spread_p99 / 1000.0,
            all_cross_p99 / 1000.0,
            single_p99 / 1000.0,
            P99_GOAL_US / 1000.0,
            verdict(spread_p99.max(all_cross_p99) <= P99_GOAL_US)
        ),
        format!(
            "Cross-node max deliveries/s ÷ single-node: {} ÷ {} (one node, no broker) = {:.2}; ÷ {} (one node, Redis broker) = {:.2} (goal ≥ {RATIO_GOAL}, judged on the better single node): {}.",
            group(cross),
            group(single),
            cross / single,
            group(single_redis),
            cross / single_redis,
            verdict(cross / best_single >= RATIO_GOAL)
        ),
    ]
}

/// The markdown report.
pub(crate) fn table(context: &Context<'_>, results: &[Measured]) -> String {
    let args = context.args;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\nwshd-bench cluster: Redis {}, nodes with workers = {}, {} subscribers, {} B text messages, one publisher; {} s warm-up + {} s measured per phase\n",
        context.redis_version,
        args.workers,
        group(args.subscribers as f64),
        args.size,
        args.warmup,
        args.seconds
    );
    let _ = writeln!(t, "Fixed offered rate: {} deliveries/s\n", group(args.rate));
    latency_table(&mut t, args, results, 0);
    let _ = writeln!(
        t,
        "\nMax throughput ({} messages in flight beyond the slowest subscriber's receipts)\n",
        args.window
    );
    latency_table(&mut t, args, results, 1);
    let _ = writeln!(t, "\nRedis commands per publish (measured windows)\n");
    redis_table(&mut t, args, results);
    let [p50, p99, _, max] = context.redis_probe;
    let _ = writeln!(
        t,
        "\nRedis pub/sub alone (`PUBLISH` → a `SUBSCRIBE`d connection, raw RESP, {:.0} messages/s for {} s, same run): p50 {p50:.0} µs, p99 {p99:.0} µs, max {max:.0} µs.",
        args.rate / args.subscribers as f64,
        args.seconds
    );
    let _ = writeln!(
        t,
        "\nServers' CPU: every node and Redis, over the measured window. CPU seconds per layout (whole client run: connect, both phases, drain)\n"
    );
    for (layout, m) in LAYOUTS.iter().zip(results) {
        let cpu: Vec<String> = m.cpu.iter().map(|(name, s)| format!("{name} {s:.2}")).collect();
        let client =
            m.outcome.saturation().map_or(f64::NAN, |p| get(p, "loadgen_cpu_s") / args.seconds * 100.0);
        let _ = writeln!(
            t,
            "- {}: {}; the client {client:.0} % of a CPU in the max window; load average (1 min) {}",
            layout.label,
            cpu.join(", "),
            m.outcome.result.get("loadavg1").map_or("?", String::as_str)
        );
    }
    let _ = writeln!(t);
    for g in goals(args, results) {
        let _ = writeln!(t, "{g}");
    }
    t
}

/// The JSON report.
pub(crate) fn json(context: &Context<'_>, results: &[Measured]) -> String {
    let args = context.args;
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut entries = Vec::new();
    for (layout, m) in LAYOUTS.iter().zip(results) {
        let o = &m.outcome;
        let list = |v: &[Fields]| v.iter().map(fields_json).collect::<Vec<_>>().join(", ");
        let labels: Vec<String> = layout.group_labels.iter().map(|l| quoted(l)).collect();
        let cpu: Vec<String> =
            m.cpu.iter().map(|(name, s)| format!("{}: {}", quoted(name), num(*s))).collect();
        entries.push(format!(
            "    {{\"layout\": {}, \"label\": {}, \"groups\": [{}], \"phases\": [{}], \"group_phases\": [{}], \"result\": {}, \
             \"cpu_s\": {{{}}}, \"failure\": {}}}",
            quoted(layout.key),
            quoted(layout.label),
            labels.join(", "),
            list(&o.phases),
            list(&o.groups),
            fields_json(&o.result),
            cpu.join(", "),
            o.failure.as_deref().map_or("null".into(), quoted)
        ));
    }
    let goals: Vec<String> = goals(args, results).iter().map(|g| quoted(g)).collect();
    format!(
        "{{\n  \"benchmark\": \"wshd scale-out through Redis (wshd-bench cluster)\",\n  \"unix_time\": {unix},\n  \"cpus\": {},\n  \
         \"redis_version\": {},\n  \"workers\": {},\n  \"subscribers\": {},\n  \"message_bytes\": {},\n  \"rate_deliveries_per_s\": {},\n  \
         \"window\": {},\n  \"warmup_s\": {},\n  \"seconds\": {},\n  \"redis_pubsub_alone_us\": {{\"p50\": {}, \"p99\": {}, \"p999\": {}, \"max\": {}}},\n  \"goals\": [{}],\n  \"layouts\": [\n{}\n  ]\n}}\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        quoted(&context.redis_version),
        args.workers,
        args.subscribers,
        args.size,
        args.rate,
        args.window,
        args.warmup,
        args.seconds,
        num(context.redis_probe[0]),
        num(context.redis_probe[1]),
        num(context.redis_probe[2]),
        num(context.redis_probe[3]),
        goals.join(", "),
        entries.join(",\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_are_counted_per_group_round_robin() {
        let spread = &LAYOUTS[2];
        assert_eq!(subscribers_in(spread, 300, 0), 100, "node 1");
        assert_eq!(subscribers_in(spread, 300, 1), 200, "nodes 2 and 3");
        assert_eq!(subscribers_in(spread, 301, 0) + subscribers_in(spread, 301, 1), 301);
        assert_eq!(subscribers_in(&LAYOUTS[3], 300, 0), 300, "all cross-node");
    }

    #[test]
    fn group_lines_are_read_for_layouts_with_several_groups() {
        let line = |s: &str| -> Fields {
            s.split_whitespace()
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.into(), v.into()))
                .collect()
        };
        let o = Outcome {
            phases: vec![line("name=rate target=10000 per_s=10000 p99_us=900 messages=167")],
            groups: vec![
                line("name=rate target=10000 group=0 per_s=3333 p99_us=500"),
                line("name=rate target=10000 group=1 per_s=6667 p99_us=1200"),
            ],
            ..Outcome::default()
        };
        let p99 = |layout: &Layout, g| phase(&o, layout, "rate", 10_000.0, g).map(|p| get(p, "p99_us"));
        assert_eq!(p99(&LAYOUTS[2], 1), Some(1200.0));
        assert_eq!(p99(&LAYOUTS[2], 0), Some(500.0));
        assert_eq!(p99(&LAYOUTS[1], 0), Some(900.0), "one group: the PHASE line");
        assert_eq!(phase(&o, &LAYOUTS[2], "saturation", 0.0, 0), None);
    }
}
