//! One uplink connection as the collector sees it, written once for QUIC and TLS over TCP.
//!
//! A connection opens with one exchange ([`Context::open`]). A peer without a client
//! certificate may send `enroll` and nothing else; the connection ends after the answer. A peer
//! with a device certificate must send `hello`; the certificate is authenticated against the
//! store and an accepted hello yields a [`Session`], which answers every later request: uploads
//! (acknowledged only after the store committed), deltas, proxy events, command results,
//! certificate renewals and pings (which carry the device's commands on TLS/TCP), each within
//! the database work budget. The session's [`Control`] says what the collector itself wants of
//! the connection: push a command (QUIC) or close it (superseded or revoked).
//!
//! Nothing here touches a socket. The transports (`quic`, `tcp`) move frames in and out and
//! carry out the close decisions, so the whole conversation is unit-tested against
//! [`crate::store::memory::MemoryStore`] (see `session/tests.rs`).

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use agent_bom_protocol::prior_identity::PriorIdentity;
use agent_bom_protocol::{
    AgentMessage, CollectorMessage, Command, ErrorCode, PROTOCOL_VERSION, capability, close,
};
use rustls::pki_types::CertificateDer;

use crate::admission::{FailureThrottle, FrameBudget, WorkBudget, jittered};
use crate::config::CollectorConfig;
pub(crate) use crate::config::Transport;
use crate::ingress::EventBudget;
use crate::liveness::{Liveness, SessionHandle};
use crate::metrics;
use crate::pki::{CertificateAuthority, fingerprint};
use crate::prior_identity;
use crate::reply::{
    Close, UNAVAILABLE_RETRY, error, millis, overloaded, store_error, unsupported_version,
};
use crate::store::{
    ApplyOutcome, CollectorStore, DeltaOutcome, DeltaUpload, DeviceSession, EnrollmentRequest,
    StoreError,
};

/// Longest command status stored from an agent's answer.
const MAX_COMMAND_STATUS: usize = 32;
/// Longest command detail stored from an agent's answer.
const MAX_COMMAND_DETAIL: usize = 1024;
/// Longest hostname stored at enrollment.
const MAX_HOSTNAME: usize = 255;

/// What every connection of a collector shares: the store, the CA, the admission budgets and
/// the registry of live sessions.
pub(crate) struct Context<S> {
    pub(crate) store: Arc<S>,
    pub(crate) ca: Arc<CertificateAuthority>,
    pub(crate) liveness: Liveness,
    pub(crate) throttle: FailureThrottle,
    pub(crate) events: EventBudget,
    /// Work on the connection pool: hellos, enrollments, pings, command results, renewals.
    pub(crate) reads: Arc<WorkBudget>,
    /// Uploads for the store's group-commit writer: inventories, deltas, proxy events.
    pub(crate) uploads: Arc<WorkBudget>,
    /// Bytes of authenticated devices' request frames held, from header to answer.
    pub(crate) frames: Arc<FrameBudget>,
}

/// Who is on the other end, as the TLS handshake established it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Peer<'a> {
    /// No client certificate: may only enroll. The address is what enrollment throttling counts.
    Anonymous(IpAddr),
    /// A client certificate the handshake verified against the CA (its leaf).
    Device(&'a CertificateDer<'static>),
}

/// The outcome of a connection's first exchange.
pub(crate) enum Opening<S> {
    /// Send `welcome`, then serve `session`.
    Accepted {
        session: Session<S>,
        welcome: CollectorMessage,
    },
    /// Send `reply`, then end the connection with `close`.
    Ended {
        reply: CollectorMessage,
        close: Close,
    },
}

impl<S: CollectorStore> Context<S> {
    /// The shared state of a collector writing to `store`, issuing certificates with `ca`.
    pub(crate) fn new(
        store: Arc<S>,
        ca: Arc<CertificateAuthority>,
        config: &CollectorConfig,
    ) -> Self {
        Self {
            store,
            ca,
            liveness: Liveness::default(),
            throttle: FailureThrottle::new(
                config.enroll_failures_per_minute,
                config.enroll_failures_global_per_minute,
            ),
            events: EventBudget::new(config.event_limits),
            reads: WorkBudget::new(
                "reads",
                config.max_db_in_flight,
                config.db_wait,
                config.overload_retry_after,
            ),
            uploads: WorkBudget::new(
                "uploads",
                config.max_uploads_in_flight,
                config.db_wait,
                config.overload_retry_after,
            ),
            frames: FrameBudget::new(
                config.max_request_bytes,
                config.db_wait,
                config.overload_retry_after,
            ),
        }
    }

