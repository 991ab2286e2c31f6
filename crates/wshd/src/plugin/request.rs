//! [`RequestView`]: the handshake request as the plugin ABI lends it. The view keeps what a
//! handler may inspect (the method, URI and headers share hyper's buffers; the addresses are
//! formatted once) and the [`RRequest`] header array pointing into it, built once and lent to
//! both hooks.

use hyper::header::{HOST, HeaderMap, HeaderValue};
use hyper::{Method, Request, Uri, Version};
use wshd_sdk::abi::{RHeader, RRequest, RStr};

use crate::addrs::ConnAddrs;

/// An owned copy of what a handler may inspect.
#[derive(Debug)]
pub(crate) struct RequestView {
    method: Method,
    uri: Uri,
    resource: String,
    http_version: &'static str,
    /// Owns the header bytes `raw_headers` points into; never changed after it is built.
    _headers: HeaderMap,
    peer_addr: String,
    socket_addr: String,
    local_addr: String,
    is_secure: bool,
    /// `headers` in ABI form. The pointers stay valid while `headers` lives unchanged: they
    /// point into its heap buffers (or static names), which moving the view does not move.
    raw_headers: Vec<RHeader>,
}

fn s(v: &str) -> RStr {
    RStr::from_bytes(v.as_bytes())
}

fn version_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

impl RequestView {
    /// `resource`: the handler's resource path; `forwarded_host`: the host a trusted proxy
    /// says the client asked for; it replaces the `Host` header the handler sees.
    pub(crate) fn new<B>(
        req: &Request<B>,
        resource: &str,
        addrs: ConnAddrs,
        forwarded_host: Option<&str>,
    ) -> RequestView {
        // Cloning a header map shares its buffers (reference counts), copying no bytes.
        let mut headers = req.headers().clone();
        if let Some(value) = forwarded_host.and_then(|host| HeaderValue::from_str(host).ok()) {
            headers.insert(HOST, value);
        }
        let raw_headers = headers
            .iter()
            .map(|(n, v)| RHeader { name: s(n.as_str()), value: RStr::from_bytes(v.as_bytes()) })
            .collect();
        RequestView {
            method: req.method().clone(),
            uri: req.uri().clone(),
            resource: resource.to_owned(),
            http_version: version_name(req.version()),
            _headers: headers,
            peer_addr: addrs.peer.to_string(),
            socket_addr: addrs.socket.to_string(),
            local_addr: addrs.local.to_string(),
            is_secure: addrs.secure,
            raw_headers,
        }
    }

    /// The request as an [`RRequest`], valid while `self` is borrowed.
    pub(crate) fn raw(&self) -> RRequest {
        let uri = self.uri.path_and_query().map_or_else(|| self.uri.path(), |pq| pq.as_str());
        RRequest {
            size: std::mem::size_of::<RRequest>() as u32,
            is_secure: self.is_secure,
            method: s(self.method.as_str()),
            uri: s(uri),
            path: s(self.uri.path()),
            resource: s(&self.resource),
            query: RStr::from_opt(self.uri.query()),
            http_version: s(self.http_version),
            headers: self.raw_headers.as_ptr(),
            headers_len: self.raw_headers.len(),
            peer_addr: s(&self.peer_addr),
            socket_addr: s(&self.socket_addr),
            local_addr: s(&self.local_addr),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> ConnAddrs {
        let a = "127.0.0.1:40000".parse().expect("valid in the test");
        ConnAddrs {
            peer: "10.0.0.7:5555".parse().expect("valid in the test"),
            socket: a,
            local: "127.0.0.1:9998".parse().expect("valid in the test"),
            secure: true,
        }
    }

    /// Reads an `RStr` made from this view (valid while the view lives).
    fn text(s: RStr) -> Option<&'static str> {
        #[allow(unsafe_code)]
        // SAFETY: the test reads strings of a view that outlives every use below.
        let bytes = unsafe { s.as_bytes() }?;
        std::str::from_utf8(bytes).ok()
    }

    #[test]
    fn the_raw_request_points_into_the_view_after_it_moved() {
        let req = Request::get("/echo?x=1")
            .header("host", "internal:9998")
            .header("x-a", "b")
            .body(())
            .expect("valid in the test");
        let view = RequestView::new(&req, "/echo", addrs(), Some("example.com"));
        let moved = Box::new(view);
        let raw = moved.raw();
        assert_eq!(text(raw.uri), Some("/echo?x=1"));
        assert_eq!(text(raw.path), Some("/echo"));
        assert_eq!(text(raw.query), Some("x=1"));
        assert_eq!(text(raw.method), Some("GET"));
        assert_eq!(text(raw.http_version), Some("HTTP/1.1"));
        assert_eq!(text(raw.peer_addr), Some("10.0.0.7:5555"));
        assert!(raw.is_secure);
        #[allow(unsafe_code)]
        // SAFETY: `headers_len` headers made from the live view.
        let headers = unsafe { std::slice::from_raw_parts(raw.headers, raw.headers_len) };
        let pairs: Vec<_> = headers.iter().map(|h| (text(h.name), text(h.value))).collect();
        assert_eq!(pairs, [(Some("host"), Some("example.com")), (Some("x-a"), Some("b"))]);
    }

    #[test]
    fn no_query_is_absent_not_empty() {
        let req = Request::get("/echo").body(()).expect("valid in the test");
        let raw_view = RequestView::new(&req, "/echo", addrs(), None);
        assert!(raw_view.raw().query.is_none());
    }
}
