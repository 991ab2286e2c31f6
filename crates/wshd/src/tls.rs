//! TLS with rustls (ring provider): loading the certificate, key and client CA named by
//! `[tls]` / the TLS flags into a server configuration. Every error names the file and why it
//! is unusable, so a wrong path or a bad PEM stops the server at start-up (and `check-config`)
//! with a message a person can act on.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::config::{ClientAuth, TlsSettings};

/// Why TLS could not be set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError(pub String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// The crypto provider wshd uses everywhere (ring), independent of any process default.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(what: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError(format!("TLS {what} {}: cannot read: {e}", path.display())))
}

/// Reads every certificate of a PEM file (at least one).
pub fn load_certs(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("TLS {what} {}: bad PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "TLS {what} {}: no certificate found (expected a PEM \"BEGIN CERTIFICATE\" block)",
            path.display()
        )));
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read("private key", path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        let reason = match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no private key found (expected a PEM \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" \
                 or \"BEGIN EC PRIVATE KEY\" block)"
                    .to_owned()
            }
            other => format!("bad PEM: {other}"),
        };
        TlsError(format!("TLS private key {}: {reason}", path.display()))
    })
}

/// Builds the server configuration (ALPN `http/1.1`) from the TLS settings.
pub fn server_config(settings: &TlsSettings) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (Some(cert_path), Some(key_path)) = (&settings.cert, &settings.key) else {
        return Err(TlsError("TLS needs both a certificate and a private key".into()));
    };
    let certs = load_certs("certificate", cert_path)?;
    let key = load_key(key_path)?;
    let provider = provider();
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS: {e}")))?;
    let builder = match settings.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        mode => {
            let Some(ca_path) = &settings.client_ca else {
                return Err(TlsError("TLS client authentication needs a client CA file".into()));
            };
            let mut roots = RootCertStore::empty();
            for cert in load_certs("client CA", ca_path)? {
                roots.add(cert).map_err(|e| {
                    TlsError(format!("TLS client CA {}: unusable certificate: {e}", ca_path.display()))
                })?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
            let verifier =
                if mode == ClientAuth::Optional { verifier.allow_unauthenticated() } else { verifier };
            let verifier = verifier
                .build()
                .map_err(|e| TlsError(format!("TLS client CA {}: {e}", ca_path.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        TlsError(format!(
            "TLS certificate {} with private key {}: {e}",
            cert_path.display(),
            key_path.display()
        ))
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The ALPN name of HTTP/2 over TLS (RFC 9113 §3.2).
pub const ALPN_H2: &[u8] = b"h2";

/// The acceptor for the TLS settings (ALPN `http/1.1` only).
pub fn acceptor(settings: &TlsSettings) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    acceptor_with(settings, false)
}

/// The acceptor for the TLS settings; with `http2`, ALPN offers `h2` before `http/1.1`.
pub fn acceptor_with(settings: &TlsSettings, http2: bool) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let config = server_config(settings)?;
    if !http2 {
        return Ok(tokio_rustls::TlsAcceptor::from(config));
    }
    let mut config = Arc::unwrap_or_clone(config);
    config.alpn_protocols = vec![ALPN_H2.to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
