//! Tenants (super-admins only): the installation's tenants, creating one (its first admin key
//! shown once), and each tenant's quotas and rate limits.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::items;
use crate::html::{enc, esc, time_ms};
use crate::nav::Section;
use crate::session::Flash;
use crate::{CheckedPost, SignedIn, UiState, layout};

/// Tenants listed with their quotas.
const MAX_SHOWN: usize = 200;

/// Quota fields, as the API names them, with labels.
const QUOTAS: &[(&str, &str)] = &[
    ("max_endpoints", "Max endpoints"),
    ("max_api_keys", "Max API keys"),
    ("rate_per_key_per_min", "Requests/min per key"),
    ("rate_per_tenant_per_min", "Requests/min per tenant"),
];

pub(crate) async fn page(State(state): State<Arc<UiState>>, SignedIn(ctx): SignedIn) -> Response {
    if let Some(r) = layout::unavailable(&ctx, Section::Tenants) {
        return r;
    }
    let tenants = match state.api.get(ctx.credential(), "/v1/tenants").await {
        Ok(t) => t,
        Err(e) => return layout::failure(&ctx, Some(Section::Tenants), &e),
    };
    let mut body = String::from(
        r#"<div class="table-wrap"><table data-testid="tenants"><thead><tr><th scope="col">Tenant</th><th scope="col">Created</th>"#,
    );
    for (_, label) in QUOTAS {
        body.push_str(&format!(r#"<th scope="col">{label}</th>"#));
    }
    body.push_str(r#"<th scope="col">Set quotas</th></tr></thead><tbody>"#);
    // One quotas read per tenant shown, all at once.
    let shown: Vec<&Value> = items(&tenants, "items").iter().take(MAX_SHOWN).collect();
    let mut reads = tokio::task::JoinSet::new();
    for (i, t) in shown.iter().enumerate() {
        let (api, credential) = (state.api.clone(), ctx.credential().clone());
        let path = format!(
            "/v1/tenants/{}/quotas",
            enc(t["name"].as_str().unwrap_or_default())
        );
        reads.spawn(async move { (i, api.get(&credential, &path).await.unwrap_or(Value::Null)) });
    }
    let mut all_quotas = vec![Value::Null; shown.len()];
    while let Some(Ok((i, q))) = reads.join_next().await {
        all_quotas[i] = q;
    }
    if items(&tenants, "items").len() > MAX_SHOWN {
        body.insert_str(
            0,
            &format!(r#"<p class="hint">The first {MAX_SHOWN} tenants; <code>agent-bom admin tenant list</code> lists all.</p>"#),
        );
    }
    for (t, quotas) in shown.into_iter().zip(all_quotas) {
        let name = t["name"].as_str().unwrap_or_default();
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td>",
            esc(name),
            time_ms(t["created_at"].as_i64().unwrap_or(0))
        ));
        let mut inputs = String::new();
        for (key, label) in QUOTAS {
            let v = quotas[*key].as_i64();
            body.push_str(&format!(
                "<td>{}</td>",
                v.map_or_else(|| "default".into(), |v| v.to_string())
            ));
            inputs.push_str(&format!(
                r#"<label>{label} <input name="{key}" value="{}" size="7" inputmode="numeric"></label>"#,
                v.map(|v| v.to_string()).unwrap_or_default()
            ));
        }
        body.push_str(&format!(
            r#"<td><details><summary>Edit</summary><form method="post" action="/ui/tenants/{}/quotas" class="filters">{}{inputs}<button type="submit">Save</button><span class="hint">Empty: the built-in default.</span></form></details></td></tr>"#,
            enc(name),
            ctx.csrf_input()
        ));
    }
    body.push_str("</tbody></table></div>");
    body.push_str(&format!(
        r#"<h2>Create a tenant</h2><form method="post" action="/ui/tenants" class="filters" aria-label="Create a tenant">{}<label>Name <input name="name" required pattern="[a-z0-9][a-z0-9-]{{0,62}}" title="lowercase letters, digits and dashes"></label><button type="submit">Create</button></form><p class="hint">Its first admin key is shown once; hand it to the tenant's administrator.</p>"#,
        ctx.csrf_input()
    ));
    layout::page(&ctx, Some(Section::Tenants), "Tenants", &body)
}

pub(crate) async fn create(
    State(state): State<Arc<UiState>>,
    CheckedPost { ctx, form }: CheckedPost,
) -> Response {
    let name = form.get("name").unwrap_or_default().trim().to_string();
    let flash = match state
        .api
        .send(
            Method::POST,
            ctx.credential(),
            "/v1/tenants",
            Some(&json!({"name": name})),
        )
        .await
    {
        Ok(created) => Flash {
            kind: "ok",
            text: format!("Created tenant {name}. Its first admin key, shown once:"),
            secret: created["admin_key"].as_str().map(str::to_string),
        },
        Err(e) => Flash {
            kind: "error",
            text: format!("The tenant was not created: {e}"),
            secret: None,
        },
    };
    state.flash_redirect(&ctx, "/ui/tenants", flash)
}

pub(crate) async fn set_quotas(
    State(state): State<Arc<UiState>>,
    Path(name): Path<String>,
    CheckedPost { ctx, form }: CheckedPost,
) -> Response {
    let mut quotas = Map::new();
    for (key, label) in QUOTAS {
        let raw = form.get(key).unwrap_or_default().trim();
        let value = if raw.is_empty() {
            Value::Null
        } else {
            match raw.parse::<i64>() {
                Ok(n) => json!(n),
                Err(_) => {
                    return state.flash_redirect(
                        &ctx,
                        "/ui/tenants",
                        Flash {
                            kind: "error",
                            text: format!("{label} must be a whole number or empty."),
                            secret: None,
                        },
                    );
                }
            }
        };
        quotas.insert((*key).to_string(), value);
    }
    let flash = match state
        .api
        .send(
            Method::PUT,
            ctx.credential(),
            &format!("/v1/tenants/{}/quotas", enc(&name)),
            Some(&Value::Object(quotas)),
        )
        .await
    {
        Ok(_) => Flash {
            kind: "ok",
            text: format!("Quotas of {name} saved."),
            secret: None,
        },
        Err(e) => Flash {
            kind: "error",
            text: format!("Quotas refused: {e}"),
            secret: None,
        },
    };
    state.flash_redirect(&ctx, "/ui/tenants", flash)
}
