//! Fixture homes in the Linux, macOS and Windows layouts, one config per client location in that
//! client's own format, scanned by the real binary with `--os` and `--home`: every server must be
//! found, with no errors and no secret in the output. Paths here are written out literally (as
//! the clients document them), independent of the catalog code they test.

// Integration tests report failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

// Under env names that say nothing (`T`, `K`), the value must look generated to be flagged: a
// sorted `0123456789abcdef` no longer does (the entropy rule judges how a stretch mixes its
// characters), a random tail does.
const SECRET: &str = "FIXTURE-SECRET-7Qz2xK9mLp4Rt8Vw3c";

/// How a client writes one server named `name`.
#[derive(Clone, Copy)]
enum Shape {
    McpServers,
    VscodeServers,
    VscodeSettings,
    ClaudeCodeUser,
    Zed,
    ContinueYaml,
    CodexToml,
    GooseYaml,
    OpenCode,
    Crush,
    Amp,
    DockerRegistry,
}

fn content(shape: Shape, name: &str) -> String {
    match shape {
        Shape::McpServers => format!(
            r#"{{ // comment
  "mcpServers": {{ "{name}": {{ "command": "npx", "args": ["-y", "pkg@1.0.0"], "env": {{ "API_TOKEN": "{SECRET}" }} }}, }} }}"#
        ),
        Shape::VscodeServers => format!(
            r#"{{ "servers": {{ "{name}": {{ "type": "http", "url": "https://h/mcp", "headers": {{ "Authorization": "Bearer {SECRET}" }} }} }}, }}"#
        ),
        Shape::VscodeSettings => format!(
            r#"{{ "editor.fontSize": 12, "mcp": {{ "servers": {{ "{name}": {{ "command": "node", "env": {{ "KEY": "{SECRET}" }} }} }} }} }}"#
        ),
        Shape::ClaudeCodeUser => format!(
            r#"{{ "mcpServers": {{ "{name}": {{ "type": "stdio", "command": "uvx", "args": ["x==1.0"], "env": {{ "T": "{SECRET}" }} }} }},
   "projects": {{ "/src/app": {{ "mcpServers": {{ "{name}-project": {{ "type": "sse", "url": "https://h/sse" }} }} }} }} }}"#
        ),
        Shape::Zed => format!(
            r#"{{ /* zed */ "theme": "One", "context_servers": {{ "{name}": {{ "command": {{ "path": "node", "args": ["s.js"], "env": {{ "K": "{SECRET}" }} }} }},
   "{name}-flat": {{ "command": "uvx", "args": ["y==2.0"] }} }} }}"#
        ),
        Shape::ContinueYaml => format!(
            "name: Local\nversion: 0.0.1\nmcpServers:\n  - name: {name}\n    command: npx\n    args: [\"-y\", \"pkg@1.0.0\"]\n    env:\n      TOKEN: {SECRET}\n"
        ),
        Shape::CodexToml => format!(
            "model = \"o3\"\n[mcp_servers.{name}]\ncommand = \"npx\"\nargs = [\"-y\", \"pkg@1.0.0\"]\n[mcp_servers.{name}.env]\nTOKEN = \"{SECRET}\"\n"
        ),
        Shape::GooseYaml => format!(
            "GOOSE_PROVIDER: openai\nextensions:\n  developer:\n    type: builtin\n    enabled: true\n  {name}:\n    type: stdio\n    cmd: uvx\n    args: [pkg==1.0]\n    envs:\n      TOKEN: {SECRET}\n    enabled: true\n"
        ),
        Shape::OpenCode => format!(
            r#"{{ "$schema": "https://opencode.ai/config.json", "mcp": {{ "{name}": {{ "type": "local", "command": ["npx", "-y", "pkg@1.0.0"], "environment": {{ "T": "{SECRET}" }}, "enabled": true }} }} }}"#
        ),
        Shape::Crush => format!(
            r#"{{ "mcp": {{ "{name}": {{ "type": "http", "url": "https://h/mcp", "headers": {{ "Authorization": "Bearer {SECRET}" }} }} }} }}"#
        ),
        Shape::Amp => format!(
            r#"{{ "amp.mcpServers": {{ "{name}": {{ "command": "npx", "args": ["pkg@1.0.0"], "env": {{ "T": "{SECRET}" }} }} }} }}"#
        ),
        Shape::DockerRegistry => format!("registry:\n  {name}:\n    ref: \"\"\n"),
    }
}

