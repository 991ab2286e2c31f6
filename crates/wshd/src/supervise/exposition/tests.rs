//! Tests of the merge: real expositions of our own [`Metrics`], and bad input.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::metrics::Metrics;

/// One worker's metrics: `opened` connections on `/echo` (`open` of them still open), one
/// handshake per connection taking `handshake`, `loads` plugin loads.
fn worker_metrics(
    live: fn() -> u64,
    opened: usize,
    open: usize,
    handshake: Duration,
    loads: usize,
) -> String {
    let metrics = Arc::new(Metrics::new(live));
    let echo = metrics.route("/echo");
    let mut slots = Vec::new();
    for _ in 0..opened {
        slots.push(metrics.open(&echo, None, None).unwrap_or_else(|e| panic!("{e:?}")));
        metrics.handshake(Some(&echo), "101", handshake);
    }
    slots.truncate(open);
    for _ in 0..loads {
        metrics.plugin_counters().loaded();
    }
    let traffic = echo.traffic.attach();
    traffic.message_in(opened * 10);
    traffic.delivered(Duration::from_micros(3));
    metrics.close("/echo", 1000, "client");
    metrics.encode()
}

/// Two different workers' expositions.
fn two_workers() -> (String, String) {
    let a = worker_metrics(|| 1, 2, 1, Duration::from_millis(2), 1);
    let b = {
        let metrics = Arc::new(Metrics::new(|| 2));
        let echo = metrics.route("/echo");
        let chat = metrics.route("/chat");
        let _open = [
            metrics.open(&echo, None, None).unwrap_or_else(|e| panic!("{e:?}")),
            metrics.open(&echo, None, None).unwrap_or_else(|e| panic!("{e:?}")),
            metrics.open(&chat, None, None).unwrap_or_else(|e| panic!("{e:?}")),
        ];
        metrics.handshake(Some(&echo), "101", Duration::from_millis(20));
        metrics.handshake(None, "404", Duration::ZERO);
        metrics.plugin_counters().loaded();
        metrics.plugin_counters().loaded();
        metrics.encode()
    };
    (a, b)
}

/// The samples of an exposition: `name{labels}` → value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("no value in {l}"));
            let value = value.parse::<f64>().unwrap_or_else(|e| panic!("{value}: {e}"));
            (key.to_owned(), value)
        })
        .collect()
}

/// The family names of an exposition's `# TYPE` lines, in order.
fn families(text: &str) -> Vec<&str> {
    text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect()
}

fn sample<'a>(text: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no sample {key} in\n{text}"))
}

const RESTARTS: &str = "# HELP wshd_worker_restarts Worker processes restarted\n\
    # TYPE wshd_worker_restarts counter\n\
    wshd_worker_restarts_total 4\n\
    # EOF\n";

#[test]
fn real_expositions_are_summed_per_sample() {
    let (a, b) = two_workers();
    let merged = merge(RESTARTS, &[&a, &b]);
    assert_eq!(merged.stats, MergeStats { inputs: 3, bad_lines: 0, missing_eof: 0 });
    let (sa, sb, sm) = (samples(&a), samples(&b), samples(&merged.text));
    for key in sa.keys().chain(sb.keys()) {
        let expected = sa.get(key).unwrap_or(&0.0) + sb.get(key).unwrap_or(&0.0);
        let got = sm.get(key).unwrap_or_else(|| panic!("{key} missing in\n{}", merged.text));
        assert!((got - expected).abs() < 1e-9, "{key}: {got} != {expected}\n{}", merged.text);
    }
    assert_eq!(sm.len(), sa.keys().chain(sb.keys()).collect::<std::collections::HashSet<_>>().len() + 1);
    let text = &merged.text;
    assert_eq!(sample(text, "wshd_connections_open{route=\"/echo\"}"), "3");
    assert_eq!(sample(text, "wshd_connections_total{route=\"/echo\"}"), "4");
    assert_eq!(sample(text, "wshd_connections_total{route=\"/chat\"}"), "1");
    assert_eq!(sample(text, "wshd_handshakes_total{route=\"/echo\",status=\"101\"}"), "3");
    assert_eq!(sample(text, "wshd_handshakes_total{route=\"none\",status=\"404\"}"), "1");
    assert_eq!(sample(text, "wshd_plugin_loads_total"), "3");
    assert_eq!(sample(text, "wshd_plugin_live_generations"), "3");
    assert_eq!(sample(text, "wshd_worker_restarts_total"), "4");
}

