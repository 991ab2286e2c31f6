//! Merges the OpenMetrics (or Prometheus) text expositions of several worker processes, and
//! the master's own, into one: the master's `/metrics` answer, "metrics aggregated by the
//! master".
//!
//! The rules:
//!
//! * **Families** appear once each, in first-seen order over the inputs (see [`merge`]); the
//!   first `# HELP`, `# TYPE` and `# UNIT` seen for a name win (a later, different one is
//!   ignored).
//! * **Samples** with the same name and the same label set (in any label order) are combined
//!   into one; distinct label sets are kept. Combining is a sum (counters, gauges, histogram
//!   `_bucket`/`_sum`/`_count`, `_total`), except: `_created` takes the minimum (the oldest
//!   worker's start), `info` and `stateset` samples and summary quantiles take the maximum
//!   (a sum would be meaningless; the quantile is only an upper bound).
//! * **Series stay contiguous**: the samples of one label set (the histogram's buckets, sum,
//!   count and created, keyed by the labels other than `le` and `quantile`) are written
//!   together, in first-seen order.
//! * **Values** are integers or floats; a result stays an integer while every value combined
//!   into it is one (and the sum does not overflow `i128`). Timestamps and exemplars are
//!   dropped: the merged sample is "now".
//! * **Bad input** never panics: a line that does not parse is skipped and counted
//!   ([`MergeStats::bad_lines`]), as is any non-empty line after an input's `# EOF`; an input
//!   without `# EOF` (a truncated reply) is still merged, and counted
//!   ([`MergeStats::missing_eof`]). Other `#` comments and empty lines are skipped silently.
//!   The output ends with exactly one `# EOF`.
//!
//! Written by hand: the crates that parse the text format (e.g. `prometheus-parse`,
//! `openmetrics-parser`) either lose what a merge needs (family order, `# UNIT`, integer
//! formatting, the series grouping) or do not write it back, and none merges; the grammar is
//! small enough to parse here, leniently (Prometheus' extra whitespace and free comments are
//! accepted).
//!
//! The master may add per-worker figures (connections per worker, …) without breaking the
//! sum: [`worker_gauge`] writes a gauge family labelled by worker, to be passed as one more
//! input (its label sets are distinct, so nothing is summed).

use std::collections::HashMap;
use std::fmt;

/// Sample-name suffixes that tie a sample to its family (`foo_total` belongs to `foo`).
const SUFFIXES: [&str; 8] = ["_total", "_created", "_bucket", "_sum", "_count", "_gcount", "_gsum", "_info"];

/// Metric types of the `# TYPE` line (OpenMetrics' and Prometheus' `untyped`).
const TYPES: [&str; 9] =
    ["counter", "gauge", "histogram", "gaugehistogram", "stateset", "info", "summary", "unknown", "untyped"];

/// A sample value: integers stay integers while every value combined into them is one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value {
    /// An integer (counters, integer gauges, bucket counts).
    Int(i128),
    /// A float (`0.25`, `1e-3`, `+Inf`, `NaN`).
    Float(f64),
}

impl Value {
    fn as_f64(self) -> f64 {
        match self {
            Value::Int(i) => i as f64,
            Value::Float(f) => f,
        }
    }

    fn parse(text: &str) -> Option<Value> {
        if let Ok(i) = text.parse::<i128>() {
            return Some(Value::Int(i));
        }
        let special = matches!(text.to_ascii_lowercase().as_str(), "nan" | "inf" | "+inf" | "-inf");
        let numeric = text.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
        if !(special || numeric) {
            return None;
        }
        text.parse::<f64>().ok().map(Value::Float)
    }

    fn sum(self, other: Value) -> Value {
        match (self, other) {
            (Value::Int(a), Value::Int(b)) => {
                a.checked_add(b).map_or(Value::Float(a as f64 + b as f64), Value::Int)
            }
            _ => Value::Float(self.as_f64() + other.as_f64()),
        }
    }

