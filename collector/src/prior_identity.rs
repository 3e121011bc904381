//! Checking an enrolling device's proof that it holds an earlier identity
//! ([`agent_bom_protocol::prior_identity`]): the earlier certificate's key signed the statement
//! of this enrollment's CSR. Whether that certificate is the one on record for an endpoint of
//! the token's tenant is the store's to decide ([`crate::store::ContinuedIdentity`]).

use agent_bom_protocol::prior_identity::{PriorIdentity, statement};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::pki::fingerprint;
use crate::store::ContinuedIdentity;

/// The earlier identity `proof` proves for an enrollment with `csr_pem`, or why it proves
/// nothing.
pub(crate) fn verify(proof: &PriorIdentity, csr_pem: &str) -> Result<ContinuedIdentity, String> {
    let der = CertificateDer::from_pem_slice(proof.certificate_pem.as_bytes())
        .map_err(|_| "the earlier certificate is not a PEM certificate".to_string())?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|_| "the earlier certificate cannot be parsed".to_string())?;
    let agent_id = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(|| "the earlier certificate names no device".to_string())?
        .to_string();
    let signature = hex::decode(&proof.signature)
        .map_err(|_| "the proof's signature is not hex".to_string())?;
    // The agent's keys are P-256 (rcgen's default); any other key cannot verify here.
    UnparsedPublicKey::new(
        &ECDSA_P256_SHA256_ASN1,
        cert.public_key().subject_public_key.data.as_ref(),
    )
    .verify(&statement(csr_pem), &signature)
    .map_err(|_| {
        "the proof of the earlier identity does not verify with its certificate's key".to_string()
    })?;
    Ok(ContinuedIdentity {
        agent_id,
        cert_fingerprint: fingerprint(der.as_ref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::SigningKey;

    fn identity(name: &str) -> (rcgen::KeyPair, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        (key, cert.pem())
    }

    fn proof(key: &rcgen::KeyPair, certificate_pem: &str, csr: &str) -> PriorIdentity {
        PriorIdentity {
            certificate_pem: certificate_pem.to_string(),
            signature: hex::encode(key.sign(&statement(csr)).unwrap()),
        }
    }

    #[test]
    fn the_earlier_key_proves_its_identity_for_this_csr_only() {
        let (key, cert) = identity("agent-1");
        let proven = verify(&proof(&key, &cert, "csr-a"), "csr-a").unwrap();
        assert_eq!(proven.agent_id, "agent-1");
        assert_eq!(proven.cert_fingerprint.len(), 64);
        // Replayed for another enrollment's key.
        assert!(verify(&proof(&key, &cert, "csr-a"), "csr-b").is_err());
        // Signed by another key than the certificate's.
        let (other, _) = identity("agent-2");
        assert!(verify(&proof(&other, &cert, "csr-a"), "csr-a").is_err());
        // Not a certificate, not hex.
        let mut bad = proof(&key, &cert, "csr-a");
        bad.signature = "zz".into();
        assert!(verify(&bad, "csr-a").is_err());
        bad.certificate_pem = "nope".into();
        assert!(verify(&bad, "csr-a").is_err());
    }
}
