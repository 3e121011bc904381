//! What the collector needs from storage. The control plane implements this trait on its
//! database; [`memory::MemoryStore`] implements it in memory for tests and load generators.

use std::future::Future;

pub mod memory;

use agent_bom_protocol::{Command, Inventory, InventoryChanges, ProxyEvent};

/// A request to turn an enrollment token into a device.
#[derive(Debug, Clone)]
pub struct EnrollmentRequest {
    /// The token as the agent presented it.
    pub token: String,
    /// Device id chosen by the collector (also the certificate's common name).
    pub agent_id: String,
    /// Hex SHA-256 of the issued certificate.
    pub cert_fingerprint: String,
    /// Certificate expiry, Unix seconds.
    pub cert_not_after: i64,
    /// Hostname the agent reported.
    pub hostname: String,
    /// An earlier identity the device proved it holds (its key signed for this enrollment):
    /// the store retires it as replaced by the new device, if it is an endpoint of the token's
    /// tenant whose certificate on record is the one proven.
    pub continues: Option<ContinuedIdentity>,
}

/// An earlier device identity an enrolling device proved it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContinuedIdentity {
    /// The earlier device id (its certificate's common name).
    pub agent_id: String,
    /// Hex SHA-256 of the earlier certificate.
    pub cert_fingerprint: String,
}

/// An authenticated device on a live connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSession {
    /// The tenant the device belongs to.
    pub tenant_id: String,
    /// The device id.
    pub agent_id: String,
    /// Highest upload sequence already committed.
    pub last_applied_seq: Option<u64>,
}

/// Result of applying an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Written and committed now.
    Applied,
    /// This sequence was committed before; nothing was written (idempotent replay).
    AlreadyApplied,
}

/// An `inventory_delta` upload, as the store needs it.
#[derive(Debug, Clone, Copy)]
pub struct DeltaUpload<'a> {
    /// Sequence of this upload.
    pub seq: u64,
    /// Sequence of the acknowledged upload the changes are relative to.
    pub base_seq: u64,
    /// Content hash of that base ([`Inventory::content_hash`]).
    pub base_hash: &'a str,
    /// Content hash the inventory must have after the changes are applied.
    pub hash: &'a str,
    /// The changes.
    pub changes: &'a InventoryChanges,
}

/// Result of applying an inventory delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaOutcome {
    /// Applied to the stored base and committed now.
    Applied,
    /// This sequence was committed before; nothing was written (idempotent replay).
    AlreadyApplied,
    /// The stored inventory is not the delta's base (unknown, older after a restore, or
    /// different): nothing was written and the agent must send a full snapshot.
    SnapshotRequired,
}

/// Storage failures, classified by what the agent should do about them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Enrollment token unknown, expired, exhausted or revoked.
    #[error("enrollment token rejected: {0}")]
    InvalidToken(String),
    /// Device unknown, revoked, or certificate superseded.
    #[error("device not authorized: {0}")]
    Unauthorized(String),
    /// The upload is not acceptable (permanent).
    #[error("invalid upload: {0}")]
    Invalid(String),
    /// The database is unreachable or overloaded; try again later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// Storage operations of the collector. Every method is tenant-scoped by the device it names.
