//! CGI/1.1 (RFC 3875) scripts on the WebSocket port (pywebsocket `-x/--cgi-paths`).
//!
//! A request under a configured URL path prefix (`/cgi-bin`) whose path names an executable
//! regular file of the document root runs that file; path segments after the file are its
//! `PATH_INFO`. A non-executable file is served as a static file instead. A path containing
//! `..` is refused (403) before any filesystem access, and a script whose real path leaves
//! the document root is refused too.
//!
//! The script gets the RFC 3875 environment (and nothing else from the server's environment
//! but `PATH`), the request body on stdin, and runs in its own process group with its
//! directory as working directory. Its stdout is parsed as a CGI response: header lines
//! (`Status:`, `Content-Type:`, `Location:`, any other header), a blank line, the body.
//! Bounded: past `[cgi] timeout_secs` the script's process group is killed and the client
//! gets 504; output over `max_output_bytes` → killed, 502; no usable output → 502.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::response::{plain, with_status};
use super::service::ConnAddrs;
use super::static_files::percent_decode;
use crate::child::Child;
use crate::config::{CgiSettings, Config};

/// How much of a script's stderr is logged.
const STDERR_LOGGED: usize = 8 << 10;

/// A script found for a request.
#[derive(Debug)]
struct Script {
    /// Its real path.
    file: PathBuf,
    /// The URL path of the script (decoded), e.g. `/cgi-bin/hi`.
    script_name: String,
    /// What follows it in the URL path (decoded), e.g. `/extra`; may be empty.
    path_info: String,
}

