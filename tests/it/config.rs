//! Configuration errors name the file, line, column and key; `check-config` is a deploy gate.

use std::process::Command;
use wshd_tests::*;

#[test]
fn a_typo_in_a_key_names_file_line_column_and_key() {
    let dir = TempDir::new();
    dir.write("bad.toml", "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[websocket]\nmax_mesage_bytes = 10\n");
    let (code, _, stderr) = run_wshd(&["-c", "bad.toml", "check-config"], dir.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("bad.toml:5:1: key `websocket.max_mesage_bytes`: unknown field"), "{stderr}");
    let (code, _, stderr) = run_wshd(&["-c", "bad.toml"], dir.path());
    assert_eq!(code, 1, "the server refuses to start: {stderr}");
    assert!(stderr.contains("bad.toml:5:1"), "{stderr}");
}

#[test]
fn a_bad_value_names_its_key() {
    let dir = TempDir::new();
    dir.write("bad.toml", "[server]\nlisten = [\"127.0.0.1\"]\n");
    let (code, _, stderr) = run_wshd(&["-c", "bad.toml", "check-config"], dir.path());
    assert_eq!(code, 1);
    assert!(stderr.contains("bad.toml:2:11: key `server.listen`"), "{stderr}");
    dir.write("bad2.toml", "[websocket]\nclose_timeout_secs = \"soon\"\n");
    let (_, _, stderr) = run_wshd(&["-c", "bad2.toml", "check-config"], dir.path());
    assert!(stderr.contains("bad2.toml:2:22: key `websocket.close_timeout_secs`"), "{stderr}");
}

#[test]
fn a_missing_config_file_is_named() {
    let dir = TempDir::new();
    let (code, _, stderr) = run_wshd(&["-c", "nope.toml", "check-config"], dir.path());
    assert_eq!(code, 1);
    assert!(stderr.contains("nope.toml: cannot read"), "{stderr}");
}

#[test]
fn check_config_lists_what_would_be_served_where() {
    let dir = TempDir::new();
    dir.install("echo_wsh", "handlers/libecho_wsh.so");
    dir.write(
        "server.toml",
        "[handlers]\ndir = \"handlers\"\n[[route]]\npath = \"/\"\nhandler = \"/echo\"\n",
    );
    let (code, stdout, stderr) = run_wshd(&["-c", "server.toml", "check-config"], dir.path());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("/echo -> handlers/libecho_wsh.so [Echo]"), "{stdout}");
    assert!(stdout.contains("/ (alias of /echo) -> handlers/libecho_wsh.so"), "{stdout}");
    assert!(stdout.contains("workers: ") && stdout.contains("processes, "), "{stdout}");
    dir.write(
        "single.toml",
        "[server]\nworkers = 0\n[workers]\nthreads = 3\n[handlers]\ndir = \"handlers\"\n",
    );
    let (_, single, _) = run_wshd(&["-c", "single.toml", "check-config"], dir.path());
    assert!(single.contains("workers: none (one process, no master), 3 threads"), "{single}");
    dir.install("fixture_bad_abi", "handlers/libbad_wsh.so");
    let (code, stdout, _) = run_wshd(&["-c", "server.toml", "check-config"], dir.path());
    assert_eq!(code, 1);
    assert!(stdout.contains("REFUSED handlers/libbad_wsh.so: built for plugin ABI v999"), "{stdout}");
}

#[test]
fn flags_override_the_file() {
    let dir = TempDir::new();
    dir.install("echo_wsh", "elsewhere/libecho_wsh.so");
    dir.write("server.toml", "[server]\nlisten = [\"127.0.0.1:1\"]\n[handlers]\ndir = \"handlers\"\n");
    let (code, stdout, stderr) =
        run_wshd(&["-c", "server.toml", "-p", "0", "-w", "elsewhere", "check-config"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("listen: 127.0.0.1:0"), "{stdout}");
    assert!(stdout.contains("/echo -> elsewhere/libecho_wsh.so"), "{stdout}");
}

#[tokio::test]
async fn the_log_can_go_to_a_size_rotated_file() {
    let dir = TempDir::new();
    dir.install("echo_wsh", "handlers/libecho_wsh.so");
    dir.write("server.toml", "[server]\nlisten = [\"127.0.0.1:0\"]\n[handlers]\ndir = \"handlers\"\n");
    let log = dir.path().join("logs/wshd.log");
    let missing = Command::new(wshd_bin())
        .args(["-c", "server.toml", "-l", "no/such/dir/wshd.log"])
        .current_dir(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot open log file no/such/dir/wshd.log"));
    std::fs::create_dir_all(dir.path().join("logs")).unwrap_or_else(|e| panic!("{e}"));
    let mut child = Command::new(wshd_bin())
        .args(["-c", "server.toml", "-l", "logs/wshd.log", "--log-max", "1500", "--log-count", "2"])
        .current_dir(dir.path())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let deadline = std::time::Instant::now() + WAIT;
    let addr = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("listening on ")) {
            break line.rsplit("listening on ").next().unwrap_or("").trim().to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "no listening line in {}", log.display());
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    for _ in 0..15 {
        let mut client = connect(&format!("ws://{addr}/echo")).await;
        let _ = round_trip(&mut client, tokio_tungstenite::tungstenite::Message::text("x")).await;
    }
    // Each session's access line is written when the server sees it end, which under load
    // can come after the last round trip: wait for the rotation before stopping the server.
    let rotated = dir.path().join("logs/wshd.log.1");
    let deadline = std::time::Instant::now() + WAIT;
    while !rotated.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(rotated.exists(), "the log was rotated");
    assert!(!dir.path().join("logs/wshd.log.3").exists(), "at most two old files are kept");
    assert!(std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) <= 1500);
    assert!(!std::fs::read_to_string(&rotated).unwrap_or_default().contains('\u{1b}'), "no colours in files");
}
