//! Pairing a system daemon (root) with the per-user MCP proxies of the machine's people.
//!
//! Wrapped servers run as the user who started the MCP client, so their proxy cannot reach the
//! daemon's state directory (root, 0700). The daemon therefore keeps one **user share** per
//! user, `<state dir>-users/<uid>/`. The root `<state dir>-users` is root-owned 0711 (it can be
//! traversed, not listed); each user share is **root-owned**, group the user's, mode 0750,
//! so the user (and the MCP servers running as the user) can read it but never add, replace or
//! remove anything in it:
//!
//! | entry | owner, mode | what |
//! |---|---|---|
//! | `audit.sock` | root:group 0660 | a listener of the daemon that accepts only this uid (and root), checked by peer credentials |
//! | `policy.signed.json`, `ca.crt` | root 0644 | the control plane's signed policy and the pinned CA that verifies it |
//! | `quarantine.json` | root 0644 | present while the device is quarantined |
//! | `pin-approvals.json` | root 0644 | the operator's tool-change approvals |
//! | `spool/` | user 0700 | the proxies' fallback spool (`proxy-audit.ndjson`), drained by the daemon |
//!
//! Root never writes into a directory the user controls: `spool/` is only renamed in and read
//! from (without following symlinks, bounded), and events that cannot be stored go back to the
//! daemon's own fallback spool. The daemon republishes the copies at start and after every
//! command that changes them. A proxy running as a non-root user with no explicit
//! `--state-dir` finds its user share by uid and takes everything above from it; its tool
//! pins stay in the user's own state directory.

use std::path::{Path, PathBuf};

use agent_bom_state::layout::{PUBLISHED_TO_USERS, user_share_root};
// Per-user spools exist where users get shares (Unix).
#[cfg(unix)]
use agent_bom_state::layout::SHARE_SPOOL_DIR;

/// A user the daemon links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedUser {
    /// The user's uid.
    pub uid: u32,
    /// The user's primary gid (from their home directory).
    pub gid: u32,
    /// The user share.
    pub dir: PathBuf,
}

/// Create (or repair) the user shares of the owners of `homes`, skipping root. Returns
/// the users linked. Needs root; on other platforms or without root it links nobody.
pub fn prepare(state_dir: &Path, homes: &[PathBuf]) -> std::io::Result<Vec<SharedUser>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if !nix::unistd::getuid().is_root() {
            return Ok(Vec::new());
        }
        let root = user_share_root(state_dir);
        std::fs::create_dir_all(&root)?;
        refuse_symlink(&root)?;
        std::os::unix::fs::chown(&root, Some(0), Some(0))?;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o711))?;
        let mut users = Vec::new();
        for home in homes {
            let Ok(meta) = std::fs::metadata(home) else {
                continue;
            };
            let (uid, gid) = (meta.uid(), meta.gid());
            if uid == 0 || users.iter().any(|u: &SharedUser| u.uid == uid) {
                continue;
            }
            // Inside the root-owned 0711 root, so no user can have planted anything here;
            // chown and chmod by path are safe.
            let dir = root.join(uid.to_string());
            make_dir(&dir, 0, gid, 0o750)?;
            make_dir(&dir.join(SHARE_SPOOL_DIR), uid, gid, 0o700)?;
            users.push(SharedUser { uid, gid, dir });
        }
        Ok(users)
    }
    #[cfg(not(unix))]
    {
        let _ = (state_dir, homes);
        Ok(Vec::new())
    }
}

/// Create `dir` (or take the existing one, never a symlink) with this owner and mode.
#[cfg(unix)]
fn make_dir(dir: &Path, uid: u32, gid: u32, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    refuse_symlink(dir)?;
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
}

/// Copy the published files of `state_dir` into every user share (removing those that are
/// gone, e.g. `quarantine.json` after a release). Best effort per user: a failure is logged and
/// the others still get their copies.
pub fn publish(state_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(user_share_root(state_dir)) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        if let Err(e) = publish_into(state_dir, &dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot publish to a user user share");
        }
    }
}

