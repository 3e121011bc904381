//! Managed wrapping: the daemon wraps every stdio server by policy and wraps again whatever a
//! client reverted (a client that rewrites its config from its own copy drops the proxy).
//!
//! The switch resolves, on every pass, as managed configuration (MDM; fixed for the daemon's run,
//! which restarts when it changes) > `"managed_wrapping"` in `<state dir>/settings.json`
//! (written by the control plane's `settings` command, read through [`RemoteSettings`]) > the
//! local settings (`agent.toml`, environment) > off; turning it on or off from the control plane
//! needs no restart. A missing or broken `settings.json` means the control plane has no say. A
//! pass is [`super::wrap`] itself: when everything is wrapped it reads and parses the few config
//! files and writes nothing, so
//! running it after each debounced file event costs milliseconds and cannot loop (its own
//! writes trigger one more pass that finds nothing to do).

use std::path::Path;
use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{FileChange, WrapError, WrapOptions};
use crate::settings::RemoteSettings;

/// The layers of the managed-wrapping switch other than the control plane's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WrapSwitch {
    /// What managed configuration enforces (wins over everything).
    pub managed: Option<bool>,
    /// What the local settings say (used when neither managed configuration nor the control
    /// plane set it).
    pub local: Option<bool>,
}

impl WrapSwitch {
    /// Whether managed wrapping is on now.
    pub fn enabled(&self, state_dir: &Path) -> bool {
        self.managed
            .or_else(|| RemoteSettings::load(state_dir).managed_wrapping)
            .or(self.local)
            .unwrap_or(false)
    }
}

/// True when the control plane turned managed wrapping on in `<state_dir>/settings.json` (no
/// managed or local setting).
pub fn managed_wrapping_enabled(state_dir: &Path) -> bool {
    WrapSwitch::default().enabled(state_dir)
}

/// Wrap whatever is not wrapped, if the control plane turned managed wrapping on.
pub fn rewrap_if_managed(options: &WrapOptions) -> Vec<Result<FileChange, WrapError>> {
    rewrap_with(options, WrapSwitch::default())
}

/// Wrap whatever is not wrapped, if `switch` resolves to on; nothing otherwise.
pub fn rewrap_with(
    options: &WrapOptions,
    switch: WrapSwitch,
) -> Vec<Result<FileChange, WrapError>> {
    if !switch.enabled(&options.state_dir) {
        return Vec::new();
    }
    // The gateway routes are read on every pass, like the switch: a `settings` command that
    // changes them takes effect at the next pass.
    let options = WrapOptions {
        dry_run: false,
        gateway: RemoteSettings::gateway_routes(&options.state_dir),
        ..options.clone()
    };
    super::wrap(&options)
}

/// One pass off the async threads, logged (server names and paths only: records and diffs hold
/// env values).
async fn pass(options: &WrapOptions, switch: WrapSwitch) {
    let options = options.clone();
    let results = tokio::task::spawn_blocking(move || rewrap_with(&options, switch))
        .await
        .unwrap_or_default();
    for result in results {
        match result {
            Ok(change) => {
                if change.written {
                    tracing::info!(
                        path = %change.path.display(),
                        client = change.client,
                        servers = %change.servers.join(", "),
                        "managed wrapping: wrapped"
                    );
                }
                for s in &change.skipped {
                    tracing::warn!(
                        path = %change.path.display(),
                        server = %s.server,
                        reason = %s.reason,
                        "managed wrapping: server left unwrapped"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "managed wrapping failed"),
        }
    }
}

/// Run a pass now and after every change `changes` signals, until `shutdown`. Returns the
/// notifier to hand on (to the uplink): it fires after each pass, so what is shipped already
/// includes the re-wrap. Without a watcher (`None`) only the startup pass runs.
pub fn spawn(
    options: WrapOptions,
    switch: WrapSwitch,
    changes: Option<Arc<Notify>>,
    shutdown: CancellationToken,
) -> Option<Arc<Notify>> {
    let forward = changes.as_ref().map(|_| Arc::new(Notify::new()));
    let out = forward.clone();
    tokio::spawn(async move {
        pass(&options, switch).await;
        let (Some(changes), Some(forward)) = (changes, forward) else {
            return;
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = changes.notified() => {
                    pass(&options, switch).await;
                    forward.notify_one();
                }
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrap_only_when_on_and_only_what_was_reverted() {
        use agent_bom_discovery::{Roots, ScanOptions, WalkLimits, catalog::Os};
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let config = home.join(".codex/config.toml");
        std::fs::create_dir_all(config.parent().unwrap()).unwrap();
        let original = "[mcp_servers.docs]\ncommand = \"npx\"\nargs = [\"-y\", \"docs\"]\n";
        std::fs::write(&config, original).unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        let options = WrapOptions {
            scan: ScanOptions {
                users: vec![Roots::for_home(&home, Os::Linux)],
                projects: Vec::new(),
                workspace_roots: Vec::new(),
                system_root: Some(dir.path().join("system")),
                limits: WalkLimits::default(),
                os: Os::Linux,
            },
            client: None,
            dry_run: true,
            proxy_exe: "/opt/agent-bom/agent-bom-agent".into(),
            state_dir: state.clone(),
            gateway: None,
        };
        assert!(rewrap_if_managed(&options).is_empty(), "off by default");
        assert_eq!(std::fs::read_to_string(&config).unwrap(), original);

        let settings = state.join(agent_bom_state::layout::REMOTE_SETTINGS_FILE);
        std::fs::write(&settings, "{\"managed_wrapping\": true}").unwrap();
        for _ in 0..2 {
            // Written even though the options say dry run: managed passes always write.
            let changes = rewrap_if_managed(&options);
            assert_eq!(changes.len(), 1);
            assert!(changes[0].as_ref().unwrap().written);
            assert!(
                std::fs::read_to_string(&config)
                    .unwrap()
                    .contains("\"proxy\"")
            );
            assert!(
                rewrap_if_managed(&options).is_empty(),
                "nothing left to wrap"
            );
            // The client reverts.
            std::fs::write(&config, original).unwrap();
        }
        std::fs::write(&settings, "{\"managed_wrapping\": false}").unwrap();
        assert!(rewrap_if_managed(&options).is_empty());
        assert_eq!(std::fs::read_to_string(&config).unwrap(), original);
    }

    #[test]
    fn the_switch_tolerates_missing_and_broken_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!managed_wrapping_enabled(dir.path()));
        let file = dir
            .path()
            .join(agent_bom_state::layout::REMOTE_SETTINGS_FILE);
        for (body, on) in [
            (
                "{\"managed_wrapping\": true, \"rescan_interval_secs\": 60}",
                true,
            ),
            ("{\"managed_wrapping\": false}", false),
            ("{\"managed_wrapping\": \"yes\"}", false),
            ("[true]", false),
            ("{ broken", false),
            ("", false),
        ] {
            std::fs::write(&file, body).unwrap();
            assert_eq!(managed_wrapping_enabled(dir.path()), on, "{body}");
        }
    }
}
