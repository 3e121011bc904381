//! The fixture home and what a scan of it must find.

use std::path::PathBuf;

/// Root of the fixtures directory.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The Linux fixture home.
pub fn home_linux() -> PathBuf {
    fixtures_dir().join("home-linux")
}

/// The fixture project (one valid and one broken project file).
pub fn project_a() -> PathBuf {
    fixtures_dir().join("project-a")
}

/// Markers of every secret value in the fixtures; none may appear in any output.
pub const SECRET_MARKERS: &[&str] = &["FIXTURE-SECRET", "FIXTURESECRET", "ghp_"];

/// One expected server: (client, name, scope, transport).
pub type ExpectedServer = (&'static str, &'static str, &'static str, &'static str);

/// Every server a scan of [`home_linux`] with [`project_a`] must report, sorted.
pub const EXPECTED_SERVERS: &[ExpectedServer] = &[
    ("claude-code", "postgres", "project", "stdio"),
    ("claude-code", "sentry", "user", "streamable-http"),
    ("claude-desktop", "filesystem", "user", "stdio"),
    ("claude-desktop", "github", "user", "stdio"),
    ("cursor", "linear", "user", "sse"),
    ("vscode", "memory", "user", "stdio"),
    ("vscode", "playwright", "project", "stdio"),
    ("vscode", "remote-docs", "user", "streamable-http"),
];

/// Clients the scan must list.
pub const EXPECTED_CLIENTS: &[&str] = &["claude-code", "claude-desktop", "cursor", "vscode"];

/// Extract (client, name, scope, transport) from a JSON array of servers, sorted.
pub fn server_tuples(servers: &serde_json::Value) -> Vec<(String, String, String, String)> {
    let mut out: Vec<_> = servers
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|s| {
            let f = |k: &str| s[k].as_str().unwrap_or_default().to_string();
            (f("client"), f("name"), f("scope"), f("transport"))
        })
        .collect();
    out.sort();
    out
}

/// The expected tuples, owned.
pub fn expected_tuples() -> Vec<(String, String, String, String)> {
    EXPECTED_SERVERS
        .iter()
        .map(|(c, n, s, t)| (c.to_string(), n.to_string(), s.to_string(), t.to_string()))
        .collect()
}

/// Panic if any secret marker occurs in `text`.
pub fn assert_no_secrets(text: &str, context: &str) {
    for marker in SECRET_MARKERS {
        assert!(
            !text.contains(marker),
            "{context}: secret marker {marker:?} leaked into output:\n{text}"
        );
    }
}

/// Copy a fixture tree into a fresh temporary directory (so a test can edit it).
pub fn copy_to_temp(src: &std::path::Path) -> tempfile::TempDir {
    let dst = tempfile::tempdir().expect("temp dir");
    copy_tree(src, dst.path());
    dst
}

fn copy_tree(src: &std::path::Path, dst: &std::path::Path) {
    std::fs::create_dir_all(dst).expect("create dir");
    for entry in std::fs::read_dir(src).expect("read fixture dir") {
        let entry = entry.expect("dir entry");
        let target = dst.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy fixture file");
        }
    }
}
