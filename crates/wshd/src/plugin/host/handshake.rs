//! The out-object `do_handshake` writes its answer through ([`RHandshakeOut`]): chosen
//! subprotocol, extra headers, rejection status and body, panic message.
#![allow(unsafe_code)]

use std::ffi::c_void;

use wshd_sdk::abi::{HandshakeOutVTable, RHandshakeOut, RStr};

use super::{host_fn, text_of};

/// What a handler's `do_handshake` wrote.
#[derive(Debug, Default)]
pub(crate) struct HandshakeAnswer {
    /// The subprotocol the handler chose.
    pub(crate) protocol: Option<String>,
    /// Extra response headers (on the 101, or on the rejection).
    pub(crate) headers: Vec<(String, String)>,
    /// The rejection's HTTP status.
    pub(crate) status: u16,
    /// The rejection's body.
    pub(crate) body: String,
    /// The panic message, when `do_handshake` panicked.
    pub(crate) message: Option<String>,
    /// The handler declined every extension the client offered.
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

host_fn! {
    fn answer_set_protocol(ctx: *mut c_void, protocol: RStr) {
        // SAFETY: both valid for the `do_handshake` call.
        unsafe { answer(ctx).protocol = Some(text_of(protocol)) }
    }
}

host_fn! {
    fn answer_add_header(ctx: *mut c_void, name: RStr, value: RStr) {
        // SAFETY: all valid for the `do_handshake` call.
        unsafe { answer(ctx).headers.push((text_of(name), text_of(value))) }
    }
}

host_fn! {
    fn answer_set_status(ctx: *mut c_void, status: u16) {
        // SAFETY: valid for the `do_handshake` call.
        unsafe { answer(ctx).status = status }
    }
}

host_fn! {
    fn answer_set_body(ctx: *mut c_void, body: RStr) {
        // SAFETY: both valid for the `do_handshake` call.
        unsafe { answer(ctx).body = text_of(body) }
    }
}

host_fn! {
    fn answer_set_message(ctx: *mut c_void, message: RStr) {
        // SAFETY: both valid for the `do_handshake` call.
        unsafe { answer(ctx).message = Some(text_of(message)) }
    }
}

host_fn! {
    fn answer_decline_extensions(ctx: *mut c_void) {
        // SAFETY: valid for the `do_handshake` call.
        unsafe { answer(ctx).decline_extensions = true }
    }
}
