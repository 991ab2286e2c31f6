//! Starting the child (std's `Command`: fork and exec, in its own process group, with pipes,
//! default signal state) and the
//! [`Reaper`] that guarantees it is killed and reaped whatever happens to the connection.

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::sys;

/// A started child with its pipes and its pidfd.
#[derive(Debug)]
pub(crate) struct Started {
    /// Owns the process until it is reaped.
    pub(crate) reaper: Reaper,
    /// Its stdin (write end).
    pub(crate) stdin: ChildStdin,
    /// Its stdout (read end).
    pub(crate) stdout: ChildStdout,
    /// Its stderr (read end).
    pub(crate) stderr: ChildStderr,
    /// Readable once it has exited.
    pub(crate) pidfd: OwnedFd,
}

/// Starts `program` with `args` and exactly the environment `env`, in its own process group.
/// The caller has reserved a slot in `live` for it: the slot is released when the child is
/// reaped, or here when it cannot be started.
pub(crate) fn start(
    program: &str,
    args: &[String],
    env: Vec<(String, OsString)>,
    live: &Arc<AtomicUsize>,
) -> io::Result<Started> {
    let path_var = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone()).unwrap_or_default();
    let resolved = match resolve(program, &path_var) {
        Ok(resolved) => resolved,
        Err(e) => {
            live.fetch_sub(1, Ordering::AcqRel);
            return Err(e);
        }
    };
    let mut command = Command::new(resolved);
    command
        .args(args)
        .env_clear()
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    sys::reset_signals_in_child(&mut command);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            live.fetch_sub(1, Ordering::AcqRel);
            return Err(e);
        }
    };
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let reaper = Reaper { child, live: Arc::clone(live), reaped: false };
    let (Some(stdin), Some(stdout), Some(stderr)) = (stdin, stdout, stderr) else {
        return Err(io::Error::other("the child's pipes are missing"));
    };
    let pidfd = sys::pidfd_open(reaper.pid())?;
    Ok(Started { reaper, stdin, stdout, stderr, pidfd })
}

/// `program` itself when it names a path (relative ones are relative to the server's working
/// directory), else the first executable `program` in `path_var` (the child's `PATH`, as
/// `execvp` would), so the log can say "not found in PATH".
fn resolve(program: &str, path_var: &OsString) -> io::Result<PathBuf> {
    if program.contains('/') {
        return Ok(PathBuf::from(program));
    }
    std::env::split_paths(path_var)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{program} not found in PATH")))
}

/// A regular file with an execute bit.
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Owns a child until it is reaped. Dropped unreaped (the connection's task was dropped, the
/// plugin's runtime shut down, a handshake never reached `transfer_data`), it kills the
/// child's process group and reaps it on the spot (a blocking `wait` after `SIGKILL`).
#[derive(Debug)]
pub(crate) struct Reaper {
    child: Child,
    live: Arc<AtomicUsize>,
    reaped: bool,
}

impl Reaper {
    /// The child's pid (and process group id).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Signals the child's process group (while the child is unreaped).
    pub(crate) fn signal_group(&self, signal: i32) {
        if !self.reaped {
            sys::signal_group(self.pid(), signal);
        }
    }

    /// Reaps the child, which has exited (its pidfd is readable), after killing what is left
    /// of its process group: no orphans. Does not block.
    pub(crate) fn reap(&mut self) -> io::Result<ExitStatus> {
        self.signal_group(libc::SIGKILL);
        let status = self.child.wait()?;
        self.reaped = true;
        Ok(status)
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if !self.reaped {
            self.signal_group(libc::SIGKILL);
            let _ = self.child.wait();
        }
        self.live.fetch_sub(1, Ordering::AcqRel);
    }
}
