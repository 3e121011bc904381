//! The scan target every subcommand shares (`--home`, `--all-users`, `--project`, ...) and the
//! wrap/unwrap arguments built on it.

use std::path::PathBuf;

use agent_bom_agent::settings::env;
use agent_bom_agent::wrap::{self, WrapOptions};
use agent_bom_discovery::catalog::Os;
use agent_bom_discovery::{self as discovery, Roots, ScanOptions};
use agent_bom_state::layout::default_state_dir;
use anyhow::{Context, Result, bail};
use clap::Args;

#[derive(Args, Clone)]
pub(crate) struct EditArgs {
    #[command(flatten)]
    pub(crate) target: Target,
    /// Only this client (catalog name, e.g. claude-desktop, cursor, vscode, claude-code).
    #[arg(long)]
    pub(crate) client: Option<String>,
    /// Print the diff instead of writing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// State directory (records of the originals).
    #[arg(long, env = env::STATE_DIR)]
    pub(crate) state_dir: Option<PathBuf>,
}

impl EditArgs {
    pub(crate) fn options(&self) -> Result<WrapOptions> {
        let state_dir = self.state_dir.clone().unwrap_or_else(default_state_dir);
        Ok(WrapOptions {
            scan: self.target.scan_options()?,
            client: self.client.clone(),
            dry_run: self.dry_run,
            proxy_exe: wrap::this_exe()
                .context("cannot locate this agent binary for the proxy command")?,
            gateway: agent_bom_agent::settings::RemoteSettings::gateway_routes(&state_dir),
            state_dir,
        })
    }
}

#[derive(Args, Clone, Default)]
pub(crate) struct Target {
    /// Scan this directory as the home directory (re-roots every per-user path).
    #[arg(long, env = env::HOME, conflicts_with = "all_users")]
    pub(crate) home: Option<PathBuf>,
    /// Scan every user's home (/home/*, /Users/*, C:\Users\*) and their usual code folders, as
    /// the system service does.
    #[arg(long)]
    pub(crate) all_users: bool,
    /// A project (workspace) directory whose project-level MCP files are read; repeatable.
    #[arg(long = "project")]
    pub(crate) projects: Vec<PathBuf>,
    /// A directory walked (bounded) for projects; repeatable.
    #[arg(long = "workspace")]
    pub(crate) workspaces: Vec<PathBuf>,
    /// Resolve managed (system-wide) files and user homes under this root instead of `/`.
    #[arg(long)]
    pub(crate) system_root: Option<PathBuf>,
    /// Apply another OS's path conventions (to inspect a copied home offline).
    #[arg(long, value_parser = ["linux", "macos", "windows"])]
    pub(crate) os: Option<String>,
}

impl Target {
    pub(crate) fn scan_options(&self) -> Result<ScanOptions> {
        let os = match self.os.as_deref() {
            Some("macos") => Os::Macos,
            Some("windows") => Os::Windows,
            Some(_) => Os::Linux,
            None => Os::current(),
        };
        let absolute = |p: &PathBuf, what: &str| {
            std::path::absolute(p).with_context(|| format!("{what} {}", p.display()))
        };
        let system_root = match &self.system_root {
            Some(root) => absolute(root, "--system-root")?,
            None => discovery::default_system_root(os),
        };
        let mut workspace_roots = self
            .workspaces
            .iter()
            .map(|w| absolute(w, "--workspace"))
            .collect::<Result<Vec<_>>>()?;
        let users = if self.all_users {
            let homes = discovery::all_homes(os, &system_root);
            for home in &homes {
                workspace_roots.extend(
                    discovery::USUAL_CODE_DIRS
                        .iter()
                        .map(|d| home.join(d))
                        .filter(|d| d.is_dir()),
                );
            }
            homes.iter().map(|h| Roots::for_home(h, os)).collect()
        } else {
            vec![match &self.home {
                Some(home) => {
                    if !home.is_dir() {
                        bail!("--home {}: not a directory", home.display());
                    }
                    Roots::for_home(&absolute(home, "--home")?, os)
                }
                None => Roots::from_env(os)
                    .context("cannot determine the home directory; pass --home DIR")?,
            }]
        };
        let projects = self
            .projects
            .iter()
            .map(|p| absolute(p, "--project"))
            .collect::<Result<Vec<_>>>()?;
        Ok(ScanOptions {
            users,
            projects,
            workspace_roots,
            system_root: Some(system_root),
            limits: discovery::WalkLimits::default(),
            os,
        })
    }
}
