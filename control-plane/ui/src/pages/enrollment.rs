//! Enrollment: how a machine joins this tenant. The install command per OS (the control
//! plane's own install scripts, bound to it), the MDM snippets that stage a token, and where
//! tokens come from. Tokens are secrets made by an admin with the CLI; the dashboard never
//! shows one.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::Response;

use crate::UiState;
use crate::html::esc;
use crate::layout;
use crate::nav::Section;

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

pub(crate) async fn page(State(state): State<Arc<UiState>>, headers: HeaderMap) -> Response {
    let ctx = match state.ctx(&headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Some(r) = layout::unavailable(&ctx, Section::Enrollment) {
        return r;
    }
    let base = esc(&public_api(&state, &headers));
    let tenant = esc(ctx.session.me["tenant"]["name"]
        .as_str()
        .unwrap_or("default"));
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
<p>An existing agent-bom CLI can push a machine's inventory with an analyst key: <code>agent-bom fleet sync --url {base}</code>. Pushed machines appear on the Fleet page like enrolled ones.</p>"#
    );
    layout::page(&ctx, Some(Section::Enrollment), "Enrollment", &body)
}
