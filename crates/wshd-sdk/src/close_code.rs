//! [`CloseCode`]: the status code of a WebSocket close (RFC 6455 §7.4), shared by the host
//! and handlers so that which codes exist and which may be sent is decided in one place.

use std::fmt;

/// A WebSocket close code (RFC 6455 §7.4, IANA "WebSocket Close Code Number Registry").
///
/// Every value lies in 1000–4999. Codes received from a peer or reported by the host use the
/// whole range, including [`NO_STATUS`](CloseCode::NO_STATUS) and
/// [`ABNORMAL`](CloseCode::ABNORMAL), which no close frame may carry; whether a code may be
/// sent is [`is_sendable`](CloseCode::is_sendable).
///
/// ```
/// use wshd_sdk::CloseCode;
///
/// assert_eq!(CloseCode::NORMAL.as_u16(), 1000);
/// let app = CloseCode::try_from(4001).unwrap();
/// assert!(app.is_private() && app.is_sendable());
/// assert!(!CloseCode::ABNORMAL.is_sendable());
/// assert!(CloseCode::try_from(999).is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: the purpose of the connection was fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigated away).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a kind of data the endpoint cannot accept (e.g. binary for a text-only handler).
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: reported when a close frame carried no code; never sent.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: reported when the connection ended without a close frame; never sent.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: a message's data did not match its type (invalid UTF-8 in a text message).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a message violated the endpoint's policy.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client needed an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server met an unexpected condition (a handler panicked).
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later (the server is overloaded).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: a gateway or proxy got an invalid response from upstream.
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);
    /// 1015: reported when the TLS handshake failed; never sent.
    pub const TLS_HANDSHAKE: CloseCode = CloseCode(1015);

    /// The code for `code` when it lies in 1000–4999 (see [`TryFrom<u16>`]), usable in const
    /// context.
    pub const fn new(code: u16) -> Option<CloseCode> {
        match code {
            1000..=4999 => Some(CloseCode(code)),
            _ => None,
        }
    }

    /// The number.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// Whether a close frame may carry this code, in either direction: 1000–1003, 1007–1014
    /// (the defined codes but 1004–1006 and 1015) and the 3000–4999 ranges. A peer's close
    /// frame with any other code is a protocol error (1002), and the host refuses to send one.
    pub const fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    /// 3000–3999: registered with IANA for libraries, frameworks and applications.
    pub const fn is_registered(self) -> bool {
        matches!(self.0, 3000..=3999)
    }

    /// 4000–4999: private use, for an application's own meanings.
    pub const fn is_private(self) -> bool {
        matches!(self.0, 4000..=4999)
    }

    /// The protocol's name for a code of RFC 6455 or its registry (1000–1015), if it has one.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1000 => "normal closure",
            1001 => "going away",
            1002 => "protocol error",
            1003 => "unsupported data",
            1005 => "no status received",
            1006 => "abnormal closure",
            1007 => "invalid frame payload data",
            1008 => "policy violation",
            1009 => "message too big",
            1010 => "mandatory extension",
            1011 => "internal error",
            1012 => "service restart",
            1013 => "try again later",
            1014 => "bad gateway",
            1015 => "TLS handshake",
            _ => return None,
        })
    }
}

/// Why a number is not a [`CloseCode`]: it lies outside 1000–4999.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidCloseCode(pub u16);

impl fmt::Display for InvalidCloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is not a WebSocket close code (1000-4999)", self.0)
    }
}

impl std::error::Error for InvalidCloseCode {}

impl TryFrom<u16> for CloseCode {
    type Error = InvalidCloseCode;

    /// Any code in 1000–4999; whether it may be sent is [`CloseCode::is_sendable`].
    fn try_from(code: u16) -> Result<CloseCode, InvalidCloseCode> {
        CloseCode::new(code).ok_or(InvalidCloseCode(code))
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.0
    }
}

impl fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{} ({name})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_is_1000_to_4999() {
        assert_eq!(CloseCode::try_from(999), Err(InvalidCloseCode(999)));
        assert_eq!(CloseCode::try_from(5000), Err(InvalidCloseCode(5000)));
        assert_eq!(CloseCode::try_from(0), Err(InvalidCloseCode(0)));
        assert_eq!(CloseCode::try_from(1000).map(u16::from), Ok(1000));
        assert_eq!(CloseCode::try_from(4999).map(u16::from), Ok(4999));
    }

    #[test]
    fn reserved_and_report_only_codes_are_not_sendable() {
        let never_sent = [1004, 1005, 1006, 1015, 1016, 2000, 2999];
        for code in never_sent {
            let code = CloseCode::try_from(code).expect("valid in the test");
            assert!(!code.is_sendable(), "{code} must not be sendable");
        }
        for code in [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 3999, 4000, 4999] {
            assert!(
                CloseCode::try_from(code).expect("valid in the test").is_sendable(),
                "{code} must be sendable"
            );
        }
    }

    #[test]
    fn ranges_and_names() {
        let registered = CloseCode::try_from(3001).expect("valid in the test");
        assert!(registered.is_registered() && !registered.is_private());
        assert_eq!(registered.name(), None);
        assert_eq!(registered.to_string(), "3001");
        assert!(CloseCode::try_from(4000).expect("valid in the test").is_private());
        assert_eq!(CloseCode::GOING_AWAY.to_string(), "1001 (going away)");
        assert_eq!(format!("{:?}", CloseCode::ABNORMAL), "1006 (abnormal closure)");
    }
}
