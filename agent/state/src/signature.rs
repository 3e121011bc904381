//! Signature checks for control-plane commands.
//!
//! The collector signs every command with the control plane's CA key, bound to the device id
//! ([`Command::signing_message`]). The agent verifies against the CA certificate it pinned at
//! enrollment (`ca.crt` in the state directory), so a command is applied only when it comes from
//! a holder of that CA key, and a persisted command (the cached policy) can be checked again by
//! any local reader long after delivery.

use agent_bom_protocol::Command;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Check `command`'s signature for device `agent_id` against the CA certificate `ca_pem`.
pub fn verify(ca_pem: &str, agent_id: &str, command: &Command) -> Result<(), String> {
    let signature = command
        .signature
        .as_deref()
        .ok_or("the command is not signed")?;
    let signature = hex::decode(signature).map_err(|_| "the signature is not hex")?;
    let der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|e| format!("the pinned CA certificate is unreadable: {e}"))?;
    let (_, ca) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| format!("the pinned CA certificate is invalid: {e}"))?;
    let public_key = ca.public_key().subject_public_key.data.as_ref();
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, public_key)
        .verify(&command.signing_message(agent_id), &signature)
        .map_err(|_| "the signature does not match the pinned control-plane CA".to_string())
}

/// Test helpers: a throwaway CA and command signing (tests of this and dependent crates).
#[cfg(any(test, feature = "test-support"))]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub mod tests {
    use super::*;
    use rcgen::SigningKey;

    /// A CA (certificate PEM, key) for tests.
    pub fn test_ca() -> (String, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key)
    }

    /// `command` signed by `key` for `agent_id`.
    pub fn sign(key: &rcgen::KeyPair, agent_id: &str, mut command: Command) -> Command {
        command.signature = None;
        let sig = key.sign(&command.signing_message(agent_id)).unwrap();
        command.signature = Some(hex::encode(sig));
        command
    }

    #[cfg(test)]
    fn command() -> Command {
        Command {
            command_id: "c1".into(),
            command: "policy".into(),
            payload: r#"{"revision":1}"#.into(),
            signature: None,
        }
    }

    #[test]
    fn accepts_only_a_matching_signature_for_this_device() {
        let (ca, key) = test_ca();
        let signed = sign(&key, "dev-1", command());
        assert_eq!(verify(&ca, "dev-1", &signed), Ok(()));
        // Bound to the device.
        assert!(verify(&ca, "dev-2", &signed).is_err());
        // Any change of the payload breaks it.
        let mut tampered = signed.clone();
        tampered.payload = r#"{"revision":2}"#.into();
        assert!(verify(&ca, "dev-1", &tampered).is_err());
        // Kind and id are covered too.
        let mut renamed = signed.clone();
        renamed.command = "rescan".into();
        assert!(verify(&ca, "dev-1", &renamed).is_err());
        // Unsigned and foreign-CA signatures are refused.
        assert!(verify(&ca, "dev-1", &command()).is_err());
        let (_, other_key) = test_ca();
        assert!(verify(&ca, "dev-1", &sign(&other_key, "dev-1", command())).is_err());
    }
}