    /// Answer the first request of a connection from `peer`: enrollment for a peer without a
    /// certificate, `hello` and authentication for a device.
    pub(crate) async fn open(
        self: &Arc<Self>,
        first: Result<AgentMessage, CollectorMessage>,
        peer: Peer<'_>,
    ) -> Opening<S> {
        match peer {
            Peer::Anonymous(remote) => {
                let reply = self.answer_enroll(first, remote).await;
                Opening::Ended {
                    close: Close::after(&reply, close::DONE, ""),
                    reply,
                }
            }
            Peer::Device(leaf) => self.answer_hello(first, leaf).await,
        }
    }

    /// The only exchange allowed without a client certificate, throttled per source address
    /// so tokens cannot be guessed at line rate.
    async fn answer_enroll(
        &self,
        request: Result<AgentMessage, CollectorMessage>,
        remote: IpAddr,
    ) -> CollectorMessage {
        let now = std::time::Instant::now();
        if let Some(reply) = self.throttled(remote, now) {
            return reply;
        }
        let reply = self.answer_enroll_checked(request).await;
        if matches!(
            reply,
            CollectorMessage::Error {
                code: ErrorCode::InvalidToken | ErrorCode::InvalidCsr,
                ..
            }
        ) {
            self.throttle.failed(remote, now);
        }
        reply
    }

    /// The answer for a peer without a certificate at `remote` that must wait (too many
    /// invalid enrollments from it, or from everywhere), if it must. Transports ask before
    /// they read the peer's request, so a throttled peer costs no read and no decode.
    pub(crate) fn throttled(
        &self,
        remote: IpAddr,
        now: std::time::Instant,
    ) -> Option<CollectorMessage> {
        let wait = self.throttle.blocked(remote, now)?;
        tracing::debug!(%remote, "too many invalid enrollment attempts; throttled");
        Some(CollectorMessage::Error {
            code: ErrorCode::Unavailable,
            message: "too many invalid enrollment attempts; retry later".into(),
            retry_after_ms: Some(millis(wait)),
        })
    }

    async fn answer_enroll_checked(
        &self,
        request: Result<AgentMessage, CollectorMessage>,
    ) -> CollectorMessage {
        match request {
            Ok(AgentMessage::Enroll {
                protocol_version,
                token,
                csr_pem,
                hostname,
                prior_identity,
            }) => {
                if protocol_version != PROTOCOL_VERSION {
                    unsupported_version(protocol_version)
                } else {
                    self.enroll(token, &csr_pem, &hostname, prior_identity.as_ref())
                        .await
                }
            }
            Ok(AgentMessage::Unknown) => error(ErrorCode::UnknownKind, "unknown message kind"),
            Ok(_) => error(
                ErrorCode::Unauthorized,
                "this connection has no device certificate: only enrollment is allowed; run `agent-bom-agent enroll` first",
            ),
            Err(reply) => reply,
        }
    }

    async fn enroll(
        &self,
        token: String,
        csr_pem: &str,
        hostname: &str,
        prior_identity: Option<&PriorIdentity>,
    ) -> CollectorMessage {
        // Before signing: a shed enrollment should cost as little as possible.
        let _permit = match self.reads.acquire().await {
            Ok(p) => p,
            Err(wait) => return overloaded("collector busy: too many enrollments at once", wait),
        };
        // The token first: a wrong one costs a lookup, never a signature.
        if let Err(e) = self.store.check_enrollment_token(&token).await {
            return store_error(&e);
        }
        // A proof of an earlier identity that does not hold is refused, never ignored.
        let continues = match prior_identity.map(|p| prior_identity::verify(p, csr_pem)) {
            None => None,
            Some(Ok(proven)) => Some(proven),
            Some(Err(why)) => return error(ErrorCode::Unauthorized, &why),
        };
        let agent_id = uuid::Uuid::new_v4().to_string();
        let cert = match self.ca.sign_device_csr(csr_pem, &agent_id) {
            Ok(c) => c,
            Err(e) => return error(ErrorCode::InvalidCsr, &e.to_string()),
        };
        let request = EnrollmentRequest {
            token,
            agent_id: agent_id.clone(),
            cert_fingerprint: cert.fingerprint.clone(),
            cert_not_after: cert.not_after_unix,
            hostname: truncate(hostname, MAX_HOSTNAME),
            continues,
        };
        match self.store.enroll_device(request).await {
            Ok(tenant_id) => {
                tracing::info!(%agent_id, %tenant_id, "device enrolled");
                CollectorMessage::Enrolled {
                    agent_id,
                    certificate_pem: cert.pem,
                    ca_certificate_pem: self.ca.cert_pem().to_string(),
                }
            }
            Err(e) => store_error(&e),
        }
    }

