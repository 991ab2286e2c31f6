//! `/cookie` — mod_pywebsocket's `cookie_wsh.py`: sets or clears cookies in the `101`
//! response, chosen by the whole query string:
//!
//! | request              | extra response headers, in order                           |
//! |----------------------|------------------------------------------------------------|
//! | `/cookie?set`          | `Set-Cookie: foo=bar; Max-Age=86400`                         |
//! | `/cookie?set_httponly` | `Set-Cookie: httpOnlyFoo=bar; Max-Age=86400; httpOnly`       |
//! | `/cookie?clear`        | `Set-Cookie: foo=0; Max-Age=0`, `Set-Cookie: httpOnlyFoo=0; Max-Age=0` |
//! | anything else        | none                                                       |
//!
//! Cookies the client sends are allowed and ignored (a handler could read them with
//! [`Request::cookie`]). The data phase returns at once, so the server closes with 1000.

use wshd_sdk::{Accept, Config, Connection, Error, Handler, Reject, Request};

/// The cookie handler.
pub struct Cookie;

impl Handler for Cookie {
    fn new(_config: &Config) -> Result<Self, Error> {
        Ok(Cookie)
    }

    fn do_handshake(&self, request: &Request<'_>) -> Result<Accept, Reject> {
        let accept = Accept::new();
        Ok(match request.query() {
            Some("set") => accept.header("Set-Cookie", "foo=bar; Max-Age=86400"),
            Some("set_httponly") => accept.header("Set-Cookie", "httpOnlyFoo=bar; Max-Age=86400; httpOnly"),
            // Two headers with the same name, in this order.
            Some("clear") => accept
                .header("Set-Cookie", "foo=0; Max-Age=0")
                .header("Set-Cookie", "httpOnlyFoo=0; Max-Age=0"),
            _ => accept,
        })
    }

    /// Nothing to say: returning closes with 1000.
    async fn transfer_data(&self, _conn: Connection) {}
}

wshd_sdk::export_handler!(Cookie);
