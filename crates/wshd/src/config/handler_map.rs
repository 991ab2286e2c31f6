//! pywebsocket's handler map file (`-m`): one alias per line.
//!
//! ```text
//! # alias_path   existing_resource_path
//! /              /echo
//! /chat/lobby    /chat/room
//! ```
//!
//! Blank lines and lines starting with `#` are skipped. Each other line must be exactly two
//! paths starting with `/`. An alias whose target handler is not loaded is logged (by the
//! route table) and answers 404 until the handler appears.

use super::{RouteConfig, RouteHandler};

/// Parses a handler map; `file` names it in errors (`file:line: reason`) and in each route's
/// origin.
pub fn parse_handler_map(text: &str, file: &str) -> Result<Vec<RouteConfig>, String> {
    let mut routes: Vec<RouteConfig> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = trimmed.split_whitespace().collect();
        let [alias, existing] = fields[..] else {
            return Err(format!(
                "{file}:{number}: expected `alias_path existing_path`, found {} field(s): `{trimmed}`",
                fields.len()
            ));
        };
        for path in [alias, existing] {
            if !path.starts_with('/') {
                return Err(format!("{file}:{number}: `{path}` must start with `/`"));
            }
        }
        let origin = format!("{file}:{number}");
        if let Some(previous) = routes.iter().find(|r| r.path == alias) {
            return Err(format!("{origin}: alias {alias} is already defined at {}", previous.origin));
        }
        routes.push(RouteConfig {
            path: alias.to_owned(),
            handler: RouteHandler::Resource(existing.to_owned()),
            config: None,
            overrides: Default::default(),
            origin,
        });
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_aliases_and_skips_comments() {
        let routes = parse_handler_map("# comment\n\n/ /echo\n  /a\t/chat/room  \n", "map.txt")
            .unwrap_or_else(|e| panic!("{e}"));
        let pairs: Vec<_> = routes.iter().map(|r| (r.path.as_str(), r.handler.to_string())).collect();
        assert_eq!(pairs, [("/", "/echo".to_owned()), ("/a", "/chat/room".to_owned())]);
        assert_eq!(routes[1].origin, "map.txt:4");
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse_handler_map("/ /echo\n/only-one\n", "m.txt").expect_err("must be refused");
        assert!(e.starts_with("m.txt:2: expected"), "{e}");
        let e = parse_handler_map("/a echo\n", "m.txt").expect_err("must be refused");
        assert_eq!(e, "m.txt:1: `echo` must start with `/`");
        let e = parse_handler_map("/a /b\n/a /c\n", "m.txt").expect_err("must be refused");
        assert_eq!(e, "m.txt:2: alias /a is already defined at m.txt:1");
    }
}