    /// The first exchange of a connection with a device certificate: `hello`, then
    /// authentication of the certificate against the store.
    async fn answer_hello(
        self: &Arc<Self>,
        request: Result<AgentMessage, CollectorMessage>,
        leaf: &CertificateDer<'static>,
    ) -> Opening<S> {
        let refuse = |reply: CollectorMessage, code| Opening::Ended {
            close: Close::after(&reply, code, "refused"),
            reply,
        };
        let Some(agent_id) = common_name(leaf) else {
            return refuse(
                error(ErrorCode::Unauthorized, "certificate has no device id"),
                close::UNAUTHORIZED,
            );
        };
        let agent_version = match request {
            Ok(AgentMessage::Hello {
                protocol_version,
                agent_version,
                ..
            }) if protocol_version == PROTOCOL_VERSION => agent_version,
            Ok(AgentMessage::Hello {
                protocol_version, ..
            }) => {
                return refuse(unsupported_version(protocol_version), close::PROTOCOL);
            }
            Ok(_) => {
                return refuse(
                    error(
                        ErrorCode::UnexpectedMessage,
                        "the first message must be hello",
                    ),
                    close::PROTOCOL,
                );
            }
            Err(reply) => return refuse(reply, close::PROTOCOL),
        };
        let _permit = match self.reads.acquire().await {
            Ok(p) => p,
            Err(wait) => {
                return refuse(
                    overloaded("collector busy: too much database work in flight", wait),
                    close::OVERLOADED,
                );
            }
        };
        match self
            .store
            .authenticate_device(&agent_id, &fingerprint(leaf))
            .await
        {
            Ok(device) => Opening::Accepted {
                welcome: CollectorMessage::Welcome {
                    protocol_version: PROTOCOL_VERSION,
                    agent_id,
                    last_applied_seq: device.last_applied_seq,
                    capabilities: self.capabilities(),
                },
                session: Session {
                    context: self.clone(),
                    device,
                    agent_version,
                    pushing: Mutex::default(),
                },
            },
            Err(e) => {
                tracing::info!(%agent_id, error = %e, "device refused");
                let code = if matches!(e, StoreError::Unavailable(_)) {
                    close::OVERLOADED
                } else {
                    close::UNAUTHORIZED
                };
                refuse(store_error(&e), code)
            }
        }
    }

    /// Optional features announced in `Welcome`: deltas only when the store can apply them.
    fn capabilities(&self) -> Vec<String> {
        let mut out = vec![capability::INVENTORY_SNAPSHOT.to_string()];
        if self.store.inventory_deltas() {
            out.push(capability::INVENTORY_DELTA.to_string());
        }
        out
    }
}

/// An authenticated device on a live connection: answers its requests. Shared by the tasks
/// serving the connection's streams.
pub(crate) struct Session<S> {
    context: Arc<Context<S>>,
    device: DeviceSession,
    agent_version: String,
    /// Commands being pushed right now (QUIC), so one the sweep finds again while the device
    /// is still answering it is not pushed twice.
    pushing: Mutex<HashSet<String>>,
}

impl<S: CollectorStore> Session<S> {
    /// The authenticated device.
    pub(crate) fn device(&self) -> &DeviceSession {
        &self.device
    }

    /// The collector's budget for the bytes of request frames, which the transports reserve
    /// from before reading a body.
    pub(crate) fn frame_budget(&self) -> &FrameBudget {
        &self.context.frames
    }