/// (client, shape, linux path, macOS path, Windows path) relative to the home.
const PER_USER: &[(&str, Shape, &str, &str, &str)] = &[
    (
        "claude-desktop",
        Shape::McpServers,
        ".config/Claude/claude_desktop_config.json",
        "Library/Application Support/Claude/claude_desktop_config.json",
        "AppData/Roaming/Claude/claude_desktop_config.json",
    ),
    (
        "claude-code",
        Shape::ClaudeCodeUser,
        ".claude.json",
        ".claude.json",
        ".claude.json",
    ),
    (
        "claude-code",
        Shape::McpServers,
        ".claude/settings.json",
        ".claude/settings.json",
        ".claude/settings.json",
    ),
    (
        "cursor",
        Shape::McpServers,
        ".cursor/mcp.json",
        ".cursor/mcp.json",
        ".cursor/mcp.json",
    ),
    (
        "vscode",
        Shape::VscodeServers,
        ".config/Code/User/mcp.json",
        "Library/Application Support/Code/User/mcp.json",
        "AppData/Roaming/Code/User/mcp.json",
    ),
    (
        "vscode",
        Shape::VscodeServers,
        ".config/Code/User/profiles/p1/mcp.json",
        "Library/Application Support/Code/User/profiles/p1/mcp.json",
        "AppData/Roaming/Code/User/profiles/p1/mcp.json",
    ),
    (
        "vscode",
        Shape::VscodeSettings,
        ".config/Code/User/settings.json",
        "Library/Application Support/Code/User/settings.json",
        "AppData/Roaming/Code/User/settings.json",
    ),
    (
        "vscode",
        Shape::VscodeServers,
        ".vscode-server/data/User/mcp.json",
        ".vscode-server/data/User/mcp.json",
        ".vscode-server/data/User/mcp.json",
    ),
    (
        "vscode-insiders",
        Shape::VscodeServers,
        ".config/Code - Insiders/User/mcp.json",
        "Library/Application Support/Code - Insiders/User/mcp.json",
        "AppData/Roaming/Code - Insiders/User/mcp.json",
    ),
    (
        "windsurf",
        Shape::McpServers,
        ".codeium/windsurf/mcp_config.json",
        ".codeium/windsurf/mcp_config.json",
        ".codeium/windsurf/mcp_config.json",
    ),
    (
        "cline",
        Shape::McpServers,
        ".config/Code/User/globalStorage/saoudrizwan.claude-dev/settings/cline_mcp_settings.json",
        "Library/Application Support/Code/User/globalStorage/saoudrizwan.claude-dev/settings/cline_mcp_settings.json",
        "AppData/Roaming/Code/User/globalStorage/saoudrizwan.claude-dev/settings/cline_mcp_settings.json",
    ),
    (
        "roo-code",
        Shape::McpServers,
        ".config/Code/User/globalStorage/rooveterinaryinc.roo-cline/settings/mcp_settings.json",
        "Library/Application Support/Code/User/globalStorage/rooveterinaryinc.roo-cline/settings/mcp_settings.json",
        "AppData/Roaming/Code/User/globalStorage/rooveterinaryinc.roo-cline/settings/mcp_settings.json",
    ),
    (
        "zed",
        Shape::Zed,
        ".config/zed/settings.json",
        ".config/zed/settings.json",
        "AppData/Roaming/Zed/settings.json",
    ),
    (
        "continue",
        Shape::ContinueYaml,
        ".continue/config.yaml",
        ".continue/config.yaml",
        ".continue/config.yaml",
    ),
    (
        "gemini-cli",
        Shape::McpServers,
        ".gemini/settings.json",
        ".gemini/settings.json",
        ".gemini/settings.json",
    ),
    (
        "codex",
        Shape::CodexToml,
        ".codex/config.toml",
        ".codex/config.toml",
        ".codex/config.toml",
    ),
    (
        "goose",
        Shape::GooseYaml,
        ".config/goose/config.yaml",
        ".config/goose/config.yaml",
        "AppData/Roaming/Block/goose/config/config.yaml",
    ),
    (
        "lm-studio",
        Shape::McpServers,
        ".lmstudio/mcp.json",
        ".lmstudio/mcp.json",
        ".lmstudio/mcp.json",
    ),
    (
        "kiro",
        Shape::McpServers,
        ".kiro/settings/mcp.json",
        ".kiro/settings/mcp.json",
        ".kiro/settings/mcp.json",
    ),
    (
        "opencode",
        Shape::OpenCode,
        ".config/opencode/opencode.json",
        ".config/opencode/opencode.json",
        ".config/opencode/opencode.json",
    ),
    (
        "amazon-q",
        Shape::McpServers,
        ".aws/amazonq/mcp.json",
        ".aws/amazonq/mcp.json",
        ".aws/amazonq/mcp.json",
    ),
    (
        "copilot-cli",
        Shape::McpServers,
        ".copilot/mcp-config.json",
        ".copilot/mcp-config.json",
        ".copilot/mcp-config.json",
    ),
    (
        "jetbrains",
        Shape::McpServers,
        ".config/JetBrains/IntelliJIdea2025.2/mcp.json",
        "Library/Application Support/JetBrains/IntelliJIdea2025.2/mcp.json",
        "AppData/Roaming/JetBrains/IntelliJIdea2025.2/mcp.json",
    ),
    (
        "junie",
        Shape::McpServers,
        ".junie/mcp/mcp.json",
        ".junie/mcp/mcp.json",
        ".junie/mcp/mcp.json",
    ),
    (
        "amp",
        Shape::Amp,
        ".config/amp/settings.json",
        ".config/amp/settings.json",
        ".config/amp/settings.json",
    ),
    (
        "antigravity",
        Shape::McpServers,
        ".gemini/antigravity/mcp_config.json",
        ".gemini/antigravity/mcp_config.json",
        ".gemini/antigravity/mcp_config.json",
    ),
    (
        "crush",
        Shape::Crush,
        ".config/crush/crush.json",
        ".config/crush/crush.json",
        ".config/crush/crush.json",
    ),
    (
        "cortex-code",
        Shape::McpServers,
        ".snowflake/cortex/mcp.json",
        ".snowflake/cortex/mcp.json",
        ".snowflake/cortex/mcp.json",
    ),
    (
        "docker-mcp",
        Shape::DockerRegistry,
        ".docker/mcp/registry.yaml",
        ".docker/mcp/registry.yaml",
        ".docker/mcp/registry.yaml",
    ),
    (
        "claude-code",
        Shape::McpServers,
        ".claude/plugins/cache/acme/1.2.0/.mcp.json",
        ".claude/plugins/cache/acme/1.2.0/.mcp.json",
        ".claude/plugins/cache/acme/1.2.0/.mcp.json",
    ),
];

