//! Postgres `LISTEN` for collectors: the notifications the triggers of [`super::schema`] send as
//! a writing transaction commits, whichever process or replica wrote.

use std::time::Duration;

use agent_bom_collector::store::StoreNotice;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;

use crate::store::notify::{COMMANDS_CHANNEL, ListenUrl, REVOCATIONS_CHANNEL, parse};

/// Reconnect delays of the listening connection.
const LISTEN_RETRY_MIN: Duration = Duration::from_millis(500);
const LISTEN_RETRY_MAX: Duration = Duration::from_secs(30);

/// Keep a LISTEN connection open, reconnecting with capped backoff, and forward notifications.
/// After every (re)connection it sends `Resync`: notifications sent while nobody listened are
/// lost, so the collector checks every connected device once.
pub(crate) async fn listen(url: ListenUrl, tx: mpsc::Sender<StoreNotice>) {
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
