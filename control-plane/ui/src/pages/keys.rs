//! API keys: the tenant's keys with role, scopes, expiry and last use; create (the key shown
//! once), rotate with an overlap window (the old key keeps working until it ends, so running
//! automation can switch without an outage), and revoke now. Quotas and usage from `/v1/me`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use reqwest::Method;
use serde_json::{Value, json};

use super::items;
use crate::html::{enc, esc, field, time_ms};
use crate::layout::{self, badge};
use crate::nav::Section;
use crate::session::Flash;
use crate::{CheckedPost, SignedIn, UiState};

/// Overlap windows offered when rotating: (seconds, label).
const OVERLAPS: &[(i64, &str)] = &[
    (0, "none: the old key stops now"),
    (3600, "1 hour"),
    (86_400, "24 hours"),
    (7 * 86_400, "7 days"),
];

fn when(v: &Value) -> String {
    v.as_i64().map_or_else(|| "—".into(), time_ms)
}

pub(crate) async fn page(State(state): State<Arc<UiState>>, SignedIn(ctx): SignedIn) -> Response {
    if let Some(r) = layout::unavailable(&ctx, Section::Keys) {
        return r;
    }
    let keys = match state.api.get(ctx.credential(), "/v1/keys").await {
        Ok(k) => k,
        Err(e) => return layout::failure(&ctx, Some(Section::Keys), &e),
    };
    let me = &ctx.session.me;
    let quota = |k: &str| {
        me["quotas"][k]
            .as_i64()
            .map_or_else(|| "default".into(), |v| v.to_string())
    };
    let mut body = format!(
        r#"<section class="tiles">{}{}</section>"#,
        layout::tile(
            "Active keys / quota",
            &format!(
                "{} / {}",
                me["usage"]["api_keys"].as_i64().unwrap_or(0),
                quota("max_api_keys")
            ),
            "keys-usage"
        ),
        layout::tile(
            "Endpoints / quota",
            &format!(
                "{} / {}",
                me["usage"]["endpoints"].as_i64().unwrap_or(0),
                quota("max_endpoints")
            ),
            "endpoints-usage"
        ),
    );
    let writer = ctx.can("keys:write");
    let now = crate::time::now_ms();
    body.push_str(r#"<h2>Keys</h2><div class="table-wrap"><table data-testid="keys"><thead><tr><th scope="col">Name</th><th scope="col">Prefix</th><th scope="col">Role</th><th scope="col">Scopes</th><th scope="col">State</th><th scope="col">Created</th><th scope="col">Expires</th><th scope="col">Last used</th>"#);
    if writer {
        body.push_str(r#"<th scope="col">Rotate / revoke</th>"#);
    }
    body.push_str("</tr></thead><tbody>");
    for k in items(&keys, "items") {
        let id = k["id"].as_str().unwrap_or_default();
        let revoked = !k["revoked_at"].is_null();
        let expired = k["expires_at"].as_i64().is_some_and(|e| e <= now);
        let state_badge = if revoked {
            badge("revoked")
        } else if expired {
            badge("expired")
        } else if !k["replaced_by"].is_null() {
            format!("{} {}", badge("active"), badge("rotating"))
        } else {
            badge("active")
        };
        let scopes = k["scopes"]
            .as_array()
            .filter(|a| !a.is_empty())
            .map_or_else(
                || "whole role".into(),
                |a| {
                    a.iter()
                        .map(crate::html::text)
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            );
        body.push_str(&format!(
            r#"<tr data-key="{}"><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"#,
            esc(id),
            field(k, "name"),
            field(k, "prefix"),
            field(k, "role"),
            esc(&scopes),
            state_badge,
            when(&k["created_at"]),
            when(&k["expires_at"]),
            when(&k["last_used_at"]),
        ));
        if writer {
            if revoked || expired {
                body.push_str("<td>—</td>");
            } else {
                let mut options = String::new();
                for (secs, label) in OVERLAPS {
                    let sel = if *secs == 86_400 { " selected" } else { "" };
                    options.push_str(&format!(r#"<option value="{secs}"{sel}>{label}</option>"#));
                }
                body.push_str(&format!(
                    r#"<td><form method="post" action="/ui/keys/{id_enc}/rotate" class="actions">{csrf}<label>Overlap <select name="overlap_secs">{options}</select></label><button type="submit" data-confirm="Rotate this key? A new key is shown once; the old one keeps working for the overlap.">Rotate</button></form>
<form method="post" action="/ui/keys/{id_enc}/revoke" class="actions">{csrf}<button type="submit" class="danger" data-confirm="Revoke this key now? Anything using it stops working at once.">Revoke now</button></form></td>"#,
                    id_enc = enc(id),
                    csrf = ctx.csrf_input(),
                ));
            }
        }
        body.push_str("</tr>");
    }
    body.push_str("</tbody></table></div>");
    if writer {
        body.push_str(&format!(
            r#"<h2>Create a key</h2><form method="post" action="/ui/keys" class="filters" aria-label="Create an API key">{}
<label>Name <input name="name" required maxlength="100"></label>
<label>Role <select name="role"><option>viewer</option><option>analyst</option><option>admin</option></select></label>
<label>Expires in days (empty: never) <input name="expires_days" inputmode="numeric" pattern="[0-9]*" size="6"></label>
<button type="submit">Create</button></form>
<p class="hint">The key is shown once. A key never gets more than its creator; keys for automation should have an expiry and be rotated with an overlap.</p>"#,
            ctx.csrf_input()
        ));
    }
    layout::page(&ctx, Some(Section::Keys), "API keys", &body)
}

fn shown_once(text: String, response: &Value) -> Flash {
    Flash {
        kind: "ok",
        text,
        secret: response["key"].as_str().map(str::to_string),
    }
}

pub(crate) async fn create(
    State(state): State<Arc<UiState>>,
    CheckedPost { ctx, form }: CheckedPost,
) -> Response {
    let mut request = json!({
        "name": form.get("name").unwrap_or_default().trim(),
        "role": form.get("role").unwrap_or("viewer"),
    });
    match form
        .get("expires_days")
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        None => {}
        Some(d) => match d.parse::<i64>() {
            Ok(days) if (1..=3650).contains(&days) => {
                request["expires_in_secs"] = json!(days * 86_400);
            }
            _ => {
                return state.flash_redirect(
                    &ctx,
                    "/ui/keys",
                    Flash {
                        kind: "error",
                        text: "Expiry must be a whole number of days from 1 to 3650.".into(),
                        secret: None,
                    },
                );
            }
        },
    }
    let flash = match state
        .api
        .send(Method::POST, ctx.credential(), "/v1/keys", Some(&request))
        .await
    {
        Ok(created) => shown_once(
            format!(
                "Created key {} ({}). Copy it now: it is not shown again.",
                created["api_key"]["prefix"].as_str().unwrap_or_default(),
                created["api_key"]["role"].as_str().unwrap_or_default()
            ),
            &created,
        ),
        Err(e) => Flash {
            kind: "error",
            text: format!("The key was not created: {e}"),
            secret: None,
        },
    };
    state.flash_redirect(&ctx, "/ui/keys", flash)
}

pub(crate) async fn act(
    State(state): State<Arc<UiState>>,
    Path((id, verb)): Path<(String, String)>,
    CheckedPost { ctx, form }: CheckedPost,
) -> Response {
    let path = format!("/v1/keys/{}", enc(&id));
    let result = match verb.as_str() {
        "rotate" => {
            let overlap: i64 = form
                .get("overlap_secs")
                .and_then(|s| s.parse().ok())
                .filter(|s| OVERLAPS.iter().any(|(o, _)| o == s))
                .unwrap_or(0);
            state
                .api
                .send(
                    Method::POST,
                    ctx.credential(),
                    &format!("{path}/rotate"),
                    Some(&json!({"overlap_secs": overlap})),
                )
                .await
                .map(|r| {
                    shown_once(
                        format!(
                            "Rotated: new key {}. The old key {}. Copy the new key now: it is not shown again.",
                            r["api_key"]["prefix"].as_str().unwrap_or_default(),
                            if overlap == 0 {
                                "no longer works".to_string()
                            } else {
                                format!("keeps working for {} more", OVERLAPS.iter().find(|(o, _)| *o == overlap).map_or("", |(_, l)| l))
                            }
                        ),
                        &r,
                    )
                })
        }
        "revoke" => state
            .api
            .send(Method::DELETE, ctx.credential(), &path, None)
            .await
            .map(|_| Flash {
                kind: "ok",
                text: "Revoked: the key no longer works.".into(),
                secret: None,
            }),
        _ => {
            return axum::http::StatusCode::NOT_FOUND.into_response();
        }
    };
    let flash = result.unwrap_or_else(|e| Flash {
        kind: "error",
        text: format!("{verb} refused: {e}"),
        secret: None,
    });
    state.flash_redirect(&ctx, "/ui/keys", flash)
}
