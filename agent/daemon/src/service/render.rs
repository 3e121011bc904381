//! The service definitions, rendered from one [`ServiceSpec`]: a systemd unit (system or user),
//! a launchd property list (LaunchDaemon or LaunchAgent), and the Windows service's command
//! line and recovery settings. `service install` writes them, the packages ship what
//! `service render` prints, and the tests check them, so the three never drift.

use std::path::{Path, PathBuf};

use crate::update::manager::Manager;

/// Whether the service runs for the whole machine or for one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// A system service (root / LocalSystem): every user's configs, user shares.
    System,
    /// A service of the current user (systemd user unit, LaunchAgent): that user's configs.
    User,
}

/// Everything a service definition depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// System or user.
    pub level: Level,
    /// The agent binary the service starts (and self-update replaces).
    pub exe: PathBuf,
    /// `agent.toml`, if any.
    pub config: Option<PathBuf>,
    /// The state directory.
    pub state_dir: PathBuf,
    /// Where launchd writes the agent's log (macOS).
    pub log_file: PathBuf,
}

impl ServiceSpec {
    /// The arguments of `agent-bom-agent` the service runs.
    pub fn run_args(&self, manager: Manager) -> Vec<String> {
        let mut args = Vec::new();
        if manager == Manager::Windows {
            // The SCM starts the binary, which runs the service dispatcher itself.
            args.extend(["service".to_string(), "run".to_string()]);
            return args;
        }
        args.push("run".into());
        if self.level == Level::System {
            args.push("--all-users".into());
        }
        args.push("--state-dir".into());
        args.push(path_text(&self.state_dir));
        if let Some(config) = &self.config {
            args.push("--config".into());
            args.push(path_text(config));
        }
        args
    }
}

fn path_text(p: &Path) -> String {
    p.display().to_string()
}

/// Quote one argument for a systemd `ExecStart=` line.
fn systemd_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@+,".contains(c))
    {
        arg.to_string()
    } else {
        format!(
            "\"{}\"",
            arg.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('%', "%%")
        )
    }
}

