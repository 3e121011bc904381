//! Who may do what: the one permission matrix, the route table, the authenticated caller, and
//! per-key / per-tenant rate limits.
//!
//! `docs/roles.md` is generated from [`ROLE_MATRIX`] and [`ROUTES`] by [`permissions_markdown`]; a
//! test keeps the two in step.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::{ApiError, AppState, ErrorCode};
pub use crate::permissions::{Grant, Permission, ROLE_MATRIX, role_allows};
use crate::service::Actor;
use crate::store::{Role, now_ms};

/// One API route: method, path (axum syntax), what it needs, and a summary.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    /// HTTP method.
    pub method: &'static str,
    /// Path with `{param}` placeholders.
    pub path: &'static str,
    /// Needed permission; `None` for public routes.
    pub permission: Option<Permission>,
    /// One line.
    pub summary: &'static str,
}

const fn route(
    method: &'static str,
    path: &'static str,
    permission: Option<Permission>,
    summary: &'static str,
) -> RouteSpec {
    RouteSpec {
        method,
        path,
        permission,
        summary,
    }
}

/// Every route of the API (the router, the docs, the OpenAPI document and the authorization
/// test matrix all read this table).
pub const ROUTES: &[RouteSpec] = &[
    route("GET", "/healthz", None, "Liveness and database check"),
    route(
        "GET",
        "/readyz",
        None,
        "Readiness: the database answers and is migrated",
    ),
    route("GET", "/openapi.json", None, "This API's OpenAPI document"),
    route(
        "GET",
        "/v1/audit/export-key",
        None,
        "Public key that verifies signed exports",
    ),
    route(
        "GET",
        "/v1/tenants",
        Some(Permission::TenantsAdmin),
        "List tenants",
    ),
    route(
        "POST",
        "/v1/tenants",
        Some(Permission::TenantsAdmin),
        "Create a tenant",
    ),
    route(
        "GET",
        "/v1/tenants/{name}/quotas",
        Some(Permission::TenantsAdmin),
        "Read a tenant's quotas",
    ),
    route(
        "PUT",
        "/v1/tenants/{name}/quotas",
        Some(Permission::TenantsAdmin),
        "Set a tenant's quotas",
    ),
    route(
        "GET",
        "/v1/keys",
        Some(Permission::KeysRead),
        "List API keys",
    ),
    route(
        "POST",
        "/v1/keys",
        Some(Permission::KeysWrite),
        "Create an API key (shown once)",
    ),
    route(
        "GET",
        "/v1/keys/{id}",
        Some(Permission::KeysRead),
        "One API key",
    ),
    route(
        "DELETE",
        "/v1/keys/{id}",
        Some(Permission::KeysWrite),
        "Revoke an API key now",
    ),
    route(
        "POST",
        "/v1/keys/{id}/rotate",
        Some(Permission::KeysWrite),
        "Rotate: new key, old one valid for the overlap",
    ),
    route(
        "GET",
        "/v1/enrollment-tokens",
        Some(Permission::FleetWrite),
        "List enrollment tokens (metadata only)",
    ),
    route(
        "POST",
        "/v1/enrollment-tokens",
        Some(Permission::FleetWrite),
        "Create an enrollment token (shown once)",
    ),
    route(
        "DELETE",
        "/v1/enrollment-tokens/{id}",
        Some(Permission::FleetWrite),
        "Revoke an enrollment token",
    ),
    route(
        "GET",
        "/v1/fleet/endpoints",
        Some(Permission::FleetRead),
        "List endpoints (filters, sort, cursor)",
    ),
    route(
        "GET",
        "/v1/fleet/endpoints/{id}",
        Some(Permission::FleetRead),
        "Endpoint detail",
    ),
    route(
        "PATCH",
        "/v1/fleet/endpoints/{id}",
        Some(Permission::FleetWrite),
        "Set owner, environment, tags",
    ),
    route(
        "DELETE",
        "/v1/fleet/endpoints/{id}",
        Some(Permission::FleetWrite),
        "Delete an endpoint",
    ),
    route(
        "POST",
        "/v1/fleet/endpoints/{id}/state",
        Some(Permission::FleetWrite),
        "Lifecycle transition",
    ),
    route(
        "POST",
        "/v1/fleet/endpoints/{id}/reenroll-token",
        Some(Permission::FleetWrite),
        "Issue a re-enroll token: the device enrolling with it replaces the endpoint",
    ),
    route(
        "GET",
        "/v1/fleet/endpoints/{id}/timeline",
        Some(Permission::FleetRead),
        "What changed between the endpoint's inventories: servers and clients added, removed, changed",
    ),
    route(
        "POST",
        "/v1/fleet/endpoints/{id}/pins/deny",
        Some(Permission::FleetWrite),
        "Deny changed tool definitions: they stay blocked, and the decision is audited",
    ),
    route(
        "GET",
        "/v1/fleet/endpoints/{id}/commands",
        Some(Permission::FleetRead),
        "Commands of an endpoint with state and answers",
    ),
    route(
        "POST",
        "/v1/fleet/endpoints/{id}/commands",
        Some(Permission::FleetWrite),
        "Queue a command for the endpoint's agent",
    ),
    route(
        "GET",
        "/v1/policy",
        Some(Permission::PolicyRead),
        "The proxy policy in force and its rollout",
    ),
    route(
        "PUT",
        "/v1/policy",
        Some(Permission::PolicyWrite),
        "Publish the next proxy policy revision",
    ),
    route(
        "GET",
        "/v1/policy/revisions",
        Some(Permission::PolicyRead),
        "Proxy policy revisions, newest first",
    ),
    route(
        "GET",
        "/v1/policy/rollout",
        Some(Permission::PolicyRead),
        "The policy's rollout: counts and the agents not on the revision in force",
    ),
    route(
        "GET",
        "/v1/fleet/events",
        Some(Permission::FleetRead),
        "Server-sent events: which endpoint changed (status, inventory, commands, record)",
    ),
    route(
        "GET",
        "/v1/fleet/servers",
        Some(Permission::FleetRead),
        "MCP servers grouped by identity",
    ),
    route(
        "POST",
        "/v1/fleet/sync",
        Some(Permission::FleetSync),
        "agent-bom compatible push",
    ),
    route(
        "GET",
        "/v1/fleet/export",
        Some(Permission::AuditExport),
        "Signed NDJSON export of the fleet",
    ),
    route(
        "GET",
        "/v1/posture/counts",
        Some(Permission::PostureRead),
        "Counts and deployment mode",
    ),
    route(
        "GET",
        "/v1/posture/history",
        Some(Permission::PostureRead),
        "Posture samples over a window (24h, 7d, 30d) for trend charts",
    ),
    route(
        "GET",
        "/v1/me",
        Some(Permission::PostureRead),
        "The caller: tenant, identity, role, permissions, quotas and usage",
    ),
    route(
        "GET",
        "/v1/gateway",
        Some(Permission::PolicyRead),
        "Gateway upstreams, tenant limit, replicas serving the tenant and the revisions they applied",
    ),
    route(
        "PUT",
        "/v1/gateway/upstreams/{name}",
        Some(Permission::PolicyWrite),
        "Create or replace a gateway upstream (URL, transport, fail mode, rate)",
    ),
    route(
        "DELETE",
        "/v1/gateway/upstreams/{name}",
        Some(Permission::PolicyWrite),
        "Remove a gateway upstream",
    ),
    route(
        "PUT",
        "/v1/gateway/limits",
        Some(Permission::PolicyWrite),
        "Set the tenant-wide gateway call rate across replicas",
    ),
    route(
        "GET",
        "/v1/gateway/events",
        Some(Permission::AuditRead),
        "Gateway audit events, each with the user or key that made the call",
    ),
    route(
        "POST",
        "/v1/gateway/upstreams/{name}/pin-approvals",
        Some(Permission::PolicyWrite),
        "Approve changed tool definitions of a gateway upstream at every replica",
    ),
    route(
        "GET",
        "/v1/gateway/pin-approvals",
        Some(Permission::PolicyRead),
        "Gateway pin approvals",
    ),
    route(
        "DELETE",
        "/v1/gateway/pin-approvals/{id}",
        Some(Permission::PolicyWrite),
        "Withdraw a gateway pin approval",
    ),
    route(
        "GET",
        "/v1/audit",
        Some(Permission::AuditRead),
        "Query the audit log",
    ),
    route(
        "GET",
        "/v1/audit/verify",
        Some(Permission::AuditRead),
        "Verify the audit hash chain",
    ),
    route(
        "GET",
        "/v1/audit/export",
        Some(Permission::AuditExport),
        "Signed NDJSON export of the audit log",
    ),
    route(
        "GET",
        "/v1/releases",
        Some(Permission::FleetRead),
        "Published agent builds (per version, OS, architecture; channel, SHA-256, signature)",
    ),
    route(
        "GET",
        "/v1/rollouts",
        Some(Permission::FleetRead),
        "The tenant's agent rollouts",
    ),
    route(
        "POST",
        "/v1/rollouts",
        Some(Permission::FleetWrite),
        "Start a staged rollout of a published version (rings, soak, halt thresholds)",
    ),
    route(
        "GET",
        "/v1/rollouts/{id}",
        Some(Permission::FleetRead),
        "A rollout and its progress per ring (offered, succeeded, failed, ...)",
    ),
    route(
        "POST",
        "/v1/rollouts/{id}/pause",
        Some(Permission::FleetWrite),
        "Pause a rollout (offers not yet delivered are withdrawn)",
    ),
    route(
        "POST",
        "/v1/rollouts/{id}/resume",
        Some(Permission::FleetWrite),
        "Resume a paused or halted rollout (failures count afresh)",
    ),
    route(
        "POST",
        "/v1/rollouts/{id}/advance",
        Some(Permission::FleetWrite),
        "Start the rollout's next ring now",
    ),
    route(
        "POST",
        "/v1/rollouts/{id}/cancel",
        Some(Permission::FleetWrite),
        "End a rollout (offers not yet delivered are withdrawn)",
    ),
    route(
        "GET",
        "/install/agent.sh",
        None,
        "Install script for Linux and macOS, bound to this control plane (no token inside)",
    ),
    route(
        "GET",
        "/install/agent.ps1",
        None,
        "Install script for Windows, bound to this control plane (no token inside)",
    ),
    route(
        "GET",
        "/install/latest",
        None,
        "The newest agent build of a channel for an OS and architecture, with its signature",
    ),
    route(
        "GET",
        "/install/releases/{id}",
        None,
        "An agent build (checked by agents and installers against the pinned release key)",
    ),
];

