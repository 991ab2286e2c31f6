//! The export shim: the `extern "C"` functions [`export_handler!`](crate::export_handler)
//! generates, and the safe wrappers over the host's vtables. With [`abi`](crate::abi), this
//! is the only place in the SDK with `unsafe`; handler code never needs any.
//!
//! Every `extern "C"` function here runs its body under `catch_unwind`: a panic that reached
//! the host through `extern "C"` would abort the whole server.
#![allow(unsafe_code)]

use std::any::Any;
use std::cell::RefCell;
use std::ffi::c_void;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Once, OnceLock};
use std::task::{Context, Poll};

use async_ffi::{ContextExt, FfiFuture, FutureExt};

use crate::abi::*;
use crate::connection::{CloseStatus, ConnectionInfo, SendError};
use crate::handler::{Accept, Handler, Reject};
use crate::lent::{LentBuf, LentText};
use crate::message::{Message, Payload, Text};
use crate::request::{Header, Request};
use crate::{CloseCode, Config, Connection};

// ---------------------------------------------------------------------------------------------
// Panic capture: the plugin has its own copy of std, so its panic hook is its own. We record
// the message instead of printing it, and the catch sites hand it to the host.

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = match info.payload().downcast_ref::<&str>() {
                Some(s) => (*s).to_owned(),
                None => match info.payload().downcast_ref::<String>() {
                    Some(s) => s.clone(),
                    None => "Box<dyn Any>".to_owned(),
                },
            };
            let text = match info.location() {
                Some(loc) => format!("{message} (at {}:{})", loc.file(), loc.line()),
                None => message,
            };
            let _ = LAST_PANIC.try_with(|slot| *slot.borrow_mut() = Some(text));
        }));
    });
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    let recorded = LAST_PANIC.try_with(|slot| slot.borrow_mut().take()).ok().flatten();
    // Drop the payload under its own guard: a payload whose Drop panics must not unwind here.
    let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
    recorded.unwrap_or_else(|| "panic with an unknown payload".to_owned())
}

// ---------------------------------------------------------------------------------------------
// Host services.

pub(crate) mod rooms;

/// Safe access to the host's service table, set once by `init`.
pub(crate) mod host {
    use super::*;
    use crate::log::Level;

    struct HostRef(*const HostVTable);
    // SAFETY: the host's table is immutable and its functions are thread-safe (abi rules).
    unsafe impl Send for HostRef {}
    // SAFETY: as above.
    unsafe impl Sync for HostRef {}

    static HOST: OnceLock<HostRef> = OnceLock::new();

    pub(super) fn set(table: *const HostVTable) {
        let _ = HOST.set(HostRef(table));
    }

    pub(super) fn table() -> Option<&'static HostVTable> {
        // SAFETY: the host keeps its table alive for as long as this library is loaded.
        HOST.get().map(|h| unsafe { &*h.0 })
    }

    fn level_code(level: Level) -> u32 {
        match level {
            Level::Error => LOG_ERROR,
            Level::Warn => LOG_WARN,
            Level::Info => LOG_INFO,
            Level::Debug => LOG_DEBUG,
            Level::Trace => LOG_TRACE,
        }
    }

    pub(crate) fn log_enabled(level: Level) -> bool {
        match table() {
            // SAFETY: a host function called with its own context.
            Some(t) => unsafe { (t.log_enabled)(t.ctx, level_code(level)) },
            None => false,
        }
    }

    pub(crate) fn log(level: Level, message: &str) {
        if let Some(t) = table() {
            // SAFETY: host function, own context; the message outlives the call.
            unsafe { (t.log)(t.ctx, level_code(level), RStr::from_bytes(message.as_bytes())) }
        }
    }

    pub(crate) fn sleep(millis: u64) -> FfiFuture<()> {
        match table() {
            // SAFETY: host function, own context; it returns a host-owned future.
            Some(t) => unsafe { (t.sleep)(t.ctx, millis) },
            None => panic!("wshd_sdk::time needs the wshd host (called outside a loaded plugin)"),
        }
    }

    /// Runs `f`, a panic becoming [`BlockingError::Panicked`](crate::BlockingError).
    pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, crate::BlockingError> {
        catch_unwind(AssertUnwindSafe(f)).map_err(|p| crate::BlockingError::Panicked(panic_message(p)))
    }

    /// Hands `job` to the host's blocking pool; a host without one (or that refuses it)
    /// gets it released unrun.
    pub(crate) fn spawn_blocking(job: BoxedJob) {
        let data = Box::into_raw(Box::new(job)).cast::<c_void>();
        let job = RBlockingJob { data, run: run_blocking_job, release: release_blocking_job };
        match table() {
            Some(t)
                if t.size as usize
                    >= std::mem::offset_of!(HostVTable, spawn_blocking) + size_of::<usize>() =>
            {
                // SAFETY: host function (present: the size covers it), own context; the
                // host takes ownership of the job and runs or releases it once.
                let _ = unsafe { (t.spawn_blocking)(t.ctx, job) };
            }
            // SAFETY: our own job, not handed to anyone.
            _ => unsafe { release_blocking_job(job.data) },
        }
    }

    pub(crate) fn spawn(future: impl Future<Output = ()> + Send + 'static) {
        let guarded = CatchPanic::new(future, "a spawned task");
        let future = async move {
            guarded.await;
        }
        .into_ffi();
        match table() {
            // SAFETY: host function, own context; the host takes ownership of the future.
            Some(t) => unsafe { (t.spawn)(t.ctx, future) },
            None => panic!("wshd_sdk::spawn needs the wshd host (called outside a loaded plugin)"),
        }
    }
}