#[test]
fn histogram_buckets_sum_and_stay_integers() {
    let (a, b) = two_workers();
    let text = merge("", &[a, b]).text;
    let bucket = |le: &str| {
        sample(&text, &format!("wshd_handshake_duration_seconds_bucket{{le=\"{le}\",route=\"/echo\"}}"))
            .to_owned()
    };
    // Worker a: two handshakes of 2 ms; worker b: one of 20 ms.
    assert_eq!(bucket("0.001"), "0");
    assert_eq!(bucket("0.0025"), "2");
    assert_eq!(bucket("0.025"), "3");
    assert_eq!(bucket("+Inf"), "3");
    assert_eq!(sample(&text, "wshd_handshake_duration_seconds_count{route=\"/echo\"}"), "3");
    let sum = sample(&text, "wshd_handshake_duration_seconds_sum{route=\"/echo\"}");
    let sum: f64 = sum.parse().unwrap_or_else(|e| panic!("{sum}: {e}"));
    assert!((sum - 0.024).abs() < 1e-9, "{sum}");
    assert_eq!(
        sample(&text, "wshd_message_delivery_seconds_bucket{le=\"0.00001\",route=\"/echo\"}"),
        "1",
        "only worker a delivered a message"
    );
}

#[test]
fn families_keep_first_seen_order_and_appear_once() {
    let (a, b) = two_workers();
    let merged = merge(RESTARTS, &[&a, &b]).text;
    let mut expected = families(&a);
    expected.push("wshd_worker_restarts");
    assert_eq!(families(&merged), expected);
    for keyword in ["# HELP ", "# TYPE "] {
        let lines: Vec<&str> = merged.lines().filter(|l| l.starts_with(keyword)).collect();
        assert_eq!(lines.len(), expected.len(), "{keyword}once per family:\n{merged}");
    }
    assert_eq!(merged.matches("# EOF").count(), 1);
    assert!(merged.ends_with("\n# EOF\n"));
}

#[test]
fn a_merged_exposition_merges_to_itself() {
    let (a, b) = two_workers();
    let merged = merge(RESTARTS, &[&a, &b]);
    let again = merge(&merged.text, &[] as &[&str]);
    assert_eq!(again.text, merged.text);
    assert_eq!(again.stats, MergeStats { inputs: 1, bad_lines: 0, missing_eof: 0 });
    let one = merge("", &[&a]).text;
    assert_eq!(samples(&one), samples(&a), "one worker alone is unchanged");
}

#[test]
fn series_stay_together_across_workers() {
    let a = "# TYPE h histogram\nh_bucket{le=\"1\",r=\"a\"} 1\nh_bucket{le=\"+Inf\",r=\"a\"} 2\nh_count{r=\"a\"} 2\n# EOF\n";
    let b = "# TYPE h histogram\nh_bucket{le=\"1\",r=\"b\"} 5\nh_bucket{le=\"+Inf\",r=\"b\"} 5\nh_count{r=\"b\"} 5\n\
             h_bucket{le=\"1\",r=\"a\"} 1\nh_bucket{le=\"+Inf\",r=\"a\"} 1\nh_count{r=\"a\"} 1\nh_created{r=\"a\"} 7\n# EOF\n";
    let merged = merge("", &[a, b]).text;
    assert_eq!(
        merged,
        "# TYPE h histogram\n\
         h_bucket{le=\"1\",r=\"a\"} 2\nh_bucket{le=\"+Inf\",r=\"a\"} 3\nh_count{r=\"a\"} 3\nh_created{r=\"a\"} 7\n\
         h_bucket{le=\"1\",r=\"b\"} 5\nh_bucket{le=\"+Inf\",r=\"b\"} 5\nh_count{r=\"b\"} 5\n# EOF\n"
    );
}

