//! TLS configuration of the collector: its own certificate from the CA, and client certificates
//! verified against the same CA. Clients without a certificate are let through the handshake so
//! they can enroll; everything else requires the certificate.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;

use crate::pki::{CertificateAuthority, PkiError};

/// Errors building the TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA could not issue the collector certificate.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built.
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Build the rustls server configuration for the uplink (ALPN `agent-bom/1`).
pub fn server_config(
    ca: &CertificateAuthority,
    extra_names: &[String],
) -> Result<rustls::ServerConfig, TlsError> {
    let identity = ca.issue_collector_identity(extra_names)?;
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der().clone())?;
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()?;
    let mut config =
        rustls::ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
            .with_client_cert_verifier(verifier)
            .with_single_cert(identity.chain, identity.key)?;
    config.alpn_protocols = vec![agent_bom_protocol::ALPN.to_vec()];
    Ok(config)
}
