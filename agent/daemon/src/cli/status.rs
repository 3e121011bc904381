//! `status`: every managed-capable setting with where it came from, then identity, uplink,
//! spool, policy and command state, read from the state directory.

use std::path::PathBuf;

use agent_bom_agent::effective::{self, Effective};
use agent_bom_agent::managed::{self, Layer, ManagedConfig};
use agent_bom_agent::settings::FileSettings;
use agent_bom_state::StateDir;
use agent_bom_state::layout::default_state_dir;
use anyhow::Result;

/// The settings file `status` reads: the one given, else the system service's when it exists.
fn config_path(config: Option<PathBuf>) -> Option<PathBuf> {
    config.or_else(|| {
        let exe = std::env::current_exe().unwrap_or_default();
        agent_bom_agent::service::default_spec(agent_bom_agent::service::Level::System, exe).config
    })
}

/// The effective settings, or why they cannot be resolved (a broken `agent.toml`, a bad
/// environment variable): `status` reports that instead of failing.
fn settings(
    state_dir: &std::path::Path,
    config: Option<PathBuf>,
    managed: &ManagedConfig,
) -> Result<Effective, String> {
    let file = match config_path(config) {
        Some(path) => Some((
            path.clone(),
            FileSettings::load(&path).map_err(|e| e.to_string())?,
        )),
        None => None,
    };
    effective::resolve_local(
        managed,
        file.as_ref().map(|(p, f)| (p.as_path(), f)),
        state_dir,
        &Layer::default(),
    )
}

fn settings_json(
    settings: &Result<Effective, String>,
    managed: &ManagedConfig,
) -> serde_json::Value {
    serde_json::json!({
        "settings": match settings {
            Ok(e) => serde_json::Value::Array(
                e.rows()
                    .into_iter()
                    .map(|(name, value, source)| serde_json::json!({"name": name, "value": value, "source": source}))
                    .collect(),
            ),
            Err(_) => serde_json::Value::Null,
        },
        "settings_error": settings.as_ref().err(),
        "managed": {
            "sources": managed.sources.iter().map(|(s, present)| serde_json::json!({"source": s, "present": present})).collect::<Vec<_>>(),
            "problems": managed.problems,
        },
    })
}

fn print_settings(settings: &Result<Effective, String>, managed: &ManagedConfig) {
    println!("settings:");
    match settings {
        Ok(e) => {
            for (name, value, source) in e.rows() {
                println!("  {name:<18} {value}  [{source}]");
            }
        }
        Err(e) => println!("  cannot be resolved: {e}"),
    }
    for (source, present) in &managed.sources {
        println!(
            "managed:      {source} ({})",
            if *present { "present" } else { "absent" }
        );
    }
    for problem in &managed.problems {
        println!("managed problem: {problem}");
    }
}

/// Print the status, as text or JSON.
pub(crate) fn status(
    state_dir: Option<PathBuf>,
    config: Option<PathBuf>,
    json: bool,
) -> Result<()> {
    let state_dir = state_dir.unwrap_or_else(default_state_dir);
    let managed = managed::load();
    let settings = settings(&state_dir, config, &managed);
    let state = StateDir::open(&state_dir)?;
    if !state.is_enrolled() {
        let staged = agent_bom_agent::enrollment::token_staged(state.path());
        if json {
            let mut out = settings_json(&settings, &managed);
            out["enrolled"] = serde_json::Value::Bool(false);
            out["token_staged"] = serde_json::Value::Bool(staged);
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            println!(
                "enrolled:     no{}",
                if staged {
                    " (a staged token waits for the collector)"
                } else {
                    ""
                }
            );
            print_settings(&settings, &managed);
        }
        return Ok(());
    }
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
        let mut out = settings_json(&settings, &managed);
        out["enrolled"] = serde_json::Value::Bool(true);
        let rest = serde_json::json!({
                "identity": record,
                "uplink": uplink,
                "certificate_not_after": cert_not_after,
                "event_spool": {"bytes": spool_bytes, "dropped": dropped},
                "quarantined": quarantined,
                "policy": {"applied_revision": policy_revision, "problem": policy_problem},
                "update_available": update,
                "update": update_record,
                "control_plane_settings": remote,
        });
        if let (Some(out), serde_json::Value::Object(rest)) = (out.as_object_mut(), rest) {
            out.extend(rest);
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("enrolled:     yes");
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
            println!(
                "control plane settings: {}",
                serde_json::to_string(&remote)?
            );
        }
        print_settings(&settings, &managed);
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