/// The generated part of `docs/roles.md`.
pub fn permissions_markdown() -> String {
    let mut out = String::from(
        "<!-- generated from control-plane/core/src/api/auth.rs; a test keeps it in step -->\n\n\
         | Permission | admin | analyst | viewer | Grants |\n|---|---|---|---|---|\n",
    );
    let mark = |b: bool| if b { "yes" } else { "no" };
    for (p, roles) in ROLE_MATRIX {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            p.name(),
            mark(roles[0]),
            mark(roles[1]),
            mark(roles[2]),
            p.describe()
        ));
    }
    out.push_str("\n| Method | Path | Needs | Summary |\n|---|---|---|---|\n");
    for r in ROUTES {
        out.push_str(&format!(
            "| {} | `{}` | {} | {} |\n",
            r.method,
            r.path,
            r.permission
                .map_or("public".to_string(), |p| format!("`{}`", p.name())),
            r.summary
        ));
    }
    out
}

/// The authenticated caller (an API key or an OIDC token): a tenant, a role, optional scopes.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Tenant id: every query of the request is scoped to it.
    tenant: String,
    /// Role.
    pub role: Role,
    /// Scopes (empty = the whole role).
    pub scopes: Vec<String>,
    /// Tenant management across the installation.
    pub super_admin: bool,
    /// Audit actor: `key:<prefix>` or `oidc:<subject>`.
    actor: String,
}

