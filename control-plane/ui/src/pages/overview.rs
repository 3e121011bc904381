//! Overview: the deployment mode, endpoint status, MCP servers and their risk, proxy coverage,
//! recent detections, the audit trend and the posture trends over a window, from posture counts
//! and small API reads (never a large payload: each list is one page of at most a few dozen
//! rows, the history a few hundred points).

use std::sync::Arc;

use axum::extract::{RawQuery, State};
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

/// The trend windows the API serves, as the switch offers them.
const WINDOWS: [(&str, &str); 3] = [("24h", "24 hours"), ("7d", "7 days"), ("30d", "30 days")];

/// `window=` of the page's query: one of [`WINDOWS`], `24h` otherwise.
fn window_of(query: Option<&str>) -> &'static str {
    let asked = query
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("window="));
    WINDOWS
        .iter()
        .map(|(w, _)| *w)
        .find(|w| Some(*w) == asked)
        .unwrap_or("24h")
}

pub(crate) async fn page(
    State(state): State<Arc<UiState>>,
    RawQuery(query): RawQuery,
    SignedIn(ctx): SignedIn,
) -> Response {
    let window = window_of(query.as_deref());
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
    let history_path = format!("/v1/posture/history?window={window}");
    let (trend, recent, detections, history) = tokio::join!(
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
        api.get(cred, &history_path),
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
    body.push_str(&trends(window, history));

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

/// The posture trends over `window`: the window switch (plain links), then a chart per topic, or
/// an empty state that says when the first sample comes.
fn trends(window: &str, history: Result<Value, crate::api::ApiFailure>) -> String {
    let mut out = String::from(
        r#"<section class="trends" aria-labelledby="trends-h" data-testid="trends"><h2 id="trends-h">Trends</h2><ul class="window-switch" aria-label="Trend window">"#,
    );
    for (w, label) in WINDOWS {
        let current = if w == window {
            r#" aria-current="page""#
        } else {
            ""
        };
        out.push_str(&format!(
            r#"<li><a href="/ui/?window={w}"{current} data-testid="window-{w}">{label}</a></li>"#
        ));
    }
    out.push_str("</ul>");
    let h = match history {
        Ok(h) => h,
        Err(e) => {
            out.push_str(&format!(
                r#"<p class="flash error">{}</p></section>"#,
                esc(&e.to_string())
            ));
            return out;
        }
    };
    let points = items(&h, "points");
    let int = |v: &Value| v.as_i64().unwrap_or(0);
    if points.is_empty() {
        let next = int(&h["next_sample_at_ms"]);
        let minutes = ((next - crate::time::now_ms()).max(0) + 59_999) / 60_000;
        let every = int(&h["sample_interval_ms"]) / 60_000;
        out.push_str(&format!(
            r#"<div class="empty" data-testid="trends-empty"><p>No history yet. The control plane samples this tenant's posture every {every} minutes; the first sample arrives at {} UTC (in about {minutes} min). Reload then to see the trends.</p></div></section>"#,
            time_ms(next)
        ));
        return out;
    }
    let times: Vec<i64> = points.iter().map(|p| int(&p["at_ms"])).collect();
    let series = |key: &str| -> Vec<f64> {
        points
            .iter()
            .map(|p| p[key].as_f64().unwrap_or(0.0))
            .collect()
    };
    let (from_ms, to_ms, step_ms) = (int(&h["from_ms"]), int(&h["to_ms"]), int(&h["step_ms"]));
    let step_words = match step_ms / 60_000 {
        m if m < 60 => format!("{m} minutes"),
        60 => "hour".to_string(),
        m => format!("{} hours", m / 60),
    };
    let detections_title = format!("Proxy detections per {step_words}");
    let charts = [
        chart::Trend {
            title: "Endpoints by status",
            id: "trend-endpoints",
            kind: chart::TrendKind::Areas,
            from_ms,
            to_ms,
            step_ms,
            times: &times,
            series: vec![
                chart::Series {
                    label: "online",
                    class: "ok",
                    values: series("endpoints_online"),
                },
                chart::Series {
                    label: "offline",
                    class: "warn",
                    values: series("endpoints_offline"),
                },
                chart::Series {
                    label: "stale",
                    class: "bad",
                    values: series("endpoints_stale"),
                },
            ],
            max: None,
            unit: "",
        },
        chart::Trend {
            title: "MCP servers and risky server entries",
            id: "trend-servers",
            kind: chart::TrendKind::Lines,
            from_ms,
            to_ms,
            step_ms,
            times: &times,
            series: vec![
                chart::Series {
                    label: "MCP servers",
                    class: "acc",
                    values: series("servers"),
                },
                chart::Series {
                    label: "risky entries",
                    class: "bad",
                    values: series("risky_servers"),
                },
            ],
            max: None,
            unit: "",
        },
        chart::Trend {
            title: "Proxy coverage (server entries behind the proxy)",
            id: "trend-coverage",
            kind: chart::TrendKind::Lines,
            from_ms,
            to_ms,
            step_ms,
            times: &times,
            series: vec![chart::Series {
                label: "coverage",
                class: "ok",
                values: series("proxy_coverage_percent"),
            }],
            max: Some(100.0),
            unit: "%",
        },
        chart::Trend {
            title: &detections_title,
            id: "trend-detections",
            kind: chart::TrendKind::Stacked,
            from_ms,
            to_ms,
            step_ms,
            times: &times,
            series: vec![chart::Series {
                label: "detections",
                class: "bad",
                values: series("detections"),
            }],
            max: None,
            unit: "",
        },
    ];
    out.push_str(r#"<div class="charts">"#);
    for c in &charts {
        out.push_str(&chart::trend(c));
    }
    out.push_str("</div></section>");
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_window_comes_from_the_query_and_defaults_to_a_day() {
        assert_eq!(window_of(None), "24h");
        assert_eq!(window_of(Some("window=7d")), "7d");
        assert_eq!(window_of(Some("x=1&window=30d")), "30d");
        assert_eq!(window_of(Some("window=1y")), "24h");
        assert_eq!(window_of(Some("window=7d%3Cscript")), "24h");
    }

    #[test]
    fn no_history_says_when_the_first_sample_comes() {
        let next = crate::time::now_ms() + 4 * 60_000;
        let html = trends(
            "7d",
            Ok(
                json!({"points": [], "next_sample_at_ms": next, "sample_interval_ms": 300_000,
                      "from_ms": 0, "to_ms": 1, "step_ms": 3_600_000}),
            ),
        );
        assert!(html.contains(r#"data-testid="trends-empty""#), "{html}");
        assert!(
            html.contains(&format!("arrives at {} UTC", time_ms(next))),
            "{html}"
        );
        assert!(
            html.contains("every 5 minutes") && html.contains("in about 4 min"),
            "{html}"
        );
        assert!(!html.contains("<svg"), "no empty charts");
        assert!(
            html.contains(r#"href="/ui/?window=7d" aria-current="page""#),
            "the switch marks the window shown: {html}"
        );
    }

    #[test]
    fn history_draws_a_chart_per_topic() {
        let point = |at: i64, online: i64, det: i64| {
            json!({"at_ms": at, "endpoints": 3, "endpoints_online": online, "endpoints_offline": 3 - online,
                   "endpoints_stale": 0, "servers": 4, "server_entries": 8, "risky_servers": 1,
                   "wrapped_servers": 2, "proxy_coverage_percent": 25.0, "detections": det})
        };
        let html = trends(
            "24h",
            Ok(
                json!({"points": [point(0, 1, 0), point(300_000, 3, 7)], "next_sample_at_ms": 600_000,
                      "sample_interval_ms": 300_000, "from_ms": 0, "to_ms": 600_000, "step_ms": 300_000}),
            ),
        );
        for id in [
            "trend-endpoints",
            "trend-servers",
            "trend-coverage",
            "trend-detections",
        ] {
            assert!(
                html.contains(&format!(r#"data-testid="{id}""#)),
                "{id}: {html}"
            );
        }
        assert!(html.contains("Proxy detections per 5 minutes"), "{html}");
        assert!(
            html.contains("<td>25%</td>") && html.contains("<td>7</td>"),
            "{html}"
        );
        assert!(!html.contains("trends-empty"));
    }

    #[test]
    fn a_failed_read_is_said_not_hidden() {
        let html = trends(
            "24h",
            Err(crate::api::ApiFailure::Refused {
                status: 403,
                code: "forbidden".into(),
                message: "no".into(),
            }),
        );
        assert!(
            html.contains(r#"class="flash error""#) && html.contains("forbidden"),
            "{html}"
        );
    }
}
