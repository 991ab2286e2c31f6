//! The host side of the plugin ABI: the functions plugins call (services, the handshake
//! answer, the connection). Each is `extern "C"`, runs its body under `catch_unwind` (a host
//! panic must not unwind into plugin code), and hands off to safe code at once.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::task::Poll;

use async_ffi::{FfiContext, FfiFuture, FutureExt};
use bytes::Bytes;
use wshd_sdk::CloseCode;
use wshd_sdk::abi::*;

use super::loader::Plugin;
use crate::ws::session::{ConnShared, Inbound, OpError};
use crate::ws::transport::DataKind;

/// Runs `f`, turning a panic into `fallback` (and a log line).
fn guard<R>(what: &str, fallback: R, f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => {
            tracing::error!(
                "host function `{what}` panicked (bug in wshd); returning an error to the plugin"
            );
            fallback
        }
    }
}

/// Reads a plugin-provided string for the duration of a call.
///
/// # Safety
/// `s` must be valid for the call, as the ABI requires of the caller.
unsafe fn bytes_of<'a>(s: RStr) -> &'a [u8] {
    // SAFETY: forwarded contract.
    unsafe { s.as_bytes() }.unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Services.

/// What the host knows about a loaded plugin, for its services.
#[derive(Debug)]
pub(super) struct PluginServices {
    file: PathBuf,
    handler: String,
    plugin: Weak<Plugin>,
}

impl PluginServices {
    pub(super) fn new(file: PathBuf, handler: String, plugin: Weak<Plugin>) -> PluginServices {
        PluginServices { file, handler, plugin }
    }
}

/// The service table for one plugin; `services` must outlive it (the `Plugin` owns both).
pub(super) fn host_table(services: &PluginServices) -> HostVTable {
    HostVTable {
        size: std::mem::size_of::<HostVTable>() as u32,
        ctx: (services as *const PluginServices).cast(),
        log: host_log,
        log_enabled: host_log_enabled,
        sleep: host_sleep,
        spawn: host_spawn,
    }
}

/// # Safety
/// `ctx` is the `PluginServices` this table was made for, alive while the plugin is.
unsafe fn services<'a>(ctx: *const c_void) -> &'a PluginServices {
    // SAFETY: forwarded contract.
    unsafe { &*ctx.cast::<PluginServices>() }
}

unsafe extern "C" fn host_log(ctx: *const c_void, level: u32, message: RStr) {
    guard("log", (), || {
        // SAFETY: our own context; the message is valid for the call.
        let (s, message) = unsafe { (services(ctx), bytes_of(message)) };
        let message = String::from_utf8_lossy(message);
        let file = s.file.display();
        let handler = &s.handler;
        match level {
            LOG_ERROR => tracing::error!(target: "wshd::handler", %handler, %file, "{message}"),
            LOG_WARN => tracing::warn!(target: "wshd::handler", %handler, %file, "{message}"),
            LOG_INFO => tracing::info!(target: "wshd::handler", %handler, %file, "{message}"),
            LOG_DEBUG => tracing::debug!(target: "wshd::handler", %handler, %file, "{message}"),
            _ => tracing::trace!(target: "wshd::handler", %handler, %file, "{message}"),
        }
    })
}

unsafe extern "C" fn host_log_enabled(_ctx: *const c_void, level: u32) -> bool {
    guard("log_enabled", false, || match level {
        LOG_ERROR => tracing::enabled!(target: "wshd::handler", tracing::Level::ERROR),
        LOG_WARN => tracing::enabled!(target: "wshd::handler", tracing::Level::WARN),
        LOG_INFO => tracing::enabled!(target: "wshd::handler", tracing::Level::INFO),
        LOG_DEBUG => tracing::enabled!(target: "wshd::handler", tracing::Level::DEBUG),
        _ => tracing::enabled!(target: "wshd::handler", tracing::Level::TRACE),
    })
}

unsafe extern "C" fn host_sleep(_ctx: *const c_void, millis: u64) -> FfiFuture<()> {
    guard("sleep", async {}.into_ffi(), || {
        tokio::time::sleep(std::time::Duration::from_millis(millis)).into_ffi()
    })
}

unsafe extern "C" fn host_spawn(ctx: *const c_void, future: FfiFuture<()>) {
    // SAFETY: our own context.
    let s = unsafe { services(ctx) };
    // The task keeps the library loaded: its code runs until the future is dropped.
    let Some(plugin) = s.plugin.upgrade() else {
        drop(future);
        return;
    };
    guard("spawn", (), move || {
        tokio::spawn(async move {
            future.await;
            drop(plugin);
        });
    })
}

/// `RErrorOut::set` for constructor errors: `ctx` is a `*mut Option<String>`.
pub(super) unsafe extern "C" fn set_error(ctx: *mut c_void, message: RStr) {
    guard("set_error", (), || {
        // SAFETY: the loader passes a live `Option<String>` for the duration of `init`.
        let (slot, message) = unsafe { (&mut *ctx.cast::<Option<String>>(), bytes_of(message)) };
        *slot = Some(String::from_utf8_lossy(message).into_owned());
    })
}

// ---------------------------------------------------------------------------------------------
// The handshake answer.

/// What a handler's `do_handshake` wrote.
#[derive(Debug, Default)]
pub(crate) struct HandshakeAnswer {
    pub(crate) protocol: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) status: u16,
    pub(crate) body: String,
    pub(crate) message: Option<String>,
    pub(crate) decline_extensions: bool,
}

