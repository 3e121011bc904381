//! The export signing key: ed25519 (aws-lc-rs), created on first start in the data directory
//! (PKCS#8, mode 0600); its public half is published at `GET /v1/audit/export-key` and written
//! to `export-signing.pub` beside it.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use aws_lc_rs::encoding::AsBigEndian;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use ed25519_dalek::hazmat::{ExpandedSecretKey, raw_sign_byupdate};

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
    /// The same key for signing a file by reading it: aws-lc signs only a slice in memory,
    /// and an export must not be held whole in memory to be signed.
    streaming: StreamingKey,
    public_hex: String,
}

/// The key halves `raw_sign_byupdate` needs (it reads the message twice, as Ed25519 does).
struct StreamingKey {
    expanded: ExpandedSecretKey,
    verifying: ed25519_dalek::VerifyingKey,
}

/// How much of a file one read takes while signing it.
const SIGN_READ_CHUNK: usize = 64 * 1024;

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
        let streaming =
            streaming_key(&key).ok_or_else(|| SigningError::BadKey(path.display().to_string()))?;
        let pub_path = dir.join(SIGNING_PUB_FILE);
        std::fs::write(&pub_path, format!("{public_hex}\n")).map_err(|e| SigningError::Io {
            path: pub_path.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(Self {
            key,
            streaming,
            public_hex,
        })
    }

    /// Hex ed25519 signature of `body`.
    pub fn sign_hex(&self, body: &[u8]) -> String {
        hex::encode(self.key.sign(body).as_ref())
    }

    /// Hex ed25519 signature of everything in `file` (from its start), read in chunks: the
    /// same signature [`Self::sign_hex`] gives for those bytes, with memory bounded by a chunk.
    pub fn sign_file_hex(&self, file: &std::fs::File) -> std::io::Result<String> {
        let read_error = std::cell::RefCell::new(None);
        let signature = raw_sign_byupdate::<sha2::Sha512, _>(
            &self.streaming.expanded,
            |digest| {
                feed_file(file, digest).map_err(|e| {
                    *read_error.borrow_mut() = Some(e);
                    ed25519_dalek::SignatureError::new()
                })
            },
            &self.streaming.verifying,
        );
        match (signature, read_error.into_inner()) {
            (_, Some(e)) => Err(e),
            (Ok(signature), None) => Ok(hex::encode(signature.to_bytes())),
            (Err(_), None) => Err(std::io::Error::other("signing failed")),
        }
    }

    /// Hex of the raw 32-byte public key.
    pub fn public_hex(&self) -> &str {
        &self.public_hex
    }
}

/// The streaming half of `key`, from its seed; `None` if aws-lc cannot give the seed or the
/// derived public key differs (then the two signers would not agree).
fn streaming_key(key: &Ed25519KeyPair) -> Option<StreamingKey> {
    let seed = key.seed().ok()?.as_be_bytes().ok()?;
    let secret: ed25519_dalek::SecretKey = seed.as_ref().try_into().ok()?;
    let signing = ed25519_dalek::SigningKey::from_bytes(&secret);
    let verifying = signing.verifying_key();
    (verifying.as_bytes().as_slice() == key.public_key().as_ref()).then(|| StreamingKey {
        expanded: ExpandedSecretKey::from(&secret),
        verifying,
    })
}

/// Hash all of `file`, from its start, into `digest`.
fn feed_file(mut file: &std::fs::File, digest: &mut sha2::Sha512) -> std::io::Result<()> {
    use sha2::Digest;
    file.seek(SeekFrom::Start(0))?;
    let mut chunk = vec![0u8; SIGN_READ_CHUNK];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => digest.update(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_file_signature_is_the_same_as_the_in_memory_one() {
        let dir = tempfile::tempdir().unwrap();
        let signer = ExportSigner::load_or_create(dir.path()).unwrap();
        // Empty, shorter than a chunk, exactly a chunk, and spanning several chunks unevenly.
        for len in [0, 17, SIGN_READ_CHUNK, 3 * SIGN_READ_CHUNK + 5] {
            let body: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mut file = tempfile::tempfile().unwrap();
            file.write_all(&body).unwrap();
            let streamed = signer.sign_file_hex(&file).unwrap();
            assert_eq!(streamed, signer.sign_hex(&body), "length {len}");
            assert!(verify_hex(signer.public_hex(), &body, &streamed));
        }
    }

    #[test]
    fn a_reloaded_key_signs_files_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let first = ExportSigner::load_or_create(dir.path()).unwrap();
        let again = ExportSigner::load_or_create(dir.path()).unwrap();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"{\"export\":\"audit\"}\n").unwrap();
        assert_eq!(
            first.sign_file_hex(&file).unwrap(),
            again.sign_file_hex(&file).unwrap()
        );
    }
}
