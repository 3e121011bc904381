//! Sign-in with OpenID Connect: the authorization-code flow with PKCE (S256), a `state` bound to
//! this browser by a short-lived cookie, and a `nonce` checked in the ID token. The ID token is
//! then the session's bearer credential: the API verifies its signature, issuer, audience and
//! expiry (its `--oidc-*` settings, with the dashboard's client id as the audience) and takes
//! role and tenant from its claims, exactly as for any OIDC caller. When the token expires the
//! API answers 401 and the session ends.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::session::random_token;

/// A sign-in that went to the identity provider must come back within this long.
pub const PENDING_TTL: Duration = Duration::from_secs(10 * 60);
/// Sign-ins in flight at once (beyond it the oldest are dropped).
const MAX_PENDING: usize = 1_000;
/// The cookie that binds a sign-in's `state` to the browser that started it.
pub const STATE_COOKIE: &str = "agent_bom_oidc_state";

/// The dashboard's OIDC client settings.
#[derive(Debug, Clone)]
pub struct OidcLogin {
    /// Issuer URL; its discovery document is `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// The dashboard's client id at the provider (also the audience the API expects).
    pub client_id: String,
    /// Client secret, for providers that require one of confidential clients.
    pub client_secret: Option<String>,
    /// Scopes asked for; `openid` is always among them.
    pub scopes: String,
}

impl OidcLogin {
    /// Settings for a public client with the default scopes.
    pub fn new(issuer: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            client_id: client_id.into(),
            client_secret: None,
            scopes: "openid profile email".into(),
        }
    }
}

/// The provider's endpoints, from its discovery document.
#[derive(Debug, Clone)]
pub(crate) struct Provider {
    pub authorization_endpoint: String,
    pub token_endpoint: String,
}

/// One sign-in waiting for the provider's answer.
struct Pending {
    verifier: String,
    nonce: String,
    redirect_uri: String,
    created: Instant,
}

/// The OIDC client: discovery (cached) and the sign-ins in flight.
#[derive(Default)]
pub(crate) struct OidcState {
    provider: tokio::sync::Mutex<Option<Provider>>,
    pending: Mutex<HashMap<String, Pending>>,
}

impl std::fmt::Debug for OidcState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OidcState")
    }
}

/// `base64url(SHA-256(verifier))`, the S256 code challenge.
pub(crate) fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        verifier.as_bytes(),
    ))
}

/// The `nonce` claim of a JWT's payload (not verified here: the API verifies the token).
pub(crate) fn nonce_of(jwt: &str) -> Option<String> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims["nonce"].as_str().map(str::to_string)
}

