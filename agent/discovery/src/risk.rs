//! Risk flags raised from a server's configuration alone.
//!
//! | flag | raised when |
//! |---|---|
//! | `remote_fetch_exec` | the command downloads and runs a package: `npx`, `uvx`, `bunx`, `pnpx`, `npm exec`, `pnpm dlx`, `yarn dlx`, `bun x`, `uv tool run`, `pipx run` |
//! | `unpinned_dependency` | that package (or a `docker run` image) has no exact version: no `@1.2.3` / `==1.2.3`, or `latest` |
//! | `shell_exec` | the command is a shell, or an interpreter given inline code (`-c`, `-e`) |
//! | `plaintext_secret` | a literal credential sits in the config: an env or header value, an argument, the command (`API_KEY=x node`), or URL userinfo / query / path (what the sanitizer would redact; references and placeholders are not literal) |
//! | `world_readable_config` | the file holding a `plaintext_secret` is readable by every local user |
//! | `cleartext_remote` | `http://` or `ws://` to a host that is not loopback |
//! | `auto_approve_all` | the client may call every tool of the server without asking |
//! | `dangerous_env` | the env sets a code-injection variable (`LD_PRELOAD`, `DYLD_INSERT_LIBRARIES`, `NODE_OPTIONS`, ...) |
//! | `runs_as_root` | the command elevates (`sudo`, `doas`, `pkexec`, `su`) or runs a privileged / root container |

use serde_json::Value;

use super::launch::Launch;
use agent_bom_protocol::sanitize::{
    self, looks_like_secret, sanitize_args, sanitize_command, sanitize_url,
};

/// Facts about the file an entry came from.
#[derive(Debug, Clone, Default)]
pub struct FileFacts {
    /// Path as reported.
    pub path: String,
    /// Owning account, from the file's metadata.
    pub owner: Option<String>,
    /// Readable by every local user (Unix mode o+r).
    pub world_readable: bool,
}

impl FileFacts {
    /// Facts for unit tests.
    #[cfg(test)]
    pub fn test(path: &str) -> Self {
        Self {
            path: path.into(),
            ..Default::default()
        }
    }
}

/// Env vars that inject code into the launched process.
pub const DANGEROUS_ENV: &[&str] = &[
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    "DYLD_INSERT_LIBRARIES",
    "DYLD_LIBRARY_PATH",
    "DYLD_FRAMEWORK_PATH",
    "NODE_OPTIONS",
    "NODE_PATH",
    "PYTHONSTARTUP",
    "PYTHONPATH",
    "PERL5OPT",
    "PERL5LIB",
    "RUBYOPT",
    "BASH_ENV",
    "ENV",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
];

const SHELLS: &[&str] = &[
    "sh",
    "bash",
    "zsh",
    "fish",
    "dash",
    "ksh",
    "csh",
    "tcsh",
    "cmd",
    "powershell",
    "pwsh",
];
const INTERPRETERS: &[&str] = &[
    "python", "python3", "node", "deno", "bun", "perl", "ruby", "php",
];
const ELEVATORS: &[&str] = &["sudo", "doas", "pkexec", "su", "runas", "gsudo"];

/// True for a value that is a literal credential rather than a reference to one
/// (`${VAR}`, `${input:id}`, `{env:VAR}`, `$VAR`) or a placeholder (`YOUR_API_KEY_HERE`).
pub fn is_literal_secret(value: &str) -> bool {
    looks_like_secret(value)
}

/// True when the value of `name` is a literal credential (the sanitizer's rule, see
/// [`agent_bom_protocol::sanitize::is_literal_credential`]).
pub fn is_literal_credential(name: &str, value: &str) -> bool {
    sanitize::is_literal_credential(name, value)
}

/// The file name of a command without directory and Windows executable suffix, lowercased.
fn program(command: &str) -> String {
    let base = command
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(command)
        .to_ascii_lowercase();
    for suffix in [".exe", ".cmd", ".bat", ".ps1"] {
        if let Some(stripped) = base.strip_suffix(suffix) {
            return stripped.to_string();
        }
    }
    base
}

