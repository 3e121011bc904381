//! From file text to raw server entries: syntax per [`Format`], then placement per [`Layout`].

use serde_json::{Map, Value};

use super::catalog::{Format, Layout, Scope};

/// A server entry as found in a file, before normalization.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEntry {
    /// The key the config gives the server.
    pub name: String,
    /// The entry object.
    pub body: Value,
    /// Scope of this entry.
    pub scope: Scope,
    /// For entries in a per-project section of a user file: the project path.
    pub project: Option<String>,
}

/// Why a file's content could not be read as a client config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not valid syntax.
    #[error("{0}")]
    Syntax(String),
    /// Valid syntax, but not the shape the client uses.
    #[error("{0}")]
    Shape(String),
}

/// The syntax of the file at `path`: [`Format::ByExtension`] decided by its extension
/// (`.yaml`/`.yml` YAML, `.toml` TOML, else JSONC), other formats as they are.
pub fn resolve_format(format: Format, path: &std::path::Path) -> Format {
    match format {
        Format::ByExtension => match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Format::Yaml,
            Some("toml") => Format::Toml,
            _ => Format::Jsonc,
        },
        f => f,
    }
}

/// Parse file text into a document. `path` decides the syntax for [`Format::ByExtension`].
pub fn parse_document(
    text: &str,
    format: Format,
    path: &std::path::Path,
) -> Result<Value, ParseError> {
    // Strip a UTF-8 BOM: Windows editors write one and clients accept it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    // Messages name the position only: parsers quote the line they stop at, and that line may
    // hold a credential (an env value with a missing quote), which must not be uploaded.
    match resolve_format(format, path) {
        Format::Jsonc | Format::ByExtension => {
            jsonc_parser::parse_to_serde_value::<Value>(text, &jsonc_options()).map_err(|e| {
                ParseError::Syntax(format!(
                    "invalid JSON: {} on line {} column {}",
                    json_error_kind(e.kind()),
                    e.line_display(),
                    e.column_display()
                ))
            })
        }
        Format::Toml => toml::from_str::<Value>(text).map_err(|e| {
            ParseError::Syntax(match e.span() {
                Some(span) => {
                    let (line, column) = line_column(text, span.start);
                    format!("invalid TOML on line {line} column {column}")
                }
                None => "invalid TOML".into(),
            })
        }),
        Format::Yaml => serde_norway::from_str::<Value>(text).map_err(|e| {
            ParseError::Syntax(match e.location() {
                Some(at) => format!("invalid YAML on line {} column {}", at.line(), at.column()),
                None => "invalid YAML".into(),
            })
        }),
    }
}

/// What went wrong in a JSON file, in words that never quote the file.
fn json_error_kind(kind: &jsonc_parser::errors::ParseErrorKind) -> String {
    use jsonc_parser::errors::ParseErrorKind as K;
    match kind {
        // The only kinds that carry text from the file.
        K::Custom(_) => "invalid value".into(),
        K::String(jsonc_parser::ParseStringErrorKind::InvalidUnicodeEscapeSequence(_)) => {
            "invalid unicode escape sequence".into()
        }
        other => other.to_string(),
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..text.floor_char_boundary(offset.min(text.len()))];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Extract the raw entries a layout describes. Entries that are not objects are returned as
/// per-entry problems so the rest of the file still counts.
pub fn extract_entries(
    doc: &Value,
    layout: Layout,
    scope: Scope,
) -> Result<(Vec<RawEntry>, Vec<String>), ParseError> {
    let root = doc
        .as_object()
        .ok_or_else(|| ParseError::Shape("top level is not an object".into()))?;
    let mut out = Collected::default();
    match layout {
        Layout::At(paths) => {
            if let Some((path, section)) = paths
                .iter()
                .find_map(|p| lookup(root, p).map(|section| (p.join("."), section)))
            {
                out.section(section, &path, scope, None);
            }
        }
        Layout::AtOrRoot(key) => match root.get(key) {
            Some(section) => out.section(section, key, scope, None),
            None => out.section(doc, "(root)", scope, None),
        },
        Layout::ClaudeCodeUserFile => {
            if let Some(section) = root.get("mcpServers") {
                out.section(section, "mcpServers", scope, None);
            }
            if let Some(projects) = root.get("projects") {
                match projects.as_object() {
                    Some(projects) => {
                        for (path, project) in projects {
                            if let Some(section) = project.get("mcpServers") {
                                out.section(
                                    section,
                                    &format!("projects[{path:?}].mcpServers"),
                                    Scope::Project,
                                    Some(path.clone()),
                                );
                            }
                        }
                    }
                    None => out.problems.push("`projects` is not an object".into()),
                }
            }
        }
        Layout::DockerMcpRegistry => {
            if let Some(registry) = root.get("registry").and_then(Value::as_object) {
                for name in registry.keys() {
                    // Every enabled Toolkit server runs through the Docker MCP gateway.
                    out.entries.push(RawEntry {
                        name: name.clone(),
                        body: serde_json::json!({
                            "command": "docker",
                            "args": ["mcp", "gateway", "run", "--servers", name],
                        }),
                        scope,
                        project: None,
                    });
                }
            }
        }
    }
    Ok((out.entries, out.problems))
}

fn lookup<'a>(root: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut value = root.get(*first)?;
    for key in rest {
        value = value.get(*key)?;
    }
    Some(value)
}

