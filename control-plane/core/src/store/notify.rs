//! Change notices for collectors: a command was queued, a device was revoked.
//!
//! On Postgres, triggers (migration 0009) `NOTIFY` as the writing transaction commits, whichever
//! process wrote, and every collector `LISTEN`s: the collector holding the device's connection
//! acts at once. On SQLite there is one process, so the store announces its own writes on an
//! in-process channel. Either way a notice only says "look now"; the periodic sweep stays the
//! catch-up, and after a lost listening connection the collector checks every device.

use std::time::Duration;

use agent_bom_collector::store::StoreNotice;
use sqlx::postgres::PgListener;
use tokio::sync::{broadcast, mpsc};

use super::{Backend, Store};

/// Channel of queued commands; payload `tenant_id:endpoint_id`.
pub const COMMANDS_CHANNEL: &str = "agent_bom_commands";
/// Channel of revoked or deleted devices; payload `tenant_id:endpoint_id`.
pub const REVOCATIONS_CHANNEL: &str = "agent_bom_revocations";

/// Notices buffered for a collector that is busy; beyond it the listener waits (Postgres
/// keeps queueing on its side).
const NOTICE_BUFFER: usize = 1024;
/// Reconnect delays of the listening connection.
const LISTEN_RETRY_MIN: Duration = Duration::from_millis(500);
const LISTEN_RETRY_MAX: Duration = Duration::from_secs(30);

/// The database URL kept for the listening connection (it is not a pool connection). Its
/// `Debug` hides it: it may carry a password.
#[derive(Clone)]
pub(crate) struct ListenUrl(pub(crate) String);

impl std::fmt::Debug for ListenUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ListenUrl(..)")
    }
}

/// The in-process notice channel (used on SQLite).
pub(crate) fn local_channel() -> broadcast::Sender<StoreNotice> {
    broadcast::channel(NOTICE_BUFFER).0
}

/// Parse a notification into a notice; `None` for a payload that is not `tenant:endpoint`.
fn parse(channel: &str, payload: &str) -> Option<StoreNotice> {
    // Endpoint ids are UUIDs (no ':'); split at the last ':' so a tenant id may contain one.
    let (tenant_id, agent_id) = payload.rsplit_once(':')?;
    if tenant_id.is_empty() || agent_id.is_empty() {
        return None;
    }
    let (tenant_id, agent_id) = (tenant_id.to_string(), agent_id.to_string());
    match channel {
        COMMANDS_CHANNEL => Some(StoreNotice::Commands {
            tenant_id,
            agent_id,
        }),
        REVOCATIONS_CHANNEL => Some(StoreNotice::Revoked {
            tenant_id,
            agent_id,
        }),
        _ => None,
    }
}

impl Store {
    /// Tell this process's collector that commands were queued for an endpoint. Call after the
    /// commit of any write that queues commands. On Postgres the database trigger already
    /// notifies every collector, so this does nothing there.
    pub fn announce_commands(&self, tenant_id: &str, endpoint_id: &str) {
        self.announce(StoreNotice::Commands {
            tenant_id: tenant_id.to_string(),
            agent_id: endpoint_id.to_string(),
        });
    }

    /// Tell this process's collector that an endpoint was revoked or deleted (see
    /// [`Self::announce_commands`]).
    pub fn announce_revoked(&self, tenant_id: &str, endpoint_id: &str) {
        self.announce(StoreNotice::Revoked {
            tenant_id: tenant_id.to_string(),
            agent_id: endpoint_id.to_string(),
        });
    }

    fn announce(&self, notice: StoreNotice) {
        if self.backend == Backend::Sqlite {
            // No receiver (no collector in this process) is fine: nothing to tell.
            let _ = self.local_notices.send(notice);
        }
    }

    /// The notice feed for a collector on this store: LISTEN on Postgres, the in-process
    /// channel on SQLite. Spawns its task on the current runtime; it ends when the receiver
    /// is dropped.
    pub(crate) fn notice_feed(&self) -> Option<mpsc::Receiver<StoreNotice>> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (tx, rx) = mpsc::channel(NOTICE_BUFFER);
        match (&self.backend, &self.listen_url) {
            (Backend::Postgres, Some(url)) => {
                runtime.spawn(listen_postgres(url.clone(), tx));
            }
            _ => {
                runtime.spawn(forward_local(self.local_notices.subscribe(), tx));
            }
        }
        Some(rx)
    }
}

async fn forward_local(mut local: broadcast::Receiver<StoreNotice>, tx: mpsc::Sender<StoreNotice>) {
    loop {
        let notice = tokio::select! {
            _ = tx.closed() => return,
            n = local.recv() => match n {
                Ok(n) => n,
                // Fell behind: some notices are gone, so check everything.
                Err(broadcast::error::RecvError::Lagged(_)) => StoreNotice::Resync,
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if tx.send(notice).await.is_err() {
            return;
        }
    }
}

/// Keep a LISTEN connection open, reconnecting with capped backoff, and forward notifications.
/// After every (re)connection it sends `Resync`: notifications sent while nobody listened are
/// lost, so the collector checks every connected device once.
async fn listen_postgres(url: ListenUrl, tx: mpsc::Sender<StoreNotice>) {
    let mut retry = LISTEN_RETRY_MIN;
    loop {
        match listen_once(&url, &tx, &mut retry).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?retry, "command notification listener lost its connection; the periodic sweep covers the gap");
            }
        }
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(LISTEN_RETRY_MAX);
    }
}

/// One listening connection. `Ok` when the collector is gone, `Err` when the connection is.
async fn listen_once(
    url: &ListenUrl,
    tx: &mpsc::Sender<StoreNotice>,
    retry: &mut Duration,
) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect(&url.0).await?;
    listener
        .listen_all([COMMANDS_CHANNEL, REVOCATIONS_CHANNEL])
        .await?;
    *retry = LISTEN_RETRY_MIN;
    tracing::debug!("listening for command and revocation notifications");
    if tx.send(StoreNotice::Resync).await.is_err() {
        return Ok(());
    }
    loop {
        let next = tokio::select! {
            _ = tx.closed() => return Ok(()),
            next = listener.try_recv() => next?,
        };
        // `None`: the connection dropped (PgListener would reconnect silently on the next call,
        // losing what was sent meanwhile); reconnect here so the Resync is sent.
        let Some(notification) = next else {
            return Err(sqlx::Error::Protocol("listening connection closed".into()));
        };
        if let Some(notice) = parse(notification.channel(), notification.payload())
            && tx.send(notice).await.is_err()
        {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_or_are_ignored() {
        assert_eq!(
            parse(COMMANDS_CHANNEL, "t1:e1"),
            Some(StoreNotice::Commands {
                tenant_id: "t1".into(),
                agent_id: "e1".into()
            })
        );
        assert_eq!(
            parse(REVOCATIONS_CHANNEL, "a:b:e1"),
            Some(StoreNotice::Revoked {
                tenant_id: "a:b".into(),
                agent_id: "e1".into()
            })
        );
        assert_eq!(parse(COMMANDS_CHANNEL, "no-separator"), None);
        assert_eq!(parse(COMMANDS_CHANNEL, ":e1"), None);
        assert_eq!(parse("other", "t:e"), None);
    }
}