/// The flags of one server.
pub fn flags(
    l: &Launch<'_>,
    body: &Value,
    file: &FileFacts,
    auto_approve: &[String],
) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |f: &str| out.push(f.to_string());
    let prog = l.command.as_deref().map(program).unwrap_or_default();
    let args: Vec<&str> = l.args.iter().map(String::as_str).collect();

    if let Some(package) = fetched_package(&prog, &args) {
        add("remote_fetch_exec");
        if !is_pinned(package) {
            add("unpinned_dependency");
        }
    } else if (prog == "docker" || prog == "podman")
        && docker_image(&args).is_some_and(|image| !is_pinned_image(image))
    {
        add("unpinned_dependency");
    }
    if SHELLS.contains(&prog.as_str())
        || (INTERPRETERS.iter().any(|i| prog.starts_with(i))
            && args
                .iter()
                .any(|a| matches!(*a, "-c" | "-e" | "--eval" | "-p" | "--print")))
    {
        add("shell_exec");
    }
    let secret_value = |map: Option<&serde_json::Map<String, Value>>| {
        map.is_some_and(|m| {
            m.iter()
                .any(|(k, v)| v.as_str().is_some_and(|s| is_literal_credential(k, s)))
        })
    };
    let secret_in_args = sanitize_args(&l.args) != l.args;
    let secret_in_url = l.url.as_deref().is_some_and(|u| sanitize_url(u) != u);
    let secret_in_command = l
        .command
        .as_deref()
        .is_some_and(|c| sanitize_command(c) != c);
    let plaintext = secret_value(l.env)
        || secret_value(l.headers)
        || secret_in_args
        || secret_in_url
        || secret_in_command;
    if plaintext {
        add("plaintext_secret");
        if file.world_readable {
            add("world_readable_config");
        }
    }
    if l.url.as_deref().is_some_and(is_cleartext_remote) {
        add("cleartext_remote");
    }
    if auto_approve.iter().any(|t| t == "*")
        || body.get("autoApproveAll") == Some(&Value::Bool(true))
    {
        add("auto_approve_all");
    }
    let env_names = l
        .env
        .into_iter()
        .flat_map(|m| m.keys())
        .chain(l.env_names.iter());
    if env_names
        .into_iter()
        .any(|k| DANGEROUS_ENV.contains(&k.as_str()))
    {
        add("dangerous_env");
    }
    if ELEVATORS.contains(&prog.as_str())
        || ((prog == "docker" || prog == "podman")
            && args
                .iter()
                .zip(args.iter().skip(1).chain(std::iter::once(&"")))
                .any(|(a, next)| {
                    *a == "--privileged"
                        || matches!(*a, "--user=root" | "--user=0" | "-u=0")
                        || (matches!(*a, "-u" | "--user")
                            && matches!(*next, "root" | "0" | "0:0" | "root:root"))
                }))
    {
        add("runs_as_root");
    }
    out.sort();
    out.dedup();
    out
}

/// The package a fetch-and-run launcher will download, if the command is one.
fn fetched_package<'a>(prog: &str, args: &[&'a str]) -> Option<&'a str> {
    let rest: &[&str] = match prog {
        "npx" | "uvx" | "bunx" | "pnpx" => args,
        "npm" | "pnpm" | "yarn" | "bun" => match args.first() {
            Some(&"exec" | &"dlx" | &"x") => &args[1..],
            _ => return None,
        },
        "uv" if args.starts_with(&["tool", "run"]) => &args[2..],
        "pipx" if args.first() == Some(&"run") => &args[1..],
        _ => return None,
    };
    // `--from PKG` / `--package PKG` / `-p PKG` name the package explicitly.
    let mut iter = rest.iter();
    while let Some(a) = iter.next() {
        match *a {
            "--from" | "--package" | "-p" => return iter.next().copied(),
            "--" => return iter.next().copied(),
            _ if a.starts_with("--package=") || a.starts_with("--from=") => {
                return a.split_once('=').map(|(_, p)| p);
            }
            _ if a.starts_with('-') => {}
            _ => return Some(a),
        }
    }
    None
}