#[derive(Default)]
struct Collected {
    entries: Vec<RawEntry>,
    problems: Vec<String>,
}

impl Collected {
    /// A section is a map of name → entry or a list of entries with a `name`. `null` and strings
    /// (a reference to another file, as plugin manifests allow) are not servers.
    fn section(&mut self, section: &Value, where_: &str, scope: Scope, project: Option<String>) {
        match section {
            Value::Null | Value::String(_) => {}
            Value::Object(map) => {
                for (name, body) in map {
                    self.entry(
                        name.clone(),
                        body,
                        &format!("{where_}.{name}"),
                        scope,
                        &project,
                    );
                }
            }
            Value::Array(items) => {
                for (i, body) in items.iter().enumerate() {
                    let name = body
                        .get("name")
                        .and_then(Value::as_str)
                        .map_or_else(|| format!("{where_}[{i}]"), str::to_string);
                    self.entry(name, body, &format!("{where_}[{i}]"), scope, &project);
                }
            }
            _ => self
                .problems
                .push(format!("`{where_}` is neither a map nor a list of servers")),
        }
    }

    fn entry(
        &mut self,
        name: String,
        body: &Value,
        where_: &str,
        scope: Scope,
        project: &Option<String>,
    ) {
        if !body.is_object() {
            self.problems.push(format!("`{where_}` is not an object"));
            return;
        }
        // Another client's whole server map pasted in (VS Code's `{"servers": {...}}` in a
        // Continue `mcpServers/` file, or under OpenCode's `mcp`): its entries are the servers,
        // not one server named `servers`.
        if is_nested_server_map(&name, body) {
            self.section(body, where_, scope, project.clone());
            return;
        }
        // Goose built-in extensions run inside Goose itself; they are not MCP servers.
        if body.get("type").and_then(Value::as_str) == Some("builtin") {
            return;
        }
        self.entries.push(RawEntry {
            name,
            body: body.clone(),
            scope,
            project: project.clone(),
        });
    }
}

/// Keys under which clients keep their server maps.
pub const SERVER_MAP_KEYS: &[&str] = &[
    "servers",
    "mcpServers",
    "mcp_servers",
    "context_servers",
    "mcp",
];

/// Fields only a server entry has: an object with one of them is a server, whatever its name.
pub const LAUNCH_FIELDS: &[&str] = &[
    "command",
    "cmd",
    "args",
    "url",
    "serverUrl",
    "httpUrl",
    "uri",
    "type",
    "transport",
    "env",
    "headers",
];

/// True for an entry that is a map of servers rather than a server: named like a server map,
/// without launch fields, and every value an object. Wrap reads the same shapes.
pub fn is_nested_server_map(name: &str, body: &Value) -> bool {
    let Some(map) = body.as_object() else {
        return false;
    };
    SERVER_MAP_KEYS.contains(&name)
        && !map.is_empty()
        && !LAUNCH_FIELDS.iter().any(|f| map.contains_key(*f))
        && map.values().all(Value::is_object)
}

