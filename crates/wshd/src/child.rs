//! Child processes awaited without a signal handler: [`Child`] spawns with `std::process`,
//! turns the piped stdio into tokio pipes and waits on a pidfd (Linux ≥ 5.3) registered
//! with the runtime's I/O driver.
//!
//! Why not `tokio::process`: it needs tokio's `process` feature, which brings tokio's signal
//! driver (a `SIGCHLD` handler and a process-global socketpair). Cargo unifies features
//! across a workspace build, so every plugin built in this workspace with the SDK's `io`
//! feature would get that driver too, and each plugin generation's copy of tokio would leave
//! its socketpair open after the library is unloaded (2 descriptors per hot reload;
//! `docs/decisions/0013-io-in-plugins.md`). The host uses no tokio signal or process API.
//!
//! A [`Child`] dropped before it was reaped is killed (`SIGKILL`) and reaped in the
//! background, like `tokio::process`'s `kill_on_drop`: no zombie is left behind.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, ExitStatus};

use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;

/// A running child process with its piped stdio (each `None` unless piped).
#[derive(Debug)]
pub(crate) struct Child {
    /// The process; `None` once handed to the background reaper.
    process: Option<std::process::Child>,
    /// Readable when the process has exited.
    exited: AsyncFd<OwnedFd>,
    /// Its exit status, once collected.
    status: Option<ExitStatus>,
    /// The write end of its stdin.
    pub(crate) stdin: Option<pipe::Sender>,
    /// The read end of its stdout.
    pub(crate) stdout: Option<pipe::Receiver>,
    /// The read end of its stderr.
    pub(crate) stderr: Option<pipe::Receiver>,
}

impl Child {
    /// Spawns `command` (its stdio configured by the caller) with a clean signal state: no
    /// signal blocked (a serving process blocks SIGTERM, SIGINT and SIGHUP for its signal
    /// thread, and a mask survives exec) and SIGHUP at its default. Must run inside a tokio
    /// runtime with I/O enabled.
    pub(crate) fn spawn(command: &mut Command) -> io::Result<Child> {
        clean_signals(command);
        let mut process = command.spawn()?;
        let exited = match pidfd_open(process.id()).and_then(watch) {
            Ok(exited) => exited,
            Err(e) => {
                let _ = process.kill();
                let _ = process.wait();
                return Err(e);
            }
        };
        let stdin = process.stdin.take().map(|s| pipe::Sender::from_owned_fd(s.into())).transpose()?;
        let stdout = process.stdout.take().map(|s| pipe::Receiver::from_owned_fd(s.into())).transpose()?;
        let stderr = process.stderr.take().map(|s| pipe::Receiver::from_owned_fd(s.into())).transpose()?;
        Ok(Child { process: Some(process), exited, status: None, stdin, stdout, stderr })
    }

    /// The process id.
    pub(crate) fn id(&self) -> Option<u32> {
        self.process.as_ref().map(std::process::Child::id)
    }

    /// Waits for the process to exit and reaps it.
    pub(crate) async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            let mut ready = self.exited.readable().await?;
            ready.clear_ready();
        }
    }

    /// Its exit status if it has exited (and reaps it), without waiting.
    pub(crate) fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let Some(process) = self.process.as_mut() else { return Err(io::ErrorKind::NotFound.into()) };
        self.status = process.try_wait()?;
        Ok(self.status)
    }

    /// Sends `SIGKILL` (a process already reaped is left alone).
    pub(crate) fn start_kill(&mut self) -> io::Result<()> {
        match (&mut self.process, self.status) {
            (Some(process), None) => process.kill(),
            _ => Ok(()),
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        let Some(mut process) = self.process.take() else { return };
        let _ = process.kill();
        if let Ok(Some(_)) = process.try_wait() {
            return;
        }
        // Reap it once the kill has taken effect, without blocking this thread.
        let Ok(fd) = self.exited.get_ref().try_clone() else {
            std::thread::spawn(move || process.wait());
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            std::thread::spawn(move || process.wait());
            return;
        };
        match watch(fd) {
            Ok(exited) => {
                runtime.spawn(async move {
                    let _ = exited.readable().await;
                    let _ = process.wait();
                });
            }
            Err(_) => {
                std::thread::spawn(move || process.wait());
            }
        }
    }
}

/// Makes `command`'s process start with no signal blocked and SIGHUP at its default.
#[allow(unsafe_code)]
fn clean_signals(command: &mut Command) {
    use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and calls only
    // async-signal-safe functions (pthread_sigmask, sigaction) that allocate nothing.
    unsafe {
        command.pre_exec(|| {
            SigSet::empty().thread_set_mask()?;
            signal(Signal::SIGHUP, SigHandler::SigDfl)?;
            Ok(())
        });
    }
}

/// Registers `fd` with the current runtime's I/O driver (panics outside a runtime).
#[allow(unsafe_code)]
fn watch(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the `AsyncFd` owns the `OwnedFd`, so the descriptor stays open and names the
    // same file description until the `AsyncFd` is dropped; `as_raw_fd` always returns it.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.map_err(io::Error::from)
}

/// A pidfd for `pid`: readable once the process has exited.
#[allow(unsafe_code)]
fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: pidfd_open takes a pid and flags (0) and returns a new descriptor or -1; it
    // touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(owned)
}
