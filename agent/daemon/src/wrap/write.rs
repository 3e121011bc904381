//! Atomic replacement of a config file that its client may rewrite at any moment.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The file a path finally names (a dotfile manager's symlink is followed, so the link stays a
/// link and the target gets the edit).
pub fn resolve(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Replace `path` with `new` if it still holds `expected`: the new content goes to a temporary
/// file in the same directory (same permissions, owner and group, fsynced), the file is read
/// again, and only if it is unchanged is the temporary renamed over it. `Ok(false)`: it changed;
/// re-read and retry.
///
/// The owner matters when the daemon runs as root and edits a user's config: a rename would
/// otherwise leave a root-owned file the user's client can no longer rewrite. When the owner
/// cannot be kept (an unprivileged process editing someone else's file), nothing is replaced.
///
/// The window between the last comparison and the rename is a few system calls; a client that
/// writes inside it loses that write, exactly as when two editors save the same file. Clients
/// that rewrite their file (Claude Code) do so with the same rename pattern, so the file is
/// never torn.
pub fn replace_if_unchanged(path: &Path, expected: &[u8], new: &[u8]) -> std::io::Result<bool> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.agent-bom-{}", unique_suffix()));
    let metadata = std::fs::metadata(path)?;
    let result = (|| {
        let mut file = create_fresh(&tmp)?;
        keep_owner(&file, &metadata)?;
        file.set_permissions(metadata.permissions())?;
        file.write_all(new)?;
        file.sync_all()?;
        drop(file);
        if std::fs::read(path)? != expected {
            return Ok(false);
        }
        std::fs::rename(&tmp, path)?;
        Ok(true)
    })();
    if !matches!(result, Ok(true)) {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A name part no other process can predict: the directory may belong to the user whose
/// config a root daemon edits, and a predictable name invites a planted symlink.
fn unique_suffix() -> String {
    let mut bytes = [0u8; 12];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    format!("{}-{}", std::process::id(), hex::encode(bytes))
}

/// Create `path` as a new file (never open an existing one, never through a symlink), mode
/// 0600 until the original's mode is applied.
fn create_fresh(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(nix::libc::O_NOFOLLOW);
    }
    options.open(path)
}

/// Give the temporary file the owner and group of the file it replaces (before the mode, since
/// changing the owner may clear set-id bits).
#[cfg(unix)]
fn keep_owner(file: &std::fs::File, original: &std::fs::Metadata) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let current = file.metadata()?;
    if (current.uid(), current.gid()) == (original.uid(), original.gid()) {
        return Ok(());
    }
    std::os::unix::fs::fchown(file, Some(original.uid()), Some(original.gid()))
}

#[cfg(not(unix))]
fn keep_owner(_file: &std::fs::File, _original: &std::fs::Metadata) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_an_unchanged_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        std::fs::write(&path, "a").unwrap();
        assert!(!replace_if_unchanged(&path, b"other", b"b").unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"a");
        assert!(replace_if_unchanged(&path, b"a", b"b").unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"b");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp left"
        );
    }

    /// As root (CI), a user's file keeps its owner, group and mode across the replace.
    #[cfg(unix)]
    #[test]
    fn keeps_owner_group_and_mode() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        std::fs::write(&path, "a").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let root = nix::unistd::Uid::effective().is_root();
        let (uid, gid) = if root {
            (4321, 4322)
        } else {
            let m = std::fs::metadata(&path).unwrap();
            (m.uid(), m.gid())
        };
        if root {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
        }
        assert!(replace_if_unchanged(&path, b"a", b"b").unwrap());
        let m = std::fs::metadata(&path).unwrap();
        assert_eq!((m.uid(), m.gid()), (uid, gid));
        assert_eq!(m.permissions().mode() & 0o7777, 0o640);
        assert_eq!(std::fs::read(&path).unwrap(), b"b");
    }
}
