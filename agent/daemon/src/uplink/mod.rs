//! The uplink: enrollment and the connected session that ships inventory to the collector.
//!
//! Delivery is at-least-once with idempotent apply: every upload carries a per-device sequence,
//! the sequence and content hash are persisted before sending, and progress is recorded only
//! after the collector's `Ack`, which it sends after its database commit.
//!
//! [`transport`] is one connection (QUIC, or TLS/TCP as a fallback) that carries it; [`error`]
//! is what either can fail with.

pub mod error;
pub mod transport;

use std::sync::Arc;
use std::time::Duration;

use agent_bom_protocol::clock::now_ms;
use agent_bom_protocol::{
    AgentMessage, CollectorMessage, ErrorCode, Inventory, PROTOCOL_VERSION, capability, read_frame,
    write_frame,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use crate::commands::{self, FollowUp};
use crate::inventory_upload::{self, DeltaSession};
use crate::settings::RemoteSettings;
use crate::spool::EventSpool;
use crate::tls::{self, PinnedCaVerifier};
use agent_bom_discovery::{self, ScanOptions};
use agent_bom_state::dir::{AckedInventory, AgentRecord, StateDir, StateError, UplinkState};
pub use error::UplinkError;
use transport::Link;

/// First reconnect delay cap; doubles per failure up to the configured maximum.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// First delay after the collector turned the connection away for load without a retry-after;
/// doubles per failure up to the configured maximum.
const OVERLOAD_BASE: Duration = Duration::from_secs(2);

/// What `enroll` needs.
#[derive(Debug, Clone)]
pub struct EnrollOptions {
    /// Collector `HOST:PORT`.
    pub collector: String,
    /// Enrollment token.
    pub token: String,
    /// Expected CA fingerprint (hex SHA-256). [`enroll`] refuses to run without one;
    /// [`enroll_trusting_first_use`] is the explicit way to go without.
    pub ca_pin: Option<String>,
    /// Replace an existing identity.
    pub force: bool,
}

/// Exchange an enrollment token for a device identity and store it in `state`. The collector's
/// CA must match `options.ca_pin`; without a pin nothing is sent ([`UplinkError::NoCaPin`]):
/// the token would go to, and the identity trust, whoever answers at the address.
pub async fn enroll(state: &StateDir, options: &EnrollOptions) -> Result<AgentRecord, UplinkError> {
    if options.ca_pin.is_none() {
        return Err(UplinkError::NoCaPin);
    }
    enroll_with(state, options).await
}

/// [`enroll`] for an operator who chose trust on first use (`--trust-on-first-use`): with a
/// pin it is checked as usual; without one the CA the collector presents is trusted and pinned
/// from then on.
pub async fn enroll_trusting_first_use(
    state: &StateDir,
    options: &EnrollOptions,
) -> Result<AgentRecord, UplinkError> {
    if options.ca_pin.is_none() {
        tracing::warn!(
            "--trust-on-first-use: trusting the CA the collector presents and pinning it from now on"
        );
    }
    enroll_with(state, options).await
}

async fn enroll_with(
    state: &StateDir,
    options: &EnrollOptions,
) -> Result<AgentRecord, UplinkError> {
    if !options.force && state.is_enrolled() {
        let record = state.record()?;
        return Err(UplinkError::AlreadyEnrolled {
            agent_id: record.agent_id,
            dir: state.path().display().to_string(),
        });
    }
    let pin = options
        .ca_pin
        .as_deref()
        .map(tls::normalize_pin)
        .transpose()
        .map_err(UplinkError::Tls)?;
    let key = rcgen::KeyPair::generate().map_err(|e| UplinkError::Tls(e.to_string()))?;
    let hostname = agent_bom_discovery::host::hostname();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, hostname.clone());
    let csr_pem = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|e| UplinkError::Tls(e.to_string()))?;

    let prior_identity = pin
        .as_deref()
        .and_then(|pin| prior_identity_proof(state, pin, &csr_pem));
    let verifier = Arc::new(PinnedCaVerifier::new(pin.clone()));
    let config = tls::enrollment_config(verifier.clone());
    let link = Link::open(&options.collector, config, transport::DEFAULT_QUIC_ATTEMPT).await?;
    let reply = link
        .exchange(&AgentMessage::Enroll {
            protocol_version: PROTOCOL_VERSION,
            token: options.token.clone(),
            csr_pem,
            hostname,
            prior_identity,
        })
        .await;
    link.close().await;
    match reply? {
        CollectorMessage::Enrolled {
            agent_id,
            certificate_pem,
            ca_certificate_pem,
        } => {
            let ca_der = CertificateDer::from_pem_slice(ca_certificate_pem.as_bytes())
                .map_err(|e| UplinkError::Protocol(format!("collector sent an invalid CA: {e}")))?;
            let ca_pin = tls::fingerprint(&ca_der);
            let handshake_ca = verifier.matched_ca().map(|c| tls::fingerprint(&c));
            if handshake_ca.as_deref() != Some(ca_pin.as_str())
                || pin.as_ref().is_some_and(|p| p != &ca_pin)
            {
                return Err(UplinkError::Protocol(
                    "the CA in the enrollment reply differs from the one verified in the handshake"
                        .into(),
                ));
            }
            let record = AgentRecord {
                agent_id,
                collector: options.collector.clone(),
                enrolled_at_ms: now_ms(),
                ca_pin,
            };
            state.save_identity(
                &record,
                &key.serialize_pem(),
                &certificate_pem,
                &ca_certificate_pem,
            )?;
            Ok(record)
        }
        CollectorMessage::Error {
            code,
            message,
            retry_after_ms,
        } => Err(UplinkError::Refused {
            code,
            message,
            retry_after: retry_after_ms.map(Duration::from_millis),
        }),
        other => Err(UplinkError::Protocol(format!(
            "unexpected reply to enroll: {other:?}"
        ))),
    }
}

