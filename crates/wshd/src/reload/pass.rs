//! Reload passes: turning the handler directory's current content into a new route table
//! while keeping everything that did not change.
//!
//! A pass rescans the directory and, per handler file (the rules are in [`super::decide`]):
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
//!
//! A pass blocks (directory scan, file reads, `dlopen`, handler `init`): run it on a thread
//! that may block, never on an async runtime's worker.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::decide::{self, Action, DirState, FileStamp, Found, Known, Plan, Refused, Step};
use crate::config::{Config, RouteHandler};
use crate::metrics::PluginCounters;
use crate::plugin::scan::{self, ScanProblem};
use crate::plugin::{self, HandlerInstance, LoadedHandler, Plugin, Refusal, RouteTable};

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
    if decide::recently_written(&before, SystemTime::now(), quiet) {
        return Ok(None);
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read the file: {e}"))?;
    let after = stamp(path).ok_or_else(|| "the file vanished".to_owned())?;
    if !decide::read_was_stable(&before, &after, bytes.len()) {
        return Ok(None);
    }
    Ok(Some((bytes, after)))
}

/// A loaded generation and the stamp of the file it was read from.
#[derive(Debug, Clone)]
struct Tracked {
    loaded: LoadedHandler,
    stamp: FileStamp,
}

impl Tracked {
    /// What the decisions need to know about it.
    fn known(&self) -> Known<'_> {
        Known {
            file: &self.loaded.plugin.file,
            stamp: self.stamp,
            hash: self.loaded.plugin.hash,
            config: &self.loaded.instance_config,
        }
    }
}

/// The instance of an alias with its own configuration, reused while neither changes.
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

/// What a scan of the handler directory found.
struct Observed {
    /// The directory, for the decisions.
    dir: DirState,
    /// Conflicts and unreadable directories, to report.
    problems: Vec<ScanProblem>,
}

/// What one handler file ends up as in a pass.
enum Examined {
    Keep(Tracked),
    New(Tracked),
    Refused { reason: String, keep: Option<Tracked> },
    Unsettled(Option<Tracked>),
}

/// The reload state: what is loaded, and what was refused.
#[derive(Debug)]
pub struct Reloader {
    config: Arc<Config>,
    handlers: BTreeMap<String, Tracked>,
    aliases: HashMap<String, AliasInstance>,
    refused: HashMap<PathBuf, Refused>,
    /// The first pass (start-up) is done.
    started: bool,
    /// The handler directory could not be read at the last pass (logged once per run).
    dir_unreadable: bool,
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
            dir_unreadable: false,
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

    /// Rescans the handler directory and builds the table to serve. Blocks (see the module
    /// documentation).
    pub fn pass(&mut self) -> PassOutcome {
        let config = Arc::clone(&self.config);
        let observed = self.observe();
        if let Some(kept) = self.keep_while_unreadable(&config, &observed) {
            return kept;
        }
        let known: BTreeMap<String, Known<'_>> =
            self.handlers.iter().map(|(r, t)| (r.clone(), t.known())).collect();
        let plan = decide::plan(&known, &observed.dir, &self.refused);
        let mut next = BTreeMap::new();
        let mut refusals = self.report_problems(&observed.problems, &plan, &mut next);
        let mut unsettled = false;
        for (step, found) in plan.steps.iter().zip(&observed.dir.handlers) {
            let examined = self.carry_out(step, found);
            unsettled |= settle(step, examined, &mut next, &mut refusals);
        }
        self.replace_handlers(next);
        let table = self.build_table(&config, refusals);
        self.started = true;
        PassOutcome { config, table, unsettled }
    }

    /// When the handler directory itself cannot be read (out of descriptors, a permission
    /// changed, a mount gone), the scan says nothing about the handlers: the loaded ones keep
    /// serving and the pass is retried, instead of reading "no files" as "every handler
    /// removed". Logged once per run. `None`: the directory was read.
    fn keep_while_unreadable(&mut self, config: &Arc<Config>, observed: &Observed) -> Option<PassOutcome> {
        let unreadable = observed
            .problems
            .iter()
            .find(|p| matches!(p, ScanProblem::Unreadable { dir, .. } if *dir == config.handlers_dir));
        let Some(problem) = unreadable.filter(|_| self.started) else {
            if self.dir_unreadable {
                tracing::info!("the handler directory can be read again");
                self.dir_unreadable = false;
            }
            return None;
        };
        if !self.dir_unreadable {
            tracing::error!(
                "handler scan: {problem}; the {} loaded handler(s) keep serving, retrying",
                self.handlers.len()
            );
            self.dir_unreadable = true;
        }
        let table = self.build_table(config, Vec::new());
        Some(PassOutcome { config: Arc::clone(config), table, unsettled: true })
    }

    /// The configuration the `[[route]]` of a discovered handler's own path gives it.
    fn own_config(&self, resource: &str) -> toml::Table {
        self.config
            .routes
            .iter()
            .find(|r| r.path == resource && matches!(&r.handler, RouteHandler::Resource(h) if h == resource))
            .and_then(|r| r.config.clone())
            .unwrap_or_default()
    }

    /// Step 1: scans the handler directory and stamps every handler file.
    fn observe(&self) -> Observed {
        let config = &self.config;
        let options = scan::ScanOptions {
            recursive: config.handlers_recursive,
            scan_dir: config.handlers_scan_dir.as_deref(),
            allow_outside: config.handlers_allow_outside,
        };
        let found = scan::scan_with(&config.handlers_dir, &options);
        let handlers = found
            .handlers
            .into_iter()
            .map(|(resource, file)| Found {
                stamp: stamp(&file),
                wanted: self.own_config(&resource),
                resource,
                file,
            })
            .collect();
        let conflicts = found
            .problems
            .iter()
            .filter_map(|p| match p {
                ScanProblem::Conflict { resource, .. } => Some(resource.clone()),
                ScanProblem::Unreadable { .. } => None,
            })
            .collect();
        Observed { dir: DirState { handlers, conflicts }, problems: found.problems }
    }