    /// The smaller (`min`) or the larger of two values, a float if either is one.
    fn pick(self, other: Value, min: bool) -> Value {
        if let (Value::Int(a), Value::Int(b)) = (self, other) {
            return Value::Int(if min { a.min(b) } else { a.max(b) });
        }
        let (a, b) = (self.as_f64(), other.as_f64());
        Value::Float(if min { a.min(b) } else { a.max(b) })
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Value {
        Value::Int(value.into())
    }
}

impl From<u64> for Value {
    fn from(value: u64) -> Value {
        Value::Int(value.into())
    }
}

impl From<f64> for Value {
    fn from(value: f64) -> Value {
        Value::Float(value)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) if x.is_nan() => f.write_str("NaN"),
            Value::Float(x) if x.is_infinite() => f.write_str(if x > 0.0 { "+Inf" } else { "-Inf" }),
            // `{:?}` keeps a `.0` on integral floats and switches to exponents for very large
            // or small ones, both valid OpenMetrics numbers.
            Value::Float(x) => write!(f, "{x:?}"),
        }
    }
}

/// What a merge met along the way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MergeStats {
    /// Expositions merged.
    pub(crate) inputs: usize,
    /// Lines skipped because they did not parse (or followed `# EOF`).
    pub(crate) bad_lines: usize,
    /// Inputs that ended without `# EOF` (truncated or not OpenMetrics).
    pub(crate) missing_eof: usize,
}

/// The merged exposition and what the merge met.
#[derive(Debug, Clone)]
pub(crate) struct Merged {
    /// One OpenMetrics text, ending with `# EOF`.
    pub(crate) text: String,
    /// Counts of inputs and of bad input.
    pub(crate) stats: MergeStats,
}

/// Merges the workers' expositions and then the master's own (so the workers' families come
/// first, as on a single-process server, and the master's after them).
pub(crate) fn merge<S: AsRef<str>>(master: &str, workers: &[S]) -> Merged {
    let mut merger = Merger::default();
    for worker in workers {
        merger.add(worker.as_ref());
    }
    merger.add(master);
    merger.finish()
}

/// A gauge family `name` with one sample per worker, labelled `worker="<index>"`, as a
/// complete exposition (ending with `# EOF`) to pass to the merge as one more input.
/// `name` must be a valid metric name; `help` is escaped here.
pub(crate) fn worker_gauge<V: Into<Value>>(
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (usize, V)>,
) -> String {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let mut out = format!("# HELP {name} {help}\n# TYPE {name} gauge\n");
    for (worker, value) in values {
        out.push_str(&format!("{name}{{worker=\"{worker}\"}} {}\n", value.into()));
    }
    out.push_str("# EOF\n");
    out
}

/// One label: its name and its value as written (escapes kept, quotes removed).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Label {
    name: String,
    value: String,
}

/// One sample line, parsed.
#[derive(Debug)]
struct ParsedSample<'a> {
    name: &'a str,
    labels: Vec<Label>,
    value: Value,
}

/// One merged sample.
#[derive(Debug)]
struct Sample {
    name: String,
    /// In first-seen order, for the output.
    labels: Vec<Label>,
    /// Sorted, for matching.
    key: Vec<Label>,
    value: Value,
}

/// The samples of one label set (`le` and `quantile` aside) of a family, kept together.
#[derive(Debug, Default)]
struct Series {
    samples: Vec<Sample>,
}

/// How samples of the same name and labels combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Sum,
    Min,
    Max,
}

/// One metric family: its descriptor lines and its series.
#[derive(Debug, Default)]
struct Family {
    name: String,
    help: Option<String>,
    kind: Option<String>,
    unit: Option<String>,
    series: Vec<Series>,
    by_labels: HashMap<Vec<Label>, usize>,
}

