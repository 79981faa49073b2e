//! The TLS configuration of `--tls-cert` and `--tls-key`: rustls with its default provider
//! (aws-lc-rs).
//! actix-web adds ALPN (`h2`, then `http/1.1`) when it binds, so browsers get HTTP/2 and
//! websocket upgrades stay on HTTP/1.1 connections.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// Reads the PEM certificate chain and private key, and builds the server's TLS settings.
pub fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("tlsCert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("tlsCert {}: no certificate in it", cert.display()));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("tlsKey {}: {e}", key.display()))?;
    ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| format!("tlsCert and tlsKey: {e}"))
}