#[test]
fn created_takes_the_minimum_info_and_quantiles_the_maximum() {
    let a = "# TYPE c counter\nc_total 1\nc_created 1700000000.5\n# TYPE build info\nbuild_info{v=\"1\"} 1\n# EOF\n";
    let b = "# TYPE c counter\nc_total 2\nc_created 1600000000.25\n# TYPE build info\nbuild_info{v=\"1\"} 1\n# EOF\n";
    let merged = merge("", &[a, b, a]).text;
    assert_eq!(sample(&merged, "c_total"), "4");
    assert_eq!(sample(&merged, "c_created"), "1600000000.25");
    assert_eq!(sample(&merged, "build_info{v=\"1\"}"), "1");
    let a = "# TYPE s summary\ns{quantile=\"0.5\"} 3\ns_sum 10\ns_count 2\n# EOF\n";
    let b = "# TYPE s summary\ns{quantile=\"0.5\"} 5\ns_sum 1.5\ns_count 1\n# EOF\n";
    let merged = merge("", &[a, b]).text;
    assert_eq!(merged, "# TYPE s summary\ns{quantile=\"0.5\"} 5\ns_sum 11.5\ns_count 3\n# EOF\n");
}

#[test]
fn integers_stay_integers_until_a_float_joins() {
    let merged =
        merge("", &["a 1\nb 1\nc 1.0\nd +Inf\ne NaN\nf -3\n", "a 2\nb 0.5\nc 2.0\nd 1\ne 1\nf 1e3\n"]).text;
    assert_eq!(sample(&merged, "a"), "3");
    assert_eq!(sample(&merged, "b"), "1.5");
    assert_eq!(sample(&merged, "c"), "3.0");
    assert_eq!(sample(&merged, "d"), "+Inf");
    assert_eq!(sample(&merged, "e"), "NaN");
    assert_eq!(sample(&merged, "f"), "997.0");
    let huge = i128::MAX;
    let merged = merge("", &[format!("g {huge}\n"), "g 1\n".to_owned()]).text;
    assert_eq!(sample(&merged, "g"), format!("{:?}", huge as f64), "an overflow turns into a float");
}

#[test]
fn labels_with_escapes_commas_and_braces_match_in_any_order() {
    let a = "# TYPE x counter\nx_total{path=\"a,b\",q=\"say \\\"hi\\\", ok\",z=\"back\\\\slash} # 1 2\"} 1\n# EOF\n";
    let b = "# TYPE x counter\nx_total{ q=\"say \\\"hi\\\", ok\" , z=\"back\\\\slash} # 1 2\",path=\"a,b\",} 2\n# EOF\n";
    let merged = merge("", &[a, b]);
    assert_eq!(merged.stats.bad_lines, 0);
    assert_eq!(
        merged.text,
        "# TYPE x counter\nx_total{path=\"a,b\",q=\"say \\\"hi\\\", ok\",z=\"back\\\\slash} # 1 2\"} 3\n# EOF\n"
    );
}

#[test]
fn timestamps_and_exemplars_are_dropped() {
    let a = "# TYPE x counter\nx_total 3 1700000000\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2 # {trace=\"a b\"} 0.5 123\n# EOF\n";
    let merged = merge("", &[a, a]);
    assert_eq!(merged.stats.bad_lines, 0);
    assert_eq!(
        merged.text,
        "# TYPE x counter\nx_total 6\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 4\n# EOF\n"
    );
}

