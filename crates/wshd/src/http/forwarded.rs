//! Who the client is when wshd runs behind reverse proxies.
//!
//! Only when the TCP peer is a trusted proxy (`[proxy] trusted`) are forwarding headers
//! believed, and then only the family chosen by `[proxy] client_ip_header`:
//!
//! * `X-Forwarded-For` (with `X-Forwarded-Proto` and `X-Forwarded-Host`): the address list is
//!   walked right to left; trusted hops are skipped and the first untrusted address is the
//!   client (nginx's `real_ip_recursive on`). When every hop is trusted the leftmost is the
//!   client. With `recursive = false` the rightmost entry is the client.
//! * RFC 7239 `Forwarded`: the same walk over the `for=` of each element; the chosen element's
//!   `proto=` and `host=` give the scheme and host the client used. Quoted values
//!   (`for="[2001:db8::1]:4711"`), `unknown` and obfuscated identifiers (`_hidden`) are
//!   understood.
//!
//! A hop that is not an address (`unknown`, `_hidden`, garbage) cannot be checked: the walk
//! stops there and the client is the last address known (the trusted proxy that saw it).
//! A `Forwarded` header that does not parse is ignored as a whole. From untrusted peers the
//! headers are ignored (handlers still see them raw).

use std::net::{IpAddr, SocketAddr};

use hyper::HeaderMap;

use crate::config::{ClientIpHeader, ProxySettings};

/// The client as resolved through trusted proxies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    /// The client's address (port 0 when the proxies did not say).
    pub(crate) client: SocketAddr,
    /// Whether the client's own connection was TLS.
    pub(crate) secure: bool,
    /// The host the client asked for, when a trusted proxy reported it.
    pub(crate) host: Option<String>,
}

/// One hop of a forwarding chain, as a proxy reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hop {
    /// The address the proxy received the request from, if it is one.
    node: Option<SocketAddr>,
    /// The scheme of that connection.
    proto: Option<String>,
    /// The host asked for on that connection.
    host: Option<String>,
}

/// Resolves the client of a request that arrived from `peer` (over TLS when `secure`).
pub(crate) fn resolve(
    settings: &ProxySettings,
    peer: SocketAddr,
    secure: bool,
    headers: &HeaderMap,
) -> Origin {
    let direct = Origin { client: peer, secure, host: None };
    if settings.client_ip_header == ClientIpHeader::None || !settings.is_trusted(peer.ip()) {
        return direct;
    }
    let hops = match settings.client_ip_header {
        ClientIpHeader::XForwardedFor => x_forwarded_hops(headers),
        ClientIpHeader::Forwarded => match forwarded_hops(headers) {
            Ok(hops) => hops,
            Err(e) => {
                tracing::debug!(%peer, "Forwarded header ignored: {e}");
                return direct;
            }
        },
        ClientIpHeader::None => return direct,
    };
    walk(settings, direct, &hops)
}

/// Walks `hops` right to left from the trusted peer; see the module docs.
fn walk(settings: &ProxySettings, direct: Origin, hops: &[Hop]) -> Origin {
    let mut origin = direct;
    for hop in hops.iter().rev() {
        if let Some(proto) = &hop.proto {
            match proto.to_ascii_lowercase().as_str() {
                "https" | "wss" => origin.secure = true,
                "http" | "ws" => origin.secure = false,
                _ => {}
            }
        }
        if let Some(host) = &hop.host {
            origin.host = Some(host.clone());
        }
        let Some(node) = hop.node else {
            // Unknown or obfuscated: nothing to check it against; the client is behind here.
            break;
        };
        origin.client = node;
        if !settings.recursive || !settings.is_trusted(node.ip()) {
            break;
        }
    }
    origin
}

/// Parses a node: `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`, `[2001:db8::1]:4711`; `None`
/// for `unknown`, obfuscated names and anything else. An obfuscated port gives port 0.
fn parse_node(text: &str) -> Option<SocketAddr> {
    let text = text.trim().trim_matches('"');
    if let Some(rest) = text.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let ip: IpAddr = ip.parse().ok()?;
        let port = match after.strip_prefix(':') {
            None if after.is_empty() => 0,
            None => return None,
            Some(port) => port.parse().unwrap_or(0),
        };
        return Some(SocketAddr::new(ip, port));
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 0));
    }
    let (ip, port) = text.rsplit_once(':')?;
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    Some(SocketAddr::new(IpAddr::V4(ip), port.parse().unwrap_or(0)))
}

