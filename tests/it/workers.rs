//! Supervised worker processes: a handler that aborts, overflows its stack or writes through
//! a null pointer kills only its worker, which the master logs (signal and route) and
//! replaces while the listeners stay open; a spinning handler's worker is killed and
//! replaced; the workers go when the master goes; SIGTERM always ends the process, spinner
//! or not, with or without workers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::Message;
use wshd_tests::*;

/// `bad_wsh.so` (the misbehaving fixture) and `echo_wsh.so`, with `server_keys` in
/// `[server]` and a 2 s heartbeat timeout.
fn server(server_keys: &str) -> ServerProcess {
    let server = ServerProcess::start_with(
        |dir| {
            dir.install("fixture_misbehave", "handlers/bad_wsh.so");
            dir.install("echo_wsh", "handlers/echo_wsh.so");
        },
        &format!("shutdown_grace_secs = 2\nadmin_listen = \"127.0.0.1:0\"\n{server_keys}"),
        "[workers]\nheartbeat_timeout_secs = 2\n",
    );
    let serving = if server_keys.contains("workers = 0") { "listening on" } else { "accepting on" };
    assert!(server.wait_log_everywhere(serving, WAIT), "not every worker serves:\n{}", server.logs());
    server
}

/// Connects to `/echo` and checks one round trip.
async fn echo(server: &ServerProcess) -> Client {
    let mut client = connect(&server.ws_url("/echo")).await;
    assert_eq!(round_trip(&mut client, Message::text("hi")).await, Message::text("hi"));
    client
}

/// Connects to the server in a loop until stopped, counting failed connection attempts.
struct ConnectLoop {
    stop: Arc<AtomicBool>,
    attempts: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl ConnectLoop {
    fn start(addr: std::net::SocketAddr) -> ConnectLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(AtomicUsize::new(0));
        let (flag, count) = (Arc::clone(&stop), Arc::clone(&attempts));
        let task = tokio::spawn(async move {
            let mut failures = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                count.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = tokio::net::TcpStream::connect(addr).await {
                    failures.push(e.to_string());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            failures
        });
        ConnectLoop { stop, attempts, task }
    }

    /// Stops and returns (attempts, failures).
    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let failures = self.task.await.unwrap_or_else(|e| panic!("{e}"));
        (self.attempts.load(Ordering::Relaxed), failures)
    }
}

/// The master's lines reporting a worker's death.
fn deaths(server: &ServerProcess) -> Vec<String> {
    server
        .logs()
        .lines()
        .filter(|l| l.contains(" died: ") && !l.starts_with("worker="))
        .map(str::to_owned)
        .collect()
}

