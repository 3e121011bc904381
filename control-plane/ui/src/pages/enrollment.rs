//! Enrollment: how a machine joins this tenant. The install command per OS (the control
//! plane's own install scripts, bound to it), the MDM snippets that stage a token, and the
//! tenant's tokens for admins: create (the token shown once, like an API key), uses, revoke.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use reqwest::Method;
use serde_json::json;

use super::items;
use crate::html::{enc, esc, field, time_ms};
use crate::layout::{self, badge};
use crate::nav::Section;
use crate::session::Flash;
use crate::{CheckedPost, Form, SignedIn, UiState};

/// The URL machines reach the API at: the configured public URL, or this page's own origin
/// when the dashboard is served on the API's origin.
fn public_api(state: &UiState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config.public_api_url {
        return url.trim_end_matches('/').to_string();
    }
    let scheme = if state.config.secure_cookies {
        "https"
    } else {
        "http"
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or("agent-bom.example.com");
    format!("{scheme}://{host}")
}

pub(crate) async fn page(
    State(state): State<Arc<UiState>>,
    headers: HeaderMap,
    SignedIn(ctx): SignedIn,
) -> Response {
    if let Some(r) = layout::unavailable(&ctx, Section::Enrollment) {
        return r;
    }
    let base = esc(&public_api(&state, &headers));
    let tenant = esc(ctx.session.me["tenant"]["name"]
        .as_str()
        .unwrap_or("default"));
    let tokens = if ctx.can("fleet:write") {
        tokens_section(&state, &ctx).await
    } else {
        String::new()
    };
    let body = format!(
        r#"<section class="mode-banner"><p>A machine joins with a one-time <strong>enrollment token</strong> of this tenant. An admin makes one on the control plane (it is a secret: hand it over as a file, never in a chat):</p>
<pre data-testid="token-command">agent-bom admin enroll-token create --tenant {tenant} --max-uses 5000 &gt; enrollment.token</pre></section>
<h2>Linux and macOS</h2>
<pre data-testid="install-unix">curl -fsSL {base}/install/agent.sh -o install-agent.sh
sudo sh install-agent.sh --token-file ./enrollment.token</pre>
<p class="hint">The script is bound to this control plane (URL, collector, CA pin, release keys), verifies the build's SHA-256 and signature, installs the service and stages the token.</p>
<h2>Windows</h2>
<pre data-testid="install-windows">Invoke-WebRequest {base}/install/agent.ps1 -OutFile install-agent.ps1
powershell -ExecutionPolicy Bypass -File install-agent.ps1 -TokenFile C:\path\enrollment.token</pre>
<h2>MDM (Jamf, Intune, Kandji)</h2>
<p>Push the token as a file readable by root only, then run the same script; the agent enrolls when it first reaches the collector.</p>
<pre data-testid="mdm-snippet">#!/bin/sh
# Jamf / Kandji script (runs as root); Intune: the same as a Linux or macOS shell script.
install -d -m 0700 /var/tmp/agent-bom
printf '%s' "$AGENT_BOM_ENROLL_TOKEN" &gt; /var/tmp/agent-bom/enrollment.token   # from the MDM's secret variable
chmod 0600 /var/tmp/agent-bom/enrollment.token
curl -fsSL {base}/install/agent.sh -o /var/tmp/agent-bom/install-agent.sh
sh /var/tmp/agent-bom/install-agent.sh --token-file /var/tmp/agent-bom/enrollment.token
rm -f /var/tmp/agent-bom/enrollment.token</pre>
<h2>Without an agent</h2>
<p>An existing agent-bom CLI can push a machine's inventory with an analyst key: <code>agent-bom fleet sync --url {base}</code>. Pushed machines appear on the Fleet page like enrolled ones.</p>{tokens}"#
    );
    layout::page(&ctx, Some(Section::Enrollment), "Enrollment", &body)
}

/// The tenant's tokens with create and revoke (admins).
async fn tokens_section(state: &UiState, ctx: &crate::Ctx) -> String {
    let list = match state
        .api
        .get(ctx.credential(), "/v1/enrollment-tokens")
        .await
    {
        Ok(l) => l,
        Err(e) => return format!(r#"<p class="flash error">{}</p>"#, esc(&e.to_string())),
    };
    let now = crate::time::now_ms();
    let mut out = String::from(
        r#"<h2>Enrollment tokens</h2><div class="table-wrap"><table data-testid="enroll-tokens"><thead><tr><th scope="col">Name</th><th scope="col">Prefix</th><th scope="col">Uses</th><th scope="col">Expires</th><th scope="col">State</th><th scope="col">Revoke</th></tr></thead><tbody>"#,
    );
    for t in items(&list, "items") {
        let id = t["id"].as_str().unwrap_or_default();
        let revoked = !t["revoked_at"].is_null();
        let expired = t["expires_at"].as_i64().is_some_and(|e| e <= now);
        let used_up = t["max_uses"]
            .as_i64()
            .is_some_and(|m| t["uses"].as_i64().unwrap_or(0) >= m);
        let state_badge = if revoked {
            badge("revoked")
        } else if expired {
            badge("expired")
        } else if used_up {
            badge("used up")
        } else {
            badge("active")
        };
        let action = if revoked || expired {
            "—".to_string()
        } else {
            format!(
                r#"<form method="post" action="/ui/enrollment/tokens/{}/revoke">{}<button type="submit" class="danger" data-confirm="Revoke this token? Machines enrolled with it keep their identity; no new machine enrolls with it.">Revoke</button></form>"#,
                enc(id),
                ctx.csrf_input()
            )
        };
        out.push_str(&format!(
            r#"<tr data-token="{}"><td>{}</td><td><code>{}</code></td><td>{} / {}</td><td>{}</td><td>{state_badge}</td><td>{action}</td></tr>"#,
            esc(id),
            field(t, "name"),
            field(t, "prefix"),
            t["uses"].as_i64().unwrap_or(0),
            t["max_uses"]
                .as_i64()
                .map_or_else(|| "unlimited".into(), |m| m.to_string()),
            t["expires_at"]
                .as_i64()
                .map_or_else(|| "never".into(), time_ms),
        ));
    }
    out.push_str("</tbody></table></div>");
    out.push_str(&format!(
        r#"<form method="post" action="/ui/enrollment/tokens" class="filters" aria-label="Create an enrollment token">{}
<label>Name <input name="name" required maxlength="100"></label>
<label>Max machines (empty: unlimited) <input name="max_uses" inputmode="numeric" size="8"></label>
<label>Expires in days (empty: never) <input name="expires_days" inputmode="numeric" size="6"></label>
<button type="submit">Create a token</button></form>
<p class="hint">The token is shown once. Hand it to the installer as a file (<code>--token-file</code>), never on a command line.</p>"#,
        ctx.csrf_input()
    ));
    out
}

fn number(form: &Form, key: &str, label: &str, max: i64) -> Result<Option<i64>, String> {
    match form.get(key).map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(Some(n)),
            _ => Err(format!("{label} must be a whole number from 1 to {max}.")),
        },
    }
}

