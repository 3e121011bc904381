//! Endpoint: host facts, MCP clients, servers with risk flags and wrap state, tools seen by its
//! proxies, scan errors, and its commands with their state, all refreshed live when the fleet's
//! event stream names this endpoint, with the actions an admin may take on it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde_json::Value;

use super::fleet::run_action;
use super::{items, list_text};
use crate::html::{enc, esc, field, text};
use crate::layout::{self, badge};
use crate::nav::Section;
use crate::session::Flash;
use crate::{CheckedPost, SignedIn, SignedInFragment, UiState};

/// Commands listed.
const COMMANDS_SHOWN: u32 = 20;

pub(crate) async fn page(
    State(state): State<Arc<UiState>>,
    Path(id): Path<String>,
    SignedIn(ctx): SignedIn,
) -> Response {
    if !ctx.can("fleet:read") {
        return layout::forbidden(&ctx, Section::Fleet, "fleet:read");
    }
    let d = match detail(&state, &ctx, &id).await {
        Ok(d) => d,
        Err(e) => return layout::failure(&ctx, Some(Section::Fleet), &e),
    };
    let mut body = String::new();
    if ctx.can("fleet:write") {
        body.push_str(&format!(
            r#"<form method="post" action="/ui/endpoints/{}/action" class="actions" aria-label="Actions on this endpoint">{}
<button type="submit" class="danger" name="action" value="quarantine" data-confirm="Quarantine this endpoint? Its agent stops every wrapped MCP server.">Quarantine</button>
<button type="submit" name="action" value="approve">Release / approve</button>
<button type="submit" name="action" value="rescan">Rescan</button>
<button type="submit" name="action" value="wrap">Wrap servers</button>
<button type="submit" name="action" value="unwrap">Unwrap servers</button></form>"#,
            enc(&id),
            ctx.csrf_input()
        ));
    }
    // Everything below the actions is one live region: re-read when an event names this
    // endpoint (status, inventory, commands, its record).
    body.push_str(&format!(
        r#"<div data-live="/ui/endpoints/{}/live" data-live-endpoint="{}" data-live-interval="{}">"#,
        enc(&id),
        esc(&id),
        state.config.live_interval.as_millis()
    ));
    let (sent, changes) = tokio::join!(
        commands(&state, &ctx, &id),
        inventory_changes(&state, &ctx, &id)
    );
    body.push_str(&details_html(&d, &id, &sent, changes.as_ref()));
    body.push_str("</div>");
    let title = format!("Endpoint {}", text(&d["hostname"]));
    layout::page(&ctx, Some(Section::Fleet), &title, &body)
}

async fn detail(
    state: &UiState,
    ctx: &crate::Ctx,
    id: &str,
) -> Result<Value, crate::api::ApiFailure> {
    state
        .api
        .get(
            ctx.credential(),
            &format!("/v1/fleet/endpoints/{}", enc(id)),
        )
        .await
}

