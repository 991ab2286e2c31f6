//! `soak`: wshd under mixed traffic for a long time (issue 16), with its memory, fds and
//! threads sampled.
//!
//! It starts a release `wshd` (master + the default worker processes) on a private handler
//! directory and drives, all at once until `--duration` has passed:
//!
//! - echo clients at `/echo` (text and binary, with and without permessage-deflate), each
//!   sending at a steady rate and checking every reply ([`echo`]);
//! - rooms on `/chat` (`chat_wsh`): per room subscribers and one publisher, every member
//!   checking it receives every sequence number in order ([`rooms`]);
//! - connection churn: a new connection, one message, a close, several times a second;
//! - slow readers and dribblers, which the server may drop; how they end is counted
//!   separately, never as a loss ([`hostile`]);
//! - a hot reload every `--reload-secs`: `libecho_wsh.so` and `libchat_wsh.so` in turn are
//!   replaced (written to a dot-file, renamed over) as a deployment does.
//!
//! Every `--sample-secs` it records RSS, open fds and threads of the master and each worker
//! and the clients' counters and latency percentiles; at the end it writes
//! `target/soak/soak.csv` and `target/soak/soak.svg`, prints whether each series is flat after
//! warm-up (the first half) and the loss counts, and fails when a well-behaved client lost a
//! message.

mod echo;
mod hostile;
mod report;
mod rig;
mod rooms;
mod sample;
mod stats;

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;

use crate::BoxError;
use crate::wsclient::Target;
use rig::Rig;
use sample::Sample;
use stats::Stats;

/// Options of `soak`.
#[derive(Debug, clap::Args)]
pub(crate) struct SoakArgs {
    /// How long: `90s`, `2m`, `1h`.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub(crate) duration: Duration,
    /// Seconds between two samples.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) sample_secs: f64,
    /// Seconds between two hot reloads.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) reload_secs: f64,
    /// Where `wshd`, `libecho_wsh.so` and `libchat_wsh.so` are.
    #[arg(long, default_value = "target/release")]
    pub(crate) release_dir: PathBuf,
    /// Where the CSV, the SVG and wshd's log go.
    #[arg(long, default_value = "target/soak")]
    pub(crate) out_dir: PathBuf,
    /// Long-lived echo clients (text/binary and deflate/plain alternate).
    #[arg(long, default_value_t = 8)]
    pub(crate) echo_clients: u64,
    /// Messages per second of each echo client.
    #[arg(long, default_value_t = 20.0)]
    pub(crate) echo_rate: f64,
    /// Chat rooms, each with one publisher.
    #[arg(long, default_value_t = 2)]
    pub(crate) rooms: usize,
    /// Subscribers per room.
    #[arg(long, default_value_t = 3)]
    pub(crate) subscribers: usize,
    /// Messages per second of each publisher.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) publish_rate: f64,
    /// New short connections per second.
    #[arg(long, default_value_t = 4.0)]
    pub(crate) churn_rate: f64,
    /// Slow readers.
    #[arg(long, default_value_t = 2)]
    pub(crate) slow_readers: u64,
    /// Dribblers.
    #[arg(long, default_value_t = 2)]
    pub(crate) dribblers: u64,
}

/// Parses `90s`, `2m`, `1h` or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "s"),
    };
    let number: f64 = number.parse().map_err(|_| format!("not a duration: {text:?} (e.g. 90s, 2m, 1h)"))?;
    let seconds = match unit {
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} (s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// Starts every client task; the rooms' subscribers have joined when this returns.
async fn start_clients(args: &SoakArgs, rig: &Rig, stats: &Arc<Stats>) -> Result<JoinSet<()>, BoxError> {
    let base = format!("ws://{}", rig.addr);
    let echo_target = Arc::new(Target::parse(&format!("{base}/echo"))?);
    let mut tasks = JoinSet::new();
    let mut rooms = Vec::new();
    for r in 0..args.rooms {
        let room = Arc::new(rooms::Room::new(format!("soak{r}")));
        for (client, who) in rooms::join(&base, &room, args.subscribers).await? {
            tasks.spawn(rooms::subscriber(client, who, room.clone(), stats.clone()));
        }
        rooms.push(room);
    }
    // Membership is relayed between the workers within a fraction of a millisecond.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for room in rooms {
        tasks.spawn(rooms::publisher(base.clone(), room, stats.clone(), args.publish_rate));
    }
    for id in 0..args.echo_clients {
        let shape =
            echo::EchoShape { id, binary: id % 2 == 1, deflate: (id / 2) % 2 == 1, rate: args.echo_rate };
        tasks.spawn(echo::echo_client(echo_target.clone(), stats.clone(), shape));
    }
    let pause = Duration::from_secs_f64(1.0 / args.churn_rate.max(0.01));
    tasks.spawn(echo::churn(echo_target.clone(), stats.clone(), pause));
    for id in 0..args.slow_readers {
        tasks.spawn(hostile::slow_reader(echo_target.clone(), stats.clone(), id));
    }
    for id in 0..args.dribblers {
        tasks.spawn(hostile::dribbler(echo_target.clone(), stats.clone(), id));
    }
    Ok(tasks)
}

