//! Bounded directory walks: glob segments of catalog paths and the search for project
//! directories under workspace roots. Symlinked directories are never followed, well-known
//! heavy directories are skipped, and every walk stops at its depth and directory budget.

use std::path::{Path, PathBuf};

/// Directories never descended into.
pub const SKIPPED_DIRS: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    "node_modules",
    "target",
    ".venv",
    "venv",
    "__pycache__",
    ".tox",
    ".mypy_cache",
    ".pytest_cache",
    ".gradle",
    ".idea",
    "dist",
    "build",
    ".next",
    ".cache",
    "vendor",
    "Pods",
    "DerivedData",
    ".terraform",
    "Library",
    "AppData",
];

/// Bounds of a walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkLimits {
    /// Deepest directory level below a workspace root that can be a project.
    pub max_depth: usize,
    /// Directories visited per walk, at most.
    pub max_dirs: usize,
    /// Files matched per glob, at most.
    pub max_matches: usize,
}

impl Default for WalkLimits {
    fn default() -> Self {
        Self {
            max_depth: 4,
            max_dirs: 20_000,
            max_matches: 1_000,
        }
    }
}

/// True when a catalog path has glob segments.
pub fn is_pattern(rel: &str) -> bool {
    rel.split('/').any(|seg| seg.contains('*'))
}

/// `base` joined with a `/`-separated relative path.
pub fn join_rel(base: &Path, rel: &str) -> PathBuf {
    rel.split('/')
        .fold(base.to_path_buf(), |p, part| p.join(part))
}

fn segment_matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        Some((prefix, suffix)) => {
            name.len() >= prefix.len() + suffix.len()
                && name.starts_with(prefix)
                && name.ends_with(suffix)
        }
        None => pattern == name,
    }
}