/// Sends `command` to `/bad` (which kills the worker serving it) and returns the master's
/// line about the death, the `deaths_before + 1`th.
async fn crash(server: &ServerProcess, command: &str, deaths_before: usize) -> String {
    let mut bad = connect(&server.ws_url("/bad")).await;
    futures_util::SinkExt::send(&mut bad, Message::text(command)).await.unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(line) = deaths(server).into_iter().nth(deaths_before) {
            return line;
        }
        assert!(Instant::now() < deadline, "no death logged after {command}:\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_crashing_handler_costs_one_worker_and_no_connection_attempt() {
    let server = server("workers = 2");
    let master = server.pid();
    let connecting = ConnectLoop::start(server.addr);
    for (deaths, (command, signal)) in
        [("abort", "SIGABRT"), ("overflow", "SIGABRT"), ("null", "SIGSEGV")].into_iter().enumerate()
    {
        let mut clients = Vec::new();
        for _ in 0..8 {
            clients.push(echo(&server).await);
        }
        let starts_before = server.worker_starts().len();
        let crashed = Instant::now();
        let line = crash(&server, command, deaths).await;
        assert!(line.contains(signal), "{command}: {line}\n{}", server.logs());
        assert!(line.contains("/bad"), "{command}: the route is named: {line}");
        // Served again at once (the other worker), and the dead one is replaced.
        let _fresh = echo(&server).await;
        let served = crashed.elapsed();
        assert!(served < Duration::from_secs(1), "{command}: served again after {served:?}");
        let deadline = Instant::now() + WAIT;
        while server.worker_starts().len() == starts_before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let replaced = crashed.elapsed();
        assert!(replaced < Duration::from_secs(1), "{command}: replaced after {replaced:?}");
        let (index, _) = server.worker_starts().last().copied().unwrap_or_default();
        let serving = server.count_log_of_worker(index, "accepting on ");
        while server.count_log_of_worker(index, "accepting on ") == serving && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let ready = crashed.elapsed();
        assert_eq!(server.pid(), master);
        let mut survivors = 0;
        for client in &mut clients {
            futures_util::SinkExt::send(client, Message::text("still?")).await.ok();
            if let Some(Ok(Message::Text(text))) = next_message(client).await
                && text.as_str() == "still?"
            {
                survivors += 1;
            }
        }
        println!(
            "{command}: {signal}; served again {served:?} after the crash, replacement started after \
             {replaced:?} and serving after {ready:?}; {survivors}/8 echo connections survived"
        );
        assert!(
            survivors >= 1,
            "{command}: every echo connection was on the dead worker:\n{}",
            server.logs()
        );
        assert!(survivors < 8, "{command}: the crash touched no connection? {}", server.logs());
    }
    let (attempts, failures) = connecting.finish().await;
    assert!(failures.is_empty(), "{} of {attempts} connection attempts failed: {failures:?}", failures.len());
    assert!(attempts > 50, "{attempts}");
    // The master counts what happened, in the summed /metrics.
    let metrics = http_get(server.admin_addr(), "/metrics").await.text();
    for sample in [
        "wshd_workers 2",
        "wshd_worker_starts_total 5",
        "wshd_worker_exits_total{cause=\"signal\"} 3",
        "wshd_worker_crashes_total{route=\"/bad\"} 3",
    ] {
        assert!(metrics.lines().any(|l| l == sample), "{sample} in\n{metrics}");
    }
}

#[tokio::test]
async fn a_spinning_handler_gets_its_worker_killed_and_sigterm_still_ends_the_master() {
    let mut server = server("workers = 2");
    let mut spinner = connect(&server.ws_url("/bad")).await;
    futures_util::SinkExt::send(&mut spinner, Message::text("spin")).await.unwrap_or_else(|e| panic!("{e}"));
    let spun = Instant::now();
    let line = server
        .wait_log_where(|l| l.contains("is stuck") && !l.starts_with("worker="), Duration::from_secs(5))
        .unwrap_or_else(|| panic!("the spinning worker was not killed:\n{}", server.logs()));
    let killed = spun.elapsed();
    assert!(line.contains("/bad"), "{line}");
    assert!(killed < Duration::from_millis(2_600), "killed {killed:?} after the spin");
    server.wait_log(" died: killed by SIGKILL", WAIT).unwrap_or_else(|| panic!("{}", server.logs()));
    let _fresh = echo(&server).await;
    let metrics = http_get(server.admin_addr(), "/metrics").await.text();
    let sample = "wshd_worker_exits_total{cause=\"unresponsive\"} 1";
    assert!(metrics.lines().any(|l| l == sample), "{sample} in\n{metrics}");

    let (took, status) = sigterm_with_a_spinner(&mut server).await;
    println!(
        "spin: killed {killed:?} after the spin; SIGTERM with a spinner: exited after {took:?} ({status:?})"
    );
    assert!(took < Duration::from_secs(5), "exited {took:?} after SIGTERM (grace 2 s)");
}

#[tokio::test]
async fn workers_leave_when_the_master_is_killed() {
    let mut server = server("workers = 2");
    let _client = echo(&server).await;
    let pids: Vec<u32> = server.worker_starts().into_iter().map(|(_, pid)| pid).collect();
    assert_eq!(pids.len(), 2, "{}", server.logs());
    assert!(pids.iter().all(|pid| !process_gone(*pid)));
    server.signal("KILL");
    let killed = Instant::now();
    server.wait_exit(WAIT).unwrap_or_else(|| panic!("the master survived SIGKILL"));
    while !pids.iter().all(|pid| process_gone(*pid)) && killed.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let gone = killed.elapsed();
    println!("master SIGKILLed: workers gone after {gone:?}");
    assert!(pids.iter().all(|pid| process_gone(*pid)), "workers {pids:?} outlived the master by {gone:?}");
}

#[tokio::test]
async fn sigterm_ends_a_single_process_whose_handler_spins() {
    let mut server = server("workers = 0");
    assert!(server.worker_starts().is_empty(), "{}", server.logs());
    let _client = echo(&server).await;
    let (took, status) = sigterm_with_a_spinner(&mut server).await;
    println!("workers = 0, SIGTERM with a spinner: exited after {took:?} ({status:?})");
    assert!(took < Duration::from_secs(5), "exited {took:?} after SIGTERM (grace 2 s):\n{}", server.logs());
}

/// Sets a handler of `server` spinning, sends SIGTERM, and waits (10 s at most) for the exit:
/// how long it took, and the exit status.
async fn sigterm_with_a_spinner(server: &mut ServerProcess) -> (Duration, std::process::ExitStatus) {
    let mut spinner = connect(&server.ws_url("/bad")).await;
    futures_util::SinkExt::send(&mut spinner, Message::text("spin")).await.unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let signalled = Instant::now();
    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(10)).unwrap_or_else(|| panic!("{}", server.logs()));
    (signalled.elapsed(), status)
}