/// A package spec pins an exact version: `name@1.2.3`, `@scope/name@1.2.3`, `name==1.2.3`.
fn is_pinned(spec: &str) -> bool {
    let version = if let Some((_, v)) = spec.split_once("==") {
        v
    } else {
        // Skip the `@` that starts a scoped npm name.
        let body = spec.strip_prefix('@').unwrap_or(spec);
        match body.rsplit_once('@') {
            Some((_, v)) => v,
            None => return false,
        }
    };
    version.starts_with(|c: char| c.is_ascii_digit())
        && !version.contains(['^', '~', '*', '>', '<', ' ', '|'])
        && !version.ends_with(".x")
}

/// The image of a `docker run` command line.
fn docker_image<'a>(args: &[&'a str]) -> Option<&'a str> {
    let run = args.iter().position(|a| *a == "run")?;
    // Flags that take a separate value.
    const VALUE_FLAGS: &[&str] = &[
        "-e",
        "--env",
        "-v",
        "--volume",
        "-p",
        "--publish",
        "--name",
        "-u",
        "--user",
        "--network",
        "--env-file",
        "-w",
        "--workdir",
        "--entrypoint",
        "--mount",
        "-l",
        "--label",
        "--platform",
        "--pull",
    ];
    let mut i = run + 1;
    while i < args.len() {
        let a = args[i];
        if VALUE_FLAGS.contains(&a) {
            i += 2;
        } else if a.starts_with('-') {
            i += 1;
        } else {
            return Some(a);
        }
    }
    None
}

fn is_pinned_image(image: &str) -> bool {
    if image.contains("@sha256:") {
        return true;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) => tag != "latest" && !tag.is_empty(),
        None => false,
    }
}

