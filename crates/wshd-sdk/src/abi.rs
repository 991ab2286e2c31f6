//! The plugin ABI: every type that crosses the boundary between the `wshd` host and a
//! `*_wsh` plugin. Host and SDK both compile this one file, so they agree by construction
//! when built from the same SDK version, and the load-time checks catch every other case.
//!
//! # Rules (the contract both sides keep)
//!
//! * Only `#[repr(C)]` types, plain integers, `bool`, raw pointers and `extern "C"` function
//!   pointers cross. No Rust enum with data, no `Box`/`Vec`/`String`, no trait object.
//! * **Whoever allocates frees.** Received messages are host buffers lent to the plugin as
//!   [`ROwnedBuf`] (released through the host's own drop function); data the plugin sends is
//!   borrowed as [`RStr`] for the duration of the call and copied by the host.
//! * **Text is validated once.** A received `MSG_TEXT` buffer is valid UTF-8: the host checks
//!   it (failing the connection with 1007 otherwise), and the SDK relies on that instead of
//!   checking again.
//! * A plugin exports two symbols: [`ABI_VERSION_SYMBOL`] (`extern "C" fn() -> u32`, frozen
//!   forever) and [`DESCRIPTOR_SYMBOL`] (`extern "C" fn() -> *const PluginDescriptor`).
//!   The host reads the version first and refuses a mismatch before it touches anything else.
//! * The descriptor's header (`abi_version`, `descriptor_size`, `layout_fingerprint`) never
//!   moves; [`LAYOUT_FINGERPRINT`] hashes the size, alignment and field offsets of every type
//!   here, so a layout change without a version bump is still refused.
//! * Every `extern "C"` function a plugin exports catches panics (a panic that unwinds into
//!   `extern "C"` aborts the process). Status codes are plain `u32`s, never Rust enums, so a
//!   bad value from the other side is an error, not undefined behaviour.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::mem::{align_of, offset_of, size_of};

pub use async_ffi::{FfiContext, FfiFuture};

/// Version of this ABI. Bump it on every incompatible change.
///
/// * v2: `ROwnedBuf::drop` takes the buffer's pointer and length besides its context, so the
///   host lends a message's own allocation with no per-message box around it.
/// * v1: the first.
pub const ABI_VERSION: u32 = 2;

/// Name of the frozen probe symbol: `extern "C" fn() -> u32` returning the plugin's ABI version.
pub const ABI_VERSION_SYMBOL: &[u8] = b"wshd_abi_version\0";

/// Name of the descriptor symbol for this ABI version: `extern "C" fn() -> *const PluginDescriptor`.
pub const DESCRIPTOR_SYMBOL: &[u8] = b"wshd_plugin_v2\0";

/// A borrowed byte string. A null `ptr` means "absent" (distinct from empty).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RStr {
    /// First byte, or null when absent.
    pub ptr: *const u8,
    /// Length in bytes.
    pub len: usize,
}

// SAFETY: an `RStr` is a borrowed view of immutable bytes; the owner guarantees they outlive
// every use, whichever thread makes it.
unsafe impl Send for RStr {}
// SAFETY: as above, the bytes are never written through an `RStr`.
unsafe impl Sync for RStr {}

impl RStr {
    /// The absent value.
    pub const NONE: RStr = RStr { ptr: std::ptr::null(), len: 0 };

    /// Borrows a string for a `'static` descriptor.
    pub const fn from_static(s: &'static str) -> RStr {
        RStr { ptr: s.as_ptr(), len: s.len() }
    }

    /// Borrows bytes for the duration of a call.
    pub fn from_bytes(bytes: &[u8]) -> RStr {
        RStr { ptr: bytes.as_ptr(), len: bytes.len() }
    }

    /// Borrows an optional string: `None` becomes the absent value.
    pub fn from_opt(s: Option<&str>) -> RStr {
        s.map_or(RStr::NONE, |s| RStr::from_bytes(s.as_bytes()))
    }

    /// Whether the value is absent.
    pub fn is_none(self) -> bool {
        self.ptr.is_null()
    }

