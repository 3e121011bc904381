//! Format-preserving edits of client configs: only the command and args of stdio entries change;
//! every other byte stays.
//!
//! One editor per syntax: JSON/JSONC through jsonc-parser's CST ([`jsonc`]), TOML through
//! `toml_edit` ([`toml_doc`]), YAML through a span editor restricted to the block forms it can
//! locate exactly ([`yaml_doc`]). TOML and YAML share the decision of what to change, made on the
//! document as the scanner parses it ([`super::plan`]), and every TOML/YAML result is parsed again
//! and compared with the intended document before it is accepted ([`verify`]): an editor mistake
//! becomes a skipped server, never a corrupted file.

pub mod jsonc;
pub mod toml_doc;
pub mod yaml_doc;

use serde_json::Value;

use super::plan::{self, Change};
use agent_bom_discovery::catalog::{Format, Layout};
use agent_bom_discovery::parse::parse_document;

/// A server left as it was, and why (a YAML form the editor cannot change safely, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The server's name in the config.
    pub server: String,
    /// Why it was not changed.
    pub reason: String,
}

/// Result of an edit: the new text and the names of the entries changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edited {
    /// The new file text (the old one when only skips are reported).
    pub text: String,
    /// Server names whose launch changed.
    pub servers: Vec<String>,
    /// Servers that needed a change but were left alone.
    pub skipped: Vec<Skipped>,
}

/// Rewrite every unwrapped stdio entry of `text` (syntax `format`, already resolved from
/// [`Format::ByExtension`]) to run through `proxy_exe`. `None` when nothing needs wrapping.
pub fn wrap_text(
    text: &str,
    format: Format,
    layout: Layout,
    proxy_exe: &str,
) -> Result<Option<Edited>, String> {
    match format {
        Format::Toml | Format::Yaml => {
            let doc = parse(text, format)?;
            edit_planned(
                text,
                format,
                &doc,
                plan::wrap_changes(&doc, layout, proxy_exe),
            )
        }
        Format::Jsonc | Format::ByExtension => jsonc::wrap_text(text, layout, proxy_exe),
    }
}

/// Restore the original launch of every wrapped entry of `text`. `None` when nothing is wrapped.
pub fn unwrap_text(text: &str, format: Format, layout: Layout) -> Result<Option<Edited>, String> {
    match format {
        Format::Toml | Format::Yaml => {
            let doc = parse(text, format)?;
            edit_planned(text, format, &doc, plan::unwrap_changes(&doc, layout))
        }
        Format::Jsonc | Format::ByExtension => jsonc::unwrap_text(text, layout),
    }
}

fn parse(text: &str, format: Format) -> Result<Value, String> {
    parse_document(text, format, std::path::Path::new("")).map_err(|e| e.to_string())
}

/// Apply planned changes with the format's editor, one server at a time, so a server the
/// editor cannot change (or whose result does not verify) is skipped and the others proceed.
fn edit_planned(
    text: &str,
    format: Format,
    doc: &Value,
    changes: Vec<Change>,
) -> Result<Option<Edited>, String> {
    if changes.is_empty() {
        return Ok(None);
    }
    let apply = |text: &str, change: &Change| -> Result<String, String> {
        match format {
            Format::Toml => toml_doc::apply(text, change),
            _ => yaml_doc::apply(text, change),
        }
    };
    let mut current = text.to_string();
    let mut expected = doc.clone();
    let mut servers = Vec::new();
    let mut skipped = Vec::new();
    for change in changes {
        let mut want = expected.clone();
        change.apply_to(&mut want);
        let result = apply(&current, &change).and_then(|next| {
            verify(&next, format, &want)?;
            Ok(next)
        });
        match result {
            Ok(next) => {
                current = next;
                expected = want;
                servers.push(change.name);
            }
            Err(reason) => skipped.push(Skipped {
                server: change.name,
                reason,
            }),
        }
    }
    Ok(Some(Edited {
        text: current,
        servers,
        skipped,
    }))
}

/// The edited text must parse, as the scanner parses it, to exactly the intended document.
fn verify(text: &str, format: Format, want: &Value) -> Result<(), String> {
    let got = parse(text, format)
        .map_err(|e| format!("the edited file would not parse ({e}); left unchanged"))?;
    if &got != want {
        return Err(
            "the edit would change more than this server's command and args; left unchanged".into(),
        );
    }
    Ok(())
}
