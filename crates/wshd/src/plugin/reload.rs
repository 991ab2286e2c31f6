//! Hot reload: turning the handler directory's current content into a new route table
//! while keeping everything that did not change.
//!
//! A pass rescans the directory and, per handler file:
//! * unchanged (same size, mtime and inode as the loaded generation) → kept as is;
//! * changed → read once, hashed, and if the content differs loaded as a new generation
//!   (from a private copy of exactly the bytes hashed); a refused build keeps the previous
//!   generation serving, and the same refused file is not retried until it changes again;
//! * being written while we read it → left alone this pass and reported `unsettled`, so the
//!   caller tries again after the debounce;
//! * gone → its route disappears for new connections.
//!
//! Live connections hold the instance they were routed to, so they finish on the code they
//! started with; a generation's library is released when its last user is gone.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::loader::{self, HandlerInstance};
use super::registry::{LoadedHandler, Refusal, RouteTable};
use super::scan::{self, ScanProblem};
use crate::config::{Config, RouteHandler};
use crate::metrics::PluginCounters;

/// What identifies a file's version without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp { len: meta.len(), modified: meta.modified().ok(), inode: meta.ino() })
}

/// Reads a file that is not being written: its stamp is the same before and after the read,
/// and it was last modified at least `quiet` ago (a slow writer pauses between writes, so a
/// stable stamp alone does not prove the copy is complete). `Ok(None)`: look again later.
fn read_settled(path: &Path, quiet: Duration) -> Result<Option<(Vec<u8>, FileStamp)>, String> {
    let before = stamp(path).ok_or_else(|| "the file vanished".to_owned())?;
    let recently_written = before.modified.and_then(|m| m.elapsed().ok()).is_some_and(|age| age < quiet);
    if recently_written {
        return Ok(None);
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read the file: {e}"))?;
    let after = stamp(path).ok_or_else(|| "the file vanished".to_owned())?;
    if before != after || bytes.len() as u64 != after.len {
        return Ok(None);
    }
    Ok(Some((bytes, after)))
}

#[derive(Debug, Clone)]
struct Tracked {
    loaded: LoadedHandler,
    stamp: FileStamp,
}

#[derive(Debug)]
struct AliasInstance {
    generation: u64,
    config: toml::Table,
    instance: Arc<HandlerInstance>,
}

/// The result of one pass.
#[derive(Debug)]
pub struct PassOutcome {
    /// The configuration the table was built from.
    pub config: Arc<Config>,
    /// The table to serve from now on.
    pub table: RouteTable,
    /// A file was changing while read: pass again after the debounce.
    pub unsettled: bool,
}

/// The reload state: what is loaded, and what was refused.
#[derive(Debug)]
pub struct Reloader {
    config: Arc<Config>,
    handlers: BTreeMap<String, Tracked>,
    aliases: HashMap<String, AliasInstance>,
    refused: HashMap<PathBuf, (FileStamp, String)>,
    /// The first pass (start-up) is done.
    started: bool,
    /// Where loads and refusals are counted.
    counters: Arc<PluginCounters>,
}

fn hex(hash: u64) -> String {
    format!("{hash:016x}")
}

impl Reloader {
    /// Nothing loaded yet; the first [`pass`](Reloader::pass) loads everything.
    pub fn new(config: Arc<Config>) -> Reloader {
        Reloader::with_counters(config, Arc::default())
    }

    /// Like [`Reloader::new`], counting loads and refusals into `counters`.
    pub(crate) fn with_counters(config: Arc<Config>, counters: Arc<PluginCounters>) -> Reloader {
        Reloader {
            counters,
            config,
            handlers: BTreeMap::new(),
            aliases: HashMap::new(),
            refused: HashMap::new(),
            started: false,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Switches to a new configuration; the next pass applies it (new handler directory,
    /// routes, per-route configuration).
    pub fn set_config(&mut self, config: Arc<Config>) {
        self.config = config;
    }

    fn own_config(&self, resource: &str) -> toml::Table {
        self.config
            .routes
            .iter()
            .find(|r| r.path == resource && matches!(&r.handler, RouteHandler::Resource(h) if h == resource))
            .and_then(|r| r.config.clone())
            .unwrap_or_default()
    }

    /// Rescans the handler directory and builds the table to serve.
    pub fn pass(&mut self) -> PassOutcome {
        let config = Arc::clone(&self.config);
        let options = scan::ScanOptions {
            recursive: config.handlers_recursive,
            scan_dir: config.handlers_scan_dir.as_deref(),
            allow_outside: config.handlers_allow_outside,
        };
        let found = scan::scan_with(&config.handlers_dir, &options);
        let mut refusals = Vec::new();
        let mut unsettled = false;
        let mut next: BTreeMap<String, Tracked> = BTreeMap::new();

        for problem in &found.problems {
            tracing::error!("handler scan: {problem}");
            if let ScanProblem::Conflict { resource, files } = problem {
                for file in files {
                    refusals.push(Refusal { file: file.clone(), reason: problem.to_string() });
                }
                if let Some(old) = self.handlers.get(resource) {
                    tracing::warn!(
                        resource = %resource,
                        generation = old.loaded.plugin.generation,
                        "keeping the loaded generation until the conflict is resolved"
                    );
                    next.insert(resource.clone(), old.clone());
                }
            }
        }

        for (resource, file) in &found.handlers {
            match self.examine(resource, file) {
                Examined::Keep(tracked) => {
                    next.insert(resource.clone(), tracked);
                }
                Examined::New(tracked) => {
                    next.insert(resource.clone(), tracked);
                }
                Examined::Refused { reason, keep } => {
                    refusals.push(Refusal { file: file.clone(), reason });
                    if let Some(old) = keep {
                        next.insert(resource.clone(), old);
                    }
                }
                Examined::Unsettled(keep) => {
                    unsettled = true;
                    if let Some(old) = keep {
                        next.insert(resource.clone(), old);
                    }
                }
            }
        }

        for (resource, old) in &self.handlers {
            if !next.contains_key(resource) {
                tracing::info!(
                    resource = %resource,
                    file = %old.loaded.plugin.file.display(),
                    generation = old.loaded.plugin.generation,
                    "handler removed: new connections get 404, live ones continue"
                );
            }
        }
        self.refused.retain(|file, _| file.exists());
        self.handlers = next;

        let handlers: BTreeMap<String, LoadedHandler> =
            self.handlers.iter().map(|(r, t)| (r.clone(), t.loaded.clone())).collect();
        let mut aliases = HashMap::new();
        let previous = std::mem::take(&mut self.aliases);
        let table = RouteTable::assemble(&config, handlers, refusals, |path, target, own| {
            let generation = target.plugin.generation;
            if let Some(old) = previous.get(path)
                && old.generation == generation
                && &old.config == own
            {
                let instance = Arc::clone(&old.instance);
                aliases.insert(path.to_owned(), AliasInstance { generation, config: own.clone(), instance });
                return Some(Arc::clone(&aliases[path].instance));
            }
            match target.plugin.instantiate(own) {
                Ok(instance) => {
                    let alias =
                        AliasInstance { generation, config: own.clone(), instance: Arc::clone(&instance) };
                    aliases.insert(path.to_owned(), alias);
                    Some(instance)
                }
                Err(e) => {
                    tracing::error!(route = %path, file = %target.plugin.file.display(), "handler refused: {e}");
                    None
                }
            }
        });
        self.aliases = aliases;
        self.started = true;
        PassOutcome { config, table, unsettled }
    }

    /// Decides what to serve for one handler file.
    fn examine(&mut self, resource: &str, file: &Path) -> Examined {
        let wanted = self.own_config(resource);
        let old = self.handlers.get(resource).filter(|t| t.loaded.plugin.file == file).cloned();
        let current = stamp(file);
        if let Some(old) = &old
            && Some(old.stamp) == current
        {
            if old.loaded.instance_config == wanted {
                return Examined::Keep(old.clone());
            }
            return self.instantiate(
                resource,
                old.loaded.plugin.clone(),
                wanted,
                old.stamp,
                Some(old.clone()),
            );
        }
        if let (Some((stamp, reason)), Some(current)) = (self.refused.get(file), current)
            && *stamp == current
        {
            return Examined::Refused { reason: reason.clone(), keep: old };
        }
        // At start-up, load what is there; afterwards a file must have been quiet for the
        // debounce period (it may still be being copied).
        let quiet = if self.started { self.config.handlers_debounce } else { Duration::ZERO };
        let (bytes, stamp) = match read_settled(file, quiet) {
            Ok(Some(read)) => read,
            Ok(None) => {
                tracing::debug!(file = %file.display(), "file is being written; looking again after the debounce");
                return Examined::Unsettled(old);
            }
            Err(reason) => return self.refuse(file, None, reason, old),
        };
        if let Some(old) = &old
            && old.loaded.plugin.hash == loader::content_hash(&bytes)
            && old.loaded.instance_config == wanted
        {
            // Touched, but the same content: nothing to reload.
            return Examined::Keep(Tracked { loaded: old.loaded.clone(), stamp });
        }
        match loader::load_bytes(file, &bytes) {
            Ok(plugin) => self.instantiate(resource, plugin, wanted, stamp, old),
            Err(e) => self.refuse(file, Some(stamp), e.to_string(), old),
        }
    }

    fn instantiate(
        &mut self,
        resource: &str,
        plugin: Arc<loader::Plugin>,
        config: toml::Table,
        stamp: FileStamp,
        old: Option<Tracked>,
    ) -> Examined {
        match plugin.instantiate(&config) {
            Ok(instance) => {
                self.counters.loaded();
                tracing::info!(
                    resource = %resource,
                    file = %plugin.file.display(),
                    generation = plugin.generation,
                    hash = %hex(plugin.hash),
                    handler = %plugin.handler_name,
                    plugin = %plugin.crate_version,
                    replaces = old.as_ref().map_or(0, |o| o.loaded.plugin.generation),
                    "handler loaded"
                );
                let loaded = LoadedHandler {
                    resource: resource.to_owned(),
                    plugin,
                    instance,
                    instance_config: config,
                };
                Examined::New(Tracked { loaded, stamp })
            }
            Err(e) => {
                let file = plugin.file.clone();
                self.refuse(&file, Some(stamp), e.to_string(), old)
            }
        }
    }

    fn refuse(
        &mut self,
        file: &Path,
        stamp: Option<FileStamp>,
        reason: String,
        keep: Option<Tracked>,
    ) -> Examined {
        self.counters.refused();
        match &keep {
            Some(old) => tracing::error!(
                file = %file.display(),
                serving_generation = old.loaded.plugin.generation,
                "handler refused: {reason}; the previous generation keeps serving"
            ),
            None => tracing::error!(file = %file.display(), "handler refused: {reason}"),
        }
        if let Some(stamp) = stamp {
            self.refused.insert(file.to_path_buf(), (stamp, reason.clone()));
        }
        Examined::Refused { reason, keep }
    }
}

enum Examined {
    Keep(Tracked),
    New(Tracked),
    Refused { reason: String, keep: Option<Tracked> },
    Unsettled(Option<Tracked>),
}
