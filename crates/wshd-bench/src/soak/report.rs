//! The soak's outputs: the CSV, a hand-written SVG plot of RSS, fds and threads over time,
//! and the flatness verdicts (least-squares slope of the last half of the run).

use std::fmt::Write as _;

use super::sample::Sample;

/// One plotted and judged quantity.
pub(super) struct Series {
    /// Its name and unit.
    pub(super) name: &'static str,
    /// Value of a process (master or worker) in a sample.
    pick: fn(&super::sample::Proc) -> f64,
    /// Growth per hour that is judged a leak (see [`thresholds`]).
    per_hour: f64,
    /// Change over the judged window that is noise, not growth.
    noise: f64,
}

/// The three series and their thresholds.
///
/// A run replaces a plugin 360 times an hour and churns 14,400 connections an hour, so a
/// leak of one plugin mapping per reload (6 MB) grows RSS by ~2 GiB/h, a leak of 300 bytes
/// per churned connection by ~4 MiB/h, one fd or thread per reload by 360/h and one fd per
/// churned connection by 14,400/h. Thresholds: RSS 4 MiB/h, fds 10/h, threads 4/h (each well
/// under the smallest of those). The noise floors are what a sample catches in passing:
/// allocator slack (2 MiB), connections being opened or closed at that instant (12 fds: churn,
/// slow readers and dribblers reconnecting, plugin files opened during a reload), and
/// tokio's blocking-pool threads coming and going (4 threads).
pub(super) fn thresholds() -> [Series; 3] {
    [
        Series { name: "RSS (MiB)", pick: |p| p.rss_kib as f64 / 1024.0, per_hour: 4.0, noise: 2.0 },
        Series { name: "open fds", pick: |p| p.fds as f64, per_hour: 10.0, noise: 12.0 },
        Series { name: "threads", pick: |p| p.threads as f64, per_hour: 4.0, noise: 4.0 },
    ]
}

impl Series {
    fn total(&self, s: &Sample) -> f64 {
        std::iter::once(&s.master).chain(&s.workers).map(self.pick).sum()
    }
}

/// Least-squares slope of `points` (x in hours), per hour.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

/// The verdict lines on the totals (master + workers) over the last half of the run, and
/// whether every series is flat.
pub(super) fn flatness(samples: &[Sample]) -> (Vec<String>, bool) {
    let end = samples.last().map_or(0.0, |s| s.t);
    let judged: Vec<&Sample> = samples.iter().filter(|s| s.t >= end / 2.0).collect();
    let window_h = (end - end / 2.0) / 3600.0;
    let mut lines = Vec::new();
    let mut all_flat = true;
    for series in thresholds() {
        let points: Vec<(f64, f64)> = judged.iter().map(|s| (s.t / 3600.0, series.total(s))).collect();
        let per_hour = slope(&points);
        let limit = series.per_hour.max(if window_h > 0.0 { series.noise / window_h } else { f64::INFINITY });
        // Fewer than 3 points in the window say nothing about a trend.
        let flat = per_hour <= limit && points.len() >= 3;
        all_flat &= flat;
        let (first, last) = (points.first().map_or(0.0, |p| p.1), points.last().map_or(0.0, |p| p.1));
        lines.push(format!(
            "{:<10} {:>10.1} → {:>10.1} over the last half ({} samples): slope {:+.1}/h, limit {:.1}/h: {}",
            series.name,
            first,
            last,
            points.len(),
            per_hour,
            limit,
            match (points.len() >= 3, flat) {
                (false, _) => "too few samples to judge",
                (true, true) => "flat",
                (true, false) => "GROWING",
            }
        ));
    }
    (lines, all_flat)
}

/// The CSV text.
pub(super) fn csv(samples: &[Sample]) -> String {
    let mut out = String::from(Sample::HEADER);
    out.push('\n');
    for s in samples {
        out.push_str(&s.csv());
        out.push('\n');
    }
    out
}

const WIDTH: f64 = 900.0;
const PANEL: f64 = 190.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 130.0;
const TOP: f64 = 40.0;
const GAP: f64 = 40.0;
/// (label, colour) of the lines of each panel: total, master, worker 1, worker 2.
const LINES: [(&str, &str); 4] =
    [("total", "#000000"), ("master", "#1f77b4"), ("worker 1", "#ff7f0e"), ("worker 2", "#2ca02c")];

/// The value of line `line` (see [`LINES`]) of `series` in sample `s`.
fn line_value(series: &Series, s: &Sample, line: usize) -> Option<f64> {
    match line {
        0 => Some(series.total(s)),
        1 => Some((series.pick)(&s.master)),
        k => s.workers.get(k - 2).map(series.pick),
    }
}