/// A boxed job for the host's blocking pool (boxed twice: the ABI passes a thin pointer).
type BoxedJob = Box<dyn FnOnce() + Send>;

/// `RBlockingJob::run`: runs the job (which reports its own result) and frees it.
unsafe extern "C" fn run_blocking_job(data: *mut c_void) {
    // SAFETY: `data` is the `Box<BoxedJob>` made by `host::spawn_blocking`; the host calls
    // `run` or `release` once, so ownership comes back exactly once.
    let job = unsafe { Box::from_raw(data.cast::<BoxedJob>()) };
    // The job catches the user's panic itself; this guard is for a panicking drop.
    let _ = catch_unwind(AssertUnwindSafe(job));
}

/// `RBlockingJob::release`: frees the job unrun (its task sees `Unavailable`).
unsafe extern "C" fn release_blocking_job(data: *mut c_void) {
    // SAFETY: as in `run_blocking_job`.
    let job = unsafe { Box::from_raw(data.cast::<BoxedJob>()) };
    let _ = catch_unwind(AssertUnwindSafe(move || drop(job)));
}

/// Threads started with `pthread_create`, not `std::thread::spawn`: spawning a std thread
/// touches std's thread-locals (its spawn hooks) on the *calling* thread, a host thread,
/// which registers a TLS destructor that keeps this library mapped after `dlclose`.
#[cfg(feature = "io")]
pub(crate) mod raw_thread {
    use super::*;

    /// A joinable thread.
    pub(crate) struct RawThread(libc::pthread_t);

    type Body = Box<dyn FnOnce() + Send>;

    /// Starts `body` on a new thread; `None` if the thread cannot be made.
    pub(crate) fn spawn(body: Body) -> Option<RawThread> {
        let data = Box::into_raw(Box::new(body)).cast::<c_void>();
        let mut thread = std::mem::MaybeUninit::<libc::pthread_t>::uninit();
        // SAFETY: a valid out pointer, default attributes, our trampoline and its box.
        let rc = unsafe { libc::pthread_create(thread.as_mut_ptr(), std::ptr::null(), trampoline, data) };
        if rc != 0 {
            // SAFETY: the thread was not made, so the box is still ours.
            drop(unsafe { Box::from_raw(data.cast::<Body>()) });
            return None;
        }
        // SAFETY: `pthread_create` succeeded and wrote the id.
        Some(RawThread(unsafe { thread.assume_init() }))
    }

    extern "C" fn trampoline(data: *mut c_void) -> *mut c_void {
        // SAFETY: the box made by `spawn`, handed to this thread alone.
        let body = unsafe { Box::from_raw(data.cast::<Body>()) };
        let _ = catch_unwind(AssertUnwindSafe(body));
        std::ptr::null_mut()
    }

    impl RawThread {
        /// Waits for the thread to end.
        pub(crate) fn join(self) {
            // SAFETY: a thread made by `spawn`, joined once (`self` is consumed).
            let _ = unsafe { libc::pthread_join(self.0, std::ptr::null_mut()) };
        }
    }
}

