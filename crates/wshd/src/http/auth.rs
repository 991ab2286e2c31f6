//! Request admission before routing: HTTP Basic authentication (pywebsocket `--basic-auth`)
//! and the validation of absolute `ws://host:port/...` request targets (pywebsocket `-V`/`-P`).

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::response::{plain, with_status};
use super::service::ConnAddrs;
use crate::config::Config;

/// Compares two byte strings in time that depends only on their lengths, not on where they
/// differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= std::hint::black_box(x ^ y);
    }
    diff == 0
}

/// Why a request was not authenticated (for the log; never includes the secret).
fn failure<B>(req: &Request<B>, expected: &[u8]) -> Option<&'static str> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Some("no Authorization header");
    };
    let Ok(value) = value.to_str() else { return Some("unreadable Authorization header") };
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return Some("malformed Authorization header");
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Some("not Basic authentication");
    }
    let token = token.trim().as_bytes();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(token))
        .map_err(|_| "credentials are not base64");
    match decoded {
        Ok(given) if constant_time_eq(&given, expected) => None,
        Ok(_) => Some("wrong credentials"),
        Err(reason) => Some(reason),
    }
}

/// The refusal of a request: `401` with `WWW-Authenticate` when Basic authentication is on
/// and the request lacks the right credential; `None` admits it.
pub(crate) fn check<B>(config: &Config, addrs: ConnAddrs, req: &Request<B>) -> Option<Response<Full<Bytes>>> {
    let auth = &config.auth;
    if !auth.basic {
        return None;
    }
    let reason = failure(req, auth.credential.as_str().as_bytes())?;
    tracing::info!(peer = %addrs.peer, path = %req.uri().path(), status = 401, "authentication failed: {reason}");
    let mut resp = plain(StatusCode::UNAUTHORIZED, "authentication required\n");
    // The realm was checked at load time (no quotes or control characters).
    if let Ok(value) = HeaderValue::from_str(&format!("Basic realm=\"{}\"", auth.realm)) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    Some(resp)
}

/// The refusal (404) of a request whose target is an absolute `ws://` or `wss://` URI naming
/// a host or port other than the configured validation host and port; `None` admits it.
pub(crate) fn check_target<B>(
    config: &Config,
    addrs: ConnAddrs,
    req: &Request<B>,
) -> Option<Response<Full<Bytes>>> {
    let uri = req.uri();
    let default_port = match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("ws") => 80,
        Some(s) if s.eq_ignore_ascii_case("wss") => 443,
        _ => return None,
    };
    let host = uri.host().unwrap_or("").trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(default_port);
    let host_ok = config
        .validation_host
        .as_deref()
        .is_none_or(|want| want.trim_start_matches('[').trim_end_matches(']').eq_ignore_ascii_case(host));
    let port_ok = config.validation_port.is_none_or(|want| want == port);
    if host_ok && port_ok {
        return None;
    }
    tracing::info!(peer = %addrs.peer, target = %uri, status = 404, "request refused: its absolute target names another host or port");
    Some(with_status(StatusCode::NOT_FOUND, Bytes::from_static(b"no WebSocket handler for this host\n")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"test:test", b"test:test"));
        assert!(!constant_time_eq(b"test:test", b"test:tesx"));
        assert!(!constant_time_eq(b"test:test", b"test:test1"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn basic_credentials_are_decoded() {
        let req = |value: &str| {
            Request::builder().header(header::AUTHORIZATION, value).body(()).unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(failure(&req("Basic dGVzdDp0ZXN0"), b"test:test"), None);
        assert_eq!(failure(&req("basic  dGVzdDp0ZXN0 "), b"test:test"), None);
        assert_eq!(failure(&req("Basic dGVzdDp0ZXN4"), b"test:test"), Some("wrong credentials"));
        assert_eq!(failure(&req("Bearer x"), b"test:test"), Some("not Basic authentication"));
        assert_eq!(failure(&req("Basic %%%"), b"test:test"), Some("credentials are not base64"));
        let none = Request::builder().body(()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(failure(&none, b"test:test"), Some("no Authorization header"));
    }
}
