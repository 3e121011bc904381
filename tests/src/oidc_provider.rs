//! A test OIDC provider on loopback: signing keys and their JWKS (the operator-login tests), and
//! an OAuth 2.1 authorization server with the authorization-code flow, PKCE (S256 only) and
//! dynamic client registration, for MCP clients that log in to the gateway. It approves every
//! authorization at once (no login page) and issues ES256 access tokens with the agent-bom
//! tenant and role claims.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// A signing key with its id and public JWK.
#[derive(Clone)]
pub struct SigningKey {
    /// `kid`.
    pub kid: String,
    /// The private key.
    pub key: EncodingKey,
    /// The public half as a JWK.
    pub jwk: Jwk,
}

/// A fresh P-256 key called `kid`.
pub fn signing_key(kid: &str) -> SigningKey {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
    let key = EncodingKey::from_ec_der(&pair.serialize_der());
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).expect("JWK");
    jwk.common.key_id = Some(kid.to_string());
    SigningKey {
        kid: kid.to_string(),
        key,
        jwk,
    }
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// An ES256 JWT of `claims` signed by `k`.
pub fn token(k: &SigningKey, claims: Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(k.kid.clone());
    jsonwebtoken::encode(&header, &claims, &k.key).expect("sign")
}

/// A JWKS endpoint on loopback whose key set the test swaps; returns its URL.
pub async fn jwks_server(keys: Arc<Mutex<Vec<Jwk>>>) -> String {
    let app = axum::Router::new().route(
        "/jwks.json",
        get(move || {
            let keys = keys.clone();
            async move {
                let set = JwkSet {
                    keys: keys.lock().expect("keys").clone(),
                };
                axum::Json(serde_json::to_value(set).expect("JWKS"))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve JWKS") });
    format!("http://{addr}/jwks.json")
}

/// Who the authorization server logs in, and what its tokens say.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `sub`.
    pub subject: String,
    /// `agent_bom_role`.
    pub role: String,
    /// `agent_bom_tenant`.
    pub tenant: String,
    /// `aud` of the access tokens.
    pub audience: String,
}

struct Grant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
}

struct AsState {
    issuer: String,
    key: SigningKey,
    identity: Identity,
    codes: Mutex<HashMap<String, Grant>>,
    clients: Mutex<Vec<String>>,
    verified: AtomicU64,
    refused: AtomicU64,
}

/// A running authorization server.
pub struct AuthorizationServer {
    /// Its issuer URL (`http://127.0.0.1:PORT`).
    pub issuer: String,
    /// Its JWKS URL.
    pub jwks_url: String,
    state: Arc<AsState>,
}

impl AuthorizationServer {
    /// Start one that logs everyone in as `identity`.
    pub async fn start(identity: Identity) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let issuer = format!("http://{addr}");
        let state = Arc::new(AsState {
            issuer: issuer.clone(),
            key: signing_key("as-1"),
            identity,
            codes: Mutex::default(),
            clients: Mutex::default(),
            verified: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let app = axum::Router::new()
            .route("/.well-known/oauth-authorization-server", get(metadata))
            .route("/.well-known/openid-configuration", get(metadata))
            .route("/register", post(register))
            .route("/authorize", get(authorize))
            .route("/token", post(token_endpoint))
            .route("/jwks.json", get(jwks))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve AS") });
        Self {
            jwks_url: format!("{issuer}/jwks.json"),
            issuer,
            state,
        }
    }

    /// Token requests whose PKCE verifier matched the challenge.
    pub fn verified(&self) -> u64 {
        self.state.verified.load(Ordering::Relaxed)
    }

    /// Token requests refused (a wrong verifier, an unknown code, ...).
    pub fn refused(&self) -> u64 {
        self.state.refused.load(Ordering::Relaxed)
    }

    /// Clients registered dynamically.
    pub fn registered(&self) -> usize {
        self.state.clients.lock().expect("clients").len()
    }
}

async fn metadata(State(s): State<Arc<AsState>>) -> axum::Json<Value> {
    let i = &s.issuer;
    axum::Json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "registration_endpoint": format!("{i}/register"),
        "jwks_uri": format!("{i}/jwks.json"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "authorization_response_iss_parameter_supported": true,
    }))
}

async fn jwks(State(s): State<Arc<AsState>>) -> axum::Json<Value> {
    axum::Json(json!({"keys": [s.key.jwk]}))
}

async fn register(State(s): State<Arc<AsState>>, body: Bytes) -> Response {
    let Ok(mut meta) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "invalid client metadata").into_response();
    };
    let id = format!("client-{}", uuid::Uuid::new_v4().simple());
    s.clients.lock().expect("clients").push(id.clone());
    meta["client_id"] = json!(id);
    meta["client_id_issued_at"] = json!(now());
    meta["token_endpoint_auth_method"] = json!("none");
    (StatusCode::CREATED, axum::Json(meta)).into_response()
}