/// How the sampling loop ended.
struct Run {
    samples: Vec<Sample>,
    reloads: u64,
    /// Why it ended early (signal, server exit), if it did.
    early: Option<String>,
    /// The server once the clients had stopped (not judged: connections closed).
    after: Option<Sample>,
}

fn progress(s: &Sample) {
    let (rss, fds, threads) = s.totals();
    eprintln!(
        "[soak] {:>6.0} s  RSS {:>7.1} MiB  fds {fds:>4}  threads {threads:>3}  workers {}  echo {}/{}  \
         rooms {}→{}  churn {}  lost {}  p50/p99 {}/{} µs  reloads {}",
        s.t,
        rss as f64 / 1024.0,
        s.workers.len(),
        s.echo_ok,
        s.echo_sent,
        s.published,
        s.delivered,
        s.churn_ok,
        s.lost,
        s.p50_us,
        s.p99_us,
        s.reloads
    );
}

/// Samples and reloads until the duration has passed, a signal arrives or wshd exits.
async fn sample_loop(args: &SoakArgs, rig: &mut Rig, stats: &Stats, start: Instant) -> Result<Run, BoxError> {
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let every = Duration::from_secs_f64(args.sample_secs.max(0.5));
    let reload_every = Duration::from_secs_f64(args.reload_secs.max(0.5));
    let end = start + args.duration;
    let (mut next_sample, mut next_reload) = (start, start + reload_every);
    let mut run = Run { samples: Vec::new(), reloads: 0, early: None, after: None };
    loop {
        let now = Instant::now();
        if next_sample <= now {
            let sample = Sample::take(start.elapsed().as_secs_f64(), rig.pid(), stats, run.reloads);
            progress(&sample);
            run.samples.push(sample);
            next_sample += every;
        }
        if now >= end {
            break;
        }
        if next_reload <= now {
            match tokio::task::spawn_blocking(rig.reload_job(usize::try_from(run.reloads)?)).await? {
                Ok(_) => run.reloads += 1,
                Err(e) => stats.error(format!("reload {}: {e}", run.reloads + 1)),
            }
            next_reload += reload_every;
        }
        if !rig.alive() {
            run.early = Some("wshd exited".to_owned());
            break;
        }
        let wake = next_sample.min(next_reload).min(end);
        tokio::select! {
            () = tokio::time::sleep_until(wake.into()) => {}
            _ = sigint.recv() => { run.early = Some("interrupted (SIGINT)".to_owned()); break; }
            _ = sigterm.recv() => { run.early = Some("terminated (SIGTERM)".to_owned()); break; }
        }
    }
    Ok(run)
}

