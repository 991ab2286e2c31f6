//! Loading a plugin file: copy, `dlopen`, check, construct. With `host/` this is the host's
//! only `unsafe` code.
//!
//! Checks, in order, each failure one [`LoadError`] naming the reason:
//! 1. `dlopen(RTLD_NOW | RTLD_LOCAL)` of a private copy (never the watched file: dlopen caches
//!    by path, and a mapped file overwritten in place crashes the process); the `dlerror` text
//!    is kept.
//! 2. the frozen probe symbol `wshd_abi_version` exists ("not a wshd plugin");
//! 3. its version equals ours;
//! 4. the descriptor's size and layout fingerprint equal ours;
//! 5. the plugin was built with `panic = "unwind"`;
//! 6. the handler's constructor succeeds (see [`Plugin::instantiate`]).
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
use wshd_sdk::abi::{self, HostVTable, PluginDescriptor, RErrorOut, RStr};

use super::host::services::{self, PluginServices};

/// Why a file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The file could not be read or copied.
    Io(String),
    /// `dlopen` failed; the text is `dlerror()`'s.
    Dlopen(String),
    /// A shared library without the wshd probe symbol.
    NotAPlugin,
    /// Built against another ABI version.
    AbiVersion {
        /// The plugin's version.
        plugin: u32,
    },
    /// Same version, different layout (an SDK built with different type layouts).
    Layout,
    /// Built with `panic = "abort"`.
    PanicAbort,
    /// The handler constructor failed.
    Constructor(String),
    /// The file, or the directory holding it, can be written by any user: anyone could
    /// replace the code wshd runs.
    WritableByOthers(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io(e) => write!(f, "cannot read the file: {e}"),
            LoadError::Dlopen(e) => write!(f, "not a loadable shared library: {e}"),
            LoadError::NotAPlugin => {
                write!(
                    f,
                    "not a wshd plugin (no `wshd_abi_version` symbol; build it with wshd_sdk::export_handler!)"
                )
            }
            LoadError::AbiVersion { plugin } => write!(
                f,
                "built for plugin ABI v{plugin}, this host speaks v{}; rebuild it against a matching wshd-sdk",
                abi::ABI_VERSION
            ),
            LoadError::Layout => write!(
                f,
                "plugin ABI layout mismatch (same version v{}, different type layout); rebuild it against this wshd-sdk",
                abi::ABI_VERSION
            ),
            LoadError::PanicAbort => write!(
                f,
                "built with panic = \"abort\": a panic in it would kill the server; build with panic = \"unwind\""
            ),
            LoadError::Constructor(e) => write!(f, "handler constructor failed: {e}"),
            LoadError::WritableByOthers(what) => write!(
                f,
                "{what} is writable by every user, so anyone could replace the code wshd runs; \
                 refused (chmod o-w)"
            ),
        }
    }
}

impl std::error::Error for LoadError {}

/// A loaded plugin library. Instances made from it keep it alive; it is unloaded when the
/// last instance, connection and spawned task using it is gone.
pub struct Plugin {
    /// The file it was loaded from.
    pub file: PathBuf,
    /// Its generation: a number unique to this load in this process.
    pub generation: u64,
    /// Hash of the loaded content (see [`content_hash`]).
    pub hash: u64,
    /// The handler type's name.
    pub handler_name: String,
    /// The SDK version it was built with.
    pub sdk_version: String,
    /// Its crate name and version.
    pub crate_version: String,
    descriptor: *const PluginDescriptor,
    host_table: Box<HostVTable>,
    services: Box<PluginServices>,
    // Declared last: dropped (unloaded) after everything above.
    library: Library,
}

// SAFETY: the descriptor is an immutable static inside the library, which stays loaded as long
// as this value; the host table and services are immutable or internally synchronised.
unsafe impl Send for Plugin {}
// SAFETY: as above.
unsafe impl Sync for Plugin {}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("file", &self.file)
            .field("generation", &self.generation)
            .field("handler", &self.handler_name)
            .field("crate", &self.crate_version)
            .finish_non_exhaustive()
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
        tracing::info!(
            file = %self.file.display(),
            generation = self.generation,
            hash = %format_args!("{:016x}", self.hash),
            "handler generation released (its last connection ended)"
        );
        // `library` drops last (field order): dlclose after the tables it may reference.
        let _ = (&self.host_table, &self.services, &self.library);
    }
}

/// A handler instance: what `init` returned, bound to its library.
pub struct HandlerInstance {
    instance: *mut c_void,
    /// Its route id for the watchdog ([`crate::watchdog::intern`]), given at load time.
    pub(crate) route: u32,
    /// The library; declared last so it outlives `drop_instance`.
    pub plugin: Arc<Plugin>,
}

// SAFETY: handler instances are `Send + Sync` (the SDK's `Handler` trait requires it).
unsafe impl Send for HandlerInstance {}
// SAFETY: as above.
unsafe impl Sync for HandlerInstance {}

impl fmt::Debug for HandlerInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerInstance").field("plugin", &self.plugin).finish_non_exhaustive()
    }
}