fn params(query: &str) -> HashMap<String, String> {
    serde_urlencoded::from_str(query).unwrap_or_default()
}

/// Approves at once: a code bound to the client, its redirect URI and its PKCE challenge.
async fn authorize(State(s): State<Arc<AsState>>, RawQuery(q): RawQuery) -> Response {
    let p = params(q.as_deref().unwrap_or_default());
    let (Some(client_id), Some(redirect_uri), Some(challenge)) = (
        p.get("client_id"),
        p.get("redirect_uri"),
        p.get("code_challenge"),
    ) else {
        return (
            StatusCode::BAD_REQUEST,
            "client_id, redirect_uri and code_challenge are required",
        )
            .into_response();
    };
    if p.get("code_challenge_method").map(String::as_str) != Some("S256")
        || p.get("response_type").map(String::as_str) != Some("code")
        || !s.clients.lock().expect("clients").contains(client_id)
    {
        return (
            StatusCode::BAD_REQUEST,
            "S256 PKCE, response_type=code and a registered client are required",
        )
            .into_response();
    }
    let code = uuid::Uuid::new_v4().simple().to_string();
    s.codes.lock().expect("codes").insert(
        code.clone(),
        Grant {
            client_id: client_id.clone(),
            redirect_uri: redirect_uri.clone(),
            challenge: challenge.clone(),
        },
    );
    let mut location = format!("{redirect_uri}?code={code}&iss={}", urlencode(&s.issuer));
    if let Some(state) = p.get("state") {
        location.push_str(&format!("&state={}", urlencode(state)));
    }
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("v", s)])
        .map(|e| e.trim_start_matches("v=").to_string())
        .unwrap_or_default()
}

/// base64url without padding.
fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

async fn token_endpoint(State(s): State<Arc<AsState>>, body: Bytes) -> Response {
    let p = params(&String::from_utf8_lossy(&body));
    let refuse = |why: &str| {
        s.refused.fetch_add(1, Ordering::Relaxed);
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant", "error_description": why})),
        )
            .into_response()
    };
    if p.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return refuse("only authorization_code");
    }
    let Some(grant) = p
        .get("code")
        .and_then(|c| s.codes.lock().expect("codes").remove(c))
    else {
        return refuse("unknown or used code");
    };
    let verifier = p.get("code_verifier").cloned().unwrap_or_default();
    let computed =
        b64url(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref());
    if computed != grant.challenge {
        return refuse("PKCE verifier does not match the challenge");
    }
    if p.get("client_id") != Some(&grant.client_id)
        || p.get("redirect_uri") != Some(&grant.redirect_uri)
    {
        return refuse("client or redirect URI differs from the authorization");
    }
    s.verified.fetch_add(1, Ordering::Relaxed);
    let i = &s.identity;
    let access = token(
        &s.key,
        json!({
            "iss": s.issuer, "aud": i.audience, "sub": i.subject, "iat": now(), "exp": now() + 300,
            "agent_bom_role": i.role, "agent_bom_tenant": i.tenant,
        }),
    );
    axum::Json(json!({"access_token": access, "token_type": "Bearer", "expires_in": 300}))
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64url_matches_rfc_7636_appendix_b() {
        let challenge = super::b64url(
            aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                b"dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            )
            .as_ref(),
        );
        assert_eq!(challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }
}
