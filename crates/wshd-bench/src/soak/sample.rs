//! One sample of the server's processes (RSS, open fds, threads of the master and of each
//! worker) and of the clients' counters over the last interval.

use std::fs;

use super::stats::Stats;
use crate::procinfo;

/// RSS, fds and threads of one process.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Proc {
    /// Process id.
    pub(super) pid: u32,
    /// `VmRSS`, KiB.
    pub(super) rss_kib: u64,
    /// Entries of `/proc/PID/fd`.
    pub(super) fds: u64,
    /// `Threads:` of `/proc/PID/status`.
    pub(super) threads: u64,
}

impl Proc {
    /// Reads process `pid`; `None` when it is gone.
    fn read(pid: u32) -> Option<Proc> {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| -> Option<u64> {
            status.lines().find_map(|l| l.strip_prefix(name))?.split_whitespace().next()?.parse().ok()
        };
        Some(Proc {
            pid,
            rss_kib: field("VmRSS:")?,
            fds: procinfo::open_fds(pid)? as u64,
            threads: field("Threads:")?,
        })
    }
}

/// One row of the CSV.
#[derive(Debug, Clone, Default)]
pub(super) struct Sample {
    /// Seconds since the start of the run.
    pub(super) t: f64,
    /// The master.
    pub(super) master: Proc,
    /// Its worker processes, by pid.
    pub(super) workers: Vec<Proc>,
    /// Client counters (cumulative).
    pub(super) echo_sent: u64,
    pub(super) echo_ok: u64,
    pub(super) published: u64,
    pub(super) delivered: u64,
    pub(super) churn_ok: u64,
    pub(super) lost: u64,
    /// Round-trip / delivery latency percentiles over the interval, µs.
    pub(super) p50_us: u32,
    pub(super) p99_us: u32,
    /// Hot reloads done so far.
    pub(super) reloads: u64,
}

impl Sample {
    /// Samples the server (master `pid`) and takes the clients' counters.
    pub(super) fn take(t: f64, pid: u32, stats: &Stats, reloads: u64) -> Sample {
        let master = Proc::read(pid).unwrap_or(Proc { pid, ..Proc::default() });
        let mut children = procinfo::descendants(pid);
        children.sort_unstable();
        let workers = children.into_iter().filter_map(Proc::read).collect();
        let mut latencies = stats.take_latencies();
        latencies.sort_unstable();
        let pct = |p: f64| -> u32 {
            if latencies.is_empty() {
                return 0;
            }
            let i = ((latencies.len() - 1) as f64 * p).round() as usize;
            latencies.get(i).copied().unwrap_or(0)
        };
        Sample {
            t,
            master,
            workers,
            echo_sent: Stats::get(&stats.echo_sent),
            echo_ok: Stats::get(&stats.echo_ok),
            published: Stats::get(&stats.published),
            delivered: Stats::get(&stats.delivered),
            churn_ok: Stats::get(&stats.churn_ok),
            lost: Stats::get(&stats.lost),
            p50_us: pct(0.50),
            p99_us: pct(0.99),
            reloads,
        }
    }

    /// The sums over master and workers: (RSS KiB, fds, threads).
    pub(super) fn totals(&self) -> (u64, u64, u64) {
        let all = std::iter::once(&self.master).chain(&self.workers);
        all.fold((0, 0, 0), |(r, f, t), p| (r + p.rss_kib, f + p.fds, t + p.threads))
    }

    /// The CSV header (two worker columns groups; more workers are summed into the totals).
    pub(super) const HEADER: &'static str = "t_s,total_rss_kib,total_fds,total_threads,\
        master_pid,master_rss_kib,master_fds,master_threads,\
        w1_pid,w1_rss_kib,w1_fds,w1_threads,w2_pid,w2_rss_kib,w2_fds,w2_threads,workers,\
        echo_sent,echo_ok,published,delivered,churn_ok,lost,p50_us,p99_us,reloads";

    /// This sample as a CSV line.
    pub(super) fn csv(&self) -> String {
        let (rss, fds, threads) = self.totals();
        let proc = |p: Option<&Proc>| {
            let p = p.copied().unwrap_or_default();
            format!("{},{},{},{}", p.pid, p.rss_kib, p.fds, p.threads)
        };
        format!(
            "{:.1},{rss},{fds},{threads},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            self.t,
            proc(Some(&self.master)),
            proc(self.workers.first()),
            proc(self.workers.get(1)),
            self.workers.len(),
            self.echo_sent,
            self.echo_ok,
            self.published,
            self.delivered,
            self.churn_ok,
            self.lost,
            self.p50_us,
            self.p99_us,
            self.reloads
        )
    }
}