    /// Register the session as the device's live one (replacing, and so closing, any older
    /// session of the device) and return its control. Call it once the `welcome` is on its way.
    pub(crate) async fn start(&self, transport: Transport) -> Control {
        let device = &self.device;
        let liveness = &self.context.liveness;
        let (handle, commands) = liveness.connected(&device.tenant_id, &device.agent_id);
        if transport == Transport::Quic {
            // Commands left from earlier sessions go first; the store's notices and the sweep
            // add new ones as they appear. (On TLS/TCP the device's pings collect them.)
            match self.context.store.session_commands(device).await {
                Ok(left) => {
                    for c in left {
                        liveness.deliver(&device.agent_id, c);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot load pending commands; the sweep will retry")
                }
            }
        }
        Control {
            liveness: liveness.clone(),
            agent_id: device.agent_id.clone(),
            handle,
            commands,
            transport,
        }
    }

    /// Answer one request of the device (or the reply a transport made of an unreadable
    /// frame). A request that needs the store and gets no turn in its work budget in time
    /// (uploads in the writer's, the rest in the pool's) is answered `unavailable` with a
    /// retry-after.
    pub(crate) async fn answer(
        &self,
        request: Result<AgentMessage, CollectorMessage>,
    ) -> CollectorMessage {
        let budget = match &request {
            Ok(message) if is_upload(message) => Some((&self.context.uploads, UPLOADS_BUSY)),
            Ok(message) if touches_store(message) => Some((&self.context.reads, READS_BUSY)),
            _ => None,
        };
        let _permit = match budget {
            Some((budget, busy)) => match budget.acquire().await {
                Ok(p) => Some(p),
                Err(wait) => return overloaded(busy, wait),
            },
            None => None,
        };
        self.answer_now(request).await
    }

    /// Prepare to push `command` (QUIC): sign it for this device and mark it delivered. `None`
    /// when it is already being pushed on this connection, or cannot be signed.
    pub(crate) async fn push(&self, command: Command) -> Option<Push<'_, S>> {
        let id = command.command_id.clone();
        if !self.lock_pushing().insert(id.clone()) {
            return None;
        }
        // From here on, dropping the push releases the claim, whatever happens.
        let claim = Claim { session: self, id };
        let command = match self.context.ca.sign_command(&self.device.agent_id, command) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(command_id = %claim.id, error = %e, "cannot sign command; not delivered");
                return None;
            }
        };
        if let Err(e) = self
            .context
            .store
            .mark_delivered(&self.device, &claim.id)
            .await
        {
            tracing::warn!(command_id = %claim.id, error = %e, "cannot mark command delivered");
        }
        metrics::command_delivered();
        Some(Push {
            claim,
            message: CollectorMessage::Command(command),
        })
    }

    fn lock_pushing(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // A poisoned set only means a panic elsewhere while holding it; the ids are still valid.
        self.pushing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every exchange after `hello`, without the budget.
    async fn answer_now(
        &self,
        request: Result<AgentMessage, CollectorMessage>,
    ) -> CollectorMessage {
        let (store, device) = (&self.context.store, &self.device);
        match request {
            Ok(AgentMessage::InventorySnapshot { seq, inventory }) => {
                match store
                    .apply_inventory(device, &self.agent_version, seq, &inventory)
                    .await
                {
                    Ok(outcome) => {
                        tracing::debug!(agent_id = %device.agent_id, seq, ?outcome, "inventory committed");
                        metrics::upload("inventory", applied(outcome == ApplyOutcome::Applied));
                        CollectorMessage::Ack { seq }
                    }
                    Err(e) => {
                        metrics::upload("inventory", failed(&e));
                        store_error(&e)
                    }
                }
            }
            Ok(AgentMessage::InventoryDelta {
                seq,
                base_seq,
                base_hash,
                hash,
                changes,
            }) => {
                self.answer_delta(DeltaUpload {
                    seq,
                    base_seq,
                    base_hash: &base_hash,
                    hash: &hash,
                    changes: &changes,
                })
                .await
            }
            Ok(AgentMessage::ProxyEvents {
                seq,
                events,
                dropped,
            }) => {
                let admitted =
                    self.context
                        .events
                        .admit(&device.agent_id, events, std::time::Instant::now());
                let dropped = dropped.saturating_add(admitted.refused);
                match store
                    .apply_proxy_events(device, seq, &admitted.events, dropped)
                    .await
                {
                    Ok(outcome) => {
                        tracing::debug!(agent_id = %device.agent_id, seq, events = admitted.events.len(), folded = admitted.folded, refused = admitted.refused, ?outcome, "proxy events committed");
                        metrics::upload("events", applied(outcome == ApplyOutcome::Applied));
                        CollectorMessage::Ack { seq }
                    }
                    Err(e) => {
                        metrics::upload("events", failed(&e));
                        store_error(&e)
                    }
                }
            }
            Ok(AgentMessage::RenewCertificate { csr_pem }) => {
                let cert = match self.context.ca.sign_device_csr(&csr_pem, &device.agent_id) {
                    Ok(c) => c,
                    Err(e) => return error(ErrorCode::InvalidCsr, &e.to_string()),
                };
                match store
                    .stage_certificate(device, &cert.fingerprint, cert.not_after_unix)
                    .await
                {
                    Ok(()) => {
                        tracing::info!(agent_id = %device.agent_id, "device certificate renewed");
                        CollectorMessage::CertificateRenewed {
                            certificate_pem: cert.pem,
                        }
                    }
                    Err(e) => store_error(&e),
                }
            }
            Ok(AgentMessage::Ping) => self.answer_ping().await,
            Ok(AgentMessage::CommandResult {
                command_id,
                status,
                detail,
            }) => {
                let detail = detail.map(|d| truncate(&d, MAX_COMMAND_DETAIL));
                match store
                    .record_command_result(
                        device,
                        &command_id,
                        &truncate(&status, MAX_COMMAND_STATUS),
                        detail.as_deref(),
                    )
                    .await
                {
                    Ok(()) => CollectorMessage::CommandRecorded { command_id },
                    Err(e) => store_error(&e),
                }
            }
            Ok(AgentMessage::Unknown) => error(ErrorCode::UnknownKind, "unknown message kind"),
            Ok(AgentMessage::Hello { .. } | AgentMessage::Enroll { .. }) => error(
                ErrorCode::UnexpectedMessage,
                "hello and enroll are only valid as the first exchange",
            ),
            Err(reply) => reply,
        }
    }

    /// An `inventory_delta`: acknowledged when applied (or applied before), `snapshot_required`
    /// when the stored inventory is not its base.
    async fn answer_delta(&self, upload: DeltaUpload<'_>) -> CollectorMessage {
        let (seq, device) = (upload.seq, &self.device);
        match self
            .context
            .store
            .apply_inventory_delta(device, &self.agent_version, upload)
            .await
        {
            Ok(outcome @ (DeltaOutcome::Applied | DeltaOutcome::AlreadyApplied)) => {
                tracing::debug!(agent_id = %device.agent_id, seq, ?outcome, "inventory delta committed");
                metrics::upload("delta", applied(outcome == DeltaOutcome::Applied));
                CollectorMessage::Ack { seq }
            }
            Ok(DeltaOutcome::SnapshotRequired) => {
                metrics::upload("delta", "snapshot_required");
                tracing::info!(agent_id = %device.agent_id, seq, base_seq = upload.base_seq, "inventory delta against an unknown base; asking for a snapshot");
                error(
                    ErrorCode::SnapshotRequired,
                    &format!(
                        "the stored inventory is not base {}; send sequence {seq} as a full inventory_snapshot",
                        upload.base_seq
                    ),
                )
            }
            Err(e) => {
                metrics::upload("delta", failed(&e));
                store_error(&e)
            }
        }
    }

    /// A `ping`: the reply carries every command the device has not answered yet, signed and
    /// marked delivered (on TLS/TCP this is how commands reach the device).
    async fn answer_ping(&self) -> CollectorMessage {
        let (store, device) = (&self.context.store, &self.device);
        let commands = match store.session_commands(device).await {
            Ok(c) => c,
            Err(e) => return store_error(&e),
        };
        let mut signed = Vec::with_capacity(commands.len());
        for c in commands {
            match self.context.ca.sign_command(&device.agent_id, c) {
                Ok(c) => signed.push(c),
                Err(e) => {
                    tracing::error!(error = %e, "cannot sign command");
                    return CollectorMessage::Error {
                        code: ErrorCode::Internal,
                        message: "cannot sign commands".into(),
                        retry_after_ms: Some(millis(jittered(UNAVAILABLE_RETRY))),
                    };
                }
            }
        }
        for c in &signed {
            if let Err(e) = store.mark_delivered(device, &c.command_id).await {
                return store_error(&e);
            }
            metrics::command_delivered();
        }
        CollectorMessage::Pong { commands: signed }
    }
}

