//! A real nginx (Debian's `/usr/sbin/nginx`) running one of the examples in `config/nginx/`,
//! edited for a test (its upstream set to the test's servers, listening on a free loopback
//! port), stopped on drop (also when a test panics). nginx must be installed (`.ci/run`
//! installs it); without it the tests fail, they do not skip.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{TempDir, WAIT, free_port, workspace_root};

/// Where Debian installs nginx.
pub const NGINX: &str = "/usr/sbin/nginx";

/// An nginx process on a loopback port.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Nginx {
    /// Starts nginx with `config/nginx/<example>` included in a minimal `http` block, after
    /// replacing `listen 80;` with a free loopback port and each `(from, to)` of `edits`
    /// (each must be in the file: a test notices when the example changes).
    pub fn start(example: &str, edits: &[(&str, String)]) -> Nginx {
        assert!(
            Path::new(NGINX).is_file(),
            "nginx is not installed ({NGINX} is missing): install it with \
             `apt-get install -y --no-install-recommends nginx` (.ci/run does this in its deps phase)"
        );
        let file = workspace_root().join("config/nginx").join(example);
        let mut snippet =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let port = free_port();
        let listen = ("listen 80;", format!("listen 127.0.0.1:{port};"));
        for (from, to) in edits.iter().map(|(f, t)| (*f, t.clone())).chain([listen]) {
            assert!(
                snippet.contains(from),
                "config/nginx/{example} no longer contains `{from}`: update the test"
            );
            snippet = snippet.replace(from, &to);
        }
        let dir = TempDir::new();
        dir.write("site.conf", &snippet);
        let conf = dir.write("nginx.conf", &main_conf(&dir));
        let d = dir.path().display().to_string();
        let child = Command::new(NGINX)
            .args(["-e", &format!("{d}/error.log"), "-p", &d, "-c", &conf.display().to_string()])
            .args(["-g", &format!("daemon off; pid {d}/nginx.pid;")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {NGINX}: {e}"));
        let mut nginx = Nginx { child, port, dir };
        nginx.wait_listening();
        nginx
    }

    /// Waits (bounded) until nginx accepts connections; panics with its error log if it
    /// exits or does not listen in time.
    fn wait_listening(&mut self) {
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nginx exited ({status}) at start:\n{}", self.error_log());
            }
            assert!(
                Instant::now() < deadline,
                "nginx is not listening on {}:\n{}",
                self.port,
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `ws://127.0.0.1:PORT{path}` through this nginx.
    pub fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

/// A minimal nginx.conf: one worker, logs and temporary files in `dir`, `site.conf` included.
fn main_conf(dir: &TempDir) -> String {
    let d = dir.path().display();
    for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        std::fs::create_dir_all(dir.path().join("tmp").join(sub))
            .unwrap_or_else(|e| panic!("nginx temp dirs: {e}"));
    }
    format!(
        "worker_processes 1;\nerror_log {d}/error.log info;\nevents {{ worker_connections 128; }}\n\
         http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/tmp/body;\n  \
         proxy_temp_path {d}/tmp/proxy;\n  fastcgi_temp_path {d}/tmp/fastcgi;\n  \
         uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n  include {d}/site.conf;\n}}\n"
    )
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers; SIGKILL if it does not exit.
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
