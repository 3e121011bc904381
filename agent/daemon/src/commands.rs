//! Commands from the control plane, applied on the device.
//!
//! Every command must carry the control plane's signature for this device
//! ([`agent_bom_state::signature`]); an unsigned or badly signed one is answered `failed` and nothing
//! happens.
//!
//! | command | payload | effect | answer |
//! |---|---|---|---|
//! | `rescan` | | scan and upload now | `applied` |
//! | `quarantine` | `{reason}` | write `quarantine.json` (0600): the MCP proxies block every call while it exists | `applied` |
//! | `release` | | remove `quarantine.json` | `applied` |
//! | `policy` | `{revision, policy}` | verify, validate and cache the signed policy (`policy.signed.json`); proxies load it at start | `applied` with the revision, or `failed` (invalid, older than the applied revision) |
//! | `settings` | `{rescan_interval_secs?, managed_wrapping?}` | merge into `settings.json` (all or nothing); `null` resets a key | `applied` with the keys, or `failed` |
//! | `wrap` / `unwrap` | `{client?}` | wrap or unwrap the stdio servers of every (or one) client, as the CLI does | `applied` with the files, or `failed` with the errors |
//! | `approve_pins` | `{server_id, tools: {name: hash or null}}` | record the approval in `pin-approvals.json`; proxies re-pin those tools at their next listing | `applied` |
//! | `rotate_credential` | | new key pair and certificate over the connection, then reconnect with them (the old certificate is refused from then on) | `applied` or `failed` |
//! | `update_available` | `{version, url?, sha256?, size?, os?, arch?, signature?, expires_at_ms?, grace_secs?, rollout_id?}` | record the notice in `update.json` (shown by `status`); a notice naming a complete signed build is installed by [`crate::update`] | `applied` (recorded, already running it, or updated), `failed` (refused, failed, rolled back), or no answer while the update runs (the collector sends the command again on the next session) |
//! | anything else | | nothing | `unsupported` |
//!
//! Applying a command twice has the same effect as once, so a redelivered command is harmless.

use agent_bom_protocol::command::WrapTarget;
use agent_bom_protocol::secure_file::write_private;
use agent_bom_protocol::{Command, CommandError, CommandKind};

use crate::settings::RemoteSettings;
use agent_bom_discovery::ScanOptions;
use agent_bom_state::approvals::{Approval, Approvals};
use agent_bom_state::dir::StateDir;

use agent_bom_state::layout::{QUARANTINE_FILE, UPDATE_FILE};

/// What a command needs from the running agent.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The state directory.
    pub state: &'a StateDir,
    /// This device's id (signatures are bound to it).
    pub agent_id: &'a str,
    /// What the agent scans (wrap and unwrap edit the same client configs).
    pub scan: &'a ScanOptions,
    /// The self-updater (absent: notices are only recorded).
    pub updater: Option<&'a std::sync::Arc<crate::update::Updater>>,
}

/// Work the uplink does after a command was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    /// Nothing.
    None,
    /// Scan and upload now.
    Rescan,
    /// Settings changed: re-read them.
    Settings,
    /// Replace the device credential over the connection, then reconnect; the answer depends
    /// on how that goes.
    RotateCredential,
}

/// The status of a command whose outcome is not known yet (a self-update running): the agent
/// sends no answer, and answers when the collector sends the command again.
pub const IN_PROGRESS: &str = "in_progress";

/// The outcome of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `applied`, `failed`, `unsupported`, or [`IN_PROGRESS`] (no answer yet).
    pub status: &'static str,
    /// What was applied or what went wrong; never secrets.
    pub detail: String,
    /// What the uplink does next.
    pub follow_up: FollowUp,
}

impl Outcome {
    fn applied(detail: impl Into<String>) -> Self {
        Self {
            status: "applied",
            detail: detail.into(),
            follow_up: FollowUp::None,
        }
    }

