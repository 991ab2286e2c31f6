//! The handshake request in the form the plugin ABI lends it: owned strings here, borrowed
//! [`RRequest`] views made on demand.

use hyper::Request;
use wshd_sdk::abi::{RHeader, RRequest, RStr};

use super::service::ConnAddrs;

/// An owned copy of what a handler may inspect.
#[derive(Debug)]
pub(crate) struct RequestView {
    method: String,
    uri: String,
    path: String,
    resource: String,
    query: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
    peer_addr: String,
    socket_addr: String,
    local_addr: String,
    is_secure: bool,
}

fn s(v: &str) -> RStr {
    RStr::from_bytes(v.as_bytes())
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
        RequestView {
            method: req.method().as_str().to_owned(),
            uri: req
                .uri()
                .path_and_query()
                .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned()),
            path: req.uri().path().to_owned(),
            resource: resource.to_owned(),
            query: req.uri().query().map(str::to_owned),
            headers: req
                .headers()
                .iter()
                .map(|(n, v)| match forwarded_host {
                    Some(host) if n == hyper::header::HOST => {
                        (n.as_str().to_owned(), host.as_bytes().to_vec())
                    }
                    _ => (n.as_str().to_owned(), v.as_bytes().to_vec()),
                })
                .collect(),
            peer_addr: addrs.peer.to_string(),
            socket_addr: addrs.socket.to_string(),
            local_addr: addrs.local.to_string(),
            is_secure: addrs.secure,
        }
    }

    /// Lends the request as an [`RRequest`] for the duration of `f`.
    pub(crate) fn with_raw<R>(&self, f: impl FnOnce(&RRequest) -> R) -> R {
        let headers: Vec<RHeader> =
            self.headers.iter().map(|(n, v)| RHeader { name: s(n), value: RStr::from_bytes(v) }).collect();
        let raw = RRequest {
            size: std::mem::size_of::<RRequest>() as u32,
            is_secure: self.is_secure,
            method: s(&self.method),
            uri: s(&self.uri),
            path: s(&self.path),
            resource: s(&self.resource),
            query: RStr::from_opt(self.query.as_deref()),
            http_version: s("HTTP/1.1"),
            headers: headers.as_ptr(),
            headers_len: headers.len(),
            peer_addr: s(&self.peer_addr),
            socket_addr: s(&self.socket_addr),
            local_addr: s(&self.local_addr),
        };
        f(&raw)
    }
}
