//! The policy cache: each tenant's upstreams, limits and proxy policy as read from the control
//! plane's store, kept for [`crate::GatewayOptions::config_ttl`] and refreshed in place. When a
//! refresh fails the last good view stays in use, marked unreachable, and each upstream's fail
//! mode decides what that means: `open` keeps its last policy, `closed` switches its sessions
//! to the fail-closed policy (every call refused) until the control plane answers again.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use agent_bom_control_plane::store::gateway::{FailMode, GatewayConfig, Upstream};
use agent_bom_control_plane::store::{Store, StoreError};
use agent_bom_proxy::policy::Policy;

/// An upstream as the relay uses it: its settings, with the route name and server identity
/// every request and audit event of it carries, made once per configuration read.
#[derive(Debug)]
pub struct Route {
    /// The upstream's settings.
    pub upstream: Upstream,
    /// Its route name, shared by the audit events of its calls.
    pub name: Arc<str>,
    /// Its server identity (the inventory's id of its URL).
    pub server_id: Arc<str>,
}

impl Route {
    fn new(upstream: Upstream) -> Self {
        Self {
            name: upstream.name.as_str().into(),
            server_id: upstream.server_id().into(),
            upstream,
        }
    }
}

/// A tenant's configuration as one replica has it.
#[derive(Debug)]
pub struct TenantView {
    /// Upstreams, limits and the configuration revision.
    pub config: GatewayConfig,
    /// The upstreams of `config`, as routes.
    routes: Vec<Arc<Route>>,
    /// The tenant's policy in force (the built-in default when none was published).
    pub policy: Policy,
    /// Its revision (`None`: the built-in default).
    pub policy_revision: Option<i64>,
    /// When the view was last read successfully.
    pub fetched_at: Instant,
    /// False while refreshes fail (the control plane is unreachable).
    pub reachable: bool,
}

impl TenantView {
    /// The view of `config` under `policy`, read just now.
    pub fn new(
        config: GatewayConfig,
        policy: Policy,
        policy_revision: Option<i64>,
        reachable: bool,
    ) -> Self {
        Self {
            routes: config
                .upstreams
                .iter()
                .cloned()
                .map(|u| Arc::new(Route::new(u)))
                .collect(),
            config,
            policy,
            policy_revision,
            fetched_at: Instant::now(),
            reachable,
        }
    }

    /// The upstream called `name`.
    pub fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.route(name).map(|r| &r.upstream)
    }

    /// The route of the upstream called `name`.
    pub fn route(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| &*r.name == name)
    }

    /// What a session of `upstream` must run with now, and a stamp that changes whenever that
    /// answer does (sessions re-apply the policy when the stamp moves).
    pub fn policy_for(&self, upstream: &Upstream) -> (Policy, PolicyStamp) {
        let stamp = self.stamp_for(upstream);
        let policy = match stamp {
            PolicyStamp::FailClosed => Policy::fail_closed(),
            PolicyStamp::Revision(_) => self.policy.clone(),
        };
        (policy, stamp)
    }

    /// The stamp of [`Self::policy_for`] alone: what a session checks on every message, so the
    /// policy is copied only when it changed.
    pub fn stamp_for(&self, upstream: &Upstream) -> PolicyStamp {
        if !self.reachable && upstream.fail_mode == FailMode::Closed {
            PolicyStamp::FailClosed
        } else {
            PolicyStamp::Revision(self.policy_revision)
        }
    }
}

/// Which policy a session applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyStamp {
    /// The tenant's revision (`None`: the default policy).
    Revision(Option<i64>),
    /// The fail-closed policy (control plane unreachable, upstream fails closed).
    FailClosed,
}

/// Why a tenant's view is not available.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Never read and the store does not answer.
    #[error(
        "the control plane is unreachable and this replica has no configuration for the tenant yet"
    )]
    Unavailable,
}

/// Every tenant view this replica holds.
#[derive(Debug, Clone)]
pub struct Catalog {
    store: Store,
    ttl: Duration,
    tenants: Arc<RwLock<HashMap<String, Arc<TenantView>>>>,
    /// One refresh at a time per tenant.
    refreshing: Arc<tokio::sync::Mutex<()>>,
}

impl Catalog {
    /// A cache over `store` refreshing each tenant every `ttl`.
    pub fn new(store: Store, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            tenants: Arc::default(),
            refreshing: Arc::default(),
        }
    }

    fn cached(&self, tenant_id: &str) -> Option<Arc<TenantView>> {
        self.tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant_id)
            .cloned()
    }

    /// The tenant's view: the cached one (the background refresher keeps it within a ttl of
    /// the store, see [`Self::refresh_all`]), or read now on first use.
    pub async fn tenant(&self, tenant_id: &str) -> Result<Arc<TenantView>, CatalogError> {
        if let Some(view) = self.cached(tenant_id) {
            return Ok(view);
        }
        let _one = self.refreshing.lock().await;
        // Another task may have read it while this one waited.
        if let Some(view) = self.cached(tenant_id) {
            return Ok(view);
        }
        self.refresh(tenant_id).await
    }

    /// Re-read every tenant held whose view is older than the ttl (the refresher's tick).
    pub async fn refresh_all(&self) {
        for tenant in self.tenant_ids() {
            let due = self
                .cached(&tenant)
                .is_none_or(|v| v.fetched_at.elapsed() >= self.ttl);
            if due {
                let _ = self.refresh(&tenant).await;
            }
        }
    }

    /// Re-read one tenant now.
    pub async fn refresh(&self, tenant_id: &str) -> Result<Arc<TenantView>, CatalogError> {
        match self.read(tenant_id).await {
            Ok(view) => {
                let view = Arc::new(view);
                self.tenants
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(tenant_id.to_string(), view.clone());
                Ok(view)
            }
            Err(e) => {
                tracing::warn!(tenant = %tenant_id, error = %e, "gateway cannot refresh the tenant's configuration");
                let Some(stale) = self.cached(tenant_id) else {
                    return Err(CatalogError::Unavailable);
                };
                // Keep serving the last good view; retry after another ttl.
                let view = Arc::new(TenantView::new(
                    stale.config.clone(),
                    stale.policy.clone(),
                    stale.policy_revision,
                    false,
                ));
                self.tenants
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(tenant_id.to_string(), view.clone());
                Ok(view)
            }
        }
    }

    async fn read(&self, tenant_id: &str) -> Result<TenantView, StoreError> {
        let config = self.store.gateway_config(tenant_id).await?;
        let (policy, policy_revision) = match self.store.current_policy(tenant_id).await? {
            Some(record) => match Policy::parse(&record.policy) {
                Ok(p) => (p, Some(record.revision)),
                // The store validates on publish; a document this build cannot read fails closed.
                Err(e) => {
                    tracing::warn!(tenant = %tenant_id, revision = record.revision, "unreadable policy: {e}; failing closed");
                    (Policy::fail_closed(), Some(record.revision))
                }
            },
            None => (Policy::default(), None),
        };
        Ok(TenantView::new(config, policy, policy_revision, true))
    }

    /// Tenants this replica holds, with the revisions applied (for the heartbeat).
    pub fn applied(&self) -> Vec<(String, i64, Option<i64>, bool)> {
        self.tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(t, v)| {
                (
                    t.clone(),
                    v.config.revision,
                    v.policy_revision,
                    !v.config.upstreams.is_empty(),
                )
            })
            .collect()
    }

    /// Tenant ids held.
    pub fn tenant_ids(&self) -> Vec<String> {
        self.tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }
}