/// Whether `path` is `prefix` or below it.
fn under(prefix: &str, path: &str) -> bool {
    prefix == "/" || path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Runs the request as a CGI script if it names one; otherwise gives the request back (for
/// the static file server).
pub(crate) async fn serve(
    config: &Config,
    addrs: ConnAddrs,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Request<Incoming>> {
    let (Some(root), false) = (&config.document_root, config.cgi.paths.is_empty()) else {
        return Err(req);
    };
    let raw_path = req.uri().path();
    let Some(decoded) = percent_decode(raw_path) else { return Err(req) };
    let Some(prefix) = config.cgi.paths.iter().find(|p| under(p, &decoded)) else {
        return Err(req);
    };
    if decoded.contains("..") || decoded.contains('\0') || decoded.contains('\\') {
        tracing::info!(peer = %addrs.peer, path = %raw_path, status = 403, "CGI path refused: it contains `..`");
        return Ok(plain(StatusCode::FORBIDDEN, "forbidden path\n"));
    }
    let script = match locate(root, prefix, &decoded).await {
        Located::Script(script) => script,
        Located::NotCgi => return Err(req),
        Located::Outside => {
            tracing::info!(peer = %addrs.peer, path = %raw_path, status = 403, "CGI script refused: its real path is outside the document root");
            return Ok(plain(StatusCode::FORBIDDEN, "forbidden path\n"));
        }
    };
    Ok(run(config, addrs, req, script).await)
}

enum Located {
    Script(Script),
    NotCgi,
    Outside,
}

/// Finds the executable file the path names below `prefix`, walking one segment at a time.
async fn locate(root: &Path, prefix: &str, path: &str) -> Located {
    let mut current = root.join(prefix.trim_start_matches('/'));
    let mut pos = if prefix == "/" { 0 } else { prefix.len() };
    let meta = loop {
        while path[pos..].starts_with('/') {
            pos += 1;
        }
        if pos >= path.len() {
            return Located::NotCgi; // the directory itself
        }
        let end = path[pos..].find('/').map_or(path.len(), |i| pos + i);
        current.push(&path[pos..end]);
        pos = end;
        match tokio::fs::metadata(&current).await {
            Ok(meta) if meta.is_file() => break meta,
            Ok(meta) if meta.is_dir() => continue,
            _ => return Located::NotCgi,
        }
    };
    if meta.permissions().mode() & 0o111 == 0 {
        return Located::NotCgi;
    }
    let (Ok(real_root), Ok(file)) =
        (tokio::fs::canonicalize(root).await, tokio::fs::canonicalize(&current).await)
    else {
        return Located::NotCgi;
    };
    if !file.starts_with(&real_root) {
        return Located::Outside;
    }
    Located::Script(Script { file, script_name: path[..pos].to_owned(), path_info: path[pos..].to_owned() })
}

enum BodyError {
    TooLarge,
    Read(hyper::Error),
}

async fn read_body(mut body: Incoming, limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut data = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyError::Read)?;
        if let Ok(chunk) = frame.into_data() {
            if data.len() + chunk.len() > limit {
                return Err(BodyError::TooLarge);
            }
            data.extend_from_slice(&chunk);
        }
    }
    Ok(data)
}

/// The CGI variable name of a request header: `HTTP_` + upper case, `-` → `_`.
fn http_variable(name: &str) -> String {
    let mut var = String::with_capacity(5 + name.len());
    var.push_str("HTTP_");
    var.extend(name.chars().map(|c| if c == '-' { '_' } else { c.to_ascii_uppercase() }));
    var
}

/// The RFC 3875 environment of a request.
fn environment(
    config: &Config,
    addrs: ConnAddrs,
    parts: &Parts,
    script: &Script,
    body_len: usize,
) -> Vec<(String, OsString)> {
    let mut env: Vec<(String, OsString)> = Vec::new();
    let mut set = |name: &str, value: String| env.push((name.to_owned(), OsString::from(value)));
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<hyper::http::uri::Authority>().ok())
        .map(|a| a.host().trim_start_matches('[').trim_end_matches(']').to_owned())
        .unwrap_or_else(|| addrs.local.ip().to_string());
    set("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()));
    set("GATEWAY_INTERFACE", "CGI/1.1".into());
    set("SERVER_SOFTWARE", format!("wshd/{}", env!("CARGO_PKG_VERSION")));
    set("SERVER_NAME", host);
    set("SERVER_PORT", addrs.local.port().to_string());
    set("SERVER_PROTOCOL", format!("{:?}", parts.version));
    set("REQUEST_METHOD", parts.method.as_str().to_owned());
    set(
        "REQUEST_URI",
        parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_owned(), |pq| pq.to_string()),
    );
    set("SCRIPT_NAME", script.script_name.clone());
    set("SCRIPT_FILENAME", script.file.display().to_string());
    set("PATH_INFO", script.path_info.clone());
    if !script.path_info.is_empty()
        && let Some(root) = &config.document_root
    {
        set("PATH_TRANSLATED", root.join(script.path_info.trim_start_matches('/')).display().to_string());
    }
    set("QUERY_STRING", parts.uri.query().unwrap_or("").to_owned());
    set("REMOTE_ADDR", addrs.peer.ip().to_string());
    set("REMOTE_PORT", addrs.peer.port().to_string());
    if let Some(root) = &config.document_root {
        set("DOCUMENT_ROOT", root.display().to_string());
    }
    if addrs.secure {
        set("HTTPS", "on".into());
    }
    if config.auth.basic {
        set("AUTH_TYPE", "Basic".into());
        set("REMOTE_USER", config.auth.credential.user().to_owned());
    }
    if let Some(kind) = parts.headers.get(header::CONTENT_TYPE) {
        env.push(("CONTENT_TYPE".into(), OsString::from_vec(kind.as_bytes().to_vec())));
    }
    if body_len > 0 {
        env.push(("CONTENT_LENGTH".into(), OsString::from(body_len.to_string())));
    }
    for name in parts.headers.keys() {
        // Credentials stay with the server (RFC 3875 §4.1.18); `Proxy` would become
        // HTTP_PROXY, which many tools take as their proxy ("httpoxy").
        if matches!(name.as_str(), "authorization" | "proxy" | "content-type" | "content-length") {
            continue;
        }
        let mut value = Vec::new();
        for (i, v) in parts.headers.get_all(name).iter().enumerate() {
            if i > 0 {
                value.extend_from_slice(b", ");
            }
            value.extend_from_slice(v.as_bytes());
        }
        env.push((http_variable(name.as_str()), OsString::from_vec(value)));
    }
    env
}

/// Reads at most `limit` bytes; `Err(())` when there is more.
async fn read_limited(mut reader: impl AsyncRead + Unpin, limit: usize) -> Result<Vec<u8>, ()> {
    let mut data = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(data),
            Ok(n) if data.len() + n > limit => return Err(()),
            Ok(n) => data.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads stderr to the end, keeping the first [`STDERR_LOGGED`] bytes.
async fn read_stderr(mut reader: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = STDERR_LOGGED.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
}

/// Kills the script's whole process group (a shell script's children too).
fn kill(pid: Option<u32>, child: &mut Child) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    let _ = child.start_kill();
}

