//! Confined paths: a config file is reached from the directory it belongs to (a home, a
//! client's config directory, a project, the system root), one component at a time, relative to
//! an open directory handle, never following a symlink out of that directory.
//!
//! Why: a root agent reads and rewrites files in every user's home. A user who makes `~/.cursor`
//! (or `~/.config`, or any component on the way) a symlink to a directory they cannot read or
//! write must not get root to read it (and upload what it holds) or rewrite a file there.
//! Checking a resolved path and then opening it by name leaves a window in which the link can be
//! swapped; walking with `openat(dir, name, O_NOFOLLOW)` and resolving each symlink by hand,
//! its target again inside the root, does not. The handle of the directory that holds the file
//! is kept, so a later read or write (wrap) happens in that same directory whatever is renamed
//! meanwhile.
//!
//! Symlinks that stay inside the root are followed (dotfile managers link `~/.cursor` to
//! `~/dotfiles/cursor`); a link to another root of the same user is followed too (a home file
//! linked into `$CLAUDE_CONFIG_DIR`). The roots themselves are trusted anchors, opened as
//! given. On platforms without `openat` (Windows) the same rule is checked on the canonical
//! path, which leaves the swap window open; see `docs/security-model.md`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Why a path could not be resolved inside its root.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// A symlink leads out of every root the path belongs to.
    #[error("symlink {link} points to {target}, outside the directory it belongs to; not followed")]
    Escapes {
        /// The symlink (as reached).
        link: PathBuf,
        /// Where it points.
        target: PathBuf,
    },
    /// The path's last component is a symlink to nothing.
    #[error("dangling symlink; skipped")]
    Dangling,
    /// Too many symlinks (a loop).
    #[error("too many levels of symbolic links")]
    Loop,
    /// The file system refused.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A file reached inside its root: the directory holding it, open, and its name there.
#[derive(Debug)]
pub struct Resolved {
    #[cfg(unix)]
    dir: std::os::fd::OwnedFd,
    name: OsString,
    path: PathBuf,
}

impl Resolved {
    /// The file's path with every symlink resolved (for messages and records; never reopened
    /// by name on Unix).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's name in its directory.
    pub fn name(&self) -> &std::ffi::OsStr {
        &self.name
    }

    /// The open directory that holds the file.
    #[cfg(unix)]
    pub fn dir(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.dir.as_fd()
    }