/// Proof that this device holds the identity already in `state` (re-enrolling with `--force`:
/// a reinstall that kept the state directory, or a certificate that expired), for a collector
/// of the same deployment (the pinned CA is the one the identity was issued under): the
/// collector then retires that identity as replaced by the new one. `None` without an identity,
/// for another deployment, or when the identity cannot be read (the device then enrolls as new).
fn prior_identity_proof(
    state: &StateDir,
    pin: &str,
    csr_pem: &str,
) -> Option<agent_bom_protocol::prior_identity::PriorIdentity> {
    use rcgen::SigningKey;
    if !state.is_enrolled() {
        return None;
    }
    let record = state.record().ok()?;
    if tls::normalize_pin(&record.ca_pin).ok()?.as_str() != pin {
        return None;
    }
    let proof = state
        .identity_pems()
        .ok()
        .and_then(|(key_pem, cert_pem, _)| {
            let key = rcgen::KeyPair::from_pem(&key_pem).ok()?;
            let signature = key
                .sign(&agent_bom_protocol::prior_identity::statement(csr_pem))
                .ok()?;
            Some(agent_bom_protocol::prior_identity::PriorIdentity {
                certificate_pem: cert_pem,
                signature: hex::encode(signature),
            })
        });
    if proof.is_none() {
        tracing::warn!(
            "the identity in the state directory cannot be read; enrolling as a new device"
        );
    }
    proof
}

/// What `run` needs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// What to scan.
    pub scan: ScanOptions,
    /// How often the inventory is rescanned (a changed inventory is uploaded).
    pub rescan_interval: Duration,
    /// Upper bound of the reconnect delay.
    pub max_backoff: Duration,
    /// How long a QUIC handshake may take before falling back to TLS over TCP.
    pub quic_attempt: Duration,
    /// Renew the device certificate when it expires sooner than this.
    pub renew_before: Duration,
    /// Proxy audit events to ship, and the signal that new ones were spooled.
    pub events: Option<(Arc<EventSpool>, Arc<tokio::sync::Notify>)>,
    /// Woken by the file watcher when a config changed, so the change ships at once instead of
    /// at the next periodic rescan.
    pub changes: Option<Arc<tokio::sync::Notify>>,
    /// Collector to connect to instead of the one enrolled with (a managed setting that moved).
    pub collector: Option<String>,
    /// Owner, environment and tags reported with the host facts.
    pub labels: HostLabels,
}

/// What the endpoint's configuration says about it, reported with the host facts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostLabels {
    /// Owner.
    pub owner: Option<String>,
    /// Environment.
    pub environment: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
}

impl HostLabels {
    /// Put the labels on `host`.
    pub fn apply(&self, host: &mut agent_bom_protocol::HostFacts) {
        host.owner = self.owner.clone();
        host.environment = self.environment.clone();
        host.tags = self.tags.clone();
    }
}

