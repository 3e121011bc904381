//! An in-memory [`CollectorStore`]: the collector's storage contract kept in a map, for unit
//! tests, other crates' tests, load generators and demos that need a collector without a
//! database.
//!
//! It keeps the contract the SQL store keeps (tenant scoping, enrollment tokens with uses and
//! expiry, idempotent apply keyed by (device, sequence), deltas only onto their exact base,
//! commands pending → delivered → answered, revocation, a change epoch and a notice feed), so a
//! test that passes against it tests the collector and not the fake. It is not durable and
//! stores tokens in clear: never a production store.

use std::collections::HashMap;
use std::sync::Mutex;

use agent_bom_protocol::{Command, Inventory, ProxyEvent, clock::now_ms, inventory_delta};
use tokio::sync::mpsc;

use super::{
    ApplyOutcome, CollectorStore, DeltaOutcome, DeltaUpload, DeviceSession, EnrollmentRequest,
    LastSeen, StoreError, StoreNotice,
};

/// Notices a subscriber may have unread before it is sent [`StoreNotice::Resync`] instead.
const NOTICE_BUFFER: usize = 1024;

/// Limits of an enrollment token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenLimits {
    /// Enrollments the token allows; `None` for any number.
    pub max_uses: Option<u32>,
    /// Unix milliseconds from which the token is expired; `None` for never.
    pub expires_at_ms: Option<i64>,
}

/// Where a command is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandStatus {
    /// Queued, not yet handed to the device.
    Pending,
    /// Handed to the device, no answer yet.
    Delivered,
    /// The device applied it.
    Applied,
    /// The device could not apply it (or answered with a status nobody documented).
    Failed,
    /// The device does not know the command.
    Unsupported,
}

impl CommandStatus {
    /// Still waiting for the device's answer (sent again when a session starts).
    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Delivered)
    }

    /// The stored outcome of an agent's `command_result` status; like the SQL store, anything
    /// but the documented outcomes counts as a failure.
    fn from_result(status: &str) -> Self {
        match status {
            "applied" => Self::Applied,
            "unsupported" => Self::Unsupported,
            _ => Self::Failed,
        }
    }
}

/// A command as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRecord {
    /// Command id.
    pub command_id: String,
    /// Tenant of the device.
    pub tenant_id: String,
    /// The device.
    pub agent_id: String,
    /// Kind (`rescan`, `quarantine`, ...).
    pub kind: String,
    /// Arguments as JSON text.
    pub payload: String,
    /// Where it is in its life.
    pub status: CommandStatus,
    /// The device's detail with its answer.
    pub detail: Option<String>,
}

/// A device as the store holds it (a copy, for assertions).
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRecord {
    /// Tenant of the device.
    pub tenant_id: String,
    /// Device id.
    pub agent_id: String,
    /// Hostname at enrollment, then from its inventories.
    pub hostname: String,
    /// Fingerprint of the certificate the device authenticates with.
    pub cert_fingerprint: String,
    /// Expiry of that certificate, Unix seconds.
    pub cert_not_after: i64,
    /// A renewed certificate (fingerprint, expiry) accepted from its first use on.
    pub staged_cert: Option<(String, i64)>,
    /// Revoked: refused at its next handshake, its live session closed.
    pub revoked: bool,
    /// Highest inventory sequence applied.
    pub last_seq: Option<u64>,
    /// The applied inventory.
    pub inventory: Option<Inventory>,
    /// Agent version of the last applied inventory.
    pub agent_version: Option<String>,
    /// Inventories written (snapshots and deltas); replays do not count.
    pub inventory_writes: u64,
    /// Highest proxy-event batch sequence applied.
    pub last_event_seq: Option<u64>,
    /// Proxy events stored, in arrival order.
    pub events: Vec<ProxyEvent>,
    /// Events the device reported dropped.
    pub events_dropped: u64,
    /// Last time a collector saw it connected, Unix milliseconds.
    pub last_seen_ms: Option<i64>,
}