/// Runs a future under `catch_unwind`; a panic is logged through the host and turns into
/// `None`.
struct CatchPanic<F> {
    inner: Pin<Box<F>>,
    what: &'static str,
}

impl<F: Future> CatchPanic<F> {
    fn new(inner: F, what: &'static str) -> CatchPanic<F> {
        CatchPanic { inner: Box::pin(inner), what }
    }
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Option<F::Output>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let what = self.what;
        match catch_unwind(AssertUnwindSafe(|| self.inner.as_mut().poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Some(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => {
                let message = panic_message(payload);
                host::log(crate::log::Level::Error, &format!("handler panicked in {what}: {message}"));
                Poll::Ready(None)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Buffers lent by the host.

fn owned_to_string(buf: ROwnedBuf) -> String {
    // SAFETY: a buffer the host just lent through `poll_closed`, owned by no one else.
    let buf = unsafe { LentBuf::from_host(buf) };
    String::from_utf8_lossy(buf.as_bytes()).into_owned()
}

// ---------------------------------------------------------------------------------------------
// The connection vtable, made safe.

/// What `poll_recv` produced.
pub(crate) enum Received {
    Message(Message),
    Pong(Payload),
    Closed(CloseStatus),
}

/// One reference to the host's connection object.
pub(crate) struct RawConn {
    ctx: *const c_void,
    vt: &'static ConnVTable,
}

// SAFETY: the host's connection object is reference-counted and internally synchronised; its
// functions may be called from any thread.
unsafe impl Send for RawConn {}
// SAFETY: as above; every method takes `&self` and the host serialises internally.
unsafe impl Sync for RawConn {}

impl fmt::Debug for RawConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RawConn")
    }
}

fn poll_code(code: u32) -> Poll<Result<(), SendError>> {
    match code {
        POLL_READY => Poll::Ready(Ok(())),
        POLL_PENDING => Poll::Pending,
        POLL_INVALID => Poll::Ready(Err(SendError::Invalid)),
        _ => Poll::Ready(Err(SendError::Closed)),
    }
}

/// A close code the host reports; it only reports codes in range, and anything else reads
/// as an abnormal closure.
fn reported_code(code: u16) -> CloseCode {
    CloseCode::new(code).unwrap_or(CloseCode::ABNORMAL)
}

fn op_code(code: u32) -> Result<(), SendError> {
    match code {
        POLL_READY => Ok(()),
        POLL_INVALID => Err(SendError::Invalid),
        _ => Err(SendError::Closed),
    }
}

impl RawConn {
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Received> {
        let mut out = RRecv { kind: 0, close_code: 0, data: ROwnedBuf::EMPTY };
        let code = cx.with_ffi_context(|fcx| {
            // SAFETY: host function with its own live context; `out` is a valid place.
            unsafe { (self.vt.poll_recv)(self.ctx, fcx, &mut out) }
        });
        if code == POLL_PENDING {
            return Poll::Pending;
        }
        if (code, out.kind) == (POLL_READY, MSG_TEXT) {
            // SAFETY: a text message the host just lent, valid UTF-8 by the ABI's rules.
            return Poll::Ready(Received::Message(Message::Text(Text(unsafe {
                LentText::from_host(out.data)
            }))));
        }
        // SAFETY: a buffer the host just lent, owned by no one else.
        let payload = Payload(unsafe { LentBuf::from_host(out.data) });
        Poll::Ready(match (code, out.kind) {
            (POLL_READY, MSG_BINARY) => Received::Message(Message::Binary(payload)),
            (POLL_READY, MSG_PONG) => Received::Pong(payload),
            (POLL_READY, MSG_CLOSED) => {
                let reason = String::from_utf8_lossy(&payload).into_owned();
                Received::Closed(CloseStatus { code: reported_code(out.close_code), reason })
            }
            _ => Received::Closed(CloseStatus { code: CloseCode::ABNORMAL, reason: String::new() }),
        })
    }

    /// Queues a frame once the host is ready for it and writes it out; `Ok(true)` when all is
    /// written, `Ok(false)` when some still waits for [`RawConn::poll_flush`].
    pub(crate) fn poll_send(
        &self,
        cx: &mut Context<'_>,
        kind: u8,
        fin: bool,
        data: &[u8],
    ) -> Poll<Result<bool, SendError>> {
        let code = cx.with_ffi_context(|fcx| {
            // SAFETY: host function with its own live context; it copies `data` before
            // returning.
            unsafe { (self.vt.poll_send)(self.ctx, fcx, kind, fin, RStr::from_bytes(data)) }
        });
        match code {
            POLL_QUEUED => Poll::Ready(Ok(false)),
            code => poll_code(code).map_ok(|()| true),
        }
    }

    pub(crate) fn poll_send_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        // SAFETY: host function with its own live context.
        poll_code(cx.with_ffi_context(|fcx| unsafe { (self.vt.poll_send_ready)(self.ctx, fcx) }))
    }

    pub(crate) fn start_ping(&self, data: &[u8]) -> Result<(), SendError> {
        // SAFETY: host function; it copies `data` before returning.
        op_code(unsafe { (self.vt.start_ping)(self.ctx, RStr::from_bytes(data)) })
    }

    pub(crate) fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        // SAFETY: host function with its own live context.
        poll_code(cx.with_ffi_context(|fcx| unsafe { (self.vt.poll_flush)(self.ctx, fcx) }))
    }

    pub(crate) fn start_close(&self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        let (code, reason) = (code.as_u16(), RStr::from_bytes(reason.as_bytes()));
        // SAFETY: host function; it copies `reason` before returning.
        op_code(unsafe { (self.vt.start_close)(self.ctx, code, reason) })
    }

    pub(crate) fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<CloseStatus> {
        let mut out = RCloseStatus { code: 1006, reason: ROwnedBuf::EMPTY };
        let code = cx.with_ffi_context(|fcx| {
            // SAFETY: host function with its own live context; `out` is a valid place.
            unsafe { (self.vt.poll_closed)(self.ctx, fcx, &mut out) }
        });
        if code == POLL_PENDING {
            return Poll::Pending;
        }
        Poll::Ready(CloseStatus { code: reported_code(out.code), reason: owned_to_string(out.reason) })
    }

    pub(crate) fn abort(&self) {
        // SAFETY: host function with its own context.
        unsafe { (self.vt.abort)(self.ctx) }
    }

    pub(crate) fn set_pong_notifications(&self, enabled: bool) {
        // SAFETY: host function with its own context.
        unsafe { (self.vt.set_pong_notifications)(self.ctx, enabled) }
    }

    /// `None` restores the default answer (echo the peer's close): code 0 on the ABI.
    pub(crate) fn set_close_reply(&self, code: Option<CloseCode>, reason: &str) -> Result<(), SendError> {
        let (code, reason) = (code.map_or(0, CloseCode::as_u16), RStr::from_bytes(reason.as_bytes()));
        // SAFETY: host function; it copies `reason` before returning.
        op_code(unsafe { (self.vt.set_close_reply)(self.ctx, code, reason) })
    }
}

impl Clone for RawConn {
    fn clone(&self) -> RawConn {
        // SAFETY: host function; returns a new reference to the same object.
        let ctx = unsafe { (self.vt.retain)(self.ctx) };
        RawConn { ctx, vt: self.vt }
    }
}

impl Drop for RawConn {
    fn drop(&mut self) {
        // SAFETY: releases the one reference this value holds.
        unsafe { (self.vt.release)(self.ctx) }
    }
}

// ---------------------------------------------------------------------------------------------
// Request conversion.

fn str_of<'a>(s: RStr) -> &'a str {
    // SAFETY: the host's request strings are valid for the whole `do_handshake` /
    // `transfer_data` call, which outlives every borrow made from them here.
    let bytes = unsafe { s.as_bytes() }.unwrap_or_default();
    std::str::from_utf8(bytes).unwrap_or_default()
}

fn opt_str_of<'a>(s: RStr) -> Option<&'a str> {
    if s.is_none() { None } else { Some(str_of(s)) }
}

fn addr_of(s: RStr) -> Option<SocketAddr> {
    opt_str_of(s)?.parse().ok()
}

fn request_from_raw(raw: &RRequest) -> Request<'_> {
    let headers = if raw.headers.is_null() || raw.headers_len == 0 {
        Vec::new()
    } else {
        // SAFETY: the host passes `headers_len` valid headers for the duration of the call.
        let raw_headers = unsafe { std::slice::from_raw_parts(raw.headers, raw.headers_len) };
        raw_headers
            .iter()
            .map(|h| Header {
                name: str_of(h.name),
                // SAFETY: as for `str_of`.
                value: unsafe { h.value.as_bytes() }.unwrap_or_default(),
            })
            .collect()
    };
    Request {
        method: str_of(raw.method),
        uri: str_of(raw.uri),
        path: str_of(raw.path),
        resource: str_of(raw.resource),
        query: opt_str_of(raw.query),
        http_version: str_of(raw.http_version),
        headers,
        peer_addr: addr_of(raw.peer_addr),
        socket_addr: addr_of(raw.socket_addr),
        local_addr: addr_of(raw.local_addr),
        is_secure: raw.is_secure,
    }
}