impl OidcState {
    /// The provider's endpoints, fetched once.
    pub(crate) async fn provider(
        &self,
        http: &reqwest::Client,
        login: &OidcLogin,
    ) -> Result<Provider, String> {
        let mut cached = self.provider.lock().await;
        if let Some(p) = cached.as_ref() {
            return Ok(p.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            login.issuer.trim_end_matches('/')
        );
        let doc: Value = http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| {
                format!("cannot read the identity provider's discovery document {url}: {e}")
            })?
            .json()
            .await
            .map_err(|e| format!("the discovery document {url} is not JSON: {e}"))?;
        if doc["issuer"].as_str().map(|i| i.trim_end_matches('/'))
            != Some(login.issuer.trim_end_matches('/'))
        {
            return Err(format!(
                "the discovery document names issuer {}, not {}",
                doc["issuer"], login.issuer
            ));
        }
        let endpoint = |k: &str| {
            doc[k]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("the discovery document has no {k}"))
        };
        let p = Provider {
            authorization_endpoint: endpoint("authorization_endpoint")?,
            token_endpoint: endpoint("token_endpoint")?,
        };
        *cached = Some(p.clone());
        Ok(p)
    }

    /// Start a sign-in: the `state` (for the cookie) and the provider URL to send the browser to.
    pub(crate) fn begin(
        &self,
        provider: &Provider,
        login: &OidcLogin,
        redirect_uri: &str,
    ) -> (String, String) {
        let state = random_token();
        let verifier = random_token();
        let nonce = random_token();
        let scopes = if login.scopes.split_whitespace().any(|s| s == "openid") {
            login.scopes.clone()
        } else {
            format!("openid {}", login.scopes)
        };
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &login.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &scopes)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge(&verifier))
            .append_pair("code_challenge_method", "S256")
            .finish();
        let sep = if provider.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!("{}{sep}{query}", provider.authorization_endpoint);
        let now = Instant::now();
        if let Ok(mut pending) = self.pending.lock() {
            pending.retain(|_, p| now.duration_since(p.created) < PENDING_TTL);
            if pending.len() >= MAX_PENDING
                && let Some(oldest) = pending
                    .iter()
                    .min_by_key(|(_, p)| p.created)
                    .map(|(k, _)| k.clone())
            {
                pending.remove(&oldest);
            }
            pending.insert(
                state.clone(),
                Pending {
                    verifier,
                    nonce,
                    redirect_uri: redirect_uri.to_string(),
                    created: now,
                },
            );
        }
        (state, url)
    }

    /// Finish a sign-in: exchange the code (with the PKCE verifier) for tokens and return the
    /// ID token, after checking the state belongs to this browser and the nonce matches.
    pub(crate) async fn finish(
        &self,
        http: &reqwest::Client,
        provider: &Provider,
        login: &OidcLogin,
        state: &str,
        browser_state: Option<&str>,
        code: &str,
    ) -> Result<String, String> {
        if !browser_state.is_some_and(|b| crate::session::same(b, state)) {
            return Err(
                "this sign-in was not started in this browser (state mismatch); start again".into(),
            );
        }
        let pending = self
            .pending
            .lock()
            .ok()
            .and_then(|mut p| p.remove(state))
            .filter(|p| p.created.elapsed() < PENDING_TTL)
            .ok_or("this sign-in expired or was already used; start again")?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", pending.redirect_uri.as_str()),
            ("client_id", login.client_id.as_str()),
            ("code_verifier", pending.verifier.as_str()),
        ];
        if let Some(secret) = &login.client_secret {
            form.push(("client_secret", secret.as_str()));
        }
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let answer = http
            .post(&provider.token_endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                format!("the identity provider's token endpoint could not be reached: {e}")
            })?;
        let status = answer.status();
        let tokens: Value = answer
            .json()
            .await
            .map_err(|e| format!("the token endpoint's answer is not JSON: {e}"))?;
        if !status.is_success() {
            return Err(format!(
                "the identity provider refused the code: {} {}",
                tokens["error"].as_str().unwrap_or("error"),
                tokens["error_description"].as_str().unwrap_or_default()
            ));
        }
        let id_token = tokens["id_token"]
            .as_str()
            .ok_or("the identity provider returned no ID token (is `openid` among the scopes?)")?;
        if nonce_of(id_token).as_deref() != Some(pending.nonce.as_str()) {
            return Err("the ID token's nonce does not match this sign-in".into());
        }
        Ok(id_token.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_challenge_matches_rfc7636() {
        // RFC 7636, appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn nonce_is_read_from_the_payload() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"nonce":"n-1","sub":"a"}"#);
        assert_eq!(nonce_of(&format!("h.{payload}.s")).as_deref(), Some("n-1"));
        assert_eq!(nonce_of("not-a-jwt"), None);
    }

    #[test]
    fn a_state_from_another_browser_is_refused() {
        let s = OidcState::default();
        let p = Provider {
            authorization_endpoint: "https://idp/authorize".into(),
            token_endpoint: "https://idp/token".into(),
        };
        let login = OidcLogin::new("https://idp", "ui");
        let (state, url) = s.begin(&p, &login, "https://cp/ui/login/oidc/callback");
        assert!(url.starts_with("https://idp/authorize?response_type=code&client_id=ui"));
        assert!(url.contains("code_challenge_method=S256") && url.contains(&state));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let http = reqwest::Client::new();
        let e = rt
            .block_on(s.finish(&http, &p, &login, &state, Some("other"), "code"))
            .unwrap_err();
        assert!(e.contains("state mismatch"), "{e}");
    }
}
