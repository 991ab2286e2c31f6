//! Process facts from `/proc` (Linux): resident memory, open-file limits, mapped files.

use std::fs;

/// `VmRSS` of process `pid` and every process under it (a wshd master's worker processes),
/// in KiB.
pub(crate) fn vm_rss_kib(pid: u32) -> Option<u64> {
    let mut total = own_vm_rss_kib(pid)?;
    for child in descendants(pid) {
        total += own_vm_rss_kib(child).unwrap_or(0);
    }
    Some(total)
}

/// The processes under `pid` (children, their children, …), from each process's parent in
/// `/proc/*/stat`.
pub(crate) fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    for entry in entries.flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else { continue };
        let parent = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().nth(1)?.parse().ok());
        if let Some(parent) = parent {
            parents.push((child, parent));
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parents {
            if parent == p && !found.contains(&child) {
                found.push(child);
                frontier.push(child);
            }
        }
    }
    found
}

fn own_vm_rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// The (soft, hard) `RLIMIT_NOFILE` of process `pid` (`"self"` for this one); `u64::MAX` for
/// unlimited.
pub(crate) fn nofile_limit(pid: &str) -> Option<(u64, u64)> {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    let parse = |s: Option<&str>| match s? {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    };
    Some((parse(fields.next())?, parse(fields.next())?))
}

/// Open file descriptors of process `pid`.
pub(crate) fn open_fds(pid: u32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (children inherit it), and
/// tries `want` for both when the hard limit is lower (needs `CAP_SYS_RESOURCE`). Returns the
/// (soft, hard) limits in force afterwards and a note when `want` could not be had.
pub(crate) fn raise_nofile(want: u64) -> ((u64, u64), Option<String>) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let mut note = None;
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && hard < want
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, want, want)
    {
        note = Some(format!(
            "cannot raise RLIMIT_NOFILE to {want}: {e} (hard limit {hard}; raising it needs CAP_SYS_RESOURCE)"
        ));
    }
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    let limits = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((0, 0));
    (limits, note)
}

/// Distinct files mapped by `pid` whose path contains `needle` (e.g. plugin copies).
pub(crate) fn mapped_files_containing(pid: u32, needle: &str) -> Option<usize> {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let mut files: Vec<&str> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5).map(|_| l))
        .filter_map(|l| {
            let path_start = l.find('/')?;
            Some(&l[path_start..])
        })
        .filter(|p| p.contains(needle))
        .collect();
    files.sort_unstable();
    files.dedup();
    Some(files.len())
}

/// Context switches (voluntary + involuntary) of the live threads of process `pid` (`"self"`
/// for this one), from `/proc/PID/task/*/status`: a thread that sleeps waiting for a wake-up
/// between messages switches once each time.
pub(crate) fn context_switches(pid: &str) -> Option<u64> {
    let mut total = 0u64;
    for entry in fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(status) = fs::read_to_string(entry.ok()?.path().join("status")) else { continue };
        for line in status.lines() {
            let value = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"));
            if let Some(n) = value.and_then(|v| v.trim().parse::<u64>().ok()) {
                total += n;
            }
        }
    }
    Some(total)
}
