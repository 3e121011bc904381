//! Per-tenant and per-upstream call rates across every gateway replica: the control plane's
//! shared windows ([`agent_bom_control_plane::ratelimit`]), the same mechanism as the API's
//! per-key and per-tenant limits. Each tool call (`tools/call`) counts once in its tenant's
//! bucket and once in its upstream's, where those limits are set.

use agent_bom_control_plane::ratelimit::{Decision, SharedLimiter};
use agent_bom_control_plane::store::Store;
use agent_bom_control_plane::store::gateway::{FailMode, Upstream};

use crate::catalog::TenantView;

/// What the limits say about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Relay it.
    Allowed,
    /// 429 with `Retry-After`.
    Limited {
        /// Seconds until the window ends.
        retry_after_s: u64,
        /// Which limit (for the message).
        what: String,
    },
    /// The shared counters cannot be reached and the upstream fails closed: 503.
    Unavailable,
}

/// The gateway's limits.
#[derive(Debug, Clone)]
pub struct Limits {
    shared: SharedLimiter,
}

impl Limits {
    /// Limits counting in `store`.
    pub fn new(store: Store) -> Self {
        Self {
            shared: SharedLimiter::new(store),
        }
    }

    /// Count one request of `tenant_id` to `upstream`.
    pub async fn check(&self, tenant_id: &str, view: &TenantView, upstream: &Upstream) -> Outcome {
        if view.config.rate_per_tenant_per_min.is_none() && upstream.rate_per_min.is_none() {
            // Most calls: nothing to count, so no bucket names to build.
            return Outcome::Allowed;
        }
        let bucket = format!("gateway:upstream:{}", upstream.name);
        let checks = [
            (
                view.config.rate_per_tenant_per_min,
                "gateway:tenant",
                "this tenant's gateway calls".to_string(),
            ),
            (
                upstream.rate_per_min,
                bucket.as_str(),
                format!("upstream `{}`", upstream.name),
            ),
        ];
        for (limit, bucket, what) in checks {
            let Some(limit) = limit else { continue };
            match self.shared.acquire(tenant_id, bucket, limit).await {
                Ok(Decision::Allowed) => {}
                Ok(Decision::Limited { retry_after_s }) => {
                    return Outcome::Limited {
                        retry_after_s,
                        what: format!("rate limit of {limit} calls per minute for {what}"),
                    };
                }
                Err(e) => {
                    tracing::warn!(error = %e, "gateway cannot reach the shared rate limits");
                    if upstream.fail_mode == FailMode::Closed {
                        return Outcome::Unavailable;
                    }
                }
            }
        }
        Outcome::Allowed
    }
}
