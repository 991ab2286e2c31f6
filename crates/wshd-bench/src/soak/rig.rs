//! The server under soak: a release `wshd` (master + its default worker processes) in a
//! temporary directory, serving private copies of `libecho_wsh.so` and `libchat_wsh.so`;
//! hot reloads of those copies; and a clean stop (SIGTERM, then SIGKILL) on drop.

use std::fs;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::BoxError;
use crate::run::{free_port, quoted, wait_for_listener};

/// The build command for what the soak runs.
pub(super) const BUILD_COMMAND: &str = "cargo build --release -p wshd -p wshd-bench -p echo_wsh -p chat_wsh";

/// The plugins served, each replaced in turn by the hot reloads.
const PLUGINS: [&str; 2] = ["libecho_wsh.so", "libchat_wsh.so"];

/// Appended to every other copy of a plugin so that each replacement changes its content.
const TRAILER: &[u8] = b"\0wshd-bench soak: a new build\0";

/// A running wshd and its private directory.
pub(super) struct Rig {
    temp: PathBuf,
    handlers: PathBuf,
    builds: Vec<Arc<Vec<u8>>>,
    child: Child,
    /// `127.0.0.1:port`.
    pub(super) addr: std::net::SocketAddr,
    /// wshd's log (stderr).
    pub(super) log_path: PathBuf,
}

impl Rig {
    /// Writes the configuration, copies the plugins and starts wshd; returns once it listens.
    pub(super) fn start(release_dir: &Path) -> Result<Rig, BoxError> {
        let release_dir = std::path::absolute(release_dir)?;
        let wshd_bin = release_dir.join("wshd");
        if !wshd_bin.is_file() {
            return Err(format!("{} not found; build first:\n  {BUILD_COMMAND}", wshd_bin.display()).into());
        }
        let mut builds = Vec::new();
        for name in PLUGINS {
            let path = release_dir.join(name);
            builds.push(Arc::new(
                fs::read(&path)
                    .map_err(|e| format!("{}: {e}; build first:\n  {BUILD_COMMAND}", path.display()))?,
            ));
        }
        let temp = std::env::temp_dir().join(format!("wshd-bench-soak-{}", std::process::id()));
        let handlers = temp.join("handlers");
        fs::create_dir_all(&handlers)?;
        let port = free_port()?;
        let config = temp.join("server.toml");
        fs::write(
            &config,
            format!(
                "# Written by wshd-bench soak.\n[server]\nlisten = [\"127.0.0.1:{port}\"]\n\
                 shutdown_grace_secs = 2\n\n[handlers]\ndir = {}\nrecursive = false\n\n\
                 [log]\nlevel = \"info\"\n",
                quoted(handlers.to_str().ok_or("the temporary directory is not UTF-8")?)
            ),
        )?;
        for (name, build) in PLUGINS.iter().zip(&builds) {
            place(&handlers, name, build)?;
        }
        let log_path = temp.join("wshd.log");
        let log = fs::File::create(&log_path)?;
        let child = Command::new(&wshd_bin)
            .arg("-c")
            .arg(&config)
            .current_dir(&temp)
            // Its own process group: a Ctrl-C at the terminal reaches only us, and we stop it.
            .process_group(0)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", wshd_bin.display()))?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut rig = Rig { temp, handlers, builds, child, addr, log_path };
        wait_for_listener(&mut rig.child, "wshd", addr)?;
        Ok(rig)
    }

    /// The master's process id.
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the master runs.
    pub(super) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Hot reload number `n` (from 0) as a job for another thread: the plugins are replaced
    /// in turn.
    pub(super) fn reload_job(
        &self,
        n: usize,
    ) -> impl FnOnce() -> Result<&'static str, BoxError> + Send + 'static {
        self.job(n + PLUGINS.len())
    }

    /// Puts plugin `index % 2` (of [`PLUGINS`]) in place as a deployment does: the new file
    /// is written next to it under a dot-name and renamed over it.
    fn job(&self, index: usize) -> impl FnOnce() -> Result<&'static str, BoxError> + Send + 'static {
        let name = PLUGINS[index % PLUGINS.len()];
        let build = self.builds.get(index % PLUGINS.len()).cloned().unwrap_or_default();
        // wshd reloads nothing for a file with the content it has loaded (a touched file), so
        // every other replacement carries a few bytes after the ELF image: new content, same
        // code, as a rebuild gives.
        let trailer: &'static [u8] = if (index / PLUGINS.len()).is_multiple_of(2) { b"" } else { TRAILER };
        let handlers = self.handlers.clone();
        move || {
            place(&handlers, name, &[&build[..], trailer].concat())?;
            Ok(name)
        }
    }

    /// Lines of wshd's log containing `needle`.
    pub(super) fn log_count(&self, needle: &str) -> usize {
        fs::read_to_string(&self.log_path).map_or(0, |log| log.lines().filter(|l| l.contains(needle)).count())
    }

    /// The first few ERROR lines of wshd's log, and how many there were.
    pub(super) fn log_errors(&self) -> (usize, Vec<String>) {
        let log = fs::read_to_string(&self.log_path).unwrap_or_default();
        let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
        (errors.len(), errors.iter().take(5).map(|l| (*l).to_owned()).collect())
    }

    /// Stops wshd: SIGTERM (a graceful stop of master and workers), then SIGKILL after 10 s.
    fn stop(&mut self) {
        if !self.alive() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `bytes` to a dot-file in `dir` and renames it to `name`.
fn place(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), BoxError> {
    let staging = dir.join(format!(".{name}.tmp"));
    fs::write(&staging, bytes)?;
    fs::rename(&staging, dir.join(name))?;
    Ok(())
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop();
        // The log is kept next to the CSV by the caller before this; the rest goes.
        let _ = fs::remove_dir_all(&self.temp);
    }
}
