//! Agent releases: what a release signature covers, how it is checked, how versions compare,
//! and the version stamp a build carries.
//!
//! A release is one agent build for one OS and architecture. Its publisher signs a
//! [`ReleaseManifest`] (version, OS, architecture, SHA-256 and size of the build) with an
//! ed25519 **release key**; the control plane stores the build with the signature and serves
//! both, and the agent checks the signature against the release keys *it* pins before it runs a
//! downloaded build. The control plane cannot make an agent run a build the release key did not
//! sign: its CA signs the `update_available` notice (which build, when), the release key signs
//! the build (what runs). The channel is not signed, so a build moves from `beta` to `stable`
//! without a new signature.
//!
//! Signatures do not expire. An expiring signature is what took FleetDM's agents offline when
//! their update metadata lapsed; freshness comes from the signed notice instead, which carries
//! its own expiry and only ever offers an update: nothing that expires can stop a running agent.

use serde::{Deserialize, Serialize};

/// Domain separation for release signatures, so no other ed25519 signature (an audit export)
/// can be replayed as a release.
pub const SIGNING_CONTEXT: &[u8] = b"agent-bom release v1";

/// Longest version string.
pub const MAX_VERSION_LEN: usize = 64;

/// Operating systems a build can be for (the names `agent-bom-agent scan` reports as `host.os`).
pub const OSES: [&str; 3] = ["linux", "macos", "windows"];

/// Architectures a build can be for (Rust's `std::env::consts::ARCH` names).
pub const ARCHES: [&str; 2] = ["x86_64", "aarch64"];

/// Why a release or its signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    /// A field is not valid.
    #[error("invalid release: {0}")]
    Invalid(String),
    /// The key is not a hex ed25519 public key.
    #[error("invalid release public key: {0}")]
    BadKey(String),
    /// The signature does not verify with any of the keys.
    #[error("the release signature does not verify with any pinned release key")]
    BadSignature,
    /// The build's bytes do not have the digest the manifest states.
    #[error("the build's SHA-256 is {actual}, the release states {expected}")]
    WrongDigest {
        /// What the release states.
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },
}

/// What a release signature covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseManifest {
    /// The agent version the build reports (`agent-bom-agent --version`).
    pub version: String,
    /// One of [`OSES`].
    pub os: String,
    /// One of [`ARCHES`].
    pub arch: String,
    /// Lower-case hex SHA-256 of the build.
    pub sha256: String,
    /// Size of the build in bytes.
    pub size: u64,
}

impl ReleaseManifest {
    /// Check every field (names, version syntax, digest syntax).
    pub fn validate(&self) -> Result<(), ReleaseError> {
        validate_version(&self.version)?;
        if !OSES.contains(&self.os.as_str()) {
            return Err(ReleaseError::Invalid(format!(
                "os {:?} (expected one of {})",
                self.os,
                OSES.join(", ")
            )));
        }
        if !ARCHES.contains(&self.arch.as_str()) {
            return Err(ReleaseError::Invalid(format!(
                "arch {:?} (expected one of {})",
                self.arch,
                ARCHES.join(", ")
            )));
        }
        if !is_sha256_hex(&self.sha256) {
            return Err(ReleaseError::Invalid(
                "sha256 must be 64 lower-case hex digits".into(),
            ));
        }
        if self.size == 0 {
            return Err(ReleaseError::Invalid("the build is empty".into()));
        }
        Ok(())
    }

