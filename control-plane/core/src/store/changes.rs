//! The fleet change feed: which endpoint changed and how (connection status, inventory,
//! commands, its record), for the API's event stream (`GET /v1/fleet/events`).
//!
//! Like the collectors' notices ([`super::notify`]), the backend decides who announces: on
//! Postgres the triggers of migration 1000 `NOTIFY` on commit, whichever process or replica
//! wrote (a collector running alone included), and each API process listens on one connection;
//! on SQLite there is one process and the store announces its own commits on a channel. A change
//! only says "look again": it carries no data a reader could not already read, never a secret.

use tokio::sync::{broadcast, mpsc};

use super::Store;
use super::dialect::notices::{self, FLEET_BUFFER, ListenUrl};

pub use super::fleet_change::{ChangeKind, FeedItem, FleetChange};

/// Who announces fleet changes (chosen with the backend, like [`notices::Notices`]).
#[derive(Debug, Clone)]
pub(crate) enum FleetFeed {
    /// One process: the store announces its own commits.
    InProcess(broadcast::Sender<FleetChange>),
    /// The database announces every commit; readers listen on their own connection.
    Listen(ListenUrl),
}

impl FleetFeed {
    /// Announce a committed change; a no-op where the database announces it.
    pub(crate) fn announce(&self, tenant_id: &str, endpoint_id: &str, kind: ChangeKind) {
        if let Self::InProcess(channel) = self {
            // No reader (no event stream open) is fine.
            let _ = channel.send(FleetChange {
                tenant_id: tenant_id.to_string(),
                endpoint_id: endpoint_id.to_string(),
                kind,
            });
        }
    }

    /// True when the store announces its changes itself (only then is it worth finding out
    /// which endpoints a write changed).
    pub(crate) fn announced_by_store(&self) -> bool {
        matches!(self, Self::InProcess(_))
    }
}

impl Store {
    /// The fleet change feed of this process: the database's notifications or the store's own
    /// announcements. Spawns its task on the current runtime; it ends when the receiver is
    /// dropped. An API process opens one and fans it out to its event streams.
    pub fn fleet_changes(&self) -> Option<mpsc::Receiver<FeedItem>> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (tx, rx) = mpsc::channel(FLEET_BUFFER);
        match &self.fleet {
            FleetFeed::Listen(url) => {
                runtime.spawn(notices::listen_fleet(url.clone(), tx));
            }
            FleetFeed::InProcess(channel) => {
                runtime.spawn(forward_local(channel.subscribe(), tx));
            }
        }
        Some(rx)
    }

    /// Announce a committed change of an endpoint (SQLite; see [`FleetFeed::announce`]).
    pub(crate) fn announce_fleet(&self, tenant_id: &str, endpoint_id: &str, kind: ChangeKind) {
        self.fleet.announce(tenant_id, endpoint_id, kind);
    }

    /// Endpoints of `tenant_id` that went offline between `from_ms` and `to_ms`: their
    /// last-seen left the online window in that interval. Nothing is written when an endpoint
    /// goes offline, so the API's event stream finds them with this one indexed read per
    /// interval and tenant (not per client). At most `limit` ids.
    pub async fn went_offline(
        &self,
        tenant_id: &str,
        from_ms: i64,
        to_ms: i64,
        limit: i64,
    ) -> Result<Vec<String>, super::StoreError> {
        use sqlx::Row;
        let window = super::fleet_change::ONLINE_WINDOW_MS;
        let mut tx = self.scope(tenant_id).await?;
        // The expression matches the index endpoints_tenant_last_seen.
        let rows = sqlx::query(
            "SELECT id FROM endpoints WHERE tenant_id = $1 \
             AND COALESCE(last_seen, 0) > $2 AND COALESCE(last_seen, 0) <= $3 LIMIT $4",
        )
        .bind(tenant_id)
        .bind(from_ms - window)
        .bind(to_ms - window)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get::<String, _>("id"))
            .collect::<Result<_, _>>()?)
    }
}

async fn forward_local(mut local: broadcast::Receiver<FleetChange>, tx: mpsc::Sender<FeedItem>) {
    loop {
        let item = tokio::select! {
            _ = tx.closed() => return,
            n = local.recv() => match n {
                Ok(change) => FeedItem::Change(change),
                Err(broadcast::error::RecvError::Lagged(_)) => FeedItem::Resync,
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if tx.send(item).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_or_are_ignored() {
        assert_eq!(
            FleetChange::parse("inventory|a:b:e1"),
            Some(FleetChange {
                tenant_id: "a:b".into(),
                endpoint_id: "e1".into(),
                kind: ChangeKind::Inventory
            })
        );
        assert_eq!(
            FleetChange::parse("status|t:e").unwrap().kind,
            ChangeKind::Status
        );
        assert_eq!(FleetChange::parse("other|t:e"), None);
        assert_eq!(FleetChange::parse("status|:e"), None);
        assert_eq!(FleetChange::parse("status|t:"), None);
        assert_eq!(FleetChange::parse("t:e"), None);
    }
}
