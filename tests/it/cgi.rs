//! CGI/1.1 scripts on the WebSocket port (pywebsocket `-x/--cgi-paths`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use wshd_tests::*;

fn executable(path: &Path) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

const ENV_SCRIPT: &str = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\nX-Script: env\\r\\n\\r\\n'\n\
    for v in GATEWAY_INTERFACE SERVER_PROTOCOL REQUEST_METHOD SCRIPT_NAME PATH_INFO QUERY_STRING \
    CONTENT_TYPE CONTENT_LENGTH REMOTE_ADDR SERVER_PORT HTTP_X_TEST HTTP_AUTHORIZATION; do\n\
    eval \"echo $v=\\${$v-unset}\"\ndone\nprintf 'body='\ncat\n";

/// A server whose document root `www` has the shipped `cgi-bin/hi` and test scripts.
fn start(cgi: &str, args: &[&str]) -> ServerProcess {
    let dir = TempDir::new();
    std::fs::create_dir_all(dir.path().join("handlers")).unwrap_or_else(|e| panic!("{e}"));
    let hi = dir.path().join("www/cgi-bin/hi");
    std::fs::create_dir_all(dir.path().join("www/cgi-bin")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(workspace_root().join("handlers/htdocs/cgi-bin/hi"), &hi).unwrap_or_else(|e| panic!("{e}"));
    executable(&hi);
    executable(&dir.write("www/cgi-bin/env", ENV_SCRIPT));
    executable(&dir.write(
        "www/cgi-bin/teapot",
        "#!/bin/sh\nprintf 'Status: 418 I am a teapot\\nContent-Type: text/x-tea\\n\\nshort and stout'\n",
    ));
    executable(&dir.write(
        "www/cgi-bin/slow",
        "#!/bin/sh\necho $$ > slow.pid\nsleep 30\necho 'Content-Type: text/plain'\necho\necho late\n",
    ));
    executable(&dir.write("www/cgi-bin/flood", "#!/bin/sh\necho 'Content-Type: text/plain'\necho\nwhile :; do echo flooding flooding flooding; done\n"));
    executable(&dir.write("www/cgi-bin/fails", "#!/bin/sh\necho 'oops' >&2\nexit 3\n"));
    executable(&dir.write(
        "www/cgi-bin/signals",
        "#!/bin/sh\necho 'Content-Type: text/plain'\necho\nexec grep -E '^Sig(Blk|Ign)' /proc/self/status\n",
    ));
    executable(&dir.write("www/cgi-bin/garbage", "#!/bin/sh\necho 'this is not a header'\n"));
    dir.write("www/cgi-bin/readme.txt", "a plain file under cgi-bin\n");
    dir.write("www/page.txt", "static page\n");
    executable(
        &dir.write("www/elsewhere.sh", "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho ran\n"),
    );
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\ndocument_root = \"www\"\n[handlers]\ndir = \"handlers\"\n{cgi}"
    );
    dir.write("server.toml", &config);
    let mut all = vec!["-c", "server.toml"];
    all.extend_from_slice(args);
    ServerProcess::spawn(&all, dir)
}

async fn get(server: &ServerProcess, target: &str) -> RawResponse {
    raw_http(server.addr, &format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"))
        .await
}

const CGI: &str = "[cgi]\npaths = [\"/cgi-bin\"]\ntimeout_secs = 1\nmax_output_bytes = 65536\n";

#[tokio::test]
async fn scripts_run_with_the_cgi_environment() {
    let server = start(CGI, &[]);
    let hi = get(&server, "/cgi-bin/hi").await;
    assert_eq!(
        (hi.status, hi.header("content-type"), hi.text().as_str()),
        (200, Some("text/plain"), "Hi from hi\n")
    );

    let request = "POST /cgi-bin/env/extra/path?a=1&b=2 HTTP/1.1\r\nHost: localhost\r\nX-Test: yes\r\n\
                   Authorization: Basic c2VjcmV0\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    let env = raw_http(server.addr, request).await;
    assert_eq!((env.status, env.header("x-script")), (200, Some("env")), "{env:?}");
    let text = env.text();
    let port = server.addr.port();
    for line in [
        "GATEWAY_INTERFACE=CGI/1.1".to_owned(),
        "SERVER_PROTOCOL=HTTP/1.1".to_owned(),
        "REQUEST_METHOD=POST".to_owned(),
        "SCRIPT_NAME=/cgi-bin/env".to_owned(),
        "PATH_INFO=/extra/path".to_owned(),
        "QUERY_STRING=a=1&b=2".to_owned(),
        "CONTENT_TYPE=text/plain".to_owned(),
        "CONTENT_LENGTH=5".to_owned(),
        "REMOTE_ADDR=127.0.0.1".to_owned(),
        format!("SERVER_PORT={port}"),
        "HTTP_X_TEST=yes".to_owned(),
        "HTTP_AUTHORIZATION=unset".to_owned(),
        "body=hello".to_owned(),
    ] {
        assert!(text.contains(&line), "missing {line} in:\n{text}");
    }

    let tea = get(&server, "/cgi-bin/teapot").await;
    assert_eq!(
        (tea.status, tea.header("content-type"), tea.text().as_str()),
        (418, Some("text/x-tea"), "short and stout")
    );
    assert!(server.wait_log("CGI", WAIT).is_some());

    // The worker blocks SIGTERM/SIGINT/SIGHUP for its signal thread and started with SIGHUP
    // ignored: a script inherits neither.
    let signals = get(&server, "/cgi-bin/signals").await;
    let text = signals.text();
    let mask = |field: &str| {
        let line =
            text.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field} in {text}"));
        u64::from_str_radix(line[field.len()..].trim(), 16).unwrap_or_else(|e| panic!("{line}: {e}"))
    };
    let hup_int_term = (1 << (1 - 1)) | (1 << (2 - 1)) | (1 << (15 - 1));
    assert_eq!(mask("SigBlk:"), 0, "{text}");
    assert_eq!(mask("SigIgn:") & hup_int_term, 0, "{text}");
}