    /// Metadata of the file itself (a symlink put there since is reported as a symlink).
    pub fn metadata(&self) -> std::io::Result<FileKind> {
        #[cfg(unix)]
        {
            use nix::sys::stat::{SFlag, fstatat};
            let st = fstatat(
                self.dir(),
                self.name.as_os_str(),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(std::io::Error::from)?;
            let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
            Ok(FileKind {
                regular: kind == SFlag::S_IFREG,
                dir: kind == SFlag::S_IFDIR,
                len: u64::try_from(st.st_size).unwrap_or(0),
            })
        }
        #[cfg(not(unix))]
        {
            let m = std::fs::symlink_metadata(&self.path)?;
            Ok(FileKind {
                regular: m.is_file(),
                dir: m.is_dir(),
                len: m.len(),
            })
        }
    }

    /// Open the file for reading: never through a symlink, never blocking on a FIFO.
    pub fn open(&self) -> std::io::Result<std::fs::File> {
        #[cfg(unix)]
        {
            use nix::fcntl::{OFlag, openat};
            let fd = openat(
                self.dir(),
                self.name.as_os_str(),
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(std::io::Error::from)?;
            Ok(std::fs::File::from(fd))
        }
        #[cfg(not(unix))]
        {
            std::fs::File::open(&self.path)
        }
    }
}

/// What [`Resolved::metadata`] tells.
#[derive(Debug, Clone, Copy)]
pub struct FileKind {
    /// A regular file.
    pub regular: bool,
    /// A directory.
    pub dir: bool,
    /// Size in bytes.
    pub len: u64,
}

/// The roots that are anchors: those not inside another root (a base inside the home is
/// reached from the home, so a symlinked `~/.config` cannot lead out).
fn anchors(roots: &[PathBuf]) -> Vec<&Path> {
    roots
        .iter()
        .map(PathBuf::as_path)
        .filter(|r| {
            !roots
                .iter()
                .any(|other| other.as_path() != *r && r.starts_with(other))
        })
        .collect()
}

/// Resolve `path` inside the root (of `roots`) it lies in. `Ok(None)`: some component does not
/// exist. Without a root that contains `path`, the file's own directory is the root: its last
/// component may link only within that directory.
pub fn resolve(path: &Path, roots: &[PathBuf]) -> Result<Option<Resolved>, ConfineError> {
    let anchors = anchors(roots);
    let start = anchors
        .iter()
        .filter(|a| path.starts_with(a))
        .min_by_key(|a| a.as_os_str().len())
        .map(|a| a.to_path_buf())
        .or_else(|| path.parent().map(Path::to_path_buf));
    let Some(start) = start else {
        return Ok(None);
    };
    let rel = path.strip_prefix(&start).unwrap_or(path).to_path_buf();
    let mut anchors: Vec<PathBuf> = anchors.iter().map(|a| a.to_path_buf()).collect();
    if !anchors.contains(&start) {
        anchors.push(start.clone());
    }
    imp::resolve(&start, &rel, &anchors)
}

/// True when `dir` exists and is reached inside its root (for choosing what to watch).
pub fn is_inside(dir: &Path, roots: &[PathBuf]) -> bool {
    matches!(resolve(dir, roots), Ok(Some(_)))
}

#[cfg(unix)]
mod imp {
    use std::collections::VecDeque;
    use std::ffi::OsString;
    use std::os::fd::{AsFd, OwnedFd};
    use std::path::{Path, PathBuf};

    use nix::errno::Errno;
    use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
    use nix::sys::stat::{Mode, SFlag, fstatat};

    use super::{ConfineError, Resolved};

    /// Most symlinks followed while resolving one path (Linux's own limit).
    const MAX_LINKS: usize = 40;

    fn components(p: &Path) -> Vec<OsString> {
        p.components()
            .filter_map(|c| match c {
                std::path::Component::Normal(n) => Some(n.to_os_string()),
                std::path::Component::ParentDir => Some(OsString::from("..")),
                _ => None,
            })
            .collect()
    }

    fn open_dir_at(dir: impl AsFd, name: &std::ffi::OsStr) -> nix::Result<OwnedFd> {
        openat(
            dir,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
    }

    /// An anchor, opened as given (the roots are trusted), with its path.
    fn open_anchor(anchor: &Path) -> Result<Option<(OwnedFd, PathBuf)>, ConfineError> {
        let fd = match nix::fcntl::open(
            anchor,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(None),
            Err(e) => return Err(std::io::Error::from(e).into()),
        };
        Ok(Some((fd, anchor.to_path_buf())))
    }

    pub(super) fn resolve(
        start: &Path,
        rel: &Path,
        anchors: &[PathBuf],
    ) -> Result<Option<Resolved>, ConfineError> {
        let Some((fd, mut real)) = open_anchor(start)? else {
            return Ok(None);
        };
        // `dirs[0]` is the anchor; each further entry a directory below it, named in `names`.
        let mut dirs: Vec<OwnedFd> = vec![fd];
        let mut names: Vec<OsString> = Vec::new();
        let mut todo: VecDeque<OsString> = components(rel).into();
        let mut links = 0;
        let mut via_last_link = false;
        while let Some(name) = todo.pop_front() {
            if name == ".." {
                if names.pop().is_none() {
                    return Err(ConfineError::Escapes {
                        link: real.clone(),
                        target: real.join(".."),
                    });
                }
                dirs.pop();
                continue;
            }
            let Some(cur) = dirs.last() else {
                return Ok(None);
            };
            let st = match fstatat(cur.as_fd(), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::ENOENT | Errno::ENOTDIR) if via_last_link => {
                    return Err(ConfineError::Dangling);
                }
                Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(None),
                Err(e) => return Err(std::io::Error::from(e).into()),
            };
            let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
            if kind == SFlag::S_IFLNK {
                links += 1;
                if links > MAX_LINKS {
                    return Err(ConfineError::Loop);
                }
                via_last_link |= todo.is_empty();
                let target = PathBuf::from(
                    readlinkat(cur.as_fd(), name.as_os_str()).map_err(std::io::Error::from)?,
                );
                let mut expanded: VecDeque<OsString> = if target.is_absolute() {
                    // Absolute: it must lie inside an anchor; continue from there.
                    let inside = anchors.iter().find_map(|a| {
                        let canonical = std::fs::canonicalize(a).ok();
                        target
                            .strip_prefix(a)
                            .ok()
                            .or_else(|| {
                                canonical
                                    .as_deref()
                                    .and_then(|c| target.strip_prefix(c).ok())
                            })
                            .map(|r| (a.clone(), r.to_path_buf()))
                    });
                    let Some((anchor, rest)) = inside else {
                        let link = names
                            .iter()
                            .fold(real.clone(), |p, n| p.join(n))
                            .join(&name);
                        return Err(ConfineError::Escapes { link, target });
                    };
                    let Some((fd, anchor_real)) = open_anchor(&anchor)? else {
                        return Ok(None);
                    };
                    dirs = vec![fd];
                    names.clear();
                    real = anchor_real;
                    components(&rest).into()
                } else {
                    // Relative to the link's directory; a `..` above the anchor is refused when
                    // it is reached.
                    components(&target).into()
                };
                while let Some(c) = expanded.pop_back() {
                    todo.push_front(c);
                }
                continue;
            }
            if todo.is_empty() {
                let Some(dir) = dirs.pop() else {
                    return Ok(None);
                };
                // The anchor's canonical path only now that a file was found: most candidates
                // of a scan do not exist, and canonicalizing costs a stat per component.
                let real = std::fs::canonicalize(&real).unwrap_or(real);
                let path = names.iter().fold(real, |p, n| p.join(n)).join(&name);
                return Ok(Some(Resolved { dir, name, path }));
            }
            if kind != SFlag::S_IFDIR {
                return Ok(None);
            }
            let fd = match open_dir_at(cur.as_fd(), name.as_os_str()) {
                Ok(fd) => fd,
                // Swapped for a symlink or removed since the stat: resolve again next time.
                Err(Errno::ELOOP | Errno::ENOTDIR | Errno::ENOENT) => return Ok(None),
                Err(e) => return Err(std::io::Error::from(e).into()),
            };
            dirs.push(fd);
            names.push(name);
        }
        // The path named a root itself, or ended in `..`.
        Ok(None)
    }
}

#[cfg(not(unix))]
mod imp {
    use std::path::{Path, PathBuf};

    use super::{ConfineError, Resolved};

    /// Without directory handles: resolve everything, then check the result is inside an
    /// anchor (the link can still be swapped between this check and the use).
    pub(super) fn resolve(
        start: &Path,
        rel: &Path,
        anchors: &[PathBuf],
    ) -> Result<Option<Resolved>, ConfineError> {
        let path = start.join(rel);
        let real = match std::fs::canonicalize(&path) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return match std::fs::symlink_metadata(&path) {
                    Ok(_) => Err(ConfineError::Dangling),
                    Err(_) => Ok(None),
                };
            }
            Err(e) => return Err(e.into()),
        };
        let inside = anchors
            .iter()
            .filter_map(|a| std::fs::canonicalize(a).ok())
            .any(|a| real.starts_with(a));
        if !inside {
            return Err(ConfineError::Escapes {
                link: path,
                target: real,
            });
        }
        let name = real
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        Ok(Some(Resolved { name, path: real }))
    }
}