    fn failed(detail: impl std::fmt::Display) -> Self {
        Self {
            status: "failed",
            detail: detail.to_string(),
            follow_up: FollowUp::None,
        }
    }

    fn then(mut self, follow_up: FollowUp) -> Self {
        self.follow_up = follow_up;
        self
    }
}

/// Verify and apply `command`; what it changed that proxies read is republished to the
/// users' shares ([`crate::user_share`]).
pub fn apply(ctx: Context<'_>, command: &Command) -> Outcome {
    let outcome = apply_here(ctx, command);
    if outcome.status == "applied"
        && matches!(
            command.command.as_str(),
            "policy" | "quarantine" | "release" | "approve_pins"
        )
    {
        crate::user_share::publish(ctx.state.path());
    }
    outcome
}

fn apply_here(ctx: Context<'_>, command: &Command) -> Outcome {
    tracing::info!(command = %command.command, id = %command.command_id, "command received");
    let verified = ctx
        .state
        .identity_pems()
        .map_err(|e| e.to_string())
        .and_then(|(_, _, ca)| agent_bom_state::signature::verify(&ca, ctx.agent_id, command));
    if let Err(e) = verified {
        tracing::warn!(command = %command.command, id = %command.command_id, error = %e, "command refused");
        return Outcome::failed(format!("refused: {e}"));
    }
    let kind = match CommandKind::parse(&command.command, &command.payload) {
        Ok(kind) => kind,
        Err(CommandError::Unknown(other)) => {
            return Outcome {
                status: "unsupported",
                detail: format!(
                    "this agent ({}) does not know the command {other:?}",
                    crate::agent_version()
                ),
                follow_up: FollowUp::None,
            };
        }
        Err(e) => return Outcome::failed(e),
    };
    let dir = ctx.state.path();
    match kind {
        CommandKind::Rescan => Outcome::applied("rescan started").then(FollowUp::Rescan),
        CommandKind::Quarantine(_) => {
            match write_private(&dir.join(QUARANTINE_FILE), &command_record(command)) {
                Ok(()) => {
                    Outcome::applied("quarantined: MCP proxies on this device block every call")
                }
                Err(e) => Outcome::failed(e),
            }
        }
        CommandKind::Release => match std::fs::remove_file(dir.join(QUARANTINE_FILE)) {
            Ok(()) => Outcome::applied("released"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Outcome::applied("was not quarantined")
            }
            Err(e) => Outcome::failed(e),
        },
        CommandKind::Policy(_) => {
            match agent_bom_state::policy_cache::install(dir, ctx.agent_id, command) {
                Ok(revision) => Outcome::applied(format!("policy revision {revision} in force")),
                Err(e) => Outcome::failed(e),
            }
        }
        CommandKind::Settings(patch) => {
            let mut settings = RemoteSettings::load(dir);
            let keys = settings.apply(&patch);
            match settings.save(dir) {
                Ok(()) => Outcome::applied(format!("settings applied: {}", keys.join(", ")))
                    .then(FollowUp::Settings),
                Err(e) => Outcome::failed(format!("cannot save settings: {e}")),
            }
        }
        CommandKind::Wrap(target) => wrap(ctx, target, true),
        CommandKind::Unwrap(target) => wrap(ctx, target, false),
        CommandKind::ApprovePins(payload) => {
            let tools = payload.tools.len();
            match Approvals::new(dir).add(Approval::from_command(&command.command_id, payload)) {
                Ok(()) => Outcome::applied(format!(
                    "{tools} tool approval(s) recorded; proxies re-pin at their next tools/list"
                )),
                Err(e) => Outcome::failed(format!("cannot record the approval: {e}")),
            }
        }
        CommandKind::RotateCredential => {
            Outcome::applied("credential rotated").then(FollowUp::RotateCredential)
        }
        CommandKind::UpdateAvailable(notice) => update_offer(ctx, command, &notice),
    }
}

