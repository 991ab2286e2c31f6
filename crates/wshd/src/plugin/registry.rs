//! The route table: request path → handler instance (or built-in handler) and its settings.
//! A table is immutable; reloads build a new one and swap it in whole, so a connection routes
//! against one consistent table and keeps the instance (the handler generation) it was routed
//! to. Built-in routes come from the configuration alone, so rescans rebuild them unchanged.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::loader::{HandlerInstance, Plugin};
use crate::config::{Builtin, Config, RouteConfig, RouteHandler, WsSettings};

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

    /// Builds the table: a route per loaded handler, plus the configuration's routes (see
    /// [`plan_routes`]). `alias_instance` makes (or reuses) the instance of an alias with its
    /// own configuration; when it cannot, the alias is left out.
    pub(crate) fn assemble(
        config: &Config,
        handlers: BTreeMap<String, LoadedHandler>,
        refusals: Vec<Refusal>,
        mut alias_instance: impl FnMut(&str, &LoadedHandler, &toml::Table) -> Option<Arc<HandlerInstance>>,
    ) -> RouteTable {
        let files: BTreeMap<String, PathBuf> =
            handlers.iter().map(|(resource, h)| (resource.clone(), h.plugin.file.clone())).collect();
        let mut routes = HashMap::new();
        for planned in plan_routes(config, &files) {
            let target = match planned.serve {
                Serve::Builtin(builtin) => RouteTarget::Builtin(builtin),
                Serve::Handler { resource } => match handlers.get(resource) {
                    Some(h) => RouteTarget::Plugin {
                        resource: resource.to_owned(),
                        instance: Arc::clone(&h.instance),
                    },
                    None => continue,
                },
                Serve::OwnInstance { resource, config: own } => {
                    match handlers.get(resource).and_then(|h| alias_instance(planned.path, h, own)) {
                        Some(instance) => RouteTarget::Plugin { resource: resource.to_owned(), instance },
                        None => continue,
                    }
                }
            };
            let route = Route { path: planned.path.to_owned(), target, settings: planned.settings };
            routes.insert(planned.path.to_owned(), Arc::new(route));
        }
        RouteTable { routes, handlers, refusals }
    }
}

/// What a planned route is served by, before handler instances are attached.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Serve<'a> {
    /// A loaded handler's default instance.
    Handler {
        /// The handler's resource path.
        resource: &'a str,
    },
    /// A loaded handler with the route's own configuration: an instance of its own.
    OwnInstance {
        /// The handler's resource path.
        resource: &'a str,
        /// The route's handler configuration.
        config: &'a toml::Table,
    },
    /// A handler built into the host.
    Builtin(Builtin),
}

/// A route of a table to be, with its settings.
#[derive(Debug, Clone)]
pub(crate) struct PlannedRoute<'a> {
    /// The request path.
    pub(crate) path: &'a str,
    /// What serves it.
    pub(crate) serve: Serve<'a>,
    /// Its protocol settings: the defaults with its `[[route]]` overrides.
    pub(crate) settings: WsSettings,
}

/// Plans a route table from the loaded handlers (`loaded`: resource → file) and the
/// configuration: first a route per loaded handler at its own path, then the configuration's
/// routes in file order, each replacing whatever came before at its path. A `[[route]]` at
/// a handler's own path only gives it settings; a built-in route at a loaded handler's path
/// shadows the handler (warned); an alias of a handler that is not loaded is left out
/// (warned: it answers 404 until the handler appears). The warnings are logged as the
/// iterator reaches the route.
pub(crate) fn plan_routes<'a>(
    config: &'a Config,
    loaded: &'a BTreeMap<String, PathBuf>,
) -> impl Iterator<Item = PlannedRoute<'a>> + 'a {
    let own = loaded.keys().map(move |resource| PlannedRoute {
        path: resource,
        serve: Serve::Handler { resource },
        settings: config.route_settings(resource),
    });
    own.chain(config.routes.iter().filter_map(move |route| plan_configured(config, loaded, route)))
}

