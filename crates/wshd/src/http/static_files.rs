//! The static document root served on the WebSocket port (pywebsocket `-d`): files,
//! `index.html`, directory listings, `HEAD`. Paths that climb out of the root — `..`,
//! encoded `%2e%2e`, or symlinks pointing outside — are refused.

use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::response::{plain, with_status};

/// Serves `req` from `root`.
pub(crate) async fn serve<B>(root: &Path, req: &Request<B>) -> Response<Full<Bytes>> {
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        let mut resp = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD are served here\n");
        resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let raw_path = req.uri().path();
    let Some(relative) = decode_path(raw_path) else {
        return plain(StatusCode::FORBIDDEN, "forbidden path\n");
    };
    let Ok(root) = tokio::fs::canonicalize(root).await else {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    };
    let Ok(target) = tokio::fs::canonicalize(root.join(&relative)).await else {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    };
    if !target.starts_with(&root) {
        return plain(StatusCode::FORBIDDEN, "forbidden path\n");
    }
    let Ok(meta) = tokio::fs::metadata(&target).await else {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    };
    if meta.is_dir() {
        if !raw_path.ends_with('/') {
            let mut location = format!("{raw_path}/");
            if let Some(q) = req.uri().query() {
                location.push('?');
                location.push_str(q);
            }
            let mut resp = with_status(StatusCode::MOVED_PERMANENTLY, Bytes::new());
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            return resp;
        }
        let index = target.join("index.html");
        if tokio::fs::metadata(&index).await.is_ok_and(|m| m.is_file()) {
            return file_response(&index, head).await;
        }
        return listing(&target, raw_path, head).await;
    }
    file_response(&target, head).await
}

/// Percent-decodes a URL path; `None` when it is malformed or not UTF-8.
pub(crate) fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

/// Percent-decodes the path and returns it relative to the root, or `None` when it is
/// malformed or tries to leave the root.
fn decode_path(raw: &str) -> Option<PathBuf> {
    let text = percent_decode(raw)?;
    if text.contains('\0') || text.contains('\\') {
        return None;
    }
    let mut relative = PathBuf::new();
    for component in Path::new(text.trim_start_matches('/')).components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(relative)
}

async fn file_response(path: &Path, head: bool) -> Response<Full<Bytes>> {
    let Ok(data) = tokio::fs::read(path).await else {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    };
    let len = data.len();
    let mut resp = with_status(StatusCode::OK, if head { Bytes::new() } else { Bytes::from(data) });
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

async fn listing(dir: &Path, raw_path: &str, head: bool) -> Response<Full<Bytes>> {
    let mut names = Vec::new();
    if let Ok(mut entries) = tokio::fs::read_dir(dir).await {
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_dir = entry.file_type().await.is_ok_and(|t| t.is_dir());
            names.push(if is_dir { format!("{name}/") } else { name });
        }
    }
    names.sort();
    let title = escape_html(raw_path);
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Directory listing for {title}</title></head>\n\
         <body><h1>Directory listing for {title}</h1><hr><ul>\n"
    );
    for name in names {
        let escaped = escape_html(&name);
        html.push_str(&format!("<li><a href=\"{escaped}\">{escaped}</a></li>\n"));
    }
    html.push_str("</ul><hr></body></html>\n");
    let len = html.len();
    let mut resp = with_status(StatusCode::OK, if head { Bytes::new() } else { Bytes::from(html) });
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    resp.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Content type by file extension.
fn content_type(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_is_refused() {
        assert_eq!(decode_path("/a/b.html"), Some(PathBuf::from("a/b.html")));
        assert_eq!(decode_path("/"), Some(PathBuf::new()));
        assert_eq!(decode_path("/../etc/passwd"), None);
        assert_eq!(decode_path("/a/%2e%2e/%2e%2e/etc/passwd"), None);
        assert_eq!(decode_path("/a/..%2f..%2fetc"), None);
        assert_eq!(decode_path("/a%5c..%5cb"), None);
        assert_eq!(decode_path("/a%00b"), None);
        assert_eq!(decode_path("/bad%zz"), None);
    }
}