pub(crate) async fn create(
    State(state): State<Arc<UiState>>,
    CheckedPost { ctx, form }: CheckedPost,
) -> Response {
    let error = |text: String| Flash {
        kind: "error",
        text,
        secret: None,
    };
    let parsed = number(&form, "max_uses", "Max machines", 10_000_000)
        .and_then(|m| number(&form, "expires_days", "Expiry in days", 3650).map(|d| (m, d)));
    let flash = match parsed {
        Err(e) => error(e),
        Ok((max_uses, days)) => {
            let request = json!({
                "name": form.get("name").unwrap_or_default().trim(),
                "max_uses": max_uses,
                "expires_in_secs": days.map(|d| d * 86_400),
            });
            match state
                .api
                .send(
                    Method::POST,
                    ctx.credential(),
                    "/v1/enrollment-tokens",
                    Some(&request),
                )
                .await
            {
                Ok(created) => Flash {
                    kind: "ok",
                    text: format!(
                        "Created enrollment token {}. Copy it now: it is not shown again.",
                        created["enrollment_token"]["prefix"]
                            .as_str()
                            .unwrap_or_default()
                    ),
                    secret: created["token"].as_str().map(str::to_string),
                },
                Err(e) => error(format!("The token was not created: {e}")),
            }
        }
    };
    state.flash_redirect(&ctx, "/ui/enrollment", flash)
}

pub(crate) async fn revoke(
    State(state): State<Arc<UiState>>,
    Path(id): Path<String>,
    CheckedPost { ctx, .. }: CheckedPost,
) -> Response {
    let flash = match state
        .api
        .send(
            Method::DELETE,
            ctx.credential(),
            &format!("/v1/enrollment-tokens/{}", enc(&id)),
            None,
        )
        .await
    {
        Ok(_) => Flash {
            kind: "ok",
            text: "Revoked: no new machine enrolls with this token.".into(),
            secret: None,
        },
        Err(e) => Flash {
            kind: "error",
            text: format!("Revoke refused: {e}"),
            secret: None,
        },
    };
    state.flash_redirect(&ctx, "/ui/enrollment", flash)
}