fn is_cleartext_remote(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("ws://"))
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    !(host == "localhost"
        || host.ends_with(".localhost")
        || host == "::1"
        || host.starts_with("127.")
        || host == "0.0.0.0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launch::launch;
    use serde_json::json;

    fn f(body: Value) -> Vec<String> {
        let l = launch(&body);
        flags(&l, &body, &FileFacts::test("p"), &[])
    }

    fn has(body: Value, flag: &str) -> bool {
        f(body).iter().any(|x| x == flag)
    }

    #[test]
    fn fetch_and_pinning() {
        assert_eq!(
            f(
                json!({"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]})
            ),
            ["remote_fetch_exec", "unpinned_dependency"]
        );
        assert_eq!(
            f(
                json!({"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem@2025.8.21"]})
            ),
            ["remote_fetch_exec"]
        );
        assert!(has(
            json!({"command": "uvx", "args": ["mcp-server-fetch@latest"]}),
            "unpinned_dependency"
        ));
        assert!(!has(
            json!({"command": "uvx", "args": ["mcp-server-fetch==0.6.2"]}),
            "unpinned_dependency"
        ));
        assert!(!has(
            json!({"command": "uvx", "args": ["--from", "pkg==1.0", "tool"]}),
            "unpinned_dependency"
        ));
        assert!(has(
            json!({"command": "npx", "args": ["pkg@^1.2.0"]}),
            "unpinned_dependency"
        ));
        assert!(has(
            json!({"command": "C:\\Program Files\\nodejs\\npx.cmd", "args": ["pkg"]}),
            "remote_fetch_exec"
        ));
        assert!(has(
            json!({"command": "pnpm", "args": ["dlx", "pkg"]}),
            "remote_fetch_exec"
        ));
        assert!(!has(
            json!({"command": "npm", "args": ["run", "start"]}),
            "remote_fetch_exec"
        ));
        assert!(has(
            json!({"command": "docker", "args": ["run", "-i", "--rm", "-e", "X", "mcp/fetch"]}),
            "unpinned_dependency"
        ));
        assert!(!has(
            json!({"command": "docker", "args": ["run", "-i", "mcp/fetch:1.2"]}),
            "unpinned_dependency"
        ));
        assert!(!has(
            json!({"command": "node", "args": ["server.js"]}),
            "unpinned_dependency"
        ));
    }

    #[test]
    fn shells_secrets_and_transport() {
        assert!(has(
            json!({"command": "bash", "args": ["-c", "curl x | sh"]}),
            "shell_exec"
        ));
        assert!(has(
            json!({"command": "python3", "args": ["-c", "import os"]}),
            "shell_exec"
        ));
        assert!(!has(
            json!({"command": "python3", "args": ["-m", "srv"]}),
            "shell_exec"
        ));
        assert!(has(
            json!({"command": "a", "env": {"GITHUB_TOKEN": "ghp_abcdefghijklmnopqrstuvwxyz0123456789"}}),
            "plaintext_secret"
        ));
        assert!(has(
            json!({"command": "a", "env": {"API_KEY": "hunter2hunter2"}}),
            "plaintext_secret"
        ));
        assert!(!has(
            json!({"command": "a", "env": {"GITHUB_TOKEN": "${GITHUB_TOKEN}"}}),
            "plaintext_secret"
        ));
        assert!(!has(
            json!({"command": "a", "env": {"MODE": "fast"}}),
            "plaintext_secret"
        ));
        assert!(has(
            json!({"url": "https://h/x", "headers": {"Authorization": "Bearer sk-abcdefghijklmnopqrstuvwx"}}),
            "plaintext_secret"
        ));
        assert!(!has(
            json!({"url": "https://h/x", "headers": {"Authorization": "Bearer ${input:token}"}}),
            "plaintext_secret"
        ));
        assert!(has(
            json!({"command": "a", "args": ["--token", "abc"]}),
            "plaintext_secret"
        ));
        assert!(has(
            json!({"url": "http://mcp.example.com/sse"}),
            "cleartext_remote"
        ));
        assert!(!has(
            json!({"url": "http://localhost:3000/sse"}),
            "cleartext_remote"
        ));
        assert!(!has(
            json!({"url": "http://127.0.0.1:3000/sse"}),
            "cleartext_remote"
        ));
        assert!(!has(
            json!({"url": "http://[::1]:3000/sse"}),
            "cleartext_remote"
        ));
        assert!(has(json!({"url": "ws://10.1.2.3/ws"}), "cleartext_remote"));
        assert!(!has(
            json!({"url": "https://mcp.example.com/sse"}),
            "cleartext_remote"
        ));
    }

    #[test]
    fn env_root_and_file_flags() {
        assert!(has(
            json!({"command": "a", "env": {"LD_PRELOAD": "/tmp/x.so"}}),
            "dangerous_env"
        ));
        assert!(has(
            json!({"command": "a", "env": {"NODE_OPTIONS": "--require /tmp/x.js"}}),
            "dangerous_env"
        ));
        assert!(has(
            json!({"command": "sudo", "args": ["node", "x"]}),
            "runs_as_root"
        ));
        assert!(has(
            json!({"command": "docker", "args": ["run", "--privileged", "img:1"]}),
            "runs_as_root"
        ));
        assert!(has(
            json!({"command": "docker", "args": ["run", "-u", "root", "img:1"]}),
            "runs_as_root"
        ));
        assert!(!has(
            json!({"command": "docker", "args": ["run", "-u", "1000", "img:1"]}),
            "runs_as_root"
        ));
        let body =
            json!({"command": "a", "env": {"TOKEN": "ghp_abcdefghijklmnopqrstuvwxyz0123456789"}});
        let l = launch(&body);
        let world = FileFacts {
            path: "p".into(),
            owner: None,
            world_readable: true,
        };
        assert!(flags(&l, &body, &world, &[]).contains(&"world_readable_config".to_string()));
        let clean = json!({"command": "a"});
        assert!(
            !flags(&launch(&clean), &clean, &world, &[])
                .contains(&"world_readable_config".to_string())
        );
        assert!(
            flags(
                &launch(&clean),
                &clean,
                &FileFacts::test("p"),
                &["*".into()]
            )
            .contains(&"auto_approve_all".to_string())
        );
    }
}
