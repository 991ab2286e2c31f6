//! The two system calls std does not offer: `pidfd_open` (exit notification without a
//! `SIGCHLD` handler) and signalling a process group.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// A pidfd for `pid`: readable once the process has exited (Linux ≥ 5.3). `pid` must be an
/// unreaped child of ours, so it cannot name a recycled process.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: pidfd_open takes a pid and flags (0) and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: `fd` is a descriptor the kernel just opened for us (close-on-exec), owned by
    // nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends `signal` to the process group `pgid` (our child leads it: `process_group(0)`).
/// Called only while the leader is unreaped (running or a zombie), so the group id cannot
/// have been reused.
pub(crate) fn signal_group(pgid: u32, signal: i32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else { return };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) with a negative pid signals that process group; no memory is involved.
    // ESRCH (the group is already empty) is fine.
    let _ = unsafe { libc::kill(-pgid, signal) };
}

/// Registers a pidfd with the current tokio runtime (readable: the process has exited).
/// Must run on the runtime (inside `io::run`).
pub(crate) fn watch(pidfd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    use tokio::io::unix::AsyncFd;
    // SAFETY: an `OwnedFd` is open until dropped and always returns the same descriptor; the
    // `AsyncFd` owns it for its whole life.
    Ok(unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }?)
}

/// Makes the child start with the signal state a program expects: nothing blocked, every
/// signal at its default action. Without this it inherits the spawning worker thread's mask
/// (wshd's threads block `SIGINT` and `SIGTERM`: a `SIGTERM` to the child would do nothing)
/// and whatever the server ignores (`SIGPIPE`, or `SIGINT`/`SIGQUIT` from a shell's `&`).
/// std's `posix_spawn` path offers no way to set these, so the child is forked.
pub(crate) fn reset_signals_in_child(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before `exec` and makes only
    // async-signal-safe calls (sigemptyset, pthread_sigmask, signal) on its own stack.
    unsafe {
        command.pre_exec(|| {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            for signal in 1..libc::SIGRTMIN() {
                if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                    libc::signal(signal, libc::SIG_DFL);
                }
            }
            Ok(())
        });
    }
}