#[test]
fn with_a_log_file_the_master_writes_every_workers_lines_into_it() {
    let dir = TempDir::new();
    dir.install("echo_wsh", "handlers/echo_wsh.so");
    let config = dir.write(
        "server.toml",
        &config_with(&dir.path().join("handlers"), "workers = 2", "[log]\nfile = \"wshd.log\"\n"),
    );
    let mut child = std::process::Command::new(wshd_bin())
        .args(["-c", &config.display().to_string()])
        .current_dir(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("wshd.log");
    let deadline = Instant::now() + WAIT;
    let text = loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let marked = |w: usize| {
            text.lines().any(|l| l.starts_with(&format!("worker={w} ")) && l.contains("accepting on"))
        };
        if (marked(1) && marked(2)) || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let output = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(text.contains("worker 1 started pid=") && text.contains("listening on"), "{text}");
    assert!(text.lines().filter(|l| l.contains("accepting on")).all(|l| l.starts_with("worker=")), "{text}");
    assert!(text.contains("worker=2 ") && text.contains("worker=1 "), "worker lines missing:\n{text}");
    assert!(output.stderr.is_empty(), "nothing on stderr: {}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test]
async fn sigterm_ends_a_single_process_whose_only_runtime_thread_spins() {
    let mut server = ServerProcess::start_with(
        |dir| {
            dir.install("fixture_misbehave", "handlers/bad_wsh.so");
        },
        "workers = 0\nshutdown_grace_secs = 2",
        "[workers]\nthreads = 1\n",
    );
    let (took, status) = sigterm_with_a_spinner(&mut server).await;
    println!("workers = 0, one thread, SIGTERM with a spinner: exited after {took:?} ({status:?})");
    assert!(took < Duration::from_secs(5), "exited {took:?} after SIGTERM (grace 2 s):\n{}", server.logs());
    assert!(server.logs().contains("shutdown did not finish"), "the deadline fired:\n{}", server.logs());
    assert!(!status.success());
}

#[test]
fn a_sighup_while_workers_start_kills_none_of_them() {
    let dir = TempDir::new();
    dir.install("echo_wsh", "handlers/echo_wsh.so");
    let config = dir.write("server.toml", &config_with(&dir.path().join("handlers"), "workers = 2", ""));
    let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap_or_else(|e| panic!("{e}"));
    let mut child = std::process::Command::new(wshd_bin())
        .args(["-c", &config.display().to_string()])
        .current_dir(dir.path())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let hup = || {
        let status = std::process::Command::new("kill").args(["-HUP", &child.id().to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()));
    };
    std::thread::sleep(Duration::from_millis(30));
    hup();
    std::thread::sleep(Duration::from_millis(1500));
    hup();
    std::thread::sleep(Duration::from_millis(500));
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + WAIT;
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
    assert!(!text.contains(" died: "), "a worker died:\n{text}");
    assert_eq!(text.matches("SIGHUP: configuration valid").count(), 2, "{text}");
    assert!(
        text.contains("worker=1 ") && text.contains("SIGHUP: reloading"),
        "the later one reloads:\n{text}"
    );
}