/// (client, shape, path under the system root) per OS: managed files.
const MANAGED: &[(&str, Shape, &str, &str, &str)] = &[
    (
        "claude-code",
        Shape::McpServers,
        "etc/claude-code/managed-mcp.json",
        "Library/Application Support/ClaudeCode/managed-mcp.json",
        "Program Files/ClaudeCode/managed-mcp.json",
    ),
    (
        "gemini-cli",
        Shape::McpServers,
        "etc/gemini-cli/settings.json",
        "Library/Application Support/GeminiCli/settings.json",
        "ProgramData/gemini-cli/settings.json",
    ),
    (
        "codex",
        Shape::CodexToml,
        "etc/codex/config.toml",
        "etc/codex/config.toml",
        "ProgramData/OpenAI/Codex/config.toml",
    ),
];

/// (client, shape, path under a project).
const PROJECT: &[(&str, Shape, &str)] = &[
    ("claude-code", Shape::McpServers, ".mcp.json"),
    ("cursor", Shape::McpServers, ".cursor/mcp.json"),
    ("vscode", Shape::VscodeServers, ".vscode/mcp.json"),
    ("windsurf", Shape::McpServers, ".windsurf/mcp.json"),
    ("roo-code", Shape::McpServers, ".roo/mcp.json"),
    ("zed", Shape::Zed, ".zed/settings.json"),
    (
        "continue",
        Shape::ContinueYaml,
        ".continue/mcpServers/db.yaml",
    ),
    ("gemini-cli", Shape::McpServers, ".gemini/settings.json"),
    ("codex", Shape::CodexToml, ".codex/config.toml"),
    ("kiro", Shape::McpServers, ".kiro/settings/mcp.json"),
    ("opencode", Shape::OpenCode, "opencode.json"),
    ("amazon-q", Shape::McpServers, ".amazonq/mcp.json"),
    ("junie", Shape::McpServers, ".junie/mcp/mcp.json"),
    ("crush", Shape::Crush, ".crush.json"),
];

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Expected server names for one entry of a shape.
fn names(shape: Shape, name: &str) -> Vec<String> {
    match shape {
        Shape::ClaudeCodeUser => vec![name.to_string(), format!("{name}-project")],
        Shape::Zed => vec![name.to_string(), format!("{name}-flat")],
        _ => vec![name.to_string()],
    }
}

