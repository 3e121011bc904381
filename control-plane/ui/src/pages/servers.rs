//! MCP servers: the fleet-wide view grouped by server identity, where each runs (a link to the
//! fleet filtered by the server), its transports, clients and risk flags.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::Response;

use super::{items, list_text};
use crate::html::{esc, field, query, text};
use crate::layout::{self, badge};
use crate::nav::Section;
use crate::{SignedIn, UiState};

pub(crate) async fn page(
    State(state): State<Arc<UiState>>,
    RawQuery(raw): RawQuery,
    SignedIn(ctx): SignedIn,
) -> Response {
    if let Some(r) = layout::unavailable(&ctx, Section::Servers) {
        return r;
    }
    let cursor = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "cursor")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let page = match state
        .api
        .get(
            ctx.credential(),
            &format!(
                "/v1/fleet/servers{}",
                query([("limit", "100"), ("cursor", cursor.as_str())])
            ),
        )
        .await
    {
        Ok(p) => p,
        Err(e) => return layout::failure(&ctx, Some(Section::Servers), &e),
    };
    let mut body = String::from(
        r#"<p class="sub">One row per server identity (the same launch on any machine); names are the names configs give it.</p><div class="table-wrap"><table data-testid="server-groups"><thead><tr><th scope="col">Names</th><th scope="col">Transport</th><th scope="col">Launch</th><th scope="col">Endpoints</th><th scope="col">Clients</th><th scope="col">Risk flags</th><th scope="col">Last seen</th></tr></thead><tbody>"#,
    );
    for g in items(&page, "items") {
        let first_name = g["names"][0].as_str().unwrap_or_default();
        let launch = g["url"]
            .as_str()
            .map_or_else(|| text(&g["command"]), str::to_string);
        let flags: String = g["risk_flags"]
            .as_array()
            .map(|a| a.iter().map(|f| badge(&text(f))).collect())
            .unwrap_or_default();
        body.push_str(&format!(
            r#"<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td><a href="/ui/fleet{}" title="Endpoints running it">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(&list_text(&g["names"])),
            field(g, "transport"),
            esc(&launch),
            esc(&query([("server", first_name)])),
            field(g, "endpoint_count"),
            esc(&list_text(&g["clients"])),
            flags,
            field(g, "last_seen"),
        ));
    }
    if items(&page, "items").is_empty() {
        body.push_str(r#"<tr><td colspan="7" class="sub">No MCP server reported.</td></tr>"#);
    }
    body.push_str("</tbody></table></div>");
    if let Some(next) = page["next_cursor"].as_str() {
        body.push_str(&format!(
            r#"<p class="pager"><a href="/ui/servers{}">Next page</a></p>"#,
            esc(&query([("cursor", next)]))
        ));
    }
    layout::page(&ctx, Some(Section::Servers), "MCP servers", &body)
}