fn publish_into(state_dir: &Path, dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        // Only root-owned user shares: nothing in them is the user's to swap.
        use std::os::unix::fs::MetadataExt;
        refuse_symlink(dir)?;
        if std::fs::metadata(dir)?.uid() != 0 {
            return Err(std::io::Error::other(
                "not owned by root; the daemon's next start repairs it",
            ));
        }
    }
    for name in PUBLISHED_TO_USERS {
        let target = dir.join(name);
        match std::fs::read(state_dir.join(name)) {
            Ok(bytes) => {
                if std::fs::read(&target).ok().as_deref() == Some(bytes.as_slice()) {
                    continue;
                }
                // Readable by the user, writable by root only.
                agent_bom_protocol::secure_file::write_with_mode(&target, &bytes, 0o644)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match std::fs::remove_file(&target) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(unix)]
fn refuse_symlink(path: &Path) -> std::io::Result<()> {
    if std::fs::symlink_metadata(path)?.file_type().is_symlink() {
        return Err(std::io::Error::other(format!(
            "{} is a symlink; refusing to use it",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use agent_bom_state::layout::QUARANTINE_FILE;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn user_share_root_is_a_sibling() {
        assert_eq!(
            user_share_root(Path::new("/var/lib/agent-bom")),
            PathBuf::from("/var/lib/agent-bom-users")
        );
    }

    #[test]
    fn prepare_and_publish_as_root() {
        if !nix::unistd::getuid().is_root() {
            eprintln!("skipped: needs root (CI runs as root)");
            return;
        }
        let top = tempfile::tempdir().unwrap();
        let state = top.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let home = top.path().join("alice");
        std::fs::create_dir(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(4242), Some(4243)).unwrap();
        let root_home = top.path().join("root");
        std::fs::create_dir(&root_home).unwrap();

        let users = prepare(&state, &[home.clone(), root_home, home.clone()]).unwrap();
        assert_eq!(users.len(), 1, "root and duplicates are skipped");
        let dir = &users[0].dir;
        let meta = std::fs::metadata(dir).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.permissions().mode() & 0o777),
            (0, 4243, 0o750),
            "the user can read the user share but not change it"
        );
        let spool = std::fs::metadata(dir.join(SHARE_SPOOL_DIR)).unwrap();
        assert_eq!(
            (spool.uid(), spool.permissions().mode() & 0o777),
            (4242, 0o700)
        );
        let root_meta = std::fs::metadata(user_share_root(&state)).unwrap();
        assert_eq!(root_meta.permissions().mode() & 0o777, 0o711);

        std::fs::write(state.join("ca.crt"), "CA").unwrap();
        std::fs::write(state.join(QUARANTINE_FILE), "{}").unwrap();
        publish(&state);
        let ca = dir.join("ca.crt");
        assert_eq!(std::fs::read_to_string(&ca).unwrap(), "CA");
        let m = std::fs::metadata(&ca).unwrap();
        assert_eq!((m.uid(), m.permissions().mode() & 0o777), (0, 0o644));
        assert!(dir.join(QUARANTINE_FILE).exists());
        // A release removes the copy.
        std::fs::remove_file(state.join(QUARANTINE_FILE)).unwrap();
        publish(&state);
        assert!(!dir.join(QUARANTINE_FILE).exists());
        // A user share a user took over (tampering, an older layout) is not written into...
        std::os::unix::fs::chown(dir, Some(4242), None).unwrap();
        std::fs::write(state.join("ca.crt"), "CA2").unwrap();
        publish(&state);
        assert_eq!(std::fs::read_to_string(&ca).unwrap(), "CA");
        // ...until the daemon's next start takes it back.
        prepare(&state, std::slice::from_ref(&home)).unwrap();
        publish(&state);
        assert_eq!(std::fs::read_to_string(&ca).unwrap(), "CA2");
    }
}