impl Caller {
    /// The caller's tenant: every query of the request is scoped to it.
    pub fn tenant_id(&self) -> &str {
        &self.tenant
    }

    /// Audit actor name (never the secret).
    pub fn actor(&self) -> String {
        self.actor.clone()
    }

    /// Whether the caller has `permission`: the role allows it, the scopes (if any) include it,
    /// and for tenant management the caller is a super-admin.
    pub fn can(&self, permission: Permission) -> bool {
        self.grant().allows(permission)
            && (permission != Permission::TenantsAdmin || self.super_admin)
    }

    /// The caller's role and scopes.
    pub fn grant(&self) -> Grant {
        Grant::new(self.role, &self.scopes)
    }

    /// The caller as the service layer records it: its audit name, its tenant, and whether it
    /// may manage tenants and super-admin keys.
    pub fn as_actor(&self) -> Actor {
        Actor::member(
            self.actor.clone(),
            &self.tenant,
            self.can(Permission::TenantsAdmin),
            self.grant(),
        )
    }

    /// 403 unless the caller has `permission`.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.can(permission) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                &format!(
                    "this caller (role {}) lacks permission {}",
                    self.role.as_str(),
                    permission.name()
                ),
            ))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // An address that keeps failing is refused before its credential costs a lookup.
        let client = super::listener::client_address(&parts.extensions);
        state.auth_failures.check(client)?;
        let caller = Self::authenticate(parts, state).await;
        if let Err(e) = &caller
            && e.code() == ErrorCode::Unauthorized
        {
            state.auth_failures.failed(client);
        }
        caller
    }
}

