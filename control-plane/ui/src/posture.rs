//! The tenant's posture counts (the menu's input and the Overview's numbers), cached per tenant
//! and refreshed in the background: counting a large tenant takes the API seconds, and no page
//! should wait for it once the tenant has been seen. The first page of a tenant waits once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::api::{ApiClient, ApiFailure};
use crate::session::Credential;

/// After this long a cached answer is refreshed (in the background; it is still shown).
pub(crate) const FRESH_FOR: Duration = Duration::from_secs(10);
/// Tenants remembered at once.
const MAX_TENANTS: usize = 10_000;

struct Entry {
    at: Instant,
    value: Value,
    refreshing: bool,
}

/// Posture counts per tenant id.
#[derive(Default, Clone)]
pub(crate) struct PostureCache {
    map: Arc<Mutex<HashMap<String, Entry>>>,
}

impl std::fmt::Debug for PostureCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PostureCache")
    }
}

impl PostureCache {
    /// The tenant's counts: cached (refreshing them in the background when stale) or, the
    /// first time, read now.
    pub(crate) async fn get(
        &self,
        api: &ApiClient,
        credential: &Credential,
        tenant_id: &str,
    ) -> Result<Value, ApiFailure> {
        let stale = {
            let mut map = self.map.lock().map_err(|_| poisoned())?;
            match map.get_mut(tenant_id) {
                Some(e) if e.at.elapsed() < FRESH_FOR || e.refreshing => {
                    return Ok(e.value.clone());
                }
                Some(e) => {
                    e.refreshing = true;
                    Some(e.value.clone())
                }
                None => None,
            }
        };
        match stale {
            Some(value) => {
                let (cache, api, credential, tenant) = (
                    self.clone(),
                    api.clone(),
                    credential.clone(),
                    tenant_id.to_string(),
                );
                tokio::spawn(async move {
                    let fresh = api.get(&credential, "/v1/posture/counts").await;
                    cache.store(&tenant, fresh.ok());
                });
                Ok(value)
            }
            None => {
                let value = api.get(credential, "/v1/posture/counts").await?;
                self.store(tenant_id, Some(value.clone()));
                Ok(value)
            }
        }
    }

    /// Forget a tenant's counts (after an action that changes them), so the next page reads
    /// them again.
    pub(crate) fn invalidate(&self, tenant_id: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(tenant_id);
        }
    }

    fn store(&self, tenant_id: &str, value: Option<Value>) {
        let Ok(mut map) = self.map.lock() else { return };
        match value {
            Some(value) => {
                if map.len() >= MAX_TENANTS && !map.contains_key(tenant_id) {
                    map.clear();
                }
                map.insert(
                    tenant_id.to_string(),
                    Entry {
                        at: Instant::now(),
                        value,
                        refreshing: false,
                    },
                );
            }
            // A failed refresh keeps the old answer and lets the next page try again.
            None => {
                if let Some(e) = map.get_mut(tenant_id) {
                    e.refreshing = false;
                }
            }
        }
    }
}

fn poisoned() -> ApiFailure {
    ApiFailure::Unreachable {
        url: String::new(),
        detail: "posture cache lock poisoned".into(),
    }
}
