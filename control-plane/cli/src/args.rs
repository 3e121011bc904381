//! Arguments several commands share.

use std::path::PathBuf;

use clap::Args;

/// Where the server keeps its files.
#[derive(Args, Clone)]
pub(crate) struct DataArgs {
    /// Data directory: SQLite database, CA, bootstrap files.
    #[arg(long, env = "AGENT_BOM_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

impl DataArgs {
    /// The data directory given, or the default one.
    pub(crate) fn dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }
}

/// `$XDG_DATA_HOME/agent-bom` (when absolute), else `~/.local/share/agent-bom`, else
/// `./agent-bom-data`.
fn default_data_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        return xdg.join("agent-bom");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/agent-bom"),
        None => PathBuf::from("agent-bom-data"),
    }
}
