//! The integration-test harness: builds the real binary and plugins once, runs `wshd` as a
//! child process on a port the OS picks, and offers clients that speak over real sockets
//! (a WebSocket client, and raw TCP for malformed input).

pub mod attack;
pub mod h2frames;
pub mod h2ws;
pub mod nginx;

pub use attack::{ControlProbe, ProbeReport, process_rss};

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// The repository root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The debug output directory of the workspace.
pub fn target_debug() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from);
    target.join("debug")
}

/// The packages the tests need built: the host, the example handlers and the fixtures.
const PACKAGES: &[&str] = &[
    "wshd",
    "echo_wsh",
    "fixture_probe",
    "fixture_bad_abi",
    "fixture_not_a_plugin",
    "fixture_panic_abort",
    "fixture_misbehave",
    "fixture_io",
    "fixture_old_abi",
    "fixture_version_one",
    "fixture_version_two",
    "fixture_rooms_one",
    "fixture_rooms_two",
    "echo_noext_wsh",
    "close_wsh",
    "abort_wsh",
    "abort_handshake_wsh",
    "origin_check_wsh",
    "cookie_wsh",
    "hsts_wsh",
    "internal_error_wsh",
    "bench_wsh",
    "benchmark_helper_wsh",
    "chat_wsh",
    "cmd_wsh",
];

/// Builds the binary and plugins once per test run (a no-op when they are up to date).
pub fn build_artifacts() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.arg("build").arg("--quiet").current_dir(workspace_root());
        for p in PACKAGES {
            cmd.args(["-p", p]);
        }
        let out = cmd.output().unwrap_or_else(|e| panic!("cannot run cargo build: {e}"));
        assert!(out.status.success(), "cargo build failed:\n{}", String::from_utf8_lossy(&out.stderr));
    });
}

/// The `wshd` binary.
pub fn wshd_bin() -> PathBuf {
    build_artifacts();
    target_debug().join("wshd")
}