/// A command on its way to the device (QUIC): the transport sends [`Push::message`] on a
/// stream it opens and hands the device's answer to [`Push::answered`]. Dropping it lets the
/// command be pushed again.
pub(crate) struct Push<'a, S> {
    claim: Claim<'a, S>,
    message: CollectorMessage,
}

impl<S: CollectorStore> Push<'_, S> {
    /// The frame to send: the signed command.
    pub(crate) fn message(&self) -> &CollectorMessage {
        &self.message
    }

    /// The command's id.
    pub(crate) fn command_id(&self) -> &str {
        &self.claim.id
    }

    /// Record the device's answer (a `command_result`) and return the reply to send back.
    /// Outside the work budget: the agent does not retry an answer on a stream the collector
    /// opened, so a shed answer would only be recorded when the command is pushed again.
    pub(crate) async fn answered(&self, reply: AgentMessage) -> CollectorMessage {
        self.claim.session.answer_now(Ok(reply)).await
    }
}

/// A command id claimed in [`Session::pushing`]; released on drop.
struct Claim<'a, S> {
    session: &'a Session<S>,
    id: String,
}

impl<S> Drop for Claim<'_, S> {
    fn drop(&mut self) {
        let mut pushing = self
            .session
            .pushing
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        pushing.remove(&self.id);
    }
}

