//! Operator login with OIDC bearer JWTs, beside API keys.
//!
//! A token is accepted when its signature verifies with a key of the issuer's JWKS (RS256 or
//! ES256, chosen by the key, never by the token), `iss` and `aud` match the configuration, and
//! it is within `exp`/`nbf` (60 s leeway). The tenant (by name) and the role come from claims.
//! Keys are cached by `kid`; an unknown `kid` refetches the JWKS (at most once per
//! `min_refresh`), so an issuer's key rotation is picked up without a restart, and keys the
//! issuer dropped stop working at the next refetch.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tokio::sync::Mutex;

/// Default claim holding the agent-bom role.
pub const DEFAULT_ROLE_CLAIM: &str = "agent_bom_role";
/// Default claim holding the tenant name.
pub const DEFAULT_TENANT_CLAIM: &str = "agent_bom_tenant";
/// Default of [`OidcConfig::fetch_timeout`].
pub const DEFAULT_JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a fetched JWKS is trusted before a routine refresh.
pub const JWKS_TTL: Duration = Duration::from_secs(600);

/// OIDC settings.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud` (one of).
    pub audience: String,
    /// Where the issuer publishes its keys.
    pub jwks_url: String,
    /// Claim with the role (`admin`, `analyst`, `viewer`).
    pub role_claim: String,
    /// Claim with the tenant name.
    pub tenant_claim: String,
    /// Least time between two JWKS fetches caused by unknown key ids.
    pub min_refresh: Duration,
    /// Longest a JWKS fetch may take.
    pub fetch_timeout: Duration,
}

impl OidcConfig {
    /// Settings with the default claim names and refresh interval.
    pub fn new(issuer: &str, audience: &str, jwks_url: &str) -> Self {
        Self {
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            jwks_url: jwks_url.to_string(),
            role_claim: DEFAULT_ROLE_CLAIM.to_string(),
            tenant_claim: DEFAULT_TENANT_CLAIM.to_string(),
            min_refresh: Duration::from_secs(10),
            fetch_timeout: DEFAULT_JWKS_FETCH_TIMEOUT,
        }
    }
}

/// Why a token was refused (the API answers all of them with the same 401).
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// Not a well-formed JWT, or an algorithm we do not accept.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// No JWKS key with the token's `kid`.
    #[error("unknown signing key {0:?}")]
    UnknownKey(String),
    /// Signature, issuer, audience or time checks failed.
    #[error("token rejected: {0}")]
    Invalid(String),
    /// The role or tenant claim is missing or unusable.
    #[error("token claims: {0}")]
    Claims(String),
    /// The JWKS could not be fetched.
    #[error("cannot fetch the JWKS from {url}: {message}")]
    Jwks {
        /// The URL.
        url: String,
        /// What failed.
        message: String,
    },
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcIdentity {
    /// `sub`.
    pub subject: String,
    /// Role claim value.
    pub role: String,
    /// Tenant name claim value.
    pub tenant: String,
}

#[derive(Debug, Default)]
struct Cache {
    keys: HashMap<String, (DecodingKey, Algorithm)>,
    fetched_at: Option<Instant>,
}

/// Verifies OIDC bearer tokens.
#[derive(Debug)]
pub struct OidcVerifier {
    config: OidcConfig,
    http: reqwest::Client,
    /// The keys last fetched. Only ever locked for a lookup or a swap, never across a fetch:
    /// a slow or hanging issuer must not stall requests whose key is already known.
    cache: std::sync::RwLock<Cache>,
    /// Held by the one request fetching the JWKS, so that a burst of unknown key ids causes
    /// one fetch, not one each. Requests whose key is cached never wait for it.
    fetching: Mutex<()>,
}

/// True when `token` looks like a JWT (three base64url parts), not an API key.
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3 && !token.starts_with("abk_")
}

impl OidcVerifier {
    /// A verifier for `config`.
    pub fn new(config: OidcConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.fetch_timeout)
            .build()
            .unwrap_or_default();
        Self {
            config,
            http,
            cache: std::sync::RwLock::new(Cache::default()),
            fetching: Mutex::new(()),
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, (DecodingKey, Algorithm)>, OidcError> {
        let err = |m: String| OidcError::Jwks {
            url: self.config.jwks_url.clone(),
            message: m,
        };
        let set: JwkSet = self
            .http
            .get(&self.config.jwks_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| err(e.to_string()))?
            .json()
            .await
            .map_err(|e| err(e.to_string()))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            let alg = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                _ => continue,
            };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid, (key, alg));
            }
        }
        Ok(keys)
    }

    /// The cached key `kid` and whether the cache is fresh, without waiting for anything.
    fn cached(&self, kid: &str) -> (Option<(DecodingKey, Algorithm)>, bool, Option<Instant>) {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        let fresh = cache.fetched_at.is_some_and(|t| t.elapsed() < JWKS_TTL);
        (cache.keys.get(kid).cloned(), fresh, cache.fetched_at)
    }

    async fn key_for(&self, kid: &str) -> Result<(DecodingKey, Algorithm), OidcError> {
        if let (Some(key), true, _) = self.cached(kid) {
            return Ok(key);
        }
        // A stale cache still answers while another request refreshes it.
        let gate = match self.fetching.try_lock() {
            Ok(gate) => gate,
            Err(_) => {
                if let (Some(key), _, _) = self.cached(kid) {
                    return Ok(key);
                }
                self.fetching.lock().await
            }
        };
        // Another request may have fetched while this one waited.
        let (key, fresh, fetched_at) = self.cached(kid);
        if let (Some(key), true) = (&key, fresh) {
            return Ok(key.clone());
        }
        let may_refetch =
            !fresh || fetched_at.is_none_or(|t| t.elapsed() >= self.config.min_refresh);
        if !may_refetch {
            return key.ok_or_else(|| OidcError::UnknownKey(kid.to_string()));
        }
        let keys = self.fetch().await?;
        let found = keys.get(kid).cloned();
        {
            let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
            cache.keys = keys;
            cache.fetched_at = Some(Instant::now());
        }
        drop(gate);
        found.ok_or_else(|| OidcError::UnknownKey(kid.to_string()))
    }

    /// Verify a token and read its identity.
    pub async fn verify(&self, token: &str) -> Result<OidcIdentity, OidcError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| OidcError::Malformed(e.to_string()))?;
        let kid = header
            .kid
            .ok_or_else(|| OidcError::Malformed("the token has no kid".into()))?;
        let (key, alg) = self.key_for(&kid).await?;
        if header.alg != alg {
            return Err(OidcError::Malformed(format!(
                "algorithm {:?} does not match key {kid:?}",
                header.alg
            )));
        }
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 60;
        let data = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|e| OidcError::Invalid(e.to_string()))?;
        let claims = data.claims;
        let text = |name: &str| {
            claims
                .get(name)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty() && v.len() <= 200)
                .map(str::to_string)
                .ok_or_else(|| OidcError::Claims(format!("claim {name:?} is missing")))
        };
        Ok(OidcIdentity {
            subject: text("sub")?,
            role: text(&self.config.role_claim)?,
            tenant: text(&self.config.tenant_claim)?,
        })
    }
}
