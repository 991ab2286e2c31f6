//! RFC 6455 §4.2 opening-handshake validation, in a fixed order with one named failure each,
//! for both ways a WebSocket starts ([`UpgradeKind`]): an HTTP/1.1 upgrade, or an HTTP/2
//! extended CONNECT (RFC 8441 §4–5), which has no key, no `Upgrade` and no `Connection`
//! and is answered 200 instead of 101. Everything after the fork (version 13, the offers'
//! bounds, the handler's verdict, the extensions) is the same code.

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode, Version};

/// Why a handshake request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandshakeError {
    /// Not `GET`.
    MethodNotGet,
    /// Not HTTP/1.1.
    NotHttp11,
    /// No `Upgrade: websocket` (e.g. a plain GET of a handler path).
    NoUpgradeWebSocket,
    /// `Connection` lacks the `upgrade` token.
    NoConnectionUpgrade,
    /// No `Host` header.
    NoHost,
    /// `Sec-WebSocket-Key` missing or not base64 of 16 bytes.
    BadKey,
    /// `Sec-WebSocket-Version` missing or not a single value.
    BadVersion,
    /// A single version other than 13.
    UnsupportedVersion,
    /// An HTTP/2 request that is not an extended CONNECT with `:protocol websocket`.
    NotExtendedConnect,
    /// `Sec-WebSocket-Protocol` offers more than [`MAX_OFFERED`] subprotocols or
    /// [`MAX_OFFER_BYTES`] bytes.
    TooManyProtocols,
    /// `Sec-WebSocket-Extensions` offers more than [`MAX_OFFERED`] extensions or
    /// [`MAX_OFFER_BYTES`] bytes.
    TooManyExtensions,
}

/// The most subprotocols, or extension offers, a handshake may list. Browsers send a handful;
/// a long list only costs the server time to match (and a handler time to read).
pub(crate) const MAX_OFFERED: usize = 32;

/// The most bytes the `Sec-WebSocket-Protocol` (or `-Extensions`) lines of a handshake may
/// hold together.
pub(crate) const MAX_OFFER_BYTES: usize = 4096;

impl HandshakeError {
    /// Status for the error response.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            HandshakeError::UnsupportedVersion => StatusCode::UPGRADE_REQUIRED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// Human-readable explanation (the response body).
    pub(crate) fn explain(self) -> &'static str {
        match self {
            HandshakeError::MethodNotGet => "a WebSocket handshake must use GET",
            HandshakeError::NotHttp11 => "a WebSocket handshake must use HTTP/1.1",
            HandshakeError::NoUpgradeWebSocket => {
                "this is a WebSocket endpoint: connect with a WebSocket client (Upgrade: websocket)"
            }
            HandshakeError::NoConnectionUpgrade => "the Connection header must contain `upgrade`",
            HandshakeError::NoHost => "the Host header is missing",
            HandshakeError::BadKey => "Sec-WebSocket-Key must be the base64 encoding of 16 bytes",
            HandshakeError::BadVersion => "Sec-WebSocket-Version must be given once, as 13",
            HandshakeError::UnsupportedVersion => "unsupported WebSocket version; this server speaks 13",
            HandshakeError::NotExtendedConnect => {
                "over HTTP/2 a WebSocket starts with an extended CONNECT (:protocol websocket, RFC 8441)"
            }
            HandshakeError::TooManyProtocols => {
                "Sec-WebSocket-Protocol offers too many subprotocols (at most 32, 4096 bytes)"
            }
            HandshakeError::TooManyExtensions => {
                "Sec-WebSocket-Extensions offers too many extensions (at most 32, 4096 bytes)"
            }
        }
    }

    /// Short name for logs and metrics.
    pub(crate) fn name(self) -> &'static str {
        match self {
            HandshakeError::MethodNotGet => "method_not_get",
            HandshakeError::NotHttp11 => "not_http11",
            HandshakeError::NoUpgradeWebSocket => "no_upgrade",
            HandshakeError::NoConnectionUpgrade => "no_connection_upgrade",
            HandshakeError::NoHost => "no_host",
            HandshakeError::BadKey => "bad_key",
            HandshakeError::BadVersion => "bad_version",
            HandshakeError::UnsupportedVersion => "unsupported_version",
            HandshakeError::NotExtendedConnect => "not_extended_connect",
            HandshakeError::TooManyProtocols => "too_many_protocols",
            HandshakeError::TooManyExtensions => "too_many_extensions",
        }
    }
}

