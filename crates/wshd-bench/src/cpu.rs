//! CPU time of a process, from `/proc` (Linux only; `None` elsewhere).

use std::fs;
use std::time::Duration;

/// Clock ticks per second assumed for `/proc/<pid>/stat` (the Linux `USER_HZ`).
const USER_HZ: u64 = 100;

/// CPU time (user + system) used so far by process `pid` (`"self"` for this one), summed
/// over its threads and over the processes under it (a wshd master's workers). Uses
/// `schedstat` (nanoseconds) when the kernel has it, else `stat` (10 ms ticks).
pub(crate) fn process_cpu(pid: &str) -> Option<Duration> {
    let mut total = own_cpu(pid)?;
    if let Ok(parent) = pid.parse::<u32>() {
        for child in crate::procinfo::descendants(parent) {
            total += own_cpu(&child.to_string()).unwrap_or_default();
        }
    }
    Some(total)
}

/// CPU time (user + system) of process `pid` and the processes under it from `stat` (10 ms
/// ticks), which — unlike the per-thread `schedstat` sum — keeps the time of threads that
/// have exited (a wshd node's runtime may retire threads during a measurement).
pub(crate) fn process_cpu_with_exited(pid: u32) -> Option<Duration> {
    let mut total = stat_cpu(&pid.to_string())?;
    for child in crate::procinfo::descendants(pid) {
        total += stat_cpu(&child.to_string()).unwrap_or_default();
    }
    Some(total)
}

fn own_cpu(pid: &str) -> Option<Duration> {
    schedstat_cpu(pid).or_else(|| stat_cpu(pid))
}

fn schedstat_cpu(pid: &str) -> Option<Duration> {
    let mut total: u64 = 0;
    for entry in fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = entry.ok()?.path().join("schedstat");
        // A thread may exit between the listing and the read: skip it.
        let Ok(text) = fs::read_to_string(path) else { continue };
        total = total.saturating_add(text.split_whitespace().next()?.parse::<u64>().ok()?);
    }
    Some(Duration::from_nanos(total))
}

fn stat_cpu(pid: &str) -> Option<Duration> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: count fields after its closing ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after field 2.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

/// Per-CPU (busy, total) clock ticks since boot, from `/proc/stat` (`cpuN` lines; busy = all
/// but idle and iowait).
pub(crate) fn per_cpu_ticks() -> Option<Vec<(u64, u64)>> {
    let text = fs::read_to_string("/proc/stat").ok()?;
    let mut cpus = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("cpu") else { continue };
        if !rest.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        let fields: Vec<u64> = rest.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
        let total: u64 = fields.iter().take(8).sum();
        let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
        cpus.push((total.saturating_sub(idle), total));
    }
    Some(cpus)
}

/// Busy % of each CPU between two [`per_cpu_ticks`] samples.
pub(crate) fn busy_pct(before: &[(u64, u64)], after: &[(u64, u64)]) -> Vec<f64> {
    before
        .iter()
        .zip(after)
        .map(|(&(b0, t0), &(b1, t1))| {
            let total = t1.saturating_sub(t0);
            if total == 0 { 0.0 } else { b1.saturating_sub(b0) as f64 * 100.0 / total as f64 }
        })
        .collect()
}
