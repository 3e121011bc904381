//! Client TLS for the uplink. The agent trusts exactly one CA: the control plane's.
//!
//! Before enrollment it has only the CA's SHA-256 pin, so [`PinnedCaVerifier`] finds the CA in
//! the chain the collector sends, checks it against the pin, then verifies the chain with that CA
//! as the only root. After enrollment the CA certificate is stored and used directly, and the
//! agent presents its device certificate.

use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{RootCertStore, SignatureScheme};

/// Hex SHA-256 of a DER certificate.
pub use agent_bom_protocol::digest::sha256_hex as fingerprint;

/// Normalize a pin as users paste it: hex, any case, optional `sha256:` prefix and colons.
pub fn normalize_pin(pin: &str) -> Result<String, String> {
    let p = pin.trim();
    let p = p
        .strip_prefix("sha256:")
        .unwrap_or(p)
        .replace(':', "")
        .to_ascii_lowercase();
    if p.len() == 64 && p.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(p)
    } else {
        Err(format!(
            "CA pin must be 64 hex characters (the SHA-256 of the CA certificate, as in the data directory's ca.pin), got {} characters",
            p.len()
        ))
    }
}

/// Verifies a collector against a pinned CA fingerprint, before the CA certificate is known.
#[derive(Debug)]
pub struct PinnedCaVerifier {
    pin: Option<String>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    seen_ca: std::sync::Mutex<Option<CertificateDer<'static>>>,
}

impl PinnedCaVerifier {
    /// A verifier for `pin`. Without a pin it trusts the CA the collector presents on first use
    /// (and the caller records it); this is only for demos and is logged loudly.
    pub fn new(pin: Option<String>) -> Self {
        Self {
            pin,
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            seen_ca: std::sync::Mutex::new(None),
        }
    }

    /// The CA certificate that matched during the handshake.
    pub fn matched_ca(&self) -> Option<CertificateDer<'static>> {
        self.seen_ca.lock().ok().and_then(|g| g.clone())
    }
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = match &self.pin {
            Some(pin) => intermediates
                .iter()
                .find(|c| &fingerprint(c) == pin)
                .ok_or_else(|| {
                    rustls::Error::General(
                        "the collector's CA does not match the pinned fingerprint (--ca-pin); check the pin against the control plane's ca.pin"
                            .into(),
                    )
                })?,
            None => intermediates.last().ok_or_else(|| {
                rustls::Error::General("the collector sent no CA certificate".into())
            })?,
        };
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        let verified =
            inner.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)?;
        if let Ok(mut seen) = self.seen_ca.lock() {
            *seen = Some(ca.clone().into_owned());
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// TLS config for enrollment: pinned CA, no client certificate.
pub fn enrollment_config(verifier: Arc<PinnedCaVerifier>) -> rustls::ClientConfig {
    let mut config =
        rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
    config.alpn_protocols = vec![agent_bom_protocol::ALPN.to_vec()];
    config
}

/// TLS config for an enrolled device: the stored CA as the only root, the device certificate as
/// client identity.
pub fn device_config(
    ca: CertificateDer<'static>,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone())?;
    let mut config =
        rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![cert, ca], key)?;
    config.alpn_protocols = vec![agent_bom_protocol::ALPN.to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_normalized() {
        let hex = "AB".repeat(32);
        assert_eq!(normalize_pin(&hex).unwrap(), "ab".repeat(32));
        let colons: Vec<String> = (0..32).map(|_| "ab".to_string()).collect();
        assert_eq!(
            normalize_pin(&format!("sha256:{}", colons.join(":"))).unwrap(),
            "ab".repeat(32)
        );
        assert!(normalize_pin("abc").is_err());
        assert!(normalize_pin(&"zz".repeat(32)).is_err());
    }
}
