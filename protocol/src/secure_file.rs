//! Writing credentials to disk: owner-only permissions from the first byte, atomically.
//!
//! Shared by both ends of the uplink: the agent stores its device key and certificate with it,
//! the control plane its CA key and bootstrap secrets.

use std::io::Write;
use std::path::Path;

/// Write `contents` to `path` with mode 0600 (owner only), via a temporary file in the same
/// directory, fsync and rename, so a crash leaves either the old file or the new one.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_with_mode(path, contents, 0o600)
}

/// [`write_private`] with another Unix mode (0644 for a root-owned copy a user may read).
pub fn write_with_mode(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per process and call, so concurrent writers of one file never share a temporary.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{file_name}.tmp-{}-{n}", std::process::id()));
    // A fresh file, never an existing one: `create_new` (O_EXCL) refuses to open through a
    // symlink planted at the temporary name, which matters when root writes into a directory
    // another user owns (the per-user user shares).
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
