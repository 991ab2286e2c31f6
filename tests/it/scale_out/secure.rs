//! The Redis link secured: `rediss://` to a private `redis-server` that listens only on a TLS
//! port (certificates made here, as in `tls.rs`), its CA given by `[broker] tls_ca_file`;
//! a node given another CA, or the system's roots, is refused by the certificate check and
//! says so (log, `/readyz` 503) instead of hanging; a client certificate for
//! `tls-auth-clients yes`; a missing CA file stops the start with its path. A Redis with
//! `requirepass` and an ACL user: the passwords in the URLs work across two nodes, a wrong
//! one is logged as refused, and no log line nor `/metrics` shows a password.

use rcgen::ExtendedKeyUsagePurpose;

use super::*;
use crate::tls::{Pair, ca, leaf};

/// The certificates of a TLS test: Redis's CA and server certificate, a client certificate
/// from the same CA, and another CA.
struct Certs {
    ca: Pair,
    client: Pair,
    other_ca: Pair,
    dir: TempDir,
}

fn certs() -> Certs {
    let (ca_pair, issuer) = ca("wshd test Redis CA");
    let server = leaf(&["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth, &issuer);
    let client = leaf(&["node.test"], ExtendedKeyUsagePurpose::ClientAuth, &issuer);
    let (other_ca, _) = ca("some other CA");
    let dir = TempDir::new();
    dir.write("ca.pem", &ca_pair.cert_pem);
    dir.write("server.pem", &server.cert_pem);
    dir.write("server.key", &server.key_pem);
    dir.write("client.pem", &client.cert_pem);
    dir.write("client.key", &client.key_pem);
    Certs { ca: ca_pair, client, other_ca, dir }
}

/// A Redis listening only on a TLS port (`--port 0`), requiring client certificates or not.
fn tls_redis(certs: &Certs, auth_clients: bool) -> Redis {
    let port = free_port();
    let file = |name: &str| certs.dir.path().join(name).display().to_string();
    let (cert, key, ca_file, port_text) =
        (file("server.pem"), file("server.key"), file("ca.pem"), port.to_string());
    let auth = if auth_clients { "yes" } else { "no" };
    let args = ["--port", "0", "--tls-port", &port_text, "--tls-cert-file", &cert, "--tls-key-file", &key];
    let ping = |_: &Redis| {
        let mut cli = Command::new("redis-cli");
        cli.args(["--tls", "--cacert", &ca_file, "-h", "127.0.0.1", "-p", &port_text]);
        if auth_clients {
            cli.args(["--cert", &file("client.pem"), "--key", &file("client.key")]);
        }
        cli.arg("PING").output().is_ok_and(|out| out.stdout.starts_with(b"PONG"))
    };
    Redis::spawn(
        &[&args[..], &["--tls-ca-cert-file", &ca_file, "--tls-auth-clients", auth]].concat(),
        port,
        ping,
    )
}

/// A node serving the rooms fixture, linked to `url`, with `files` (name, PEM) in its
/// directory and `broker_keys` added to `[broker]`.
fn secure_node(url: &str, files: &[(&str, &str)], broker_keys: &str, server_keys: &str) -> ServerProcess {
    node_with_flags(url, files, broker_keys, server_keys, &[])
}

/// Like [`secure_node`], with command-line `flags` after `-c server.toml`.
fn node_with_flags(
    url: &str,
    files: &[(&str, &str)],
    broker_keys: &str,
    server_keys: &str,
    flags: &[&str],
) -> ServerProcess {
    let broker = format!("[broker]\nurl = \"{url}\"\nheartbeat_ms = 200\n{broker_keys}\n");
    let server_keys = format!("{server_keys}\nadmin_listen = \"127.0.0.1:0\"");
    let dir = TempDir::new();
    let handlers = dir.path().join("handlers");
    std::fs::create_dir_all(&handlers).expect("mkdir handlers");
    dir.install("fixture_rooms_one", HANDLER);
    for (name, text) in files {
        dir.write(name, text);
    }
    let config = dir.write(
        "server.toml",
        &config_with(&handlers, &server_keys, &format!("debounce_ms = 20\n\n{broker}")),
    );
    let config = config.display().to_string();
    ServerProcess::spawn(&[&["-c", config.as_str()], flags].concat(), dir)
}

/// Alice on `one` and Bob on `two` join `lobby`; Bob's publish reaches Alice across nodes.
async fn publish_across(one: &ServerProcess, two: &ServerProcess) {
    let (mut alice, mut bob) = (Peer::connect(one).await, Peer::connect(two).await);
    assert_eq!(alice.ask("join lobby alice").await, "ok joined lobby", "{}", one.logs());
    assert_eq!(bob.ask("join lobby bob").await, "ok joined lobby", "{}", two.logs());
    alice.wait_names("lobby", &["alice", "bob"]).await;
    assert!(bob.ask("pub lobby over the secured link").await.starts_with("ok"));
    assert_eq!(alice.room_message().await, "v1 over the secured link", "across nodes");
}

/// The node's broker is down: the log says why (`needle`), `/readyz` answers 503. The line,
/// and how long after the call it was found.
async fn reported_down(node: &ServerProcess, needle: &str) -> (String, Duration) {
    let started = Instant::now();
    let line =
        node.wait_log_where(|l| l.contains("rooms broker: Redis unreachable") && l.contains(needle), WAIT);
    let line = line.unwrap_or_else(|| panic!("no `{needle}` broker error logged:\n{}", node.logs()));
    let ready = http_get(node.admin_addr(), "/readyz").await;
    assert_eq!(
        (ready.status, ready.text()),
        (503, "not ready: the rooms broker (Redis) is down\n".to_owned())
    );
    assert!(http_get(node.admin_addr(), "/metrics").await.text().contains("wshd_broker_up 0"));
    (line, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_private_ca_spans_nodes_and_another_ca_is_refused_and_reported() {
    let certs = certs();
    let redis = tls_redis(&certs, false);
    let url = format!("rediss://127.0.0.1:{}/0", redis.port);
    let ca_file = [("ca.pem", certs.ca.cert_pem.as_str())];
    let one = secure_node(&url, &ca_file, "tls_ca_file = \"ca.pem\"", "workers = 2");
    let two = secure_node(&url, &ca_file, "tls_ca_file = \"ca.pem\"", "workers = 0");
    publish_across(&one, &two).await;
    assert!(one.wait_log("rooms broker: connected to Redis", WAIT).is_some());
    let other = [("other.pem", certs.other_ca.cert_pem.as_str())];
    let stranger = secure_node(&url, &other, "tls_ca_file = \"other.pem\"", "workers = 0");
    let line = reported_down(&stranger, "invalid peer certificate: UnknownIssuer").await;
    println!("a node given another CA ({:?} after it listened): {}", line.1, line.0);
    // No tls_ca_file: the system's roots, which do not know the test CA either.
    let system = secure_node(&url, &[], "", "workers = 0");
    let line = reported_down(&system, "invalid peer certificate: UnknownIssuer").await;
    println!("a node with the system's roots ({:?} after it listened): {}", line.1, line.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_client_certificate_when_redis_requires_one() {
    let certs = certs();
    let redis = tls_redis(&certs, true);
    let url = format!("rediss://127.0.0.1:{}/0", redis.port);
    let files = [
        ("ca.pem", certs.ca.cert_pem.as_str()),
        ("node.pem", certs.client.cert_pem.as_str()),
        ("node.key", certs.client.key_pem.as_str()),
    ];
    let keys = "tls_ca_file = \"ca.pem\"\ntls_cert_file = \"node.pem\"\ntls_key_file = \"node.key\"";
    let one = secure_node(&url, &files, keys, "workers = 0");
    // `--broker` replaces the file's URL and keeps its TLS keys.
    let two = node_with_flags("rediss://127.0.0.1:1/0", &files, keys, "workers = 0", &["--broker", &url]);
    publish_across(&one, &two).await;
    // Without a client certificate Redis ends the handshake.
    let bare = secure_node(&url, &files, "tls_ca_file = \"ca.pem\"", "workers = 0");
    let line = reported_down(&bare, "CertificateRequired").await;
    println!("a node without a client certificate ({:?} after it listened): {}", line.1, line.0);
}

#[test]
fn a_missing_or_bad_ca_file_stops_the_start_with_its_path() {
    let dir = TempDir::new();
    std::fs::create_dir_all(dir.path().join("handlers")).expect("mkdir handlers");
    dir.write("garbage.pem", "this is not PEM\n");
    for (file, expected) in [
        ("missing.pem", "TLS [broker] tls_ca_file missing.pem: cannot read"),
        ("garbage.pem", "TLS [broker] tls_ca_file garbage.pem: no certificate found"),
    ] {
        let config = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 0\n[handlers]\ndir = \"handlers\"\n\
             [broker]\nurl = \"rediss://:s3cret@127.0.0.1:1/0\"\ntls_ca_file = \"{file}\"\n"
        );
        dir.write("bad.toml", &config);
        let (code, stdout, stderr) = run_wshd(&["-c", "bad.toml"], dir.path());
        assert_ne!(code, 0, "{file}: the server must not start:\n{stdout}{stderr}");
        assert!(stderr.contains(expected), "{file}: {stderr}");
        assert!(!stderr.contains("s3cret") && !stdout.contains("s3cret"), "{stderr}");
        let (code, stdout, stderr) = run_wshd(&["-c", "bad.toml", "check-config"], dir.path());
        assert!(code != 0 && stderr.contains(expected), "check-config {file}: {stdout}{stderr}");
        assert!(stdout.contains("rooms broker: rediss://:***@127.0.0.1:1/0"), "{stdout}");
        assert!(!stderr.contains("s3cret") && !stdout.contains("s3cret"), "{stdout}{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_in_the_url_work_and_a_wrong_one_is_logged_without_it() {
    let port = free_port();
    let args = [
        "--port",
        &port.to_string(),
        "--requirepass",
        "default-s3cret",
        "--user",
        "app",
        "on",
        ">app-s3cret",
        "~*",
        "&*",
        "+@all",
    ]
    .map(str::to_owned);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let redis = Redis::spawn(&args, port, |r| r.command("PING\r\n").starts_with("-NOAUTH"));
    let one = node_at(&format!("redis://:default-s3cret@127.0.0.1:{port}/0"), "workers = 2");
    let two = node_at(&format!("redis://app:app-s3cret@127.0.0.1:{port}/0"), "workers = 0");
    publish_across(&one, &two).await;
    let wrong = node_at(&format!("redis://app:wrong-s3cret@127.0.0.1:{port}/0"), "workers = 0");
    let line = reported_down(&wrong, "AuthenticationFailed").await;
    println!("a node with a wrong password ({:?} after it listened): {}", line.1, line.0);
    for node in [&one, &two, &wrong] {
        let metrics = http_get(node.admin_addr(), "/metrics").await.text();
        let all = format!("{}\n{metrics}", node.logs());
        assert!(!all.contains("s3cret"), "a password in the logs or /metrics:\n{all}");
    }
    assert!(two.logs().contains("rooms broker: Redis at redis://app:***@127.0.0.1:"), "{}", two.logs());
    drop(redis);
}

/// A plain node linked to `url` (a password in it).
fn node_at(url: &str, server_keys: &str) -> ServerProcess {
    secure_node(url, &[], "", server_keys)
}