// ---------------------------------------------------------------------------------------------
// The exported entry points, generic over the handler type.

/// `PluginDescriptor::init` for `H`.
///
/// # Safety
/// Called by the host with a host table that outlives the library and a valid `err`.
pub unsafe extern "C" fn init<H: Handler>(
    host: *const HostVTable,
    config: RStr,
    err: *mut RErrorOut,
) -> *mut c_void {
    let result = catch_unwind(|| {
        install_panic_hook();
        host::set(host);
        let config = Config::parse(str_of(config)).map_err(|e| format!("invalid handler config: {e}"))?;
        H::new(&config).map_err(|e| e.to_string())
    });
    let message = match result {
        Ok(Ok(handler)) => {
            INSTANCES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return Box::into_raw(Box::new(handler)).cast();
        }
        Ok(Err(message)) => message,
        Err(payload) => format!("constructor panicked: {}", panic_message(payload)),
    };
    if INSTANCES.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        // A constructor that used `io` and failed leaves no instance to shut it down later.
        let _ = catch_unwind(release_generation);
    }
    // SAFETY: the host passes a valid error sink; the message outlives the call.
    unsafe {
        let err = &*err;
        (err.set)(err.ctx, RStr::from_bytes(message.as_bytes()));
    }
    std::ptr::null_mut()
}