fn scan_layout(os: &str, column: usize) {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("home/alice");
    let system = root.path().join("system");
    let workspace = root.path().join("work");
    let mut expected: Vec<(String, String)> = Vec::new();
    let pick = |row: &(&str, Shape, &str, &str, &str)| [row.2, row.3, row.4][column].to_string();
    for (i, row) in PER_USER.iter().enumerate() {
        let name = format!("{}-u{i}", row.0);
        write(&home.join(pick(row)), &content(row.1, &name));
        expected.extend(
            names(row.1, &name)
                .into_iter()
                .map(|n| (row.0.to_string(), n)),
        );
    }
    for (i, row) in MANAGED.iter().enumerate() {
        let name = format!("{}-m{i}", row.0);
        write(&system.join(pick(row)), &content(row.1, &name));
        expected.extend(
            names(row.1, &name)
                .into_iter()
                .map(|n| (row.0.to_string(), n)),
        );
    }
    for (i, (client, shape, rel)) in PROJECT.iter().enumerate() {
        let name = format!("{client}-p{i}");
        // Projects sit at different depths below the workspace root; the walk finds them.
        write(
            &workspace.join(format!("org/repo{}", i % 3)).join(rel),
            &content(*shape, &name),
        );
        expected.extend(
            names(*shape, &name)
                .into_iter()
                .map(|n| (client.to_string(), n)),
        );
    }
    // Noise the walk must skip.
    write(
        &workspace.join("org/repo0/node_modules/dep/.mcp.json"),
        &content(Shape::McpServers, "noise"),
    );

    let out = Command::new(env!("CARGO_BIN_EXE_agent-bom-agent"))
        .args(["scan", "--json", "--os", os, "--home"])
        .arg(&home)
        .arg("--system-root")
        .arg(&system)
        .arg("--workspace")
        .arg(&workspace)
        .env("AGENT_BOM_LOG", "off")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.contains("FIXTURE-SECRET"),
        "{os}: a secret leaked into scan output"
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["errors"], serde_json::json!([]), "{os}: {}", v["errors"]);
    let mut found: Vec<(String, String)> = v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["client"].as_str().unwrap().to_string(),
                s["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    found.sort();
    expected.sort();
    assert_eq!(found, expected, "{os}");
    assert!(
        !found.iter().any(|(_, n)| n == "noise"),
        "node_modules must be skipped"
    );
    // Every server with a literal secret is flagged and names its credential.
    for s in v["servers"].as_array().unwrap() {
        let has_secret_env = s["env_keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| ["API_TOKEN", "TOKEN", "T", "KEY", "K"].contains(&k.as_str().unwrap()))
            || s["header_keys"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k == "Authorization");
        if has_secret_env {
            let flags: Vec<&str> = s["risk_flags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap())
                .collect();
            assert!(
                flags.contains(&"plaintext_secret"),
                "{os}: {} not flagged: {flags:?}",
                s["name"]
            );
            assert!(
                !s["credential_names"].as_array().unwrap().is_empty(),
                "{os}: {}",
                s["name"]
            );
        }
        assert_eq!(s["launch_hash"].as_str().unwrap().len(), 32);
    }
    let clients = v["clients"].as_array().unwrap().len();
    assert!(clients >= 25, "{os}: only {clients} clients");
}

#[test]
fn linux_layout_is_found_completely() {
    scan_layout("linux", 0);
}

#[test]
fn macos_layout_is_found_completely() {
    scan_layout("macos", 1);
}

#[test]
fn windows_layout_is_found_completely() {
    scan_layout("windows", 2);
}

#[test]
fn all_users_attributes_files_to_their_owner() {
    let root = tempfile::tempdir().unwrap();
    for user in ["alice", "bob"] {
        write(
            &root.path().join(format!("home/{user}/.cursor/mcp.json")),
            &content(Shape::McpServers, &format!("{user}-srv")),
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_agent-bom-agent"))
        .args([
            "scan",
            "--json",
            "--os",
            "linux",
            "--all-users",
            "--system-root",
        ])
        .arg(root.path())
        .env("AGENT_BOM_LOG", "off")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let servers = v["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2, "{v}");
    // The files were created by this process's user: the owner comes from the file, so both
    // carry that account, not the directory names alice and bob.
    for s in servers {
        let user = s["user"].as_str().unwrap();
        assert!(
            user != "alice" && user != "bob",
            "owner taken from the path: {user}"
        );
    }
}
