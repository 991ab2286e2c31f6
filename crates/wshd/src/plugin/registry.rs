//! The route table: request path → handler instance and its settings. Built from a scan of
//! the handler directory plus the `[[route]]`s of the config; swapped whole on reload, so a
//! connection sees one consistent table.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use super::loader::{self, HandlerInstance, Plugin};
use super::scan;
use crate::config::{Config, WsSettings};

/// One routable path.
#[derive(Debug)]
pub struct Route {
    /// The request path.
    pub path: String,
    /// The handler's resource path.
    pub resource: String,
    /// The handler instance serving it.
    pub instance: Arc<HandlerInstance>,
    /// Protocol settings for this route.
    pub settings: WsSettings,
}

/// A loaded handler file.
#[derive(Debug, Clone)]
pub struct LoadedHandler {
    /// Its resource path.
    pub resource: String,
    /// The library.
    pub plugin: Arc<Plugin>,
    /// Its default instance (configured by a `[[route]]` with the same path, if any).
    pub instance: Arc<HandlerInstance>,
}

/// A file that was not loaded, and why.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The file.
    pub file: PathBuf,
    /// The reason.
    pub reason: String,
}

/// A complete routing table.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: HashMap<String, Arc<Route>>,
    /// Loaded handlers by resource.
    pub handlers: BTreeMap<String, LoadedHandler>,
    /// Files refused in the scan that built this table.
    pub refusals: Vec<Refusal>,
}

impl RouteTable {
    /// The route for a request path (query already stripped).
    pub fn get(&self, path: &str) -> Option<&Arc<Route>> {
        self.routes.get(path)
    }

    /// All routes, sorted by path.
    pub fn routes(&self) -> Vec<&Arc<Route>> {
        let mut routes: Vec<_> = self.routes.values().collect();
        routes.sort_by(|a, b| a.path.cmp(&b.path));
        routes
    }

    /// Scans the handler directory, loads every plugin and applies the config's routes.
    /// Refusals are logged (one line per file, with the reason) and recorded.
    pub fn build(config: &Config) -> RouteTable {
        let mut table = RouteTable::default();
        let found = scan::scan(&config.handlers_dir, config.handlers_recursive);
        for problem in &found.problems {
            tracing::error!("handler scan: {problem}");
            if let scan::ScanProblem::Conflict { files, .. } = problem {
                for file in files {
                    table.refusals.push(Refusal { file: file.clone(), reason: problem.to_string() });
                }
            }
        }
        for (resource, file) in &found.handlers {
            let own_config = config
                .routes
                .iter()
                .find(|r| &r.path == resource && &r.handler == resource)
                .and_then(|r| r.config.clone())
                .unwrap_or_default();
            let loaded = loader::load(file).and_then(|plugin| {
                let instance = plugin.instantiate(&own_config)?;
                Ok(LoadedHandler { resource: resource.clone(), plugin, instance })
            });
            match loaded {
                Ok(handler) => {
                    tracing::info!(
                        resource = %resource,
                        file = %file.display(),
                        handler = %handler.plugin.handler_name,
                        plugin = %handler.plugin.crate_version,
                        "handler loaded"
                    );
                    table.handlers.insert(resource.clone(), handler);
                }
                Err(e) => {
                    tracing::error!(file = %file.display(), "handler refused: {e}");
                    table.refusals.push(Refusal { file: file.clone(), reason: e.to_string() });
                }
            }
        }
        for (resource, handler) in &table.handlers {
            let settings = route_settings(config, resource);
            let route = Route {
                path: resource.clone(),
                resource: resource.clone(),
                instance: Arc::clone(&handler.instance),
                settings,
            };
            table.routes.insert(resource.clone(), Arc::new(route));
        }
        for route in &config.routes {
            if route.path == route.handler {
                continue; // settings for a discovered handler, applied above
            }
            let Some(target) = table.handlers.get(&route.handler) else {
                tracing::warn!(
                    "route {} ({}): handler {} is not loaded; the route answers 404 until it is",
                    route.path,
                    route.origin,
                    route.handler
                );
                continue;
            };
            let instance = match &route.config {
                None => Arc::clone(&target.instance),
                Some(own) => match target.plugin.instantiate(own) {
                    Ok(instance) => instance,
                    Err(e) => {
                        tracing::error!(route = %route.path, file = %target.plugin.file.display(), "handler refused: {e}");
                        continue;
                    }
                },
            };
            let settings = route_settings(config, &route.path);
            let entry =
                Route { path: route.path.clone(), resource: route.handler.clone(), instance, settings };
            table.routes.insert(route.path.clone(), Arc::new(entry));
        }
        table
    }
}

/// The settings for a route path: defaults, overridden by its `[[route]]`.
fn route_settings(config: &Config, path: &str) -> WsSettings {
    let mut settings = config.websocket.clone();
    if let Some(route) = config.routes.iter().find(|r| r.path == path)
        && let Some(max) = route.max_message_bytes
    {
        settings.max_message_bytes = max;
    }
    settings
}

/// The current table, replaceable at run time.
#[derive(Debug, Default)]
pub struct Registry {
    current: RwLock<Arc<RouteTable>>,
}

impl Registry {
    /// A registry serving `table`.
    pub fn new(table: RouteTable) -> Registry {
        Registry { current: RwLock::new(Arc::new(table)) }
    }

    /// The table now in force.
    pub fn current(&self) -> Arc<RouteTable> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replaces the table; connections already routed keep what they took.
    pub fn replace(&self, table: RouteTable) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
    }
}