/// The systemd unit. System units carry the hardening that still lets the daemon read (and,
/// for managed wrapping, rewrite) the users' MCP configs and replace its own binary.
pub fn systemd_unit(spec: &ServiceSpec) -> String {
    let user = spec.level == Level::User;
    let manager = Manager::Systemd { user };
    let exec = std::iter::once(path_text(&spec.exe))
        .chain(spec.run_args(manager))
        .map(|a| systemd_quote(&a))
        .collect::<Vec<_>>()
        .join(" ");
    let mut unit = String::new();
    unit.push_str(
        "# agent-bom endpoint agent (rendered by `agent-bom-agent service render`; edit with\n\
         # `systemctl edit`, since `service install` and package upgrades rewrite this file)\n\
         [Unit]\n\
         Description=agent-bom endpoint agent (MCP inventory and proxy audit)\n",
    );
    if !user {
        unit.push_str("Wants=network-online.target\nAfter=network-online.target\n");
    }
    // Restart on failure, but not forever: 10 failed starts within 10 minutes stop the unit.
    unit.push_str("StartLimitIntervalSec=600\nStartLimitBurst=10\n\n[Service]\n");
    unit.push_str(&format!(
        "Type=notify\n\
         NotifyAccess=main\n\
         ExecStart={exec}\n\
         Environment={}={}\n\
         Environment={}={}\n\
         Restart=on-failure\n\
         RestartSec=5\n\
         TimeoutStartSec=60\n\
         TimeoutStopSec=30\n\
         KillMode=mixed\n\
         UMask=0077\n\
         Nice=5\n\
         MemoryMax=512M\n\
         StandardOutput=journal\n\
         StandardError=journal\n\
         SyslogIdentifier=agent-bom-agent\n",
        crate::settings::env::SERVICE_MANAGER,
        manager.name(),
        crate::settings::env::SERVICE_NAME,
        super::default_name(manager),
    ));
    if !user {
        let state = path_text(&spec.state_dir);
        let shares = path_text(&agent_bom_state::layout::user_share_root(&spec.state_dir));
        let bin_dir = spec
            .exe
            .parent()
            .map(path_text)
            .unwrap_or_else(|| "/".into());
        unit.push_str(&format!(
            "# Hardening. The daemon reads every user's MCP configs and, with managed wrapping,\n\
             # rewrites them: homes stay visible and writable. It replaces its own binary on\n\
             # self-update: the binary's directory is writable, nothing else of /usr or /opt.\n\
             NoNewPrivileges=yes\n\
             ProtectSystem=strict\n\
             ReadWritePaths={} {} {} -/home -/root\n\
             PrivateTmp=yes\n\
             PrivateDevices=yes\n\
             ProtectKernelTunables=yes\n\
             ProtectKernelModules=yes\n\
             ProtectKernelLogs=yes\n\
             ProtectControlGroups=yes\n\
             ProtectClock=yes\n\
             ProtectHostname=yes\n\
             RestrictNamespaces=yes\n\
             RestrictRealtime=yes\n\
             RestrictSUIDSGID=yes\n\
             LockPersonality=yes\n\
             MemoryDenyWriteExecute=yes\n\
             SystemCallArchitectures=native\n\
             RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK\n\
             # Root without the rest of its power: read and write others' files, hand user\n\
             # shares to their users, stop a hung build after a rollback.\n\
             CapabilityBoundingSet=CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_CHOWN CAP_FOWNER CAP_KILL\n",
            systemd_quote(&state),
            systemd_quote(&shares),
            systemd_quote(&bin_dir),
        ));
    }
    unit.push_str(&format!(
        "\n[Install]\nWantedBy={}\n",
        if user {
            "default.target"
        } else {
            "multi-user.target"
        }
    ));
    unit
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The launchd property list (a LaunchDaemon for the system, a LaunchAgent for a user).
pub fn launchd_plist(spec: &ServiceSpec) -> String {
    let manager = Manager::Launchd {
        agent: spec.level == Level::User,
    };
    let mut args = String::new();
    for a in std::iter::once(path_text(&spec.exe)).chain(spec.run_args(manager)) {
        args.push_str(&format!("        <string>{}</string>\n", xml_escape(&a)));
    }
    let log = xml_escape(&path_text(&spec.log_file));
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- agent-bom endpoint agent (rendered by `agent-bom-agent service render`) -->
<plist version="1.0">
<dict>
    <key>Label</key>
    <string>{label}</string>
    <key>ProgramArguments</key>
    <array>
{args}    </array>
    <key>EnvironmentVariables</key>
    <dict>
        <key>{env_manager}</key>
        <string>{manager}</string>
        <key>{env_name}</key>
        <string>{label}</string>
    </dict>
    <key>RunAtLoad</key>
    <true/>
    <!-- Restart after a failure or an update (exit 75), not after a clean stop. launchd
         waits ThrottleInterval seconds between starts, so a crash loop stays cheap. -->
    <key>KeepAlive</key>
    <dict>
        <key>SuccessfulExit</key>
        <false/>
    </dict>
    <key>ThrottleInterval</key>
    <integer>10</integer>
    <key>ProcessType</key>
    <string>Background</string>
    <key>LowPriorityIO</key>
    <true/>
    <key>Umask</key>
    <integer>63</integer>
    <key>StandardOutPath</key>
    <string>{log}</string>
    <key>StandardErrorPath</key>
    <string>{log}</string>
</dict>
</plist>
"#,
        label = super::default_name(manager),
        env_manager = crate::settings::env::SERVICE_MANAGER,
        env_name = crate::settings::env::SERVICE_NAME,
        manager = manager.name(),
    )
}

/// The Windows service as the SCM and the MSI know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowsService {
    /// Service name.
    pub name: &'static str,
    /// Display name.
    pub display_name: &'static str,
    /// Description.
    pub description: &'static str,
    /// The arguments after the binary.
    pub args: Vec<String>,
    /// Restart delays after the first, second and later failures (milliseconds); the failure
    /// count resets after a day without one.
    pub restart_delays_ms: [u32; 3],
    /// Seconds without a failure after which the count resets.
    pub reset_after_secs: u32,
}