impl Drop for HandlerInstance {
    /// Runs the plugin's `drop_instance` off the async threads when a runtime is at hand (it
    /// may join the plugin's own threads, such as its I/O runtime's), holding the library
    /// until it has returned: the unload (dlclose) comes after.
    fn drop(&mut self) {
        let doomed =
            DoomedInstance { instance: self.instance, route: self.route, plugin: Arc::clone(&self.plugin) };
        match tokio::runtime::Handle::try_current() {
            // A closure the runtime drops unrun (it is shutting down) still destroys it.
            Ok(handle) => drop(handle.spawn_blocking(move || drop(doomed))),
            Err(_) => drop(doomed),
        }
    }
}

/// A handler instance on its way to `drop_instance` (called when this is dropped), with
/// its library, which is released after.
struct DoomedInstance {
    instance: *mut c_void,
    route: u32,
    plugin: Arc<Plugin>,
}

// SAFETY: as for `HandlerInstance`, whose pointer this carries.
unsafe impl Send for DoomedInstance {}

impl Drop for DoomedInstance {
    fn drop(&mut self) {
        let _inside = crate::watchdog::enter(self.route);
        // SAFETY: `instance` came from this library's `init` and is dropped exactly once (its
        // `HandlerInstance` is gone); the library is still loaded (`self.plugin`).
        unsafe { (self.plugin.descriptor().drop_instance)(self.instance) }
    }
}

impl HandlerInstance {
    /// Calls the plugin's `do_handshake` (see [`HandlerInstance::handshake`]).
    pub(super) fn raw_do_handshake(&self, req: &abi::RRequest, out: &mut abi::RHandshakeOut) -> u32 {
        // SAFETY: a live instance of this library; `req` and `out` are valid for the call.
        unsafe { (self.plugin.descriptor().do_handshake)(self.instance, req, out) }
    }

    /// Calls the plugin's `transfer_data`, returning its future (see
    /// [`HandlerInstance::start`]). The caller must keep this instance alive until the future
    /// is dropped.
    pub(super) fn raw_transfer_data(
        &self,
        req: &abi::RRequest,
        protocol: RStr,
        conn: abi::RConn,
    ) -> abi::FfiFuture<u32> {
        // SAFETY: a live instance of this library; `req` is valid for the call; `conn` is one
        // reference handed over; the caller keeps `self` alive while the future lives.
        unsafe { (self.plugin.descriptor().transfer_data)(self.instance, req, protocol, conn) }
    }
}

/// Where private copies of plugin files go: one 0700 directory per process.
fn private_dir() -> Result<&'static Path, LoadError> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("wshd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot protect {}: {e}", dir.display()))?;
        Ok(dir)
    });
    dir.as_deref().map_err(|e| LoadError::Io(e.clone()))
}

/// Writes `bytes` (the content of `file`) to a never-reused private path, so each load gets
/// its own mapping and a later overwrite of `file` cannot touch it.
fn private_copy(file: &Path, bytes: &[u8]) -> Result<PathBuf, LoadError> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("plugin");
    let copy = private_dir()?.join(format!("{stem}.{}.so", SEQ.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&copy, bytes).map_err(|e| LoadError::Io(format!("{}: {e}", copy.display())))?;
    Ok(copy)
}

/// A content hash of a plugin file (SipHash with fixed keys: stable across runs), shown in
/// logs and used to skip reloading identical content.
pub fn content_hash(bytes: &[u8]) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(bytes)
}

/// Plugin generations: every successful load gets the next number.
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// Libraries currently mapped (loaded and not yet released).
static LIVE: AtomicU64 = AtomicU64::new(0);

/// How many plugin libraries are mapped right now (every generation still in use).
pub fn live_generations() -> u64 {
    LIVE.load(Ordering::Relaxed)
}

fn dlopen(path: &Path) -> Result<Library, LoadError> {
    // SAFETY: loading runs the library's initialisers. A wshd plugin has none beyond Rust's
    // std; for arbitrary files this is the documented trust boundary: only files from the
    // operator's handler directory are loaded.
    unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }.map_err(|e| {
        let detail = std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string);
        LoadError::Dlopen(detail)
    })
}

/// Refuses a plugin file that every user may write, or that sits in a directory every user
/// may write without the sticky bit (where anyone could rename another file over it).
fn refuse_if_writable_by_others(file: &Path) -> Result<(), LoadError> {
    use std::os::unix::fs::PermissionsExt;
    const OTHERS_WRITE: u32 = 0o002;
    const STICKY: u32 = 0o1000;
    let mode = |path: &Path| std::fs::metadata(path).map(|m| m.permissions().mode());
    if mode(file).is_ok_and(|m| m & OTHERS_WRITE != 0) {
        return Err(LoadError::WritableByOthers(format!("the file {}", file.display())));
    }
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty())
        && mode(dir).is_ok_and(|m| m & OTHERS_WRITE != 0 && m & STICKY == 0)
    {
        return Err(LoadError::WritableByOthers(format!("its directory {}", dir.display())));
    }
    Ok(())
}

/// Reads `file` and loads it; see [`load_bytes`].
pub fn load(file: &Path) -> Result<Arc<Plugin>, LoadError> {
    let bytes = std::fs::read(file).map_err(|e| LoadError::Io(e.to_string()))?;
    load_bytes(file, &bytes)
}