    /// Step 2: logs the scan's problems; the files of a conflict are refused, and the
    /// conflicted resource's loaded generation (if any) keeps serving.
    fn report_problems(
        &self,
        problems: &[ScanProblem],
        plan: &Plan,
        next: &mut BTreeMap<String, Tracked>,
    ) -> Vec<Refusal> {
        let mut refusals = Vec::new();
        for problem in problems {
            tracing::error!("handler scan: {problem}");
            let ScanProblem::Conflict { resource, files } = problem else { continue };
            for file in files {
                refusals.push(Refusal { file: file.clone(), reason: problem.to_string() });
            }
            if plan.kept_in_conflict.contains(resource)
                && let Some(old) = self.handlers.get(resource)
            {
                tracing::warn!(
                    resource = %resource,
                    generation = old.loaded.plugin.generation,
                    "keeping the loaded generation until the conflict is resolved"
                );
                next.insert(resource.clone(), old.clone());
            }
        }
        refusals
    }

    /// Step 3: does what the plan says for one handler file.
    fn carry_out(&mut self, step: &Step, found: &Found) -> Examined {
        let old = self.handlers.get(&step.resource).filter(|t| t.loaded.plugin.file == step.file).cloned();
        match (&step.action, old) {
            (Action::Keep, Some(old)) => Examined::Keep(old),
            (Action::Reconfigure, Some(old)) => {
                let plugin = Arc::clone(&old.loaded.plugin);
                self.instantiate(&step.resource, plugin, found.wanted.clone(), old.stamp, Some(old))
            }
            (Action::StillRefused(reason), old) => Examined::Refused { reason: reason.clone(), keep: old },
            // Keep and Reconfigure always come with the old generation; without one, read.
            (Action::Read | Action::Keep | Action::Reconfigure, old) => self.read_and_load(found, old),
        }
    }

    /// Reads a new or changed file once it is settled and loads it, unless it was only
    /// touched.
    fn read_and_load(&mut self, found: &Found, old: Option<Tracked>) -> Examined {
        let file = &found.file;
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
            && decide::only_touched(&old.known(), plugin::content_hash(&bytes), &found.wanted)
        {
            // Touched, but the same content: nothing to reload.
            return Examined::Keep(Tracked { loaded: old.loaded.clone(), stamp });
        }
        match plugin::load_bytes(file, &bytes) {
            Ok(plugin) => self.instantiate(&found.resource, plugin, found.wanted.clone(), stamp, old),
            Err(e) => self.refuse(file, Some(stamp), e.to_string(), old),
        }
    }

    fn instantiate(
        &mut self,
        resource: &str,
        plugin: Arc<Plugin>,
        config: toml::Table,
        stamp: FileStamp,
        old: Option<Tracked>,
    ) -> Examined {
        match plugin.instantiate_for(resource, &config) {
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
            self.refused.insert(file.to_path_buf(), Refused { stamp, reason: reason.clone() });
        }
        Examined::Refused { reason, keep }
    }

    /// Step 4: serves `next` from now on; logs what is no longer served and forgets the
    /// refusals of files that are gone.
    fn replace_handlers(&mut self, next: BTreeMap<String, Tracked>) {
        for resource in decide::removed(&self.handlers, &next) {
            if let Some(old) = self.handlers.get(resource) {
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
    }

    /// Step 5: the route table of the loaded handlers and the configured routes; an alias
    /// with its own configuration keeps its instance while its generation and configuration
    /// stay the same.
    fn build_table(&mut self, config: &Config, refusals: Vec<Refusal>) -> RouteTable {
        let handlers: BTreeMap<String, LoadedHandler> =
            self.handlers.iter().map(|(r, t)| (r.clone(), t.loaded.clone())).collect();
        let previous = std::mem::take(&mut self.aliases);
        let aliases = &mut self.aliases;
        RouteTable::assemble(config, handlers, refusals, |path, target, own| {
            let generation = target.plugin.generation;
            let instance = match previous.get(path) {
                Some(old) if old.generation == generation && &old.config == own => Arc::clone(&old.instance),
                _ => match target.plugin.instantiate_for(path, own) {
                    Ok(instance) => instance,
                    Err(e) => {
                        tracing::error!(route = %path, file = %target.plugin.file.display(), "handler refused: {e}");
                        return None;
                    }
                },
            };
            let alias = AliasInstance { generation, config: own.clone(), instance: Arc::clone(&instance) };
            aliases.insert(path.to_owned(), alias);
            Some(instance)
        })
    }
}

/// Puts what a handler file ended up as into the next set of handlers and the refusals;
/// `true` when the file was still being written.
fn settle(
    step: &Step,
    examined: Examined,
    next: &mut BTreeMap<String, Tracked>,
    refusals: &mut Vec<Refusal>,
) -> bool {
    let (keep, unsettled) = match examined {
        Examined::Keep(tracked) | Examined::New(tracked) => (Some(tracked), false),
        Examined::Refused { reason, keep } => {
            refusals.push(Refusal { file: step.file.clone(), reason });
            (keep, false)
        }
        Examined::Unsettled(keep) => (keep, true),
    };
    if let Some(tracked) = keep {
        next.insert(step.resource.clone(), tracked);
    }
    unsettled
}
