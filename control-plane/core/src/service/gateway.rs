//! The tenant's gateway configuration: upstream MCP servers and the tenant-wide call rate. Each
//! change bumps the configuration revision the gateway replicas report having applied.

use serde_json::json;

use super::{Actor, ServiceError, record};
use crate::store::Store;
use crate::store::gateway::{PinApproval, UpstreamSpec};

/// Create or replace upstream `name`. Audit: `gateway.upstream.put` (name, URL's scheme and host
/// only, transport, fail mode, rate); returns the new configuration revision.
pub async fn put_upstream(
    store: &Store,
    actor: &Actor,
    tenant_id: &str,
    name: &str,
    spec: &UpstreamSpec,
) -> Result<i64, ServiceError> {
    let mut tx = store.begin(tenant_id).await?;
    let revision = store
        .put_upstream_in(&mut tx, tenant_id, name, spec)
        .await?;
    record(
        store,
        &mut tx,
        actor,
        tenant_id,
        "gateway.upstream.put",
        name,
        json!({
            "revision": revision,
            "origin": origin_of(&spec.url),
            "transport": spec.transport.as_str(),
            "fail_mode": spec.fail_mode.as_str(),
            "rate_per_min": spec.rate_per_min,
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(revision)
}

/// Remove upstream `name`. Audit: `gateway.upstream.delete`.
pub async fn delete_upstream(
    store: &Store,
    actor: &Actor,
    tenant_id: &str,
    name: &str,
) -> Result<i64, ServiceError> {
    let mut tx = store.begin(tenant_id).await?;
    let revision = store.delete_upstream_in(&mut tx, tenant_id, name).await?;
    record(
        store,
        &mut tx,
        actor,
        tenant_id,
        "gateway.upstream.delete",
        name,
        json!({ "revision": revision }),
    )
    .await?;
    tx.commit().await?;
    Ok(revision)
}

/// Set (or clear) the tenant-wide gateway call rate. Audit: `gateway.limits.set`.
pub async fn set_tenant_rate(
    store: &Store,
    actor: &Actor,
    tenant_id: &str,
    rate_per_min: Option<i64>,
) -> Result<i64, ServiceError> {
    let mut tx = store.begin(tenant_id).await?;
    let revision = store
        .set_gateway_tenant_rate_in(&mut tx, tenant_id, rate_per_min)
        .await?;
    record(
        store,
        &mut tx,
        actor,
        tenant_id,
        "gateway.limits.set",
        tenant_id,
        json!({ "revision": revision, "rate_per_tenant_per_min": rate_per_min }),
    )
    .await?;
    tx.commit().await?;
    Ok(revision)
}

/// Approve changed tool definitions of upstream `name` (`tools`: name -> expected SHA-256 or
/// null, as an `approve_pins` command). Every replica brings it into its pin store at its next
/// sync. Audit: `gateway.pins.approve`.
pub async fn approve_pins(
    store: &Store,
    actor: &Actor,
    tenant_id: &str,
    name: &str,
    tools: &serde_json::Value,
) -> Result<PinApproval, ServiceError> {
    let mut tx = store.begin(tenant_id).await?;
    let approval = store
        .approve_gateway_pins_in(&mut tx, tenant_id, name, tools, actor.name())
        .await?;
    record(
        store,
        &mut tx,
        actor,
        tenant_id,
        "gateway.pins.approve",
        name,
        json!({ "id": approval.id, "server_id": approval.server_id, "tools": approval.tools }),
    )
    .await?;
    tx.commit().await?;
    Ok(approval)
}

/// Withdraw a pin approval not yet used. Audit: `gateway.pins.withdraw`.
pub async fn withdraw_pin_approval(
    store: &Store,
    actor: &Actor,
    tenant_id: &str,
    id: &str,
) -> Result<PinApproval, ServiceError> {
    let mut tx = store.begin(tenant_id).await?;
    let approval = store
        .withdraw_gateway_pin_approval_in(&mut tx, tenant_id, id)
        .await?;
    record(
        store,
        &mut tx,
        actor,
        tenant_id,
        "gateway.pins.withdraw",
        &approval.upstream,
        json!({ "id": approval.id, "server_id": approval.server_id }),
    )
    .await?;
    tx.commit().await?;
    Ok(approval)
}

/// `scheme://host[:port]` of a URL: what the audit log keeps (a path or query may carry a token).
fn origin_of(url: &str) -> String {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_audit_keeps_only_the_origin() {
        assert_eq!(
            super::origin_of("https://mcp.example.com:8443/v1/mcp?token=x"),
            "https://mcp.example.com:8443"
        );
    }
}
