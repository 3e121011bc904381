//! The one digest both ends use for fingerprints and identities.

/// Lower-case hex SHA-256 of `bytes` (certificate fingerprints, CA pins, secret hashes).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}
