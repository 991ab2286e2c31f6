//! The child's environment, like websocketd's (its wiki, "Environment variables"): the CGI
//! variables of the handshake request, `HTTP_*` for each header, `PATH`, and only the
//! server variables the route lists in `env`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use wshd_sdk::Request;

/// `PATH` when the server has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The environment for a child serving `request`.
pub(crate) fn environment(request: &Request<'_>, pass_env: &[String]) -> Vec<(String, OsString)> {
    let mut env: Vec<(String, OsString)> = Vec::new();
    let mut set = |name: &str, value: String| env.push((name.to_owned(), OsString::from(value)));
    set("PATH", server_path());
    set("GATEWAY_INTERFACE", "websocketd-CGI/0.1".to_owned());
    set("SERVER_SOFTWARE", format!("wshd/{}", wshd_sdk::SDK_VERSION));
    set("SERVER_PROTOCOL", request.http_version().to_owned());
    set("SERVER_NAME", server_name(request));
    set("SERVER_PORT", request.local_addr().map(|a| a.port().to_string()).unwrap_or_default());
    set("REQUEST_METHOD", request.method().to_owned());
    set("REQUEST_URI", request.uri().to_owned());
    set("SCRIPT_NAME", request.path().to_owned());
    set("PATH_INFO", String::new());
    set("QUERY_STRING", request.query().unwrap_or("").to_owned());
    if let Some(peer) = request.peer_addr() {
        set("REMOTE_ADDR", peer.ip().to_string());
        set("REMOTE_HOST", peer.ip().to_string());
        set("REMOTE_PORT", peer.port().to_string());
    }
    if request.is_secure() {
        set("HTTPS", "on".to_owned());
    }
    for name in pass_env {
        if let Some(value) = std::env::var_os(name) {
            env.push((name.clone(), value));
        }
    }
    env.extend(header_variables(request));
    env
}

/// The server's `PATH`.
fn server_path() -> String {
    std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_owned())
}

/// The host name the client asked for (the `Host` header without its port), else the local
/// address.
fn server_name(request: &Request<'_>) -> String {
    let from_header = request.host().map(|host| match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or("").to_owned(),
        None => host.split(':').next().unwrap_or("").to_owned(),
    });
    from_header
        .filter(|h| !h.is_empty())
        .or_else(|| request.local_addr().map(|a| a.ip().to_string()))
        .unwrap_or_default()
}

/// `HTTP_*` for each request header (repeated headers joined with `, `), except
/// `Authorization` (credentials stay with the server, RFC 3875 §4.1.18) and `Proxy` (it would
/// become `HTTP_PROXY`, which many tools take as their proxy: "httpoxy").
fn header_variables(request: &Request<'_>) -> Vec<(String, OsString)> {
    let mut vars: Vec<(String, Vec<u8>)> = Vec::new();
    for header in request.headers() {
        if header.name.eq_ignore_ascii_case("authorization") || header.name.eq_ignore_ascii_case("proxy") {
            continue;
        }
        let name = http_variable(header.name);
        match vars.iter_mut().find(|(n, _)| *n == name) {
            Some((_, value)) => {
                value.extend_from_slice(b", ");
                value.extend_from_slice(header.value);
            }
            None => vars.push((name, header.value.to_vec())),
        }
    }
    vars.into_iter().map(|(name, value)| (name, OsString::from_vec(value))).collect()
}

/// The CGI variable of a header: `HTTP_` + upper case, `-` → `_`.
fn http_variable(name: &str) -> String {
    let mut var = String::with_capacity(5 + name.len());
    var.push_str("HTTP_");
    var.extend(name.chars().map(|c| if c == '-' { '_' } else { c.to_ascii_uppercase() }));
    var
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_become_cgi_variables() {
        assert_eq!(http_variable("X-Forwarded-For"), "HTTP_X_FORWARDED_FOR");
        assert_eq!(http_variable("origin"), "HTTP_ORIGIN");
    }
}
