//! Fleet: the endpoint table with the API's filters, sorts and cursor paging, a live status
//! refresh, and bulk actions (quarantine, release, rescan, wrap) on the selected endpoints.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use reqwest::Method;
use serde_json::{Value, json};

use super::{items, list_text};
use crate::html::{enc, esc, field, query};
use crate::layout::{self, badge};
use crate::nav::Section;
use crate::session::Flash;
use crate::{CheckedPost, Ctx, SignedIn, SignedInFragment, UiState};

/// Rows per page.
const PAGE_ROWS: &str = "50";
/// Endpoints one bulk action may touch.
const MAX_BULK: usize = 200;

/// The list filters the API offers, as (parameter, label).
const FILTERS: &[(&str, &str)] = &[
    ("os", "OS"),
    ("client", "MCP client"),
    ("server", "Server"),
    ("risk_flag", "Risk flag"),
    ("tag", "Tag"),
    ("owner", "Owner"),
    ("environment", "Environment"),
    ("agent_version", "Agent version"),
];

/// Sortable columns: (API sort key, column label).
const SORTS: &[(&str, &str)] = &[
    ("hostname", "Host"),
    ("last_seen", "Last seen"),
    ("server_count", "Servers"),
    ("enrolled_at", "Enrolled"),
];

/// The request's list parameters, only those the API knows.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(raw: Option<&str>) -> Self {
        let known = |k: &str| {
            matches!(k, "q" | "status" | "state" | "sort" | "cursor")
                || FILTERS.iter().any(|(f, _)| *f == k)
        };
        Self(
            form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .filter(|(k, v)| known(k) && !v.is_empty() && v.len() <= 200)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    fn get(&self, key: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }

    /// The query string with `overrides` applied (an empty value removes the key).
    fn with(&self, overrides: &[(&str, &str)]) -> String {
        let mut pairs: Vec<(&str, &str)> = self
            .0
            .iter()
            .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        pairs.extend(overrides.iter().copied());
        query(pairs)
    }

    /// The API query: these filters and one page of rows.
    fn api_query(&self) -> String {
        self.with(&[("limit", PAGE_ROWS)])
    }
}