/// Runs the clients and the sampling; stops the clients (bounded: 30 s) and takes a last
/// sample.
async fn drive(args: &SoakArgs, rig: &mut Rig, stats: &Arc<Stats>) -> Result<Run, BoxError> {
    let start = Instant::now();
    let mut tasks = start_clients(args, rig, stats).await?;
    let mut run = sample_loop(args, rig, stats, start).await?;
    stats.stop.store(true, Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Ok(Some(_)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {}
    if !tasks.is_empty() {
        stats.error(format!("{} client tasks had not finished 30 s after the stop", tasks.len()));
        tasks.abort_all();
    }
    let after = Sample::take(start.elapsed().as_secs_f64(), rig.pid(), stats, run.reloads);
    progress(&after);
    run.after = Some(after);
    Ok(run)
}

/// Runs `soak`.
pub(crate) fn run(args: &SoakArgs) -> Result<(), BoxError> {
    if args.echo_clients == 0 || args.rooms == 0 {
        return Err("--echo-clients and --rooms must be at least 1".into());
    }
    let mut rig = Rig::start(&args.release_dir)?;
    eprintln!(
        "[soak] wshd (pid {}) on {}, {} s, sampling every {} s, a reload every {} s",
        rig.pid(),
        rig.addr,
        args.duration.as_secs(),
        args.sample_secs,
        args.reload_secs
    );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let stats = Arc::new(Stats::new());
    let run = runtime.block_on(drive(args, &mut rig, &stats))?;
    fs::create_dir_all(&args.out_dir)?;
    let csv_path = args.out_dir.join("soak.csv");
    let svg_path = args.out_dir.join("soak.svg");
    fs::write(&csv_path, report::csv(&run.samples))?;
    let title = format!(
        "wshd soak: {:.0} min of mixed traffic, a hot reload every {} s",
        run.samples.last().map_or(0.0, |s| s.t) / 60.0,
        args.reload_secs
    );
    fs::write(&svg_path, report::svg(&run.samples, &title))?;
    let _ = fs::copy(&rig.log_path, args.out_dir.join("wshd.log"));
    let lost = summary(args, &rig, &stats, &run);
    eprintln!(
        "[soak] wrote {}, {} and {}",
        csv_path.display(),
        svg_path.display(),
        args.out_dir.join("wshd.log").display()
    );
    drop(rig);
    match (lost, &run.early) {
        (0, None) => Ok(()),
        (0, Some(why)) => Err(format!("the run ended early: {why}").into()),
        (n, _) => Err(format!("well-behaved clients lost {n} messages").into()),
    }
}

/// Prints the summary; returns the messages well-behaved clients lost.
fn summary(args: &SoakArgs, rig: &Rig, stats: &Stats, run: &Run) -> u64 {
    let get = Stats::get;
    let seconds = run.samples.last().map_or(0.0, |s| s.t);
    let workers: std::collections::BTreeSet<u32> =
        run.samples.iter().flat_map(|s| s.workers.iter().map(|w| w.pid)).collect();
    println!(
        "soak: {seconds:.0} s; wshd master + {} worker pids seen; {} hot reloads; 'handler loaded' log lines: {} \
         (expected {} = workers × (2 plugins at start + reloads))",
        workers.len(),
        run.reloads,
        rig.log_count("handler loaded"),
        workers.len() as u64 * (2 + run.reloads)
    );
    let members = (args.subscribers + 1) as u64;
    println!(
        "echo: {} sent, {} echoed correctly; rooms: {} published, {} deliveries checked in order (expected {} = published × {members} members); churn: {} ok, {} failed",
        get(&stats.echo_sent),
        get(&stats.echo_ok),
        get(&stats.published),
        get(&stats.delivered),
        get(&stats.published) * members,
        get(&stats.churn_ok),
        get(&stats.churn_failed)
    );
    let lost = get(&stats.lost);
    println!("LOST by well-behaved clients: {lost}");
    if let Ok(s) = stats.slow.lock() {
        println!("slow readers: {}", s.summary());
    }
    if let Ok(d) = stats.dribble.lock() {
        println!("dribblers: {}", d.summary());
    }
    let p50s: Vec<u32> = run.samples.iter().map(|s| s.p50_us).filter(|&v| v > 0).collect();
    let p99_max = run.samples.iter().map(|s| s.p99_us).max().unwrap_or(0);
    let mut sorted = p50s.clone();
    sorted.sort_unstable();
    println!(
        "latency per interval: median p50 {} µs, worst p99 {p99_max} µs",
        sorted.get(sorted.len() / 2).copied().unwrap_or(0)
    );
    let (lines, flat) = report::flatness(&run.samples);
    for line in lines {
        println!("{line}");
    }
    println!("flat after warm-up: {}", if flat { "yes" } else { "NO" });
    if let Some(after) = &run.after {
        let (rss, fds, threads) = after.totals();
        println!(
            "after the clients closed: RSS {:.1} MiB, fds {fds}, threads {threads}",
            rss as f64 / 1024.0
        );
    }
    let (n, errors) = stats.errors();
    println!("client notes: {n}");
    for e in errors.iter().take(10) {
        println!("  {e}");
    }
    let (n, errors) = rig.log_errors();
    println!("wshd ERROR lines: {n}");
    for e in errors {
        println!("  {e}");
    }
    if let Some(why) = &run.early {
        println!("ENDED EARLY: {why}");
    }
    lost
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_take_seconds_minutes_and_hours() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0.5m"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("2d").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