/// A parsed CGI response.
#[derive(Debug)]
struct Output {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

/// Parses a script's output: header lines, a blank line, the body.
fn parse_output(out: &[u8]) -> Result<Output, String> {
    if out.is_empty() {
        return Err("no output".into());
    }
    let mut status = None;
    let mut headers = Vec::new();
    let mut has_location = false;
    let mut pos = 0;
    loop {
        let Some(len) = out[pos..].iter().position(|&b| b == b'\n') else {
            return Err("no blank line after the header lines".into());
        };
        let line = &out[pos..pos + len];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos += len + 1;
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(line);
        let Some((name, value)) = text.split_once(':') else {
            return Err(format!("malformed header line `{}`", text.chars().take(80).collect::<String>()));
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().and_then(|c| c.parse::<u16>().ok());
            let parsed = code.and_then(|c| StatusCode::from_u16(c).ok()).filter(|s| s.as_u16() >= 200);
            status = Some(parsed.ok_or_else(|| format!("invalid Status `{value}`"))?);
            continue;
        }
        let header_name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("invalid header name `{name}`"))?;
        if matches!(
            header_name.as_str(),
            "connection"
                | "keep-alive"
                | "transfer-encoding"
                | "content-length"
                | "upgrade"
                | "te"
                | "trailer"
        ) {
            continue; // the server frames the response itself
        }
        has_location |= header_name == header::LOCATION;
        let header_value =
            HeaderValue::from_str(value).map_err(|_| format!("invalid value for header `{name}`"))?;
        headers.push((header_name, header_value));
    }
    if status.is_none() && headers.is_empty() {
        return Err("no header lines before the blank line".into());
    }
    let status = status.unwrap_or(if has_location { StatusCode::FOUND } else { StatusCode::OK });
    Ok(Output { status, headers, body: Bytes::copy_from_slice(&out[pos..]) })
}

enum Failure {
    TooMuchOutput,
    Wait(std::io::Error),
}

/// What a script that ran to its end left: its output, its stderr (the first
/// [`STDERR_LOGGED`] bytes) and its exit status.
struct Ran {
    out: Vec<u8>,
    err: Vec<u8>,
    exit: ExitStatus,
}

/// Runs a located script for a request: receive the body, start the script, feed it and
/// collect its output within the time limit, answer with its response.
async fn run(
    config: &Config,
    addrs: ConnAddrs,
    req: Request<Incoming>,
    script: Script,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let cgi = &config.cgi;
    let (parts, body) = req.into_parts();
    let shown = script.file.display().to_string();
    let body = match receive_body(cgi, addrs, body).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let env = environment(config, addrs, &parts, &script, body.len());
    let mut child = match spawn(&script, env) {
        Ok(child) => child,
        Err(e) => {
            tracing::error!(script = %shown, "cannot start the CGI script: {e}");
            return plain(StatusCode::BAD_GATEWAY, "CGI script failed\n");
        }
    };
    let pid = child.id();
    let outcome = tokio::time::timeout(cgi.timeout, exchange(&mut child, &body, cgi.max_output_bytes)).await;
    let elapsed = started.elapsed();
    let ran = match outcome {
        Ok(Ok(ran)) => ran,
        Ok(Err(failure)) => return failed(failure, pid, &mut child, addrs, &shown, cgi),
        Err(_) => {
            kill(pid, &mut child);
            tracing::warn!(peer = %addrs.peer, script = %shown, status = 504, "CGI script still running after {:?}; killed", cgi.timeout);
            return plain(StatusCode::GATEWAY_TIMEOUT, "CGI script timed out\n");
        }
    };
    respond(addrs, &parts, &shown, ran, elapsed)
}

/// Receives the request body within the script's time limit; `Err`: the answer instead.
async fn receive_body(
    cgi: &CgiSettings,
    addrs: ConnAddrs,
    body: Incoming,
) -> Result<Vec<u8>, Response<Full<Bytes>>> {
    match tokio::time::timeout(cgi.timeout, read_body(body, cgi.max_input_bytes)).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(BodyError::TooLarge)) => Err(plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request body over {} bytes\n", cgi.max_input_bytes),
        )),
        Ok(Err(BodyError::Read(e))) => {
            tracing::debug!(peer = %addrs.peer, "CGI request body unreadable: {e}");
            Err(plain(StatusCode::BAD_REQUEST, "unreadable request body\n"))
        }
        Err(_) => Err(plain(StatusCode::REQUEST_TIMEOUT, "request body not received in time\n")),
    }
}

/// Starts the script with the CGI environment, in its own process group, in its directory.
fn spawn(script: &Script, env: Vec<(String, OsString)>) -> std::io::Result<Child> {
    let mut command = Command::new(&script.file);
    command
        .env_clear()
        .envs(env)
        .current_dir(script.file.parent().unwrap_or(Path::new("/")))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    Child::spawn(&mut command)
}

