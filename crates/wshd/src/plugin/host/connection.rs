//! The connection table ([`ConnVTable`]) over a session's [`ConnShared`]: what the SDK's
//! `Connection` and `Sender` call. Each function adapts ABI codes to the session's methods
//! and back; the session knows nothing of the ABI.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_ffi::FfiContext;
use wshd_sdk::CloseCode;
use wshd_sdk::abi::*;

use super::{bytes_of, host_fn};
use crate::ws::session::{ConnShared, Inbound, OpError};
use crate::ws::transport::DataKind;

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

host_fn! {
    /// Releases a buffer made by [`lend`]: `ptr`, `len` and `ctx` (the capacity) are the
    /// vector's parts.
    fn drop_lent_vec(ptr: *const u8, len: usize, ctx: *mut c_void) {
        // SAFETY: the parts of a `Vec<u8>` taken apart in `lend`, released once (ABI rule).
        drop(unsafe { Vec::from_raw_parts(ptr.cast_mut(), len, ctx as usize) });
    }
}

/// Lends a message's own allocation to a plugin, with no allocation around it; the plugin
/// releases it with `drop_lent_vec`.
fn lend(data: Vec<u8>) -> ROwnedBuf {
    if data.capacity() == 0 {
        return ROwnedBuf::EMPTY;
    }
    let mut data = std::mem::ManuallyDrop::new(data);
    let (ptr, len, capacity) = (data.as_mut_ptr(), data.len(), data.capacity());
    ROwnedBuf { ptr, len, ctx: capacity as *mut c_void, drop: Some(drop_lent_vec) }
}

