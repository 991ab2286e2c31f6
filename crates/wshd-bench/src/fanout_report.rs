//! The report of `fanout`: the table (one per subscriber count, ratios of wshd to the best
//! peer of each column, the goal) and the JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::fanout::{Family, FanoutArgs, Fields, Outcome, Subject, get};
use crate::run::{group, num, quoted};

/// A figure: grouped thousands with no decimals, else `decimals` decimals; "—" if unknown.
pub(crate) fn fmt(x: f64, decimals: usize) -> String {
    if !x.is_finite() {
        "—".into()
    } else if decimals == 0 {
        group(x)
    } else {
        format!("{x:.decimals$}")
    }
}

/// The best peer (not wshd) value of a column: the highest when `higher_is_better`.
fn best_peer(
    results: &BTreeMap<(usize, String), Outcome>,
    subjects: &[Subject],
    n: usize,
    f: impl Fn(&Outcome) -> f64,
    higher_is_better: bool,
) -> Option<(f64, String)> {
    subjects
        .iter()
        .filter(|s| s.family != Family::Wshd)
        .filter_map(|s| Some((f(results.get(&(n, s.key.clone()))?), s.key.clone())))
        .filter(|(v, _)| v.is_finite())
        .reduce(|a, b| if (b.0 > a.0) == higher_is_better { b } else { a })
}

/// The columns: heading, value, decimals, and for the ratio row whether higher is better
/// (`None`: no ratio).
type Column = (String, Box<dyn Fn(&Outcome) -> f64>, usize, Option<bool>);

fn columns(args: &FanoutArgs) -> Vec<Column> {
    let seconds = args.phases.seconds;
    let mut cols: Vec<Column> =
        vec![("deliveries/s (saturation)".into(), Box::new(Outcome::deliveries_per_s), 0, Some(true))];
    for &rate in &args.phases.rates {
        let at = group(rate);
        cols.push((
            format!("p50 µs at {at}/s"),
            Box::new(move |o: &Outcome| o.latency(rate, "p50_us")),
            0,
            Some(false),
        ));
        cols.push((
            format!("p99 µs at {at}/s"),
            Box::new(move |o: &Outcome| o.latency(rate, "p99_us")),
            0,
            Some(false),
        ));
        cols.push((
            format!("delivered/s at {at}/s"),
            Box::new(move |o: &Outcome| o.phase("rate", rate).map_or(f64::NAN, |p| get(p, "per_s"))),
            0,
            None,
        ));
    }
    cols.push((
        "server CPU s per 1M deliveries".into(),
        Box::new(Outcome::cpu_s_per_million),
        2,
        Some(false),
    ));
    cols.push(("KiB per subscriber".into(), Box::new(Outcome::kib_per_subscriber), 1, Some(false)));
    cols.push((
        "client CPU % (saturation)".into(),
        Box::new(move |o: &Outcome| {
            o.saturation().map_or(f64::NAN, |p| get(p, "loadgen_cpu_s") / seconds * 100.0)
        }),
        0,
        None,
    ));
    cols
}

/// The goal for one wshd subject: ≥ 1.5× the best peer's deliveries/s and a lower
/// p99 than every peer.
fn goal(
    results: &BTreeMap<(usize, String), Outcome>,
    subjects: &[Subject],
    n: usize,
    s: &Subject,
    rate: f64,
) -> String {
    let Some(o) = results.get(&(n, s.key.clone())) else { return String::new() };
    let best_rate = best_peer(results, subjects, n, Outcome::deliveries_per_s, true);
    let best_p99 = best_peer(results, subjects, n, |x: &Outcome| x.latency(rate, "p99_us"), false);
    let (Some((r, _)), Some((p, _))) = (best_rate, best_p99) else {
        return format!("\n{}: no peer to compare with.\n", s.key);
    };
    let ratio = o.deliveries_per_s() / r;
    let p99 = o.latency(rate, "p99_us");
    let met = ratio >= 1.5 && p99 < p && o.faults() == 0.0;
    format!(
        "\nGoal for {} ({} subscribers): {:.2}× the best peer's deliveries/s (≥ 1.5× wanted), p99 {:.0} µs vs the best peer's {:.0} µs: {}.\n",
        s.key,
        group(n as f64),
        ratio,
        p99,
        p,
        if met { "MET" } else { "NOT MET" }
    )
}