/// How a request asks for a WebSocket: where the handshake forks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpgradeKind {
    /// HTTP/1.1 `GET` with `Upgrade: websocket` (RFC 6455 §4): answered 101.
    Http1,
    /// HTTP/2 `CONNECT` with `:protocol websocket` (RFC 8441 §4): answered 200; the stream
    /// carries the frames.
    ExtendedConnect,
}

impl UpgradeKind {
    /// The HTTP version as logs and metrics name it.
    pub(crate) fn http(self) -> &'static str {
        match self {
            UpgradeKind::Http1 => "1.1",
            UpgradeKind::ExtendedConnect => "2",
        }
    }
}

/// The parts of a valid handshake the server needs.
#[derive(Debug, Clone)]
pub(crate) struct ValidHandshake {
    /// How the WebSocket was asked for.
    pub(crate) kind: UpgradeKind,
    /// `Sec-WebSocket-Accept` for a 101 (empty for an extended CONNECT, which has no key).
    pub(crate) accept: String,
    /// Subprotocols offered, in order.
    pub(crate) protocols: Vec<String>,
}

/// How the request asks for a WebSocket, if it does: `Upgrade: websocket`, or an HTTP/2
/// CONNECT whose `:protocol` is `websocket`.
pub(crate) fn upgrade_kind<B>(req: &Request<B>) -> Option<UpgradeKind> {
    if req.version() == Version::HTTP_2 {
        let protocol = req.extensions().get::<hyper::ext::Protocol>();
        let connect = req.method() == Method::CONNECT
            && protocol.is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
        return connect.then_some(UpgradeKind::ExtendedConnect);
    }
    has_token(req.headers(), header::UPGRADE, "websocket").then_some(UpgradeKind::Http1)
}

/// Whether the request asks for a WebSocket at all.
pub(crate) fn wants_websocket<B>(req: &Request<B>) -> bool {
    upgrade_kind(req).is_some()
}

/// Validates the handshake request.
pub(crate) fn validate<B>(req: &Request<B>) -> Result<ValidHandshake, HandshakeError> {
    if req.version() == Version::HTTP_2 {
        return validate_extended_connect(req);
    }
    let headers = req.headers();
    if req.method() != Method::GET {
        return Err(HandshakeError::MethodNotGet);
    }
    if req.version() != Version::HTTP_11 {
        return Err(HandshakeError::NotHttp11);
    }
    if !has_token(headers, header::UPGRADE, "websocket") {
        return Err(HandshakeError::NoUpgradeWebSocket);
    }
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err(HandshakeError::NoConnectionUpgrade);
    }
    if !headers.contains_key(header::HOST) {
        return Err(HandshakeError::NoHost);
    }
    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (Some(key), None) if is_valid_key(key.as_bytes()) => key,
        _ => return Err(HandshakeError::BadKey),
    };
    let protocols = version_and_offers(headers)?;
    Ok(ValidHandshake { kind: UpgradeKind::Http1, accept: accept_key(key.as_bytes()), protocols })
}

/// RFC 8441 §4–5: `CONNECT` with `:protocol websocket` and an authority; no key (HTTP/2
/// forbids `Upgrade` and `Connection`, and the h2 layer refuses them before this).
fn validate_extended_connect<B>(req: &Request<B>) -> Result<ValidHandshake, HandshakeError> {
    if upgrade_kind(req) != Some(UpgradeKind::ExtendedConnect) {
        return Err(HandshakeError::NotExtendedConnect);
    }
    if req.uri().authority().is_none() && !req.headers().contains_key(header::HOST) {
        return Err(HandshakeError::NoHost);
    }
    let protocols = version_and_offers(req.headers())?;
    Ok(ValidHandshake { kind: UpgradeKind::ExtendedConnect, accept: String::new(), protocols })
}

