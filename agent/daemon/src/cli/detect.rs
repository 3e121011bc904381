//! `detect`: the facts an MDM's detection script, extension attribute or compliance check
//! reports, computed once here so the scripts under `mdm/` stay a few lines each: installed
//! version, service state, enrollment state, proxy coverage, managed configuration.

use std::path::PathBuf;

use agent_bom_agent::effective;
use agent_bom_agent::managed::{self, Layer, TokenSource};
use agent_bom_agent::service::{self, Level};
use agent_bom_protocol::Transport;
use agent_bom_state::StateDir;
use anyhow::{Result, bail};

use super::target::Target;

/// Every field, in output order.
pub(crate) const FIELDS: [&str; 7] = [
    "version",
    "service",
    "enrollment",
    "proxy_coverage",
    "stdio_servers",
    "wrapped_servers",
    "managed",
];

/// Print the facts as `key=value` lines, one JSON object, or one field's value.
pub(crate) async fn detect(
    target: Target,
    state_dir: Option<PathBuf>,
    field: Option<String>,
    json: bool,
) -> Result<()> {
    if let Some(f) = &field
        && !FIELDS.contains(&f.as_str())
    {
        bail!("unknown field {f:?}: one of {}", FIELDS.join(", "));
    }
    let state_dir =
        state_dir.unwrap_or_else(|| service::default_spec(Level::System, PathBuf::new()).state_dir);
    let inventory = agent_bom_agent::uplink::scan_now(target.scan_options()?).await;
    let stdio: Vec<_> = inventory
        .servers
        .iter()
        .filter(|s| s.transport == Transport::Stdio)
        .collect();
    let wrapped = stdio.iter().filter(|s| s.wrapped).count();
    let managed = managed::load();
    let values = [
        agent_bom_agent::agent_version().to_string(),
        service_state(),
        enrollment_state(&state_dir, &managed),
        format!("{wrapped}/{}", stdio.len()),
        stdio.len().to_string(),
        wrapped.to_string(),
        if managed.problems.is_empty() {
            if managed.is_empty() {
                "absent"
            } else {
                "present"
            }
            .to_string()
        } else {
            "problems".to_string()
        },
    ];
    if let Some(f) = field {
        let i = FIELDS.iter().position(|x| *x == f).unwrap_or_default();
        println!("{}", values[i]);
    } else if json {
        let map: serde_json::Map<String, serde_json::Value> = FIELDS
            .iter()
            .zip(values)
            .map(|(k, v)| ((*k).to_string(), serde_json::Value::String(v)))
            .collect();
        println!("{}", serde_json::Value::Object(map));
    } else {
        for (k, v) in FIELDS.iter().zip(values) {
            println!("{k}={v}");
        }
    }
    Ok(())
}

/// `running`, `stopped`, `not-installed`, or `unknown` when the service manager cannot be
/// asked (no systemd as PID 1, say).
fn service_state() -> String {
    let Ok(manager) = service::platform_manager(Level::System) else {
        return "unknown".into();
    };
    match service::status(manager) {
        Ok(service_manager::ServiceStatus::Running) => "running".into(),
        Ok(service_manager::ServiceStatus::Stopped(_)) => "stopped".into(),
        Ok(service_manager::ServiceStatus::NotInstalled) => "not-installed".into(),
        Err(_) => "unknown".into(),
    }
}

/// `enrolled`, `pending` (a collector and a readable token are configured, or a token is
/// staged: the agent enrolls when it reaches the collector), or `not-enrolled` (a token file
/// that is not there yet counts as no token).
fn enrollment_state(state_dir: &std::path::Path, managed: &managed::ManagedConfig) -> String {
    if StateDir::open(state_dir).is_ok_and(|s| s.is_enrolled()) {
        return "enrolled".into();
    }
    let staged = agent_bom_agent::enrollment::token_staged(state_dir);
    let configured = effective::resolve_local(managed, None, state_dir, &Layer::default())
        .is_ok_and(|e| {
            let token = match &e.enrollment_token.value {
                Some(TokenSource::Value(_)) => true,
                Some(TokenSource::File(path)) => path.is_file() || staged,
                None => false,
            };
            e.collector.value.is_some() && token
        });
    if configured {
        "pending".into()
    } else {
        "not-enrolled".into()
    }
}
