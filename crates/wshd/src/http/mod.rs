//! The HTTP side: handshake validation, dispatch, static files.

pub(crate) mod handshake;
pub(crate) mod request_view;
pub(crate) mod response;
pub(crate) mod service;
pub(crate) mod static_files;