/// A host as a proxy reported it: `example.com`, `example.com:8443`, `[::1]:80`. Anything with
/// characters a `Host` header cannot hold is dropped.
fn parse_host(text: &str) -> Option<String> {
    let text = text.trim();
    let valid = !text.is_empty()
        && text.len() <= 255
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b));
    valid.then(|| text.to_owned())
}

/// The comma-separated values of every `name` header, in order.
fn list_values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect()
}

/// Hops from `X-Forwarded-For`, with `X-Forwarded-Proto`/`-Host` matched to them: entry by
/// entry when the lists are as long as the address list, otherwise the rightmost value (the
/// one our own proxy set) applies to the client.
fn x_forwarded_hops(headers: &HeaderMap) -> Vec<Hop> {
    let addrs = list_values(headers, "x-forwarded-for");
    let protos = list_values(headers, "x-forwarded-proto");
    let hosts = list_values(headers, "x-forwarded-host");
    let pick = |values: &[&str], i: usize| -> Option<String> {
        if values.len() == addrs.len() {
            values.get(i).map(|v| (*v).to_owned())
        } else if i + 1 == addrs.len() {
            values.last().map(|v| (*v).to_owned())
        } else {
            None
        }
    };
    let mut hops: Vec<Hop> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| Hop {
            node: parse_node(a),
            proto: pick(&protos, i),
            host: pick(&hosts, i).and_then(|h| parse_host(&h)),
        })
        .collect();
    // A proxy that sets only X-Forwarded-Proto/-Host still says something about the client.
    if hops.is_empty() && (!protos.is_empty() || !hosts.is_empty()) {
        // No address: the proxy itself stays the client; only the scheme and host change.
        hops.push(Hop {
            node: None,
            proto: protos.last().map(|v| (*v).to_owned()),
            host: hosts.last().and_then(|h| parse_host(h)),
        });
    }
    hops
}

/// Splits `text` on `sep` outside quoted strings.
fn split_unquoted(text: &str, sep: char) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&text[start..i]);
            start = i + 1;
        }
    }
    if quoted {
        return Err("unterminated quoted string".into());
    }
    parts.push(&text[start..]);
    Ok(parts)
}

/// A token or a quoted string (escapes removed).
fn unquote(value: &str) -> Result<String, String> {
    let value = value.trim();
    let Some(inner) = value.strip_prefix('"') else {
        if value.is_empty() || value.contains(|c: char| c.is_whitespace() || c == '"' || c.is_control()) {
            return Err(format!("invalid value `{value}`"));
        }
        return Ok(value.to_owned());
    };
    let inner = inner.strip_suffix('"').ok_or_else(|| format!("invalid quoted string {value}"))?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next().unwrap_or('\\') } else { c });
    }
    Ok(out)
}

