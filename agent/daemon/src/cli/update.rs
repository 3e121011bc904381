//! `update check|apply|rollback` (by hand) and `update watch` (the watchdog a self-update starts).

use std::path::PathBuf;

use agent_bom_agent::enrollment::InstallSettings;
use agent_bom_agent::settings::FileSettings;
use agent_bom_agent::update::rollback;
use agent_bom_agent::update::watchdog::{self, Watched};
use agent_bom_protocol::release::{ReleaseManifest, compare_versions};
use agent_bom_state::layout::default_state_dir;
use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::args::{UpdateAction, UpdateSource};

/// A release as `GET /install/latest` describes it.
#[derive(Debug, Deserialize)]
struct Latest {
    version: String,
    os: String,
    arch: String,
    sha256: String,
    size: u64,
    signature: String,
    url: String,
    #[serde(default)]
    channel: String,
}

impl Latest {
    fn manifest(&self) -> ReleaseManifest {
        ReleaseManifest {
            version: self.version.clone(),
            os: self.os.clone(),
            arch: self.arch.clone(),
            sha256: self.sha256.clone(),
            size: self.size,
        }
    }
}

/// Where releases come from and which keys may sign them.
struct Source {
    url: String,
    channel: String,
    keys: Vec<String>,
}

fn source(s: UpdateSource) -> Result<Source> {
    let state_dir = s.state_dir.unwrap_or_else(default_state_dir);
    let file = match &s.config {
        Some(p) => FileSettings::load(p)?,
        None => FileSettings::default(),
    };
    let installed = InstallSettings::load(&state_dir).unwrap_or_default();
    let url = s
        .control_plane_url
        .or(file.control_plane_url.clone())
        .or(installed.control_plane_url)
        .context("no control-plane URL: pass --control-plane-url, or install with one")?;
    let channel = s
        .channel
        .or(file.update_channel.clone())
        .or(installed.channel)
        .unwrap_or_else(|| "stable".into());
    let keys = super::run::release_keys(&state_dir, &file, &s.release_keys);
    Ok(Source {
        url: url.trim_end_matches('/').to_string(),
        channel,
        keys,
    })
}

async fn latest(source: &Source, version: Option<&str>) -> Result<Option<Latest>> {
    let os = agent_bom_discovery::catalog::Os::current().as_str();
    let mut url = format!(
        "{}/install/latest?os={os}&arch={}&channel={}",
        source.url,
        std::env::consts::ARCH,
        source.channel
    );
    if let Some(v) = version {
        url.push_str(&format!("&version={v}"));
    }
    let response = reqwest::Client::new()
        .get(&url)
        .send()
        .await
        .with_context(|| format!("asking {url}"))?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let response = response
        .error_for_status()
        .with_context(|| format!("asking {url}"))?;
    Ok(Some(response.json().await.context("reading the release")?))
}

/// Run an `update` subcommand.
pub(crate) async fn update(action: UpdateAction) -> Result<()> {
    match action {
        UpdateAction::Check { source: s, json } => {
            let source = source(s)?;
            let running = agent_bom_agent::agent_version();
            let found = latest(&source, None).await?;
            let newer = found
                .as_ref()
                .is_some_and(|l| compare_versions(&l.version, running).is_gt());
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "running": running,
                        "channel": source.channel,
                        "latest": found.as_ref().map(|l| &l.version),
                        "update_available": newer,
                    })
                );
            } else {
                match &found {
                    None => println!(
                        "running {running}; the control plane has no {} build for this machine",
                        source.channel
                    ),
                    Some(l) if newer => println!(
                        "running {running}; {} is available on {} (install: agent-bom-agent update apply)",
                        l.version, l.channel
                    ),
                    Some(l) => println!(
                        "running {running}; up to date ({} has {})",
                        source.channel, l.version
                    ),
                }
            }
            Ok(())
        }
        UpdateAction::Apply {
            source: s,
            version,
            no_restart,
        } => {
            let source = source(s)?;
            let running = agent_bom_agent::agent_version();
            let Some(found) = latest(&source, version.as_deref()).await? else {
                bail!("the control plane has no such build for this machine");
            };
            if version.is_none() && !compare_versions(&found.version, running).is_gt() {
                println!("running {running}; nothing newer on {}", source.channel);
                return Ok(());
            }
            let exe = std::env::current_exe().context("cannot locate this agent binary")?;
            let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
            let paths = agent_bom_agent::update::apply_by_hand(
                &exe,
                &found.url,
                &found.manifest(),
                &found.signature,
                &source.keys,
            )
            .await?;
            println!(
                "installed {} at {} (previous build kept as {})",
                found.version,
                paths.exe.display(),
                paths.previous.display()
            );
            if !no_restart {
                restart_service();
            }
            Ok(())
        }
        UpdateAction::Rollback {
            state_dir,
            exe,
            no_restart,
        } => {
            let state_dir: PathBuf = state_dir.unwrap_or_else(default_state_dir);
            let exe = match exe {
                Some(exe) => exe,
                None => std::env::current_exe().context("cannot locate this agent binary")?,
            };
            let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
            let done = rollback::roll_back_by_hand(&exe, &state_dir).await?;
            println!("rolled back to {} at {}", done.version, done.exe.display());
            if !no_restart {
                restart_service();
            }
            Ok(())
        }
        UpdateAction::Watch { state_dir } => {
            let state_dir: PathBuf = state_dir.unwrap_or_else(default_state_dir);
            match watchdog::watch(&state_dir) {
                Watched::Confirmed => println!("update confirmed"),
                Watched::Nothing => println!("no update to watch"),
                Watched::RolledBack(why) => println!("rolled back: {why}"),
            }
            Ok(())
        }
    }
}

/// Restart the installed service (system first, then the user's), if there is one.
fn restart_service() {
    use agent_bom_agent::service::{self, Level};
    for level in [Level::System, Level::User] {
        let Ok(manager) = service::platform_manager(level) else {
            continue;
        };
        if matches!(
            service::status(manager),
            Ok(service_manager::ServiceStatus::Running)
        ) {
            let _ = service::stop(manager);
            match service::start(manager) {
                Ok(()) => println!("restarted {}", service::default_name(manager)),
                Err(e) => eprintln!("warning: restart the service yourself: {e}"),
            }
            return;
        }
    }
    println!("no running service found: restart the agent to run the new build");
}