    /// The bytes a release signature covers: the context and each field, length-prefixed so no
    /// field can bleed into the next.
    pub fn signing_message(&self) -> Vec<u8> {
        let size = self.size.to_be_bytes();
        let mut out = Vec::with_capacity(128);
        for part in [
            SIGNING_CONTEXT,
            self.version.as_bytes(),
            self.os.as_bytes(),
            self.arch.as_bytes(),
            self.sha256.as_bytes(),
            &size,
        ] {
            out.extend_from_slice(&(part.len() as u64).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    /// Verify `signature_hex` over this manifest with any of `public_keys_hex`; returns the key
    /// that verified it.
    pub fn verify<'k>(
        &self,
        signature_hex: &str,
        public_keys_hex: &'k [String],
    ) -> Result<&'k str, ReleaseError> {
        let signature =
            hex::decode(signature_hex.trim()).map_err(|_| ReleaseError::BadSignature)?;
        let message = self.signing_message();
        for key in public_keys_hex {
            let bytes = parse_public_key(key)?;
            let public = aws_lc_rs::signature::UnparsedPublicKey::new(
                &aws_lc_rs::signature::ED25519,
                &bytes,
            );
            if public.verify(&message, &signature).is_ok() {
                return Ok(key.as_str());
            }
        }
        Err(ReleaseError::BadSignature)
    }

    /// Check that `bytes` are the build this manifest describes (size and SHA-256).
    pub fn check_bytes(&self, bytes: &[u8]) -> Result<(), ReleaseError> {
        let actual = crate::digest::sha256_hex(bytes);
        if actual != self.sha256 || bytes.len() as u64 != self.size {
            return Err(ReleaseError::WrongDigest {
                expected: self.sha256.clone(),
                actual,
            });
        }
        Ok(())
    }
}

/// Decode a hex ed25519 public key (32 bytes).
pub fn parse_public_key(hex_key: &str) -> Result<Vec<u8>, ReleaseError> {
    let bytes = hex::decode(hex_key.trim()).map_err(|e| ReleaseError::BadKey(e.to_string()))?;
    if bytes.len() != 32 {
        return Err(ReleaseError::BadKey(format!(
            "{} bytes, an ed25519 public key has 32",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// True for 64 lower-case hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Check a version string: 1 to [`MAX_VERSION_LEN`] characters of letters, digits and `.-+`,
/// starting with a digit.
pub fn validate_version(version: &str) -> Result<(), ReleaseError> {
    let ok = !version.is_empty()
        && version.len() <= MAX_VERSION_LEN
        && version.starts_with(|c: char| c.is_ascii_digit())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-+".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ReleaseError::Invalid(format!(
            "version {version:?}: 1-{MAX_VERSION_LEN} letters, digits and .-+, starting with a digit"
        )))
    }
}

/// Compare two versions the way semantic versioning orders them: numeric dot-separated core
/// parts, then a pre-release (`-rc.1`) sorts before the release; build metadata (`+…`) is
/// ignored. Parts that are not numbers compare as text.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    fn split(v: &str) -> (&str, Option<&str>) {
        let v = v.split('+').next().unwrap_or(v);
        match v.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (v, None),
        }
    }
    fn parts(s: &str) -> impl Iterator<Item = &str> {
        s.split('.')
    }
    fn cmp_part(x: &str, y: &str) -> std::cmp::Ordering {
        match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            (Ok(_), Err(_)) => std::cmp::Ordering::Less,
            (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        }
    }
    fn cmp_list(a: &str, b: &str, missing_is_zero: bool) -> std::cmp::Ordering {
        let (mut x, mut y) = (parts(a), parts(b));
        loop {
            match (x.next(), y.next()) {
                (None, None) => return std::cmp::Ordering::Equal,
                (Some(p), None) if missing_is_zero => {
                    if p.parse::<u64>() != Ok(0) {
                        return std::cmp::Ordering::Greater;
                    }
                }
                (None, Some(p)) if missing_is_zero => {
                    if p.parse::<u64>() != Ok(0) {
                        return std::cmp::Ordering::Less;
                    }
                }
                (Some(_), None) => return std::cmp::Ordering::Greater,
                (None, Some(_)) => return std::cmp::Ordering::Less,
                (Some(p), Some(q)) => {
                    let o = cmp_part(p, q);
                    if o.is_ne() {
                        return o;
                    }
                }
            }
        }
    }
    let ((core_a, pre_a), (core_b, pre_b)) = (split(a), split(b));
    cmp_list(core_a, core_b, true).then_with(|| match (pre_a, pre_b) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (Some(_), None) => std::cmp::Ordering::Less,
        (Some(p), Some(q)) => cmp_list(p, q, false),
    })
}

/// The version stamp: a fixed region in the agent binary that release tooling may fill with the
/// version the build reports, without recompiling (a nightly or a CI build number stamped into
/// an otherwise identical build). The region is [`STAMP_MARKER`], one length byte, then
/// [`STAMP_CAPACITY`] bytes; length 0 means "not stamped: report the crate version". Stamping
/// happens before a release is signed (and before platform code signing), so a stamped build
/// is signed like any other.
pub const STAMP_MARKER: &[u8; 24] = b"AGENT-BOM-VERSION-STAMP:";

/// Bytes available for a stamped version.
pub const STAMP_CAPACITY: usize = MAX_VERSION_LEN;

/// Total size of the stamp region.
pub const STAMP_LEN: usize = STAMP_MARKER.len() + 1 + STAMP_CAPACITY;

/// An empty stamp region, as a build carries it.
pub const fn empty_stamp() -> [u8; STAMP_LEN] {
    let mut out = [0u8; STAMP_LEN];
    let mut i = 0;
    while i < STAMP_MARKER.len() {
        out[i] = STAMP_MARKER[i];
        i += 1;
    }
    out
}

/// The version in a stamp region, if one was stamped. The marker bytes are not compared: a
/// binary that compared them would carry the marker twice (here and in its region), and
/// [`stamp_version`] insists on exactly one.
pub fn stamped_version(region: &[u8; STAMP_LEN]) -> Option<&str> {
    let (&len, value) = region[STAMP_MARKER.len()..].split_first()?;
    let len = usize::from(len);
    if len == 0 || len > STAMP_CAPACITY || value.len() < len {
        return None;
    }
    std::str::from_utf8(&value[..len]).ok()
}