/// One panel: frame, axis labels, the warm-up line, a polyline per process and the total.
fn panel(svg: &mut String, series: &Series, samples: &[Sample], top: f64) {
    let end = samples.last().map_or(1.0, |s| s.t).max(1.0);
    let values = samples.iter().flat_map(|s| (0..LINES.len()).filter_map(|k| line_value(series, s, k)));
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo.is_finite() { (0.0f64.min(lo), hi.max(lo + 1.0) * 1.05) } else { (0.0, 1.0) };
    let plot_w = WIDTH - LEFT - RIGHT;
    let x = |t: f64| LEFT + t / end * plot_w;
    let y = |v: f64| top + PANEL - (v - lo) / (hi - lo) * PANEL;
    let _ = writeln!(
        svg,
        "<rect x=\"{LEFT}\" y=\"{top}\" width=\"{plot_w}\" height=\"{PANEL}\" fill=\"none\" stroke=\"#999\"/>\n\
         <text x=\"{LEFT}\" y=\"{:.0}\" font-weight=\"bold\">{}</text>\n\
         <text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{hi:.0}</text>\n\
         <text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{lo:.0}</text>\n\
         <line x1=\"{:.1}\" y1=\"{top}\" x2=\"{:.1}\" y2=\"{:.0}\" stroke=\"#bbb\" stroke-dasharray=\"4 4\"/>",
        top - 6.0,
        series.name,
        LEFT - 6.0,
        top + 12.0,
        LEFT - 6.0,
        top + PANEL,
        x(end / 2.0),
        x(end / 2.0),
        top + PANEL,
    );
    for (k, (label, colour)) in LINES.iter().enumerate() {
        let mut points = String::new();
        for s in samples {
            if let Some(v) = line_value(series, s, k) {
                let _ = write!(points, "{:.1},{:.1} ", x(s.t), y(v));
            }
        }
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>\n\
             <text x=\"{:.0}\" y=\"{:.0}\" fill=\"{colour}\">{label}</text>",
            points.trim_end(),
            WIDTH - RIGHT + 8.0,
            top + 14.0 + 16.0 * k as f64
        );
    }
}

/// The SVG plot: RSS, fds and threads of the master, each worker and their total over time.
pub(super) fn svg(samples: &[Sample], title: &str) -> String {
    let height = TOP + 3.0 * (PANEL + GAP) + 10.0;
    let end_min = samples.last().map_or(0.0, |s| s.t) / 60.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"18\" font-size=\"14\">{title}</text>\n"
    );
    for (i, series) in thresholds().iter().enumerate() {
        let top = TOP + 10.0 + i as f64 * (PANEL + GAP);
        panel(&mut svg, series, samples, top);
        let _ = writeln!(
            svg,
            "<text x=\"{LEFT}\" y=\"{:.0}\">0</text><text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{end_min:.1} min \
             (dashed: end of warm-up)</text>",
            top + PANEL + 14.0,
            WIDTH - RIGHT,
            top + PANEL + 14.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soak::sample::Proc;

    fn sample(t: f64, rss_kib: u64) -> Sample {
        let master = Proc { pid: 1, rss_kib, fds: 10, threads: 3 };
        Sample { t, master, ..Sample::default() }
    }

    #[test]
    fn slope_is_per_hour_and_zero_for_a_flat_line() {
        assert!((slope(&[(0.0, 1.0), (0.5, 2.0), (1.0, 3.0)]) - 2.0).abs() < 1e-9);
        assert_eq!(slope(&[(0.0, 5.0), (1.0, 5.0)]), 0.0);
        assert_eq!(slope(&[(1.0, 5.0)]), 0.0);
    }

    #[test]
    fn a_flat_run_is_flat_and_a_growing_one_is_not() {
        // One hour, a sample a minute: flat RSS, then RSS growing by 60 MiB an hour.
        let flat: Vec<Sample> = (0u32..=60).map(|m| sample(f64::from(m) * 60.0, 50 << 10)).collect();
        assert!(flatness(&flat).1);
        let growing: Vec<Sample> =
            (0u32..=60).map(|m| sample(f64::from(m) * 60.0, (50 << 10) + u64::from(m) * 1024)).collect();
        let (lines, ok) = flatness(&growing);
        assert!(!ok, "{lines:?}");
        assert!(lines.iter().any(|l| l.contains("RSS") && l.contains("GROWING")), "{lines:?}");
    }

    #[test]
    fn too_few_samples_are_not_judged_flat() {
        let (lines, ok) = flatness(&[sample(1.0, 100)]);
        assert!(!ok);
        assert!(lines.iter().all(|l| l.contains("too few samples")), "{lines:?}");
    }

    #[test]
    fn the_svg_has_a_polyline_per_line_and_panel() {
        let samples: Vec<Sample> =
            (0u32..5).map(|i| sample(f64::from(i) * 10.0, 1000 + u64::from(i))).collect();
        let svg = svg(&samples, "t");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 3 * LINES.len());
    }
}