/// Host facts, clients, servers, tools, scan errors, commands and the timeline.
fn details_html(
    d: &Value,
    id: &str,
    sent: &Result<Value, String>,
    changes: Option<&Value>,
) -> String {
    let h = &d["host"];
    let mut body = format!(
        r#"<section class="facts" data-testid="host-facts"><dl>
<dt>Status</dt><dd data-testid="endpoint-status">{}</dd><dt>State</dt><dd data-testid="lifecycle-state">{}</dd>
<dt>OS</dt><dd>{} {} ({})</dd><dt>Kernel</dt><dd>{}</dd><dt>CPUs</dt><dd>{}</dd>
<dt>Users</dt><dd>{}</dd><dt>Agent</dt><dd>{}</dd><dt>Origin</dt><dd>{}</dd>
<dt>Last seen</dt><dd>{}</dd><dt>Enrolled</dt><dd>{}</dd><dt>Policy applied</dt><dd>{}</dd>
<dt>Owner</dt><dd>{}</dd><dt>Environment</dt><dd>{}</dd><dt>Tags</dt><dd>{}</dd><dt>Id</dt><dd><code>{}</code></dd></dl></section>"#,
        badge(d["status"].as_str().unwrap_or("?")),
        badge(d["lifecycle_state"].as_str().unwrap_or("?")),
        field(h, "os"),
        field(h, "os_version"),
        field(h, "arch"),
        field(h, "kernel_version"),
        field(h, "cpu_count"),
        esc(&list_text(&h["users"])),
        field(d, "agent_version"),
        field(d, "origin"),
        field(d, "last_seen"),
        field(d, "enrolled_at"),
        field(d, "applied_policy_revision"),
        field(d, "owner"),
        field(d, "environment"),
        esc(&list_text(&d["tags"])),
        esc(id),
    );

    body.push_str(r#"<h2>MCP clients</h2><table data-testid="clients"><thead><tr><th scope="col">Client</th><th scope="col">Config files</th></tr></thead><tbody>"#);
    for c in items(d, "clients") {
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td></tr>",
            field(c, "name"),
            esc(&list_text(&c["config_files"]))
        ));
    }
    body.push_str("</tbody></table>");

    body.push_str(r#"<h2>MCP servers</h2><div class="table-wrap"><table data-testid="servers"><thead><tr><th scope="col">Server</th><th scope="col">Client</th><th scope="col">Transport</th><th scope="col">Launch</th><th scope="col">Risk flags</th><th scope="col">Proxy / gateway</th><th scope="col">Credentials (names)</th></tr></thead><tbody>"#);
    for s in items(d, "servers") {
        let launch = match s["url"].as_str() {
            Some(u) => u.to_string(),
            None => format!(
                "{} {}",
                text(&s["command"]),
                list_text(&s["args"]).replace(", ", " ")
            ),
        };
        let flags: String = s["risk_flags"]
            .as_array()
            .map(|a| a.iter().map(|f| badge(&text(f))).collect())
            .unwrap_or_default();
        body.push_str(&format!(
            r#"<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            field(s, "name"),
            field(s, "client"),
            field(s, "transport"),
            esc(&launch),
            flags,
            match (s["wrapped"].as_bool() == Some(true), s["gateway"].as_str()) {
                (true, _) => badge("wrapped"),
                (false, Some(route)) => format!("{} {}", badge("gateway"), esc(route)),
                (false, None) => String::from("—"),
            },
            esc(&list_text(&s["credential_names"])),
        ));
    }
    body.push_str("</tbody></table></div>");

    let tools = items(d, "tools");
    if !tools.is_empty() {
        body.push_str(r#"<h2>Tools seen by the proxy</h2><table data-testid="tools"><thead><tr><th scope="col">Server</th><th scope="col">Tool</th><th scope="col">Calls</th><th scope="col">Blocked</th><th scope="col">Last seen</th></tr></thead><tbody>"#);
        for t in tools {
            body.push_str(&format!(
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                field(t, "server_id"),
                field(t, "name"),
                field(t, "calls"),
                field(t, "blocked"),
                field(t, "last_seen")
            ));
        }
        body.push_str("</tbody></table>");
    }
    let errors = items(d, "errors");
    if !errors.is_empty() {
        body.push_str(r#"<h2>Config files that could not be read</h2><ul class="errors">"#);
        for e in errors {
            body.push_str(&format!(
                "<li><code>{}</code>: {}</li>",
                field(e, "path"),
                field(e, "message")
            ));
        }
        body.push_str("</ul>");
    }
    body.push_str("<h2>Commands</h2>");
    match sent {
        Ok(page) => body.push_str(&commands_html(page)),
        Err(e) => body.push_str(&format!(r#"<p class="flash error">{}</p>"#, esc(e))),
    }
    body.push_str("<h2>Timeline</h2>");
    body.push_str(&timeline(d, sent.as_ref().ok(), changes));
    body
}

/// `GET /v1/fleet/endpoints/{id}/timeline` (none when it cannot be read: the timeline then
/// shows the rest).
async fn inventory_changes(state: &UiState, ctx: &crate::Ctx, id: &str) -> Option<Value> {
    state
        .api
        .get(
            ctx.credential(),
            &format!("/v1/fleet/endpoints/{}/timeline?limit=30", enc(id)),
        )
        .await
        .ok()
}

/// One timeline line of an inventory change entry: what was added, removed or changed.
fn describe_changes(entry: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in items(entry, "changes") {
        let mut what = format!("{} {}", text(&c["item"]), text(&c["name"]));
        if let Some(client) = c["client"].as_str() {
            what.push_str(&format!(" ({client})"));
        }
        what.push(' ');
        what.push_str(&text(&c["change"]));
        let fields: Vec<String> = c["fields"]
            .as_array()
            .map(|f| f.iter().map(|x| text(x).replace('_', " ")).collect())
            .unwrap_or_default();
        if !fields.is_empty() {
            what.push_str(&format!(": {}", fields.join(", ")));
        }
        parts.push(what);
    }
    let more = entry["more"].as_u64().unwrap_or(0);
    if more > 0 {
        parts.push(format!("and {more} more"));
    }
    let lead = if entry["first"].as_bool() == Some(true) {
        "First inventory"
    } else {
        "Inventory changed"
    };
    format!("{lead}: {}", parts.join("; "))
}

async fn commands(state: &UiState, ctx: &crate::Ctx, id: &str) -> Result<Value, String> {
    state
        .api
        .get(
            ctx.credential(),
            &format!(
                "/v1/fleet/endpoints/{}/commands?limit={COMMANDS_SHOWN}",
                enc(id)
            ),
        )
        .await
        .map_err(|e| e.to_string())
}

/// What is known of an endpoint's history, newest first: enrollment, what each inventory
/// changed (servers and clients added, removed, changed), tools its proxies first saw, and
/// commands sent and answered.
fn timeline(d: &Value, commands: Option<&Value>, changes: Option<&Value>) -> String {
    let mut events: Vec<(String, String)> = Vec::new();
    let mut add = |at: &Value, what: String| {
        if let Some(at) = at.as_str() {
            events.push((at.to_string(), what));
        }
    };
    add(
        &d["enrolled_at"],
        format!("Enrolled ({})", text(&d["origin"])),
    );
    add(&d["last_inventory_at"], "Latest inventory received".into());
    for entry in changes.map(|c| items(c, "items")).unwrap_or_default() {
        add(&entry["at"], describe_changes(entry));
    }
    for t in items(d, "tools") {
        add(
            &t["first_seen"],
            format!(
                "Proxy first saw tool {} on {}",
                text(&t["name"]),
                text(&t["server_id"])
            ),
        );
    }
    for c in commands.map(|c| items(c, "items")).unwrap_or_default() {
        add(
            &c["created_at"],
            format!("Command {} sent", text(&c["kind"])),
        );
        add(
            &c["answered_at"],
            format!("Command {} {}", text(&c["kind"]), text(&c["status"])),
        );
    }
    // RFC 3339 in UTC sorts as text.
    events.sort_by(|a, b| b.0.cmp(&a.0));
    let mut out = String::from(r#"<ol class="timeline" data-testid="timeline">"#);
    for (at, what) in events.iter().take(30) {
        out.push_str(&format!(
            r#"<li><time datetime="{a}">{a}</time> {}</li>"#,
            esc(what),
            a = esc(at)
        ));
    }
    out.push_str("</ol>");
    out
}

fn commands_html(page: &Value) -> String {
    let list = items(page, "items");
    if list.is_empty() {
        return r#"<p class="sub" data-testid="no-commands">No command sent to this endpoint.</p>"#
            .into();
    }
    let mut out = String::from(
        r#"<table data-testid="commands"><thead><tr><th scope="col">Created</th><th scope="col">Command</th><th scope="col">State</th><th scope="col">Answered</th><th scope="col">Result</th></tr></thead><tbody>"#,
    );
    for c in list {
        out.push_str(&format!(
            r#"<tr><td>{}</td><td>{}</td><td data-testid="command-state" data-kind="{}">{}</td><td>{}</td><td>{}</td></tr>"#,
            field(c, "created_at"),
            field(c, "kind"),
            field(c, "kind"),
            badge(c["status"].as_str().unwrap_or("?")),
            field(c, "answered_at"),
            field(c, "result"),
        ));
    }
    out.push_str("</tbody></table>");
    out
}

/// Everything under the actions, for the live refresh.
pub(crate) async fn live_fragment(
    State(state): State<Arc<UiState>>,
    Path(id): Path<String>,
    SignedInFragment(ctx): SignedInFragment,
) -> Response {
    let d = match detail(&state, &ctx, &id).await {
        Ok(d) => d,
        Err(e) => {
            return StatusCode::from_u16(e.status())
                .unwrap_or(StatusCode::BAD_GATEWAY)
                .into_response();
        }
    };
    let (sent, changes) = tokio::join!(
        commands(&state, &ctx, &id),
        inventory_changes(&state, &ctx, &id)
    );
    Html(details_html(&d, &id, &sent, changes.as_ref())).into_response()
}

pub(crate) async fn action(
    State(state): State<Arc<UiState>>,
    Path(id): Path<String>,
    CheckedPost { ctx, form }: CheckedPost,
) -> Response {
    let action = form.get("action").unwrap_or_default();
    let (ok, error) = run_action(&state, &ctx, action, &[id.as_str()]).await;
    let flash = match error {
        None if ok == 1 => Flash {
            kind: "ok",
            text: format!("{action}: sent."),
            secret: None,
        },
        None => Flash {
            kind: "error",
            text: format!("{action}: nothing done"),
            secret: None,
        },
        Some(e) => Flash {
            kind: "error",
            text: format!("{action} refused: {e}"),
            secret: None,
        },
    };
    state.flash_redirect(&ctx, &format!("/ui/endpoints/{}", enc(&id)), flash)
}
