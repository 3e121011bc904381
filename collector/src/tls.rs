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

/// The uplink's TLS 1.3 cipher suites in the collector's order of preference: AES-128-GCM with
/// SHA-256 first. The handshake's strength is set by its X25519 key exchange and P-256
/// signatures (about 128 bits), which AES-256 does not raise; its SHA-384 key schedule runs in
/// software where SHA-256 has CPU instructions, and cost 8-10 % of the CPU of every handshake
/// on each side (an enrollment burst's profile, docs/benchmarks.md). QUIC protects its Initial
/// packets with AES-128-GCM in any case. All three stay allowed: a client that offers only
/// one of the others is served with it.
fn uplink_provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::aws_lc_rs::cipher_suite;
    rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            cipher_suite::TLS13_AES_128_GCM_SHA256,
            cipher_suite::TLS13_AES_256_GCM_SHA384,
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ],
        ..rustls::crypto::aws_lc_rs::default_provider()
    }
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
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(uplink_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain, identity.key)?;
    // The collector's order decides, so agents already deployed get the cheaper suite too.
    config.ignore_client_order = true;
    config.alpn_protocols = vec![agent_bom_protocol::ALPN.to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A handshake in memory between the collector's configuration and `client`: the suite
    /// it settles on.
    fn negotiated(
        server: rustls::ServerConfig,
        client: rustls::ClientConfig,
    ) -> rustls::SupportedCipherSuite {
        let name = agent_bom_protocol::COLLECTOR_SERVER_NAME
            .try_into()
            .unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
        let mut server = rustls::ServerConnection::new(Arc::new(server)).unwrap();
        let mut wire = Vec::new();
        while client.is_handshaking() || server.is_handshaking() {
            wire.clear();
            client.write_tls(&mut wire).unwrap();
            server.read_tls(&mut wire.as_slice()).unwrap();
            server.process_new_packets().unwrap();
            wire.clear();
            server.write_tls(&mut wire).unwrap();
            client.read_tls(&mut wire.as_slice()).unwrap();
            client.process_new_packets().unwrap();
        }
        server.negotiated_cipher_suite().unwrap()
    }

    #[test]
    fn an_agent_offering_aes_256_first_gets_aes_128() {
        let ca = CertificateAuthority::generate("test").unwrap();
        let client = crate::testing::anonymous_client_config(&ca);
        assert_eq!(
            client.crypto_provider().cipher_suites[0].suite(),
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
            "rustls's default order, as agents offer it"
        );
        let server = server_config(&ca, &[]).unwrap();
        assert_eq!(
            negotiated(server.clone(), client).suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        // A client that offers only AES-256 is still served.
        let only_256 = crate::testing::anonymous_client_config_with(
            &ca,
            rustls::crypto::CryptoProvider {
                cipher_suites: vec![
                    rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_256_GCM_SHA384,
                ],
                ..rustls::crypto::aws_lc_rs::default_provider()
            },
        );
        assert_eq!(
            negotiated(server, only_256).suite(),
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384
        );
    }

    #[test]
    fn the_collector_prefers_aes_128_and_keeps_the_other_suites() {
        let config = server_config(&CertificateAuthority::generate("test").unwrap(), &[]).unwrap();
        assert!(config.ignore_client_order);
        let suites: Vec<_> = config
            .crypto_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        assert_eq!(
            suites,
            [
                rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
                rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
                rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
            ]
        );
    }
}
