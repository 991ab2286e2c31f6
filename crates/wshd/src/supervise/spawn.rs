//! Starting one worker: the same executable, arguments and working directory as the master,
//! plus the environment of [`Inherited`]. Must be called on the master's main thread: the
//! worker's parent-death signal fires when the *thread* that forked it ends.

use std::os::fd::BorrowedFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::signal::{SigSet, Signal};

use super::inherit::Inherited;

/// Spawns a worker inheriting `inherited`'s fds; its stderr is piped (the master relays it).
pub(crate) fn spawn_worker(inherited: &Inherited) -> std::io::Result<Child> {
    let exe = std::env::current_exe()?;
    let mut command = Command::new(exe);
    command.args(std::env::args_os().skip(1)).stdin(Stdio::null()).stderr(Stdio::piped());
    for (name, value) in inherited.to_env() {
        command.env(name, value);
    }
    let fds = inherited.fds();
    let master = nix::unistd::Pid::from_raw(inherited.master_pid as i32);
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed: it calls fcntl, pthread_sigmask, sigaction, prctl and getppid (system
    // calls), and allocates nothing (`fds` was built before the fork and is only read).
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || {
            for &fd in &fds {
                // SAFETY: the master keeps these fds open for as long as it spawns workers.
                let fd = BorrowedFd::borrow_raw(fd);
                fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))?;
            }
            SigSet::empty().thread_set_mask()?;
            // SAFETY: setting a disposition to "ignore" installs no handler code; sigaction is
            // async-signal-safe. A SIGHUP forwarded before the worker listens for it (it reads
            // its configuration at start anyway) must not kill it; its SIGHUP listener
            // replaces this disposition.
            nix::sys::signal::signal(Signal::SIGHUP, nix::sys::signal::SigHandler::SigIgn)?;
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
            if nix::unistd::getppid() != master {
                // The master died before the death signal was armed: do not serve orphaned.
                return Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
            }
            Ok(())
        });
    }
    command.spawn()
}
