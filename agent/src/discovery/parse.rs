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

/// Parse file text into a document.
pub fn parse_document(text: &str, format: Format) -> Result<Value, ParseError> {
    match format {
        Format::Jsonc => {
            // Strip a UTF-8 BOM: Windows editors write one and clients accept it.
            let text = text.strip_prefix('\u{feff}').unwrap_or(text);
            if text.trim().is_empty() {
                return Ok(Value::Object(Map::new()));
            }
            let options = jsonc_parser::ParseOptions {
                allow_comments: true,
                allow_trailing_commas: true,
                allow_loose_object_property_names: false,
                allow_missing_commas: false,
                allow_single_quoted_strings: false,
                allow_hexadecimal_numbers: false,
                ..Default::default()
            };
            jsonc_parser::parse_to_serde_value::<Value>(text, &options)
                .map_err(|e| ParseError::Syntax(format!("invalid JSON: {e}")))
        }
    }
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
        .ok_or_else(|| ParseError::Shape("top level is not a JSON object".into()))?;
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    match layout {
        Layout::Map(key) => {
            collect_map(root.get(key), key, scope, None, &mut entries, &mut problems);
        }
        Layout::ClaudeCodeUserFile => {
            collect_map(
                root.get("mcpServers"),
                "mcpServers",
                scope,
                None,
                &mut entries,
                &mut problems,
            );
            if let Some(projects) = root.get("projects") {
                match projects.as_object() {
                    Some(projects) => {
                        for (path, project) in projects {
                            collect_map(
                                project.get("mcpServers"),
                                &format!("projects[{path:?}].mcpServers"),
                                Scope::Project,
                                Some(path.clone()),
                                &mut entries,
                                &mut problems,
                            );
                        }
                    }
                    None => problems.push("`projects` is not an object".into()),
                }
            }
        }
    }
    Ok((entries, problems))
}

fn collect_map(
    section: Option<&Value>,
    where_: &str,
    scope: Scope,
    project: Option<String>,
    entries: &mut Vec<RawEntry>,
    problems: &mut Vec<String>,
) {
    let Some(section) = section else { return };
    if section.is_null() {
        return;
    }
    let Some(map) = section.as_object() else {
        problems.push(format!("`{where_}` is not an object"));
        return;
    };
    for (name, body) in map {
        if body.is_object() {
            entries.push(RawEntry {
                name: name.clone(),
                body: body.clone(),
                scope,
                project: project.clone(),
            });
        } else {
            problems.push(format!("`{where_}.{name}` is not an object"));
        }
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
        let doc = parse_document(text, Format::Jsonc).unwrap();
        let (entries, problems) =
            extract_entries(&doc, Layout::Map("servers"), Scope::User).unwrap();
        assert!(problems.is_empty());
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].name, "a");
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = parse_document("{\"mcpServers\": {\"a\": }", Format::Jsonc).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("invalid JSON"), "{msg}");
        assert!(
            msg.chars().any(|c| c.is_ascii_digit()),
            "no position in {msg}"
        );
    }

    #[test]
    fn bom_and_empty_files_are_fine() {
        assert!(parse_document("\u{feff}{}", Format::Jsonc).is_ok());
        assert_eq!(
            parse_document("  \n", Format::Jsonc).unwrap(),
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
    fn wrong_shapes_are_reported_not_fatal() {
        let doc: Value = serde_json::json!({"mcpServers": {"ok": {"command": "a"}, "bad": 3}});
        let (entries, problems) =
            extract_entries(&doc, Layout::Map("mcpServers"), Scope::User).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(problems.len(), 1);
        assert!(extract_entries(&serde_json::json!([1]), Layout::Map("x"), Scope::User).is_err());
        let (_, problems) = extract_entries(
            &serde_json::json!({"mcpServers": []}),
            Layout::Map("mcpServers"),
            Scope::User,
        )
        .unwrap();
        assert_eq!(problems.len(), 1);
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
            if let Ok(doc) = parse_document(&text, Format::Jsonc) {
                let _ = extract_entries(&doc, Layout::ClaudeCodeUserFile, Scope::User);
            }
        }
    }
}
