//! Audit: the tenant's hash-chained log, newest page first, filtered by action; whether the
//! chain verifies; and the signed NDJSON exports (passed through from the API with their
//! signature header).

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::items;
use crate::html::{esc, field, query, time_ms};
use crate::layout::{self, badge};
use crate::nav::Section;
use crate::{SignedIn, UiState};

/// Entries per page.
const PAGE: i64 = 50;

pub(crate) async fn page(
    State(state): State<Arc<UiState>>,
    RawQuery(raw): RawQuery,
    SignedIn(ctx): SignedIn,
) -> Response {
    if let Some(r) = layout::unavailable(&ctx, Section::Audit) {
        return r;
    }
    let mut action = String::new();
    let mut before: Option<i64> = None;
    for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match &*k {
            "action" if v.len() <= 100 => action = v.into_owned(),
            "before" => before = v.parse().ok().filter(|b: &i64| *b > 0),
            _ => {}
        }
    }
    let api = &state.api;
    let cred = ctx.credential();
    let mut body = String::new();
    match api.get(cred, "/v1/audit/verify").await {
        Ok(v) => {
            let ok = v["ok"].as_bool() == Some(true);
            body.push_str(&format!(
                r#"<section class="mode-banner" data-testid="chain-status"><p>Hash chain: {} — {} entries checked. {}</p></section>"#,
                if ok { badge("verified") } else { badge("broken") },
                field(&v, "entries"),
                esc(&match (v["first_bad_seq"].as_i64(), v["problem"].as_str()) {
                    (Some(seq), p) => format!("First bad entry: #{seq}. {}", p.unwrap_or_default()),
                    (None, Some(p)) => p.to_string(),
                    (None, None) => String::new(),
                }),
            ));
        }
        Err(e) => body.push_str(&format!(
            r#"<p class="flash error">{}</p>"#,
            esc(&e.to_string())
        )),
    }
    // The newest page: the log is read oldest first after a sequence number, and its length
    // is the tenant's audit count.
    let total = ctx.posture()["audit_events"].as_i64().unwrap_or(0);
    let end = before.unwrap_or(total + 1).min(total + 1);
    let after = (end - 1 - PAGE).max(0);
    let path = format!(
        "/v1/audit{}",
        query([
            ("after", after.to_string().as_str()),
            ("limit", PAGE.to_string().as_str()),
            ("action", action.as_str()),
        ])
    );
    body.push_str(&format!(
        r#"<form method="get" action="/ui/audit" class="filters" role="search" aria-label="Filter the audit log"><label>Action <input name="action" value="{}" placeholder="api_key.rotate"></label><button type="submit">Filter</button> <a href="/ui/audit">Clear</a></form>"#,
        esc(&action)
    ));
    if ctx.can("audit:export") {
        body.push_str(r#"<p class="actions"><a href="/ui/audit/export/audit" download>Download the signed audit export (NDJSON)</a> <a href="/ui/audit/export/fleet" download>Download the signed fleet export</a></p>"#);
    }
    match api.get(cred, &path).await {
        Ok(page) => {
            body.push_str(r#"<div class="table-wrap"><table data-testid="audit"><thead><tr><th scope="col">#</th><th scope="col">When (UTC)</th><th scope="col">Actor</th><th scope="col">Action</th><th scope="col">Target</th><th scope="col">Detail</th></tr></thead><tbody>"#);
            let list = items(&page, "items");
            for e in list
                .iter()
                .rev()
                .filter(|e| e["seq"].as_i64().is_some_and(|s| s < end))
            {
                let detail = e["detail"].to_string();
                let short: String = detail.chars().take(160).collect();
                body.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
                    field(e, "seq"),
                    time_ms(e["at_ms"].as_i64().unwrap_or(0)),
                    field(e, "actor"),
                    field(e, "action"),
                    field(e, "target"),
                    esc(&short),
                ));
            }
            if list.is_empty() {
                body.push_str(r#"<tr><td colspan="6" class="sub">No entry.</td></tr>"#);
            }
            body.push_str("</tbody></table></div>");
            if after > 0 && action.is_empty() {
                body.push_str(&format!(
                    r#"<p class="pager"><a href="/ui/audit?before={}">Older entries</a></p>"#,
                    after + 1
                ));
            }
        }
        Err(e) => return layout::failure(&ctx, Some(Section::Audit), &e),
    }
    layout::page(&ctx, Some(Section::Audit), "Audit", &body)
}

/// A signed export, passed through with its signature header, as a download.
pub(crate) async fn export(
    State(state): State<Arc<UiState>>,
    Path(which): Path<String>,
    SignedIn(ctx): SignedIn,
) -> Response {
    let path = match which.as_str() {
        "audit" => "/v1/audit/export",
        "fleet" => "/v1/fleet/export",
        _ => return axum::http::StatusCode::NOT_FOUND.into_response(),
    };
    match state
        .api
        .get_raw(ctx.credential(), path, &["x-agent-bom-signature"])
        .await
    {
        Ok((bytes, picked)) => {
            let mut r = bytes.into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
            let disposition = format!("attachment; filename=\"agent-bom-{which}-export.ndjson\"");
            if let Ok(v) = HeaderValue::from_str(&disposition) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            for (name, value) in picked {
                if let (Ok(n), Ok(v)) = (
                    axum::http::HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(&value),
                ) {
                    h.insert(n, v);
                }
            }
            r
        }
        Err(e) => layout::failure(&ctx, Some(Section::Audit), &e),
    }
}
