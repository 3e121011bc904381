//! The daemon's intake of proxy audit events: the proxies' Unix socket in the state directory,
//! and their fallback spool file (written while no daemon listened), both appended to the
//! durable [`EventSpool`] that the uplink ships. A proxy's batch is acknowledged only after
//! that fsynced append; a drained fallback batch that cannot be stored is put back.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agent_bom_protocol::ProxyEvent;
use tokio::sync::Notify;
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;

use crate::spool::EventSpool;
use crate::user_share::SharedUser;
use agent_bom_proxy::audit::{self, Handoff};
use agent_bom_state::layout::PROXY_SPOOL_FILE;
// The audit sockets are Unix sockets.
#[cfg(unix)]
use agent_bom_state::layout::AUDIT_SOCKET_FILE;

/// How often the proxies' fallback spool file is drained.
const DRAIN_INTERVAL: Duration = Duration::from_secs(30);

/// Open the event spool in `state_dir` and start the intake into it: what
/// [`crate::uplink::RunOptions::events`] takes.
pub fn start(
    state_dir: &Path,
    shutdown: CancellationToken,
) -> std::io::Result<(Arc<EventSpool>, Arc<Notify>)> {
    start_linked(state_dir, &[], shutdown)
}

/// [`start`], plus a socket and a fallback-spool drain in the user share of each user in
/// `links` (see [`crate::user_share`]), all feeding the one durable spool.
pub fn start_linked(
    state_dir: &Path,
    links: &[SharedUser],
    shutdown: CancellationToken,
) -> std::io::Result<(Arc<EventSpool>, Arc<Notify>)> {
    let spool = Arc::new(EventSpool::open(
        state_dir,
        crate::spool::DEFAULT_EVENT_CAP,
    )?);
    let ready = Arc::new(Notify::new());
    spawn(state_dir, links, spool.clone(), ready.clone(), shutdown)?;
    Ok((spool, ready))
}

/// Start the intake; `ready` is signalled whenever events were spooled.
pub fn spawn(
    state_dir: &Path,
    links: &[SharedUser],
    spool: Arc<EventSpool>,
    ready: Arc<Notify>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Handoff>(1024);
    #[cfg(unix)]
    {
        let listener = audit::AuditListener::bind(&state_dir.join(AUDIT_SOCKET_FILE))?;
        tokio::spawn(listener.run(tx.clone(), shutdown.clone()));
        for user in links {
            // One user's socket failing must not cost the others theirs.
            match audit::AuditListener::bind_for_user(
                &user.dir.join(AUDIT_SOCKET_FILE),
                user.uid,
                user.gid,
            ) {
                Ok(l) => {
                    tokio::spawn(l.run(tx.clone(), shutdown.clone()));
                }
                Err(e) => {
                    tracing::warn!(dir = %user.dir.display(), error = %e, "cannot open a user's audit socket")
                }
            }
        }
    }
    // Events drained but not stored go back to the daemon's own fallback spool, never into a
    // directory a user controls.
    let own = state_dir.join(PROXY_SPOOL_FILE);
    let fallbacks: Vec<_> = std::iter::once(own.clone())
        .chain(
            links
                .iter()
                .map(|u| audit::AuditConfig::in_user_share(&u.dir).spool),
        )
        .collect();
    for fallback in fallbacks {
        spawn_drain(fallback, own.clone(), tx.clone(), shutdown.clone());
    }
    drop(tx);
    tokio::spawn(async move {
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => return,
                h = rx.recv() => match h { Some(h) => h, None => return },
            };
            let mut events: Vec<ProxyEvent> = first.events;
            let mut answers = vec![first.persisted];
            while events.len() < crate::spool::BATCH_EVENTS {
                match rx.try_recv() {
                    Ok(h) => {
                        events.extend(h.events);
                        answers.push(h.persisted);
                    }
                    Err(_) => break,
                }
            }
            let spool = spool.clone();
            tracing::debug!(events = events.len(), "spooling proxy events");
            // Proxies get their acknowledgement only after this fsynced append.
            let stored = match tokio::task::spawn_blocking(move || spool.append(&events)).await {
                Ok(Ok(())) => {
                    ready.notify_one();
                    true
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot spool proxy events");
                    false
                }
                Err(e) => {
                    tracing::warn!(error = %e, "event spool task failed");
                    false
                }
            };
            for a in answers {
                let _ = a.send(stored);
            }
        }
    });
    Ok(())
}

/// Drain one fallback spool file into the intake every [`DRAIN_INTERVAL`]; what cannot be
/// stored is put back into `respool_to`.
fn spawn_drain(
    fallback: PathBuf,
    respool_to: PathBuf,
    drain_tx: Sender<Handoff>,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            let path = fallback.clone();
            if let Ok(Ok(events)) =
                tokio::task::spawn_blocking(move || audit::drain_spool(&path)).await
                && !events.is_empty()
            {
                let (persisted, answer) = tokio::sync::oneshot::channel();
                let handoff = Handoff {
                    events: events.clone(),
                    persisted,
                };
                if drain_tx.send(handoff).await.is_err() {
                    return;
                }
                if !answer.await.unwrap_or(false) {
                    // Not stored: put them back for the next drain.
                    audit::respool(&respool_to, &events);
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(DRAIN_INTERVAL) => {}
            }
        }
    });
}