/// Connect, upload and stay connected until `shutdown`, reconnecting with capped exponential
/// backoff and full jitter. Returns only on shutdown or when the identity cannot be loaded.
pub async fn run(
    state: StateDir,
    options: RunOptions,
    shutdown: CancellationToken,
) -> Result<(), UplinkError> {
    run_with_updater(state, options, None, shutdown).await
}

/// [`run`] with a self-updater: `update_available` offers of complete builds are installed
/// ([`crate::update`]) instead of only recorded.
pub async fn run_with_updater(
    state: StateDir,
    options: RunOptions,
    updater: Option<Arc<crate::update::Updater>>,
    shutdown: CancellationToken,
) -> Result<(), UplinkError> {
    let options = Options {
        run: options,
        updater,
    };
    let record = state.record()?;
    // Fail early on a broken identity; each session reloads it (a renewal replaces it).
    device_tls(&state)?;
    let mut attempt: u32 = 0;
    while !shutdown.is_cancelled() {
        set_connection(&state, "connecting", None);
        let result = match device_tls(&state) {
            Ok(config) => {
                session(&state, &record, &config, &options, &shutdown, &mut attempt).await
            }
            Err(e) => Err(e),
        };
        let delay = match result {
            Ok(()) => break,
            Err(e) => {
                let refused = matches!(
                    &e,
                    UplinkError::Refused {
                        code: ErrorCode::Unauthorized,
                        ..
                    }
                );
                tracing::warn!(error = %e, "uplink session ended");
                set_connection(
                    &state,
                    if refused { "refused" } else { "backoff" },
                    Some(e.to_string()),
                );
                match &e {
                    // The collector's word, bounded by our own cap so that no answer can park
                    // the agent for longer than an operator allows.
                    UplinkError::Refused {
                        retry_after: Some(d),
                        ..
                    } => (*d).min(options.max_backoff),
                    // A revoked or unknown device waits the longest: retrying fast cannot help.
                    _ if refused => options.max_backoff,
                    // Turned away for load with no retry-after (refused before the handshake,
                    // collector shutting down): never come straight back.
                    UplinkError::Refused {
                        code: ErrorCode::Unavailable,
                        ..
                    } => overload_delay(attempt, options.max_backoff),
                    _ => backoff_delay(attempt, options.max_backoff),
                }
            }
        };
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    set_connection(&state, "stopped", None);
    Ok(())
}

/// The run options with the updater beside them.
struct Options {
    run: RunOptions,
    updater: Option<Arc<crate::update::Updater>>,
}

impl std::ops::Deref for Options {
    type Target = RunOptions;
    fn deref(&self) -> &RunOptions {
        &self.run
    }
}

async fn session(
    state: &StateDir,
    record: &AgentRecord,
    config: &rustls::ClientConfig,
    options: &Options,
    shutdown: &CancellationToken,
    attempt: &mut u32,
) -> Result<(), UplinkError> {
    let link = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        r = Link::open(options.collector.as_deref().unwrap_or(&record.collector), config.clone(), options.quic_attempt) => r?,
    };
    let hello = AgentMessage::Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_version: crate::agent_version().to_string(),
        capabilities: vec![
            capability::INVENTORY_SNAPSHOT.into(),
            capability::INVENTORY_DELTA.into(),
        ],
    };
    let (last_applied, mut deltas) = match link.exchange(&hello).await? {
        CollectorMessage::Welcome {
            last_applied_seq,
            capabilities,
            ..
        } => (last_applied_seq, DeltaSession::from_welcome(&capabilities)),
        other => return Err(reply_error(other)),
    };
    *attempt = 0;
    // Welcomed: a build swapped in by self-update has proven it can reconnect.
    crate::update::state::confirm(state.path(), crate::agent_version());
    renew_if_due(state, &link, options.renew_before).await;
    let mut uplink = state.uplink()?;
    if let Some(applied) = last_applied {
        uplink.next_seq = uplink.next_seq.max(applied + 1);
    }
    uplink.next_seq = uplink.next_seq.max(1);
    uplink.connection = "connected".into();
    uplink.transport = Some(link.transport().into());
    uplink.last_error = None;
    uplink.updated_at_ms = now_ms();
    state.save_uplink(&uplink)?;
    tracing::info!(agent_id = %record.agent_id, collector = %record.collector, transport = link.transport(), "connected");
    let on_tcp = matches!(link, Link::Tcp { .. });
    let retry_quic_at = tokio::time::Instant::now() + transport::QUIC_RETRY_AFTER;

    let result = async {
        let mut next_rescan = tokio::time::Instant::now();
        let mut reconnect = false;
        let mut commands_pushed = link.command_feed();
        let mut ship_events = options.events.is_some();
        // A deadline, not a per-iteration timer: rescans and file events must not postpone it.
        let mut next_ping = tokio::time::Instant::now() + transport::TCP_PING_INTERVAL;
        loop {
            if reconnect {
                return Err(UplinkError::Reconnect("the device credential was rotated"));
            }
            if tokio::time::Instant::now() >= next_rescan {
                let mut inventory = scan_now(options.scan.clone()).await;
                options.labels.apply(&mut inventory.host);
                let hash = inventory_hash(&inventory);
                if uplink.last_inventory_hash.as_deref() != Some(hash.as_str()) {
                    upload(state, &link, &mut uplink, inventory, hash, &mut deltas).await?;
                }
                next_rescan = tokio::time::Instant::now() + rescan_interval(state, options);
            }
            if ship_events {
                if let Some((spool, _)) = &options.events {
                    ship(&link, spool).await?;
                }
                ship_events = false;
            }
            let events_ready = async {
                match &options.events {
                    Some((_, ready)) => ready.notified().await,
                    None => std::future::pending().await,
                }
            };
            let changed = async {
                match &options.changes {
                    Some(n) => n.notified().await,
                    None => std::future::pending().await,
                }
            };
            // TLS over TCP has no transport keep-alive: ping, and go back to QUIC after a while.
            let ping = async {
                if on_tcp {
                    tokio::time::sleep_until(next_ping).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            let late_answers = async {
                match &options.updater {
                    Some(u) => u.answers_ready().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = late_answers => {
                    if let Some(updater) = &options.updater {
                        for answer in updater.take_answers() {
                            let result = AgentMessage::CommandResult {
                                command_id: answer.command_id,
                                status: answer.status.to_string(),
                                detail: Some(answer.detail),
                            };
                            match link.exchange(&result).await? {
                                CollectorMessage::CommandRecorded { .. } => {}
                                other => return Err(reply_error(other)),
                            }
                        }
                    }
                }
                reason = link.closed() => return Err(UplinkError::Connect {
                    addr: record.collector.clone(),
                    message: format!("connection lost: {reason}"),
                }),
                _ = tokio::time::sleep_until(next_rescan) => {}
                _ = changed => next_rescan = tokio::time::Instant::now(),
                _ = events_ready => ship_events = true,
                // A closed feed (TLS/TCP, or the connection ending) disables this branch for
                // the iteration instead of spinning on `None`.
                Some((command, mut send, mut recv)) = commands_pushed.recv() => {
                    // No answer while the outcome is unknown: the collector sends the command
                    // again on the next session.
                    if let Some(result) = run_command(state, record, &link, options, command, &mut next_rescan, &mut reconnect).await {
                        write_frame(&mut send, &result).await?;
                        let _: Result<CollectorMessage, _> = read_frame(&mut recv).await;
                    }
                    let _ = send.finish();
                }
                _ = ping => {
                    next_ping = tokio::time::Instant::now() + transport::TCP_PING_INTERVAL;
                    let commands = match link.exchange(&AgentMessage::Ping).await? {
                        CollectorMessage::Pong { commands } => commands,
                        other => return Err(reply_error(other)),
                    };
                    for command in commands {
                        let Some(result) = run_command(state, record, &link, options, command, &mut next_rescan, &mut reconnect).await else {
                            continue;
                        };
                        match link.exchange(&result).await? {
                            CollectorMessage::CommandRecorded { .. } => {}
                            other => return Err(reply_error(other)),
                        }
                    }
                    if tokio::time::Instant::now() >= retry_quic_at {
                        return Err(UplinkError::RetryQuic);
                    }
                }
            }
        }
    }
    .await;
    let result = result.map_err(|e| link.explain(e));
    link.close().await;
    result
}

async fn upload(
    state: &StateDir,
    link: &Link,
    uplink: &mut UplinkState,
    inventory: Inventory,
    hash: String,
    deltas: &mut DeltaSession,
) -> Result<(), UplinkError> {
    let seq = match &uplink.pending {
        Some((seq, pending_hash)) if *pending_hash == hash => *seq,
        _ => {
            let seq = uplink.next_seq.max(1);
            uplink.next_seq = seq + 1;
            uplink.pending = Some((seq, hash.clone()));
            state.save_uplink(uplink)?;
            seq
        }
    };
    let base = if deltas.enabled() {
        delta_base(state)
    } else {
        None
    };
    let delta = base
        .as_ref()
        .and_then(|b| inventory_upload::delta(seq, &inventory, b).map(|m| (m, b.seq)));
    let (reply, as_delta) = match delta {
        Some((message, base_seq)) => match link.exchange(&message).await? {
            CollectorMessage::Error {
                code: ErrorCode::SnapshotRequired,
                message,
                ..
            } => {
                // The collector does not hold our base: the same sequence, in full, at once.
                uplink.snapshots_required += 1;
                if deltas.refused() {
                    tracing::warn!(
                        base_seq,
                        "collector refused deltas twice in a row; sending snapshots until the next connection"
                    );
                }
                tracing::info!(seq, base_seq, reason = %message, "collector asked for a full snapshot");
                let snapshot = inventory_upload::snapshot(seq, &inventory);
                (link.exchange(&snapshot).await?, false)
            }
            other => (other, true),
        },
        None => (
            link.exchange(&inventory_upload::snapshot(seq, &inventory))
                .await?,
            false,
        ),
    };
    match reply {
        CollectorMessage::Ack { seq: acked } if acked == seq => {
            // The new base first: if the agent dies before uplink.json records the ack, the
            // base is still the collector's state and the next delta applies.
            let acked_inventory = AckedInventory {
                seq,
                hash: inventory.content_hash(),
                inventory,
            };
            if let Err(e) = state.save_acked_inventory(&acked_inventory) {
                // The older base stays; the collector will ask for a snapshot.
                tracing::warn!(error = %e, "cannot record the acknowledged inventory");
            }
            if as_delta {
                deltas.delta_acknowledged();
                uplink.deltas_acked += 1;
            } else {
                uplink.snapshots_acked += 1;
            }
            uplink.pending = None;
            uplink.last_ack_seq = Some(seq);
            uplink.last_ack_at_ms = Some(now_ms());
            uplink.last_inventory_hash = Some(hash);
            uplink.updated_at_ms = now_ms();
            state.save_uplink(uplink)?;
            tracing::info!(seq, delta = as_delta, "inventory acknowledged");
            Ok(())
        }
        other => Err(reply_error(other)),
    }
}

/// The last acknowledged inventory, if it can be read; a missing or unreadable one means the
/// next upload is a full snapshot.
fn delta_base(state: &StateDir) -> Option<AckedInventory> {
    match state.acked_inventory() {
        Ok(base) => base,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the last acknowledged inventory; sending a snapshot");
            None
        }
    }
}

/// Default of [`RunOptions::renew_before`]: a third of the 90-day device certificate.
pub const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Renew the device certificate over the connection when it is due. Failures are logged and
/// retried on the next session; the current certificate stays valid meanwhile.
async fn renew_if_due(state: &StateDir, link: &Link, renew_before: Duration) {
    let due = state.certificate_not_after().is_none_or(|not_after| {
        let now = now_ms() / 1000;
        not_after - now < i64::try_from(renew_before.as_secs()).unwrap_or(i64::MAX)
    });
    if !due {
        return;
    }
    match renew(state, link).await {
        Ok(()) => tracing::info!("device certificate renewed; used from the next connection"),
        Err(e) => tracing::warn!(error = %e, "certificate renewal failed"),
    }
}

/// Get a certificate for a new key pair over the connection and stage both; the next
/// connection uses them, after which the collector refuses the old certificate.
async fn renew(state: &StateDir, link: &Link) -> Result<(), String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        agent_bom_discovery::host::hostname(),
    );
    let csr_pem = params
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .map_err(|e| e.to_string())?;
    match link
        .exchange(&AgentMessage::RenewCertificate { csr_pem })
        .await
    {
        Ok(CollectorMessage::CertificateRenewed { certificate_pem }) => state
            .replace_certificate(&key.serialize_pem(), &certificate_pem)
            .map_err(|e| format!("cannot store the renewed certificate: {e}")),
        Ok(other) => Err(format!("renewal refused: {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Apply one command and carry out its follow-up; returns the result to send back, or `None`
/// while its outcome is not known (a self-update running). Sets `reconnect` when the session
/// must end after the answer (a rotated credential).
async fn run_command(
    state: &StateDir,
    record: &AgentRecord,
    link: &Link,
    options: &Options,
    command: agent_bom_protocol::Command,
    next_rescan: &mut tokio::time::Instant,
    reconnect: &mut bool,
) -> Option<AgentMessage> {
    let (options, updater) = (&options.run, options.updater.as_ref());
    let ctx = commands::Context {
        state,
        agent_id: &record.agent_id,
        scan: &options.scan,
        updater,
    };
    let mut outcome = commands::apply(ctx, &command);
    if outcome.status == commands::IN_PROGRESS {
        return None;
    }
    match outcome.follow_up {
        FollowUp::None => {}
        FollowUp::Rescan => *next_rescan = tokio::time::Instant::now(),
        FollowUp::Settings => {
            *next_rescan = tokio::time::Instant::now() + rescan_interval(state, options);
        }
        FollowUp::RotateCredential => match renew(state, link).await {
            Ok(()) => {
                tracing::info!("device credential rotated; reconnecting with it");
                outcome.detail =
                    "new key pair and certificate; in use from the reconnect that follows".into();
                *reconnect = true;
            }
            Err(e) => {
                outcome.status = "failed";
                outcome.detail = format!("rotation failed, the current credential stays: {e}");
            }
        },
    }
    Some(AgentMessage::CommandResult {
        command_id: command.command_id,
        status: outcome.status.to_string(),
        detail: Some(outcome.detail),
    })
}

/// The rescan interval in force: the control plane's setting, else the local one.
fn rescan_interval(state: &StateDir, options: &RunOptions) -> Duration {
    RemoteSettings::load(state.path()).rescan_interval(options.rescan_interval)
}

/// Ship every spooled event batch; each leaves the spool only after its acknowledgement.
async fn ship(link: &Link, spool: &Arc<EventSpool>) -> Result<(), UplinkError> {
    loop {
        let s = spool.clone();
        let batch = tokio::task::spawn_blocking(move || s.next_batch())
            .await
            .map_err(|e| UplinkError::Protocol(e.to_string()))?
            .map_err(|e| UplinkError::Protocol(format!("event spool: {e}")))?;
        let Some(batch) = batch else { return Ok(()) };
        let seq = batch.seq;
        let n = batch.events.len();
        let message = AgentMessage::ProxyEvents {
            seq,
            events: batch.events,
            dropped: batch.dropped,
        };
        match link.exchange(&message).await? {
            CollectorMessage::Ack { seq: acked } if acked == seq => {
                let s = spool.clone();
                tokio::task::spawn_blocking(move || s.acked(seq))
                    .await
                    .map_err(|e| UplinkError::Protocol(e.to_string()))?
                    .map_err(|e| UplinkError::Protocol(format!("event spool: {e}")))?;
                tracing::debug!(seq, events = n, "proxy events acknowledged");
            }
            other => return Err(reply_error(other)),
        }
    }
}

fn reply_error(reply: CollectorMessage) -> UplinkError {
    match reply {
        CollectorMessage::Error {
            code,
            message,
            retry_after_ms,
        } => UplinkError::Refused {
            code,
            message,
            retry_after: retry_after_ms.map(Duration::from_millis),
        },
        other => UplinkError::Protocol(format!("unexpected reply: {other:?}")),
    }
}

/// Scan off the async runtime: discovery does blocking file I/O.
pub async fn scan_now(options: ScanOptions) -> Inventory {
    tokio::task::spawn_blocking(move || {
        let mut inventory = agent_bom_discovery::scan(&options);
        inventory.host = agent_bom_discovery::host::collect(crate::agent_version());
        inventory
    })
    .await
    .unwrap_or_default()
}

/// Content hash of an inventory, ignoring facts that change on every scan (uptime).
pub fn inventory_hash(inventory: &Inventory) -> String {
    let mut stable = inventory.clone();
    stable.host.uptime_secs = None;
    let bytes = serde_json::to_vec(&stable).unwrap_or_default();
    tls::fingerprint(&bytes)
}

/// TLS client config of an enrolled device from its state directory.
pub fn device_tls(state: &StateDir) -> Result<rustls::ClientConfig, UplinkError> {
    let (key_pem, cert_pem, ca_pem) = state.identity_pems()?;
    let corrupt = |what: &str, e: &dyn std::fmt::Display| {
        UplinkError::State(StateError::Corrupt {
            path: state.path().join(what),
            message: e.to_string(),
        })
    };
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| corrupt("identity.key", &e))?;
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| corrupt("identity.crt", &e))?;
    let ca =
        CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|e| corrupt("ca.crt", &e))?;
    tls::device_config(ca, cert, key).map_err(|e| UplinkError::Tls(e.to_string()))
}

