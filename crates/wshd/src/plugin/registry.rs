//! The route table: request path → handler instance (or built-in handler) and its settings.
//! A table is immutable; reloads build a new one and swap it in whole, so a connection routes
//! against one consistent table and keeps the instance (the handler generation) it was routed
//! to. Built-in routes come from the configuration alone, so rescans rebuild them unchanged.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::loader::{HandlerInstance, Plugin};
use crate::config::{Builtin, Config, RouteHandler, WsSettings};

/// One routable path.
#[derive(Debug)]
pub struct Route {
    /// The request path.
    pub path: String,
    /// What serves it.
    pub target: RouteTarget,
    /// Protocol settings for this route.
    pub settings: WsSettings,
}

/// What serves a route: a plugin's handler instance, or a handler built into the host.
#[derive(Debug)]
pub enum RouteTarget {
    /// A handler plugin.
    Plugin {
        /// The handler's resource path.
        resource: String,
        /// The handler instance serving the route.
        instance: Arc<HandlerInstance>,
    },
    /// A built-in handler: no plugin, no file, never touched by hot reload.
    Builtin(Builtin),
}

impl Route {
    /// The handler's name for logs: the plugin's handler type, or `builtin:<name>`.
    pub fn handler_name(&self) -> &str {
        match &self.target {
            RouteTarget::Plugin { instance, .. } => &instance.plugin.handler_name,
            RouteTarget::Builtin(builtin) => builtin.handler_name(),
        }
    }
}

/// A loaded handler file: one generation of it.
#[derive(Debug, Clone)]
pub struct LoadedHandler {
    /// Its resource path.
    pub resource: String,
    /// The library (its `generation` and `hash` identify this load).
    pub plugin: Arc<Plugin>,
    /// Its default instance (configured by a `[[route]]` with the same path, if any).
    pub instance: Arc<HandlerInstance>,
    /// The configuration the default instance was made with.
    pub instance_config: toml::Table,
}

/// A file that is not served, and why.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The file.
    pub file: PathBuf,
    /// The reason.
    pub reason: String,
}

/// A complete routing table (built from a configuration, which the server's state snapshot
/// keeps beside it).
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: HashMap<String, Arc<Route>>,
    /// Loaded handlers by resource.
    pub handlers: BTreeMap<String, LoadedHandler>,
    /// Files refused by the scan that built this table.
    pub refusals: Vec<Refusal>,
}

impl RouteTable {
    /// A table with no routes.
    pub fn empty() -> RouteTable {
        RouteTable::default()
    }

    /// Whether no path is routed.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

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

    /// Builds the table: a route per loaded handler, plus the config's aliases.
    /// `alias_instance` makes (or reuses) the instance of an alias with its own config.
    pub(crate) fn assemble(
        config: &Config,
        handlers: BTreeMap<String, LoadedHandler>,
        refusals: Vec<Refusal>,
        mut alias_instance: impl FnMut(&str, &LoadedHandler, &toml::Table) -> Option<Arc<HandlerInstance>>,
    ) -> RouteTable {
        let mut routes = HashMap::new();
        for (resource, handler) in &handlers {
            let target =
                RouteTarget::Plugin { resource: resource.clone(), instance: Arc::clone(&handler.instance) };
            let route = Route { path: resource.clone(), target, settings: config.route_settings(resource) };
            routes.insert(resource.clone(), Arc::new(route));
        }
        for route in &config.routes {
            let resource = match &route.handler {
                RouteHandler::Resource(resource) => resource,
                RouteHandler::Builtin(builtin) => {
                    if let Some(shadowed) = handlers.get(&route.path) {
                        tracing::warn!(
                            "route {} ({}) is served by {}; the handler file {} at the same path is not served",
                            route.path,
                            route.origin,
                            builtin.handler_name(),
                            shadowed.plugin.file.display()
                        );
                    }
                    let entry = Route {
                        path: route.path.clone(),
                        target: RouteTarget::Builtin(*builtin),
                        settings: config.route_settings(&route.path),
                    };
                    routes.insert(route.path.clone(), Arc::new(entry));
                    continue;
                }
            };
            if route.path == *resource {
                continue; // settings for a discovered handler, applied above
            }
            let Some(target) = handlers.get(resource) else {
                tracing::warn!(
                    "route {} ({}): handler {} is not loaded; the route answers 404 until it is",
                    route.path,
                    route.origin,
                    resource
                );
                continue;
            };
            let instance = match &route.config {
                None => Arc::clone(&target.instance),
                Some(own) => match alias_instance(&route.path, target, own) {
                    Some(instance) => instance,
                    None => continue,
                },
            };
            let entry = Route {
                path: route.path.clone(),
                target: RouteTarget::Plugin { resource: resource.clone(), instance },
                settings: config.route_settings(&route.path),
            };
            routes.insert(route.path.clone(), Arc::new(entry));
        }
        RouteTable { routes, handlers, refusals }
    }
}