#[cfg(all(test, unix))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "{}").unwrap();
    }

    #[test]
    fn links_inside_resolve_links_out_do_not() {
        let root = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let r = root.path();
        write(&r.join("dot/cursor/mcp.json"));
        write(&out.path().join("x/mcp.json"));
        symlink("dot/cursor", r.join(".cursor")).unwrap();
        symlink(out.path().join("x"), r.join(".evil")).unwrap();
        symlink("../../../../../../../../etc", r.join(".up")).unwrap();
        symlink(r.join("dot/cursor/mcp.json"), r.join("abs.json")).unwrap();
        symlink(r.join("missing"), r.join("dangling.json")).unwrap();
        symlink("loop", r.join("loop")).unwrap();
        let roots = vec![r.to_path_buf()];

        let ok = resolve(&r.join(".cursor/mcp.json"), &roots)
            .unwrap()
            .unwrap();
        assert!(
            ok.path().ends_with("dot/cursor/mcp.json"),
            "{:?}",
            ok.path()
        );
        assert!(ok.metadata().unwrap().regular);
        assert!(resolve(&r.join("abs.json"), &roots).unwrap().is_some());
        for escaping in [".evil/mcp.json", ".up/passwd"] {
            assert!(
                matches!(
                    resolve(&r.join(escaping), &roots),
                    Err(ConfineError::Escapes { .. })
                ),
                "{escaping}"
            );
        }
        assert!(matches!(
            resolve(&r.join("dangling.json"), &roots),
            Err(ConfineError::Dangling)
        ));
        assert!(matches!(
            resolve(&r.join("loop"), &roots),
            Err(ConfineError::Loop)
        ));
        assert!(resolve(&r.join("nope/mcp.json"), &roots).unwrap().is_none());
        // A base inside the root is reached from the root: `.config` linking out is refused
        // even when `.config` itself is listed as a root.
        symlink(out.path(), r.join(".config")).unwrap();
        let with_base = vec![r.to_path_buf(), r.join(".config")];
        assert!(matches!(
            resolve(&r.join(".config/x/mcp.json"), &with_base),
            Err(ConfineError::Escapes { .. })
        ));
        assert!(is_inside(&r.join("dot"), &roots));
        assert!(!is_inside(&r.join(".evil"), &roots));
    }

    /// The handle keeps the directory: swapping a component for a symlink after resolving does
    /// not redirect a read.
    #[test]
    fn a_swap_after_resolving_does_not_redirect() {
        let root = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join(".cursor")).unwrap();
        std::fs::write(r.join(".cursor/mcp.json"), "mine").unwrap();
        std::fs::write(out.path().join("mcp.json"), "root's").unwrap();
        let resolved = resolve(&r.join(".cursor/mcp.json"), &[r.to_path_buf()])
            .unwrap()
            .unwrap();
        std::fs::rename(r.join(".cursor"), r.join(".moved")).unwrap();
        symlink(out.path(), r.join(".cursor")).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut resolved.open().unwrap(), &mut text).unwrap();
        assert_eq!(text, "mine");
    }
}