/// Open a QUIC connection to `addr` with the given TLS config (server name
/// [`COLLECTOR_SERVER_NAME`]). The endpoint must outlive the connection.
pub async fn connect(
    addr: &str,
    tls_config: rustls::ClientConfig,
) -> Result<(quinn::Endpoint, quinn::Connection), UplinkError> {
    transport::connect_quic(addr, tls_config, transport::EXCHANGE_TIMEOUT).await
}

/// One request/response exchange on a new bidirectional QUIC stream.
pub async fn exchange(
    conn: &quinn::Connection,
    message: &AgentMessage,
) -> Result<CollectorMessage, UplinkError> {
    transport::exchange_quic(conn, message).await
}

/// Capped exponential backoff with full jitter: uniform in `[0, min(cap, base * 2^attempt)]`.
pub fn backoff_delay(attempt: u32, cap: Duration) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(2u32.saturating_pow(attempt.min(20)))
        .min(cap);
    ceiling.mul_f64(unit_random())
}

/// Delay after the collector turned the connection away for load without a retry-after:
/// uniform in `[c / 2, c]` with `c = min(cap, 2 s × 2^attempt)`. Unlike full jitter it never
/// picks (nearly) zero, so a refused agent cannot come straight back, while the spread still keeps
/// a refused crowd from returning together.
pub fn overload_delay(attempt: u32, cap: Duration) -> Duration {
    let ceiling = OVERLOAD_BASE
        .saturating_mul(2u32.saturating_pow(attempt.min(20)))
        .min(cap);
    ceiling / 2 + (ceiling / 2).mul_f64(unit_random())
}

