//! The node's Redis client from `[broker]`: plain (`redis://`) or TLS (`rediss://`, rustls
//! with ring, the server's certificate verified against the system's roots or against
//! `tls_ca_file`; a client certificate for `tls-auth-clients yes`). The TLS files are read
//! and checked here, at start-up, so a missing or bad file stops the start with its path.

use redis::{Client, ClientTlsConfig, TlsCertificates};

use crate::config::BrokerSettings;

/// Builds the client of `settings` (no connection is made yet). Errors name the file at
/// fault and never show the password.
pub(super) fn build(settings: &BrokerSettings) -> Result<Client, String> {
    let url = settings.url.as_str();
    let shown = settings.redacted_url();
    if !settings.url.starts_with("rediss://") {
        return Client::open(url).map_err(|e| format!("broker url `{shown}`: {e}"));
    }
    // redis-rs builds its rustls configuration with the process's default provider: make it
    // ring, the provider wshd uses everywhere (an error: one was installed already).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = &settings.tls;
    let root_cert = match &tls.ca_file {
        Some(path) => {
            crate::tls::load_certs("[broker] tls_ca_file", path).map_err(|e| e.to_string())?;
            Some(read(path)?)
        }
        None => None,
    };
    let client_tls = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            crate::tls::load_certs("[broker] tls_cert_file", cert).map_err(|e| e.to_string())?;
            crate::tls::load_key(key).map_err(|e| format!("[broker] tls_key_file: {e}"))?;
            Some(ClientTlsConfig { client_cert: read(cert)?, client_key: read(key)? })
        }
        _ => None,
    };
    Client::build_with_tls(url, TlsCertificates { client_tls, root_cert })
        .map_err(|e| format!("broker url `{shown}` with its TLS files: {e}"))
}

/// The bytes of a file already checked (read again: it may have gone meanwhile).
fn read(path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
}
