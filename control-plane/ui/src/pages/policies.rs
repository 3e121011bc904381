//! Policies: the proxy policy in force, editing it (the API's validation error shown in place,
//! the edited text kept), its revisions, and its rollout (how many agents applied it).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use reqwest::Method;
use serde_json::{Value, json};

use super::items;
use crate::html::{esc, field};
use crate::nav::Section;
use crate::session::Flash;
use crate::{CheckedPost, Ctx, SignedIn, UiState, layout};

async fn render(state: &UiState, ctx: &Ctx, draft: Option<(&str, &str)>) -> Response {
    let api = &state.api;
    // Three independent reads, together.
    let (current, revisions, rollout) = tokio::join!(
        api.get(ctx.credential(), "/v1/policy"),
        api.get(ctx.credential(), "/v1/policy/revisions?limit=20"),
        api.get(ctx.credential(), "/v1/policy/rollout?limit=50"),
    );
    let current = match current {
        Ok(c) => c,
        Err(e) => return layout::failure(ctx, Some(Section::Policies), &e),
    };
    let revisions = revisions.unwrap_or(Value::Null);
    let rollout = rollout.unwrap_or(Value::Null);
    let e = if rollout["endpoints"].is_object() {
        &rollout["endpoints"]
    } else {
        &current["endpoints"]
    };
    let mut body = format!(
        r#"<section class="tiles">{}{}{}{}</section>"#,
        layout::tile(
            "Revision in force",
            &current["revision"]
                .as_i64()
                .map_or_else(|| "none".into(), |r| r.to_string()),
            "policy-revision"
        ),
        layout::tile(
            "Agents",
            &e["agents"].as_i64().unwrap_or(0).to_string(),
            "policy-agents"
        ),
        layout::tile(
            "Applied it",
            &e["applied"].as_i64().unwrap_or(0).to_string(),
            "policy-applied"
        ),
        layout::tile(
            "Still pending",
            &e["pending"].as_i64().unwrap_or(0).to_string(),
            "policy-pending"
        ),
    );
    body.push_str(&crate::chart::ring(
        "Rollout of the revision in force",
        e["applied"].as_i64().unwrap_or(0),
        e["agents"].as_i64().unwrap_or(0),
    ));
    if let Some(revision) = rollout["revision"].as_i64() {
        let pending = items(&rollout, "pending");
        body.push_str(&format!(r#"<h2>Agents not on revision {revision}</h2>"#));
        if pending.is_empty() {
            body.push_str(r#"<p class="sub" data-testid="rollout-complete">Every active agent applied it.</p>"#);
        } else {
            body.push_str(r#"<table data-testid="rollout-pending"><thead><tr><th scope="col">Host</th><th scope="col">Applied revision</th><th scope="col">Last seen</th></tr></thead><tbody>"#);
            for p in pending {
                body.push_str(&format!(
                    r#"<tr><td><a href="/ui/endpoints/{}">{}</a></td><td>{}</td><td>{}</td></tr>"#,
                    crate::html::enc(p["id"].as_str().unwrap_or_default()),
                    field(p, "hostname"),
                    p["applied_policy_revision"]
                        .as_i64()
                        .map_or_else(|| "none yet".into(), |r| r.to_string()),
                    field(p, "last_seen"),
                ));
            }
            body.push_str("</tbody></table>");
        }
    }
    let text = match draft {
        Some((t, _)) => t.to_string(),
        None => current["policy"].as_str().unwrap_or_default().to_string(),
    };
    if ctx.can("policy:write") {
        let error = draft.map_or(String::new(), |(_, err)| {
            format!(
                r#"<p class="flash error" role="alert" id="policy-error" data-testid="policy-error">{}</p>"#,
                esc(err)
            )
        });
        body.push_str(&format!(
            r#"<h2>Edit</h2><form method="post" action="/ui/policies" class="card wide-card" aria-label="Publish a policy revision">{}{error}<label for="policy">Policy (TOML)</label><textarea id="policy" name="policy" rows="16" spellcheck="false"{}>{}</textarea><button type="submit" data-confirm="Publish this policy to every agent of the tenant?">Publish a new revision</button></form>"#,
            ctx.csrf_input(),
            if draft.is_some() { r#" aria-invalid="true" aria-describedby="policy-error""# } else { "" },
            esc(&text),
        ));
    } else {
        body.push_str(&format!(r#"<h2>In force</h2><pre>{}</pre>"#, esc(&text)));
    }
    body.push_str(r#"<h2>Revisions</h2><table data-testid="policy-revisions"><thead><tr><th scope="col">Revision</th><th scope="col">Published</th><th scope="col">By</th></tr></thead><tbody>"#);
    for r in items(&revisions, "items") {
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            field(r, "revision"),
            field(r, "created_at"),
            field(r, "created_by"),
        ));
    }
    body.push_str("</tbody></table>");
    let status = if draft.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    layout::page_with_status(ctx, status, Some(Section::Policies), "Policies", &body)
}

pub(crate) async fn page(State(state): State<Arc<UiState>>, SignedIn(ctx): SignedIn) -> Response {
    if let Some(r) = layout::unavailable(&ctx, Section::Policies) {
        return r;
    }
    render(&state, &ctx, None).await
}

pub(crate) async fn publish(
    State(state): State<Arc<UiState>>,
    CheckedPost { ctx, form }: CheckedPost,
) -> Response {
    let text = form.get("policy").unwrap_or_default().replace("\r\n", "\n");
    match state
        .api
        .send(
            Method::PUT,
            ctx.credential(),
            "/v1/policy",
            Some(&json!({"policy": text})),
        )
        .await
    {
        Ok(published) => state.flash_redirect(
            &ctx,
            "/ui/policies",
            Flash {
                kind: "ok",
                text: format!(
                    "Published revision {}; agents apply it as they receive it.",
                    published["revision"].as_i64().unwrap_or(0)
                ),
                secret: None,
            },
        ),
        // Validation errors are shown in place, with the text as the user wrote it.
        Err(crate::api::ApiFailure::Refused {
            status: 400,
            message,
            ..
        }) => render(&state, &ctx, Some((&text, &message))).await,
        Err(e) => layout::failure(&ctx, Some(Section::Policies), &e),
    }
}
