//! Runtime: what the inspecting proxies saw (detections and blocked calls from the audit log)
//! and tool-definition changes that block a server until approved; approving sends the
//! endpoint an `approve_pins` command, which its proxy applies. Denying keeps the tools
//! blocked and records the decision (`POST /v1/fleet/endpoints/{id}/pins/deny`, audit
//! `runtime.pins_denied`), shown here and in the audit log.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::items;
use super::overview::detections_table;
use crate::html::{enc, esc, field, time_ms};
use crate::layout::{self, badge};
use crate::nav::Section;
use crate::session::Flash;
use crate::{CheckedPost, SignedIn, UiState};

/// Detections read (one API page, the newest).
const WINDOW: i64 = 1000;
/// Rows shown per table.
const SHOWN: usize = 50;
/// Endpoints whose commands are read to show approvals already sent.
const MAX_ENDPOINT_READS: usize = 20;

/// The tools named in a pin detection's reasons (`tool `x` changed since it was pinned`).
fn pinned_tools(entry: &Value) -> Vec<String> {
    entry["detail"]["reasons"]
        .as_array()
        .map(|reasons| {
            reasons
                .iter()
                .filter_map(Value::as_str)
                .filter(|r| {
                    r.contains("since it was pinned") || r.contains("since the server was pinned")
                })
                .filter_map(|r| r.split('`').nth(1).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) async fn page(State(state): State<Arc<UiState>>, SignedIn(ctx): SignedIn) -> Response {
    if let Some(r) = layout::unavailable(&ctx, Section::Runtime) {
        return r;
    }
    let p = ctx.posture();
    let mut body = format!(
        r#"<section class="tiles">{}{}{}</section>"#,
        layout::tile(
            "Server entries behind the proxy",
            &p["wrapped_servers"].as_i64().unwrap_or(0).to_string(),
            "tile-wrapped"
        ),
        layout::tile(
            "Server entries",
            &p["server_entries"].as_i64().unwrap_or(0).to_string(),
            "tile-entries"
        ),
        layout::tile(
            "Remote servers a gateway could front",
            if p["has_gateway"] == true {
                "yes"
            } else {
                "none"
            },
            "tile-gateway"
        ),
    );
    if !ctx.can("audit:read") {
        body.push_str(r#"<p class="sub">Detections come from the audit log, which your role cannot read.</p>"#);
        return layout::page(&ctx, Some(Section::Runtime), "Runtime", &body);
    }
    let after = (p["audit_events"].as_i64().unwrap_or(0) - WINDOW).max(0);
    let detections = match state
        .api
        .get(
            ctx.credential(),
            &format!("/v1/audit?action=proxy.detection&after={after}&limit={WINDOW}"),
        )
        .await
    {
        Ok(d) => d,
        Err(e) => return layout::failure(&ctx, Some(Section::Runtime), &e),
    };
    let list = items(&detections, "items");
    // Denials recorded: the newest per endpoint and server, with who denied.
    let mut denials: HashMap<(String, String), (String, String)> = HashMap::new();
    if let Ok(denied) = state
        .api
        .get(
            ctx.credential(),
            &format!("/v1/audit?action=runtime.pins_denied&after={after}&limit={WINDOW}"),
        )
        .await
    {
        for d in items(&denied, "items") {
            denials.insert(
                (
                    d["detail"]["endpoint_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    d["target"].as_str().unwrap_or_default().to_string(),
                ),
                (
                    d["at"].as_str().unwrap_or_default().to_string(),
                    d["actor"].as_str().unwrap_or_default().to_string(),
                ),
            );
        }
    }
    // Pin changes that block (decision block, newest first), one row per endpoint and server.
    let mut seen = BTreeSet::new();
    let mut awaiting = Vec::new();
    for e in list.iter().rev() {
        let tools = pinned_tools(e);
        if tools.is_empty() || e["detail"]["decision"] != "block" {
            continue;
        }
        let key = (
            e["detail"]["endpoint_id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            e["target"].as_str().unwrap_or_default().to_string(),
        );
        if seen.insert(key) {
            awaiting.push((e, tools));
        }
    }
    body.push_str(r#"<h2>Tool changes awaiting approval</h2>"#);
    if awaiting.is_empty() {
        body.push_str(r#"<p class="sub" data-testid="no-pin-changes">No blocked tool change.</p>"#);
    } else {
        body.push_str(r#"<table data-testid="pin-changes"><thead><tr><th scope="col">When</th><th scope="col">Endpoint</th><th scope="col">Server</th><th scope="col">Tools</th><th scope="col">Decision</th></tr></thead><tbody>"#);
        // Approvals already sent: the newest approve_pins command per endpoint and server
        // (one commands read per endpoint shown).
        let mut approvals: HashMap<(String, String), (String, String)> = HashMap::new();
        let endpoints: BTreeSet<&str> = awaiting
            .iter()
            .take(SHOWN)
            .filter_map(|(e, _)| e["detail"]["endpoint_id"].as_str())
            .collect();
        for endpoint in endpoints.into_iter().take(MAX_ENDPOINT_READS) {
            let Ok(sent) = state
                .api
                .get(
                    ctx.credential(),
                    &format!("/v1/fleet/endpoints/{}/commands?limit=50", enc(endpoint)),
                )
                .await
            else {
                continue;
            };
            for c in items(&sent, "items")
                .iter()
                .filter(|c| c["kind"] == "approve_pins")
            {
                let payload: Value = c["payload"]
                    .as_str()
                    .and_then(|p| serde_json::from_str(p).ok())
                    .unwrap_or_else(|| c["payload"].clone());
                let Some(server) = payload["server_id"].as_str() else {
                    continue;
                };
                // Newest first: keep the first seen.
                approvals
                    .entry((endpoint.to_string(), server.to_string()))
                    .or_insert_with(|| {
                        (
                            c["created_at"].as_str().unwrap_or_default().to_string(),
                            c["status"].as_str().unwrap_or_default().to_string(),
                        )
                    });
            }
        }
        for (e, tools) in awaiting.iter().take(SHOWN) {
            let d = &e["detail"];
            let endpoint = d["endpoint_id"].as_str().unwrap_or_default();
            let sent = approvals
                .get(&(
                    endpoint.to_string(),
                    e["target"].as_str().unwrap_or_default().to_string(),
                ))
                .filter(|(created, _)| created.as_str() >= e["at"].as_str().unwrap_or_default());
            let at = e["at"].as_str().unwrap_or_default();
            let denied = denials
                .get(&(
                    endpoint.to_string(),
                    e["target"].as_str().unwrap_or_default().to_string(),
                ))
                .filter(|(when, _)| when.as_str() >= at);
            let approve = if let Some((_, status)) = sent {
                format!(
                    r#"<span data-testid="approval-state">approval {}</span>"#,
                    badge(status)
                )
            } else if let Some((_, by)) = denied {
                format!(
                    r#"<span data-testid="denial-state">{} by {}</span>"#,
                    badge("denied"),
                    esc(by)
                )
            } else if ctx.can("fleet:write") {
                let mut hidden = String::new();
                for t in tools {
                    hidden.push_str(&format!(
                        r#"<input type="hidden" name="tool" value="{}">"#,
                        esc(t)
                    ));
                }
                format!(
                    r#"<form method="post" action="/ui/runtime/approve" class="actions">{}<input type="hidden" name="endpoint" value="{}"><input type="hidden" name="server" value="{}">{hidden}<button type="submit" data-confirm="Approve the new definitions of these tools on this endpoint?">Approve</button><button type="submit" class="danger" formaction="/ui/runtime/deny" data-confirm="Deny the new definitions? The tools stay blocked and the decision is recorded.">Deny</button></form>"#,
                    ctx.csrf_input(),
                    esc(endpoint),
                    field(e, "target"),
                )
            } else {
                badge("blocked")
            };
            body.push_str(&format!(
                r#"<tr><td>{}</td><td><a href="/ui/endpoints/{}">{}</a></td><td><code>{}</code></td><td>{}</td><td>{approve}</td></tr>"#,
                time_ms(e["at_ms"].as_i64().unwrap_or(0)),
                enc(endpoint),
                esc(&endpoint.chars().take(12).collect::<String>()),
                field(e, "target"),
                esc(&tools.join(", ")),
            ));
        }
        body.push_str("</tbody></table>");
    }
    let blocked: Vec<&Value> = list
        .iter()
        .rev()
        .filter(|e| e["detail"]["decision"] == "block")
        .take(SHOWN)
        .collect();
    body.push_str(r#"<h2>Blocked calls</h2>"#);
    if blocked.is_empty() {
        body.push_str(r#"<p class="sub">No blocked call.</p>"#);
    } else {
        body.push_str(&detections_table(blocked.into_iter()));
    }
    body.push_str(r#"<h2>All detections</h2>"#);
    if list.is_empty() {
        body.push_str(
            r#"<p class="sub" data-testid="no-detections">No proxy detection recorded.</p>"#,
        );
    } else {
        body.push_str(&detections_table(list.iter().rev().take(SHOWN)));
    }
    layout::page(&ctx, Some(Section::Runtime), "Runtime", &body)
}

pub(crate) async fn approve(
    State(state): State<Arc<UiState>>,
    CheckedPost { ctx, form }: CheckedPost,
) -> Response {
    let endpoint = form.get("endpoint").unwrap_or_default();
    let tools: Map<String, Value> = form
        .all("tool")
        .into_iter()
        .map(|t| (t.to_string(), Value::Null))
        .collect();
    let command = json!({"kind": "approve_pins", "payload": {"server_id": form.get("server").unwrap_or_default(), "tools": tools}});
    let flash = match state
        .api
        .send(
            Method::POST,
            ctx.credential(),
            &format!("/v1/fleet/endpoints/{}/commands", enc(endpoint)),
            Some(&command),
        )
        .await
    {
        Ok(_) => Flash {
            kind: "ok",
            text: "Approval sent; the endpoint's proxy accepts the next definition of these tools."
                .into(),
            secret: None,
        },
        Err(e) => Flash {
            kind: "error",
            text: format!("Approval refused: {e}"),
            secret: None,
        },
    };
    state.flash_redirect(&ctx, "/ui/runtime", flash)
}

pub(crate) async fn deny(
    State(state): State<Arc<UiState>>,
    CheckedPost { ctx, form }: CheckedPost,
) -> Response {
    let endpoint = form.get("endpoint").unwrap_or_default();
    let denial = json!({
        "server_id": form.get("server").unwrap_or_default(),
        "tools": form.all("tool"),
        "reason": "denied on the Runtime page",
    });
    let flash = match state
        .api
        .send(
            Method::POST,
            ctx.credential(),
            &format!("/v1/fleet/endpoints/{}/pins/deny", enc(endpoint)),
            Some(&denial),
        )
        .await
    {
        Ok(_) => Flash {
            kind: "ok",
            text: "Denied: the tools stay blocked, and the decision is in the audit log.".into(),
            secret: None,
        },
        Err(e) => Flash {
            kind: "error",
            text: format!("Deny refused: {e}"),
            secret: None,
        },
    };
    state.flash_redirect(&ctx, "/ui/runtime", flash)
}
