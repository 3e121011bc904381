//! Atomic replacement of a config file that its client may rewrite at any moment, relative to
//! the directory handle discovery resolved.

use std::io::Write;

use agent_bom_discovery::confine::Resolved;

/// Replace the file `target` names with `new` if it still holds `expected`: the new content
/// goes to a temporary file in the same directory (same permissions, owner and group, fsynced),
/// the file is read again, and only if it is unchanged is the temporary renamed over it.
/// `Ok(false)`: it changed; re-read and retry.
///
/// Everything happens relative to the directory handle discovery resolved (`openat`,
/// `renameat`, never following a symlink): a user who swaps a directory of the path for a
/// symlink after it was resolved cannot make a root daemon write elsewhere. A dotfile
/// manager's symlink was already followed by the resolution, so the link stays a link and the
/// target gets the edit.
///
/// The owner matters when the daemon runs as root and edits a user's config: a rename would
/// otherwise leave a root-owned file the user's client can no longer rewrite. When the owner
/// cannot be kept (an unprivileged process editing someone else's file), nothing is replaced.
///
/// The window between the last comparison and the rename is a few system calls; a client that
/// writes inside it loses that write, exactly as when two editors save the same file. Clients
/// that rewrite their file (Claude Code) do so with the same rename pattern, so the file is
/// never torn.
pub fn replace_if_unchanged(
    target: &Resolved,
    expected: &[u8],
    new: &[u8],
) -> std::io::Result<bool> {
    let name = target.name().to_string_lossy().into_owned();
    let tmp = format!(".{name}.agent-bom-{}", unique_suffix());
    let original = target.open()?.metadata()?;
    if !original.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let result = (|| {
        let mut file = imp::create_fresh(target, &tmp)?;
        keep_owner(&file, &original)?;
        file.set_permissions(original.permissions())?;
        file.write_all(new)?;
        file.sync_all()?;
        drop(file);
        let mut current = Vec::new();
        std::io::Read::read_to_end(&mut target.open()?, &mut current)?;
        if current != expected {
            return Ok(false);
        }
        imp::rename_over(target, &tmp)?;
        Ok(true)
    })();
    if !matches!(result, Ok(true)) {
        imp::remove(target, &tmp);
    }
    result
}

#[cfg(unix)]
mod imp {
    use std::ffi::OsStr;

    use agent_bom_discovery::confine::Resolved;
    use nix::fcntl::{OFlag, openat, renameat};
    use nix::sys::stat::Mode;
    use nix::unistd::{UnlinkatFlags, unlinkat};

    /// Create `name` as a new file in the target's directory (never open an existing one,
    /// never through a symlink), mode 0600 until the original's mode is applied.
    pub(super) fn create_fresh(target: &Resolved, name: &str) -> std::io::Result<std::fs::File> {
        let fd = openat(
            target.dir(),
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(std::io::Error::from)?;
        Ok(std::fs::File::from(fd))
    }

    pub(super) fn rename_over(target: &Resolved, tmp: &str) -> std::io::Result<()> {
        renameat(target.dir(), tmp, target.dir(), OsStr::new(target.name()))
            .map_err(std::io::Error::from)
    }

    pub(super) fn remove(target: &Resolved, tmp: &str) {
        let _ = unlinkat(target.dir(), tmp, UnlinkatFlags::NoRemoveDir);
    }
}

#[cfg(not(unix))]
mod imp {
    use agent_bom_discovery::confine::Resolved;

    fn in_dir(target: &Resolved, name: &str) -> std::path::PathBuf {
        target
            .path()
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join(name)
    }

    pub(super) fn create_fresh(target: &Resolved, name: &str) -> std::io::Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(in_dir(target, name))
    }

    pub(super) fn rename_over(target: &Resolved, tmp: &str) -> std::io::Result<()> {
        std::fs::rename(in_dir(target, tmp), target.path())
    }

    pub(super) fn remove(target: &Resolved, tmp: &str) {
        let _ = std::fs::remove_file(in_dir(target, tmp));
    }
}

/// A name part no other process can predict: the directory may belong to the user whose
/// config a root daemon edits, and a predictable name invites a planted symlink.
fn unique_suffix() -> String {
    let mut bytes = [0u8; 12];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    format!("{}-{}", std::process::id(), hex::encode(bytes))
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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use agent_bom_discovery::confine;

    fn resolved(dir: &std::path::Path, path: &std::path::Path) -> Resolved {
        confine::resolve(path, &[dir.to_path_buf()])
            .unwrap()
            .unwrap()
    }

    #[test]
    fn replaces_only_an_unchanged_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        std::fs::write(&path, "a").unwrap();
        let target = resolved(dir.path(), &path);
        assert!(!replace_if_unchanged(&target, b"other", b"b").unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"a");
        assert!(replace_if_unchanged(&target, b"a", b"b").unwrap());
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
        assert!(replace_if_unchanged(&resolved(dir.path(), &path), b"a", b"b").unwrap());
        let m = std::fs::metadata(&path).unwrap();
        assert_eq!((m.uid(), m.gid()), (uid, gid));
        assert_eq!(m.permissions().mode() & 0o7777, 0o640);
        assert_eq!(std::fs::read(&path).unwrap(), b"b");
    }

    /// A directory of the path swapped for a symlink after resolving (a user racing a root
    /// daemon) does not move the write: it lands in the directory that was resolved.
    #[cfg(unix)]
    #[test]
    fn a_swapped_directory_does_not_redirect_the_write() {
        let home = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let cursor = home.path().join(".cursor");
        std::fs::create_dir_all(&cursor).unwrap();
        std::fs::write(cursor.join("mcp.json"), "a").unwrap();
        std::fs::write(elsewhere.path().join("mcp.json"), "a").unwrap();
        let target = resolved(home.path(), &cursor.join("mcp.json"));
        std::fs::rename(&cursor, home.path().join(".cursor-moved")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), &cursor).unwrap();
        assert!(replace_if_unchanged(&target, b"a", b"b").unwrap());
        assert_eq!(
            std::fs::read(elsewhere.path().join("mcp.json")).unwrap(),
            b"a"
        );
        assert_eq!(
            std::fs::read(home.path().join(".cursor-moved/mcp.json")).unwrap(),
            b"b"
        );
    }
}
