//! Per-address throttling of failed authentication: an address that presents too many
//! missing, malformed or invalid credentials is answered 429 (with `Retry-After`), without a
//! database lookup, until its minute is over. Separate from the per-key and per-tenant rate
//! limits of `auth::RateLimiter`, which count authenticated requests.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use agent_bom_collector::admission::FailureThrottle;

use super::ApiError;

/// Default of failed authentications an address may make per minute: ten a second, far more
/// than a misconfigured client retrying, far less than guessing or load needs.
pub const DEFAULT_AUTH_FAILURES_PER_MINUTE: u32 = 600;

/// Failed authentications per client address (IPv6 by /64).
#[derive(Debug, Clone)]
pub struct AuthFailureThrottle(Arc<FailureThrottle>);

impl Default for AuthFailureThrottle {
    fn default() -> Self {
        Self::new(DEFAULT_AUTH_FAILURES_PER_MINUTE)
    }
}

impl AuthFailureThrottle {
    /// Allow `per_address` failures per address per minute. There is no global budget: one
    /// that ran out would lock every operator out.
    pub fn new(per_address: u32) -> Self {
        Self(Arc::new(FailureThrottle::new(per_address, u32::MAX)))
    }

    /// 429 when `client` must wait before presenting a credential again. Requests that did not
    /// come through the server's listener (no address) are not throttled here.
    pub fn check(&self, client: Option<IpAddr>) -> Result<(), ApiError> {
        let Some(ip) = client else {
            return Ok(());
        };
        match self.0.blocked(ip, Instant::now()) {
            None => Ok(()),
            Some(wait) => Err(ApiError::rate_limited(
                "too many failed authentications from this address; retry later",
                wait.as_secs() + 1,
            )),
        }
    }

    /// Count a failed authentication of `client`.
    pub fn failed(&self, client: Option<IpAddr>) {
        if let Some(ip) = client {
            self.0.failed(ip, Instant::now());
        }
    }
}
