//! Actions that change nothing but are recorded (signed exports of the audit log and the
//! fleet): the entry is the whole transaction.

use serde_json::Value;

use super::{Actor, ServiceError, record};
use crate::store::Store;

/// Record `action` on `target` by `actor` in the tenant's chain.
pub async fn record_read(
    store: &Store,
    actor: &Actor,
    tenant_id: &str,
    action: &str,
    target: &str,
    detail: Value,
) -> Result<(), ServiceError> {
    let mut tx = store.begin(tenant_id).await?;
    record(store, &mut tx, actor, tenant_id, action, target, detail).await?;
    tx.commit().await?;
    Ok(())
}
