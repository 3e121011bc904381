//! The agent-bom dashboard, the UI companion. It speaks only the public `/v1` API (an HTTP
//! client with the signed-in caller's credential), never the store, so the same router runs on
//! the API's own origin (`agent-bom serve`, `agent-bom up`) or alone in front of a remote API
//! (`agent-bom ui --api https://cp.internal`, cluster mode).
//!
//! Pages are rendered on the server; the one script (`assets/app.js`, ours, no library) only
//! refreshes live regions and confirms destructive actions, so every page works without it and
//! the Content-Security-Policy allows no inline script at all.

#![forbid(unsafe_code)]

pub mod api;
mod chart;
mod html;
mod layout;
mod live;
mod nav;
pub mod oidc;
mod pages;
mod posture;
pub mod security;
pub mod session;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::Value;

use crate::api::{ApiClient, ApiFailure};
use crate::html::esc;
use crate::session::{Credential, Flash, Session, SessionKey, Sessions};

/// How long `/v1/me` is reused before a page asks again (role or quota changes show within it).
const ME_TTL: Duration = Duration::from_secs(30);

/// Errors building the dashboard.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// A setting is invalid.
    #[error("dashboard configuration: {0}")]
    Config(String),
    /// Serving failed.
    #[error("dashboard server: {0}")]
    Io(String),
}

/// What the dashboard needs.
#[derive(Debug, Clone)]
pub struct UiConfig {
    /// Base URL of the API (`http://127.0.0.1:8422`, `https://cp.internal`).
    pub api_url: String,
    /// PEM certificates trusted for the API besides the system roots (a private CA).
    pub api_ca_pem: Option<Vec<u8>>,
    /// Browsers reach the dashboard over HTTPS: the session cookie is `Secure` and
    /// `__Host-`-prefixed.
    pub secure_cookies: bool,
    /// How often live regions (the fleet table, an endpoint's commands) refresh.
    pub live_interval: Duration,
    /// The API's URL as machines and people reach it (install commands); when unset, the
    /// dashboard's own origin (right when it is served on the API's origin).
    pub public_api_url: Option<String>,
    /// Sign-in with an OpenID Connect provider, besides API keys.
    pub oidc: Option<oidc::OidcLogin>,
    /// File with the secret that seals session cookies (see [`session`]); every replica of the
    /// dashboard must have the same. Unset: a random key of this process (sessions end when it
    /// restarts; a second replica would not accept them).
    pub session_key_file: Option<std::path::PathBuf>,
    /// Create [`Self::session_key_file`] with a fresh secret when it does not exist (`serve`
    /// and `up`, which keep it in their data directory).
    pub create_session_key: bool,
}

impl UiConfig {
    /// Defaults for an API at `api_url`.
    pub fn new(api_url: impl Into<String>) -> Self {
        Self {
            api_url: api_url.into(),
            api_ca_pem: None,
            secure_cookies: false,
            live_interval: Duration::from_secs(5),
            public_api_url: None,
            oidc: None,
            session_key_file: None,
            create_session_key: false,
        }
    }
}

/// The dashboard: its router and its sign-in links.
#[derive(Debug, Clone)]
pub struct Ui {
    state: Arc<UiState>,
}

#[derive(Debug)]
pub(crate) struct UiState {
    pub api: ApiClient,
    pub sessions: Sessions,
    pub config: UiConfig,
    pub oidc: oidc::OidcState,
    pub posture: posture::PostureCache,
    /// Set when the dashboard shuts down: relayed event streams end (see `live`).
    pub stop: tokio::sync::watch::Sender<bool>,
}

impl Ui {
    /// A dashboard in front of the API of `config`.
    pub fn new(config: UiConfig) -> Result<Self, UiError> {
        let api = ApiClient::new(&config.api_url, config.api_ca_pem.as_deref())?;
        let key = match &config.session_key_file {
            Some(path) if config.create_session_key => SessionKey::load_or_create(path),
            Some(path) => SessionKey::from_file(path),
            None => Ok(SessionKey::ephemeral()),
        }
        .map_err(|e| UiError::Config(e.to_string()))?;
        Ok(Self {
            state: Arc::new(UiState {
                api,
                sessions: Sessions::new(key),
                config,
                oidc: oidc::OidcState::default(),
                posture: posture::PostureCache::default(),
                stop: tokio::sync::watch::channel(false).0,
            }),
        })
    }

