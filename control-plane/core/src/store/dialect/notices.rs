//! How collectors hear about changes, as the backend decides: in one process the store announces
//! its own commits on a channel; on Postgres, collectors `LISTEN` to the notifications the
//! triggers of [`super::schema`] send as a writing transaction commits, whichever process or
//! replica wrote.

use std::time::Duration;

use agent_bom_collector::store::StoreNotice;
use sqlx::postgres::PgListener;
use tokio::sync::{broadcast, mpsc};

use crate::store::fleet_change::{FeedItem, FleetChange};

/// Channel of queued commands; payload `tenant_id:endpoint_id`.
pub(crate) const COMMANDS_CHANNEL: &str = "agent_bom_commands";
/// Channel of revoked or deleted devices; payload `tenant_id:endpoint_id`.
pub(crate) const REVOCATIONS_CHANNEL: &str = "agent_bom_revocations";

/// Channel of fleet changes for the API's event streams; payload `kind|tenant_id:endpoint_id`
/// (see [`crate::store::changes`]).
pub(crate) const FLEET_CHANNEL: &str = "agent_bom_fleet";

/// Fleet changes buffered for the API's fan-out before the listener waits.
pub(crate) const FLEET_BUFFER: usize = 4096;

/// Notices buffered for a collector that is busy; beyond it the listener waits (the database
/// keeps queueing on its side).
pub(crate) const NOTICE_BUFFER: usize = 1024;

/// The database URL kept for the listening connection (it is not a pool connection). Its
/// `Debug` hides it: it may carry a password.
#[derive(Clone)]
pub(crate) struct ListenUrl(pub(crate) String);

impl std::fmt::Debug for ListenUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ListenUrl(..)")
    }
}

/// How the collectors of a store hear about changes (chosen by the backend).
#[derive(Debug, Clone)]
pub(crate) enum Notices {
    /// One process: the store announces its own writes after they commit.
    InProcess(broadcast::Sender<StoreNotice>),
    /// The database announces every commit (triggers); collectors listen on their own
    /// connection to this URL.
    Listen(ListenUrl),
}

impl Notices {
    /// A fresh in-process channel.
    pub(crate) fn in_process() -> Self {
        Self::InProcess(broadcast::channel(NOTICE_BUFFER).0)
    }

    /// True when the store must announce its own writes (nothing else will).
    pub(crate) fn announced_by_store(&self) -> bool {
        matches!(self, Self::InProcess(_))
    }

    /// Announce a committed change; a no-op where the database announces it.
    pub(crate) fn announce(&self, notice: StoreNotice) {
        if let Self::InProcess(channel) = self {
            // No receiver (no collector in this process) is fine: nothing to tell.
            let _ = channel.send(notice);
        }
    }
}

/// Parse a notification into a notice; `None` for a payload that is not `tenant:endpoint`.
pub(crate) fn parse(channel: &str, payload: &str) -> Option<StoreNotice> {
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

/// Reconnect delays of the listening connection.
const LISTEN_RETRY_MIN: Duration = Duration::from_millis(500);
const LISTEN_RETRY_MAX: Duration = Duration::from_secs(30);

/// What one listening connection listens to and how it reads a notification.
struct Subscription<T> {
    channels: &'static [&'static str],
    /// `None` for a payload that is not one of ours.
    parse: fn(&str, &str) -> Option<T>,
    /// Sent after every (re)connection: what was sent meanwhile is lost.
    resync: T,
    /// Who listens, for the log.
    who: &'static str,
}

/// Keep a LISTEN connection open, reconnecting with capped backoff, and forward notifications.
/// After every (re)connection it sends `Resync`: notifications sent while nobody listened are
/// lost, so the collector checks every connected device once.
pub(crate) async fn listen(url: ListenUrl, tx: mpsc::Sender<StoreNotice>) {
    let subscription = Subscription {
        channels: &[COMMANDS_CHANNEL, REVOCATIONS_CHANNEL],
        parse,
        resync: StoreNotice::Resync,
        who: "command notification listener",
    };
    listen_to(url, subscription, tx).await;
}

/// [`listen`] for the fleet change feed: after a reconnection readers are told to read again.
pub(crate) async fn listen_fleet(url: ListenUrl, tx: mpsc::Sender<FeedItem>) {
    let subscription = Subscription {
        channels: &[FLEET_CHANNEL],
        parse: |_, payload| FleetChange::parse(payload).map(FeedItem::Change),
        resync: FeedItem::Resync,
        who: "fleet change listener",
    };
    listen_to(url, subscription, tx).await;
}

async fn listen_to<T: Clone>(url: ListenUrl, subscription: Subscription<T>, tx: mpsc::Sender<T>) {
    let mut retry = LISTEN_RETRY_MIN;
    loop {
        match listen_once(&url, &subscription, &tx, &mut retry).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?retry, listener = subscription.who, "notification listener lost its connection; the periodic sweep covers the gap");
            }
        }
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(LISTEN_RETRY_MAX);
    }
}

/// One listening connection. `Ok` when the reader is gone, `Err` when the connection is.
async fn listen_once<T: Clone>(
    url: &ListenUrl,
    subscription: &Subscription<T>,
    tx: &mpsc::Sender<T>,
    retry: &mut Duration,
) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect(&url.0).await?;
    listener
        .listen_all(subscription.channels.iter().copied())
        .await?;
    *retry = LISTEN_RETRY_MIN;
    tracing::debug!(listener = subscription.who, "listening for notifications");
    if tx.send(subscription.resync.clone()).await.is_err() {
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
        if let Some(item) = (subscription.parse)(notification.channel(), notification.payload())
            && tx.send(item).await.is_err()
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