impl Caller {
    /// The caller a request's `Authorization` header proves, within its rate limits.
    async fn authenticate(parts: &Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized(
                "missing Authorization header: send `Authorization: Bearer <API key>`",
            )
        })?;
        let presented =
            header.to_str().ok().and_then(bearer_token).ok_or_else(|| {
                ApiError::unauthorized("Authorization must use the Bearer scheme")
            })?;
        if let Some(oidc) = &state.oidc
            && crate::oidc::looks_like_jwt(presented)
        {
            let identity = oidc.verify(presented).await.map_err(|e| {
                tracing::debug!(error = %e, "OIDC token refused");
                ApiError::unauthorized("invalid or expired bearer token")
            })?;
            let role: Role = identity
                .role
                .parse()
                .map_err(|_| ApiError::unauthorized("invalid or expired bearer token"))?;
            let tenant = match state.store.tenant_by_name(&identity.tenant).await {
                Ok(t) => t,
                Err(crate::store::StoreError::NotFound(_)) => {
                    return Err(ApiError::unauthorized("invalid or expired bearer token"));
                }
                Err(e) => return Err(e.into()),
            };
            let principal = format!("oidc:{}", identity.subject);
            state.limiter.check(state, &tenant.id, &principal).await?;
            return Ok(Self {
                tenant: tenant.id,
                role,
                scopes: Vec::new(),
                super_admin: false,
                actor: principal,
            });
        }
        let key = state
            .store
            .authenticate_api_key(presented)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::unauthorized("invalid, expired or revoked API key"))?;
        state
            .limiter
            .check(state, &key.tenant_id, &format!("key:{}", key.id))
            .await?;
        Ok(Self {
            actor: format!("key:{}", key.prefix),
            tenant: key.tenant_id,
            role: key.role,
            scopes: key.scopes,
            super_admin: key.super_admin,
        })
    }
}

/// The credential of an `Authorization` value in the Bearer scheme. The scheme name is
/// case-insensitive (RFC 9110 §11.1), followed by one or more spaces.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    let token = rest.trim_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Default requests per minute for one key.
pub const DEFAULT_RATE_PER_KEY_PER_MIN: i64 = 1_200;
/// Default requests per minute for a tenant.
pub const DEFAULT_RATE_PER_TENANT_PER_MIN: i64 = 12_000;
const LIMITS_TTL_MS: i64 = 5_000;

/// (fetched at, per key, per tenant) limits of a tenant.
type CachedLimits = (i64, i64, i64);

/// Per-key and per-tenant request rates, counted in the store's shared windows
/// ([`crate::ratelimit`]) so they hold across API replicas; each tenant's limits are cached
/// for a few seconds.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    shared: crate::ratelimit::SharedLimiter,
    /// Cached limits per tenant.
    limits: Arc<Mutex<HashMap<String, CachedLimits>>>,
}

impl RateLimiter {
    /// A limiter counting in `store`.
    pub fn new(store: crate::store::Store) -> Self {
        Self {
            shared: crate::ratelimit::SharedLimiter::new(store),
            limits: Arc::default(),
        }
    }