pub(crate) async fn page(
    State(state): State<Arc<UiState>>,
    RawQuery(raw): RawQuery,
    SignedIn(ctx): SignedIn,
) -> Response {
    if let Some(r) = layout::unavailable(&ctx, Section::Fleet) {
        return r;
    }
    let params = Params::parse(raw.as_deref());
    let page = match state
        .api
        .get(
            ctx.credential(),
            &format!("/v1/fleet/endpoints{}", params.api_query()),
        )
        .await
    {
        Ok(p) => p,
        Err(e) => return layout::failure(&ctx, Some(Section::Fleet), &e),
    };
    let writer = ctx.can("fleet:write");
    let mut body = filter_form(&params);
    body.push_str(&format!(
        r#"<form method="post" action="/ui/fleet/bulk" class="bulk">{}<input type="hidden" name="return" value="{}">"#,
        ctx.csrf_input(),
        esc(&params.with(&[("cursor", "")]))
    ));
    if writer {
        body.push_str(
            r#"<div class="actions" role="group" aria-label="Bulk actions on the selected endpoints"><span class="sub">Selected:</span>
<button type="submit" class="danger" name="action" value="quarantine" data-confirm="Quarantine the selected endpoints? Their agents stop every wrapped MCP server.">Quarantine</button>
<button type="submit" name="action" value="approve">Release / approve</button>
<button type="submit" name="action" value="rescan">Rescan</button>
<button type="submit" name="action" value="wrap" data-confirm="Wrap every stdio MCP server on the selected endpoints with the inspecting proxy?">Wrap</button></div>"#,
        );
    }
    body.push_str(r#"<div class="table-wrap"><table data-testid="fleet-table"><caption class="visually-hidden">Endpoints</caption><thead><tr>"#);
    if writer {
        body.push_str(r#"<th scope="col"><input type="checkbox" data-select-all="id" aria-label="Select all endpoints on this page"></th>"#);
    }
    let current = params.get("sort");
    for (key, label) in SORTS.iter().take(1) {
        body.push_str(&sort_header(&params, current, key, label));
    }
    body.push_str(
        r#"<th scope="col">Status</th><th scope="col">State</th><th scope="col">OS</th>"#,
    );
    for (key, label) in SORTS.iter().skip(1).take(2) {
        body.push_str(&sort_header(&params, current, key, label));
    }
    body.push_str(r#"<th scope="col">Agent</th><th scope="col">Owner / env</th><th scope="col">Tags</th></tr></thead>"#);
    body.push_str(&format!(
        r#"<tbody data-live="/ui/fleet/rows{}" data-live-interval="{}">"#,
        esc(&query(
            params.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
        )),
        state.config.live_interval.as_millis()
    ));
    body.push_str(&rows_html(&page, writer));
    body.push_str("</tbody></table></div></form>");
    if let Some(next) = page["next_cursor"].as_str() {
        body.push_str(&format!(
            r#"<p class="pager"><a href="/ui/fleet{}" data-testid="next-page">Next page</a></p>"#,
            esc(&params.with(&[("cursor", next)]))
        ));
    }
    layout::page(&ctx, Some(Section::Fleet), "Fleet", &body)
}

/// The table body alone, for the live refresh.
pub(crate) async fn rows(
    State(state): State<Arc<UiState>>,
    RawQuery(raw): RawQuery,
    SignedInFragment(ctx): SignedInFragment,
) -> Response {
    let params = Params::parse(raw.as_deref());
    match state
        .api
        .get(
            ctx.credential(),
            &format!("/v1/fleet/endpoints{}", params.api_query()),
        )
        .await
    {
        Ok(page) => Html(rows_html(&page, ctx.can("fleet:write"))).into_response(),
        Err(e) => (
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_GATEWAY),
            "",
        )
            .into_response(),
    }
}

fn sort_header(params: &Params, current: &str, key: &str, label: &str) -> String {
    let (next, aria) = if current == key {
        (format!("-{key}"), r#" aria-sort="ascending""#)
    } else if current.strip_prefix('-') == Some(key) {
        (key.to_string(), r#" aria-sort="descending""#)
    } else {
        (key.to_string(), "")
    };
    format!(
        r#"<th scope="col"{aria}><a href="/ui/fleet{}" data-sort="{key}">{label}</a></th>"#,
        esc(&params.with(&[("sort", &next), ("cursor", "")]))
    )
}

fn filter_form(params: &Params) -> String {
    let mut out = format!(
        r#"<form method="get" action="/ui/fleet" class="filters" role="search" aria-label="Filter endpoints">
<label>Search <input name="q" type="search" value="{}" placeholder="host, owner, server…"></label>"#,
        esc(params.get("q"))
    );
    out.push_str(&select(
        "status",
        "Status",
        params.get("status"),
        &["online", "offline", "stale"],
    ));
    out.push_str(&select(
        "state",
        "State",
        params.get("state"),
        &["discovered", "approved", "quarantined", "decommissioned"],
    ));
    for (key, label) in FILTERS {
        out.push_str(&format!(
            r#"<label>{label} <input name="{key}" value="{}" size="10"></label>"#,
            esc(params.get(key))
        ));
    }
    if !params.get("sort").is_empty() {
        out.push_str(&format!(
            r#"<input type="hidden" name="sort" value="{}">"#,
            esc(params.get("sort"))
        ));
    }
    out.push_str(r#"<button type="submit">Filter</button> <a href="/ui/fleet">Clear</a></form>"#);
    out
}

fn select(name: &str, label: &str, current: &str, options: &[&str]) -> String {
    let mut out = format!(r#"<label>{label} <select name="{name}"><option value="">any</option>"#);
    for o in options {
        let sel = if *o == current { " selected" } else { "" };
        out.push_str(&format!(r#"<option{sel}>{o}</option>"#));
    }
    out.push_str("</select></label>");
    out
}

fn rows_html(page: &Value, writer: bool) -> String {
    let list = items(page, "items");
    let cols = if writer { 10 } else { 9 };
    if list.is_empty() {
        return format!(
            r#"<tr><td colspan="{cols}" class="sub" data-testid="fleet-empty">No endpoint matches.</td></tr>"#
        );
    }
    let mut out = String::new();
    for e in list {
        let id = e["id"].as_str().unwrap_or_default();
        out.push_str(&format!(r#"<tr data-endpoint="{}">"#, esc(id)));
        if writer {
            out.push_str(&format!(
                r#"<td><input type="checkbox" name="id" value="{}" aria-label="Select {}"></td>"#,
                esc(id),
                field(e, "hostname")
            ));
        }
        let tags = list_text(&e["tags"]);
        out.push_str(&format!(
            r#"<td><a href="/ui/endpoints/{}">{}</a></td><td data-testid="status">{}</td><td data-testid="state">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td></tr>"#,
            enc(id),
            field(e, "hostname"),
            badge(e["status"].as_str().unwrap_or("?")),
            badge(e["lifecycle_state"].as_str().unwrap_or("?")),
            field(e, "os"),
            field(e, "last_seen"),
            field(e, "server_count"),
            field(e, "agent_version"),
            field(e, "owner"),
            field(e, "environment"),
            esc(&tags),
        ));
    }
    out
}

/// What one bulk action does to one endpoint: (method, API path suffix, body).
pub(crate) fn action_call(action: &str) -> Option<(&'static str, Value)> {
    Some(match action {
        "quarantine" => (
            "state",
            json!({"state": "quarantined", "reason": "quarantined from the dashboard"}),
        ),
        "approve" => ("state", json!({"state": "approved"})),
        "rescan" => ("commands", json!({"kind": "rescan"})),
        "wrap" => ("commands", json!({"kind": "wrap", "payload": {}})),
        "unwrap" => ("commands", json!({"kind": "unwrap", "payload": {}})),
        _ => return None,
    })
}

/// Run one action on endpoints; (succeeded, first failure).
pub(crate) async fn run_action(
    state: &UiState,
    ctx: &Ctx,
    action: &str,
    ids: &[&str],
) -> (usize, Option<String>) {
    let Some((suffix, body)) = action_call(action) else {
        return (0, Some(format!("unknown action {action:?}")));
    };
    let mut ok = 0;
    let mut first_error = None;
    for id in ids {
        match state
            .api
            .send(
                Method::POST,
                ctx.credential(),
                &format!("/v1/fleet/endpoints/{}/{suffix}", enc(id)),
                Some(&body),
            )
            .await
        {
            Ok(_) => ok += 1,
            Err(e) => {
                first_error.get_or_insert_with(|| format!("{id}: {e}"));
            }
        }
    }
    (ok, first_error)
}

pub(crate) async fn bulk(
    State(state): State<Arc<UiState>>,
    CheckedPost { ctx, form }: CheckedPost,
) -> Response {
    let back = format!(
        "/ui/fleet{}",
        form.get("return")
            .filter(|r| r.starts_with('?') && !r.contains(['\r', '\n']))
            .unwrap_or("")
    );
    let action = form.get("action").unwrap_or_default();
    let ids = form.all("id");
    let flash = if ids.is_empty() {
        Flash {
            kind: "error",
            text: "Select at least one endpoint.".into(),
            secret: None,
        }
    } else if ids.len() > MAX_BULK {
        Flash {
            kind: "error",
            text: format!("At most {MAX_BULK} endpoints per action; narrow the filter."),
            secret: None,
        }
    } else {
        let (ok, error) = run_action(&state, &ctx, action, &ids).await;
        match error {
            None => Flash {
                kind: "ok",
                text: format!("{action}: done for {ok} endpoint(s)."),
                secret: None,
            },
            Some(e) => Flash {
                kind: "error",
                text: format!("{action}: done for {ok} of {}; refused: {e}", ids.len()),
                secret: None,
            },
        }
    };
    state.flash_redirect(&ctx, &back, flash)
}