#[tokio::test]
async fn non_executables_are_static_and_traversal_is_refused() {
    let server = start(CGI, &[]);
    let readme = get(&server, "/cgi-bin/readme.txt").await;
    assert_eq!((readme.status, readme.text().as_str()), (200, "a plain file under cgi-bin\n"));
    // Outside the CGI paths an executable is just a file.
    let script = get(&server, "/elsewhere.sh").await;
    assert!(script.status == 200 && script.text().contains("echo ran"), "{script:?}");
    for attack in [
        "/cgi-bin/../elsewhere.sh",
        "/cgi-bin/%2e%2e/elsewhere.sh",
        "/cgi-bin/..%2felsewhere.sh",
        "/cgi-bin/a..b",
    ] {
        let resp = get(&server, attack).await;
        assert_eq!(resp.status, 403, "{attack}: {resp:?}");
        assert!(!resp.text().contains("ran"), "{attack} ran a script");
    }
    // An encoded prefix is still the CGI path: the script runs, its source is not shown.
    let encoded = get(&server, "/cgi%2Dbin/hi").await;
    assert_eq!(encoded.text(), "Hi from hi\n");
    assert_eq!(get(&server, "/cgi-bin/missing").await.status, 404);
}

#[tokio::test]
async fn runaway_and_broken_scripts_are_bounded() {
    let server = start(CGI, &[]);
    let started = Instant::now();
    let slow = get(&server, "/cgi-bin/slow").await;
    assert_eq!(slow.status, 504, "{slow:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    let pid_file = server.dir().join("www/cgi-bin/slow.pid");
    let pid = std::fs::read_to_string(&pid_file).unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()));
    let proc_dir = Path::new("/proc").join(pid.trim());
    let deadline = Instant::now() + WAIT;
    while proc_dir.exists() && Instant::now() < deadline {
        // A zombie is gone for all purposes: check its state.
        let state = std::fs::read_to_string(proc_dir.join("stat")).unwrap_or_default();
        if state.split_whitespace().nth(2) == Some("Z") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let state = std::fs::read_to_string(proc_dir.join("stat")).unwrap_or_default();
    assert!(
        state.is_empty() || state.split_whitespace().nth(2) == Some("Z"),
        "the script still runs: {state}"
    );

    let flood = get(&server, "/cgi-bin/flood").await;
    assert_eq!(flood.status, 502, "{flood:?}");
    let fails = get(&server, "/cgi-bin/fails").await;
    assert_eq!(fails.status, 502, "{fails:?}");
    assert!(server.wait_log("oops", WAIT).is_some(), "stderr is logged:\n{}", server.logs());
    assert_eq!(get(&server, "/cgi-bin/garbage").await.status, 502);
    let line = server.wait_log("malformed header line", WAIT).unwrap_or_else(|| panic!("{}", server.logs()));
    assert!(line.contains("garbage"), "{line}");
}

#[tokio::test]
async fn cgi_paths_come_from_the_flag_and_need_the_credential_with_basic_auth() {
    let server = start("", &["-x", "/cgi-bin,/other", "--basic-auth"]);
    assert_eq!(get(&server, "/cgi-bin/hi").await.status, 401);
    let request = "GET /cgi-bin/hi HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dGVzdDp0ZXN0\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_http(server.addr, request).await.text(), "Hi from hi\n");
}

#[test]
fn cgi_without_a_document_root_is_refused() {
    let dir = TempDir::new();
    let out = std::process::Command::new(wshd_bin())
        .args(["-x", "/cgi-bin", "check-config"])
        .current_dir(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("CGI paths (/cgi-bin) need a document root"), "{stderr}");
    let out = std::process::Command::new(wshd_bin())
        .args(["-x", "cgi-bin", "check-config"])
        .current_dir(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("-x/--cgi-paths: CGI path `cgi-bin` must start with `/`")
    );
}
