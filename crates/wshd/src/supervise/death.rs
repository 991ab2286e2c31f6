//! How a worker ended, in words for the log: `exited with status 1`, `killed by SIGSEGV
//! (core dumped)`.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use nix::sys::signal::Signal;

/// The name of signal number `signal` (`SIGSEGV`), or `signal 99`.
pub(crate) fn signal_name(signal: i32) -> String {
    Signal::try_from(signal).map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_owned())
}

/// `status` in words.
pub(crate) fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => {
            let core = if status.core_dumped() { " (core dumped)" } else { "" };
            format!("killed by {}{core}", signal_name(signal))
        }
        (None, None) => format!("ended ({status})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_named() {
        assert_eq!(describe(ExitStatus::from_raw(1 << 8)), "exited with status 1");
        assert_eq!(describe(ExitStatus::from_raw(11)), "killed by SIGSEGV");
        assert_eq!(describe(ExitStatus::from_raw(6 | 0x80)), "killed by SIGABRT (core dumped)");
        assert_eq!(signal_name(9), "SIGKILL");
    }
}
