//! Bearer secrets (API keys, enrollment tokens): generation, parsing, hashing, comparison.
//!
//! Format: `<kind>_<prefix>_<secret>`, e.g. `abk_3f9a0c1d2e4b_…`. The prefix (12 hex chars) is
//! stored in clear and indexed, so a presented secret is found with one lookup; only the
//! SHA-256 of the whole string is stored, and it is compared in constant time. The secret part
//! carries 192 random bits, so a fast hash is the right tool (no password stretching needed).

/// Kind tag of API keys.
pub const API_KEY_KIND: &str = "abk";
/// Kind tag of enrollment tokens.
pub const ENROLL_TOKEN_KIND: &str = "abe";

const PREFIX_HEX: usize = 12;
const SECRET_HEX: usize = 48;

/// A freshly generated secret: show `plaintext` once, store `prefix` and `hash`.
#[derive(Debug, Clone)]
pub struct NewSecret {
    /// The full secret, shown to the operator once and never stored.
    pub plaintext: String,
    /// Lookup prefix.
    pub prefix: String,
    /// SHA-256 (hex) of the plaintext.
    pub hash: String,
}

/// Generate a secret of `kind`.
pub fn generate(kind: &str) -> NewSecret {
    let prefix = random_hex(PREFIX_HEX / 2);
    let secret = random_hex(SECRET_HEX / 2);
    let plaintext = format!("{kind}_{prefix}_{secret}");
    NewSecret {
        hash: hash(&plaintext),
        prefix,
        plaintext,
    }
}

/// Parse a presented secret of `kind` into its prefix, or `None` when it is not well formed.
/// Accepts any secret length of at least 24 characters so that operator-supplied bootstrap keys
/// work, but the prefix must be present.
pub fn prefix_of<'a>(kind: &str, presented: &'a str) -> Option<&'a str> {
    let rest = presented.strip_prefix(kind)?.strip_prefix('_')?;
    let (prefix, secret) = rest.split_once('_')?;
    let ok = |s: &str, min: usize| s.len() >= min && s.chars().all(|c| c.is_ascii_alphanumeric());
    (ok(prefix, 8) && prefix.len() <= 32 && ok(secret, 24) && secret.len() <= 128).then_some(prefix)
}

/// Hex SHA-256 of a secret.
pub fn hash(plaintext: &str) -> String {
    agent_bom_protocol::digest::sha256_hex(plaintext.as_bytes())
}

/// Compare two hashes without an early exit.
pub fn hashes_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // The OS CSPRNG; if it fails the process cannot safely continue issuing credentials.
    if let Err(e) = aws_lc_rs::rand::fill(&mut buf) {
        panic!("system random number generator failed: {e}");
    }
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_parse_and_hash() {
        let s = generate(API_KEY_KIND);
        assert_eq!(
            prefix_of(API_KEY_KIND, &s.plaintext),
            Some(s.prefix.as_str())
        );
        assert!(hashes_equal(&hash(&s.plaintext), &s.hash));
        assert_eq!(prefix_of(ENROLL_TOKEN_KIND, &s.plaintext), None);
        assert_ne!(generate(API_KEY_KIND).plaintext, s.plaintext);
    }

    #[test]
    fn malformed_secrets_are_refused() {
        for bad in [
            "",
            "abk",
            "abk_",
            "abk__x",
            "abk_short_",
            "abk_0123456789ab_tooshort",
            "Bearer abk_x_y",
            "abk_0123456789ab_!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        ] {
            assert_eq!(prefix_of(API_KEY_KIND, bad), None, "{bad}");
        }
        assert!(!hashes_equal("ab", "abc"));
    }
}
