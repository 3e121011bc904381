//! `/v1/audit*` and signed exports.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::signed_export::{SIGNATURE_HEADER, SignedExport};
use super::{ApiError, AppState, Caller, Permission, parse_query};
use crate::service;
use crate::store::audit::{AuditVerification, MAX_AUDIT_PAGE};
use crate::store::{EndpointQuery, FLEET_MAX_PAGE};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    after: Option<i64>,
    limit: Option<u32>,
    action: Option<String>,
}

/// `GET /v1/audit`
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::AuditRead)?;
    let p: AuditParams = parse_query(query.as_deref())?;
    let limit = p.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_AUDIT_PAGE || p.after.is_some_and(|a| a < 0) {
        return Err(ApiError::invalid(
            "limit must be 1-1000 and after a non-negative sequence number",
        ));
    }
    if p.action
        .as_ref()
        .is_some_and(|a| a.is_empty() || a.len() > 100)
    {
        return Err(ApiError::invalid("action must be 1-100 characters"));
    }
    let mut items = state
        .store
        .list_audit(
            caller.tenant_id(),
            p.after.unwrap_or(0),
            limit,
            p.action.as_deref(),
        )
        .await?;
    let full = items.len() == limit as usize;
    let cut = within_bytes(&items, MAX_AUDIT_PAGE_BYTES);
    let truncated = cut < items.len();
    items.truncate(cut);
    let next = (full || truncated)
        .then(|| items.last().map(|e| e.seq))
        .flatten();
    super::with_tenant(
        &state,
        &caller,
        json!({ "items": items, "next_after": next }),
    )
    .await
}

/// Most bytes of entries one `/v1/audit` page carries (on top of its row limit): entries with
/// large details are paged by size, so a page never grows to hundreds of megabytes.
pub(super) const MAX_AUDIT_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// How many of `items` fit in `max` bytes of JSON; at least one, so a page always advances.
fn within_bytes<T: serde::Serialize>(items: &[T], max: usize) -> usize {
    let mut total = 0;
    for (i, item) in items.iter().enumerate() {
        total += serde_json::to_vec(item).map_or(0, |v| v.len()) + 1;
        if total > max && i > 0 {
            return i;
        }
    }
    items.len()
}

/// `GET /v1/audit/verify`
pub(super) async fn verify(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<AuditVerification>, ApiError> {
    caller.require(Permission::AuditRead)?;
    Ok(Json(state.store.verify_audit(caller.tenant_id()).await?))
}

/// `GET /v1/audit/export-key`: the public key verifying signed exports.
pub(super) async fn export_key(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "algorithm": "ed25519",
        "public_key_hex": state.signer.public_hex(),
        "signature_header": SIGNATURE_HEADER,
    }))
}

/// The first line of a signed export: what it is and whose data (covered by the signature).
async fn export_header(state: &AppState, caller: &Caller, what: &str) -> Result<Value, ApiError> {
    Ok(json!({
        "export": what,
        "tenant": super::tenant_ref(state, caller).await?,
        "exported_at_ms": crate::store::now_ms(),
    }))
}

/// Audit entries one export page reads: an export holds one page in memory, and entries can
/// carry large details, so its pages are smaller than `/v1/audit`'s largest.
const EXPORT_AUDIT_PAGE: u32 = 50;

/// `GET /v1/audit/export`: the whole audit log as signed NDJSON, after a header line naming
/// the tenant.
pub(super) async fn export_audit(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(Permission::AuditExport)?;
    let mut export = SignedExport::new().await?;
    export
        .push_page(&[export_header(&state, &caller, "audit").await?])
        .await?;
    let mut entries = 0;
    let mut after = 0;
    loop {
        let page = state
            .store
            .list_audit(caller.tenant_id(), after, EXPORT_AUDIT_PAGE, None)
            .await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let full = page.len() == EXPORT_AUDIT_PAGE as usize;
        entries += page.len();
        export.push_page(&page).await?;
        if !full {
            break;
        }
    }
    // Best effort: the export is a read, and an auditor must get it even when the log
    // cannot take an entry.
    let _ = service::audit::record_read(
        &state.store,
        &caller.as_actor(),
        caller.tenant_id(),
        "audit.export",
        "audit",
        json!({ "entries": entries }),
    )
    .await;
    export.into_response(state.signer.clone()).await
}

/// `GET /v1/fleet/export`: every endpoint (list fields) as signed NDJSON.
pub(super) async fn export_fleet(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(Permission::AuditExport)?;
    let mut export = SignedExport::new().await?;
    export
        .push_page(&[export_header(&state, &caller, "fleet").await?])
        .await?;
    let mut endpoints = 0;
    let mut cursor = None;
    loop {
        let page = state
            .store
            .list_endpoints(
                caller.tenant_id(),
                &EndpointQuery {
                    limit: Some(FLEET_MAX_PAGE),
                    cursor: cursor.take(),
                    ..Default::default()
                },
            )
            .await?;
        endpoints += page.items.len();
        export.push_page(&page.items).await?;
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    service::audit::record_read(
        &state.store,
        &caller.as_actor(),
        caller.tenant_id(),
        "fleet.export",
        "fleet",
        json!({ "endpoints": endpoints }),
    )
    .await?;
    export.into_response(state.signer.clone()).await
}