impl Family {
    /// How a sample of this family combines (`suffix` is what follows the family's name).
    fn rule(&self, suffix: &str, labels: &[Label]) -> Rule {
        let kind = self.kind.as_deref();
        let quantile = kind == Some("summary") && labels.iter().any(|l| l.name == "quantile");
        if suffix == "_created" {
            Rule::Min
        } else if matches!(kind, Some("info" | "stateset")) || quantile {
            Rule::Max
        } else {
            Rule::Sum
        }
    }

    fn add(&mut self, sample: ParsedSample<'_>) {
        let suffix = sample.name.strip_prefix(self.name.as_str()).unwrap_or("");
        let rule = self.rule(suffix, &sample.labels);
        let mut series_key: Vec<Label> =
            sample.labels.iter().filter(|l| l.name != "le" && l.name != "quantile").cloned().collect();
        series_key.sort();
        let next = self.series.len();
        let index = *self.by_labels.entry(series_key).or_insert(next);
        if index == next {
            self.series.push(Series::default());
        }
        let mut key = sample.labels.clone();
        key.sort();
        let series = &mut self.series[index];
        match series.samples.iter_mut().find(|s| s.name == sample.name && s.key == key) {
            Some(found) => {
                found.value = match rule {
                    Rule::Sum => found.value.sum(sample.value),
                    Rule::Min => found.value.pick(sample.value, true),
                    Rule::Max => found.value.pick(sample.value, false),
                }
            }
            None => series.samples.push(Sample {
                name: sample.name.to_owned(),
                labels: sample.labels,
                key,
                value: sample.value,
            }),
        }
    }

    fn render(&self, out: &mut String) {
        let name = &self.name;
        for (keyword, text) in [("HELP", &self.help), ("TYPE", &self.kind), ("UNIT", &self.unit)] {
            if let Some(text) = text {
                out.push_str(&format!("# {keyword} {name} {text}\n"));
            }
        }
        for sample in self.series.iter().flat_map(|s| &s.samples) {
            out.push_str(&sample.name);
            if !sample.labels.is_empty() {
                let labels: Vec<String> =
                    sample.labels.iter().map(|l| format!("{}=\"{}\"", l.name, l.value)).collect();
                out.push_str(&format!("{{{}}}", labels.join(",")));
            }
            out.push_str(&format!(" {}\n", sample.value));
        }
    }
}

/// Merges expositions one at a time; [`merge`] is the usual way in.
#[derive(Debug, Default)]
pub(crate) struct Merger {
    families: Vec<Family>,
    by_name: HashMap<String, usize>,
    stats: MergeStats,
}

