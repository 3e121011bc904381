//! Who is calling: a gateway API key (an API key whose role and scopes allow `gateway:use`) or
//! a user's OAuth access token (a JWT from the control plane's OIDC provider, obtained by the
//! MCP client with the authorization-code flow and PKCE after discovering this resource's
//! metadata).
//!
//! Decisions are cached for a short time ([`crate::GatewayOptions::auth_cache`]) so a busy
//! session does not cost a database round trip per message; that time is also how long a
//! revoked or rotated-out key keeps working at most, and open event streams re-check their
//! credential at the same interval. While the control plane is unreachable the last decision
//! stands for up to [`STALE_DECISION_MAX`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_bom_control_plane::oidc::{OidcVerifier, looks_like_jwt};
use agent_bom_control_plane::permissions::{Permission, role_allows};
use agent_bom_control_plane::store::{Role, Store, StoreError};
use axum::http::HeaderMap;

/// Most cached decisions before the cache is cleared.
const MAX_CACHED: usize = 50_000;
/// While the control plane is unreachable, a decision made this recently is reused: nobody can
/// revoke a key in a store that does not answer, and refusing every caller would turn an outage
/// of the control plane into an outage of every upstream (the fail modes decide that).
pub const STALE_DECISION_MAX: Duration = Duration::from_secs(600);

/// An authenticated caller of the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The tenant every lookup of the call is scoped to.
    pub tenant_id: Arc<str>,
    /// What the audit records: `key:<prefix>` or `oidc:<subject>` (never a secret).
    pub name: Arc<str>,
}

/// Why a caller was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No usable credential: answered 401 with the resource-metadata challenge.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// A valid credential without `gateway:use`: 403.
    #[error("this credential lacks permission gateway:use")]
    Forbidden,
    /// The control plane could not be asked: 503.
    #[error("cannot check the credential: the control plane is unreachable")]
    Unavailable,
}

#[derive(Debug, Clone)]
enum Cached {
    Allowed(Principal),
    Denied(&'static str),
    Forbidden,
}

/// Authenticates gateway callers against the store (API keys) and the OIDC issuer (tokens).
#[derive(Debug, Clone)]
pub struct Authenticator {
    store: Store,
    oidc: Option<Arc<OidcVerifier>>,
    ttl: Duration,
    cache: Arc<Mutex<HashMap<String, (Instant, Cached)>>>,
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn may_use_gateway(role: Role, scopes: &[String]) -> bool {
    role_allows(role, Permission::GatewayUse)
        && (scopes.is_empty() || scopes.iter().any(|s| s == Permission::GatewayUse.name()))
}

impl Authenticator {
    /// An authenticator caching decisions for `ttl`.
    pub fn new(store: Store, oidc: Option<Arc<OidcVerifier>>, ttl: Duration) -> Self {
        Self {
            store,
            oidc,
            ttl,
            cache: Arc::default(),
        }
    }

    /// Authenticate `token`.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        // Keyed by a digest: the cache never holds a credential.
        let key = agent_bom_protocol::digest::sha256_hex(token.as_bytes());
        let now = Instant::now();
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        let replay = |cached: Cached| match cached {
            Cached::Allowed(p) => Ok(p),
            Cached::Denied(m) => Err(AuthError::Unauthenticated(m)),
            Cached::Forbidden => Err(AuthError::Forbidden),
        };
        if let Some((at, c)) = &cached
            && now.duration_since(*at) < self.ttl
        {
            return replay(c.clone());
        }
        let decided = self.decide(token).await;
        let cached = match &decided {
            Ok(p) => Cached::Allowed(p.clone()),
            Err(AuthError::Unauthenticated(m)) => Cached::Denied(m),
            Err(AuthError::Forbidden) => Cached::Forbidden,
            // The last decision stands while the control plane is unreachable (not refreshed:
            // its age keeps counting); a credential never seen is refused.
            Err(AuthError::Unavailable) => {
                return match cached {
                    Some((at, c)) if now.duration_since(at) < STALE_DECISION_MAX => replay(c),
                    _ => decided,
                };
            }
        };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(key, (now, cached));
        decided
    }

    async fn decide(&self, token: &str) -> Result<Principal, AuthError> {
        if let Some(oidc) = &self.oidc
            && looks_like_jwt(token)
        {
            let identity = oidc.verify(token).await.map_err(|e| {
                tracing::debug!(error = %e, "gateway refused an OIDC token");
                AuthError::Unauthenticated("invalid or expired access token")
            })?;
            let role: Role = identity
                .role
                .parse()
                .map_err(|_| AuthError::Unauthenticated("invalid or expired access token"))?;
            let tenant = match self.store.tenant_by_name(&identity.tenant).await {
                Ok(t) => t,
                Err(StoreError::NotFound(_)) => {
                    return Err(AuthError::Unauthenticated(
                        "invalid or expired access token",
                    ));
                }
                Err(e) => return Err(unavailable(&e)),
            };
            if !may_use_gateway(role, &[]) {
                return Err(AuthError::Forbidden);
            }
            return Ok(Principal {
                tenant_id: tenant.id.into(),
                name: format!("oidc:{}", identity.subject).into(),
            });
        }
        let key = self
            .store
            .authenticate_api_key(token)
            .await
            .map_err(|e| unavailable(&e))?
            .ok_or(AuthError::Unauthenticated(
                "invalid, expired or revoked API key",
            ))?;
        if !may_use_gateway(key.role, &key.scopes) {
            return Err(AuthError::Forbidden);
        }
        Ok(Principal {
            tenant_id: key.tenant_id.into(),
            name: format!("key:{}", key.prefix).into(),
        })
    }
}

fn unavailable(e: &StoreError) -> AuthError {
    tracing::warn!(error = %e, "gateway cannot check a credential");
    AuthError::Unavailable
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_roles_and_scopes_with_gateway_use_pass() {
        assert!(may_use_gateway(Role::Analyst, &[]));
        assert!(may_use_gateway(Role::Admin, &["gateway:use".into()]));
        assert!(!may_use_gateway(Role::Admin, &["fleet:read".into()]));
        assert!(!may_use_gateway(Role::Viewer, &[]));
        assert!(!may_use_gateway(Role::Viewer, &["gateway:use".into()]));
    }
}