/// The plan for one `[[route]]` (or handler map alias); `None` when it adds no route.
fn plan_configured<'a>(
    config: &'a Config,
    loaded: &'a BTreeMap<String, PathBuf>,
    route: &'a RouteConfig,
) -> Option<PlannedRoute<'a>> {
    let serve = match &route.handler {
        RouteHandler::Builtin(builtin) => {
            if let Some(shadowed) = loaded.get(&route.path) {
                tracing::warn!(
                    "route {} ({}) is served by {}; the handler file {} at the same path is not served",
                    route.path,
                    route.origin,
                    builtin.handler_name(),
                    shadowed.display()
                );
            }
            Serve::Builtin(*builtin)
        }
        // Settings for a discovered handler, applied to its own route.
        RouteHandler::Resource(resource) if *resource == route.path => return None,
        RouteHandler::Resource(resource) => {
            if !loaded.contains_key(resource) {
                tracing::warn!(
                    "route {} ({}): handler {} is not loaded; the route answers 404 until it is",
                    route.path,
                    route.origin,
                    resource
                );
                return None;
            }
            match &route.config {
                None => Serve::Handler { resource },
                Some(own) => Serve::OwnInstance { resource, config: own },
            }
        }
    };
    Some(PlannedRoute { path: &route.path, serve, settings: config.route_settings(&route.path) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table a plan makes: each path's last entry wins.
    fn effective<'a>(plan: impl Iterator<Item = PlannedRoute<'a>>) -> BTreeMap<&'a str, PlannedRoute<'a>> {
        plan.map(|route| (route.path, route)).collect()
    }

    fn loaded(resources: &[&str]) -> BTreeMap<String, PathBuf> {
        resources.iter().map(|r| ((*r).to_owned(), PathBuf::from(format!("h{r}_wsh.so")))).collect()
    }

    fn config(text: &str) -> Config {
        crate::config::parse_str(text, "r.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn handlers_aliases_and_builtins_make_the_table() {
        let config = config(
            "[[route]]\npath = \"/\"\nhandler = \"/echo\"\n\
             [[route]]\npath = \"/greet\"\nhandler = \"/echo\"\nconfig = { greeting = \"hi\" }\n\
             [[route]]\npath = \"/_echo\"\nbuiltin = \"echo\"\n\
             [[route]]\npath = \"/chat\"\nhandler = \"/chat/room\"\n",
        );
        let files = loaded(&["/echo", "/ver"]);
        let table = effective(plan_routes(&config, &files));
        let paths: Vec<&str> = table.keys().copied().collect();
        assert_eq!(paths, ["/", "/_echo", "/echo", "/greet", "/ver"], "/chat aliases a handler not loaded");
        assert_eq!(table["/"].serve, Serve::Handler { resource: "/echo" });
        assert_eq!(table["/echo"].serve, Serve::Handler { resource: "/echo" });
        assert_eq!(table["/_echo"].serve, Serve::Builtin(Builtin::Echo));
        let Serve::OwnInstance { resource, config: own } = &table["/greet"].serve else {
            panic!("an alias with its own config gets its own instance: {:?}", table["/greet"].serve)
        };
        assert_eq!((*resource, own.get("greeting").and_then(|v| v.as_str())), ("/echo", Some("hi")));
    }

    #[test]
    fn a_builtin_route_shadows_a_handler_and_an_alias_replaces_one() {
        let config = config(
            "[[route]]\npath = \"/echo\"\nbuiltin = \"echo\"\n\
             [[route]]\npath = \"/ver\"\nhandler = \"/other\"\n",
        );
        let files = loaded(&["/echo", "/other", "/ver"]);
        let plan: Vec<PlannedRoute<'_>> = plan_routes(&config, &files).collect();
        let at_echo: Vec<&Serve<'_>> = plan.iter().filter(|r| r.path == "/echo").map(|r| &r.serve).collect();
        assert_eq!(
            at_echo,
            [&Serve::Handler { resource: "/echo" }, &Serve::Builtin(Builtin::Echo)],
            "builtin last"
        );
        let table = effective(plan.into_iter());
        assert_eq!(table["/echo"].serve, Serve::Builtin(Builtin::Echo));
        assert_eq!(table["/ver"].serve, Serve::Handler { resource: "/other" });
    }

    #[test]
    fn per_route_overrides_reach_the_route_settings() {
        let config = config(
            "[websocket]\nmax_message_bytes = 1000\n\
             [[route]]\npath = \"/echo\"\nmax_message_bytes = 10\nping_interval_secs = 0\n\
             [[route]]\npath = \"/small\"\nhandler = \"/echo\"\nmax_connections = 2\ndeflate = false\n\
             [[route]]\npath = \"/_echo\"\nbuiltin = \"echo\"\nidle_timeout_secs = 5\n",
        );
        let files = loaded(&["/echo"]);
        let table = effective(plan_routes(&config, &files));
        let echo = &table["/echo"].settings;
        assert_eq!((echo.max_message_bytes, echo.ping_interval, echo.max_connections), (10, None, None));
        let small = &table["/small"].settings;
        assert_eq!(
            (small.max_message_bytes, small.max_connections, small.deflate.enabled),
            (1000, Some(2), false)
        );
        assert!(small.ping_interval.is_some(), "an alias has its own overrides, not its handler's");
        assert_eq!(table["/_echo"].settings.idle_timeout, Some(std::time::Duration::from_secs(5)));
    }

    #[test]
    fn a_table_without_handlers_serves_the_builtin_routes() {
        let config = config(
            "[[route]]\npath = \"/_echo\"\nbuiltin = \"echo\"\nmax_message_bytes = 64\n\
             [[route]]\npath = \"/\"\nhandler = \"/echo\"\n",
        );
        let refusals = vec![Refusal { file: "h/libbad_wsh.so".into(), reason: "truncated".into() }];
        let table = RouteTable::assemble(&config, BTreeMap::new(), refusals, |_, _, _| None);
        let paths: Vec<&str> = table.routes().iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["/_echo"]);
        let route = table.get("/_echo").unwrap_or_else(|| panic!("no /_echo"));
        assert_eq!((route.handler_name(), route.settings.max_message_bytes), ("builtin:echo", 64));
        assert!(table.get("/").is_none() && !table.is_empty());
        assert_eq!(table.refusals.len(), 1);
        assert!(RouteTable::empty().is_empty());
    }
}