impl Merger {
    /// Merges one more exposition (one worker's, or the master's).
    pub(crate) fn add(&mut self, text: &str) {
        self.stats.inputs += 1;
        // The family of the last descriptor line of this input: its samples follow it.
        let mut current = None;
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            if line.trim_end() == "# EOF" {
                self.stats.bad_lines += lines.filter(|l| !l.trim().is_empty()).count();
                return;
            }
            if !self.line(line, &mut current) {
                self.stats.bad_lines += 1;
            }
        }
        self.stats.missing_eof += 1;
    }

    /// The merged exposition, ending with one `# EOF`.
    pub(crate) fn finish(self) -> Merged {
        let mut text = String::new();
        for family in &self.families {
            family.render(&mut text);
        }
        text.push_str("# EOF\n");
        Merged { text, stats: self.stats }
    }

    /// Takes one line; false if it does not parse.
    fn line(&mut self, line: &str, current: &mut Option<usize>) -> bool {
        if line.trim().is_empty() {
            return true;
        }
        if let Some(comment) = line.strip_prefix('#') {
            return self.descriptor(comment, current);
        }
        let Some(sample) = parse_sample(line) else {
            return false;
        };
        let index = self.owner(sample.name, *current);
        self.families[index].add(sample);
        true
    }

    /// Takes a `#` line: `HELP`, `TYPE` or `UNIT` (anything else is a comment, skipped).
    fn descriptor(&mut self, comment: &str, current: &mut Option<usize>) -> bool {
        let Some((keyword, rest)) = comment.trim_start().split_once([' ', '\t']) else {
            return true;
        };
        if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
            return true;
        }
        let rest = rest.trim_start();
        let (name, text) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
        let text = if keyword == "HELP" { text } else { text.trim() };
        if !is_metric_name(name) || (keyword == "TYPE" && !TYPES.contains(&text)) {
            return false;
        }
        let index = self.family(name);
        let family = &mut self.families[index];
        let slot = match keyword {
            "HELP" => &mut family.help,
            "TYPE" => &mut family.kind,
            _ => &mut family.unit,
        };
        slot.get_or_insert_with(|| text.to_owned());
        *current = Some(index);
        true
    }

    /// The family a sample belongs to: the current one if the name fits it, else a known
    /// family the name fits, else a new untyped family of that name.
    fn owner(&mut self, name: &str, current: Option<usize>) -> usize {
        let fits = |family: &str| {
            name.strip_prefix(family).is_some_and(|suffix| suffix.is_empty() || SUFFIXES.contains(&suffix))
        };
        if let Some(index) = current.filter(|&i| fits(&self.families[i].name)) {
            return index;
        }
        if let Some(&index) = self.by_name.get(name) {
            return index;
        }
        let stem = SUFFIXES.iter().find_map(|suffix| name.strip_suffix(suffix));
        if let Some(&index) = stem.and_then(|stem| self.by_name.get(stem)) {
            return index;
        }
        self.family(name)
    }

    /// The index of family `name`, made on first sight.
    fn family(&mut self, name: &str) -> usize {
        if let Some(&index) = self.by_name.get(name) {
            return index;
        }
        self.families.push(Family { name: name.to_owned(), ..Family::default() });
        self.by_name.insert(name.to_owned(), self.families.len() - 1);
        self.families.len() - 1
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn is_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`
fn is_label_name(name: &str) -> bool {
    is_metric_name(name) && !name.contains(':')
}

/// Parses `name{labels} value [timestamp] [# exemplar]`; the timestamp and the exemplar are
/// checked loosely and dropped.
fn parse_sample(line: &str) -> Option<ParsedSample<'_>> {
    let end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let (name, mut rest) = line.split_at(end);
    if !is_metric_name(name) {
        return None;
    }
    let mut labels = Vec::new();
    if let Some(inside) = rest.strip_prefix('{') {
        (labels, rest) = parse_labels(inside)?;
    }
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let numbers = rest.split_once('#').map_or(rest, |(numbers, _exemplar)| numbers);
    let mut tokens = numbers.split_whitespace();
    let value = Value::parse(tokens.next()?)?;
    if let Some(timestamp) = tokens.next() {
        timestamp.parse::<f64>().ok()?;
    }
    if tokens.next().is_some() {
        return None;
    }
    Some(ParsedSample { name, labels, value })
}

/// Parses the labels after `{` up to and including `}`; returns them and the rest of the
/// line. Values keep their escapes; a label name may not repeat.
fn parse_labels(mut rest: &str) -> Option<(Vec<Label>, &str)> {
    let mut labels: Vec<Label> = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (name, after) = rest.split_once('=')?;
        let name = name.trim();
        if !is_label_name(name) || labels.iter().any(|l| l.name == name) {
            return None;
        }
        let (value, after) = quoted(after.trim_start().strip_prefix('"')?)?;
        labels.push(Label { name: name.to_owned(), value: value.to_owned() });
        rest = after.trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return None;
        }
    }
}

/// Splits a quoted string's inside (after the opening quote) at its closing quote: the
/// value with its escapes, and what follows the quote.
fn quoted(text: &str) -> Option<(&str, &str)> {
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next()?;
            }
            '"' => return Some((&text[..i], &text[i + 1..])),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests;