/// Stamp `version` into the one stamp region of the build `binary`.
pub fn stamp_version(binary: &mut [u8], version: &str) -> Result<(), ReleaseError> {
    validate_version(version)?;
    let found: Vec<usize> = binary
        .windows(STAMP_MARKER.len())
        .enumerate()
        .filter(|(_, w)| *w == STAMP_MARKER.as_slice())
        .map(|(i, _)| i)
        .collect();
    let [at] = found.as_slice() else {
        return Err(ReleaseError::Invalid(format!(
            "the build has {} version stamp regions, expected exactly one",
            found.len()
        )));
    };
    let start = at + STAMP_MARKER.len();
    if binary.len() < start + 1 + STAMP_CAPACITY {
        return Err(ReleaseError::Invalid(
            "the stamp region is truncated".into(),
        ));
    }
    binary[start] = version.len() as u8;
    let value = &mut binary[start + 1..start + 1 + STAMP_CAPACITY];
    value.fill(0);
    value[..version.len()].copy_from_slice(version.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering::*;

    fn keypair() -> (aws_lc_rs::signature::Ed25519KeyPair, String) {
        use aws_lc_rs::signature::KeyPair;
        let pk8 = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(
            &aws_lc_rs::rand::SystemRandom::new(),
        )
        .unwrap();
        let kp = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(pk8.as_ref()).unwrap();
        let public = hex::encode(kp.public_key().as_ref());
        (kp, public)
    }

    fn manifest(bytes: &[u8]) -> ReleaseManifest {
        ReleaseManifest {
            version: "1.2.3".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            sha256: crate::digest::sha256_hex(bytes),
            size: bytes.len() as u64,
        }
    }

    #[test]
    fn signatures_verify_only_for_the_signed_manifest_and_key() {
        let (kp, public) = keypair();
        let (_, other) = keypair();
        let m = manifest(b"build");
        m.validate().unwrap();
        let sig = hex::encode(kp.sign(&m.signing_message()).as_ref());
        assert_eq!(
            m.verify(&sig, &[other.clone(), public.clone()]),
            Ok(public.as_str())
        );
        assert_eq!(m.verify(&sig, &[other]), Err(ReleaseError::BadSignature));
        for changed in [
            ReleaseManifest {
                version: "1.2.4".into(),
                ..m.clone()
            },
            ReleaseManifest {
                os: "macos".into(),
                ..m.clone()
            },
            ReleaseManifest {
                size: 6,
                ..m.clone()
            },
        ] {
            assert_eq!(
                changed.verify(&sig, std::slice::from_ref(&public)),
                Err(ReleaseError::BadSignature)
            );
        }
        assert!(m.check_bytes(b"build").is_ok());
        assert!(matches!(
            m.check_bytes(b"bui1d"),
            Err(ReleaseError::WrongDigest { .. })
        ));
        assert!(matches!(
            m.verify(&sig, &["abcd".into()]),
            Err(ReleaseError::BadKey(_))
        ));
    }

    #[test]
    fn manifests_are_validated() {
        let m = manifest(b"x");
        assert!(
            ReleaseManifest {
                os: "plan9".into(),
                ..m.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            ReleaseManifest {
                arch: "mips".into(),
                ..m.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            ReleaseManifest {
                version: "v1".into(),
                ..m.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            ReleaseManifest {
                sha256: "AB".repeat(32),
                ..m.clone()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn versions_order_like_semver() {
        assert_eq!(compare_versions("0.1.0", "0.1.1"), Less);
        assert_eq!(compare_versions("0.10.0", "0.9.9"), Greater);
        assert_eq!(compare_versions("1.0", "1.0.0"), Equal);
        assert_eq!(compare_versions("1.0.0-rc.1", "1.0.0"), Less);
        assert_eq!(compare_versions("1.0.0-rc.2", "1.0.0-rc.10"), Less);
        assert_eq!(compare_versions("1.0.0+build.7", "1.0.0"), Equal);
        assert_eq!(compare_versions("2.0.0", "10.0.0"), Less);
    }

    #[test]
    fn a_stamp_is_written_once_and_read_back() {
        let mut binary = b"prefix".to_vec();
        binary.extend_from_slice(&empty_stamp());
        binary.extend_from_slice(b"suffix");
        let at = 6;
        assert_eq!(
            stamped_version(binary[at..at + STAMP_LEN].try_into().unwrap()),
            None
        );
        stamp_version(&mut binary, "0.2.0-next").unwrap();
        assert_eq!(
            stamped_version(binary[at..at + STAMP_LEN].try_into().unwrap()),
            Some("0.2.0-next")
        );
        stamp_version(&mut binary, "0.3").unwrap();
        assert_eq!(
            stamped_version(binary[at..at + STAMP_LEN].try_into().unwrap()),
            Some("0.3")
        );
        assert!(binary.ends_with(b"suffix"));
        assert!(stamp_version(&mut binary, "not a version").is_err());
        let mut two = binary.clone();
        two.extend_from_slice(&empty_stamp());
        assert!(stamp_version(&mut two, "1.0.0").is_err());
    }
}