/// Real (non-symlink) subdirectories of `dir`, sorted, skipping [`SKIPPED_DIRS`] and, when
/// `skip_hidden`, dot directories.
fn subdirs(dir: &Path, skip_hidden: bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let hidden = skip_hidden && name.starts_with('.');
            !(SKIPPED_DIRS.contains(&name.as_ref()) || hidden)
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Files under `base` matching `rel`, whose segments may be `*`/`*.ext` (one level) or `**`
/// (any depth up to [`WalkLimits::max_depth`]).
pub fn expand(base: &Path, rel: &str, limits: &WalkLimits) -> Vec<PathBuf> {
    let segments: Vec<&str> = rel.split('/').collect();
    let mut out = Vec::new();
    let mut budget = limits.max_dirs;
    expand_from(base, &segments, limits, 0, &mut budget, &mut out);
    out.truncate(limits.max_matches);
    out
}

fn expand_from(
    dir: &Path,
    segments: &[&str],
    limits: &WalkLimits,
    depth: usize,
    budget: &mut usize,
    out: &mut Vec<PathBuf>,
) {
    if *budget == 0 || out.len() >= limits.max_matches {
        return;
    }
    *budget -= 1;
    let Some((first, rest)) = segments.split_first() else {
        return;
    };
    if *first == "**" {
        // Zero levels, then one more level at a time.
        expand_from(dir, rest, limits, depth, budget, out);
        if depth < limits.max_depth {
            for sub in subdirs(dir, false) {
                expand_from(&sub, segments, limits, depth + 1, budget, out);
            }
        }
        return;
    }
    if rest.is_empty() {
        if first.contains('*') {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .filter(|e| !e.file_type().is_ok_and(|t| t.is_dir()))
                .filter(|e| segment_matches(first, &e.file_name().to_string_lossy()))
                .map(|e| e.path())
                .collect();
            files.sort();
            out.extend(files);
        } else {
            let path = dir.join(first);
            if std::fs::symlink_metadata(&path).is_ok() {
                out.push(path);
            }
        }
        return;
    }
    if first.contains('*') {
        for sub in subdirs(dir, false) {
            let name = sub
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if segment_matches(first, &name) {
                expand_from(&sub, rest, limits, depth, budget, out);
            }
        }
    } else {
        let next = dir.join(first);
        if std::fs::symlink_metadata(&next).is_ok_and(|m| m.is_dir()) {
            expand_from(&next, rest, limits, depth, budget, out);
        }
    }
}

/// Directories under `root` (including `root`) that hold at least one of `markers` (project
/// file paths relative to a project directory), walking at most `max_depth` levels and
/// `max_dirs` directories, skipping hidden and heavy directories.
pub fn find_projects(root: &Path, markers: &[&str], limits: &WalkLimits) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut queue = std::collections::VecDeque::from([(root.to_path_buf(), 0usize)]);
    let mut visited = 0;
    while let Some((dir, depth)) = queue.pop_front() {
        visited += 1;
        if visited > limits.max_dirs {
            tracing::warn!(root = %root.display(), limit = limits.max_dirs, "project walk stopped at its directory budget");
            break;
        }
        let is_project = markers.iter().any(|m| {
            if is_pattern(m) {
                !expand(
                    &dir,
                    m,
                    &WalkLimits {
                        max_depth: 0,
                        max_dirs: 16,
                        max_matches: 1,
                    },
                )
                .is_empty()
            } else {
                std::fs::symlink_metadata(join_rel(&dir, m)).is_ok()
            }
        });
        if is_project {
            out.push(dir.clone());
        }
        if depth < limits.max_depth {
            for sub in subdirs(&dir, true) {
                queue.push_back((sub, depth + 1));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "{}").unwrap();
    }

    #[test]
    fn globs_match_one_level_and_any_depth() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("Code/User/profiles/a1/mcp.json"));
        touch(&d.path().join("Code/User/profiles/b2/mcp.json"));
        touch(&d.path().join("Code/User/profiles/b2/other.json"));
        let got = expand(
            d.path(),
            "Code/User/profiles/*/mcp.json",
            &WalkLimits::default(),
        );
        assert_eq!(got.len(), 2);
        touch(&d.path().join("p/cache/x/1.0/.mcp.json"));
        touch(&d.path().join("p/.mcp.json"));
        touch(&d.path().join("p/node_modules/y/.mcp.json"));
        let got = expand(d.path(), "p/**/.mcp.json", &WalkLimits::default());
        assert_eq!(got.len(), 2, "{got:?}");
        touch(&d.path().join("s/a.yaml"));
        touch(&d.path().join("s/b.json"));
        assert_eq!(expand(d.path(), "s/*", &WalkLimits::default()).len(), 2);
        assert_eq!(
            expand(d.path(), "s/*.yaml", &WalkLimits::default()).len(),
            1
        );
        assert!(expand(d.path(), "missing/*", &WalkLimits::default()).is_empty());
    }

    #[test]
    fn project_walk_is_bounded() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("a/.mcp.json"));
        touch(&d.path().join("b/c/.vscode/mcp.json"));
        touch(&d.path().join("node_modules/x/.mcp.json"));
        touch(&d.path().join(".hidden/.mcp.json"));
        touch(&d.path().join("1/2/3/4/5/6/.mcp.json"));
        let markers = [".mcp.json", ".vscode/mcp.json"];
        let found = find_projects(d.path(), &markers, &WalkLimits::default());
        let rel: Vec<String> = found
            .iter()
            .map(|p| p.strip_prefix(d.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(rel, ["a", "b/c"]);
        let tight = WalkLimits {
            max_dirs: 2,
            ..WalkLimits::default()
        };
        assert!(find_projects(d.path(), &markers, &tight).len() <= 1);
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_directories_are_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        touch(&outside.path().join(".mcp.json"));
        std::os::unix::fs::symlink(outside.path(), d.path().join("link")).unwrap();
        assert!(find_projects(d.path(), &[".mcp.json"], &WalkLimits::default()).is_empty());
        assert!(expand(d.path(), "*/.mcp.json", &WalkLimits::default()).is_empty());
    }
}