    async fn limits(
        &self,
        state: &AppState,
        tenant: &str,
        now: i64,
    ) -> Result<(i64, i64), ApiError> {
        if let Ok(c) = self.limits.lock()
            && let Some((at, k, t)) = c.get(tenant)
            && now - at < LIMITS_TTL_MS
        {
            return Ok((*k, *t));
        }
        let q = state.store.tenant_quotas(tenant).await?;
        let k = q
            .rate_per_key_per_min
            .unwrap_or(DEFAULT_RATE_PER_KEY_PER_MIN);
        let t = q
            .rate_per_tenant_per_min
            .unwrap_or(DEFAULT_RATE_PER_TENANT_PER_MIN);
        if let Ok(mut c) = self.limits.lock() {
            c.insert(tenant.to_string(), (now, k, t));
        }
        Ok((k, t))
    }

    /// Drop the cached limits of a tenant (after its quotas changed).
    pub fn forget(&self, tenant: &str) {
        if let Ok(mut c) = self.limits.lock() {
            c.remove(tenant);
        }
    }

    /// Count a request of `principal` (a key or an OIDC subject) in `tenant`; 429 with
    /// Retry-After when the principal or its tenant is over its rate.
    pub async fn check(
        &self,
        state: &AppState,
        tenant: &str,
        principal: &str,
    ) -> Result<(), ApiError> {
        let (per_key, per_tenant) = self.limits(state, tenant, now_ms()).await?;
        for (bucket, limit, what) in [
            (format!("api:p:{principal}"), per_key, "this API key"),
            ("api:tenant".to_string(), per_tenant, "this tenant"),
        ] {
            if let crate::ratelimit::Decision::Limited { retry_after_s } =
                self.shared.acquire(tenant, &bucket, limit).await?
            {
                return Err(ApiError::rate_limited(
                    &format!("rate limit of {limit} requests per minute exceeded for {what}"),
                    retry_after_s,
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in [
            "Bearer abk_x",
            "bearer abk_x",
            "BEARER abk_x",
            "bEaReR   abk_x ",
        ] {
            assert_eq!(bearer_token(value), Some("abk_x"), "{value:?}");
        }
        for value in [
            "Basic abk_x",
            "Bearerabk_x",
            "Bearer ",
            "Bearer",
            "abk_x",
            "",
        ] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
    }

    #[test]
    fn matrix_is_complete_and_ordered() {
        for (i, p) in Permission::ALL.iter().enumerate() {
            assert_eq!(ROLE_MATRIX[i].0, *p);
            assert_eq!(Permission::parse(p.name()), Some(*p));
        }
        assert!(role_allows(Role::Viewer, Permission::FleetRead));
        assert!(!role_allows(Role::Viewer, Permission::KeysRead));
        assert!(!role_allows(Role::Analyst, Permission::FleetWrite));
        assert!(role_allows(Role::Admin, Permission::KeysWrite));
    }

    #[test]
    fn docs_are_generated_from_the_matrix() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/roles.md");
        let generated = permissions_markdown();
        let begin = "<!-- BEGIN GENERATED -->\n";
        let end = "<!-- END GENERATED -->";
        let doc = std::fs::read_to_string(path).unwrap_or_default();
        let current = doc
            .split_once(begin)
            .and_then(|(_, rest)| rest.split_once(end))
            .map(|(g, _)| g.to_string());
        if current.as_deref() != Some(generated.as_str()) {
            if std::env::var_os("AGENT_BOM_UPDATE_DOCS").is_some() {
                let (head, tail) = match doc.split_once(begin) {
                    Some((h, rest)) => (
                        h.to_string(),
                        rest.split_once(end)
                            .map_or(String::new(), |(_, t)| t.to_string()),
                    ),
                    None => (doc.clone(), "\n".to_string()),
                };
                std::fs::write(path, format!("{head}{begin}{generated}{end}{tail}")).unwrap();
            } else {
                panic!(
                    "docs/roles.md is out of date with the permission matrix; rerun this test with AGENT_BOM_UPDATE_DOCS=1"
                );
            }
        }
    }
}
