//! MCP sessions as the gateway sees them: one inspection engine (the local proxy's, shared
//! code) per upstream session, keyed by the upstream's `Mcp-Session-Id` and bound to the caller
//! that opened it. Requests without a session (a stateless server, or the 2026 stateless era)
//! share one engine per caller and upstream. Idle sessions are swept.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use agent_bom_control_plane::store::gateway::Upstream;
use agent_bom_control_plane::store::now_ms;
use agent_bom_proxy::audit::AuditEvent;
use agent_bom_proxy::engine::{Engine, Verdict};
use agent_bom_proxy::jsonrpc::Message;

use crate::catalog::{PolicyStamp, TenantView};

/// Most sessions one replica holds; past it the least recently used are dropped first.
pub const MAX_SESSIONS: usize = 200_000;

/// One session's inspection state.
#[derive(Debug)]
pub struct Session {
    /// Who opened it (`key:…`, `oidc:…`): only they may use it.
    pub principal: String,
    engine: Mutex<(Engine, PolicyStamp)>,
    last_used_ms: AtomicI64,
}

impl Session {
    /// A session of `principal` judged by `engine`, which applied the policy `stamp` names.
    pub fn with_engine(principal: &str, engine: Engine, stamp: PolicyStamp) -> Self {
        Self {
            principal: principal.to_string(),
            engine: Mutex::new((engine, stamp)),
            last_used_ms: AtomicI64::new(now_ms()),
        }
    }

    /// Judge a message from the client (`body`, parsed as `message`), under the policy `view`
    /// says applies to `upstream` now.
    pub fn judge_client(
        &self,
        body: &[u8],
        message: Option<Message>,
        view: &TenantView,
        upstream: &Upstream,
    ) -> (Verdict, Vec<AuditEvent>) {
        self.last_used_ms.store(now_ms(), Ordering::Relaxed);
        let mut guard = self.engine.lock().unwrap_or_else(|e| e.into_inner());
        if guard.1 != view.stamp_for(upstream) {
            let (policy, stamp) = view.policy_for(upstream);
            guard.0.set_policy(policy);
            guard.1 = stamp;
        }
        guard.0.on_client_message(body, message, Instant::now())
    }

    /// Judge a message from the upstream.
    pub fn judge_server(&self, body: &[u8]) -> (Verdict, Vec<AuditEvent>) {
        self.last_used_ms.store(now_ms(), Ordering::Relaxed);
        let mut guard = self.engine.lock().unwrap_or_else(|e| e.into_inner());
        guard.0.on_server(body, Instant::now())
    }

    /// The largest message the session's policy lets through.
    pub fn max_message_bytes(&self) -> usize {
        self.engine
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .max_message_bytes()
    }

    /// An event for a message over the size cap.
    pub fn oversized(&self, from_client: bool, len: usize) -> AuditEvent {
        self.engine
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .oversized(from_client, len)
    }
}

/// A session was presented by a caller that did not open it.
#[derive(Debug, thiserror::Error)]
#[error("no such session")]
pub struct NotYours;

/// Every session of this replica.
#[derive(Debug, Clone)]
pub struct Sessions {
    map: Arc<Mutex<HashMap<String, Arc<Session>>>>,
    pins_root: Option<PathBuf>,
}

fn key(tenant_id: &str, upstream: &str, session: &str) -> String {
    format!("{tenant_id}\u{0}{upstream}\u{0}{session}")
}

/// The key of the engine shared by a caller's session-less requests to an upstream.
fn sessionless(principal: &str) -> String {
    format!("\u{1}{principal}")
}

impl Sessions {
    /// Sessions whose pins persist under `pins_root/<tenant id>/` (`None`: in memory only).
    pub fn new(pins_root: Option<PathBuf>) -> Self {
        Self {
            map: Arc::default(),
            pins_root,
        }
    }

    /// A fresh engine for `upstream` of `tenant_id`.
    pub fn engine(
        &self,
        tenant_id: &str,
        server_id: &str,
        view: &TenantView,
        upstream: &Upstream,
    ) -> (Engine, PolicyStamp) {
        let (policy, stamp) = view.policy_for(upstream);
        let pins = self
            .pins_root
            .as_ref()
            .map(|root| crate::pinsync::PinSync::pin_store(root, tenant_id));
        (Engine::new(server_id, policy, pins), stamp)
    }

    /// The session a request belongs to: by its `Mcp-Session-Id`, else the caller's
    /// session-less engine; `fresh` (an `initialize`) always starts a new, unbound one.
    #[allow(clippy::too_many_arguments)]
    pub fn for_request(
        &self,
        tenant_id: &str,
        server_id: &str,
        view: &TenantView,
        upstream: &Upstream,
        session_id: Option<&str>,
        principal: &str,
        fresh: bool,
    ) -> Result<Arc<Session>, NotYours> {
        if fresh && session_id.is_none() {
            let (engine, stamp) = self.engine(tenant_id, server_id, view, upstream);
            return Ok(Arc::new(Session::with_engine(principal, engine, stamp)));
        }
        let k = key(
            tenant_id,
            &upstream.name,
            &session_id.map_or_else(|| sessionless(principal), str::to_string),
        );
        if let Some(s) = self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&k)
            .cloned()
        {
            return if s.principal == principal {
                Ok(s)
            } else {
                Err(NotYours)
            };
        }
        // A session this replica has not seen (another replica opened it, or this one
        // restarted): a new engine; pins come from disk.
        let (engine, stamp) = self.engine(tenant_id, server_id, view, upstream);
        let s = Arc::new(Session::with_engine(principal, engine, stamp));
        self.insert(k, s.clone());
        Ok(s)
    }

    /// Bind `session` to the `Mcp-Session-Id` the upstream assigned.
    pub fn bind(&self, tenant_id: &str, upstream: &str, session_id: &str, session: Arc<Session>) {
        self.insert(key(tenant_id, upstream, session_id), session);
    }

    fn insert(&self, k: String, s: Arc<Session>) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_SESSIONS {
            // Drop the least recently used tenth.
            let mut ages: Vec<i64> = map
                .values()
                .map(|s| s.last_used_ms.load(Ordering::Relaxed))
                .collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 10];
            map.retain(|_, s| s.last_used_ms.load(Ordering::Relaxed) > cut);
        }
        map.insert(k, s);
    }

    /// Forget a session (the client deleted it).
    pub fn remove(&self, tenant_id: &str, upstream: &str, session_id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key(tenant_id, upstream, session_id));
    }

    /// Drop sessions idle for longer than `idle_ms`; returns how many remain.
    pub fn sweep(&self, idle_ms: i64) -> usize {
        let cutoff = now_ms() - idle_ms;
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| s.last_used_ms.load(Ordering::Relaxed) >= cutoff);
        map.len()
    }

    /// Sessions held.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
