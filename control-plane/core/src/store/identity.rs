//! Reinstalled and cloned machines, recognised by the hardware UUID their inventory reports.
//!
//! Device identity is per enrollment (a key pair and certificate); a machine is recognised by
//! its hardware UUID. The UUID is what the device *says*: nothing proves it, and anyone holding
//! an enrollment token can enroll and report any UUID. So it may link and flag, never take
//! trust away. When a device reports a hardware UUID for the first time, the other enrolled
//! endpoints of the tenant with the same UUID (not `fleet_sync` pushes) are examined once:
//!
//! - one that is revoked already (by an operator; the machine then enrolled again with a valid
//!   token) is linked, `replaced_by` the new one, which `replaces` it; it stays revoked;
//! - any other (a reinstall, a cloned disk or VM image, or a device claiming another's UUID:
//!   they look alike) is kept working, and both are flagged `duplicate_hardware_uuid`. Retiring
//!   the old identity of a reinstalled machine is the operator's decision (revoke it).
//!
//! A device whose hardware UUID later differs from the first one it reported is flagged
//! `cloned_identity`: its state directory (key and certificate) was copied to another machine.

use agent_bom_collector::DeviceSession;
use sqlx::Row;

use super::{Store, StoreError};

impl Store {
    /// Link or flag the device by its reported hardware UUID (see the module docs). Called
    /// after an inventory was committed; a no-op until the device reported a UUID.
    pub(crate) async fn reconcile_identity(
        &self,
        device: &DeviceSession,
    ) -> Result<(), StoreError> {
        if self.identity_settled(device).await? {
            return Ok(());
        }
        self.reconcile_identity_write(device).await
    }

    /// Whether the device's identity needs no write: no UUID reported, the first one again, or
    /// a change already flagged. Read on the read pool: in the steady state an upload then
    /// costs no write transaction of its own (on SQLite a commit and an fsync on the one
    /// writer connection, between the group-commit writer's batches).
    async fn identity_settled(&self, device: &DeviceSession) -> Result<bool, StoreError> {
        let mut tx = self.scope(&device.tenant_id).await?;
        let row = sqlx::query(
            "SELECT hardware_uuid, first_hardware_uuid, cloned_identity FROM endpoints \
             WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL",
        )
        .bind(&device.tenant_id)
        .bind(&device.agent_id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        let Some(row) = row else { return Ok(true) };
        let Some(uuid) = row.try_get::<Option<String>, _>("hardware_uuid")? else {
            return Ok(true);
        };
        Ok(
            match row.try_get::<Option<String>, _>("first_hardware_uuid")? {
                Some(first) => first == uuid || row.try_get::<i64, _>("cloned_identity")? != 0,
                None => false,
            },
        )
    }

    /// [`Self::reconcile_identity`]'s writes, decided again under the write lock.
    async fn reconcile_identity_write(&self, device: &DeviceSession) -> Result<(), StoreError> {
        let (tenant, me) = (&device.tenant_id, &device.agent_id);
        let mut tx = self.scope_write(tenant).await?;
        let Some(row) = sqlx::query(
            "SELECT hardware_uuid, first_hardware_uuid FROM endpoints \
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
            "SELECT id, revoked_at, replaced_by FROM endpoints \
             WHERE tenant_id = $1 AND hardware_uuid = $2 AND id <> $3 AND origin = 'agent' \
             ORDER BY enrolled_at, id",
        )
        .bind(tenant)
        .bind(&uuid)
        .bind(me)
        .fetch_all(&mut *tx)
        .await?;
        let mut replaced = Vec::new();
        let mut duplicate = false;
        for s in &siblings {
            let id: String = s.try_get("id")?;
            if s.try_get::<Option<String>, _>("replaced_by")?.is_some() {
                continue; // Already superseded by another enrollment of this machine.
            }
            // Only an operator's revocation retires an identity; a matching claim never does.
            if s.try_get::<Option<i64>, _>("revoked_at")?.is_some() {
                sqlx::query(
                    "UPDATE endpoints SET replaced_by = $1 WHERE tenant_id = $2 AND id = $3",
                )
                .bind(me)
                .bind(tenant)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
                replaced.push(id);
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
        let replaces = replaced.last().cloned();
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
        for id in &replaced {
            tracing::info!(agent_id = %me, replaced = %id, "device re-enrolls a machine whose earlier identity was revoked");
        }
        if duplicate {
            tracing::warn!(agent_id = %me, "another endpoint reports the same hardware UUID (reinstalled or cloned machine, or a false claim); both kept and flagged");
        }
        Ok(())
    }
}
