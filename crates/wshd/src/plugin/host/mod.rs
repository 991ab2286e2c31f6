//! The host side of the plugin ABI: the `extern "C"` functions plugins call, in four
//! tables — [`services`] (log, sleep, spawn), [`handshake`] (the answer `do_handshake`
//! writes), [`connection`] (receive, send, close on a live connection) and [`rooms`]
//! (channels, presence, publish; reached from the services table).
//!
//! Every function is defined with [`host_fn!`], which runs its body under `catch_unwind`: a
//! panic in host code must not unwind into plugin code (unwinding out of `extern "C"` aborts
//! the process), so it becomes the function's fallback value and a log line. Bodies hand off
//! to safe host code at once.
#![allow(unsafe_code)]

use wshd_sdk::abi::RStr;

pub(super) mod connection;
pub(super) mod handshake;
pub(super) mod rooms;
pub(super) mod services;

/// Defines an `unsafe extern "C" fn` whose body runs under `catch_unwind`; a panic logs the
/// function's name and returns the value after `else` (hyper's `ffi_fn!` is the model).
///
/// ```ignore
/// host_fn! {
///     /// Docs.
///     fn name(ctx: *const c_void, level: u32) -> bool { body } else false
/// }
/// ```
macro_rules! host_fn {
    ($(#[$attr:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty $body:block else $fallback:expr) => {
        $(#[$attr])*
        pub(in crate::plugin) unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || -> $ret { $body })) {
                Ok(value) => value,
                Err(_) => {
                    $crate::plugin::host::report_host_panic(stringify!($name));
                    $fallback
                }
            }
        }
    };
    ($(#[$attr:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        host_fn! { $(#[$attr])* fn $name($($arg: $ty),*) -> () $body else () }
    };
}
pub(crate) use host_fn;

/// Logs a panic caught in host function `name` (a bug in wshd, not in the plugin).
pub(crate) fn report_host_panic(name: &str) {
    tracing::error!("host function `{name}` panicked (bug in wshd); returning an error to the plugin");
}

/// Reads a plugin-provided string for the duration of a call; absent reads as empty.
///
/// # Safety
/// `s` must be valid for the call, as the ABI requires of the caller.
unsafe fn bytes_of<'a>(s: RStr) -> &'a [u8] {
    // SAFETY: forwarded contract.
    unsafe { s.as_bytes() }.unwrap_or_default()
}

/// A plugin-provided string as text (invalid UTF-8 replaced), copied.
///
/// # Safety
/// As for [`bytes_of`].
unsafe fn text_of(s: RStr) -> String {
    // SAFETY: forwarded contract.
    String::from_utf8_lossy(unsafe { bytes_of(s) }).into_owned()
}
