//! The request head, the handshake validation and the forwarding headers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri, Version};

use crate::config::{ClientIpHeader, DeflateSettings, ProxySettings};
use crate::http::{forwarded as fwd, handshake, service};
use crate::ws::transport;

/// The most header lines parsed (hyper's own default is 100).
const MAX_HEADERS: usize = 100;

/// Parses `data` as an HTTP/1.x request head the way hyper does (httparse), then runs what
/// decides the answer: the head checks (400), the RFC 6455 validation (400/426, or the
/// accept key and subprotocols of a 101) and the permessage-deflate negotiation.
pub fn request_head(data: &[u8]) {
    let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut lines);
    let Ok(httparse::Status::Complete(_)) = parsed.parse(data) else { return };
    let Some(req) = to_request(&parsed) else { return };

    let hosts = req.headers().get_all(header::HOST).iter().count();
    match service::malformed_head(&req) {
        Some(refusal) => {
            assert_eq!(refusal.status(), 400);
            assert!(hosts > 1, "refused a head with {hosts} Host lines");
        }
        None => assert!(hosts <= 1, "{hosts} Host lines let through"),
    }
    match handshake::validate(&req) {
        Ok(valid) => {
            assert!(handshake::wants_websocket(&req));
            assert_eq!(req.method(), Method::GET);
            assert!(hosts >= 1, "a handshake without Host accepted");
            assert_eq!(valid.accept.len(), 28, "accept key {:?}", valid.accept);
            assert!(valid.protocols.len() <= handshake::MAX_OFFERED);
            assert!(valid.protocols.iter().all(|p| !p.is_empty() && !p.contains(',')));
            negotiate(req.headers());
        }
        Err(e) => {
            assert!(matches!(e.status().as_u16(), 400 | 426), "{e:?}");
            assert!(!e.explain().is_empty() && !e.name().is_empty());
        }
    }
}

/// The request hyper would build from the parsed head, or `None` where hyper answers 400
/// itself (bad method, target, header name or value).
fn to_request(parsed: &httparse::Request<'_, '_>) -> Option<Request<()>> {
    let method = Method::from_bytes(parsed.method?.as_bytes()).ok()?;
    let uri: Uri = parsed.path?.parse().ok()?;
    let version = if parsed.version? == 1 { Version::HTTP_11 } else { Version::HTTP_10 };
    let mut req = Request::builder().method(method).uri(uri).version(version).body(()).ok()?;
    for line in parsed.headers.iter() {
        let name = HeaderName::from_bytes(line.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(line.value).ok()?;
        req.headers_mut().append(name, value);
    }
    Some(req)
}

/// Negotiates permessage-deflate on the offers of a valid handshake, with the default
/// policy and with the no-context-takeover one, and checks the agreement.
fn negotiate(headers: &HeaderMap) {
    let offers: Vec<&str> =
        headers.get_all(header::SEC_WEBSOCKET_EXTENSIONS).iter().filter_map(|v| v.to_str().ok()).collect();
    let strict = DeflateSettings {
        enabled: true,
        server_max_window_bits: 10,
        client_max_window_bits: 10,
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        level: 1,
        min_message_bytes: 0,
    };
    let lenient = DeflateSettings {
        server_max_window_bits: 15,
        client_max_window_bits: 15,
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        ..strict.clone()
    };
    for policy in [strict, lenient] {
        let Some(agreement) = transport::negotiate_deflate(&offers, &policy) else { continue };
        assert!(agreement.response.starts_with("permessage-deflate"), "{agreement:?}");
        assert!(HeaderValue::from_str(&agreement.response).is_ok(), "{agreement:?}");
        assert!((9..=policy.server_max_window_bits).contains(&agreement.server_window_bits), "{agreement:?}");
        assert!((8..=15).contains(&agreement.client_window_bits), "{agreement:?}");
        assert!(agreement.server_no_context_takeover >= policy.server_no_context_takeover);
        assert!(agreement.client_no_context_takeover >= policy.client_no_context_takeover);
    }
}

/// Runs the client resolution of `[proxy]` over forwarding headers taken from `data`.
///
/// The first byte picks the header family (bits 0..=1: X-Forwarded-For, Forwarded, none),
/// `recursive` (bit 2), the TCP peer (bits 3..=6: trusted IPv4, trusted IPv6, untrusted)
/// and TLS (bit 7); the rest is lines, each going to the header its first byte picks
/// (`Forwarded`, `X-Forwarded-For`, `-Proto` or `-Host`).
pub fn forwarded(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else { return };
    let family = match flags & 3 {
        0 => ClientIpHeader::XForwardedFor,
        1 => ClientIpHeader::Forwarded,
        _ => ClientIpHeader::None,
    };
    let trusted_nets = ["127.0.0.0/8", "10.0.0.0/8", "::1/128", "2001:db8::/32"];
    let settings = ProxySettings {
        trusted: trusted_nets.iter().filter_map(|n| n.parse().ok()).collect(),
        client_ip_header: family,
        recursive: flags & 0x04 != 0,
    };
    let peer = match (flags >> 3) % 3 {
        0 => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 4000),
        1 => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 4000),
        _ => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)), 4000),
    };
    let secure = flags & 0x80 != 0;
    let headers = forwarding_headers(rest);
    let origin = fwd::resolve(&settings, peer, secure, &headers);
    if family == ClientIpHeader::None || !settings.is_trusted(peer.ip()) {
        assert_eq!(origin, fwd::Origin { client: peer, secure, host: None }, "untrusted headers believed");
    }
    if let Some(host) = &origin.host {
        assert!(!host.is_empty() && host.len() <= 255, "host {host:?}");
        assert!(host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b)), "host {host:?}");
    }
}

/// Header lines from `data`: each line's first byte picks the header, the rest is its value.
fn forwarding_headers(data: &[u8]) -> HeaderMap {
    const NAMES: [&str; 4] = ["forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"];
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some((&pick, value)) = line.split_first() else { continue };
        let Ok(value) = HeaderValue::from_bytes(value) else { continue };
        headers.append(NAMES[usize::from(pick) % NAMES.len()], value);
    }
    headers
}