/// Loads `bytes`, the content of `file`, and runs checks 1–5. The library is ready for
/// [`Plugin::instantiate`].
pub fn load_bytes(file: &Path, bytes: &[u8]) -> Result<Arc<Plugin>, LoadError> {
    refuse_if_writable_by_others(file)?;
    super::elf::check_complete(bytes).map_err(LoadError::Dlopen)?;
    let copy = private_copy(file, bytes)?;
    let library = dlopen(&copy);
    // The mapping survives the unlink; nothing is left behind if we crash later.
    let _ = std::fs::remove_file(&copy);
    // dlerror names the private copy; name the operator's file instead.
    let library = library.map_err(|e| match e {
        LoadError::Dlopen(text) => {
            LoadError::Dlopen(text.replace(&copy.display().to_string(), &file.display().to_string()))
        }
        other => other,
    })?;

    // SAFETY: the probe's signature is frozen forever as `extern "C" fn() -> u32`.
    let probe = unsafe { library.get::<extern "C" fn() -> u32>(abi::ABI_VERSION_SYMBOL) }
        .map_err(|_| LoadError::NotAPlugin)?;
    let version = probe();
    if version != abi::ABI_VERSION {
        return Err(LoadError::AbiVersion { plugin: version });
    }
    // SAFETY: for this ABI version (checked just above) the symbol has exactly this signature.
    let describe =
        unsafe { library.get::<extern "C" fn() -> *const PluginDescriptor>(abi::DESCRIPTOR_SYMBOL) }
            .map_err(|_| LoadError::Layout)?;
    let descriptor = describe();
    if descriptor.is_null() {
        return Err(LoadError::Layout);
    }
    // SAFETY: non-null and pointing to the plugin's static descriptor. Only the header (whose
    // layout never changes) is read before the layout check passes.
    let (size, fingerprint) = unsafe { ((*descriptor).descriptor_size, (*descriptor).layout_fingerprint) };
    if size as usize != std::mem::size_of::<PluginDescriptor>() || fingerprint != abi::LAYOUT_FINGERPRINT {
        return Err(LoadError::Layout);
    }
    // SAFETY: the layout matches ours, so the whole descriptor can be read as our type; it is
    // a static that lives as long as the library.
    let d = unsafe { &*descriptor };
    if !d.panic_unwind {
        return Err(LoadError::PanicAbort);
    }
    // SAFETY: descriptor strings are 'static strings of the library.
    let text = |s: RStr| unsafe { s.to_string_lossy() }.unwrap_or_default();
    let handler_name = text(d.handler_name);
    let sdk_version = text(d.sdk_version);
    let crate_version = text(d.crate_version);

    let generation = GENERATION.fetch_add(1, Ordering::Relaxed) + 1;
    LIVE.fetch_add(1, Ordering::Relaxed);
    Ok(Arc::new_cyclic(|weak| {
        let services = Box::new(PluginServices::new(file.to_path_buf(), handler_name.clone(), weak.clone()));
        let host_table = Box::new(services::host_table(&services));
        Plugin {
            file: file.to_path_buf(),
            generation,
            hash: content_hash(bytes),
            handler_name,
            sdk_version,
            crate_version,
            descriptor,
            host_table,
            services,
            library,
        }
    }))
}

impl Plugin {
    fn descriptor(&self) -> &PluginDescriptor {
        // SAFETY: checked in `load`; a static of the library, which lives as long as `self`.
        unsafe { &*self.descriptor }
    }

    /// Check 6: constructs a handler instance with `config` (a TOML table), not serving a
    /// route (as `wshd check-plugin` does); see [`Plugin::instantiate_for`].
    pub fn instantiate(self: &Arc<Self>, config: &toml::Table) -> Result<Arc<HandlerInstance>, LoadError> {
        self.instantiate_for("", config)
    }

    /// Check 6 for the handler instance serving `route` (its resource path or an alias):
    /// the route is named for the watchdog once, here, and every call into the instance is
    /// marked with it.
    pub fn instantiate_for(
        self: &Arc<Self>,
        route: &str,
        config: &toml::Table,
    ) -> Result<Arc<HandlerInstance>, LoadError> {
        let route = crate::watchdog::intern(route, &self.file.display().to_string());
        let _inside = crate::watchdog::enter(route);
        let config_text = config.to_string();
        let mut message: Option<String> = None;
        let mut err =
            RErrorOut { ctx: (&mut message as *mut Option<String>).cast(), set: services::set_error };
        let host: *const HostVTable = &*self.host_table;
        // SAFETY: the library's own `init`; the host table lives as long as the library; the
        // config string and error sink outlive the call.
        let instance =
            unsafe { (self.descriptor().init)(host, RStr::from_bytes(config_text.as_bytes()), &mut err) };
        if instance.is_null() {
            return Err(LoadError::Constructor(message.unwrap_or_else(|| "no reason given".into())));
        }
        Ok(Arc::new(HandlerInstance { instance, route, plugin: Arc::clone(self) }))
    }
}
