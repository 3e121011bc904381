//! Change notices for collectors: a command was queued, a device was revoked.
//!
//! Where the database can announce its own commits (triggers that `NOTIFY`, see
//! [`super::dialect::schema`]), every collector listens and the one holding the device's
//! connection acts at once, whichever process wrote. Otherwise there is one process, and the
//! store announces its own writes on an in-process channel after they commit. Either way a notice
//! only says "look now"; the periodic sweep stays the catch-up, and after a lost listening
//! connection the collector checks every device. [`super::dialect`] decides which applies.

use agent_bom_collector::store::StoreNotice;
use tokio::sync::{broadcast, mpsc};

use super::Store;

/// Channel of queued commands; payload `tenant_id:endpoint_id`.
pub const COMMANDS_CHANNEL: &str = "agent_bom_commands";
/// Channel of revoked or deleted devices; payload `tenant_id:endpoint_id`.
pub const REVOCATIONS_CHANNEL: &str = "agent_bom_revocations";

/// Notices buffered for a collector that is busy; beyond it the listener waits (the database
/// keeps queueing on its side).
const NOTICE_BUFFER: usize = 1024;

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

impl Store {
    /// Tell this process's collector that commands were queued for an endpoint. Call after the
    /// commit of any write that queues commands. Where the database notifies every collector
    /// itself ([`Notices::Listen`]), this does nothing.
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
        self.notices.announce(notice);
    }

    /// The notice feed for a collector on this store: the database's notifications or the
    /// in-process channel. Spawns its task on the current runtime; it ends when the receiver
    /// is dropped.
    pub(crate) fn notice_feed(&self) -> Option<mpsc::Receiver<StoreNotice>> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (tx, rx) = mpsc::channel(NOTICE_BUFFER);
        match &self.notices {
            Notices::Listen(url) => {
                runtime.spawn(super::dialect::listen(url.clone(), tx));
            }
            Notices::InProcess(channel) => {
                runtime.spawn(forward_local(channel.subscribe(), tx));
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
