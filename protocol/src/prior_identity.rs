//! Re-enrolling as the continuation of an earlier identity: the device proves it still holds
//! the earlier identity's key (a reinstall that kept the state directory, or an enrollment after
//! the certificate expired) by signing a statement bound to the new enrollment's CSR. The
//! collector then retires the earlier identity as replaced by the new one
//! (`docs/security-model.md`, "Machines and identities").

use serde::{Deserialize, Serialize};

/// Proof of an earlier identity, carried by `enroll`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriorIdentity {
    /// The earlier device certificate (PEM); it may have expired.
    pub certificate_pem: String,
    /// Hex signature by the earlier certificate's key (ECDSA P-256, SHA-256, ASN.1 DER) over
    /// [`statement`] of the enrollment's CSR.
    pub signature: String,
}

/// What the earlier key signs: a fixed context and the new CSR, so that a proof is good for
/// this enrollment's key only and means nothing anywhere else.
pub fn statement(csr_pem: &str) -> Vec<u8> {
    let mut out = b"agent-bom prior identity v1\n".to_vec();
    out.extend_from_slice(csr_pem.as_bytes());
    out
}