/// The steps both kinds share: `Sec-WebSocket-Version: 13`, the offers within bounds. The
/// subprotocols offered, in order.
fn version_and_offers(headers: &HeaderMap) -> Result<Vec<String>, HandshakeError> {
    let mut versions = headers.get_all(header::SEC_WEBSOCKET_VERSION).iter();
    match (versions.next(), versions.next()) {
        (Some(v), None) if v.as_bytes() == b"13" => {}
        (Some(v), None) if v.to_str().is_ok_and(|s| !s.contains(',') && s.trim().parse::<u32>().is_ok()) => {
            return Err(HandshakeError::UnsupportedVersion);
        }
        _ => return Err(HandshakeError::BadVersion),
    }
    if over_offer_limits(headers, header::SEC_WEBSOCKET_PROTOCOL) {
        return Err(HandshakeError::TooManyProtocols);
    }
    if over_offer_limits(headers, header::SEC_WEBSOCKET_EXTENSIONS) {
        return Err(HandshakeError::TooManyExtensions);
    }
    Ok(tokens(headers, header::SEC_WEBSOCKET_PROTOCOL))
}

/// Whether the `name` lines together hold more than [`MAX_OFFER_BYTES`] bytes or more
/// than [`MAX_OFFERED`] comma-separated items (an extension's parameters are `;`-separated
/// inside its item, so they do not count).
fn over_offer_limits(headers: &HeaderMap, name: header::HeaderName) -> bool {
    let (mut bytes, mut items) = (0usize, 0usize);
    for value in headers.get_all(name) {
        bytes += value.len();
        items += value
            .as_bytes()
            .split(|b| *b == b',')
            .filter(|item| item.iter().any(|b| !b.is_ascii_whitespace()))
            .count();
    }
    bytes > MAX_OFFER_BYTES || items > MAX_OFFERED
}

/// `Sec-WebSocket-Accept` for a key (RFC 6455 §4.2.2): base64(SHA-1(key + GUID)).
pub(crate) fn accept_key(key: &[u8]) -> String {
    use base64::Engine;
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(key);
    sha1.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha1.digest().bytes())
}

/// A key is base64 of exactly 16 bytes: 22 significant characters, the last one of `AQgw`
/// (its low 4 bits unused), then `==`.
fn is_valid_key(key: &[u8]) -> bool {
    let is_b64 = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    key.len() == 24 && key[..21].iter().all(is_b64) && b"AQgw".contains(&key[21]) && &key[22..] == b"=="
}

fn tokens(headers: &HeaderMap, name: header::HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v: &HeaderValue| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    tokens(headers, name).iter().any(|t| t.eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_the_rfc_example() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn an_extended_connect_is_validated_without_a_key() {
        let mut req = Request::builder()
            .method(Method::CONNECT)
            .version(Version::HTTP_2)
            .uri("https://example.com/echo")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-protocol", "chat, superchat")
            .body(())
            .expect("valid in the test");
        assert_eq!(upgrade_kind(&req), None, "no :protocol yet");
        assert_eq!(
            validate(&req).map(|v| v.kind).expect_err("no :protocol"),
            HandshakeError::NotExtendedConnect
        );
        req.extensions_mut().insert(hyper::ext::Protocol::from_static("websocket"));
        assert_eq!(upgrade_kind(&req), Some(UpgradeKind::ExtendedConnect));
        let valid = validate(&req).expect("a valid extended CONNECT");
        assert_eq!(
            (valid.kind, valid.protocols.as_slice()),
            (UpgradeKind::ExtendedConnect, &["chat".to_owned(), "superchat".to_owned()][..])
        );
        req.headers_mut().insert("sec-websocket-version", HeaderValue::from_static("8"));
        assert_eq!(
            validate(&req).map(|v| v.kind).expect_err("version 8"),
            HandshakeError::UnsupportedVersion
        );
    }

    #[test]
    fn keys() {
        assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZR=="), "non-canonical final char");
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25j"), "too short");
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ="), "bad padding");
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub2*jZQ=="), "not base64");
    }
}