impl DeviceRecord {
    fn new(request: &EnrollmentRequest, tenant_id: &str) -> Self {
        Self {
            tenant_id: tenant_id.to_string(),
            agent_id: request.agent_id.clone(),
            hostname: request.hostname.clone(),
            cert_fingerprint: request.cert_fingerprint.clone(),
            cert_not_after: request.cert_not_after,
            staged_cert: None,
            revoked: false,
            last_seq: None,
            inventory: None,
            agent_version: None,
            inventory_writes: 0,
            last_event_seq: None,
            events: Vec::new(),
            events_dropped: 0,
            last_seen_ms: None,
        }
    }

    fn write_inventory(&mut self, seq: u64, agent_version: &str, inventory: Inventory) {
        self.hostname.clone_from(&inventory.host.hostname);
        self.last_seq = Some(seq);
        self.agent_version = Some(agent_version.to_string());
        self.inventory = Some(inventory);
        self.inventory_writes += 1;
    }
}

/// Errors of the operator-side operations of the fake (what the control plane's API does).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoryStoreError {
    /// No device with this id in this tenant.
    #[error("no device {agent_id:?} in tenant {tenant_id:?}")]
    UnknownDevice {
        /// The tenant asked for.
        tenant_id: String,
        /// The device asked for.
        agent_id: String,
    },
}

#[derive(Debug)]
struct Token {
    tenant_id: String,
    limits: TokenLimits,
    uses: u32,
    revoked: bool,
}

#[derive(Debug, Default)]
struct State {
    tokens: HashMap<String, Token>,
    devices: HashMap<String, DeviceRecord>,
    /// In creation order: "oldest first" is the order of this list.
    commands: Vec<CommandRecord>,
    next_id: u64,
    epoch: i64,
    unavailable: bool,
}

impl State {
    /// The device, only if it belongs to `tenant_id`: a device id from another tenant does not
    /// exist for the caller.
    fn device(&self, tenant_id: &str, agent_id: &str) -> Option<&DeviceRecord> {
        self.devices
            .get(agent_id)
            .filter(|d| d.tenant_id == tenant_id)
    }

    /// The device a session names, for a write: unknown and revoked devices are refused.
    fn active_device(&mut self, device: &DeviceSession) -> Result<&mut DeviceRecord, StoreError> {
        match self.devices.get_mut(&device.agent_id) {
            Some(d) if d.tenant_id == device.tenant_id && !d.revoked => Ok(d),
            Some(d) if d.tenant_id == device.tenant_id => {
                Err(StoreError::Unauthorized("device was revoked".into()))
            }
            _ => Err(StoreError::Unauthorized("unknown device".into())),
        }
    }

    fn check_available(&self) -> Result<(), StoreError> {
        if self.unavailable {
            Err(StoreError::Unavailable(
                "memory store set unavailable by the test".into(),
            ))
        } else {
            Ok(())
        }
    }
}

#[derive(Debug)]
struct Subscriber {
    tx: mpsc::Sender<StoreNotice>,
    /// A notice could not be queued: send `Resync` before the next one.
    missed: bool,
}