fn wrap(ctx: Context<'_>, target: WrapTarget, wrap: bool) -> Outcome {
    let proxy_exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return Outcome::failed(format!("cannot locate the agent binary: {e}")),
    };
    let options = crate::wrap::WrapOptions {
        scan: ctx.scan.clone(),
        client: target.client,
        dry_run: false,
        proxy_exe,
        state_dir: ctx.state.path().to_path_buf(),
        gateway: crate::settings::RemoteSettings::gateway_routes(ctx.state.path()),
    };
    let results = if wrap {
        crate::wrap::wrap(&options)
    } else {
        crate::wrap::unwrap(&options)
    };
    let mut changed = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            // A file whose every server was skipped changed nothing.
            Ok(c) if c.servers.is_empty() => {}
            Ok(c) => changed.push(format!(
                "{} ({} server(s))",
                c.path.display(),
                c.servers.len()
            )),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let done = if changed.is_empty() {
        "nothing to change".to_string()
    } else {
        format!("changed {}", changed.join("; "))
    };
    if errors.is_empty() {
        Outcome::applied(done).then(FollowUp::Rescan)
    } else {
        Outcome::failed(format!("{done}; errors: {}", errors.join("; "))).then(FollowUp::Rescan)
    }
}

fn update_offer(
    ctx: Context<'_>,
    command: &Command,
    notice: &agent_bom_protocol::command::UpdateNotice,
) -> Outcome {
    // `status` shows the last notice, whatever becomes of it.
    if let Err(e) = write_private(
        &ctx.state.path().join(UPDATE_FILE),
        &command_record(command),
    ) {
        return Outcome::failed(e);
    }
    let Some(updater) = ctx.updater else {
        return Outcome::applied(format!(
            "update to {} recorded (shown by `agent-bom-agent status`); this agent does not update itself",
            notice.version
        ));
    };
    match updater.consider(&command.command_id, notice) {
        crate::update::Decision::Answer { status, detail } => Outcome {
            status,
            detail,
            follow_up: FollowUp::None,
        },
        crate::update::Decision::InProgress => Outcome {
            status: IN_PROGRESS,
            detail: format!("updating to {}", notice.version),
            follow_up: FollowUp::None,
        },
    }
}

/// What a command leaves on disk as its record: id, payload and when it was applied.
fn command_record(command: &Command) -> Vec<u8> {
    serde_json::json!({
        "command_id": command.command_id,
        "payload": serde_json::from_str::<serde_json::Value>(&command.payload).unwrap_or_default(),
        "at_ms": agent_bom_protocol::clock::now_ms(),
    })
    .to_string()
    .into_bytes()
}