/// Feeds the body to the script while reading its output (at most `limit` bytes) and its
/// stderr, then waits for it to exit.
async fn exchange(child: &mut Child, body: &[u8], limit: usize) -> Result<Ran, Failure> {
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let feed = async {
        if let Some(mut stdin) = stdin {
            // A script that does not read its input closes the pipe: not an error.
            let _ = stdin.write_all(body).await;
        }
        Ok::<(), Failure>(())
    };
    let out = async {
        match stdout {
            Some(stdout) => read_limited(stdout, limit).await.map_err(|()| Failure::TooMuchOutput),
            None => Ok(Vec::new()),
        }
    };
    let err = async {
        Ok(match stderr {
            Some(stderr) => read_stderr(stderr).await,
            None => Vec::new(),
        })
    };
    let ((), out, err) = tokio::try_join!(feed, out, err)?;
    let exit = child.wait().await.map_err(Failure::Wait)?;
    Ok(Ran { out, err, exit })
}

/// Kills a script that failed (too much output, no exit status) and answers 502.
fn failed(
    failure: Failure,
    pid: Option<u32>,
    child: &mut Child,
    addrs: ConnAddrs,
    shown: &str,
    cgi: &CgiSettings,
) -> Response<Full<Bytes>> {
    kill(pid, child);
    match failure {
        Failure::TooMuchOutput => {
            let limit = cgi.max_output_bytes;
            tracing::warn!(peer = %addrs.peer, script = %shown, status = 502, "CGI script wrote more than {limit} bytes; killed");
            plain(StatusCode::BAD_GATEWAY, "CGI script output too large\n")
        }
        Failure::Wait(e) => {
            tracing::error!(script = %shown, "CGI script: cannot collect its exit status: {e}");
            plain(StatusCode::BAD_GATEWAY, "CGI script failed\n")
        }
    }
}

/// Answers with what a script that ran wrote (502 when unusable); logs its stderr, a
/// failed exit and the request.
fn respond(
    addrs: ConnAddrs,
    parts: &Parts,
    shown: &str,
    ran: Ran,
    elapsed: Duration,
) -> Response<Full<Bytes>> {
    let Ran { out, err, exit } = ran;
    if !err.is_empty() {
        tracing::warn!(script = %shown, "CGI script stderr: {}", String::from_utf8_lossy(&err).trim_end());
    }
    let parsed = match parse_output(&out) {
        Ok(parsed) => parsed,
        Err(reason) => {
            tracing::error!(peer = %addrs.peer, script = %shown, status = 502, exit = %exit, "CGI script gave no usable response: {reason}");
            return plain(StatusCode::BAD_GATEWAY, "CGI script failed\n");
        }
    };
    if !exit.success() {
        tracing::warn!(script = %shown, exit = %exit, "CGI script exited unsuccessfully; its output is sent anyway");
    }
    tracing::info!(
        peer = %addrs.peer,
        path = %parts.uri.path(),
        script = %shown,
        status = parsed.status.as_u16(),
        duration_ms = elapsed.as_millis() as u64,
        "CGI"
    );
    let mut resp = with_status(parsed.status, parsed.body);
    for (name, value) in parsed.headers {
        resp.headers_mut().append(name, value);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_parsed() {
        let out = parse_output(b"Content-Type: text/plain\n\nHi from hi\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.status, StatusCode::OK);
        assert_eq!(out.headers, [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))]);
        assert_eq!(&out.body[..], b"Hi from hi\n");
        let out = parse_output(b"Status: 404 Nope\r\nX-A: 1\r\nContent-Length: 99\r\n\r\nbody")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.status, StatusCode::NOT_FOUND);
        assert_eq!(out.headers.len(), 1, "content-length is the server's business");
        let out = parse_output(b"Location: /x\n\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.status, StatusCode::FOUND);
    }

    #[test]
    fn bad_output_is_explained() {
        assert_eq!(parse_output(b"").map(|_| ()).expect_err("must be refused"), "no output");
        assert!(
            parse_output(b"Hi\n\n")
                .map(|_| ())
                .expect_err("must be refused")
                .starts_with("malformed header line")
        );
        assert!(
            parse_output(b"Content-Type: text/plain\n")
                .map(|_| ())
                .expect_err("must be refused")
                .contains("no blank line")
        );
        assert!(
            parse_output(b"Status: abc\n\n")
                .map(|_| ())
                .expect_err("must be refused")
                .contains("invalid Status")
        );
        assert!(
            parse_output(b"\nbody").map(|_| ()).expect_err("must be refused").contains("no header lines")
        );
    }

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(under("/cgi-bin", "/cgi-bin/hi"));
        assert!(under("/cgi-bin", "/cgi-bin"));
        assert!(!under("/cgi-bin", "/cgi-binary/hi"));
        assert!(under("/", "/anything"));
        assert_eq!(http_variable("x-forwarded-for"), "HTTP_X_FORWARDED_FOR");
        assert_eq!(percent_decode("/cgi%2Dbin/hi").as_deref(), Some("/cgi-bin/hi"));
        assert_eq!(percent_decode("/bad%zz"), None);
    }
}