/// Uniform in `[0, 1)`.
fn unit_random() -> f64 {
    let mut bytes = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

fn set_connection(state: &StateDir, connection: &str, error: Option<String>) {
    if let Ok(mut uplink) = state.uplink() {
        uplink.connection = connection.to_string();
        if error.is_some() {
            uplink.last_error = error;
        }
        uplink.updated_at_ms = now_ms();
        if let Err(e) = state.save_uplink(&uplink) {
            tracing::warn!(error = %e, "cannot record uplink state");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        let cap = Duration::from_secs(60);
        for attempt in 0..40 {
            let d = backoff_delay(attempt, cap);
            assert!(d <= cap);
            assert!(d <= BACKOFF_BASE.saturating_mul(2u32.saturating_pow(attempt.min(20))));
        }
        let samples: std::collections::HashSet<_> =
            (0..20).map(|_| backoff_delay(10, cap)).collect();
        assert!(samples.len() > 1, "no jitter");
    }

    #[test]
    fn overload_delay_has_a_floor_and_grows() {
        let cap = Duration::from_secs(300);
        for attempt in 0..40 {
            let ceiling = OVERLOAD_BASE
                .saturating_mul(2u32.saturating_pow(attempt.min(20)))
                .min(cap);
            let d = overload_delay(attempt, cap);
            assert!(d >= ceiling / 2 && d <= ceiling, "{attempt}: {d:?}");
        }
        assert!(overload_delay(0, cap) >= Duration::from_secs(1));
        assert!(overload_delay(3, cap) >= Duration::from_secs(8));
        let samples: std::collections::HashSet<_> =
            (0..20).map(|_| overload_delay(2, cap)).collect();
        assert!(samples.len() > 1, "no jitter");
    }

    #[test]
    fn hash_ignores_uptime_but_not_servers() {
        let mut a = Inventory::default();
        a.host.uptime_secs = Some(1);
        let mut b = a.clone();
        b.host.uptime_secs = Some(2);
        assert_eq!(inventory_hash(&a), inventory_hash(&b));
        b.servers.push(Default::default());
        assert_ne!(inventory_hash(&a), inventory_hash(&b));
    }
}
