//! Tool pins shared by every replica through the control plane's store.
//!
//! The engine pins through the proxy's file store ([`PinStore`], one file per server identity
//! under the replica's pin directory of the tenant). This module keeps those files and the
//! store's `gateway_pins` rows in step: before a session's engine starts, the tenant's row is
//! brought down when it is newer than the local file ([`PinSync::hydrate`], at most once per
//! ttl per upstream); at every heartbeat, local files that changed are sent up
//! ([`PinSync::upload_changed`]). So a rug pull is judged against the pins any replica took,
//! within a heartbeat of their taking. Operators' approvals of changed definitions
//! (`gateway_pin_approvals`) are mirrored into the tenant's approvals file, which the engines
//! read whenever a listing differs from the pins, at the same moments ([`PinSync::sync_approvals`]):
//! an approval given in the control plane is honoured by every replica; one withdrawn is dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use agent_bom_control_plane::store::Store;
use agent_bom_protocol::digest::sha256_hex;
use agent_bom_proxy::pins::Approval;
use agent_bom_proxy::pins::{PinStore, ServerPins};

#[derive(Debug, Default)]
struct Known {
    /// When the row was last brought down.
    hydrated: Option<Instant>,
    /// Digest of what was last sent up (or brought down).
    synced: Option<String>,
}

/// Keeps a replica's pin files and the store in step.
#[derive(Debug, Clone)]
pub struct PinSync {
    store: Store,
    root: PathBuf,
    ttl: Duration,
    known: Arc<Mutex<HashMap<(String, String), Known>>>,
}

fn modified_ms(path: &Path) -> Option<i64> {
    let t = std::fs::metadata(path).ok()?.modified().ok()?;
    let d = t.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

impl PinSync {
    /// Pins under `root/<tenant id>/`, rows read at most once per `ttl` per upstream.
    pub fn new(store: Store, root: PathBuf, ttl: Duration) -> Self {
        Self {
            store,
            root,
            ttl,
            known: Arc::default(),
        }
    }

    /// The pin store of a tenant (what the sessions' engines use).
    pub fn pin_store(root: &Path, tenant_id: &str) -> PinStore {
        PinStore::new(&root.join(tenant_id))
    }

    fn local(&self, tenant_id: &str, server_id: &str) -> (PinStore, Option<ServerPins>) {
        let store = Self::pin_store(&self.root, tenant_id);
        let pins = store.load(server_id);
        (store, pins)
    }

    /// Bring the tenant's pins of `server_id` down when the store has newer ones than this
    /// replica's file. A store that does not answer leaves the local pins as they are.
    pub async fn hydrate(&self, tenant_id: &str, server_id: &str) {
        let key = (tenant_id.to_string(), server_id.to_string());
        {
            let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
            if known
                .get(&key)
                .and_then(|k| k.hydrated)
                .is_some_and(|at| at.elapsed() < self.ttl)
            {
                return;
            }
        }
        self.sync_approvals(tenant_id, server_id).await;
        let row = match self.store.gateway_pins(tenant_id, server_id).await {
            Ok(row) => row,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read shared pins; using this replica's");
                return;
            }
        };
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let entry = known.entry(key).or_default();
        entry.hydrated = Some(Instant::now());
        let Some((text, updated_at)) = row else {
            return;
        };
        let Ok(shared) = serde_json::from_str::<ServerPins>(&text) else {
            tracing::warn!(server = %server_id, "unreadable shared pins ignored");
            return;
        };
        if shared.server_id != server_id {
            return;
        }
        let (store, local) = self.local(tenant_id, server_id);
        let file_ms = local
            .as_ref()
            .and_then(|_| modified_ms(&store.file(server_id)));
        let newer = match (&local, file_ms) {
            (None, _) | (Some(_), None) => true,
            (Some(l), Some(ms)) => l != &shared && updated_at > ms,
        };
        if newer {
            if let Err(e) = store.save(&shared) {
                tracing::warn!("{e}");
                return;
            }
            entry.synced = Some(sha256_hex(text.as_bytes()));
        }
    }

    /// Mirror the control plane's pin approvals of `server_id` into the tenant's approvals file.
    /// A store that does not answer leaves the local copy as it is.
    pub async fn sync_approvals(&self, tenant_id: &str, server_id: &str) {
        let approvals = match self
            .store
            .gateway_pin_approvals(tenant_id, Some(server_id))
            .await
        {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read pin approvals; using this replica's");
                return;
            }
        };
        let approvals = approvals
            .into_iter()
            .map(|a| Approval {
                id: a.id,
                server_id: a.server_id,
                tools: a.tools,
                approved_at_ms: a.approved_at_ms,
            })
            .collect();
        let store = Self::pin_store(&self.root, tenant_id);
        if let Err(e) = store.approvals().replace_for_server(server_id, approvals) {
            tracing::warn!(error = %e, "cannot store pin approvals");
        }
    }

    /// At a heartbeat: mirror the approvals of every upstream this replica served, and send up
    /// the pins that changed.
    pub async fn heartbeat(&self) {
        let keys: Vec<(String, String)> = self
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        for (tenant_id, server_id) in &keys {
            self.sync_approvals(tenant_id, server_id).await;
        }
        self.upload_changed().await;
    }

    /// Send up every local pin file (of the upstreams this replica served) that changed since
    /// it was last synced.
    pub async fn upload_changed(&self) {
        let keys: Vec<(String, String)> = self
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        for (tenant_id, server_id) in keys {
            let (_, Some(local)) = self.local(&tenant_id, &server_id) else {
                continue;
            };
            let Ok(text) = serde_json::to_string(&local) else {
                continue;
            };
            let digest = sha256_hex(text.as_bytes());
            let unchanged = self
                .known
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&(tenant_id.clone(), server_id.clone()))
                .is_some_and(|k| k.synced.as_deref() == Some(digest.as_str()));
            if unchanged {
                continue;
            }
            match self
                .store
                .put_gateway_pins(&tenant_id, &server_id, &text)
                .await
            {
                Ok(_) => {
                    if let Some(k) = self
                        .known
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_mut(&(tenant_id.clone(), server_id.clone()))
                    {
                        k.synced = Some(digest);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot share pins; retrying"),
            }
        }
    }
}