/// The version of the last `update_available` notice, if any.
pub fn update_notice_version(state_dir: &std::path::Path) -> Option<String> {
    let bytes = std::fs::read(state_dir.join(UPDATE_FILE)).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["payload"]["version"].as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_bom_state::signature::tests::{sign, test_ca};

    struct Device {
        _dir: tempfile::TempDir,
        state: StateDir,
        key: rcgen::KeyPair,
        scan: ScanOptions,
    }

    fn device() -> Device {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let (ca, key) = test_ca();
        let record = agent_bom_state::dir::AgentRecord {
            agent_id: "dev".into(),
            collector: "127.0.0.1:1".into(),
            enrolled_at_ms: 0,
            ca_pin: "00".repeat(32),
        };
        state.save_identity(&record, "k", "c", &ca).unwrap();
        let home = dir.path().join("home");
        let mut scan = ScanOptions::for_user(
            agent_bom_discovery::Roots::for_home(&home, agent_bom_discovery::catalog::Os::Linux),
            Vec::new(),
            agent_bom_discovery::catalog::Os::Linux,
        );
        scan.system_root = None;
        Device {
            _dir: dir,
            state,
            key,
            scan,
        }
    }

    impl Device {
        fn run(&self, kind: &str, payload: &str) -> Outcome {
            let c = sign(
                &self.key,
                "dev",
                Command {
                    command_id: format!("id-{kind}"),
                    command: kind.into(),
                    payload: payload.into(),
                    signature: None,
                },
            );
            apply(self.ctx(), &c)
        }

        fn ctx(&self) -> Context<'_> {
            Context {
                state: &self.state,
                agent_id: "dev",
                scan: &self.scan,
                updater: None,
            }
        }
    }

    #[test]
    fn unsigned_commands_are_refused() {
        let d = device();
        let unsigned = Command {
            command_id: "c1".into(),
            command: "quarantine".into(),
            payload: "{}".into(),
            signature: None,
        };
        let out = apply(d.ctx(), &unsigned);
        assert_eq!(out.status, "failed");
        assert!(!agent_bom_state::quarantine::is_quarantined(d.state.path()));
    }

    #[test]
    fn quarantine_release_and_unknown() {
        let d = device();
        let dir = d.state.path();
        assert_eq!(d.run("quarantine", r#"{"reason":"t"}"#).status, "applied");
        assert!(agent_bom_state::quarantine::is_quarantined(dir));
        assert_eq!(d.run("quarantine", "{}").status, "applied", "idempotent");
        assert_eq!(d.run("release", "").status, "applied");
        assert!(!agent_bom_state::quarantine::is_quarantined(dir));
        assert_eq!(d.run("release", "").status, "applied", "idempotent");
        assert_eq!(d.run("self_destruct", "").status, "unsupported");
        assert_eq!(d.run("rescan", "").follow_up, FollowUp::Rescan);
        assert_eq!(
            d.run("rotate_credential", "").follow_up,
            FollowUp::RotateCredential
        );
    }

    #[test]
    fn policy_settings_approvals_and_update_notice() {
        let d = device();
        let dir = d.state.path();
        let policy = serde_json::json!({"revision": 4, "policy": "version = 1\n"}).to_string();
        let out = d.run("policy", &policy);
        assert_eq!(out.status, "applied", "{out:?}");
        assert_eq!(
            agent_bom_state::policy_cache::load_verified(dir)
                .unwrap()
                .unwrap()
                .revision,
            4
        );
        let bad = serde_json::json!({"revision": 5, "policy": "version = 7\n"}).to_string();
        assert_eq!(d.run("policy", &bad).status, "failed");

        let out = d.run("settings", r#"{"rescan_interval_secs": 120}"#);
        assert_eq!((out.status, out.follow_up), ("applied", FollowUp::Settings));
        assert_eq!(RemoteSettings::load(dir).rescan_interval_secs, Some(120));
        assert_eq!(d.run("settings", r#"{"bogus": 1}"#).status, "failed");

        let out = d.run("approve_pins", r#"{"server_id":"s","tools":{"add":null}}"#);
        assert_eq!(out.status, "applied");
        assert_eq!(Approvals::new(dir).for_server("s").len(), 1);

        assert_eq!(
            d.run("update_available", r#"{"version":"9.9.9"}"#).status,
            "applied"
        );
        assert_eq!(update_notice_version(dir).as_deref(), Some("9.9.9"));
        assert_eq!(d.run("update_available", "{}").status, "failed");
    }

    #[test]
    fn wrap_and_unwrap_edit_client_configs() {
        let d = device();
        let home = d.scan.users[0].home.clone();
        let cfg = home.join(".cursor/mcp.json");
        std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
        let original = r#"{"mcpServers": {"fs": {"command": "npx", "args": ["-y", "server-fs"]}}}"#;
        std::fs::write(&cfg, original).unwrap();
        let out = d.run("wrap", r#"{"client": "cursor"}"#);
        assert_eq!(out.status, "applied", "{out:?}");
        assert!(std::fs::read_to_string(&cfg).unwrap().contains("proxy"));
        assert_eq!(d.run("unwrap", "{}").status, "applied");
        assert_eq!(std::fs::read_to_string(&cfg).unwrap(), original);
        assert_eq!(d.run("wrap", r#"{"clients": 1}"#).status, "failed");
    }
}
