//! The HTTP side: handshake validation, dispatch, Basic auth, CGI, static files.

pub(crate) mod auth;
pub(crate) mod cgi;
pub(crate) mod first_head;
pub(crate) mod forwarded;
pub(crate) mod handshake;
pub(crate) mod response;
pub(crate) mod service;
pub(crate) mod static_files;
