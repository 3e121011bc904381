//! Operator commands to one endpoint's agent (rescan, wrap, quarantine, ...).

use serde_json::{Value, json};

use super::{Actor, ServiceError, record};
use crate::store::Store;

/// Queue command `kind` with `payload` (checked by the agent's own typed parser) for an enrolled,
/// active agent. A `settings` command that names the gateway by its URL alone carries the
/// tenant's upstreams as routes ([`Store::with_gateway_routes`]). Returns the command as the API
/// shows it. Audit: `fleet.command`.
pub async fn queue(
    store: &Store,
    actor: &Actor,
    tenant_id: &str,
    endpoint_id: &str,
    kind: &str,
    payload: &Value,
) -> Result<Value, ServiceError> {
    let payload = &store.with_gateway_routes(tenant_id, kind, payload).await?;
    let mut tx = store.begin(tenant_id).await?;
    let command = store
        .queue_command_in(&mut tx, tenant_id, endpoint_id, kind, payload)
        .await?;
    record(
        store,
        &mut tx,
        actor,
        tenant_id,
        "fleet.command",
        endpoint_id,
        json!({ "kind": kind, "command_id": command["id"], "payload": payload }),
    )
    .await?;
    tx.commit().await?;
    Ok(command)
}
