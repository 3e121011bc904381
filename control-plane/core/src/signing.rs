//! The export signing key: ed25519 (aws-lc-rs), created on first start in the data directory
//! (PKCS#8, mode 0600); its public half is published at `GET /v1/audit/export-key` and written
//! to `export-signing.pub` beside it.

use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};

/// Private key file in the data directory.
pub const SIGNING_KEY_FILE: &str = "export-signing.pk8";
/// Public key file (hex) in the data directory.
pub const SIGNING_PUB_FILE: &str = "export-signing.pub";

/// Errors loading or creating the key.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// File problem.
    #[error("export signing key {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
    /// The key file does not hold an ed25519 PKCS#8 key.
    #[error("export signing key {0} is not a valid ed25519 PKCS#8 key")]
    BadKey(String),
}

/// Signs exports.
pub struct ExportSigner {
    key: Ed25519KeyPair,
    public_hex: String,
}

impl std::fmt::Debug for ExportSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportSigner")
            .field("public_hex", &self.public_hex)
            .finish_non_exhaustive()
    }
}

impl ExportSigner {
    /// Load the key from `dir`, creating it on first use.
    pub fn load_or_create(dir: &Path) -> Result<Self, SigningError> {
        let path = dir.join(SIGNING_KEY_FILE);
        let io = |m: String| SigningError::Io {
            path: path.display().to_string(),
            message: m,
        };
        let pkcs8 = if path.exists() {
            std::fs::read(&path).map_err(|e| io(e.to_string()))?
        } else {
            let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .map_err(|_| io("key generation failed".into()))?;
            agent_bom_protocol::secure_file::write_private(&path, doc.as_ref())
                .map_err(|e| io(e.to_string()))?;
            doc.as_ref().to_vec()
        };
        let key = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|_| SigningError::BadKey(path.display().to_string()))?;
        let public_hex = hex::encode(key.public_key().as_ref());
        let pub_path = dir.join(SIGNING_PUB_FILE);
        std::fs::write(&pub_path, format!("{public_hex}\n")).map_err(|e| SigningError::Io {
            path: pub_path.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(Self { key, public_hex })
    }

    /// Hex ed25519 signature of `body`.
    pub fn sign_hex(&self, body: &[u8]) -> String {
        hex::encode(self.key.sign(body).as_ref())
    }

    /// Hex of the raw 32-byte public key.
    pub fn public_hex(&self) -> &str {
        &self.public_hex
    }
}

/// Verify a hex signature of `body` with a hex public key.
pub fn verify_hex(public_hex: &str, body: &[u8], signature_hex: &str) -> bool {
    let (Ok(public), Ok(sig)) = (hex::decode(public_hex), hex::decode(signature_hex)) else {
        return false;
    };
    aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, public)
        .verify(body, &sig)
        .is_ok()
}