    /// The path of a one-time sign-in link for `api_key` (valid once, for ten minutes), e.g.
    /// for `agent-bom up` to print.
    pub fn sign_in_link(&self, api_key: &str) -> String {
        let token = self.state.sessions.create_link(Credential::new(api_key));
        format!("/ui/login/link/{token}")
    }

    /// The dashboard's routes: `/` and everything under `/ui/`. No fallback, so it merges with
    /// the API's router on one origin.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(|| async { Redirect::to("/ui/") }))
            .route("/ui", get(|| async { Redirect::to("/ui/") }))
            .route("/ui/assets/{name}", get(asset))
            .route("/ui/login", get(login_form).post(login))
            .route("/ui/login/link/{token}", get(login_link))
            .route("/ui/login/oidc", get(oidc_begin))
            .route("/ui/login/oidc/callback", get(oidc_callback))
            .route("/ui/logout", post(logout))
            .route("/ui/events", get(live::events))
            .merge(pages::routes())
            .layer(axum::middleware::from_fn_with_state(
                self.state.clone(),
                refresh_session,
            ))
            .layer(axum::middleware::from_fn(security::headers))
            .with_state(self.state.clone())
    }
}

/// Serve the dashboard alone on `listener` until `shutdown` resolves (the companion deployable).
pub async fn serve(
    listener: tokio::net::TcpListener,
    ui: Ui,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), UiError> {
    let app = ui.router().fallback(|| async {
        (StatusCode::NOT_FOUND, Html("<!doctype html><title>Not found</title><p>Not found. <a href=\"/ui/\">Dashboard</a></p>"))
    });
    let stop = ui.state.stop.clone();
    let shutdown = async move {
        shutdown.await;
        stop.send_replace(true);
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| UiError::Io(e.to_string()))
}