/// Hops from RFC 7239 `Forwarded` headers (all of them, in order).
fn forwarded_hops(headers: &HeaderMap) -> Result<Vec<Hop>, String> {
    let mut hops = Vec::new();
    for value in headers.get_all("forwarded") {
        let value = value.to_str().map_err(|_| "not ASCII".to_owned())?;
        for element in split_unquoted(value, ',')? {
            if element.trim().is_empty() {
                continue;
            }
            let mut hop = Hop { node: None, proto: None, host: None };
            for pair in split_unquoted(element, ';')? {
                if pair.trim().is_empty() {
                    continue;
                }
                let (key, value) =
                    pair.split_once('=').ok_or_else(|| format!("`{}` is not key=value", pair.trim()))?;
                let value = unquote(value)?;
                match key.trim().to_ascii_lowercase().as_str() {
                    "for" => hop.node = parse_node(&value),
                    "proto" => hop.proto = Some(value),
                    "host" => hop.host = parse_host(&value),
                    "by" => {}
                    "" => return Err("empty parameter name".into()),
                    _ => {} // extensions
                }
            }
            hops.push(hop);
        }
    }
    Ok(hops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn settings(header: ClientIpHeader, recursive: bool) -> ProxySettings {
        let trusted = ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
            .iter()
            .map(|t| t.parse().unwrap_or_else(|e| panic!("{t}: {e}")))
            .collect();
        ProxySettings { trusted, client_ip_header: header, recursive }
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn headers(list: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in list {
            let name =
                hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
            map.append(name, HeaderValue::from_str(value).unwrap_or_else(|e| panic!("{e}")));
        }
        map
    }

    /// (peer, tls, headers, expected client, expected secure, expected host)
    type Case<'a> = (&'a str, bool, &'a [(&'a str, &'a str)], &'a str, bool, Option<&'a str>);

    fn check(settings: &ProxySettings, cases: &[Case<'_>]) {
        for (i, (peer, tls, list, client, secure, host)) in cases.iter().enumerate() {
            let got = resolve(settings, addr(peer), *tls, &headers(list));
            let want = Origin { client: addr(client), secure: *secure, host: host.map(str::to_owned) };
            assert_eq!(got, want, "case {i}: peer {peer}, headers {list:?}");
        }
    }

    #[test]
    fn x_forwarded_for() {
        let xff = "x-forwarded-for";
        let cases: &[Case<'_>] = &[
            // Untrusted peer: everything ignored (spoofing).
            (
                "192.0.2.9:5000",
                false,
                &[(xff, "1.2.3.4"), ("x-forwarded-proto", "https")],
                "192.0.2.9:5000",
                false,
                None,
            ),
            // Trusted peer, one hop.
            ("127.0.0.1:5000", false, &[(xff, "203.0.113.7")], "203.0.113.7:0", false, None),
            // Spoofed leftmost entry: the first untrusted from the right wins.
            (
                "127.0.0.1:5000",
                false,
                &[(xff, "6.6.6.6, 203.0.113.7, 10.1.1.1")],
                "203.0.113.7:0",
                false,
                None,
            ),
            // Several headers are one list.
            (
                "127.0.0.1:5000",
                false,
                &[(xff, "6.6.6.6"), (xff, "203.0.113.7, 10.0.0.2")],
                "203.0.113.7:0",
                false,
                None,
            ),
            // All trusted: the leftmost.
            ("127.0.0.1:5000", false, &[(xff, "10.0.0.3, 10.0.0.2")], "10.0.0.3:0", false, None),
            // Ports and IPv6 forms.
            ("127.0.0.1:5000", false, &[(xff, "203.0.113.7:4711")], "203.0.113.7:4711", false, None),
            ("127.0.0.1:5000", false, &[(xff, "2001:db8::1")], "[2001:db8::1]:0", false, None),
            ("127.0.0.1:5000", false, &[(xff, "[2001:db8::1]:4711")], "[2001:db8::1]:4711", false, None),
            ("[::1]:5000", false, &[(xff, "\"[2001:db8::2]\"")], "[2001:db8::2]:0", false, None),
            // Garbage or `unknown`: the client stays the last known address.
            ("127.0.0.1:5000", false, &[(xff, "not-an-ip")], "127.0.0.1:5000", false, None),
            ("127.0.0.1:5000", false, &[(xff, "unknown, 10.0.0.2")], "10.0.0.2:0", false, None),
            // Scheme and host: a single value is our proxy's word.
            (
                "127.0.0.1:5000",
                false,
                &[
                    (xff, "203.0.113.7"),
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "example.com:8443"),
                ],
                "203.0.113.7:0",
                true,
                Some("example.com:8443"),
            ),
            // TLS to us, but the client spoke plain HTTP to the proxy.
            (
                "127.0.0.1:5000",
                true,
                &[(xff, "203.0.113.7"), ("x-forwarded-proto", "http")],
                "203.0.113.7:0",
                false,
                None,
            ),
            // Lists as long as the chain are matched entry by entry.
            (
                "127.0.0.1:5000",
                false,
                &[(xff, "203.0.113.7, 10.0.0.2"), ("x-forwarded-proto", "https, http")],
                "203.0.113.7:0",
                true,
                None,
            ),
            // Proto without addresses still applies; an invalid host is dropped.
            (
                "127.0.0.1:5000",
                false,
                &[("x-forwarded-proto", "https"), ("x-forwarded-host", "a b")],
                "127.0.0.1:5000",
                true,
                None,
            ),
            // IPv4-mapped peer counts as trusted.
            ("[::ffff:127.0.0.1]:5000", false, &[(xff, "203.0.113.7")], "203.0.113.7:0", false, None),
            // The other family is not consulted.
            ("127.0.0.1:5000", false, &[("forwarded", "for=203.0.113.7")], "127.0.0.1:5000", false, None),
        ];
        check(&settings(ClientIpHeader::XForwardedFor, true), cases);
    }

    #[test]
    fn x_forwarded_for_not_recursive() {
        let cases: &[Case<'_>] = &[
            (
                "127.0.0.1:1",
                false,
                &[("x-forwarded-for", "203.0.113.7, 10.0.0.2")],
                "10.0.0.2:0",
                false,
                None,
            ),
            ("127.0.0.1:1", false, &[("x-forwarded-for", "203.0.113.7")], "203.0.113.7:0", false, None),
        ];
        check(&settings(ClientIpHeader::XForwardedFor, false), cases);
    }

    #[test]
    fn forwarded_rfc7239() {
        let fwd = "forwarded";
        let cases: &[Case<'_>] = &[
            ("192.0.2.9:1", false, &[(fwd, "for=1.2.3.4;proto=https")], "192.0.2.9:1", false, None),
            ("127.0.0.1:1", false, &[(fwd, "for=192.0.2.43")], "192.0.2.43:0", false, None),
            (
                "127.0.0.1:1",
                false,
                &[(fwd, "For=\"[2001:db8:cafe::17]:4711\"")],
                "[2001:db8:cafe::17]:4711",
                false,
                None,
            ),
            (
                "127.0.0.1:1",
                false,
                &[(fwd, "for=192.0.2.60;proto=https;by=203.0.113.43;host=\"example.com\"")],
                "192.0.2.60:0",
                true,
                Some("example.com"),
            ),
            // Chain: spoofed first element, the client, then a trusted proxy.
            (
                "127.0.0.1:1",
                false,
                &[
                    (fwd, "for=6.6.6.6;proto=http, for=198.51.100.17;proto=https;host=a.example"),
                    (fwd, "for=10.0.0.2;proto=http"),
                ],
                "198.51.100.17:0",
                true,
                Some("a.example"),
            ),
            // Obfuscated and unknown: the address stays the trusted hop's, the scheme is kept.
            (
                "127.0.0.1:1",
                false,
                &[(fwd, "for=_hidden;proto=https, for=10.0.0.2")],
                "10.0.0.2:0",
                true,
                None,
            ),
            ("127.0.0.1:1", false, &[(fwd, "for=unknown")], "127.0.0.1:1", false, None),
            ("127.0.0.1:1", false, &[(fwd, "for=\"_x:_port\"")], "127.0.0.1:1", false, None),
            ("127.0.0.1:1", false, &[(fwd, "for=\"192.0.2.1:_port\"")], "192.0.2.1:0", false, None),
            // A comma or semicolon inside quotes does not split.
            ("127.0.0.1:1", false, &[(fwd, "for=192.0.2.5;ext=\"a,b;c\"")], "192.0.2.5:0", false, None),
            // Malformed: ignored as a whole.
            ("127.0.0.1:1", false, &[(fwd, "for=192.0.2.5;proto")], "127.0.0.1:1", false, None),
            ("127.0.0.1:1", false, &[(fwd, "for=\"192.0.2.5")], "127.0.0.1:1", false, None),
            ("127.0.0.1:1", false, &[(fwd, "for=192.0.2.5 x")], "127.0.0.1:1", false, None),
            // X-Forwarded-For is not consulted in this mode.
            ("127.0.0.1:1", false, &[("x-forwarded-for", "192.0.2.5")], "127.0.0.1:1", false, None),
        ];
        check(&settings(ClientIpHeader::Forwarded, true), cases);
    }

    #[test]
    fn none_and_untrusted_ignore_everything() {
        let list: &[(&str, &str)] = &[("x-forwarded-for", "192.0.2.5"), ("forwarded", "for=192.0.2.6")];
        check(
            &settings(ClientIpHeader::None, true),
            &[("127.0.0.1:1", true, list, "127.0.0.1:1", true, None)],
        );
        let nobody = ProxySettings::default();
        check(&nobody, &[("127.0.0.1:1", false, list, "127.0.0.1:1", false, None)]);
    }

    #[test]
    fn nodes_parse() {
        assert_eq!(parse_node("192.0.2.1"), Some(addr("192.0.2.1:0")));
        assert_eq!(parse_node("[::1]"), Some(addr("[::1]:0")));
        assert_eq!(parse_node("[::1]x"), None);
        assert_eq!(parse_node("[::1"), None);
        assert_eq!(parse_node("_hidden"), None);
        assert_eq!(parse_node("unknown"), None);
        assert_eq!(parse_node(""), None);
        assert_eq!(parse_node("999.1.1.1"), None);
    }
}