pub trait CollectorStore: Send + Sync + 'static {
    /// Atomically validate and consume an enrollment token, and register the device under the
    /// token's tenant. Returns the tenant id.
    fn enroll_device(
        &self,
        request: EnrollmentRequest,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// Whether `token` would enroll a device now, without consuming it (checked before a
    /// certificate is signed, so a wrong token costs no signature). [`Self::enroll_device`]
    /// still checks and consumes it atomically.
    fn check_enrollment_token(
        &self,
        token: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Look up a device by id and certificate fingerprint; fails if unknown or revoked.
    fn authenticate_device(
        &self,
        agent_id: &str,
        cert_fingerprint: &str,
    ) -> impl Future<Output = Result<DeviceSession, StoreError>> + Send;

    /// Replace the device's inventory with `inventory` in one transaction, unless `seq` was
    /// already applied. Must only return `Ok` after the commit.
    fn apply_inventory(
        &self,
        device: &DeviceSession,
        agent_version: &str,
        seq: u64,
        inventory: &Inventory,
    ) -> impl Future<Output = Result<ApplyOutcome, StoreError>> + Send;

    /// True when [`Self::apply_inventory_delta`] is implemented: the collector then offers the
    /// `inventory.delta` capability in `Welcome`.
    fn inventory_deltas(&self) -> bool {
        false
    }

    /// Apply an inventory delta in one transaction: acknowledged without writing when `seq` was
    /// already applied; applied only when the stored inventory is exactly the delta's base
    /// (sequence and content hash) and the result has the announced hash; otherwise
    /// [`DeltaOutcome::SnapshotRequired`]. Must only return `Ok(Applied)` after the commit. A
    /// store without deltas keeps the default, which always asks for a snapshot.
    fn apply_inventory_delta(
        &self,
        device: &DeviceSession,
        agent_version: &str,
        upload: DeltaUpload<'_>,
    ) -> impl Future<Output = Result<DeltaOutcome, StoreError>> + Send {
        let _ = (device, agent_version, upload);
        std::future::ready(Ok(DeltaOutcome::SnapshotRequired))
    }

    /// Store a batch of proxy audit events in one transaction, unless `seq` was already applied
    /// (event batches have their own sequence). Must only return `Ok` after the commit.
    fn apply_proxy_events(
        &self,
        device: &DeviceSession,
        seq: u64,
        events: &[ProxyEvent],
        dropped: u64,
    ) -> impl Future<Output = Result<ApplyOutcome, StoreError>> + Send;

    /// Stage a renewed certificate for a device: accepted from its next handshake on, when it
    /// replaces the current one (until then the current one stays valid, so a lost reply
    /// cannot lock the device out).
    fn stage_certificate(
        &self,
        device: &DeviceSession,
        cert_fingerprint: &str,
        cert_not_after: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Record last-seen times for connected devices, in one batched write.
    fn record_last_seen(
        &self,
        seen: &[LastSeen],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Commands of a device not yet answered (queued or delivered without a result), oldest
    /// first: sent when its session starts.
    fn session_commands(
        &self,
        device: &DeviceSession,
    ) -> impl Future<Output = Result<Vec<Command>, StoreError>> + Send;

    /// Commands queued (not yet delivered) for any of the connected devices, in one query per
    /// tenant: the catch-up that makes a command created on any control-plane replica reach the
    /// collector holding the device's connection.
    fn queued_commands(
        &self,
        connected: &[LastSeen],
    ) -> impl Future<Output = Result<Vec<(String, Command)>, StoreError>> + Send;

    /// Record that a command was handed to the device.
    fn mark_delivered(
        &self,
        device: &DeviceSession,
        command_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Record a device's answer to a command.
    fn record_command_result(
        &self,
        device: &DeviceSession,
        command_id: &str,
        status: &str,
        detail: Option<&str>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Of the given connected devices, the ids that are revoked (or no longer exist), in one
    /// query. The collector closes their live sessions.
    fn revoked_among(
        &self,
        connected: &[LastSeen],
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// A counter the store moves whenever a command becomes pending or a device is revoked or
    /// deleted, by any writer. The sweep checks its connected devices only when it moved (or
    /// after [`crate::liveness::FULL_SWEEP_EVERY`]), so an idle fleet costs one small read per
    /// sweep. `None` (the default): unknown, sweep every time.
    fn change_epoch(&self) -> impl Future<Output = Option<i64>> + Send {
        async { None }
    }

    /// Changes the store announces as they are committed (queued commands, revoked devices),
    /// so the collector holding a device's connection acts at once instead of at its next
    /// sweep. `None` (the default) when the store has no such feed: the periodic sweep alone
    /// then delivers. Called once per running collector, inside the async runtime.
    fn notices(&self) -> Option<tokio::sync::mpsc::Receiver<StoreNotice>> {
        None
    }

    /// The deployment's secret for the QUIC keys every collector must share (at least
    /// [`crate::quic_keys::MIN_SECRET_LEN`] bytes; see [`crate::quic_keys`]): the same for every
    /// collector on the store and across restarts, so a restarted or replaced collector resets
    /// the connections of the one before it at once. `None` (the default): keys of this process
    /// alone, and agents of a restarted collector wait for their idle timeout.
    fn quic_secret(&self) -> impl Future<Output = Option<Vec<u8>>> + Send {
        async { None }
    }
}

/// A change announced by the store. Only a hint to look now: the collector re-reads the store
/// before it delivers or closes anything, so a lost, duplicated or forged notice can delay an
/// action (until the sweep) but never cause one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreNotice {
    /// Commands were queued for a device.
    Commands {
        /// Tenant of the device.
        tenant_id: String,
        /// Device id.
        agent_id: String,
    },
    /// A device was revoked or deleted.
    Revoked {
        /// Tenant of the device.
        tenant_id: String,
        /// Device id.
        agent_id: String,
    },
    /// Notices may have been missed (the feed reconnected or fell behind): check every
    /// connected device now.
    Resync,
}

/// One device's last-seen time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastSeen {
    /// Tenant of the device.
    pub tenant_id: String,
    /// Device id.
    pub agent_id: String,
    /// Unix milliseconds.
    pub at_ms: i64,
}
