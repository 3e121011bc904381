//! A small OpenID Connect provider on loopback for the dashboard's single sign-on tests:
//! discovery, an authorization endpoint that signs in one configured user at once (no
//! consent screen), a token endpoint that checks the PKCE verifier, the redirect URI and the
//! client, and a JWKS. ID tokens are ES256 with the role and tenant claims the API reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// Who the provider signs in.
#[derive(Debug, Clone)]
pub struct IdpUser {
    /// `sub`.
    pub subject: String,
    /// `agent_bom_role`.
    pub role: String,
    /// `agent_bom_tenant`.
    pub tenant: String,
}

struct Grant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: String,
}

struct Inner {
    issuer: String,
    key: EncodingKey,
    jwk: Jwk,
    user: Mutex<IdpUser>,
    grants: Mutex<HashMap<String, Grant>>,
    /// Token requests refused (a wrong verifier, say), for assertions.
    refusals: Mutex<Vec<String>>,
}

/// A running provider.
#[derive(Clone)]
pub struct Idp {
    inner: Arc<Inner>,
}

fn params(raw: &str) -> HashMap<String, String> {
    form_decode(raw.as_bytes())
}

fn form_decode(bytes: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

impl Idp {
    /// Start the provider on a loopback port.
    pub async fn start(user: IdpUser) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let key = EncodingKey::from_ec_der(&pair.serialize_der());
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some("idp-1".into());
        let idp = Self {
            inner: Arc::new(Inner {
                issuer,
                key,
                jwk,
                user: Mutex::new(user),
                grants: Mutex::new(HashMap::new()),
                refusals: Mutex::new(Vec::new()),
            }),
        };
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(discovery),
            )
            .route("/authorize", axum::routing::get(authorize))
            .route("/token", axum::routing::post(token))
            .route("/jwks.json", axum::routing::get(jwks))
            .with_state(idp.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        idp
    }

    /// The issuer URL.
    pub fn issuer(&self) -> String {
        self.inner.issuer.clone()
    }

    /// The JWKS URL (for the API's `--oidc-jwks-url`).
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks.json", self.inner.issuer)
    }

    /// Sign in another user from now on.
    pub fn set_user(&self, user: IdpUser) {
        *self.inner.user.lock().unwrap() = user;
    }

    /// Token requests refused so far, with why.
    pub fn refusals(&self) -> Vec<String> {
        self.inner.refusals.lock().unwrap().clone()
    }
}

async fn discovery(State(idp): State<Idp>) -> axum::Json<Value> {
    let i = &idp.inner.issuer;
    axum::Json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "jwks_uri": format!("{i}/jwks.json"),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "id_token_signing_alg_values_supported": ["ES256"],
    }))
}

async fn authorize(State(idp): State<Idp>, RawQuery(raw): RawQuery) -> Response {
    let p = params(&raw.unwrap_or_default());
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    if get("response_type") != "code" || get("code_challenge_method") != "S256" {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            "code flow with S256 only",
        )
            .into_response();
    }
    let code = uuid::Uuid::new_v4().to_string();
    idp.inner.grants.lock().unwrap().insert(
        code.clone(),
        Grant {
            client_id: get("client_id"),
            redirect_uri: get("redirect_uri"),
            challenge: get("code_challenge"),
            nonce: get("nonce"),
        },
    );
    let sep = if get("redirect_uri").contains('?') {
        '&'
    } else {
        '?'
    };
    Redirect::to(&format!(
        "{}{sep}code={code}&state={}",
        get("redirect_uri"),
        get("state")
    ))
    .into_response()
}

async fn token(State(idp): State<Idp>, body: axum::body::Bytes) -> Response {
    let p = form_decode(&body);
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    let refuse = |why: &str| {
        idp.inner.refusals.lock().unwrap().push(why.to_string());
        (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant", "error_description": why})),
        )
            .into_response()
    };
    let Some(grant) = idp.inner.grants.lock().unwrap().remove(&get("code")) else {
        return refuse("unknown or used code");
    };
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, get("code_verifier").as_bytes()),
    );
    if get("grant_type") != "authorization_code" {
        return refuse("grant_type");
    }
    if challenge != grant.challenge {
        return refuse("PKCE verifier does not match the challenge");
    }
    if get("client_id") != grant.client_id || get("redirect_uri") != grant.redirect_uri {
        return refuse("client or redirect URI differs from the authorization request");
    }
    let user = idp.inner.user.lock().unwrap().clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": idp.inner.issuer, "aud": grant.client_id, "sub": user.subject,
        "nonce": grant.nonce, "iat": now, "exp": now + 600,
        "agent_bom_role": user.role, "agent_bom_tenant": user.tenant,
    });
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("idp-1".into());
    let id_token = jsonwebtoken::encode(&header, &claims, &idp.inner.key).unwrap();
    axum::Json(json!({"id_token": id_token, "access_token": "opaque", "token_type": "Bearer", "expires_in": 600}))
        .into_response()
}

async fn jwks(State(idp): State<Idp>) -> axum::Json<Value> {
    axum::Json(
        serde_json::to_value(JwkSet {
            keys: vec![idp.inner.jwk.clone()],
        })
        .unwrap(),
    )
}
