//! Small response builders.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

/// A response with a status and body.
pub(crate) fn with_status(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp
}

/// A plain-text response.
pub(crate) fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut resp = with_status(status, Bytes::copy_from_slice(text.as_bytes()));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}
