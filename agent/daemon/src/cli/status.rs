//! `status`: identity, uplink, spool, policy and command state, read from the state directory.

use std::path::PathBuf;

use agent_bom_state::StateDir;
use agent_bom_state::layout::default_state_dir;
use anyhow::Result;

/// Print the status, as text or JSON.
pub(crate) fn status(state_dir: Option<PathBuf>, json: bool) -> Result<()> {
    let state = StateDir::open(&state_dir.unwrap_or_else(default_state_dir))?;
    let record = state.record()?;
    let uplink = state.uplink()?;
    let cert_not_after = state.certificate_not_after();
    let spool = agent_bom_agent::spool::EventSpool::open(
        state.path(),
        agent_bom_agent::spool::DEFAULT_EVENT_CAP,
    )?;
    let (spool_bytes, dropped) = (spool.size(), spool.dropped());
    let quarantined = agent_bom_state::quarantine::is_quarantined(state.path());
    // The policy is reported as the proxies would load it: verified, or why not.
    let (policy_revision, policy_problem) =
        match agent_bom_state::policy_cache::load_verified(state.path()) {
            Ok(v) => (v.map(|v| v.revision), None),
            Err(e) => (None, Some(e)),
        };
    let update = agent_bom_agent::commands::update_notice_version(state.path());
    let update_record = agent_bom_agent::update::state::UpdateRecord::load(state.path());
    let remote = agent_bom_agent::settings::RemoteSettings::load(state.path());
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "identity": record,
                "uplink": uplink,
                "certificate_not_after": cert_not_after,
                "event_spool": {"bytes": spool_bytes, "dropped": dropped},
                "quarantined": quarantined,
                "policy": {"applied_revision": policy_revision, "problem": policy_problem},
                "update_available": update,
                "update": update_record,
                "control_plane_settings": remote,
            }))?
        );
    } else {
        println!("agent id:     {}", record.agent_id);
        println!("collector:    {}", record.collector);
        println!("ca pin:       {}", record.ca_pin);
        println!(
            "connection:   {}{}",
            if uplink.connection.is_empty() {
                "never connected"
            } else {
                &uplink.connection
            },
            uplink
                .transport
                .as_deref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default()
        );
        println!(
            "last ack:     {}",
            uplink
                .last_ack_seq
                .map_or("none".to_string(), |s| format!("seq {s}"))
        );
        if let Some(e) = &uplink.last_error {
            println!("last error:   {e}");
        }
        println!("event spool:  {spool_bytes} bytes waiting, {dropped} dropped");
        println!(
            "certificate:  {}",
            cert_not_after.map_or("unreadable".to_string(), |t| format!(
                "valid until {}",
                time_rfc3339(t)
            ))
        );
        println!(
            "policy:       {}",
            match (&policy_revision, &policy_problem) {
                (Some(r), _) => format!("revision {r} from the control plane"),
                (None, Some(p)) => format!("cached policy refused: {p}"),
                (None, None) =>
                    "none from the control plane (local policy.toml or defaults)".into(),
            }
        );
        if quarantined {
            println!("quarantined:  yes (MCP proxies block every call)");
        }
        match (&update_record, &update) {
            (Some(u), _) => println!(
                "update:       {} -> {}: {:?}{}",
                u.from_version,
                u.to_version,
                u.phase,
                u.detail
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ),
            (None, Some(v)) => println!(
                "update:       {v} offered (installed by the agent when it runs as a service with a pinned release key)"
            ),
            (None, None) => {}
        }
        if remote != agent_bom_agent::settings::RemoteSettings::default() {
            println!("settings:     {}", serde_json::to_string(&remote)?);
        }
    }
    Ok(())
}

fn time_rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}