/// `PluginDescriptor::drop_instance` for `H`.
///
/// # Safety
/// `instance` came from `init::<H>` and is dropped once, after its last use.
pub unsafe extern "C" fn drop_instance<H: Handler>(instance: *mut c_void) {
    let _ = catch_unwind(|| {
        // SAFETY: by the contract above, this is the Box made by `init::<H>`.
        drop(unsafe { Box::from_raw(instance.cast::<H>()) });
    });
    if INSTANCES.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
        let _ = catch_unwind(release_generation);
    }
}

/// Handler instances alive in this library (this generation).
static INSTANCES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// What the generation holds beyond its instances, released with the last one: the I/O
/// runtime's threads are joined here, before the host may unload the library.
fn release_generation() {
    #[cfg(feature = "io")]
    crate::io::shutdown();
}

/// `PluginDescriptor::do_handshake` for `H`.
///
/// # Safety
/// `instance` came from `init::<H>`; `req` and `out` are valid for the call.
pub unsafe extern "C" fn do_handshake<H: Handler>(
    instance: *const c_void,
    req: *const RRequest,
    out: *mut RHandshakeOut,
) -> u32 {
    // SAFETY: valid for the call (contract above); the host table outlives it.
    let (out, vt) = unsafe { (&*out, &*(*out).vt) };
    let result = catch_unwind(|| {
        // SAFETY: as above.
        let (handler, req) = unsafe { (&*instance.cast::<H>(), &*req) };
        handler.do_handshake(&request_from_raw(req))
    });
    let s = |v: &str| RStr::from_bytes(v.as_bytes());
    // SAFETY (every call below): host functions with their own context; they copy the strings.
    match result {
        Ok(Ok(Accept { protocol, headers, decline_extensions })) => unsafe {
            if let Some(p) = &protocol {
                (vt.set_protocol)(out.ctx, s(p));
            }
            for (name, value) in &headers {
                (vt.add_header)(out.ctx, s(name), s(value));
            }
            if decline_extensions {
                (vt.decline_extensions)(out.ctx);
            }
            HANDSHAKE_ACCEPT
        },
        Ok(Err(Reject { abort: true, .. })) => HANDSHAKE_ABORT,
        Ok(Err(Reject { status, headers, body, .. })) => unsafe {
            (vt.set_status)(out.ctx, status);
            for (name, value) in &headers {
                (vt.add_header)(out.ctx, s(name), s(value));
            }
            (vt.set_body)(out.ctx, s(&body));
            HANDSHAKE_REJECT
        },
        Err(payload) => unsafe {
            (vt.set_message)(out.ctx, s(&panic_message(payload)));
            HANDSHAKE_PANICKED
        },
    }
}