    /// The bytes, or `None` when absent.
    ///
    /// # Safety
    /// `ptr` must point to `len` readable bytes that stay valid and unchanged for `'a`.
    pub unsafe fn as_bytes<'a>(self) -> Option<&'a [u8]> {
        if self.ptr.is_null() {
            None
        } else if self.len == 0 {
            // `from_raw_parts` needs a non-null, aligned pointer even for length 0; avoid it.
            Some(&[])
        } else {
            // SAFETY: non-null and, by this function's contract, valid for `len` bytes for 'a.
            Some(unsafe { std::slice::from_raw_parts(self.ptr, self.len) })
        }
    }

    /// The bytes as UTF-8 (lossy), or `None` when absent.
    ///
    /// # Safety
    /// As for [`RStr::as_bytes`].
    pub unsafe fn to_string_lossy(self) -> Option<String> {
        // SAFETY: forwarded contract.
        unsafe { self.as_bytes() }.map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

/// A buffer owned by one side and lent to the other, released with its owner's `drop` function.
#[repr(C)]
#[derive(Debug)]
pub struct ROwnedBuf {
    /// First byte (may dangle when `len == 0`; never read then).
    pub ptr: *const u8,
    /// Length in bytes.
    pub len: usize,
    /// Owner's context, passed to `drop` (the host: the allocation's capacity).
    pub ctx: *mut c_void,
    /// Releases the buffer, given `ptr`, `len` and `ctx` as they were handed out; `None` when
    /// there is nothing to release.
    pub drop: Option<unsafe extern "C" fn(ptr: *const u8, len: usize, ctx: *mut c_void)>,
}

// SAFETY: the owner hands out buffers whose storage is immutable and thread-safe to release
// (the host lends plain heap allocations and frees them with its own allocator).
unsafe impl Send for ROwnedBuf {}
// SAFETY: as above; `&ROwnedBuf` only allows reading the bytes.
unsafe impl Sync for ROwnedBuf {}

impl ROwnedBuf {
    /// An empty buffer that owns nothing.
    pub const EMPTY: ROwnedBuf =
        ROwnedBuf { ptr: std::ptr::null(), len: 0, ctx: std::ptr::null_mut(), drop: None };

    /// The bytes.
    ///
    /// # Safety
    /// The buffer must have been produced by a side that keeps `ptr..ptr+len` valid until
    /// `drop` is called.
    pub unsafe fn bytes(&self) -> &[u8] {
        if self.len == 0 || self.ptr.is_null() {
            &[]
        } else {
            // SAFETY: non-null and valid for `len` bytes until released (function contract).
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }

    /// Releases the buffer through its owner's function.
    ///
    /// # Safety
    /// Call at most once, and only on a buffer whose `drop`/`ctx` pair came from its owner.
    pub unsafe fn release(&mut self) {
        if let Some(drop) = self.drop.take() {
            // SAFETY: the owner's own release function with its own values, called once.
            unsafe { drop(self.ptr, self.len, self.ctx) }
        }
    }
}

/// One HTTP header of the opening handshake.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RHeader {
    /// Header name as received (compare case-insensitively).
    pub name: RStr,
    /// Header value (may be non-UTF-8 bytes).
    pub value: RStr,
}

/// The opening-handshake request, borrowed for the duration of one call.
#[repr(C)]
#[derive(Debug)]
pub struct RRequest {
    /// Size of this struct as the host built it (fields are only appended).
    pub size: u32,
    /// `true` when the connection is TLS (or a trusted proxy said `https`).
    pub is_secure: bool,
    /// HTTP method (`GET`).
    pub method: RStr,
    /// The raw request target (`/echo?x=1`).
    pub uri: RStr,
    /// The path the client asked for, without query (an alias path when routed through one).
    pub path: RStr,
    /// The handler's own resource path (the one its file name gives).
    pub resource: RStr,
    /// The query string without `?`, absent when there is none.
    pub query: RStr,
    /// `HTTP/1.1`.
    pub http_version: RStr,
    /// Headers in arrival order.
    pub headers: *const RHeader,
    /// Number of headers.
    pub headers_len: usize,
    /// The client address (`ip:port`) after trusted-proxy resolution.
    pub peer_addr: RStr,
    /// The TCP peer address (`ip:port`).
    pub socket_addr: RStr,
    /// The local address the connection arrived on (`ip:port`).
    pub local_addr: RStr,
}

/// Where `do_handshake` writes its answer: a host object behind a vtable.
#[repr(C)]
#[derive(Debug)]
pub struct RHandshakeOut {
    /// Host context.
    pub ctx: *mut c_void,
    /// Host functions.
    pub vt: *const HandshakeOutVTable,
}

/// Functions of [`RHandshakeOut`].
#[repr(C)]
#[derive(Debug)]
pub struct HandshakeOutVTable {
    /// Size of this struct as the host built it.
    pub size: u32,
    /// Chooses the subprotocol (accept only).
    pub set_protocol: unsafe extern "C" fn(ctx: *mut c_void, protocol: RStr),
    /// Adds a response header (accept: to the 101; reject: to the error response).
    pub add_header: unsafe extern "C" fn(ctx: *mut c_void, name: RStr, value: RStr),
    /// Sets the HTTP status of a rejection.
    pub set_status: unsafe extern "C" fn(ctx: *mut c_void, status: u16),
    /// Sets the body of a rejection.
    pub set_body: unsafe extern "C" fn(ctx: *mut c_void, body: RStr),
    /// Records a message for the host's log (a panic message, a constructor error).
    pub set_message: unsafe extern "C" fn(ctx: *mut c_void, message: RStr),
    /// Declines every extension (e.g. permessage-deflate) for this connection.
    pub decline_extensions: unsafe extern "C" fn(ctx: *mut c_void),
}

/// `do_handshake` result: accept the upgrade.
pub const HANDSHAKE_ACCEPT: u32 = 0;
/// `do_handshake` result: answer with the status/headers/body written to the out object.
pub const HANDSHAKE_REJECT: u32 = 1;
/// `do_handshake` result: drop the TCP connection without any response.
pub const HANDSHAKE_ABORT: u32 = 2;
/// `do_handshake` result: the handler panicked (message written with `set_message`).
pub const HANDSHAKE_PANICKED: u32 = 3;

/// `transfer_data` result: the handler returned normally.
pub const TRANSFER_DONE: u32 = 0;
/// `transfer_data` result: the handler panicked (already logged through the host).
pub const TRANSFER_PANICKED: u32 = 1;

/// Poll result: ready.
pub const POLL_READY: u32 = 0;
/// Poll result: not ready; the waker in the context will be woken.
pub const POLL_PENDING: u32 = 1;
/// Poll/operation result: the connection is closed, the operation cannot proceed.
pub const POLL_CLOSED: u32 = 2;
/// Operation result: invalid argument (bad close code, text that is not UTF-8, ...).
pub const POLL_INVALID: u32 = 3;
/// [`ConnVTable::poll_send`] result: the frame is queued, but not all of it is written yet;
/// finish with `poll_flush`.
pub const POLL_QUEUED: u32 = 4;

/// Message kind: text. Received text is valid UTF-8 (the host validated it; see the rules).
pub const MSG_TEXT: u8 = 1;
/// Message kind: binary.
pub const MSG_BINARY: u8 = 2;
/// Message kind: the connection is closed; `close_code`/`data` carry the peer's close frame.
pub const MSG_CLOSED: u8 = 3;
/// Message kind: a pong arrived (only when the handler asked for pong notifications).
pub const MSG_PONG: u8 = 4;

/// A received message, written by the host's `poll_recv`.
#[repr(C)]
#[derive(Debug)]
pub struct RRecv {
    /// One of the `MSG_*` kinds.
    pub kind: u8,
    /// The peer's close code for `MSG_CLOSED` (1005 when the close frame had no body,
    /// 1006 when the connection ended without a close frame).
    pub close_code: u16,
    /// Payload (the close reason for `MSG_CLOSED`).
    pub data: ROwnedBuf,
}

/// A close code and reason, as written by `poll_close`/`close_status`.
#[repr(C)]
#[derive(Debug)]
pub struct RCloseStatus {
    /// The code (1005 = no code, 1006 = no close frame).
    pub code: u16,
    /// The reason (UTF-8).
    pub reason: ROwnedBuf,
}

/// The live connection handed to `transfer_data`: a host object behind a vtable.
#[repr(C)]
#[derive(Debug)]
pub struct RConn {
    /// Host context (one reference; released with `release`).
    pub ctx: *const c_void,
    /// Host functions.
    pub vt: *const ConnVTable,
}

/// Functions of [`RConn`]. Every `poll_*` takes the caller's task context and returns a
/// `POLL_*` code.
#[repr(C)]
#[derive(Debug)]
pub struct ConnVTable {
    /// Size of this struct as the host built it.
    pub size: u32,
    /// Receives the next message into `out` (`POLL_READY`), or `POLL_PENDING`.
    pub poll_recv: unsafe extern "C" fn(ctx: *const c_void, cx: *mut FfiContext, out: *mut RRecv) -> u32,
    /// Ready when one more message can be queued with `start_send`.
    pub poll_send_ready: unsafe extern "C" fn(ctx: *const c_void, cx: *mut FfiContext) -> u32,
    /// Queues a frame (copying `data`): `kind` is `MSG_TEXT`/`MSG_BINARY`, `fin = false` starts
    /// or continues a fragmented message.
    pub start_send: unsafe extern "C" fn(ctx: *const c_void, kind: u8, fin: bool, data: RStr) -> u32,
    /// Queues a ping with `data` (at most 125 bytes).
    pub start_ping: unsafe extern "C" fn(ctx: *const c_void, data: RStr) -> u32,
    /// Flushes queued frames to the socket.
    pub poll_flush: unsafe extern "C" fn(ctx: *const c_void, cx: *mut FfiContext) -> u32,
    /// Starts the closing handshake with `code` and `reason`.
    pub start_close: unsafe extern "C" fn(ctx: *const c_void, code: u16, reason: RStr) -> u32,
    /// Ready when the closing handshake finished (or timed out); writes the peer's close.
    pub poll_closed:
        unsafe extern "C" fn(ctx: *const c_void, cx: *mut FfiContext, out: *mut RCloseStatus) -> u32,
    /// Asks for `MSG_PONG` notifications from `poll_recv`.
    pub set_pong_notifications: unsafe extern "C" fn(ctx: *const c_void, enabled: bool),
    /// Chooses the answer to the peer's close frame (pywebsocket's
    /// `web_socket_passive_closing_handshake`): `code` 0 echoes the peer's code and reason
    /// (the default); otherwise that code (a sendable one) and `reason`.
    pub set_close_reply: unsafe extern "C" fn(ctx: *const c_void, code: u16, reason: RStr) -> u32,
    /// Drops the TCP connection at once, without a close frame (pywebsocket's
    /// `AbortedByUserException` in the data phase).
    pub abort: unsafe extern "C" fn(ctx: *const c_void),
    /// Takes one more reference to the connection (for a sender handle on another task).
    pub retain: unsafe extern "C" fn(ctx: *const c_void) -> *const c_void,
    /// Releases one reference.
    pub release: unsafe extern "C" fn(ctx: *const c_void),
    /// A whole send in one call (`poll_send_ready`, `start_send` and `poll_flush` in turn):
    /// `POLL_PENDING` when no frame can be queued yet (nothing was queued; call again when
    /// woken); otherwise queues `data` as `start_send` does, writes out what the socket takes,
    /// and returns `POLL_READY` when everything queued is written or `POLL_QUEUED` when some
    /// still waits for `poll_flush`. `POLL_CLOSED`/`POLL_INVALID` as for `start_send`.
    pub poll_send:
        unsafe extern "C" fn(ctx: *const c_void, cx: *mut FfiContext, kind: u8, fin: bool, data: RStr) -> u32,
}

/// Log levels for [`HostVTable::log`].
pub const LOG_ERROR: u32 = 1;
/// Warning.
pub const LOG_WARN: u32 = 2;
/// Information.
pub const LOG_INFO: u32 = 3;
/// Debugging.
pub const LOG_DEBUG: u32 = 4;
/// Tracing.
pub const LOG_TRACE: u32 = 5;

/// Services the host offers a plugin. A plugin must not assume a tokio runtime of its own
/// (its tokio copy has no reactor), so time, spawning and logging go through here.
#[repr(C)]
#[derive(Debug)]
pub struct HostVTable {
    /// Size of this struct as the host built it.
    pub size: u32,
    /// Host context for this plugin (identifies it; passed back to every service).
    pub ctx: *const c_void,
    /// Writes a log line attributed to this plugin.
    pub log: unsafe extern "C" fn(ctx: *const c_void, level: u32, message: RStr),
    /// Whether a log line at `level` would be written (to skip formatting otherwise).
    pub log_enabled: unsafe extern "C" fn(ctx: *const c_void, level: u32) -> bool,
    /// A future that completes after `millis` milliseconds (a host timer).
    pub sleep: unsafe extern "C" fn(ctx: *const c_void, millis: u64) -> FfiFuture<()>,
    /// Runs a future on the host runtime; the host keeps the plugin loaded until it ends.
    pub spawn: unsafe extern "C" fn(ctx: *const c_void, future: FfiFuture<()>),
    /// Appended after v2's first table (read it only when `size` covers it): runs `job` on
    /// the host's bounded blocking pool, off its async threads, keeping the plugin loaded
    /// until `job.run` has returned. Returns [`POLL_READY`] when the job was taken (it will
    /// be run, or released with `job.release` if the host shuts down first), or
    /// [`POLL_CLOSED`] when the host could not take it (`job` was released already).
    pub spawn_blocking: unsafe extern "C" fn(ctx: *const c_void, job: RBlockingJob) -> u32,
    /// The host's rooms (appended after `spawn_blocking`; read it only when `size` covers it, and it is not null).
    pub rooms: *const RoomsVTable,
}

/// A closure of the plugin's, for [`HostVTable::spawn_blocking`]: the host calls exactly one
/// of `run` or `release`, exactly once, from any thread. The plugin reports the result (and
/// wakes its waiting task) itself, from inside `run`.
#[repr(C)]
#[derive(Debug)]
pub struct RBlockingJob {
    /// The plugin's context (its boxed closure).
    pub data: *mut c_void,
    /// Runs the closure and frees `data`. Never unwinds.
    pub run: unsafe extern "C" fn(data: *mut c_void),
    /// Frees `data` without running the closure (its task then sees an error). Never unwinds.
    pub release: unsafe extern "C" fn(data: *mut c_void),
}

// SAFETY: `data` is a `Send` closure boxed by the SDK; the functions may be called from any
// thread (the type's contract).
unsafe impl Send for RBlockingJob {}

/// The size of [`HostVTable`] up to and including `spawn`: the table of the first v2 hosts.
/// Entries appended after it are read only when the host's `size` reaches past them.
pub const HOST_VTABLE_V2_SIZE: usize = offset_of!(HostVTable, spawn) + size_of::<usize>();

// The first appended entry starts right where the first v2 table ended.
const _: () = assert!(HOST_VTABLE_V2_SIZE == offset_of!(HostVTable, spawn_blocking));

/// A connection's id in the host's rooms: the host process's random node id and its counter.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RConnId {
    /// The host process's node id.
    pub node: u64,
    /// The host process's counter.
    pub seq: u64,
}

/// A room call succeeded.
pub const ROOM_OK: u32 = 0;
/// The channel name is empty, too long or not UTF-8.
pub const ROOM_BAD_NAME: u32 = 1;
/// The presence record is too large.
pub const ROOM_PRESENCE_TOO_LARGE: u32 = 2;
/// The connection is a member of too many channels.
pub const ROOM_TOO_MANY_CHANNELS: u32 = 3;
/// A text message that is not UTF-8.
pub const ROOM_NOT_UTF8: u32 = 4;
/// The connection is closed, or no connection has that id in this host process.
pub const ROOM_GONE: u32 = 5;
/// `leave`: the connection was not a member.
pub const ROOM_NOT_MEMBER: u32 = 6;
/// A bad argument (a `kind` that is not `MSG_TEXT`/`MSG_BINARY`).
pub const ROOM_INVALID: u32 = 7;
/// A message id that is empty or over 64 bytes.
pub const ROOM_BAD_ID: u32 = 8;
/// The broker to the other nodes (Redis) is down: the publish was not made.
pub const ROOM_UNAVAILABLE: u32 = 9;

/// Rooms owned by the host (channels with presence, publish, send to a connection by id).
/// `conn` is an [`RConn`]'s `ctx` (a reference the caller holds); channel names are looked up
/// in that connection's route's namespace. Every function returns a `ROOM_*` code.
#[repr(C)]
#[derive(Debug)]
pub struct RoomsVTable {
    /// Size of this struct as the host built it.
    pub size: u32,
    /// Writes the connection's id to `out` (made on the first call, stable for its life).
    pub conn_id: unsafe extern "C" fn(conn: *const c_void, out: *mut RConnId) -> u32,
    /// Joins `channel` with the `presence` record (or replaces the record).
    pub join: unsafe extern "C" fn(conn: *const c_void, channel: RStr, presence: RStr) -> u32,
    /// Leaves `channel` (`ROOM_NOT_MEMBER` when not a member).
    pub leave: unsafe extern "C" fn(conn: *const c_void, channel: RStr) -> u32,
    /// Sends `data` (`MSG_TEXT`/`MSG_BINARY`) to every member of `channel`; writes how many
    /// members it was queued for to `delivered`.
    pub publish: unsafe extern "C" fn(
        conn: *const c_void,
        channel: RStr,
        kind: u8,
        data: RStr,
        delivered: *mut u64,
    ) -> u32,
    /// Sends `data` to the connection `id` alone.
    pub send_to: unsafe extern "C" fn(id: RConnId, kind: u8, data: RStr) -> u32,
    /// Calls `push(out, id, presence)` for each member of `channel`, in the order they joined
    /// (the record is valid during that call only).
    pub presence: unsafe extern "C" fn(
        conn: *const c_void,
        channel: RStr,
        out: *mut c_void,
        push: unsafe extern "C" fn(out: *mut c_void, id: RConnId, presence: RStr),
    ) -> u32,
    /// Appended after `presence` (read it only when `size` covers it): like `publish`, and
    /// appends the message under `id` (1–64 bytes, opaque) to the channel's history.
    pub publish_logged: unsafe extern "C" fn(
        conn: *const c_void,
        channel: RStr,
        id: RStr,
        kind: u8,
        data: RStr,
        delivered: *mut u64,
    ) -> u32,
    /// Appended after `presence`: joins `channel` like `join` and, atomically with it, queues
    /// to the connection the channel's logged messages after the one whose id is `since`;
    /// writes 1 to `found` when `since` was in the history, 0 (nothing queued) when not.
    pub join_since: unsafe extern "C" fn(
        conn: *const c_void,
        channel: RStr,
        presence: RStr,
        since: RStr,
        found: *mut u8,
    ) -> u32,
    /// Appended after `join_since`: joins `channel` like `join_since` (like `join` when
    /// `since` is empty) and gives the membership a will: `will` (`will_kind` `MSG_TEXT` or
    /// `MSG_BINARY`; 0 for none), queued by the host to the channel's other members if the
    /// connection stops being a member without `leave` (its connection ends while a member,
    /// its worker process or node dies). `ROOM_PRESENCE_TOO_LARGE` for a will over 4,096
    /// bytes. Writes to `found` as `join_since` does (0 when `since` is empty).
    pub join_with_will: unsafe extern "C" fn(
        conn: *const c_void,
        channel: RStr,
        presence: RStr,
        since: RStr,
        will_kind: u8,
        will: RStr,
        found: *mut u8,
    ) -> u32,
}

/// The size of [`RoomsVTable`] up to and including `presence`: the table of the first hosts
/// with rooms. Entries appended after it are read only when the host's `size` reaches them.
pub const ROOMS_VTABLE_V1_SIZE: usize = offset_of!(RoomsVTable, presence) + size_of::<usize>();

// The first appended entry starts right where the first rooms table ended.
const _: () = assert!(ROOMS_VTABLE_V1_SIZE == offset_of!(RoomsVTable, publish_logged));

// SAFETY: the host's rooms table is an immutable static of thread-safe functions.
unsafe impl Sync for RoomsVTable {}
// SAFETY: as above.
unsafe impl Send for RoomsVTable {}

// SAFETY: the host builds this table once per loaded plugin and never mutates it; its
// functions are thread-safe.
unsafe impl Send for HostVTable {}
// SAFETY: as above.
unsafe impl Sync for HostVTable {}

/// Writes an error message from `init`.
#[repr(C)]
#[derive(Debug)]
pub struct RErrorOut {
    /// Host context.
    pub ctx: *mut c_void,
    /// Stores the message.
    pub set: unsafe extern "C" fn(ctx: *mut c_void, message: RStr),
}

/// What a plugin exports. The first three fields are the header and never move.
#[repr(C)]
#[derive(Debug)]
pub struct PluginDescriptor {
    /// [`ABI_VERSION`] of the SDK the plugin was built with.
    pub abi_version: u32,
    /// `size_of::<PluginDescriptor>()` in the plugin's build.
    pub descriptor_size: u32,
    /// [`LAYOUT_FINGERPRINT`] of the plugin's build.
    pub layout_fingerprint: u64,
    /// `cfg!(panic = "unwind")` in the plugin's build; `false` means a panic would abort the host.
    pub panic_unwind: bool,
    /// Version of `wshd-sdk` the plugin was built with.
    pub sdk_version: RStr,
    /// The handler type's name (for logs).
    pub handler_name: RStr,
    /// The plugin crate's name and version (for logs).
    pub crate_version: RStr,
    /// Creates the handler instance from the route's TOML configuration (a TOML table as
    /// text). Returns null on failure, with the reason written to `err`.
    pub init:
        unsafe extern "C" fn(host: *const HostVTable, config_toml: RStr, err: *mut RErrorOut) -> *mut c_void,
    /// Destroys an instance made by `init`.
    pub drop_instance: unsafe extern "C" fn(instance: *mut c_void),
    /// The handshake hook: returns one of the `HANDSHAKE_*` codes.
    pub do_handshake:
        unsafe extern "C" fn(instance: *const c_void, req: *const RRequest, out: *mut RHandshakeOut) -> u32,
    /// The data hook: the conversation. `protocol` is the chosen subprotocol (absent if none).
    /// The future's output is one of the `TRANSFER_*` codes.
    pub transfer_data: unsafe extern "C" fn(
        instance: *const c_void,
        req: *const RRequest,
        protocol: RStr,
        conn: RConn,
    ) -> FfiFuture<u32>,
}

// SAFETY: descriptors are immutable statics holding 'static strings and function pointers.
unsafe impl Sync for PluginDescriptor {}
// SAFETY: as above.
unsafe impl Send for PluginDescriptor {}

/// Hash of the layout of every boundary type (size, alignment, field offsets), plus the
/// async-ffi ABI version. Host and plugin compare it at load time.
pub const LAYOUT_FINGERPRINT: u64 = {
    let mut h = Fnv::new();
    h = h.mix(ABI_VERSION as u64).mix(async_ffi::ABI_VERSION as u64);
    h = h.mix(size_of::<usize>() as u64).mix(size_of::<RStr>() as u64).mix(align_of::<RStr>() as u64);
    h = h.mix(size_of::<ROwnedBuf>() as u64).mix(offset_of!(ROwnedBuf, drop) as u64);
    h = h.mix(size_of::<RHeader>() as u64);
    h = h
        .mix(size_of::<RRequest>() as u64)
        .mix(offset_of!(RRequest, headers) as u64)
        .mix(offset_of!(RRequest, local_addr) as u64);
    h = h
        .mix(size_of::<HandshakeOutVTable>() as u64)
        .mix(offset_of!(HandshakeOutVTable, decline_extensions) as u64);
    h = h.mix(size_of::<RRecv>() as u64).mix(offset_of!(RRecv, data) as u64);
    h = h.mix(size_of::<RCloseStatus>() as u64);
    h = h.mix(size_of::<RConn>() as u64);
    h = h.mix(size_of::<ConnVTable>() as u64).mix(offset_of!(ConnVTable, poll_send) as u64);
    // The host table is append-only with a `size` field read at run time (and the rooms
    // table has its own): its first v2 size stays in the fingerprint, so plugins built before
    // an append still load.
    h = h.mix(HOST_VTABLE_V2_SIZE as u64).mix(offset_of!(HostVTable, spawn) as u64);
    h = h.mix(size_of::<RErrorOut>() as u64);
    h = h.mix(size_of::<FfiFuture<u32>>() as u64).mix(size_of::<async_ffi::FfiPoll<u32>>() as u64);
    h = h
        .mix(size_of::<PluginDescriptor>() as u64)
        .mix(offset_of!(PluginDescriptor, panic_unwind) as u64)
        .mix(offset_of!(PluginDescriptor, transfer_data) as u64);
    h.0
};

/// FNV-1a over 64-bit words, usable in `const`.
struct Fnv(u64);

impl Fnv {
    const fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    const fn mix(self, value: u64) -> Fnv {
        let mut h = self.0;
        let mut i = 0;
        while i < 8 {
            h ^= (value >> (i * 8)) & 0xff;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
            i += 1;
        }
        Fnv(h)
    }
}