/// What the collector wants of a live session, apart from answering it. Owned by the loop
/// serving the connection; dropping it unregisters the session (if it is still the device's
/// registered one), so an ended connection never stays listed as live.
pub(crate) struct Control {
    liveness: Liveness,
    agent_id: String,
    handle: SessionHandle,
    commands: tokio::sync::mpsc::UnboundedReceiver<Command>,
    transport: Transport,
}

/// Something the collector wants of a live session.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// Push this command to the device (QUIC only).
    Push(Command),
    /// End the connection.
    Close(Close),
}

impl Control {
    /// The next thing the collector wants of the session. Cancel-safe, so a transport can
    /// wait for it beside its reads. On TLS/TCP it only ever returns [`Event::Close`]: commands
    /// found for the device meanwhile are left for its next ping to collect from the store.
    pub(crate) async fn next(&mut self) -> Event {
        loop {
            tokio::select! {
                biased;
                _ = self.handle.close.cancelled() => return Event::Close(Close::superseded()),
                command = self.commands.recv() => match command {
                    Some(c) if self.transport == Transport::Quic => return Event::Push(c),
                    Some(_) => {}
                    // The registry dropped this session's feed: it replaced or closed the
                    // session, and cancels its token as it does.
                    None => {
                        self.handle.close.cancelled().await;
                        return Event::Close(Close::superseded());
                    }
                },
            }
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.liveness.disconnected(&self.agent_id, &self.handle);
    }
}

/// What a shed request on the connection pool is told.
const READS_BUSY: &str = "collector busy: too much database work in flight";
/// What a shed upload is told.
const UPLOADS_BUSY: &str = "collector busy: too many uploads waiting for the store";

/// Whether `message` is an upload the store's group-commit writer takes (and so a turn in the
/// uploads budget, not the pool's).
fn is_upload(message: &AgentMessage) -> bool {
    matches!(
        message,
        AgentMessage::InventorySnapshot { .. }
            | AgentMessage::InventoryDelta { .. }
            | AgentMessage::ProxyEvents { .. }
    )
}

/// Whether answering `message` needs the store (and so a turn in a work budget). Kinds added
/// later count as store work unless listed here.
fn touches_store(message: &AgentMessage) -> bool {
    !matches!(
        message,
        AgentMessage::Unknown | AgentMessage::Hello { .. } | AgentMessage::Enroll { .. }
    )
}

/// The device id a certificate names (its common name).
fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    Some(cn.to_string())
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests;

/// The metrics outcome of an upload the store took.
fn applied(now: bool) -> &'static str {
    if now { "applied" } else { "replayed" }
}

/// The metrics outcome of an upload the store did not take.
fn failed(e: &StoreError) -> &'static str {
    if matches!(e, StoreError::Unavailable(_)) {
        "unavailable"
    } else {
        "refused"
    }
}
