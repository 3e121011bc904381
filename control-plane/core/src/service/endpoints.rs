//! Endpoints (devices): metadata, lifecycle transitions, deletion, device revocation, and the
//! agent-bom compatible push that creates and updates pushed endpoints.

use serde_json::json;

use super::{Actor, ServiceError, batched_entry, record};
use crate::store::sync::{PreparedSync, SyncAudit, SyncResult};
use crate::store::{LifecycleState, MetadataUpdate, Store, StoreError};

/// Longest reason a lifecycle transition may carry.
pub const MAX_REASON_CHARS: usize = 1000;

/// Update owner / environment / tags of an endpoint. Audit: `fleet.metadata`.
pub async fn update_metadata(
    store: &Store,
    actor: &Actor,
    tenant_id: &str,
    endpoint_id: &str,
    update: &MetadataUpdate,
) -> Result<(), ServiceError> {
    let mut tx = store.begin(tenant_id).await?;
    store
        .update_endpoint_metadata_in(&mut tx, tenant_id, endpoint_id, update)
        .await?;
    record(
        store,
        &mut tx,
        actor,
        tenant_id,
        "fleet.metadata",
        endpoint_id,
        json!({ "owner": update.owner, "environment": update.environment, "tags": update.tags }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Move an endpoint to another lifecycle state (quarantine and release queue commands for its
/// agent; decommissioning revokes its device). Returns the previous state.
/// Audit: `fleet.state`.
pub async fn transition(
    store: &Store,
    actor: &Actor,
    tenant_id: &str,
    endpoint_id: &str,
    to: LifecycleState,
    reason: &str,
) -> Result<LifecycleState, ServiceError> {
    if reason.len() > MAX_REASON_CHARS {
        return Err(ServiceError::Invalid(format!(
            "reason must be at most {MAX_REASON_CHARS} characters"
        )));
    }
    let mut tx = store.begin(tenant_id).await?;
    let from = store
        .transition_endpoint_in(&mut tx, tenant_id, endpoint_id, to, reason)
        .await?;
    record(
        store,
        &mut tx,
        actor,
        tenant_id,
        "fleet.state",
        endpoint_id,
        json!({ "from": from, "to": to, "reason": reason }),
    )
    .await?;
    tx.commit().await?;
    Ok(from)
}

/// Delete an endpoint and its inventory; its device credential stops working at once.
/// Audit: `fleet.delete`.
pub async fn delete(
    store: &Store,
    actor: &Actor,
    tenant_id: &str,
    endpoint_id: &str,
) -> Result<(), ServiceError> {
    let mut tx = store.begin(tenant_id).await?;
    store
        .delete_endpoint_in(&mut tx, tenant_id, endpoint_id)
        .await?;
    record(
        store,
        &mut tx,
        actor,
        tenant_id,
        "fleet.delete",
        endpoint_id,
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Longest server id or tool name a pin decision names; most tools one decision names.
const MAX_PIN_NAME: usize = 200;
const MAX_PIN_TOOLS: usize = 100;

/// Deny changed tool definitions on an endpoint: they stay blocked (the proxy blocks a changed
/// pin until it is approved), and the decision is recorded with who made it and why, so the
/// Runtime page and the audit log show it. Audit: `runtime.pins_denied`.
pub async fn deny_pins(
    store: &Store,
    actor: &Actor,
    tenant_id: &str,
    endpoint_id: &str,
    server_id: &str,
    tools: &[String],
    reason: &str,
) -> Result<(), ServiceError> {
    let bounded = |what: &str, v: &str| {
        if v.trim().is_empty() || v.chars().count() > MAX_PIN_NAME {
            Err(ServiceError::Invalid(format!(
                "{what} must be 1-{MAX_PIN_NAME} characters"
            )))
        } else {
            Ok(())
        }
    };
    bounded("server_id", server_id)?;
    if tools.is_empty() || tools.len() > MAX_PIN_TOOLS {
        return Err(ServiceError::Invalid(format!(
            "tools must name 1-{MAX_PIN_TOOLS} tools"
        )));
    }
    for t in tools {
        bounded("a tool name", t)?;
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(ServiceError::Invalid(format!(
            "reason must be at most {MAX_REASON_CHARS} characters"
        )));
    }
    let mut tx = store.begin(tenant_id).await?;
    if !store
        .endpoint_exists_in(&mut tx, tenant_id, endpoint_id)
        .await?
    {
        return Err(StoreError::NotFound(format!("endpoint {endpoint_id:?}")).into());
    }
    record(
        store,
        &mut tx,
        actor,
        tenant_id,
        "runtime.pins_denied",
        server_id,
        json!({ "endpoint_id": endpoint_id, "tools": tools, "reason": reason }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Revoke an enrolled device: its live connection is closed and it cannot reconnect; its
/// history stays. Audit: `device.revoke`.
pub async fn revoke_device(
    store: &Store,
    actor: &Actor,
    tenant_id: &str,
    endpoint_id: &str,
) -> Result<(), ServiceError> {
    let mut tx = store.begin(tenant_id).await?;
    store
        .revoke_device_in(&mut tx, tenant_id, endpoint_id)
        .await?;
    record(
        store,
        &mut tx,
        actor,
        tenant_id,
        "device.revoke",
        endpoint_id,
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Apply an agent-bom push (`POST /v1/fleet/sync`); see [`Store::fleet_sync`]. A replay of an
/// answered Idempotency-Key changes and records nothing. Audit: `fleet.sync`.
pub async fn sync(
    store: &Store,
    actor: &Actor,
    tenant_id: &str,
    body: &[u8],
    header_source: Option<&str>,
    idempotency_key: Option<&str>,
) -> Result<SyncResult, ServiceError> {
    let write = match store
        .prepare_sync(tenant_id, body, header_source, idempotency_key)
        .await?
    {
        PreparedSync::Replay(result) => return Ok(result),
        PreparedSync::Write(write) => write,
    };
    // The push and its audit entry commit together, in a batch of the group-commit writer.
    let (actor, result_tenant) = (actor.clone(), tenant_id.to_string());
    let audit: SyncAudit = Box::new(move |result: &SyncResult| {
        batched_entry(
            &actor,
            &result_tenant,
            "fleet.sync",
            &result.endpoint_id,
            json!({ "synced": result.synced, "new": result.new, "updated": result.updated, "source_id": result.source_id }),
        )
    });
    Ok(store.write_sync(tenant_id, write, Some(audit)).await?)
}