/// Polls `f` with the plugin's task context (or the driver's, see `with_task_context`).
///
/// # Safety
/// `fcx` is the plugin's live context for this call.
unsafe fn poll_with<R>(shared: &ConnShared, fcx: *mut FfiContext, f: impl FnMut(&mut Context<'_>) -> R) -> R {
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

/// The data kind of a `MSG_*` code, for sending (also a room publish's).
pub(super) fn data_kind(kind: u8) -> Option<DataKind> {
    match kind {
        MSG_TEXT => Some(DataKind::Text),
        MSG_BINARY => Some(DataKind::Binary),
        _ => None,
    }
}

host_fn! {
    fn conn_poll_recv(ctx: *const c_void, fcx: *mut FfiContext, out: *mut RRecv) -> u32 {
        // SAFETY: a live connection reference (ABI contract).
        let shared = unsafe { conn(ctx) };
        // The item is handed out inside the poll, so only a `u32` travels back through the
        // context plumbing (moving the item through it cost store-forwarding stalls).
        let hand_out = |cx: &mut Context<'_>| {
            let Poll::Ready(item) = shared.poll_recv(cx) else { return POLL_PENDING };
            let (kind, close_code, data) = match item {
                Inbound::Text(b) => (MSG_TEXT, 0, b),
                Inbound::Binary(b) => (MSG_BINARY, 0, b),
                Inbound::Pong(b) => (MSG_PONG, 0, Vec::from(b)),
                Inbound::Closed(code, reason) => (MSG_CLOSED, code.as_u16(), Vec::from(reason)),
            };
            // SAFETY: `out` is a valid place provided by the caller for this call.
            unsafe { out.write(RRecv { kind, close_code, data: lend(data) }) };
            POLL_READY
        };
        // SAFETY: the caller's live context.
        unsafe { poll_with(shared, fcx, hand_out) }
    } else POLL_CLOSED
}

host_fn! {
    fn conn_poll_send_ready(ctx: *const c_void, fcx: *mut FfiContext) -> u32 {
        // SAFETY: a live connection reference.
        let shared = unsafe { conn(ctx) };
        // SAFETY: the caller's live context.
        poll_code(unsafe { poll_with(shared, fcx, |cx| shared.poll_send_ready(cx)) })
    } else POLL_CLOSED
}

host_fn! {
    fn conn_start_send(ctx: *const c_void, kind: u8, fin: bool, data: RStr) -> u32 {
        let Some(kind) = data_kind(kind) else { return POLL_INVALID };
        // SAFETY: a live connection reference; `data` is valid for the call (copied inside).
        let (shared, data) = unsafe { (conn(ctx), bytes_of(data)) };
        op_code(shared.start_send(kind, fin, data))
    } else POLL_CLOSED
}

host_fn! {
    fn conn_poll_send(ctx: *const c_void, fcx: *mut FfiContext, kind: u8, fin: bool, data: RStr) -> u32 {
        let Some(kind) = data_kind(kind) else { return POLL_INVALID };
        // SAFETY: a live connection reference; `data` is valid for the call (copied inside).
        let (shared, data) = unsafe { (conn(ctx), bytes_of(data)) };
        // SAFETY: the caller's live context.
        match unsafe { poll_with(shared, fcx, |cx| shared.poll_send(cx, kind, fin, data)) } {
            Poll::Ready(Ok(false)) => POLL_QUEUED,
            polled => poll_code(polled.map_ok(|_| ())),
        }
    } else POLL_CLOSED
}

host_fn! {
    fn conn_start_ping(ctx: *const c_void, data: RStr) -> u32 {
        // SAFETY: a live connection reference; `data` is valid for the call (copied inside).
        let (shared, data) = unsafe { (conn(ctx), bytes_of(data)) };
        op_code(shared.start_ping(data))
    } else POLL_CLOSED
}

host_fn! {
    fn conn_poll_flush(ctx: *const c_void, fcx: *mut FfiContext) -> u32 {
        // SAFETY: a live connection reference.
        let shared = unsafe { conn(ctx) };
        // SAFETY: the caller's live context.
        poll_code(unsafe { poll_with(shared, fcx, |cx| shared.poll_flush(cx)) })
    } else POLL_CLOSED
}

host_fn! {
    fn conn_start_close(ctx: *const c_void, code: u16, reason: RStr) -> u32 {
        let Some(code) = CloseCode::new(code) else { return POLL_INVALID };
        // SAFETY: a live connection reference; `reason` is valid for the call (copied inside).
        let (shared, reason) = unsafe { (conn(ctx), bytes_of(reason)) };
        op_code(shared.start_close(code, reason))
    } else POLL_CLOSED
}

host_fn! {
    fn conn_poll_closed(ctx: *const c_void, fcx: *mut FfiContext, out: *mut RCloseStatus) -> u32 {
        // SAFETY: a live connection reference.
        let shared = unsafe { conn(ctx) };
        // SAFETY: the caller's live context.
        let Poll::Ready((code, reason)) = (unsafe { poll_with(shared, fcx, |cx| shared.poll_closed(cx)) })
        else {
            return POLL_PENDING;
        };
        // SAFETY: `out` is a valid place provided by the caller for this call.
        unsafe { out.write(RCloseStatus { code: code.as_u16(), reason: lend(Vec::from(reason)) }) };
        POLL_READY
    } else POLL_CLOSED
}

host_fn! {
    fn conn_set_pong_notifications(ctx: *const c_void, enabled: bool) {
        // SAFETY: a live connection reference.
        unsafe { conn(ctx) }.set_pong_notifications(enabled)
    }
}

host_fn! {
    fn conn_set_close_reply(ctx: *const c_void, code: u16, reason: RStr) -> u32 {
        // 0: echo the peer's close (the default).
        let reply = match code {
            0 => None,
            code => match CloseCode::new(code) {
                Some(code) => Some(code),
                None => return POLL_INVALID,
            },
        };
        // SAFETY: a live connection reference; `reason` is valid for the call (copied inside).
        let (shared, reason) = unsafe { (conn(ctx), bytes_of(reason)) };
        op_code(shared.set_close_reply(reply, reason))
    } else POLL_CLOSED
}

host_fn! {
    fn conn_abort(ctx: *const c_void) {
        // SAFETY: a live connection reference.
        unsafe { conn(ctx) }.abort()
    }
}

host_fn! {
    fn conn_retain(ctx: *const c_void) -> *const c_void {
        // SAFETY: `ctx` came from `Arc::into_raw` and is still held, so the count is >= 1.
        unsafe { Arc::increment_strong_count(ctx.cast::<ConnShared>()) };
        ctx
    } else std::ptr::null()
}

host_fn! {
    fn conn_release(ctx: *const c_void) {
        if !ctx.is_null() {
            // SAFETY: releases one reference made by `conn_for`/`conn_retain`, exactly once.
            drop(unsafe { Arc::from_raw(ctx.cast::<ConnShared>()) });
        }
    }
}