/// Runs `wshd ARGS` in `cwd` to completion: (exit code, or -1 when killed by a signal; stdout;
/// stderr).
pub fn run_wshd(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let out = Command::new(wshd_bin()).args(args).current_dir(cwd).output().unwrap_or_else(|e| panic!("{e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The built library of a plugin crate (`echo_wsh`, `fixture_probe`, …).
pub fn plugin_lib(crate_name: &str) -> PathBuf {
    build_artifacts();
    target_debug().join(format!("lib{crate_name}.so"))
}

/// A temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory.
    pub fn new() -> TempDir {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "wshd-it-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Copies the built library of `crate_name` to `relative` inside this directory.
    pub fn install(&self, crate_name: &str, relative: &str) -> PathBuf {
        let dest = self.0.join(relative);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
        }
        std::fs::copy(plugin_lib(crate_name), &dest)
            .unwrap_or_else(|e| panic!("copy to {}: {e}", dest.display()));
        dest
    }

    /// Writes a file inside this directory.
    pub fn write(&self, relative: &str, contents: &str) -> PathBuf {
        let dest = self.0.join(relative);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
        }
        std::fs::write(&dest, contents).unwrap_or_else(|e| panic!("write {}: {e}", dest.display()));
        dest
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A config for a test server: loopback, a port the OS picks, the given handler directory.
pub fn config_for(handlers: &Path, extra: &str) -> String {
    config_with(handlers, "", extra)
}

/// Like [`config_for`], with `server_keys` (TOML lines) added to `[server]`.
pub fn config_with(handlers: &Path, server_keys: &str, extra: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n{server_keys}\n\n[handlers]\ndir = \"{}\"\n\n{extra}\n",
        handlers.display().to_string().replace('\\', "\\\\")
    )
}

/// A running `wshd` child process.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    _dir: TempDir,
}

impl ServerProcess {
    /// Starts `wshd -c <config>` with a handler directory prepared by `setup`, and waits until
    /// it listens. `extra_config` is appended to the generated config (TOML).
    pub fn start(setup: impl FnOnce(&TempDir), extra_config: &str) -> ServerProcess {
        ServerProcess::start_with(setup, "", extra_config)
    }

    /// Like [`ServerProcess::start`], with `server_keys` (TOML lines) added to `[server]`.
    pub fn start_with(setup: impl FnOnce(&TempDir), server_keys: &str, extra_config: &str) -> ServerProcess {
        let dir = TempDir::new();
        let handlers = dir.path().join("handlers");
        std::fs::create_dir_all(&handlers).unwrap_or_else(|e| panic!("mkdir: {e}"));
        setup(&dir);
        let config = dir.write("server.toml", &config_with(&handlers, server_keys, extra_config));
        ServerProcess::spawn(&["-c", &config.display().to_string()], dir)
    }

    /// Starts `wshd` with these arguments (cwd: `dir`).
    pub fn spawn(args: &[&str], dir: TempDir) -> ServerProcess {
        ServerProcess::spawn_under(&[], args, dir)
    }

    /// Starts `wshd` with these arguments through `wrapper` (a program that execs its
    /// arguments, e.g. `prlimit --nofile=256:4096 --`; none when empty), cwd `dir`.
    pub fn spawn_under(wrapper: &[&str], args: &[&str], dir: TempDir) -> ServerProcess {
        let wshd = wshd_bin();
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(&wshd);
                command
            }
            None => Command::new(&wshd),
        };
        let mut child = command
            .args(args)
            .current_dir(dir.path())
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start wshd: {e}"));
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        let sink = Arc::clone(&logs);
        // Bytes, not `lines()`: one line that is not UTF-8 would end `lines()`, and the
        // server would then block on a full stderr pipe.
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = Vec::new();
            while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                let text = String::from_utf8_lossy(&line).trim_end_matches(['\n', '\r']).to_owned();
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(text);
                line.clear();
            }
        });
        let mut server =
            ServerProcess { child, addr: SocketAddr::from(([127, 0, 0, 1], 0)), logs, _dir: dir };
        let line = server
            .wait_log("listening on ", Duration::from_secs(30))
            .unwrap_or_else(|| panic!("wshd did not start listening; its log:\n{}", server.logs()));
        let addr = line.rsplit("listening on ").next().unwrap_or("").trim();
        server.addr = addr.parse().unwrap_or_else(|_| panic!("bad address in log line: {line}"));
        server.wait_for_workers();
        server
    }

    /// With a master (it logs `master starting N workers` before `listening on`), waits until
    /// each of the N workers serves (`accepting on`), so a test starts, as with a single
    /// process, once the handlers are loaded.
    fn wait_for_workers(&self) {
        let Some(line) = self.wait_log("master starting ", Duration::ZERO) else { return };
        let count: usize = line
            .split("master starting ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(30);
        while (1..=count).any(|w| self.count_log_of_worker(w, "accepting on ") == 0) {
            assert!(Instant::now() < deadline, "not every worker started serving:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A `ws://` URL for `path` on this server.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Everything the server logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap_or_else(|p| p.into_inner()).join("\n")
    }

    /// Waits for a log line containing `needle` and returns it.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        self.wait_log_where(|line| line.contains(needle), timeout)
    }

    /// Waits for a log line for which `matches` holds and returns it.
    pub fn wait_log_where(&self, matches: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let found =
                self.logs.lock().unwrap_or_else(|p| p.into_inner()).iter().find(|l| matches(l)).cloned();
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's working directory (holds `server.toml` and `handlers/`).
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// Sends a Unix signal (`HUP`, `TERM`, …) to the server.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap_or_else(|e| panic!("kill: {e}"));
        assert!(status.success(), "kill -{name} failed");
    }

    /// How many log lines contain `needle` so far.
    pub fn count_log(&self, needle: &str) -> usize {
        self.logs.lock().unwrap_or_else(|p| p.into_inner()).iter().filter(|l| l.contains(needle)).count()
    }

    /// The process id of the server (the master when it runs workers).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The workers started so far, from the master's `worker N started pid=P` lines, as
    /// `(N, P)` in start order (a replaced worker appears again with its new pid). Empty for
    /// a single process (`workers = 0`).
    pub fn worker_starts(&self) -> Vec<(usize, u32)> {
        let logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        logs.iter().filter_map(|line| parse_worker_start(line)).collect()
    }

    /// The worker indices seen so far (1, 2, …); empty for a single process.
    pub fn worker_indices(&self) -> Vec<usize> {
        let mut indices: Vec<usize> = self.worker_starts().into_iter().map(|(i, _)| i).collect();
        indices.sort_unstable();
        indices.dedup();
        indices
    }

    /// Waits until every worker logged a line containing `needle` (for what each worker does
    /// on its own, such as a hot reload), or, for a single process, until it did. Returns
    /// whether that happened in time.
    pub fn wait_log_everywhere(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let workers = self.worker_indices();
            let done = if workers.is_empty() {
                self.count_log(needle) > 0
            } else {
                workers.iter().all(|w| self.count_log_of_worker(*w, needle) > 0)
            };
            if done || Instant::now() > deadline {
                return done;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every serving process (each worker, or the single process) logged a line
    /// containing `first` and, after it, one containing `then` (e.g. a handler loaded, then
    /// the route table published). Returns whether that happened in time.
    pub fn wait_log_everywhere_in_order(&self, first: &str, then: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let lines: Vec<String> = self.logs.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let workers = self.worker_indices();
            let prefixes: Vec<String> = if workers.is_empty() {
                vec![String::new()]
            } else {
                workers.iter().map(|w| format!("worker={w} ")).collect()
            };
            let done = prefixes.iter().all(|prefix| {
                let own = lines.iter().filter(|l| l.starts_with(prefix.as_str()));
                let mut after = own.skip_while(|l| !l.contains(first));
                after.next().is_some() && after.any(|l| l.contains(then))
            });
            if done || Instant::now() > deadline {
                return done;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Per serving process (each worker, or the single process), how many of its lines
    /// contain `needle`.
    pub fn count_log_each(&self, needle: &str) -> Vec<usize> {
        let workers = self.worker_indices();
        if workers.is_empty() {
            return vec![self.count_log(needle)];
        }
        workers.iter().map(|w| self.count_log_of_worker(*w, needle)).collect()
    }

    /// How many lines worker `index` logged containing `needle` (the master marks each
    /// relayed line `worker=N `).
    pub fn count_log_of_worker(&self, index: usize, needle: &str) -> usize {
        let prefix = format!("worker={index} ");
        let logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        logs.iter().filter(|l| l.starts_with(&prefix) && l.contains(needle)).count()
    }

    /// How many serving processes log for themselves: the number of workers, or 1 for a
    /// single process.
    pub fn serving_processes(&self) -> usize {
        self.worker_indices().len().max(1)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the process to exit; its status, or `None` if still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The admin listener's address (from the server's log; the config must set
    /// `admin_listen`).
    pub fn admin_addr(&self) -> SocketAddr {
        let line = self
            .wait_log("/metrics on http://", WAIT)
            .unwrap_or_else(|| panic!("no admin listener in the log:\n{}", self.logs()));
        let addr = line.rsplit("http://").next().unwrap_or("").trim();
        addr.parse().unwrap_or_else(|_| panic!("bad admin address in log line: {line}"))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(N, P)` from a master's `worker N started pid=P` line.
fn parse_worker_start(line: &str) -> Option<(usize, u32)> {
    let rest = line.split("worker ").nth(1)?;
    let (index, rest) = rest.split_once(" started pid=")?;
    let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((index.parse().ok()?, pid.parse().ok()?))
}

/// Whether process `pid` is gone (no `/proc/PID`, or a zombie nobody reaped yet).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// A WebSocket client connection.
pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects to `url`, with extra request headers.
pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> Result<Client, WsError> {
    let mut request = url.into_client_request()?;
    for (name, value) in headers {
        let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
            .unwrap_or_else(|e| panic!("header name {name}: {e}"));
        let value = value.parse().unwrap_or_else(|e| panic!("header value {value}: {e}"));
        request.headers_mut().append(name, value);
    }
    let (client, _response) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .unwrap_or_else(|_| panic!("connect to {url} timed out"))?;
    Ok(client)
}

/// Connects to `url`.
pub async fn connect(url: &str) -> Client {
    connect_with(url, &[]).await.unwrap_or_else(|e| panic!("connect {url}: {e}"))
}

/// The next message (pings/pongs skipped), or `None` when the stream ended.
pub async fn next_message(client: &mut Client) -> Option<Result<Message, WsError>> {
    loop {
        let next =
            tokio::time::timeout(WAIT, client.next()).await.unwrap_or_else(|_| panic!("no message in time"));
        match next {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => return other,
        }
    }
}

/// Sends `message` and returns the reply.
pub async fn round_trip(client: &mut Client, message: Message) -> Message {
    client.send(message).await.unwrap_or_else(|e| panic!("send: {e}"));
    match next_message(client).await {
        Some(Ok(m)) => m,
        other => panic!("expected a reply, got {other:?}"),
    }
}

/// Reads until the server's close frame arrives; returns its code and reason.
pub async fn expect_close(client: &mut Client) -> (u16, String) {
    match next_message(client).await {
        Some(Ok(Message::Close(frame))) => frame
            .map_or((1005, String::new()), |CloseFrame { code, reason }| {
                (u16::from(code), reason.to_string())
            }),
        Some(Ok(other)) => panic!("expected a close frame, got {other:?}"),
        Some(Err(e)) => panic!("expected a close frame, got error {e}"),
        None => panic!("the connection ended without a close frame"),
    }
}

/// A raw HTTP response.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The status code (0 when the server sent nothing).
    pub status: u16,
    /// Header lines as (lower-case name, value).
    pub headers: Vec<(String, String)>,
    /// The body (what followed the headers until EOF or `Content-Length`).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first header with this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    /// All values of a header.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends raw bytes as an HTTP request and parses the response head (and the body, up to
/// `Content-Length`). A connection closed without a response gives status 0.
pub async fn raw_http(addr: SocketAddr, request: &str) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.write_all(request.as_bytes()).await.unwrap_or_else(|e| panic!("write: {e}"));
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let status =
                lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            let length: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = buf[end + 4..].to_vec();
            while body.len() < length {
                let n = match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
                    Ok(Ok(n)) if n > 0 => n,
                    _ => break,
                };
                body.extend_from_slice(&chunk[..n]);
            }
            return RawResponse { status, headers, body };
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return RawResponse { status: 0, headers: Vec::new(), body: buf },
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {
                panic!("no HTTP response within {WAIT:?}; got so far: {:?}", String::from_utf8_lossy(&buf))
            }
        }
    }
}

/// `GET path` over a fresh connection.
pub async fn http_get(addr: SocketAddr, path: &str) -> RawResponse {
    raw_http(addr, &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")).await
}

/// The value of the sample `name` (a metric's name with its labels, exactly as exposed) in
/// a Prometheus text exposition such as `/metrics`.
pub fn metric_sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A loopback port that was free a moment ago (for programs that need a port number in
/// their configuration).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free port: {e}"))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A valid handshake request for `path`, with extra header lines (each ending in `\r\n`).
pub fn handshake_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A raw WebSocket connection (after a successful handshake), for sending malformed frames.
#[derive(Debug)]
pub struct RawSocket {
    stream: TcpStream,
    buffered: Vec<u8>,
}

/// A frame as read by [`RawSocket::read_frame`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// FIN bit.
    pub fin: bool,
    /// RSV1 bit (permessage-deflate: the message is compressed).
    pub rsv1: bool,
    /// Opcode.
    pub opcode: u8,
    /// Payload.
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// For a close frame: the code (1005 when empty).
    pub fn close_code(&self) -> u16 {
        if self.payload.len() >= 2 { u16::from_be_bytes([self.payload[0], self.payload[1]]) } else { 1005 }
    }
}

impl RawSocket {
    /// Opens a connection and completes the handshake for `path`.
    pub async fn open(addr: SocketAddr, path: &str) -> RawSocket {
        RawSocket::open_sending(addr, path, &[]).await
    }

    /// Like [`open`](RawSocket::open), but writes `early` (frames) in the same write as the
    /// handshake request, before the server has answered it.
    pub async fn open_sending(addr: SocketAddr, path: &str, early: &[u8]) -> RawSocket {
        RawSocket::open_with(addr, path, "", early).await
    }

    /// Like [`open_sending`](RawSocket::open_sending), with `headers` (complete `Name: value\r\n`
    /// lines, e.g. an extension offer) added to the request.
    pub async fn open_with(addr: SocketAddr, path: &str, headers: &str, early: &[u8]) -> RawSocket {
        let mut stream = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect: {e}"));
        let mut request = handshake_request(path, headers).into_bytes();
        request.extend_from_slice(early);
        stream.write_all(&request).await.unwrap_or_else(|e| panic!("write: {e}"));
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while find(&buf, b"\r\n\r\n").is_none() {
            let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
                .await
                .unwrap_or_else(|_| panic!("handshake timed out"))
                .unwrap_or_else(|e| panic!("read: {e}"));
            assert!(n > 0, "connection closed during handshake: {:?}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
        }
        let end = find(&buf, b"\r\n\r\n").unwrap_or(0);
        assert!(buf.starts_with(b"HTTP/1.1 101"), "handshake refused: {:?}", String::from_utf8_lossy(&buf));
        RawSocket { stream, buffered: buf[end + 4..].to_vec() }
    }

    /// Writes raw bytes; an error (the server closed) is returned, not a panic.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Sends a frame; `mask` chooses whether to mask it (clients must).
    pub async fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8], mask: bool) {
        let frame = encode_frame(fin, opcode, payload, mask);
        self.stream.write_all(&frame).await.unwrap_or_else(|e| panic!("write frame: {e}"));
    }

    async fn fill(&mut self, n: usize) -> bool {
        let mut chunk = [0u8; 65536];
        while self.buffered.len() < n {
            match tokio::time::timeout(WAIT, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return false,
                Ok(Ok(k)) => self.buffered.extend_from_slice(&chunk[..k]),
                Err(_) => panic!("no data from the server within {WAIT:?}"),
            }
        }
        true
    }

    /// Reads one server frame; `None` when the connection closed first.
    pub async fn read_frame(&mut self) -> Option<RawFrame> {
        if !self.fill(2).await {
            return None;
        }
        let (b0, b1) = (self.buffered[0], self.buffered[1]);
        assert_eq!(b1 & 0x80, 0, "server frames must not be masked");
        let (len, header) = match b1 & 0x7f {
            126 => {
                if !self.fill(4).await {
                    return None;
                }
                (u16::from_be_bytes([self.buffered[2], self.buffered[3]]) as usize, 4)
            }
            127 => {
                if !self.fill(10).await {
                    return None;
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.buffered[2..10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            n => (n as usize, 2),
        };
        if !self.fill(header + len).await {
            return None;
        }
        let payload = self.buffered[header..header + len].to_vec();
        self.buffered.drain(..header + len);
        Some(RawFrame { fin: b0 & 0x80 != 0, rsv1: b0 & 0x40 != 0, opcode: b0 & 0x0f, payload })
    }

    /// Whether the server closed the TCP connection (reads EOF) without sending more frames.
    pub async fn closed_without_frames(&mut self) -> bool {
        self.read_frame().await.is_none()
    }
}

/// A WebSocket frame's bytes; `mask` chooses whether to mask it (clients must).
pub fn encode_frame(fin: bool, opcode: u8, payload: &[u8], mask: bool) -> Vec<u8> {
    let mut frame = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let mask_bit = if mask { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => frame.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if mask {
        let key = [0x12, 0x34, 0x56, 0x78];
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        frame.extend_from_slice(payload);
    }
    frame
}
