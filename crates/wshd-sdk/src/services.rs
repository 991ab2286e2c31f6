//! Host services: timers, spawning and logging. A plugin has no tokio runtime of its own
//! (`tokio::time::sleep` would panic with "no reactor running"), so use these instead.
//! `tokio::sync` and `futures` primitives work as usual: they need no runtime.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use crate::export::host;

/// Timers on the host's runtime.
pub mod time {
    use super::*;

    /// Waits for `duration`.
    pub async fn sleep(duration: Duration) {
        let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        host::sleep(millis).await;
    }

    /// The error of [`timeout`]: the time ran out first.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Elapsed;

    impl fmt::Display for Elapsed {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("deadline elapsed")
        }
    }

    impl std::error::Error for Elapsed {}

    /// Runs `future` for at most `duration`.
    pub async fn timeout<F: Future>(duration: Duration, future: F) -> Result<F::Output, Elapsed> {
        let mut future = pin!(future);
        let mut timer = pin!(sleep(duration));
        poll_fn(|cx| {
            if let Poll::Ready(v) = future.as_mut().poll(cx) {
                return Poll::Ready(Ok(v));
            }
            timer.as_mut().poll(cx).map(|()| Err(Elapsed))
        })
        .await
    }
}

/// Runs `future` as a task on the host's runtime. The host keeps this plugin's code loaded
/// until the task ends (so a hot reload never unloads code that is still running).
pub fn spawn(future: impl Future<Output = ()> + Send + 'static) {
    host::spawn(future);
}

/// Logging through the host (its format, level filter and destination).
pub mod log {
    use super::*;

    /// Log levels.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Level {
        /// Errors.
        Error,
        /// Warnings.
        Warn,
        /// Information.
        Info,
        /// Debugging.
        Debug,
        /// Tracing.
        Trace,
    }

    /// Whether a line at `level` would be written.
    pub fn enabled(level: Level) -> bool {
        host::log_enabled(level)
    }

    /// Writes a line at `level` (used by the `error!` … `trace!` macros).
    pub fn write(level: Level, args: fmt::Arguments<'_>) {
        if host::log_enabled(level) {
            match args.as_str() {
                Some(s) => host::log(level, s),
                None => host::log(level, &args.to_string()),
            }
        }
    }
}

/// Logs at error level through the host: `wshd_sdk::error!("bad {}", x)`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log::write($crate::log::Level::Error, format_args!($($arg)+)) };
}
/// Logs at warning level through the host.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log::write($crate::log::Level::Warn, format_args!($($arg)+)) };
}
/// Logs at info level through the host.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log::write($crate::log::Level::Info, format_args!($($arg)+)) };
}
/// Logs at debug level through the host.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log::write($crate::log::Level::Debug, format_args!($($arg)+)) };
}
/// Logs at trace level through the host.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log::write($crate::log::Level::Trace, format_args!($($arg)+)) };
}