/// The JSONC dialect clients accept: comments and trailing commas, nothing looser. Shared by
/// the scanner and the wrap editor so both read a file the same way.
pub fn jsonc_options() -> jsonc_parser::ParseOptions {
    jsonc_parser::ParseOptions {
        allow_comments: true,
        allow_trailing_commas: true,
        allow_loose_object_property_names: false,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonc_comments_and_trailing_commas_are_accepted() {
        let text = r#"{
            // user servers
            "servers": {
                "a": { "command": "x", /* inline */ "args": ["1",], },
            },
        }"#;
        let doc = parse_document(text, Format::Jsonc, std::path::Path::new("x.json")).unwrap();
        let (entries, problems) =
            extract_entries(&doc, Layout::At(&[&["servers"]]), Scope::User).unwrap();
        assert!(problems.is_empty());
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].name, "a");
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = parse_document(
            "{\"mcpServers\": {\"a\": }",
            Format::Jsonc,
            std::path::Path::new("x.json"),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("invalid JSON"), "{msg}");
        assert!(
            msg.chars().any(|c| c.is_ascii_digit()),
            "no position in {msg}"
        );
    }

    #[test]
    fn bom_and_empty_files_are_fine() {
        assert!(
            parse_document("\u{feff}{}", Format::Jsonc, std::path::Path::new("x.json")).is_ok()
        );
        assert_eq!(
            parse_document("  \n", Format::Jsonc, std::path::Path::new("x.json")).unwrap(),
            Value::Object(Map::new())
        );
    }

    #[test]
    fn claude_code_user_file_has_user_and_project_entries() {
        let doc: Value = serde_json::json!({
            "numStartups": 4,
            "mcpServers": {"u": {"command": "a"}},
            "projects": {
                "/home/a/p1": {"mcpServers": {"p": {"type": "http", "url": "https://x"}}},
                "/home/a/p2": {"allowedTools": []}
            }
        });
        let (entries, problems) =
            extract_entries(&doc, Layout::ClaudeCodeUserFile, Scope::User).unwrap();
        assert!(problems.is_empty());
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].scope, Scope::User);
        assert_eq!(entries[1].scope, Scope::Project);
        assert_eq!(entries[1].project.as_deref(), Some("/home/a/p1"));
    }

    #[test]
    fn nested_server_maps_are_read_entry_by_entry() {
        let doc =
            serde_json::json!({"servers": {"a": {"command": "x"}, "b": {"url": "https://h"}}});
        let (e, p) = extract_entries(&doc, Layout::AtOrRoot("mcpServers"), Scope::User).unwrap();
        assert!(p.is_empty());
        let names: Vec<_> = e.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let oc = serde_json::json!({"mcp": {"servers": {"f": {"command": ["uvx", "f"]}}}});
        let (e, _) = extract_entries(&oc, Layout::At(&[&["mcp"]]), Scope::User).unwrap();
        assert_eq!(e[0].name, "f");
        // A real server that happens to be called `servers` stays one.
        let real = serde_json::json!({"mcpServers": {"servers": {"command": "node", "args": []}}});
        let (e, _) = extract_entries(&real, Layout::At(&[&["mcpServers"]]), Scope::User).unwrap();
        assert_eq!(e[0].name, "servers");
    }

    #[test]
    fn syntax_errors_never_quote_the_file() {
        let p = std::path::Path::new;
        let secret = "ghp_C3J27XDCG2LmlZGEONYlgCtjfIZ4SOcMz9CP";
        for (text, format, name) in [
            (
                format!("[a.env]\nTOKEN = \"{secret}\nX = 1\n"),
                Format::Toml,
                "c.toml",
            ),
            (
                format!("a:\n  env: {{T: {secret}\n  b: [x\n"),
                Format::Yaml,
                "c.yaml",
            ),
            (
                format!("{{\"env\": {{\"T\": \"{secret}\" \"U\": 1}}}}"),
                Format::Jsonc,
                "c.json",
            ),
            (
                format!("{{\"T\": \"\\u{secret}\"}}"),
                Format::Jsonc,
                "c.json",
            ),
        ] {
            let msg = parse_document(&text, format, p(name))
                .unwrap_err()
                .to_string();
            assert!(!msg.contains("ghp_"), "{msg}");
            assert!(msg.contains("line"), "{msg}");
        }
    }

    #[test]
    fn wrong_shapes_are_reported_not_fatal() {
        let doc: Value = serde_json::json!({"mcpServers": {"ok": {"command": "a"}, "bad": 3}});
        let (entries, problems) =
            extract_entries(&doc, Layout::At(&[&["mcpServers"]]), Scope::User).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(problems.len(), 1);
        assert!(
            extract_entries(&serde_json::json!([1]), Layout::At(&[&["x"]]), Scope::User).is_err()
        );
        let (_, problems) = extract_entries(
            &serde_json::json!({"mcpServers": 5}),
            Layout::At(&[&["mcpServers"]]),
            Scope::User,
        )
        .unwrap();
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn toml_yaml_and_list_forms() {
        let p = std::path::Path::new;
        let toml = "[mcp_servers.docs]\ncommand = \"npx\"\nargs = [\"-y\", \"docs-mcp\"]\n[mcp_servers.docs.env]\nTOKEN = \"x\"\n";
        let doc = parse_document(toml, Format::Toml, p("config.toml")).unwrap();
        let (e, _) = extract_entries(&doc, Layout::At(&[&["mcp_servers"]]), Scope::User).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].name, "docs");
        let yaml = "name: my config\nmcpServers:\n  - name: fetch\n    command: uvx\n    args: [mcp-server-fetch]\n  - name: remote\n    type: sse\n    url: https://h/sse\n";
        let doc = parse_document(yaml, Format::ByExtension, p("a.yaml")).unwrap();
        let (e, _) = extract_entries(&doc, Layout::At(&[&["mcpServers"]]), Scope::User).unwrap();
        let names: Vec<_> = e.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["fetch", "remote"]);
        let goose = "extensions:\n  developer:\n    type: builtin\n    enabled: true\n  github:\n    type: stdio\n    cmd: npx\n    args: [-y, gh-mcp]\n";
        let doc = parse_document(goose, Format::Yaml, p("config.yaml")).unwrap();
        let (e, _) = extract_entries(&doc, Layout::At(&[&["extensions"]]), Scope::User).unwrap();
        assert_eq!(e.len(), 1, "builtin extensions are not servers");
        let flat = serde_json::json!({"srv": {"command": "a"}});
        let (e, _) = extract_entries(&flat, Layout::AtOrRoot("mcpServers"), Scope::Plugin).unwrap();
        assert_eq!(e[0].name, "srv");
        let amp = serde_json::json!({"amp.mcpServers": {"a": {"command": "x"}}});
        let (e, _) =
            extract_entries(&amp, Layout::At(&[&["amp.mcpServers"]]), Scope::User).unwrap();
        assert_eq!(e.len(), 1);
        let docker = parse_document(
            "registry:\n  fetch:\n    ref: \"\"\n",
            Format::Yaml,
            p("registry.yaml"),
        )
        .unwrap();
        let (e, _) = extract_entries(&docker, Layout::DockerMcpRegistry, Scope::User).unwrap();
        assert_eq!(e[0].body["command"], "docker");
        assert!(
            parse_document("a = [", Format::Toml, p("c.toml"))
                .unwrap_err()
                .to_string()
                .starts_with("invalid TOML")
        );
        assert!(
            parse_document("a: [", Format::Yaml, p("c.yaml"))
                .unwrap_err()
                .to_string()
                .starts_with("invalid YAML")
        );
    }

    /// Random token soup and mutations of valid documents, per format: every input returns.
    #[test]
    fn parsers_never_panic_on_arbitrary_text_per_format() {
        let seeds: &[(Format, &str, &[&str])] = &[
            (
                Format::Toml,
                "c.toml",
                &[
                    "[",
                    "]",
                    "=",
                    "\"",
                    "'",
                    "a",
                    "\n",
                    "[[x]]",
                    "1979-05-27T07:32:00Z",
                    "{",
                    "}",
                    ",",
                    "\\u",
                ],
            ),
            (
                Format::Yaml,
                "c.yaml",
                &[
                    ":", "- ", "\n", "  ", "&a", "*a", "!!str", "{", "}", "[", "]", "'", "\"",
                    "? ", "|", "#",
                ],
            ),
        ];
        let mut state: u64 = 7;
        for (format, name, tokens) in seeds {
            for _ in 0..3_000 {
                let mut text = String::new();
                for _ in 0..(state % 16) {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    text.push_str(tokens[(state >> 33) as usize % tokens.len()]);
                }
                state = state.wrapping_add(1);
                if let Ok(doc) = parse_document(&text, *format, std::path::Path::new(name)) {
                    let _ =
                        extract_entries(&doc, Layout::At(&[&["mcpServers"], &["x"]]), Scope::User);
                    let _ = extract_entries(&doc, Layout::AtOrRoot("mcpServers"), Scope::User);
                    let _ = extract_entries(&doc, Layout::DockerMcpRegistry, Scope::User);
                }
            }
        }
    }

    #[test]
    fn parser_never_panics_on_arbitrary_text() {
        let seeds = [
            "{", "}", "[", "\"", "/*", "//", ",", ":", "\\u", "nul", "1e999", "\u{0}",
        ];
        let mut state: u64 = 42;
        for _ in 0..5_000 {
            let mut text = String::new();
            for _ in 0..(state % 12) {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                text.push_str(seeds[(state >> 33) as usize % seeds.len()]);
            }
            state = state.wrapping_add(1);
            if let Ok(doc) = parse_document(&text, Format::Jsonc, std::path::Path::new("x.json")) {
                let _ = extract_entries(&doc, Layout::ClaudeCodeUserFile, Scope::User);
            }
        }
    }
}
