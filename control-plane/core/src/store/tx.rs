//! Write transactions that span several store changes: the unit of work of the service layer
//! (`crate::service`), which makes a change and appends its audit entry on one [`Tx`] so that
//! both commit or neither does.
//!
//! The store's `…_in` methods take a [`Tx`]; each asks it for the connection scoped to the
//! tenant it works on ([`Tx::scoped`]), so one transaction may touch two tenants (creating a
//! tenant records it in the creator's audit chain) and row-level security still holds for
//! every statement. Notices to this process's collector wait for the commit: a rolled-back
//! change announces nothing.

use agent_bom_collector::StoreNotice;
use sqlx::AnyConnection;

use super::changes::{ChangeKind, FleetFeed};
use super::dialect::notices::Notices;
use super::dialect::{Backend, TenantLock};
use super::{Store, StoreError};

/// An open write transaction of the store. Dropping it without [`Tx::commit`] rolls back.
#[derive(Debug)]
pub struct Tx {
    inner: sqlx::Transaction<'static, sqlx::Any>,
    backend: Backend,
    /// The tenant the transaction is scoped to now.
    scope: String,
    notices: Notices,
    /// Notices to send once the transaction committed.
    after_commit: Vec<StoreNotice>,
    /// Who announces fleet changes, and the changes to announce once committed.
    fleet: FleetFeed,
    fleet_after_commit: Vec<(String, String, ChangeKind)>,
}

impl Store {
    /// Begin a write transaction scoped to `tenant_id`.
    pub(crate) async fn begin(&self, tenant_id: &str) -> Result<Tx, StoreError> {
        let mut inner = self.begin_write().await?;
        self.backend.set_scope(&mut inner, tenant_id).await?;
        Ok(Tx {
            inner,
            backend: self.backend,
            scope: tenant_id.to_string(),
            notices: self.notices.clone(),
            after_commit: Vec::new(),
            fleet: self.fleet.clone(),
            fleet_after_commit: Vec::new(),
        })
    }
}

impl Tx {
    /// The transaction's connection, scoped to `tenant_id` (switched to it first if the
    /// transaction last worked in another tenant).
    pub(crate) async fn scoped(
        &mut self,
        tenant_id: &str,
    ) -> Result<&mut AnyConnection, sqlx::Error> {
        if self.scope != tenant_id {
            self.backend.set_scope(&mut self.inner, tenant_id).await?;
            self.scope = tenant_id.to_string();
        }
        Ok(&mut self.inner)
    }

    /// Hold `lock` of `tenant_id` until the transaction ends.
    pub(crate) async fn lock_tenant(
        &mut self,
        lock: TenantLock,
        tenant_id: &str,
    ) -> Result<(), sqlx::Error> {
        let backend = self.backend;
        let conn = self.scoped(tenant_id).await?;
        backend.lock_tenant(conn, lock, tenant_id).await
    }

    /// True when the store must announce this transaction's changes itself (see
    /// [`Notices::announced_by_store`]): only then is it worth reading who they concern.
    pub(crate) fn announces(&self) -> bool {
        self.notices.announced_by_store()
    }

    /// Announce `notice` to this process's collector once the transaction committed.
    pub(crate) fn after_commit(&mut self, notice: StoreNotice) {
        self.after_commit.push(notice);
    }

    /// Announce a change of an endpoint's record to the fleet's event streams once the
    /// transaction committed (where the store announces; see [`FleetFeed`]).
    pub(crate) fn after_commit_fleet(
        &mut self,
        tenant_id: &str,
        endpoint_id: &str,
        kind: ChangeKind,
    ) {
        if self.fleet.announced_by_store() {
            self.fleet_after_commit
                .push((tenant_id.to_string(), endpoint_id.to_string(), kind));
        }
    }

    /// Commit, then send the notices of what was committed.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.inner.commit().await?;
        for notice in self.after_commit {
            // Queued commands change what the endpoint's page shows, too.
            if let StoreNotice::Commands {
                tenant_id,
                agent_id,
            } = &notice
            {
                self.fleet
                    .announce(tenant_id, agent_id, ChangeKind::Commands);
            }
            self.notices.announce(notice);
        }
        for (tenant_id, endpoint_id, kind) in &self.fleet_after_commit {
            self.fleet.announce(tenant_id, endpoint_id, *kind);
        }
        Ok(())
    }
}
