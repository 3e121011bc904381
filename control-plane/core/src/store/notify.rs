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
use super::dialect::notices::{NOTICE_BUFFER, Notices};

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
                runtime.spawn(super::dialect::notices::listen(url.clone(), tx));
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
