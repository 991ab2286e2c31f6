//! The services table ([`HostVTable`]) a plugin gets at `init`: logging through the host's
//! subscriber, timers and task spawning on the host's runtime (a plugin has no runtime of its
//! own), blocking jobs on the host's bounded pool, and the error sink of its constructor.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::path::PathBuf;
use std::sync::{OnceLock, Weak};

use async_ffi::{FfiFuture, FutureExt};
use wshd_sdk::abi::{
    HostVTable, LOG_DEBUG, LOG_ERROR, LOG_INFO, LOG_WARN, POLL_CLOSED, POLL_READY, RBlockingJob, RStr,
};

use super::{bytes_of, host_fn, text_of};
use crate::plugin::loader::Plugin;

/// What the host knows about a loaded plugin, for its services.
#[derive(Debug)]
pub(crate) struct PluginServices {
    file: PathBuf,
    handler: String,
    plugin: Weak<Plugin>,
    /// The watchdog's route id for tasks spawned outside a handler call (made on first use).
    task_route: OnceLock<u32>,
}

impl PluginServices {
    pub(crate) fn new(file: PathBuf, handler: String, plugin: Weak<Plugin>) -> PluginServices {
        PluginServices { file, handler, plugin, task_route: OnceLock::new() }
    }

    /// The route id naming this plugin's tasks spawned outside a handler call (from its
    /// constructor or its own threads).
    fn task_route(&self) -> u32 {
        *self.task_route.get_or_init(|| {
            crate::watchdog::intern(&format!("(task of {})", self.handler), &self.file.display().to_string())
        })
    }
}

/// The service table for one plugin; `services` must outlive it (the `Plugin` owns both).
pub(crate) fn host_table(services: &PluginServices) -> HostVTable {
    HostVTable {
        size: std::mem::size_of::<HostVTable>() as u32,
        ctx: (services as *const PluginServices).cast(),
        log: host_log,
        log_enabled: host_log_enabled,
        sleep: host_sleep,
        spawn: host_spawn,
        spawn_blocking: host_spawn_blocking,
        rooms: &super::rooms::ROOMS_VTABLE,
    }
}

/// # Safety
/// `ctx` is the `PluginServices` this table was made for, alive while the plugin is.
unsafe fn services<'a>(ctx: *const c_void) -> &'a PluginServices {
    // SAFETY: forwarded contract.
    unsafe { &*ctx.cast::<PluginServices>() }
}

host_fn! {
    fn host_log(ctx: *const c_void, level: u32, message: RStr) {
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
    }
}

host_fn! {
    fn host_log_enabled(_ctx: *const c_void, level: u32) -> bool {
        match level {
            LOG_ERROR => tracing::enabled!(target: "wshd::handler", tracing::Level::ERROR),
            LOG_WARN => tracing::enabled!(target: "wshd::handler", tracing::Level::WARN),
            LOG_INFO => tracing::enabled!(target: "wshd::handler", tracing::Level::INFO),
            LOG_DEBUG => tracing::enabled!(target: "wshd::handler", tracing::Level::DEBUG),
            _ => tracing::enabled!(target: "wshd::handler", tracing::Level::TRACE),
        }
    } else false
}

host_fn! {
    fn host_sleep(_ctx: *const c_void, millis: u64) -> FfiFuture<()> {
        tokio::time::sleep(std::time::Duration::from_millis(millis)).into_ffi()
    } else async {}.into_ffi()
}

host_fn! {
    fn host_spawn(ctx: *const c_void, future: FfiFuture<()>) {
        // SAFETY: our own context.
        let s = unsafe { services(ctx) };
        // The task keeps the library loaded: its code runs until the future is dropped.
        let Some(plugin) = s.plugin.upgrade() else {
            drop(future);
            return;
        };
        // Polls and the drop of the future run plugin code: marked with the route of the
        // handler call that spawned it (or the plugin's own name when spawned outside one).
        let route = crate::watchdog::current_route().unwrap_or_else(|| s.task_route());
        let future = crate::watchdog::Watched::new(route, future);
        tokio::spawn(async move {
            future.await;
            drop(plugin);
        });
    }
}

/// A plugin's blocking job: run once with [`PluginJob::run`], or released unrun on drop.
struct PluginJob(Option<RBlockingJob>);

impl PluginJob {
    fn run(mut self) {
        if let Some(job) = self.0.take() {
            // SAFETY: the plugin's own function and context, called once (`take`); the
            // plugin stays loaded while this runs (the pool holds its keep-alive).
            unsafe { (job.run)(job.data) }
        }
    }
}

impl Drop for PluginJob {
    fn drop(&mut self) {
        if let Some(job) = self.0.take() {
            // SAFETY: as in `run`: the plugin's release function, called once instead.
            unsafe { (job.release)(job.data) }
        }
    }
}

host_fn! {
    fn host_spawn_blocking(ctx: *const c_void, job: RBlockingJob) -> u32 {
        // SAFETY: our own context.
        let s = unsafe { services(ctx) };
        let job = PluginJob(Some(job));
        // The job keeps the library loaded until it has returned.
        let Some(plugin) = s.plugin.upgrade() else {
            return POLL_CLOSED;
        };
        match crate::plugin::blocking::submit(move || job.run(), plugin) {
            Ok(()) => POLL_READY,
            Err(_unrun) => POLL_CLOSED,
        }
    } else POLL_CLOSED
}

host_fn! {
    /// `RErrorOut::set` for constructor errors: `ctx` is a `*mut Option<String>`.
    fn set_error(ctx: *mut c_void, message: RStr) {
        // SAFETY: the loader passes a live `Option<String>` for the duration of `init`; the
        // message is valid for the call.
        unsafe { *ctx.cast::<Option<String>>() = Some(text_of(message)) };
    }
}
