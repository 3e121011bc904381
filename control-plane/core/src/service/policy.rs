//! The tenant's proxy policy: publishing a revision queues it for every active agent.

use serde_json::json;

use super::{Actor, ServiceError, record};
use crate::store::Store;
use crate::store::policies::Published;

/// Publish `body` (a TOML policy, validated as agents will) as the tenant's next revision and
/// queue it for every active agent. Audit: `policy.publish` (the revision and the document's
/// SHA-256, not the document).
pub async fn publish(
    store: &Store,
    actor: &Actor,
    tenant_id: &str,
    body: &str,
) -> Result<Published, ServiceError> {
    let mut tx = store.begin(tenant_id).await?;
    let published = store
        .publish_policy_in(&mut tx, tenant_id, body, actor.name())
        .await?;
    record(
        store,
        &mut tx,
        actor,
        tenant_id,
        "policy.publish",
        &published.revision.to_string(),
        json!({ "revision": published.revision, "queued": published.queued,
                "sha256": agent_bom_protocol::digest::sha256_hex(body.as_bytes()) }),
    )
    .await?;
    tx.commit().await?;
    Ok(published)
}
