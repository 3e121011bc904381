//! Records of the originals of wrapped files, in `<state dir>/wrap/`, mode 0600 (the files hold
//! whole client configs, which may contain credentials in `env`).

use std::path::{Path, PathBuf};

use agent_bom_protocol::secure_file::write_private;
use serde::{Deserialize, Serialize};

use agent_bom_proxy::pins::sha256_hex;

/// One record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The config file.
    pub path: PathBuf,
    /// Its text before wrapping.
    pub original: String,
    /// Hex SHA-256 of the text `wrap` wrote.
    pub wrapped_sha256: String,
}

impl Record {
    /// True when `current` is exactly what `wrap` wrote (so the original can be restored byte
    /// for byte without losing a change made since).
    pub fn matches_wrapped(&self, current: &str) -> bool {
        sha256_hex(current.as_bytes()) == self.wrapped_sha256
    }
}

/// The record store.
#[derive(Debug, Clone)]
pub struct Records {
    dir: PathBuf,
}

impl Records {
    /// Records under `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("wrap"),
        }
    }

    fn file(&self, path: &Path) -> PathBuf {
        let h = sha256_hex(path.to_string_lossy().as_bytes());
        self.dir.join(format!("{}.json", &h[..32]))
    }

    /// Record the original of `path` and what was written instead.
    pub fn save(&self, path: &Path, original: &str, wrapped: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let record = Record {
            path: path.to_path_buf(),
            original: original.to_string(),
            wrapped_sha256: sha256_hex(wrapped.as_bytes()),
        };
        let body = serde_json::to_vec_pretty(&record).map_err(std::io::Error::other)?;
        write_private(&self.file(path), &body)
    }

    /// The record of `path`, if any.
    pub fn load(&self, path: &Path) -> Option<Record> {
        let bytes = std::fs::read(self.file(path)).ok()?;
        let record: Record = serde_json::from_slice(&bytes).ok()?;
        (record.path == path).then_some(record)
    }

    /// Forget the record of `path`.
    pub fn remove(&self, path: &Path) {
        let _ = std::fs::remove_file(self.file(path));
    }
}