#[test]
fn the_first_descriptor_wins() {
    let a = "# HELP x first\n# TYPE x counter\nx_total 1\n# EOF\n";
    let b = "# HELP x second\n# TYPE x gauge\n# UNIT x seconds\nx_total 1\n# EOF\n";
    let merged = merge("", &[a, b]).text;
    assert_eq!(merged, "# HELP x first\n# TYPE x counter\n# UNIT x seconds\nx_total 2\n# EOF\n");
}

#[test]
fn a_missing_eof_is_merged_and_counted() {
    let (a, _) = two_workers();
    let truncated = a.trim_end_matches("# EOF\n");
    let merged = merge("", &[truncated, &a]);
    assert_eq!(merged.stats, MergeStats { inputs: 3, bad_lines: 0, missing_eof: 2 });
    assert_eq!(sample(&merged.text, "wshd_connections_total{route=\"/echo\"}"), "4");
    assert_eq!(merged.text.matches("# EOF").count(), 1);
}

#[test]
fn empty_input_gives_an_empty_exposition() {
    let merged = merge("", &[] as &[String]);
    assert_eq!(merged.text, "# EOF\n");
    assert_eq!(merged.stats, MergeStats { inputs: 1, bad_lines: 0, missing_eof: 1 });
    let merged = merge("# EOF\n", &["", "\n\n", "# EOF\n"]);
    assert_eq!(merged.text, "# EOF\n");
    assert_eq!(merged.stats, MergeStats { inputs: 4, bad_lines: 0, missing_eof: 2 });
}

#[test]
fn garbage_lines_are_skipped_and_counted() {
    let garbage = "garbage\n{{{\nx_total{a=\"1} 5\nx_total{a=1} 5\nx_total{a=\"1\",a=\"2\"} 5\n\
                   x_total{a=\"1\"}5\n\u{0}\u{1} binary\n# TYPE y nonsense\n# TYPE 9y counter\n\
                   foo 1 2 3\nfoo one\nfoo 1 yesterday\nfoo{} \n1abc 2\n\
                   # a free comment\n\nx_total 5\n# EOF\nafter 1\n";
    let merged = merge(RESTARTS, &[garbage]);
    assert_eq!(merged.stats, MergeStats { inputs: 2, bad_lines: 15, missing_eof: 0 });
    assert_eq!(
        merged.text,
        "x_total 5\n# HELP wshd_worker_restarts Worker processes restarted\n\
         # TYPE wshd_worker_restarts counter\nwshd_worker_restarts_total 4\n# EOF\n"
    );
}

#[test]
fn no_truncation_of_a_real_exposition_panics() {
    let (a, _) = two_workers();
    for (end, _) in a.char_indices() {
        let merged = merge(&a[..end], &[&a[end..]]);
        assert!(merged.text.ends_with("# EOF\n"));
        assert_eq!(merged.text.matches("# EOF").count(), 1);
    }
    let bytes: String = (0u8..=255).cycle().take(4096).map(char::from).collect();
    let merged = merge(&bytes, &[&bytes]);
    assert!(merged.text.ends_with("# EOF\n"));
}

#[test]
fn worker_gauges_are_kept_per_worker() {
    let gauge = worker_gauge("wshd_worker_connections", "Open connections\nper worker", [(0, 3i64), (1, 5)]);
    let (a, b) = two_workers();
    let merged = merge(&gauge, &[a, b]);
    assert_eq!(merged.stats.bad_lines, 0);
    let tail = merged
        .text
        .split("# HELP wshd_worker_connections ")
        .nth(1)
        .unwrap_or_else(|| panic!("{}", merged.text));
    assert_eq!(
        tail,
        "Open connections\\nper worker\n# TYPE wshd_worker_connections gauge\n\
         wshd_worker_connections{worker=\"0\"} 3\nwshd_worker_connections{worker=\"1\"} 5\n# EOF\n"
    );
    let floats = worker_gauge("up", "", [(2, 0.5)]);
    assert_eq!(floats, "# HELP up \n# TYPE up gauge\nup{worker=\"2\"} 0.5\n# EOF\n");
}
