//! Putting a build in place and taking it back out: every file lives beside the installed
//! binary, so each step is a rename on one file system (atomic), and the running image is never
//! written to (renaming a running executable works on Linux, macOS and Windows; overwriting it
//! does not on Windows).
//!
//! | file | what |
//! |---|---|
//! | `agent-bom-agent` | the build the service starts |
//! | `agent-bom-agent.prev` | the build that ran before the last update (the rollback target) |
//! | `.agent-bom-agent.download` | a download being checked |
//! | `agent-bom-agent.failed` | a build that was rolled back, until removed |
//!
//! On Windows the suffix goes before `.exe` (`agent-bom-agent.prev.exe`), so every file still
//! runs as a program.

use std::path::{Path, PathBuf};

/// The files of one installed binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The installed binary.
    pub exe: PathBuf,
    /// The previous build.
    pub previous: PathBuf,
    /// A download in progress.
    pub download: PathBuf,
    /// A rolled-back build.
    pub failed: PathBuf,
}

impl Paths {
    /// The files beside `exe`.
    pub fn for_exe(exe: &Path) -> Self {
        let dir = exe.parent().unwrap_or(Path::new("."));
        let stem = exe.file_stem().map_or_else(
            || "agent-bom-agent".into(),
            |s| s.to_string_lossy().into_owned(),
        );
        let ext = exe
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        Self {
            exe: exe.to_path_buf(),
            previous: dir.join(format!("{stem}.prev{ext}")),
            download: dir.join(format!(".{stem}.download{ext}")),
            failed: dir.join(format!("{stem}.failed{ext}")),
        }
    }

    /// Move the checked download in: the installed build becomes the previous one. On failure
    /// the installed build is where it was.
    pub fn swap_in(&self) -> std::io::Result<()> {
        remove_if_present(&self.previous)?;
        std::fs::rename(&self.exe, &self.previous)?;
        if let Err(e) = std::fs::rename(&self.download, &self.exe) {
            // Put the running build back before reporting.
            let _ = std::fs::rename(&self.previous, &self.exe);
            return Err(e);
        }
        Ok(())
    }

    /// Bring the previous build back; the failed one is moved aside (and removed when it no
    /// longer runs).
    pub fn roll_back(&self) -> std::io::Result<()> {
        if !self.previous.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no previous build at {}", self.previous.display()),
            ));
        }
        let _ = remove_if_present(&self.failed);
        if self.exe.exists() {
            std::fs::rename(&self.exe, &self.failed)?;
        }
        if let Err(e) = std::fs::rename(&self.previous, &self.exe) {
            let _ = std::fs::rename(&self.failed, &self.exe);
            return Err(e);
        }
        // On Windows a still-running failed build cannot be removed yet; the next update does.
        let _ = std::fs::remove_file(&self.failed);
        Ok(())
    }
}

/// Remove `path` if it exists.
pub fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_the_extension_last() {
        let p = Paths::for_exe(Path::new("/opt/agent-bom/bin/agent-bom-agent"));
        assert_eq!(
            p.previous,
            Path::new("/opt/agent-bom/bin/agent-bom-agent.prev")
        );
        assert_eq!(
            p.download,
            Path::new("/opt/agent-bom/bin/.agent-bom-agent.download")
        );
        let w = Paths::for_exe(Path::new("C:/agent-bom/agent-bom-agent.exe"));
        assert_eq!(
            w.previous,
            Path::new("C:/agent-bom/agent-bom-agent.prev.exe")
        );
        assert_eq!(
            w.failed,
            Path::new("C:/agent-bom/agent-bom-agent.failed.exe")
        );
    }

    #[test]
    fn swap_and_roll_back_move_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = Paths::for_exe(&dir.path().join("agent-bom-agent"));
        std::fs::write(&p.exe, "old").unwrap();
        std::fs::write(&p.download, "new").unwrap();
        p.swap_in().unwrap();
        assert_eq!(std::fs::read_to_string(&p.exe).unwrap(), "new");
        assert_eq!(std::fs::read_to_string(&p.previous).unwrap(), "old");
        assert!(!p.download.exists());
        p.roll_back().unwrap();
        assert_eq!(std::fs::read_to_string(&p.exe).unwrap(), "old");
        assert!(!p.previous.exists() && !p.failed.exists());
        assert!(p.roll_back().is_err(), "nothing to roll back to");
        // A swap without a download leaves the installed build in place.
        assert!(p.swap_in().is_err());
        assert_eq!(std::fs::read_to_string(&p.exe).unwrap(), "old");
    }
}
