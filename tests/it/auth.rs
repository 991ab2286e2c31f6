//! HTTP Basic authentication on every request (pywebsocket `--basic-auth`): static pages,
//! WebSocket handshakes and CGI scripts alike.

use wshd_tests::*;

/// `test:test`, pywebsocket's default credential.
const TEST_TEST: &str = "dGVzdDp0ZXN0";
/// `alice:s3cret`.
const ALICE: &str = "YWxpY2U6czNjcmV0";

fn get(path: &str, authorization: Option<&str>) -> String {
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n")
}

fn start(extra: &str, args: &[&str]) -> ServerProcess {
    let dir = TempDir::new();
    dir.install("echo_wsh", "handlers/libecho_wsh.so");
    dir.write("www/index.html", "<h1>private</h1>");
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\ndocument_root = \"www\"\n[handlers]\ndir = \"handlers\"\n{extra}"
    );
    dir.write("server.toml", &config);
    let mut all = vec!["-c", "server.toml"];
    all.extend_from_slice(args);
    ServerProcess::spawn(&all, dir)
}

#[tokio::test]
async fn pages_and_handshakes_need_the_credential() {
    let server = start("[auth]\nbasic = true\n", &[]);
    let denied = raw_http(server.addr, &get("/index.html", None)).await;
    assert_eq!(denied.status, 401);
    assert_eq!(denied.header("www-authenticate"), Some("Basic realm=\"wshd\""));
    assert!(!denied.text().contains("private"));
    for wrong in ["Basic dGVzdDp3cm9uZw==", "Basic !!!", "Bearer abc", "Basic"] {
        let resp = raw_http(server.addr, &get("/index.html", Some(wrong))).await;
        assert_eq!(resp.status, 401, "{wrong}");
    }
    let ok = raw_http(server.addr, &get("/index.html", Some(&format!("Basic {TEST_TEST}")))).await;
    assert_eq!((ok.status, ok.text().as_str()), (200, "<h1>private</h1>"));
    // Missing files stay 404 only for authenticated clients.
    assert_eq!(raw_http(server.addr, &get("/nope", None)).await.status, 401);

    let handshake = raw_http(server.addr, &handshake_request("/echo", "")).await;
    assert_eq!(handshake.status, 401);
    assert_eq!(handshake.header("www-authenticate"), Some("Basic realm=\"wshd\""));
    let header = format!("Authorization: Basic {TEST_TEST}\r\n");
    assert_eq!(raw_http(server.addr, &handshake_request("/echo", &header)).await.status, 101);
    let line = server.wait_log("authentication failed", WAIT).unwrap_or_else(|| panic!("{}", server.logs()));
    assert!(!line.contains("dGVzdDp3cm9uZw") && !line.contains("test:test"), "no secrets in logs: {line}");
}

#[tokio::test]
async fn credential_and_realm_are_configurable_and_flags_win() {
    let server = start(
        "[auth]\ncredential = \"bob:x\"\nrealm = \"Lab\"\n",
        &["--basic-auth", "--basic-auth-credential", "alice:s3cret"],
    );
    let denied = raw_http(server.addr, &get("/index.html", Some(&format!("Basic {TEST_TEST}")))).await;
    assert_eq!((denied.status, denied.header("www-authenticate")), (401, Some("Basic realm=\"Lab\"")));
    let ok = raw_http(server.addr, &get("/index.html", Some(&format!("Basic {ALICE}")))).await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn without_basic_auth_nothing_is_asked() {
    let server = start("", &[]);
    assert_eq!(raw_http(server.addr, &get("/index.html", None)).await.status, 200);
}

#[test]
fn a_malformed_credential_is_a_configuration_error() {
    let dir = TempDir::new();
    dir.write("a.toml", "[auth]\nbasic = true\ncredential = \"no-colon-here\"\n");
    let out = std::process::Command::new(wshd_bin())
        .args(["-c", "a.toml", "check-config"])
        .current_dir(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("a.toml:3:14: key `auth.credential`: a credential must be of the form user:password"),
        "{stderr}"
    );
    assert!(!stderr.contains("no-colon-here"), "the secret is not echoed: {stderr}");
}
