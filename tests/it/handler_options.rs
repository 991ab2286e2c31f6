//! pywebsocket's handler options: the handler map file (`-m`), the scan directory (`-s`),
//! handlers outside the handler directory, and the validation host and port (`-V`, `-P`).

use std::process::Command;

use tokio_tungstenite::tungstenite::Message;
use wshd_tests::*;

fn run(args: &[&str], cwd: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(wshd_bin()).args(args).current_dir(cwd).output().unwrap_or_else(|e| panic!("{e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_handler_map_adds_aliases() {
    let dir = TempDir::new();
    dir.install("echo_wsh", "handlers/libecho_wsh.so");
    dir.write("map.txt", "# pywebsocket's example map\n\n/ /echo\n/say\t/echo\n/ghost /nothing\n");
    dir.write("server.toml", "[server]\nlisten = [\"127.0.0.1:0\"]\n[handlers]\ndir = \"handlers\"\n");
    let server = ServerProcess::spawn(&["-c", "server.toml", "-m", "map.txt"], dir);
    for path in ["/", "/say", "/echo"] {
        let mut client = connect(&server.ws_url(path)).await;
        assert_eq!(round_trip(&mut client, Message::text(path)).await, Message::text(path));
    }
    assert_eq!(raw_http(server.addr, &handshake_request("/ghost", "")).await.status, 404);
    let warning = server.wait_log("/ghost", WAIT).unwrap_or_else(|| panic!("{}", server.logs()));
    assert!(warning.contains("map.txt:5") && warning.contains("not loaded"), "{warning}");
}

#[test]
fn a_bad_handler_map_names_file_and_line() {
    let dir = TempDir::new();
    dir.install("echo_wsh", "handlers/libecho_wsh.so");
    dir.write("map.txt", "/ /echo\n/too many fields\n");
    dir.write("good.txt", "/ /echo\n/alias /echo\n");
    dir.write("server.toml", "[handlers]\ndir = \"handlers\"\nmap_file = \"good.txt\"\n");
    let (ok, _, stderr) = run(&["-w", "handlers", "-m", "map.txt", "check-config"], dir.path());
    assert!(!ok);
    assert!(stderr.contains("map.txt:2: expected `alias_path existing_path`, found 3 field(s)"), "{stderr}");
    let (ok, _, stderr) = run(&["-w", "handlers", "-m", "absent.txt", "check-config"], dir.path());
    assert!(!ok && stderr.contains("handler map absent.txt: cannot read"), "{stderr}");
    let (ok, stdout, stderr) = run(&["-c", "server.toml", "check-config"], dir.path());
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("/alias (alias of /echo)"), "{stdout}");
}

#[test]
fn the_scan_dir_limits_discovery_and_must_be_inside_the_handler_dir() {
    let dir = TempDir::new();
    dir.install("echo_wsh", "handlers/libecho_wsh.so");
    dir.install("echo_wsh", "handlers/sub/libinner_wsh.so");
    dir.install("echo_wsh", "outside/libx_wsh.so");
    let (ok, stdout, stderr) = run(&["-w", "handlers", "-s", "handlers/sub", "check-config"], dir.path());
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("/sub/inner -> handlers/sub/libinner_wsh.so"),
        "resources stay relative to -w: {stdout}"
    );
    assert!(!stdout.contains("/echo"), "only the scan directory is scanned: {stdout}");
    let (ok, _, stderr) = run(&["-w", "handlers", "-s", "outside", "check-config"], dir.path());
    assert!(!ok);
    assert!(
        stderr.contains("scan directory outside is not inside the handler directory handlers"),
        "{stderr}"
    );
    let (ok, _, stderr) = run(&["-w", "handlers", "-s", "missing", "check-config"], dir.path());
    assert!(!ok && stderr.contains("scan directory missing:"), "{stderr}");
}

#[test]
fn symlinks_leaving_the_handler_dir_need_the_flag() {
    let dir = TempDir::new();
    dir.install("echo_wsh", "handlers/libecho_wsh.so");
    let outside = dir.install("echo_wsh", "elsewhere/libreal_wsh.so");
    std::fs::create_dir_all(dir.path().join("handlers")).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(&outside, dir.path().join("handlers/liblinked_wsh.so"))
        .unwrap_or_else(|e| panic!("symlink: {e}"));
    let (ok, stdout, _) = run(&["-w", "handlers", "check-config"], dir.path());
    assert!(ok && stdout.contains("/echo ->") && !stdout.contains("/linked"), "{stdout}");
    let (ok, stdout, _) =
        run(&["-w", "handlers", "--allow-handlers-outside-root-dir", "check-config"], dir.path());
    assert!(ok && stdout.contains("/linked -> handlers/liblinked_wsh.so"), "{stdout}");
}

#[tokio::test]
async fn absolute_targets_must_name_the_validation_host_and_port() {
    let dir = TempDir::new();
    dir.install("echo_wsh", "handlers/libecho_wsh.so");
    dir.write("server.toml", "[server]\nlisten = [\"127.0.0.1:0\"]\n[handlers]\ndir = \"handlers\"\n");
    let server = ServerProcess::spawn(&["-c", "server.toml", "-V", "good.example", "-P", "8080"], dir);
    let status = |target: &'static str| {
        let addr = server.addr;
        async move { raw_http(addr, &handshake_request(target, "")).await.status }
    };
    assert_eq!(status("ws://good.example:8080/echo").await, 101);
    assert_eq!(status("ws://GOOD.example:8080/echo").await, 101, "host names compare case-insensitively");
    assert_eq!(status("ws://evil.example:8080/echo").await, 404);
    assert_eq!(status("ws://good.example:9999/echo").await, 404);
    assert_eq!(status("ws://good.example/echo").await, 404, "ws:// defaults to port 80");
    assert_eq!(status("/echo").await, 101, "relative targets are not checked");
}
