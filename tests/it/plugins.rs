//! Load-time checks: files that are not plugins, wrong ABI, `panic = "abort"` builds and
//! failing constructors are refused with one log line naming the file and the reason, and
//! the server keeps serving the others.

use std::process::Command;
use tokio_tungstenite::tungstenite::Message;
use wshd_tests::*;

#[tokio::test]
async fn refused_plugins_are_logged_and_the_rest_is_served() {
    let server = ServerProcess::start(
        |dir| {
            dir.install("echo_wsh", "handlers/libecho_wsh.so");
            dir.install("fixture_bad_abi", "handlers/libbad_abi_wsh.so");
            dir.install("fixture_old_abi", "handlers/libold_abi_wsh.so");
            dir.install("fixture_not_a_plugin", "handlers/librandom_wsh.so");
            dir.install("fixture_panic_abort", "handlers/libaborting_wsh.so");
            dir.write("handlers/libgarbage_wsh.so", &"this is not an ELF file\n".repeat(20));
        },
        "",
    );
    let expectations = [
        ("libbad_abi_wsh.so", "built for plugin ABI v999, this host speaks v2"),
        (
            "libold_abi_wsh.so",
            "built for plugin ABI v1, this host speaks v2; rebuild it against a matching wshd-sdk",
        ),
        ("librandom_wsh.so", "not a wshd plugin"),
        ("libaborting_wsh.so", "panic = \"abort\""),
        ("libgarbage_wsh.so", "invalid ELF header"),
    ];
    for (file, reason) in expectations {
        let line = server
            .wait_log_where(|l| l.contains("handler refused") && l.contains(file), WAIT)
            .unwrap_or_else(|| panic!("no refusal line for {file}:\n{}", server.logs()));
        assert!(line.contains(reason), "{file}: {line}");
    }
    for path in ["/bad_abi", "/old_abi", "/random", "/aborting", "/garbage"] {
        assert_eq!(raw_http(server.addr, &handshake_request(path, "")).await.status, 404, "{path}");
    }
    let mut client = connect(&server.ws_url("/echo")).await;
    assert_eq!(round_trip(&mut client, Message::text("alive")).await, Message::text("alive"));
}

#[tokio::test]
async fn a_failing_constructor_is_refused_with_its_message() {
    let server = ServerProcess::start(
        |dir| drop(dir.install("fixture_probe", "handlers/probe_wsh.so")),
        "[[route]]\npath = \"/probe\"\n[route.config]\nfail = \"no database configured\"\n",
    );
    let line = server.wait_log("handler refused", WAIT).unwrap_or_else(|| panic!("{}", server.logs()));
    assert!(line.contains("handler constructor failed: no database configured"), "{line}");
    assert_eq!(raw_http(server.addr, &handshake_request("/probe", "")).await.status, 404);
}

fn check_plugin(file: &std::path::Path) -> (bool, String) {
    let out =
        Command::new(wshd_bin()).arg("check-plugin").arg(file).output().unwrap_or_else(|e| panic!("{e}"));
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn check_plugin_describes_good_plugins_and_refuses_bad_ones() {
    let dir = TempDir::new();
    let (ok, out) = check_plugin(&dir.install("echo_wsh", "libecho_wsh.so"));
    assert!(ok, "{out}");
    assert!(
        out.contains("resource: /echo") && out.contains("handler: Echo") && out.contains("plugin ABI v2"),
        "{out}"
    );

    let (ok, out) = check_plugin(&dir.install("fixture_bad_abi", "libbad_wsh.so"));
    assert!(!ok);
    assert!(out.contains("refused: built for plugin ABI v999"), "{out}");

    let (ok, out) = check_plugin(&dir.write("librandom_wsh.so", "random bytes"));
    assert!(!ok);
    assert!(out.contains("refused: not a loadable shared library"), "{out}");
}

/// Sets `path`'s permission bits.
fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

#[tokio::test]
async fn plugins_that_every_user_could_replace_are_refused() {
    // A file writable by every user: refused, the others served.
    let server = ServerProcess::start(
        |dir| {
            drop(dir.install("echo_wsh", "handlers/libecho_wsh.so"));
            chmod(&dir.install("echo_wsh", "handlers/libopen_wsh.so"), 0o666);
        },
        "",
    );
    let line = server
        .wait_log_where(|l| l.contains("handler refused") && l.contains("libopen_wsh.so"), WAIT)
        .unwrap_or_else(|| panic!("{}", server.logs()));
    assert!(line.contains("writable by every user") && line.contains("chmod o-w"), "{line}");
    assert_eq!(raw_http(server.addr, &handshake_request("/open", "")).await.status, 404);
    assert_eq!(raw_http(server.addr, &handshake_request("/echo", "")).await.status, 101);
    // A handler directory writable by every user (no sticky bit): everything in it refused.
    let server = ServerProcess::start(
        |dir| {
            drop(dir.install("echo_wsh", "handlers/libecho_wsh.so"));
            chmod(&dir.path().join("handlers"), 0o777);
        },
        "",
    );
    let line = server.wait_log("handler refused", WAIT).unwrap_or_else(|| panic!("{}", server.logs()));
    assert!(line.contains("its directory") && line.contains("writable by every user"), "{line}");
    assert_eq!(raw_http(server.addr, &handshake_request("/echo", "")).await.status, 404);
}