/// The in-memory store. Cheap to create; share it in an `Arc` with the collector.
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
    /// `None`: no notice feed (the collector then relies on its sweep alone).
    subscribers: Option<Mutex<Vec<Subscriber>>>,
    deltas: bool,
    /// The deployment's QUIC secret: every collector on this store shares it.
    quic_secret: [u8; crate::quic_keys::MIN_SECRET_LEN],
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store with a notice feed and inventory deltas, like the SQL store.
    pub fn new() -> Self {
        let mut quic_secret = [0u8; crate::quic_keys::MIN_SECRET_LEN];
        let _ = aws_lc_rs::rand::fill(&mut quic_secret);
        Self {
            state: Mutex::new(State::default()),
            subscribers: Some(Mutex::new(Vec::new())),
            deltas: true,
            quic_secret,
        }
    }

    /// Without a notice feed: commands and revocations reach the collector only through its
    /// periodic sweep (like a store written by another process).
    pub fn without_notices(mut self) -> Self {
        self.subscribers = None;
        self
    }

    /// Without inventory deltas: the collector then offers snapshots only.
    pub fn without_deltas(mut self) -> Self {
        self.deltas = false;
        self
    }

    /// Create an enrollment token for `tenant_id` (the tenant exists from its first token on).
    pub fn create_enrollment_token(&self, tenant_id: &str, limits: TokenLimits) -> String {
        let mut state = self.lock();
        state.next_id += 1;
        let token = format!("mem_{}_{}", state.next_id, uuid::Uuid::new_v4().simple());
        state.tokens.insert(
            token.clone(),
            Token {
                tenant_id: tenant_id.to_string(),
                limits,
                uses: 0,
                revoked: false,
            },
        );
        token
    }

    /// Revoke an enrollment token; false if it does not exist.
    pub fn revoke_enrollment_token(&self, token: &str) -> bool {
        self.lock()
            .tokens
            .get_mut(token)
            .map(|t| t.revoked = true)
            .is_some()
    }

    /// Queue a command for a device and announce it; returns its id.
    pub fn queue_command(
        &self,
        tenant_id: &str,
        agent_id: &str,
        kind: &str,
        payload: &str,
    ) -> Result<String, MemoryStoreError> {
        let command_id = {
            let mut state = self.lock();
            if state.device(tenant_id, agent_id).is_none() {
                return Err(unknown(tenant_id, agent_id));
            }
            state.next_id += 1;
            let command_id = format!("cmd-{}", state.next_id);
            state.commands.push(CommandRecord {
                command_id: command_id.clone(),
                tenant_id: tenant_id.to_string(),
                agent_id: agent_id.to_string(),
                kind: kind.to_string(),
                payload: payload.to_string(),
                status: CommandStatus::Pending,
                detail: None,
            });
            state.epoch += 1;
            command_id
        };
        self.announce(StoreNotice::Commands {
            tenant_id: tenant_id.to_string(),
            agent_id: agent_id.to_string(),
        });
        Ok(command_id)
    }

    /// Revoke a device and announce it: its next handshake is refused and the collector holding
    /// its session closes it.
    pub fn revoke_device(&self, tenant_id: &str, agent_id: &str) -> Result<(), MemoryStoreError> {
        {
            let mut state = self.lock();
            match state.devices.get_mut(agent_id) {
                Some(d) if d.tenant_id == tenant_id && !d.revoked => d.revoked = true,
                _ => return Err(unknown(tenant_id, agent_id)),
            }
            state.epoch += 1;
        }
        self.announce(StoreNotice::Revoked {
            tenant_id: tenant_id.to_string(),
            agent_id: agent_id.to_string(),
        });
        Ok(())
    }

    /// Make every storage operation fail with [`StoreError::Unavailable`] (a database outage),
    /// or end that.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.lock().unavailable = unavailable;
    }

    /// A copy of a device's record.
    pub fn device(&self, agent_id: &str) -> Option<DeviceRecord> {
        self.lock().devices.get(agent_id).cloned()
    }

    /// A copy of a command's record.
    pub fn command(&self, command_id: &str) -> Option<CommandRecord> {
        self.lock()
            .commands
            .iter()
            .find(|c| c.command_id == command_id)
            .cloned()
    }

    /// Enrollments made with a token so far (`None`: unknown token).
    pub fn token_uses(&self, token: &str) -> Option<u32> {
        self.lock().tokens.get(token).map(|t| t.uses)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a test panicked while holding it; the map is still valid.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Send a notice to every live subscriber. A full subscriber gets `Resync` as soon as it has
    /// room again, as the trait asks of a feed that fell behind.
    fn announce(&self, notice: StoreNotice) {
        let Some(subscribers) = &self.subscribers else {
            return;
        };
        let mut subscribers = subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subscribers.retain_mut(|s| {
            if s.missed {
                match s.tx.try_send(StoreNotice::Resync) {
                    Ok(()) => s.missed = false,
                    Err(mpsc::error::TrySendError::Full(_)) => return true,
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            match s.tx.try_send(notice.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.missed = true;
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    fn with_state<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut state = self.lock();
        state.check_available()?;
        f(&mut state)
    }
}

fn unknown(tenant_id: &str, agent_id: &str) -> MemoryStoreError {
    MemoryStoreError::UnknownDevice {
        tenant_id: tenant_id.to_string(),
        agent_id: agent_id.to_string(),
    }
}

fn as_command(record: &CommandRecord) -> Command {
    Command {
        command_id: record.command_id.clone(),
        command: record.kind.clone(),
        payload: record.payload.clone(),
        // The collector signs at delivery; nothing signed is stored.
        signature: None,
    }
}

impl CollectorStore for MemoryStore {
    async fn enroll_device(&self, request: EnrollmentRequest) -> Result<String, StoreError> {
        self.with_state(|state| {
            let invalid = |m: &str| StoreError::InvalidToken(m.to_string());
            let token = state
                .tokens
                .get_mut(&request.token)
                .ok_or_else(|| invalid("unknown enrollment token"))?;
            if token.revoked {
                return Err(invalid("enrollment token was revoked"));
            }
            if token.limits.expires_at_ms.is_some_and(|e| e <= now_ms()) {
                return Err(invalid("enrollment token expired"));
            }
            if token.limits.max_uses.is_some_and(|max| token.uses >= max) {
                return Err(invalid("enrollment token has no uses left"));
            }
            token.uses += 1;
            let tenant_id = token.tenant_id.clone();
            if state.devices.contains_key(&request.agent_id) {
                // The collector picks random ids; a collision is a bug, not the agent's fault.
                return Err(StoreError::Unavailable(format!(
                    "device id {} already exists",
                    request.agent_id
                )));
            }
            state.devices.insert(
                request.agent_id.clone(),
                DeviceRecord::new(&request, &tenant_id),
            );
            Ok(tenant_id)
        })
    }

    async fn check_enrollment_token(&self, token: &str) -> Result<(), StoreError> {
        self.with_state(|state| {
            let invalid = |m: &str| StoreError::InvalidToken(m.to_string());
            let token = state
                .tokens
                .get(token)
                .ok_or_else(|| invalid("unknown enrollment token"))?;
            if token.revoked {
                return Err(invalid("enrollment token was revoked"));
            }
            if token.limits.expires_at_ms.is_some_and(|e| e <= now_ms()) {
                return Err(invalid("enrollment token expired"));
            }
            if token.limits.max_uses.is_some_and(|max| token.uses >= max) {
                return Err(invalid("enrollment token has no uses left"));
            }
            Ok(())
        })
    }

    async fn authenticate_device(
        &self,
        agent_id: &str,
        cert_fingerprint: &str,
    ) -> Result<DeviceSession, StoreError> {
        self.with_state(|state| {
            let device = state
                .devices
                .get_mut(agent_id)
                .ok_or_else(|| StoreError::Unauthorized("unknown device".into()))?;
            if device.revoked {
                return Err(StoreError::Unauthorized("device was revoked".into()));
            }
            match device.staged_cert.take() {
                // First use of a renewed certificate: it becomes the current one, and the old
                // one stops working.
                Some((next, not_after)) if next == cert_fingerprint => {
                    device.cert_fingerprint = next;
                    device.cert_not_after = not_after;
                }
                staged => {
                    device.staged_cert = staged;
                    if device.cert_fingerprint != cert_fingerprint {
                        return Err(StoreError::Unauthorized(
                            "certificate does not match the device's current certificate".into(),
                        ));
                    }
                }
            }
            Ok(DeviceSession {
                tenant_id: device.tenant_id.clone(),
                agent_id: agent_id.to_string(),
                last_applied_seq: device.last_seq,
            })
        })
    }

    async fn apply_inventory(
        &self,
        device: &DeviceSession,
        agent_version: &str,
        seq: u64,
        inventory: &Inventory,
    ) -> Result<ApplyOutcome, StoreError> {
        self.with_state(|state| {
            let record = state.active_device(device)?;
            if record.last_seq.is_some_and(|last| last >= seq) {
                return Ok(ApplyOutcome::AlreadyApplied);
            }
            record.write_inventory(seq, agent_version, inventory.clone());
            Ok(ApplyOutcome::Applied)
        })
    }

    fn inventory_deltas(&self) -> bool {
        self.deltas
    }

    async fn apply_inventory_delta(
        &self,
        device: &DeviceSession,
        agent_version: &str,
        upload: DeltaUpload<'_>,
    ) -> Result<DeltaOutcome, StoreError> {
        if !self.deltas {
            return Ok(DeltaOutcome::SnapshotRequired);
        }
        self.with_state(|state| {
            if upload.seq <= upload.base_seq {
                return Err(StoreError::Invalid(
                    "a delta's sequence must be above its base sequence".into(),
                ));
            }
            let record = state.active_device(device)?;
            // A replay is acknowledged before the base is looked at: the stored state is past
            // the base by then, and the agent only needs the ack it lost.
            if record.last_seq.is_some_and(|last| last >= upload.seq) {
                return Ok(DeltaOutcome::AlreadyApplied);
            }
            let base = record
                .inventory
                .as_ref()
                .filter(|_| record.last_seq == Some(upload.base_seq))
                .filter(|b| b.content_hash() == upload.base_hash);
            let Some(base) = base else {
                return Ok(DeltaOutcome::SnapshotRequired);
            };
            match inventory_delta::apply(base, upload.changes) {
                Ok(next) if next.content_hash() == upload.hash => {
                    record.write_inventory(upload.seq, agent_version, next);
                    Ok(DeltaOutcome::Applied)
                }
                // Changes that do not fit, or a result other than the agent's: a snapshot
                // settles it.
                Ok(_) | Err(_) => Ok(DeltaOutcome::SnapshotRequired),
            }
        })
    }

    async fn apply_proxy_events(
        &self,
        device: &DeviceSession,
        seq: u64,
        events: &[ProxyEvent],
        dropped: u64,
    ) -> Result<ApplyOutcome, StoreError> {
        self.with_state(|state| {
            let record = state.active_device(device)?;
            if record.last_event_seq.is_some_and(|last| last >= seq) {
                return Ok(ApplyOutcome::AlreadyApplied);
            }
            record.last_event_seq = Some(seq);
            record.events.extend_from_slice(events);
            record.events_dropped = record.events_dropped.saturating_add(dropped);
            Ok(ApplyOutcome::Applied)
        })
    }

    async fn stage_certificate(
        &self,
        device: &DeviceSession,
        cert_fingerprint: &str,
        cert_not_after: i64,
    ) -> Result<(), StoreError> {
        self.with_state(|state| {
            // Like the SQL store: staging for a revoked device changes nothing and is no error
            // (its next handshake is refused anyway).
            if let Ok(record) = state.active_device(device) {
                record.staged_cert = Some((cert_fingerprint.to_string(), cert_not_after));
            }
            Ok(())
        })
    }

    async fn record_last_seen(&self, seen: &[LastSeen]) -> Result<(), StoreError> {
        self.with_state(|state| {
            for s in seen {
                if let Some(d) = state.devices.get_mut(&s.agent_id)
                    && d.tenant_id == s.tenant_id
                {
                    d.last_seen_ms = Some(s.at_ms);
                }
            }
            Ok(())
        })
    }

    async fn session_commands(&self, device: &DeviceSession) -> Result<Vec<Command>, StoreError> {
        self.with_state(|state| {
            Ok(state
                .commands
                .iter()
                .filter(|c| {
                    c.tenant_id == device.tenant_id
                        && c.agent_id == device.agent_id
                        && c.status.is_open()
                })
                .map(as_command)
                .collect())
        })
    }

    async fn queued_commands(
        &self,
        connected: &[LastSeen],
    ) -> Result<Vec<(String, Command)>, StoreError> {
        self.with_state(|state| {
            Ok(state
                .commands
                .iter()
                .filter(|c| c.status == CommandStatus::Pending)
                .filter(|c| {
                    connected
                        .iter()
                        .any(|s| s.tenant_id == c.tenant_id && s.agent_id == c.agent_id)
                })
                .map(|c| (c.agent_id.clone(), as_command(c)))
                .collect())
        })
    }

    async fn mark_delivered(
        &self,
        device: &DeviceSession,
        command_id: &str,
    ) -> Result<(), StoreError> {
        self.with_state(|state| {
            if let Some(c) = find_command(state, device, command_id)
                && c.status == CommandStatus::Pending
            {
                c.status = CommandStatus::Delivered;
            }
            Ok(())
        })
    }

    async fn record_command_result(
        &self,
        device: &DeviceSession,
        command_id: &str,
        status: &str,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        self.with_state(|state| {
            // Only an open command takes an answer: a late duplicate cannot overwrite one.
            if let Some(c) = find_command(state, device, command_id)
                && c.status.is_open()
            {
                c.status = CommandStatus::from_result(status);
                c.detail = detail.map(str::to_string);
            }
            Ok(())
        })
    }

    async fn revoked_among(&self, connected: &[LastSeen]) -> Result<Vec<String>, StoreError> {
        self.with_state(|state| {
            Ok(connected
                .iter()
                // Revoked, or gone (never existed in that tenant).
                .filter(|s| {
                    state
                        .device(&s.tenant_id, &s.agent_id)
                        .is_none_or(|d| d.revoked)
                })
                .map(|s| s.agent_id.clone())
                .collect())
        })
    }

    async fn change_epoch(&self) -> Option<i64> {
        let state = self.lock();
        (!state.unavailable).then_some(state.epoch)
    }

    fn notices(&self) -> Option<mpsc::Receiver<StoreNotice>> {
        let subscribers = self.subscribers.as_ref()?;
        let (tx, rx) = mpsc::channel(NOTICE_BUFFER);
        subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Subscriber { tx, missed: false });
        Some(rx)
    }

    async fn quic_secret(&self) -> Option<Vec<u8>> {
        Some(self.quic_secret.to_vec())
    }
}

/// The command `command_id` of the device a session names (tenant-scoped).
fn find_command<'a>(
    state: &'a mut State,
    device: &DeviceSession,
    command_id: &str,
) -> Option<&'a mut CommandRecord> {
    state.commands.iter_mut().find(|c| {
        c.command_id == command_id
            && c.tenant_id == device.tenant_id
            && c.agent_id == device.agent_id
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_bom_protocol::{HostFacts, ServerEntry};

    fn enroll(store: &MemoryStore, token: &str, agent_id: &str) -> Result<String, StoreError> {
        futures_ready(store.enroll_device(EnrollmentRequest {
            token: token.to_string(),
            agent_id: agent_id.to_string(),
            cert_fingerprint: format!("fp-{agent_id}"),
            cert_not_after: 4_000_000_000,
            hostname: "host".into(),
            continues: None,
        }))
    }

    /// Every future of the fake is ready at once: it never awaits.
    fn futures_ready<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(out) => out,
            std::task::Poll::Pending => panic!("the memory store awaited"),
        }
    }

    fn session(store: &MemoryStore, agent_id: &str) -> DeviceSession {
        futures_ready(store.authenticate_device(agent_id, &format!("fp-{agent_id}"))).unwrap()
    }

    fn inventory(servers: &[&str]) -> Inventory {
        Inventory {
            host: HostFacts {
                hostname: "host".into(),
                ..HostFacts::default()
            },
            servers: servers
                .iter()
                .map(|name| ServerEntry {
                    id: format!("id-{name}"),
                    name: name.to_string(),
                    ..ServerEntry::default()
                })
                .collect(),
            ..Inventory::default()
        }
    }

    #[test]
    fn tokens_have_uses_expiry_and_revocation() {
        let store = MemoryStore::new();
        let once = store.create_enrollment_token(
            "t1",
            TokenLimits {
                max_uses: Some(1),
                expires_at_ms: None,
            },
        );
        assert_eq!(enroll(&store, &once, "a").unwrap(), "t1");
        assert!(matches!(
            enroll(&store, &once, "b"),
            Err(StoreError::InvalidToken(m)) if m.contains("no uses left")
        ));
        let expired = store.create_enrollment_token(
            "t1",
            TokenLimits {
                max_uses: None,
                expires_at_ms: Some(now_ms() - 1),
            },
        );
        assert!(
            matches!(enroll(&store, &expired, "c"), Err(StoreError::InvalidToken(m)) if m.contains("expired"))
        );
        let revoked = store.create_enrollment_token("t1", TokenLimits::default());
        assert!(store.revoke_enrollment_token(&revoked));
        assert!(
            matches!(enroll(&store, &revoked, "d"), Err(StoreError::InvalidToken(m)) if m.contains("revoked"))
        );
        assert!(matches!(
            enroll(&store, "guess", "e"),
            Err(StoreError::InvalidToken(_))
        ));
        assert!(store.device("b").is_none() && store.device("c").is_none());
        assert_eq!(store.token_uses(&once), Some(1));
    }

    #[test]
    fn apply_is_idempotent_per_device_and_sequence() {
        let store = MemoryStore::new();
        let token = store.create_enrollment_token("t1", TokenLimits::default());
        enroll(&store, &token, "a").unwrap();
        let device = session(&store, "a");
        let inv = inventory(&["one"]);
        let apply = |seq| futures_ready(store.apply_inventory(&device, "1.0", seq, &inv));
        assert_eq!(apply(2).unwrap(), ApplyOutcome::Applied);
        assert_eq!(apply(2).unwrap(), ApplyOutcome::AlreadyApplied);
        assert_eq!(apply(1).unwrap(), ApplyOutcome::AlreadyApplied);
        assert_eq!(store.device("a").unwrap().inventory_writes, 1);
        assert_eq!(session(&store, "a").last_applied_seq, Some(2));
        // Another tenant's session naming the same device id finds nothing.
        let foreign = DeviceSession {
            tenant_id: "t2".into(),
            ..device.clone()
        };
        assert!(matches!(
            futures_ready(store.apply_inventory(&foreign, "1.0", 3, &inv)),
            Err(StoreError::Unauthorized(_))
        ));
    }

    #[test]
    fn deltas_apply_only_onto_their_exact_base() {
        let store = MemoryStore::new();
        let token = store.create_enrollment_token("t1", TokenLimits::default());
        enroll(&store, &token, "a").unwrap();
        let device = session(&store, "a");
        let (base, next) = (inventory(&["one"]), inventory(&["one", "two"]));
        futures_ready(store.apply_inventory(&device, "1.0", 1, &base)).unwrap();
        let changes = inventory_delta::diff(&base, &next);
        let (base_hash, hash) = (base.content_hash(), next.content_hash());
        let apply = |seq, base_seq, base_hash: &str| {
            let upload = DeltaUpload {
                seq,
                base_seq,
                base_hash,
                hash: &hash,
                changes: &changes,
            };
            futures_ready(store.apply_inventory_delta(&device, "1.0", upload))
        };
        assert_eq!(
            apply(2, 0, &base_hash).unwrap(),
            DeltaOutcome::SnapshotRequired
        );
        assert_eq!(
            apply(2, 1, "other").unwrap(),
            DeltaOutcome::SnapshotRequired
        );
        assert_eq!(apply(2, 1, &base_hash).unwrap(), DeltaOutcome::Applied);
        assert_eq!(
            apply(2, 1, &base_hash).unwrap(),
            DeltaOutcome::AlreadyApplied
        );
        assert!(matches!(
            apply(1, 1, &base_hash),
            Err(StoreError::Invalid(_))
        ));
        assert_eq!(store.device("a").unwrap().inventory, Some(next));
    }

    #[test]
    fn commands_move_from_pending_to_answered_and_revocation_is_announced() {
        let store = MemoryStore::new();
        let mut feed = store.notices().unwrap();
        let token = store.create_enrollment_token("t1", TokenLimits::default());
        enroll(&store, &token, "a").unwrap();
        let device = session(&store, "a");
        let id = store.queue_command("t1", "a", "rescan", "{}").unwrap();
        assert!(store.queue_command("t2", "a", "rescan", "{}").is_err());
        assert_eq!(
            feed.try_recv().unwrap(),
            StoreNotice::Commands {
                tenant_id: "t1".into(),
                agent_id: "a".into()
            }
        );
        let connected = [LastSeen {
            tenant_id: "t1".into(),
            agent_id: "a".into(),
            at_ms: 5,
        }];
        assert_eq!(
            futures_ready(store.queued_commands(&connected))
                .unwrap()
                .len(),
            1
        );
        futures_ready(store.mark_delivered(&device, &id)).unwrap();
        assert!(
            futures_ready(store.queued_commands(&connected))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            futures_ready(store.session_commands(&device))
                .unwrap()
                .len(),
            1,
            "delivered but unanswered commands go again with the next session"
        );
        futures_ready(store.record_command_result(&device, &id, "applied", Some("ok"))).unwrap();
        futures_ready(store.record_command_result(&device, &id, "failed", None)).unwrap();
        let record = store.command(&id).unwrap();
        assert_eq!(
            (record.status, record.detail.as_deref()),
            (CommandStatus::Applied, Some("ok"))
        );
        futures_ready(store.record_last_seen(&connected)).unwrap();
        assert_eq!(store.device("a").unwrap().last_seen_ms, Some(5));

        let epoch = futures_ready(store.change_epoch());
        store.revoke_device("t1", "a").unwrap();
        assert!(futures_ready(store.change_epoch()) > epoch);
        assert_eq!(
            feed.try_recv().unwrap(),
            StoreNotice::Revoked {
                tenant_id: "t1".into(),
                agent_id: "a".into()
            }
        );
        assert_eq!(
            futures_ready(store.revoked_among(&connected)).unwrap(),
            vec!["a".to_string()]
        );
        assert!(matches!(
            futures_ready(store.authenticate_device("a", "fp-a")),
            Err(StoreError::Unauthorized(_))
        ));
    }

    #[test]
    fn a_staged_certificate_replaces_the_old_one_at_first_use() {
        let store = MemoryStore::new();
        let token = store.create_enrollment_token("t1", TokenLimits::default());
        enroll(&store, &token, "a").unwrap();
        let device = session(&store, "a");
        futures_ready(store.stage_certificate(&device, "fp-new", 9)).unwrap();
        // Until the new one is used, the old one still works.
        session(&store, "a");
        futures_ready(store.authenticate_device("a", "fp-new")).unwrap();
        assert!(futures_ready(store.authenticate_device("a", "fp-a")).is_err());
        assert_eq!(store.device("a").unwrap().cert_not_after, 9);
    }

    #[test]
    fn an_outage_fails_every_operation_as_unavailable() {
        let store = MemoryStore::new();
        let token = store.create_enrollment_token("t1", TokenLimits::default());
        store.set_unavailable(true);
        assert!(matches!(
            enroll(&store, &token, "a"),
            Err(StoreError::Unavailable(_))
        ));
        assert_eq!(futures_ready(store.change_epoch()), None);
        store.set_unavailable(false);
        enroll(&store, &token, "a").unwrap();
    }

    #[test]
    fn a_full_subscriber_is_told_to_resync() {
        let store = MemoryStore::new();
        let mut feed = store.notices().unwrap();
        let token = store.create_enrollment_token("t1", TokenLimits::default());
        enroll(&store, &token, "a").unwrap();
        for _ in 0..=NOTICE_BUFFER {
            store.queue_command("t1", "a", "rescan", "{}").unwrap();
        }
        for _ in 0..NOTICE_BUFFER {
            assert!(matches!(
                feed.try_recv().unwrap(),
                StoreNotice::Commands { .. }
            ));
        }
        store.queue_command("t1", "a", "rescan", "{}").unwrap();
        assert_eq!(feed.try_recv().unwrap(), StoreNotice::Resync);
    }
}