/// Re-seal the session cookie with a fresh last-use time once the one it carries is
/// [`session::REFRESH_AFTER`] old (the idle timeout counts from it), unless the response sets
/// the session cookie itself (sign-in, sign-out). Checked after the handler: a session it
/// ended is not renewed.
async fn refresh_session(
    State(state): State<Arc<UiState>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let secure = state.config.secure_cookies;
    let cookie = security::session_cookie_value(request.headers(), secure);
    let mut response = next.run(request).await;
    let Some(cookie) = cookie else {
        return response;
    };
    let name = format!("{}=", security::cookie_name(secure));
    let sets_it = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|v| v.as_bytes().starts_with(name.as_bytes()));
    if sets_it {
        return response;
    }
    if let Some(value) = state
        .sessions
        .get(&cookie)
        .filter(Session::needs_refresh)
        .and_then(|s| state.sessions.refreshed(&s))
        && let Ok(v) = HeaderValue::from_str(&security::session_cookie(&value, secure))
    {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// A signed-in request: its session and what the layout needs.
pub(crate) struct Ctx {
    pub session: Session,
    /// The message of the last redirect (its cookie is cleared by the page that shows it).
    pub flash: Option<Flash>,
    /// Cookies are `Secure` (the page that shows a flash clears its cookie by this name).
    pub secure_cookies: bool,
    empty: Value,
}

impl Ctx {
    /// `/v1/posture/counts` (an empty object if it could not be read).
    pub(crate) fn posture(&self) -> &Value {
        self.session
            .posture
            .as_ref()
            .map_or(&self.empty, |(_, p)| p)
    }

    /// Whether the caller holds `permission`.
    pub(crate) fn can(&self, permission: &str) -> bool {
        nav::permissions(&self.session.me).contains(&permission)
    }

    /// The hidden CSRF field of a form.
    pub(crate) fn csrf_input(&self) -> String {
        format!(
            r#"<input type="hidden" name="csrf" value="{}">"#,
            esc(&self.session.csrf)
        )
    }

    pub(crate) fn credential(&self) -> &Credential {
        &self.session.credential
    }
}

impl UiState {
    /// The signed-in context of a request, or the response to send instead (a redirect to
    /// sign-in, or an error page).
    pub(crate) async fn ctx(&self, headers: &HeaderMap) -> Result<Ctx, Response> {
        let secure = self.config.secure_cookies;
        let to_login = || Redirect::to("/ui/login").into_response();
        let cookie = security::session_cookie_value(headers, secure).ok_or_else(to_login)?;
        let mut session = self.sessions.get(&cookie).ok_or_else(to_login)?;
        if session.me_at.is_none_or(|at| at.elapsed() > ME_TTL) {
            match self.api.get(&session.credential, "/v1/me").await {
                Ok(me) => {
                    session.me = me.clone();
                    session.me_at = Some(Instant::now());
                    self.sessions.cache_me(&session.sid, me);
                }
                Err(ApiFailure::Refused { status: 401, .. }) => {
                    // The key was revoked or expired: the session ends with it.
                    self.sessions.end(&session);
                    return Err(ended(secure));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot refresh /v1/me; using the last answer")
                }
            }
        }
        let tenant_id = session.me["tenant"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match self
            .posture
            .get(&self.api, &session.credential, &tenant_id)
            .await
        {
            Ok(p) => session.posture = Some((Instant::now(), p)),
            Err(ApiFailure::Refused { status: 401, .. }) => {
                self.sessions.end(&session);
                return Err(ended(secure));
            }
            Err(e) => tracing::warn!(error = %e, "cannot read posture counts"),
        }
        let flash = security::flash_cookie_value(headers, secure)
            .and_then(|v| self.sessions.open_flash(&session, &v));
        Ok(Ctx {
            session,
            flash,
            secure_cookies: secure,
            empty: Value::Object(Default::default()),
        })
    }

    /// The refusal of a state-changing request that is cross-origin or lacks the session's
    /// CSRF token; `None` when it may proceed.
    pub(crate) fn refuse_post(
        &self,
        ctx: &Ctx,
        headers: &HeaderMap,
        form: &Form,
    ) -> Option<Response> {
        let token_ok = form
            .get("csrf")
            .is_some_and(|t| session::same(t, &ctx.session.csrf));
        if token_ok && security::same_origin(headers) {
            return None;
        }
        tracing::warn!("refused a dashboard request without a valid CSRF token or origin");
        Some(layout::page_with_status(
            ctx,
            StatusCode::FORBIDDEN,
            None,
            "Request refused",
            r#"<section class="empty" data-testid="csrf-refused"><p>This request did not come from a page of this dashboard (missing or wrong CSRF token, or another origin). Reload the page and try again.</p></section>"#,
        ))
    }

    /// Set a flash message and redirect (post/redirect/get). The message travels in its own
    /// sealed cookie, so the next page shows it whichever replica serves it.
    pub(crate) fn flash_redirect(&self, ctx: &Ctx, to: &str, flash: Flash) -> Response {
        // What the action changed may move the counts and the menu.
        if let Some(t) = ctx.session.me["tenant"]["id"].as_str() {
            self.posture.invalidate(t);
        }
        let mut r = Redirect::to(to).into_response();
        if let Some(value) = self.sessions.seal_flash(&ctx.session, flash)
            && let Ok(v) =
                HeaderValue::from_str(&security::flash_cookie(&value, self.config.secure_cookies))
        {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        r
    }
}

/// The signed-in context of a page request, as an extractor. Its rejection is what
/// [`UiState::ctx`] sends instead: a redirect to sign-in, or an error page.
pub(crate) struct SignedIn(pub Ctx);

impl FromRequestParts<Arc<UiState>> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<UiState>,
    ) -> Result<Self, Self::Rejection> {
        state.ctx(&parts.headers).await.map(SignedIn)
    }
}

/// The signed-in context of a live-region refresh (a fragment, not a page): without one the
/// answer is a bare 401, on which `assets/app.js` sends the browser to sign-in.
pub(crate) struct SignedInFragment(pub Ctx);

impl FromRequestParts<Arc<UiState>> for SignedInFragment {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<UiState>,
    ) -> Result<Self, Self::Rejection> {
        state
            .ctx(&parts.headers)
            .await
            .map(SignedInFragment)
            .map_err(|_| StatusCode::UNAUTHORIZED.into_response())
    }
}

/// A state-changing form post from a signed-in caller that carries the session's CSRF token
/// and comes from this origin. Its rejection is the body's own rejection, what
/// [`UiState::ctx`] sends instead of a context, or the refusal of [`UiState::refuse_post`].
pub(crate) struct CheckedPost {
    pub ctx: Ctx,
    pub form: Form,
}

impl FromRequest<Arc<UiState>> for CheckedPost {
    type Rejection = Response;

    async fn from_request(request: Request, state: &Arc<UiState>) -> Result<Self, Self::Rejection> {
        let headers = request.headers().clone();
        let body = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let ctx = state.ctx(&headers).await?;
        let form = Form::parse(&body);
        if let Some(r) = state.refuse_post(&ctx, &headers, &form) {
            return Err(r);
        }
        Ok(Self { ctx, form })
    }
}

