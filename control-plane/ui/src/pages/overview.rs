//! Overview: the deployment mode, endpoint status, MCP servers and their risk, proxy coverage,
//! recent detections and the audit trend, from posture counts and small API reads (never a
//! large payload: each list is one page of at most a few dozen rows).

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use serde_json::Value;

use super::{items, list_text};
use crate::html::{esc, field, time_ms};
use crate::layout::{self, badge, tile};
use crate::nav::{self, Section};
use crate::{SignedIn, UiState, chart};

/// Detections shown.
const RECENT_DETECTIONS: usize = 8;
/// Audit entries the trend is drawn from (one API page).
const TREND_WINDOW: i64 = 1000;
/// Days in the trend chart.
const TREND_DAYS: i64 = 14;

pub(crate) async fn page(State(state): State<Arc<UiState>>, SignedIn(ctx): SignedIn) -> Response {
    let p = ctx.posture().clone();
    let n = |k: &str| p[k].as_i64().unwrap_or(0);
    let mode = nav::mode_of(&p);
    let online = n("endpoints_online");
    let stale = n("endpoints_stale");
    let offline = (n("endpoints") - online - stale).max(0);

    let mut body = format!(
        r#"<section class="mode-banner" data-testid="deployment-mode"><p>Deployment mode <strong>{mode}</strong>: {}.</p></section>"#,
        esc(mode.describe())
    );
    if mode == agent_bom_protocol::deployment::DeploymentMode::Local {
        body.push_str(r#"<section class="empty" data-testid="get-started"><h2>Get started</h2><p>Nothing reports to this tenant yet. Run <code>agent-bom up</code> on a machine to see its MCP servers here, enroll agents (see <a href="/ui/enrollment">Enrollment</a>), or push an inventory with <code>agent-bom fleet sync</code>. The Fleet, MCP servers and Policies pages appear as soon as endpoints report.</p></section>"#);
    }
    body.push_str(r#"<section class="tiles">"#);
    for (label, value, id) in [
        ("Endpoints", n("endpoints"), "tile-endpoints"),
        ("Online", online, "tile-online"),
        ("Offline", offline, "tile-offline"),
        ("Stale", stale, "tile-stale"),
        ("MCP servers", n("servers"), "tile-servers"),
        ("Risky server entries", n("risky_servers"), "tile-risky"),
        ("Quarantined", n("quarantined"), "tile-quarantined"),
    ] {
        body.push_str(&tile(label, &value.to_string(), id));
    }
    body.push_str("</section><section class=\"charts\">");
    body.push_str(&chart::bars(
        "Endpoints by status",
        &[
            ("online", online, "ok"),
            ("offline", offline, "warn"),
            ("stale", stale, "bad"),
        ],
    ));
    body.push_str(&chart::ring(
        "Proxy coverage (server entries behind the proxy)",
        n("wrapped_servers"),
        n("server_entries"),
    ));
    body.push_str(&chart::bars(
        "Server entries by risk",
        &[
            ("risky", n("risky_servers"), "bad"),
            (
                "no flags",
                (n("server_entries") - n("risky_servers")).max(0),
                "ok",
            ),
        ],
    ));

    let api = &state.api;
    let cred = ctx.credential();
    // The page's three reads go out together: it waits for the slowest, not for their sum.
    let audit = ctx.can("audit:read");
    let fleet = matches!(
        nav::Section::Fleet.availability(&p, &nav::permissions(&ctx.session.me)),
        nav::Availability::Shown
    );
    let after = (n("audit_events") - TREND_WINDOW).max(0);
    let trend_path = format!("/v1/audit?after={after}&limit={TREND_WINDOW}");
    let detections_path =
        format!("/v1/audit?action=proxy.detection&after={after}&limit={TREND_WINDOW}");
    let (trend, recent, detections) = tokio::join!(
        async {
            if audit {
                Some(api.get(cred, &trend_path).await)
            } else {
                None
            }
        },
        async {
            if fleet {
                Some(
                    api.get(cred, "/v1/fleet/endpoints?limit=5&sort=-last_seen")
                        .await,
                )
            } else {
                None
            }
        },
        async {
            if audit {
                Some(api.get(cred, &detections_path).await)
            } else {
                None
            }
        },
    );
    if let Some(trend) = trend {
        match trend {
            Ok(page) => body.push_str(&chart::columns(
                "Audit activity per day (admin actions, detections)",
                &per_day(items(&page, "items")),
            )),
            Err(e) => tracing::warn!(error = %e, "overview: cannot read the audit trend"),
        }
    }
    body.push_str("</section>");

    if let Some(recent) = recent {
        body.push_str(r#"<section><h2>Recently seen endpoints</h2>"#);
        match recent {
            Ok(page) => {
                body.push_str(r#"<table data-testid="recent-endpoints"><thead><tr><th scope="col">Host</th><th scope="col">Status</th><th scope="col">OS</th><th scope="col">Servers</th><th scope="col">Last seen</th></tr></thead><tbody>"#);
                for e in items(&page, "items") {
                    body.push_str(&format!(
                        r#"<tr><td><a href="/ui/endpoints/{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                        crate::html::enc(e["id"].as_str().unwrap_or_default()),
                        field(e, "hostname"),
                        badge(e["status"].as_str().unwrap_or("?")),
                        field(e, "os"),
                        field(e, "server_count"),
                        field(e, "last_seen"),
                    ));
                }
                body.push_str(
                    r#"</tbody></table><p><a href="/ui/fleet">All endpoints</a></p></section>"#,
                );
            }
            Err(e) => body.push_str(&format!(
                r#"<p class="flash error">{}</p></section>"#,
                esc(&e.to_string())
            )),
        }
    }

    if let Some(detections) = detections {
        body.push_str(r#"<section><h2>Recent detections</h2>"#);
        match detections {
            Ok(page) => {
                let list = items(&page, "items");
                if list.is_empty() {
                    body.push_str(r#"<p class="sub" data-testid="no-detections">No proxy detection recorded.</p>"#);
                } else {
                    body.push_str(&detections_table(list.iter().rev().take(RECENT_DETECTIONS)));
                }
            }
            Err(e) => body.push_str(&format!(
                r#"<p class="flash error">{}</p>"#,
                esc(&e.to_string())
            )),
        }
        body.push_str("</section>");
    }
    layout::page(&ctx, Some(Section::Overview), "Overview", &body)
}

/// A table of `proxy.detection` audit entries.
pub(crate) fn detections_table<'a>(entries: impl Iterator<Item = &'a Value>) -> String {
    let mut out = String::from(
        r#"<table data-testid="detections"><thead><tr><th scope="col">When</th><th scope="col">Endpoint</th><th scope="col">Server</th><th scope="col">Tool</th><th scope="col">Decision</th><th scope="col">Reasons</th></tr></thead><tbody>"#,
    );
    for e in entries {
        let d = &e["detail"];
        let endpoint = d["endpoint_id"].as_str().unwrap_or_default();
        let reasons = list_text(&d["reasons"]);
        out.push_str(&format!(
            r#"<tr><td>{}</td><td><a href="/ui/endpoints/{}">{}</a></td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            time_ms(e["at_ms"].as_i64().unwrap_or(0)),
            crate::html::enc(endpoint),
            esc(&endpoint.chars().take(12).collect::<String>()),
            field(e, "target"),
            field(d, "tool"),
            badge(d["decision"].as_str().unwrap_or("?")),
            esc(&reasons),
        ));
    }
    out.push_str("</tbody></table>");
    out
}

/// Entries per UTC day over the last [`TREND_DAYS`] days ending today, oldest first.
fn per_day(entries: &[Value]) -> Vec<(String, i64)> {
    let today = crate::time::now_ms().div_euclid(86_400_000);
    let first = today - TREND_DAYS + 1;
    let mut counts = vec![0i64; TREND_DAYS as usize];
    for e in entries {
        let day = e["at_ms"].as_i64().unwrap_or(0).div_euclid(86_400_000);
        if let Ok(i) = usize::try_from(day - first)
            && let Some(c) = counts.get_mut(i)
        {
            *c += 1;
        }
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let (_, m, d) = crate::html::civil_from_days(first + i as i64);
            (format!("{m:02}-{d:02}"), c)
        })
        .collect()
}