/// `PluginDescriptor::transfer_data` for `H`.
///
/// # Safety
/// `instance` came from `init::<H>` and outlives the returned future (the host holds the
/// library and instance until the future is dropped); `req` is valid for the call; `conn`
/// is one reference the future takes over.
pub unsafe extern "C" fn transfer_data<H: Handler>(
    instance: *const c_void,
    req: *const RRequest,
    protocol: RStr,
    conn: RConn,
) -> FfiFuture<u32> {
    // SAFETY: the host's connection vtable is static for the library's lifetime.
    let raw = RawConn { ctx: conn.ctx, vt: unsafe { &*conn.vt } };
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the instance outlives the future (contract above), so 'static is sound here.
        let handler: &'static H = unsafe { &*instance.cast::<H>() };
        // SAFETY: valid for this call.
        let req = request_from_raw(unsafe { &*req });
        let info = ConnectionInfo {
            resource: req.resource().to_owned(),
            path: req.path().to_owned(),
            query: req.query().map(str::to_owned),
            protocol: opt_str_of(protocol).map(str::to_owned),
            peer_addr: req.peer_addr(),
            socket_addr: req.socket_addr(),
            local_addr: req.local_addr(),
            is_secure: req.is_secure(),
            http_version: req.http_version().to_owned(),
        };
        handler.transfer_data(Connection::new(raw, info))
    }));
    match result {
        Ok(future) => {
            let guarded = CatchPanic::new(future, "transfer_data");
            async move { if guarded.await.is_some() { TRANSFER_DONE } else { TRANSFER_PANICKED } }.into_ffi()
        }
        Err(payload) => {
            let message = panic_message(payload);
            host::log(crate::log::Level::Error, &format!("handler panicked in transfer_data: {message}"));
            async { TRANSFER_PANICKED }.into_ffi()
        }
    }
}

/// The frozen probe: the ABI version this SDK speaks.
pub extern "C" fn abi_version() -> u32 {
    ABI_VERSION
}

/// Exports a [`Handler`](crate::Handler) type as this plugin's handler. Use once, in a
/// `cdylib` crate whose name ends in `_wsh`:
///
/// ```ignore
/// wshd_sdk::export_handler!(Echo);
/// ```
#[macro_export]
macro_rules! export_handler {
    ($handler:ty) => {
        const _: () = {
            static DESCRIPTOR: $crate::__private::PluginDescriptor = $crate::__private::PluginDescriptor {
                abi_version: $crate::__private::ABI_VERSION,
                descriptor_size: ::core::mem::size_of::<$crate::__private::PluginDescriptor>() as u32,
                layout_fingerprint: $crate::__private::LAYOUT_FINGERPRINT,
                panic_unwind: cfg!(panic = "unwind"),
                sdk_version: $crate::__private::RStr::from_static($crate::__private::SDK_VERSION),
                handler_name: $crate::__private::RStr::from_static(stringify!($handler)),
                crate_version: $crate::__private::RStr::from_static(concat!(
                    env!("CARGO_PKG_NAME"),
                    " ",
                    env!("CARGO_PKG_VERSION")
                )),
                init: $crate::__private::init::<$handler>,
                drop_instance: $crate::__private::drop_instance::<$handler>,
                do_handshake: $crate::__private::do_handshake::<$handler>,
                transfer_data: $crate::__private::transfer_data::<$handler>,
            };

            /// The frozen ABI probe of wshd plugins.
            #[allow(unsafe_code)]
            #[unsafe(no_mangle)]
            pub extern "C" fn wshd_abi_version() -> u32 {
                $crate::__private::abi_version()
            }

            /// The wshd plugin descriptor (ABI v2; the name is `abi::DESCRIPTOR_SYMBOL`).
            #[allow(unsafe_code)]
            #[unsafe(no_mangle)]
            pub extern "C" fn wshd_plugin_v2() -> *const $crate::__private::PluginDescriptor {
                &DESCRIPTOR
            }
        };
    };
}