/// A parsed `application/x-www-form-urlencoded` body (keys may repeat: bulk selections).
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    pub(crate) fn parse(body: &Bytes) -> Self {
        Self(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`.
    pub(crate) fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

async fn asset(Path(name): Path<String>) -> Response {
    let (body, kind): (&'static str, &'static str) = match name.as_str() {
        "app.css" => (include_str!("../assets/app.css"), "text/css; charset=utf-8"),
        "app.js" => (
            include_str!("../assets/app.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

fn login_page(state: &UiState, status: StatusCode, error: Option<&str>) -> Response {
    let sso = if state.config.oidc.is_some() {
        r#"<p><a class="button" href="/ui/login/oidc" data-testid="sso">Sign in with single sign-on</a></p><p class="hint">or with an API key:</p>"#
    } else {
        ""
    };
    let error = error.map_or(String::new(), |e| {
        format!(
            r#"<p class="flash error" role="alert" data-testid="login-error">{}</p>"#,
            esc(e)
        )
    });
    let html = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · agent-bom</title><link rel="stylesheet" href="/ui/assets/app.css"></head>
<body class="login"><main id="main"><h1>agent-bom</h1>
<form method="post" action="/ui/login" class="card">{error}{sso}
<label for="api_key">API key</label>
<input id="api_key" name="api_key" type="password" autocomplete="off" required spellcheck="false">
<button type="submit">Sign in</button>
<p class="hint">An admin creates keys with <code>agent-bom admin key create --tenant NAME --role viewer</code> or on the API keys page. The key stays on the server; your browser holds only a session cookie.</p>
</form></main></body></html>"#
    );
    (status, Html(html)).into_response()
}

async fn login_form(State(state): State<Arc<UiState>>) -> Response {
    login_page(&state, StatusCode::OK, None)
}

/// Start a session for `credential` after the API accepted it; the cookie response.
async fn start_session(state: &UiState, credential: Credential) -> Response {
    match state.api.get(&credential, "/v1/me").await {
        Ok(me) => {
            let id = match state.sessions.create(credential, me) {
                Ok(id) => id,
                Err(e) => {
                    return login_page(state, StatusCode::BAD_REQUEST, Some(&e.to_string()));
                }
            };
            let mut r = Redirect::to("/ui/").into_response();
            if let Ok(v) =
                HeaderValue::from_str(&security::session_cookie(&id, state.config.secure_cookies))
            {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Err(ApiFailure::Refused {
            status: 401 | 403,
            message,
            ..
        }) => login_page(
            state,
            StatusCode::UNAUTHORIZED,
            Some(&format!("The API refused this key: {message}")),
        ),
        Err(e) => login_page(state, StatusCode::BAD_GATEWAY, Some(&e.to_string())),
    }
}

async fn login(State(state): State<Arc<UiState>>, headers: HeaderMap, body: Bytes) -> Response {
    // Login CSRF: a sign-in form posted from another site would sign the victim in as the
    // attacker.
    if !security::same_origin(&headers) {
        return login_page(
            &state,
            StatusCode::FORBIDDEN,
            Some("Sign-in must come from this page."),
        );
    }
    let form = Form::parse(&body);
    let key = form.get("api_key").map(str::trim).unwrap_or_default();
    if key.is_empty() || key.len() > 512 {
        return login_page(&state, StatusCode::BAD_REQUEST, Some("Enter an API key."));
    }
    start_session(&state, Credential::new(key)).await
}

async fn login_link(State(state): State<Arc<UiState>>, Path(token): Path<String>) -> Response {
    match state.sessions.redeem_link(&token) {
        Some(credential) => start_session(&state, credential).await,
        None => login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            Some(
                "This sign-in link was used already or has expired. Sign in with an API key, or restart `agent-bom up` for a new link.",
            ),
        ),
    }
}

async fn logout(State(state): State<Arc<UiState>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    if let Ok(ctx) = state.ctx(&headers).await {
        if let Some(r) = state.refuse_post(&ctx, &headers, &form) {
            return r;
        }
        state.sessions.end(&ctx.session);
    }
    let mut r = Redirect::to("/ui/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&security::clear_cookie(state.config.secure_cookies)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// The answer when the API ended a session (its key was revoked or expired): to sign-in, with
/// the cookie cleared.
pub(crate) fn ended(secure: bool) -> Response {
    let mut r = Redirect::to("/ui/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&security::clear_cookie(secure)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

pub(crate) mod time {
    /// Unix milliseconds now.
    pub(crate) fn now_ms() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// This dashboard's own origin as the browser sees it (the OIDC redirect URI is built on it).
fn own_origin(state: &UiState, headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok().filter(|h| {
        !h.is_empty()
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
    })?;
    let scheme = if state.config.secure_cookies {
        "https"
    } else {
        "http"
    };
    Some(format!("{scheme}://{host}"))
}

/// `GET /ui/login/oidc`: send the browser to the identity provider.
async fn oidc_begin(State(state): State<Arc<UiState>>, headers: HeaderMap) -> Response {
    let Some(login) = &state.config.oidc else {
        return login_page(
            &state,
            StatusCode::NOT_FOUND,
            Some("Single sign-on is not configured."),
        );
    };
    let Some(origin) = own_origin(&state, &headers) else {
        return login_page(
            &state,
            StatusCode::BAD_REQUEST,
            Some("The request has no usable Host header."),
        );
    };
    let provider = match state.oidc.provider(state.api.http(), login).await {
        Ok(p) => p,
        Err(e) => return login_page(&state, StatusCode::BAD_GATEWAY, Some(&e)),
    };
    let (flow, url) = state.oidc.begin(
        &provider,
        login,
        &format!("{origin}/ui/login/oidc/callback"),
    );
    let mut r = Redirect::to(&url).into_response();
    // Lax, not Strict: the provider's redirect back is a cross-site navigation.
    let mut cookie = format!(
        "{}={flow}; Path=/ui/login/oidc; HttpOnly; SameSite=Lax; Max-Age={}",
        oidc::STATE_COOKIE,
        oidc::PENDING_TTL.as_secs()
    );
    if state.config.secure_cookies {
        cookie.push_str("; Secure");
    }
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `GET /ui/login/oidc/callback?code&state`: finish the sign-in and start a session.
async fn oidc_callback(
    State(state): State<Arc<UiState>>,
    headers: HeaderMap,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Response {
    let Some(login) = &state.config.oidc else {
        return login_page(
            &state,
            StatusCode::NOT_FOUND,
            Some("Single sign-on is not configured."),
        );
    };
    let q = Form::parse(&Bytes::from(raw.unwrap_or_default()));
    if let Some(err) = q.get("error") {
        let why = q.get("error_description").unwrap_or_default();
        return login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            Some(&format!(
                "The identity provider refused the sign-in: {err} {why}"
            )),
        );
    }
    let (Some(flow), Some(code)) = (q.get("state"), q.get("code")) else {
        return login_page(
            &state,
            StatusCode::BAD_REQUEST,
            Some("The sign-in answer lacks its code or state."),
        );
    };
    let browser_state = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| *k == oidc::STATE_COOKIE)
        .map(|(_, v)| v.to_string());
    let provider = match state.oidc.provider(state.api.http(), login).await {
        Ok(p) => p,
        Err(e) => return login_page(&state, StatusCode::BAD_GATEWAY, Some(&e)),
    };
    let id_token = match state
        .oidc
        .finish(
            state.api.http(),
            &provider,
            login,
            flow,
            browser_state.as_deref(),
            code,
        )
        .await
    {
        Ok(t) => t,
        Err(e) => return login_page(&state, StatusCode::UNAUTHORIZED, Some(&e)),
    };
    let mut r = start_session(&state, Credential::new(id_token)).await;
    if r.status() == StatusCode::SEE_OTHER {
        // The session cookie is SameSite=Strict and this response ends a cross-site redirect
        // chain, so the browser would not send it on a redirect; a page of this origin that
        // moves on does (a meta refresh is not script, the CSP allows it).
        let cookie = r.headers().get(header::SET_COOKIE).cloned();
        r = (
            StatusCode::OK,
            Html(r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=/ui/"><title>Signed in · agent-bom</title></head><body><main><p>Signed in. <a href="/ui/">Continue to the dashboard</a>.</p></main></body></html>"#),
        )
            .into_response();
        if let Some(c) = cookie {
            r.headers_mut().insert(header::SET_COOKIE, c);
        }
    }
    let mut clear = format!(
        "{}=; Path=/ui/login/oidc; HttpOnly; SameSite=Lax; Max-Age=0",
        oidc::STATE_COOKIE
    );
    if state.config.secure_cookies {
        clear.push_str("; Secure");
    }
    if let Ok(v) = HeaderValue::from_str(&clear) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}