static HANDSHAKE_OUT_VTABLE: HandshakeOutVTable = HandshakeOutVTable {
    size: std::mem::size_of::<HandshakeOutVTable>() as u32,
    set_protocol: answer_set_protocol,
    add_header: answer_add_header,
    set_status: answer_set_status,
    set_body: answer_set_body,
    set_message: answer_set_message,
    decline_extensions: answer_decline_extensions,
};

impl HandshakeAnswer {
    /// The out-object handed to `do_handshake`; valid while `self` is borrowed.
    pub(crate) fn as_out(&mut self) -> RHandshakeOut {
        RHandshakeOut { ctx: (self as *mut HandshakeAnswer).cast(), vt: &HANDSHAKE_OUT_VTABLE }
    }
}

/// # Safety
/// `ctx` is the `HandshakeAnswer` behind an out-object made by `as_out`, during the call.
unsafe fn answer<'a>(ctx: *mut c_void) -> &'a mut HandshakeAnswer {
    // SAFETY: forwarded contract.
    unsafe { &mut *ctx.cast::<HandshakeAnswer>() }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

unsafe extern "C" fn answer_set_protocol(ctx: *mut c_void, protocol: RStr) {
    // SAFETY: valid for the `do_handshake` call.
    guard("set_protocol", (), || unsafe { answer(ctx).protocol = Some(text(bytes_of(protocol))) })
}

unsafe extern "C" fn answer_add_header(ctx: *mut c_void, name: RStr, value: RStr) {
    // SAFETY: valid for the `do_handshake` call.
    guard("add_header", (), || unsafe {
        answer(ctx).headers.push((text(bytes_of(name)), text(bytes_of(value))))
    })
}

unsafe extern "C" fn answer_set_status(ctx: *mut c_void, status: u16) {
    // SAFETY: valid for the `do_handshake` call.
    guard("set_status", (), || unsafe { answer(ctx).status = status })
}

unsafe extern "C" fn answer_set_body(ctx: *mut c_void, body: RStr) {
    // SAFETY: valid for the `do_handshake` call.
    guard("set_body", (), || unsafe { answer(ctx).body = text(bytes_of(body)) })
}

unsafe extern "C" fn answer_set_message(ctx: *mut c_void, message: RStr) {
    // SAFETY: valid for the `do_handshake` call.
    guard("set_message", (), || unsafe { answer(ctx).message = Some(text(bytes_of(message))) })
}

unsafe extern "C" fn answer_decline_extensions(ctx: *mut c_void) {
    // SAFETY: valid for the `do_handshake` call.
    guard("decline_extensions", (), || unsafe { answer(ctx).decline_extensions = true })
}

// ---------------------------------------------------------------------------------------------
// Buffers lent to plugins.

unsafe extern "C" fn drop_lent_bytes(ctx: *mut c_void) {
    guard("drop_buffer", (), || {
        // SAFETY: `ctx` is the Box made in `lend` and is released once (ABI rule).
        drop(unsafe { Box::from_raw(ctx.cast::<Bytes>()) });
    })
}

/// Lends `bytes` to a plugin; it releases them with `drop_lent_bytes`.
fn lend(bytes: Bytes) -> ROwnedBuf {
    if bytes.is_empty() {
        return ROwnedBuf::EMPTY;
    }
    let boxed = Box::new(bytes);
    let (ptr, len) = (boxed.as_ptr(), boxed.len());
    ROwnedBuf { ptr, len, ctx: Box::into_raw(boxed).cast(), drop: Some(drop_lent_bytes) }
}

// ---------------------------------------------------------------------------------------------
// The connection.

static CONN_VTABLE: ConnVTable = ConnVTable {
    size: std::mem::size_of::<ConnVTable>() as u32,
    poll_recv: conn_poll_recv,
    poll_send_ready: conn_poll_send_ready,
    start_send: conn_start_send,
    start_ping: conn_start_ping,
    poll_flush: conn_poll_flush,
    start_close: conn_start_close,
    poll_closed: conn_poll_closed,
    set_pong_notifications: conn_set_pong_notifications,
    set_close_reply: conn_set_close_reply,
    abort: conn_abort,
    retain: conn_retain,
    release: conn_release,
    poll_send: conn_poll_send,
};

/// The connection object handed to `transfer_data`: one strong reference to `shared`.
pub(crate) fn conn_for(shared: &Arc<ConnShared>) -> RConn {
    RConn { ctx: Arc::into_raw(Arc::clone(shared)).cast(), vt: &CONN_VTABLE }
}

/// # Safety
/// `ctx` is a reference made by `conn_for`/`conn_retain` that has not been released.
unsafe fn conn<'a>(ctx: *const c_void) -> &'a ConnShared {
    // SAFETY: forwarded contract: the Arc's pointee is alive while the reference is held.
    unsafe { &*ctx.cast::<ConnShared>() }
}

/// Polls `f` with the plugin's task context (or the driver's, see `with_task_context`).
///
/// # Safety
/// `fcx` is the plugin's live context for this call.
unsafe fn poll_with<R>(
    shared: &ConnShared,
    fcx: *mut FfiContext,
    f: impl FnMut(&mut std::task::Context<'_>) -> R,
) -> R {
    // SAFETY: forwarded contract.
    let fcx = unsafe { &mut *fcx };
    shared.with_task_context(|g| fcx.with_context(|cx| g(cx)), f)
}

fn op_code(r: Result<(), OpError>) -> u32 {
    match r {
        Ok(()) => POLL_READY,
        Err(OpError::Closed) => POLL_CLOSED,
        Err(OpError::Invalid) => POLL_INVALID,
    }
}

fn poll_code(p: Poll<Result<(), OpError>>) -> u32 {
    match p {
        Poll::Pending => POLL_PENDING,
        Poll::Ready(r) => op_code(r),
    }
}

unsafe extern "C" fn conn_poll_recv(ctx: *const c_void, fcx: *mut FfiContext, out: *mut RRecv) -> u32 {
    guard("poll_recv", POLL_CLOSED, || {
        // SAFETY: a live connection reference and the caller's context (ABI contract).
        let shared = unsafe { conn(ctx) };
        // The item is handed out inside the poll, so only a `u32` travels back through the
        // context plumbing (moving the item through it cost store-forwarding stalls).
        let hand_out = |cx: &mut std::task::Context<'_>| {
            let Poll::Ready(item) = shared.poll_recv(cx) else { return POLL_PENDING };
            let (kind, close_code, data) = match item {
                Inbound::Text(b) => (MSG_TEXT, 0, b),
                Inbound::Binary(b) => (MSG_BINARY, 0, b),
                Inbound::Pong(b) => (MSG_PONG, 0, b),
                Inbound::Closed(code, reason) => (MSG_CLOSED, code.as_u16(), reason),
            };
            // SAFETY: `out` is a valid place provided by the caller for this call.
            unsafe { out.write(RRecv { kind, close_code, data: lend(data) }) };
            POLL_READY
        };
        // SAFETY: as above.
        unsafe { poll_with(shared, fcx, hand_out) }
    })
}

unsafe extern "C" fn conn_poll_send_ready(ctx: *const c_void, fcx: *mut FfiContext) -> u32 {
    guard("poll_send_ready", POLL_CLOSED, || {
        // SAFETY: a live connection reference and the caller's context.
        let shared = unsafe { conn(ctx) };
        // SAFETY: as above.
        poll_code(unsafe { poll_with(shared, fcx, |cx| shared.poll_send_ready(cx)) })
    })
}

/// The data kind of a `MSG_*` code, for sending.
fn data_kind(kind: u8) -> Option<DataKind> {
    match kind {
        MSG_TEXT => Some(DataKind::Text),
        MSG_BINARY => Some(DataKind::Binary),
        _ => None,
    }
}

unsafe extern "C" fn conn_start_send(ctx: *const c_void, kind: u8, fin: bool, data: RStr) -> u32 {
    guard("start_send", POLL_CLOSED, || {
        let Some(kind) = data_kind(kind) else { return POLL_INVALID };
        // SAFETY: a live connection reference; `data` is valid for the call (copied inside).
        let (shared, data) = unsafe { (conn(ctx), bytes_of(data)) };
        op_code(shared.start_send(kind, fin, data))
    })
}

unsafe extern "C" fn conn_poll_send(
    ctx: *const c_void,
    fcx: *mut FfiContext,
    kind: u8,
    fin: bool,
    data: RStr,
) -> u32 {
    guard("poll_send", POLL_CLOSED, || {
        let Some(kind) = data_kind(kind) else { return POLL_INVALID };
        // SAFETY: a live connection reference and the caller's context; `data` is valid for
        // the call (copied inside).
        let (shared, data) = unsafe { (conn(ctx), bytes_of(data)) };
        // SAFETY: as above.
        match unsafe { poll_with(shared, fcx, |cx| shared.poll_send(cx, kind, fin, data)) } {
            Poll::Ready(Ok(false)) => POLL_QUEUED,
            polled => poll_code(polled.map_ok(|_| ())),
        }
    })
}

unsafe extern "C" fn conn_start_ping(ctx: *const c_void, data: RStr) -> u32 {
    guard("start_ping", POLL_CLOSED, || {
        // SAFETY: a live connection reference; `data` is valid for the call (copied inside).
        let (shared, data) = unsafe { (conn(ctx), bytes_of(data)) };
        op_code(shared.start_ping(data))
    })
}

unsafe extern "C" fn conn_poll_flush(ctx: *const c_void, fcx: *mut FfiContext) -> u32 {
    guard("poll_flush", POLL_CLOSED, || {
        // SAFETY: a live connection reference and the caller's context.
        let shared = unsafe { conn(ctx) };
        // SAFETY: as above.
        poll_code(unsafe { poll_with(shared, fcx, |cx| shared.poll_flush(cx)) })
    })
}

unsafe extern "C" fn conn_start_close(ctx: *const c_void, code: u16, reason: RStr) -> u32 {
    guard("start_close", POLL_CLOSED, || {
        // SAFETY: a live connection reference; `reason` is valid for the call (copied inside).
        let (shared, reason) = unsafe { (conn(ctx), bytes_of(reason)) };
        let Some(code) = CloseCode::new(code) else { return POLL_INVALID };
        op_code(shared.start_close(code, reason))
    })
}

unsafe extern "C" fn conn_poll_closed(
    ctx: *const c_void,
    fcx: *mut FfiContext,
    out: *mut RCloseStatus,
) -> u32 {
    guard("poll_closed", POLL_CLOSED, || {
        // SAFETY: a live connection reference and the caller's context.
        let shared = unsafe { conn(ctx) };
        // SAFETY: as above.
        let Poll::Ready((code, reason)) = (unsafe { poll_with(shared, fcx, |cx| shared.poll_closed(cx)) })
        else {
            return POLL_PENDING;
        };
        // SAFETY: `out` is a valid place provided by the caller for this call.
        unsafe { out.write(RCloseStatus { code: code.as_u16(), reason: lend(reason) }) };
        POLL_READY
    })
}

unsafe extern "C" fn conn_set_pong_notifications(ctx: *const c_void, enabled: bool) {
    // SAFETY: a live connection reference.
    guard("set_pong_notifications", (), || unsafe { conn(ctx) }.set_pong_notifications(enabled))
}

unsafe extern "C" fn conn_set_close_reply(ctx: *const c_void, code: u16, reason: RStr) -> u32 {
    guard("set_close_reply", POLL_CLOSED, || {
        // SAFETY: a live connection reference; `reason` is valid for the call (copied inside).
        let (shared, reason) = unsafe { (conn(ctx), bytes_of(reason)) };
        // 0: echo the peer's close.
        let reply = match code {
            0 => None,
            code => match CloseCode::new(code) {
                Some(code) => Some(code),
                None => return POLL_INVALID,
            },
        };
        op_code(shared.set_close_reply(reply, reason))
    })
}

unsafe extern "C" fn conn_abort(ctx: *const c_void) {
    // SAFETY: a live connection reference.
    guard("abort", (), || unsafe { conn(ctx) }.abort())
}

unsafe extern "C" fn conn_retain(ctx: *const c_void) -> *const c_void {
    guard("retain", std::ptr::null(), || {
        // SAFETY: `ctx` came from `Arc::into_raw` and is still held, so the count is >= 1.
        unsafe { Arc::increment_strong_count(ctx.cast::<ConnShared>()) };
        ctx
    })
}

unsafe extern "C" fn conn_release(ctx: *const c_void) {
    guard("release", (), || {
        if !ctx.is_null() {
            // SAFETY: releases one reference made by `conn_for`/`conn_retain`, exactly once.
            drop(unsafe { Arc::from_raw(ctx.cast::<ConnShared>()) });
        }
    })
}
