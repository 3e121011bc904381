//! The QUIC keys every collector of a deployment must share, derived from one secret the store
//! keeps ([`crate::store::CollectorStore::quic_secret`]).
//!
//! An agent holds a stateless-reset token for each connection ID its collector gave it; a packet
//! for a connection a collector does not know (it was restarted, or the load balancer moved the
//! agent to another one) is answered with a stateless reset only if that collector computes the
//! same token (the reset key) and recognises the connection ID as one of the deployment's (the
//! connection-ID key). With both shared, a restarted collector resets stale connections on the
//! agent's next packet instead of leaving the agent to wait for its idle timeout. The
//! address-validation token key is shared too, so a retry token one collector issued is valid at
//! another.
//!
//! Each key is HMAC-SHA256 of the secret with its own label, so no two uses share key material.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::{hkdf, hmac};
use quinn::crypto::{HandshakeTokenKey, HmacKey};
use quinn_proto::HashedConnectionIdGenerator;

/// Smallest secret accepted (bytes).
pub const MIN_SECRET_LEN: usize = 32;

/// Time between two stateless resets at least. quinn's default (20 ms) would allow 50 resets a
/// second, so 10,000 agents of a restarted collector would need minutes to learn of it; a reset
/// is never larger than the packet that caused it, so a short interval amplifies nothing.
const MIN_RESET_INTERVAL: Duration = Duration::from_micros(20);

/// The keys of one deployment.
pub(crate) struct QuicKeys {
    reset: hmac::Key,
    connection_id: u64,
    token: hkdf::Prk,
}

impl QuicKeys {
    /// Keys derived from the deployment's `secret`, or fresh random ones (this process only)
    /// when there is none.
    pub(crate) fn new(secret: Option<&[u8]>) -> Self {
        let mut random = [0u8; MIN_SECRET_LEN];
        let secret = match secret {
            Some(s) if s.len() >= MIN_SECRET_LEN => s,
            _ => {
                let _ = aws_lc_rs::rand::fill(&mut random);
                &random
            }
        };
        let master = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let derive = |label: &[u8]| hmac::sign(&master, label);
        let cid = derive(b"agent-bom quic connection id");
        let mut cid_key = [0u8; 8];
        cid_key.copy_from_slice(&cid.as_ref()[..8]);
        Self {
            reset: hmac::Key::new(
                hmac::HMAC_SHA256,
                derive(b"agent-bom quic stateless reset").as_ref(),
            ),
            connection_id: u64::from_le_bytes(cid_key),
            token: hkdf::Salt::new(hkdf::HKDF_SHA256, b"agent-bom quic address token")
                .extract(derive(b"agent-bom quic token").as_ref()),
        }
    }

    /// The endpoint configuration: reset key, connection-ID generator, reset interval.
    pub(crate) fn endpoint_config(&self) -> quinn::EndpointConfig {
        let reset: Arc<dyn HmacKey> = Arc::new(self.reset.clone());
        let mut config = quinn::EndpointConfig::new(reset);
        let key = self.connection_id;
        config.cid_generator(move || Box::new(HashedConnectionIdGenerator::from_key(key)));
        config.min_reset_interval(MIN_RESET_INTERVAL);
        config
    }

    /// The key of address-validation (retry) tokens.
    pub(crate) fn token_key(&self) -> Arc<dyn HandshakeTokenKey> {
        Arc::new(self.token.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quinn::ConnectionIdGenerator;

    /// The stateless-reset token of `cid` under `key` (HMAC of the connection ID, as quinn).
    fn token(key: &hmac::Key, cid: &[u8]) -> Vec<u8> {
        hmac::sign(key, cid).as_ref()[..16].to_vec()
    }

    #[test]
    fn one_secret_gives_every_collector_the_same_keys() {
        let secret = [7u8; 32];
        let (a, b) = (QuicKeys::new(Some(&secret)), QuicKeys::new(Some(&secret)));
        let other = QuicKeys::new(Some(&[8u8; 32]));
        let cid = HashedConnectionIdGenerator::from_key(a.connection_id).generate_cid();
        // The other collector recognises the connection ID and computes the same reset token.
        let gen_b = HashedConnectionIdGenerator::from_key(b.connection_id);
        assert!(gen_b.validate(&cid).is_ok());
        assert_eq!(token(&a.reset, &cid), token(&b.reset, &cid));
        // Another deployment does neither.
        let gen_other = HashedConnectionIdGenerator::from_key(other.connection_id);
        assert!(gen_other.validate(&cid).is_err());
        assert_ne!(token(&a.reset, &cid), token(&other.reset, &cid));
        // No secret (or a short one): keys of this process alone.
        let (x, y) = (QuicKeys::new(None), QuicKeys::new(Some(&[1u8; 8])));
        assert_ne!(x.connection_id, y.connection_id);
    }
}
