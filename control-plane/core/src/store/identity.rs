//! Reinstalled and cloned machines, recognised by the hardware UUID their inventory reports.
//!
//! Device identity is per enrollment (a key pair and certificate); a machine is recognised by
//! its hardware UUID. When a device reports a hardware UUID for the first time, the other
//! enrolled endpoints of the tenant with the same UUID (not `fleet_sync` pushes) are examined
//! once:
//!
//! - an older one that is offline and not revoked was this machine before a reinstall (or a
//!   re-enrollment with `--force`): it is revoked (its certificate stops working) and linked,
//!   `replaced_by` the new one, which `replaces` it; its history stays;
//! - one that is revoked already (the device was revoked, then the machine enrolled again with a
//!   valid token) is linked the same way and stays revoked: revocation is per identity;
//! - one that is online, or newer, is another live machine with the same UUID (a cloned disk
//!   or VM image): both are kept and both flagged `duplicate_hardware_uuid`.
//!
//! A device whose hardware UUID later differs from the first one it reported is flagged
//! `cloned_identity`: its state directory (key and certificate) was copied to another machine.

use agent_bom_collector::DeviceSession;
use sqlx::Row;

use super::fleet::ONLINE_WINDOW_MS;
use super::{Store, StoreError, now_ms};

impl Store {
    /// Link or flag the device by its reported hardware UUID (see the module docs). Called
    /// after an inventory was committed; a no-op until the device reported a UUID.
    pub(crate) async fn reconcile_identity(
        &self,
        device: &DeviceSession,
    ) -> Result<(), StoreError> {
        let (tenant, me) = (&device.tenant_id, &device.agent_id);
        let mut tx = self.scope_write(tenant).await?;
        let Some(row) = sqlx::query(
            "SELECT hardware_uuid, first_hardware_uuid, enrolled_at FROM endpoints \
             WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL",
        )
        .bind(tenant)
        .bind(me)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(());
        };
        let Some(uuid) = row.try_get::<Option<String>, _>("hardware_uuid")? else {
            return Ok(());
        };
        if let Some(first) = row.try_get::<Option<String>, _>("first_hardware_uuid")? {
            // Linking is decided once, at the first report; later, only a change matters.
            if first != uuid {
                sqlx::query(
                    "UPDATE endpoints SET cloned_identity = 1 WHERE tenant_id = $1 AND id = $2 AND cloned_identity = 0",
                )
                .bind(tenant)
                .bind(me)
                .execute(&mut *tx)
                .await?;
                tracing::warn!(agent_id = %me, "device reports another hardware UUID than at first: its identity was copied to another machine");
            }
            tx.commit().await?;
            return Ok(());
        }
        let enrolled_at: i64 = row.try_get("enrolled_at")?;
        // The first report claims the row; a concurrent upload of the same device finds it set.
        let claimed = sqlx::query(
            "UPDATE endpoints SET first_hardware_uuid = $1 WHERE tenant_id = $2 AND id = $3 AND first_hardware_uuid IS NULL",
        )
        .bind(&uuid)
        .bind(tenant)
        .bind(me)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() != 1 {
            tx.commit().await?;
            return Ok(());
        }
        let siblings = sqlx::query(
            "SELECT id, enrolled_at, last_seen, revoked_at, replaced_by FROM endpoints \
             WHERE tenant_id = $1 AND hardware_uuid = $2 AND id <> $3 AND origin = 'agent' \
             ORDER BY enrolled_at, id",
        )
        .bind(tenant)
        .bind(&uuid)
        .bind(me)
        .fetch_all(&mut *tx)
        .await?;
        let now = now_ms();
        let mut replaced = Vec::new();
        let mut duplicate = false;
        for s in &siblings {
            let id: String = s.try_get("id")?;
            if s.try_get::<Option<String>, _>("replaced_by")?.is_some() {
                continue; // Already superseded by another enrollment of this machine.
            }
            let revoked = s.try_get::<Option<i64>, _>("revoked_at")?.is_some();
            let online = s
                .try_get::<Option<i64>, _>("last_seen")?
                .is_some_and(|t| now - t <= ONLINE_WINDOW_MS);
            let older = s.try_get::<i64, _>("enrolled_at")? <= enrolled_at;
            if revoked || (older && !online) {
                sqlx::query(
                    "UPDATE endpoints SET replaced_by = $1, revoked_at = COALESCE(revoked_at, $2) \
                     WHERE tenant_id = $3 AND id = $4",
                )
                .bind(me)
                .bind(now)
                .bind(tenant)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
                // A retired record gets no more commands.
                sqlx::query(
                    "UPDATE endpoint_commands SET status = 'cancelled' WHERE tenant_id = $1 AND endpoint_id = $2 AND status = 'pending'",
                )
                .bind(tenant)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
                replaced.push((id, revoked));
            } else {
                sqlx::query(
                    "UPDATE endpoints SET duplicate_hardware_uuid = 1 WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
                duplicate = true;
            }
        }
        // The most recent record replaced is the one this device continues.
        let replaces = replaced.last().map(|(id, _)| id.clone());
        sqlx::query(
            "UPDATE endpoints SET replaces = COALESCE($1, replaces), \
             duplicate_hardware_uuid = CASE WHEN $2 = 1 THEN 1 ELSE duplicate_hardware_uuid END \
             WHERE tenant_id = $3 AND id = $4",
        )
        .bind(replaces.as_deref())
        .bind(i64::from(duplicate))
        .bind(tenant)
        .bind(me)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        for (id, was_revoked) in &replaced {
            tracing::info!(agent_id = %me, replaced = %id, "device replaces an earlier enrollment of the same machine");
            if !was_revoked {
                self.announce_revoked(tenant, id);
            }
        }
        if duplicate {
            tracing::warn!(agent_id = %me, "another live endpoint reports the same hardware UUID (cloned machine?)");
        }
        Ok(())
    }
}