/// The Windows service.
pub fn windows_service(spec: &ServiceSpec) -> WindowsService {
    WindowsService {
        name: super::default_name(Manager::Windows),
        display_name: "agent-bom agent",
        description: "agent-bom endpoint agent: MCP inventory and proxy audit for this machine",
        args: spec.run_args(Manager::Windows),
        restart_delays_ms: [5_000, 10_000, 60_000],
        reset_after_secs: 86_400,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn spec(level: Level) -> ServiceSpec {
        ServiceSpec {
            level,
            exe: "/opt/agent-bom/bin/agent-bom-agent".into(),
            config: Some("/etc/agent-bom/agent.toml".into()),
            state_dir: "/var/lib/agent-bom".into(),
            log_file: "/Library/Logs/agent-bom/agent-bom-agent.log".into(),
        }
    }

    #[test]
    fn the_system_unit_is_hardened_notifies_and_restarts_with_a_cap() {
        let unit = systemd_unit(&spec(Level::System));
        for line in [
            "Type=notify",
            "ExecStart=/opt/agent-bom/bin/agent-bom-agent run --all-users --state-dir /var/lib/agent-bom --config /etc/agent-bom/agent.toml",
            "Environment=AGENT_BOM_SERVICE_MANAGER=systemd",
            "Environment=AGENT_BOM_SERVICE_NAME=agent-bom-agent.service",
            "Restart=on-failure",
            "StartLimitBurst=10",
            "ProtectSystem=strict",
            "ReadWritePaths=/var/lib/agent-bom /var/lib/agent-bom-users /opt/agent-bom/bin -/home -/root",
            "NoNewPrivileges=yes",
            "CapabilityBoundingSet=CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_CHOWN CAP_FOWNER CAP_KILL",
            "StandardOutput=journal",
            "WantedBy=multi-user.target",
        ] {
            assert!(
                unit.lines().any(|l| l == line),
                "missing {line:?} in\n{unit}"
            );
        }
        // Homes must stay readable: no ProtectHome.
        assert!(!unit.contains("ProtectHome"));
    }

    #[test]
    fn the_user_unit_runs_for_one_user_without_system_hardening() {
        let mut s = spec(Level::User);
        s.state_dir = "/home/al ice/.local/state/agent-bom".into();
        s.config = None;
        let unit = systemd_unit(&s);
        assert!(unit.contains(
            "ExecStart=/opt/agent-bom/bin/agent-bom-agent run --state-dir \"/home/al ice/.local/state/agent-bom\"\n"
        ));
        assert!(unit.contains("Environment=AGENT_BOM_SERVICE_MANAGER=systemd-user"));
        assert!(unit.contains("WantedBy=default.target"));
        assert!(!unit.contains("--all-users") && !unit.contains("ProtectSystem"));
    }

    #[test]
    fn plists_are_valid_xml_with_keepalive_and_logs() {
        for (level, label, manager) in [
            (Level::System, "com.agent-bom.agent", "launchd"),
            (Level::User, "com.agent-bom.agent", "launchd-agent"),
        ] {
            let mut s = spec(level);
            s.state_dir = "/Library/Application Support/agent-bom".into();
            let plist = launchd_plist(&s);
            assert!(plist.contains(&format!("<string>{label}</string>")));
            assert!(plist.contains(&format!("<string>{manager}</string>")));
            assert!(plist.contains("<string>/Library/Application Support/agent-bom</string>"));
            assert!(plist.contains("<key>SuccessfulExit</key>\n        <false/>"));
            assert!(plist.contains("<string>/Library/Logs/agent-bom/agent-bom-agent.log</string>"));
            assert_eq!(plist.contains("--all-users"), level == Level::System);
            // Balanced tags: every opened dict/array is closed.
            for tag in ["dict", "array", "plist"] {
                assert_eq!(
                    plist.matches(&format!("<{tag}")).count(),
                    plist.matches(&format!("</{tag}>")).count(),
                    "{tag}"
                );
            }
        }
    }

    #[test]
    fn the_windows_service_runs_the_dispatcher_and_restarts() {
        let w = windows_service(&spec(Level::System));
        assert_eq!(w.name, "agent-bom-agent");
        assert_eq!(w.args, vec!["service", "run"]);
        assert!(w.restart_delays_ms.iter().all(|d| *d >= 5_000));
    }
}