/// The tables, one per subscriber count, with the ratio rows and the goal lines.
pub(crate) fn table(
    args: &FanoutArgs,
    results: &BTreeMap<(usize, String), Outcome>,
    subjects: &[Subject],
) -> String {
    let cols = columns(args);
    let mut t = String::new();
    let mut goals = Vec::new();
    for &n in &args.subscribers {
        let _ = writeln!(
            t,
            "\n{} subscribers, {} B {} messages\n",
            group(n as f64),
            args.phases.size,
            if args.phases.binary { "binary" } else { "text" }
        );
        let heads: Vec<&str> = cols.iter().map(|c| c.0.as_str()).collect();
        let _ = writeln!(t, "| server | {} | lost / misordered / failed subscribers |", heads.join(" | "));
        let _ = writeln!(t, "|---|{}---|", "---|".repeat(cols.len()));
        for s in subjects {
            let Some(o) = results.get(&(n, s.key.clone())) else { continue };
            let cells: Vec<String> = cols.iter().map(|(_, f, d, _)| fmt(f(o), *d)).collect();
            let faults = match &o.failure {
                Some(e) => format!("**FAILED**: {e}"),
                None if o.faults() > 0.0 => format!(
                    "**{} / {} / {}** (LOSES MESSAGES)",
                    get(&o.result, "lost"),
                    get(&o.result, "misordered"),
                    get(&o.result, "errors")
                ),
                None => format!("0 / 0 / 0 of {} × {}", group(get(&o.result, "checked")), group(n as f64)),
            };
            let _ = writeln!(t, "| {} | {} | {faults} |", s.label, cells.join(" | "));
        }
        for s in subjects.iter().filter(|s| s.family == Family::Wshd) {
            let Some(o) = results.get(&(n, s.key.clone())) else { continue };
            let cells: Vec<String> = cols
                .iter()
                .map(|(_, f, _, higher)| match higher.and_then(|h| best_peer(results, subjects, n, f, h)) {
                    Some((best, key)) => format!("{:.2}× ({key})", f(o) / best),
                    None => String::new(),
                })
                .collect();
            let _ = writeln!(t, "| {} ÷ best peer | {} | |", s.key, cells.join(" | "));
            goals.push(goal(results, subjects, n, s, args.phases.rates.first().copied().unwrap_or(f64::NAN)));
        }
        for g in goals.drain(..) {
            let _ = write!(t, "{g}");
        }
    }
    let _ = writeln!(
        t,
        "\nSaturation: at most {} messages in flight beyond the last subscriber's receipts; {} s warm-up + {} s measured per phase; fresh server per row.",
        args.phases.window, args.phases.warmup, args.phases.seconds
    );
    t
}

/// A JSON object of `key=value` fields (numbers as numbers).
pub(crate) fn fields_json(f: &Fields) -> String {
    let items: Vec<String> = f
        .iter()
        .map(|(k, v)| match v.parse::<f64>() {
            Ok(x) if x.is_finite() => format!("{}: {v}", quoted(k)),
            _ => format!("{}: {}", quoted(k), quoted(v)),
        })
        .collect();
    format!("{{{}}}", items.join(", "))
}

/// The JSON report.
pub(crate) fn json(
    args: &FanoutArgs,
    placement: &str,
    results: &BTreeMap<(usize, String), Outcome>,
    subjects: &[Subject],
) -> String {
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut entries = Vec::new();
    for &n in &args.subscribers {
        for s in subjects {
            let Some(o) = results.get(&(n, s.key.clone())) else { continue };
            let phases: Vec<String> = o.phases.iter().map(fields_json).collect();
            entries.push(format!(
                "    {{\"server\": {}, \"label\": {}, \"subscribers\": {n}, \"deliveries_per_s\": {}, \"p50_us\": {}, \"p99_us\": {}, \
                 \"server_cpu_s_per_million_deliveries\": {}, \"kib_per_subscriber\": {}, \"faults\": {}, \"failure\": {}, \
                 \"phases\": [{}], \"result\": {}}}",
                quoted(&s.key),
                quoted(&s.label),
                num(o.deliveries_per_s()),
                num(o.latency(args.phases.rates.first().copied().unwrap_or(f64::NAN), "p50_us")),
                num(o.latency(args.phases.rates.first().copied().unwrap_or(f64::NAN), "p99_us")),
                num(o.cpu_s_per_million()),
                num(o.kib_per_subscriber()),
                num(o.faults()),
                o.failure.as_deref().map_or("null".into(), quoted),
                phases.join(", "),
                fields_json(&o.result)
            ));
        }
    }
    let rates: Vec<String> = args.phases.rates.iter().map(|r| format!("{r}")).collect();
    format!(
        "{{\n  \"benchmark\": \"wshd fan-out comparison (wshd-bench fanout)\",\n  \"unix_time\": {unix},\n  \"cpus\": {},\n  \
         \"pinning\": {},\n  \"message_bytes\": {},\n  \"binary\": {},\n  \"rates_deliveries_per_s\": [{}],\n  \"window\": {},\n  \
         \"warmup_s\": {},\n  \"seconds\": {},\n  \"results\": [\n{}\n  ]\n}}\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        quoted(placement),
        args.phases.size,
        args.phases.binary,
        rates.join(", "),
        args.phases.window,
        args.phases.warmup,
        args.phases.seconds,
        entries.join(",\n")
    )
}
