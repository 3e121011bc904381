//! Format-preserving edits of client configs: only the command and args of stdio entries, and
//! the URL of remote entries routed through the gateway, change; every other byte stays.
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

use super::plan::{self, Change, UrlStep};
use agent_bom_discovery::catalog::{Format, Layout};
use agent_bom_discovery::parse::parse_document;
use agent_bom_protocol::gateway_routes::GatewayRoutes;

pub use super::plan::Skipped;

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
/// [`Format::ByExtension`]) to run through `proxy_exe`, and, with `routes`, every remote entry
/// whose URL is one of the gateway's upstreams to its route. `None` when nothing needs a change.
pub fn wrap_text(
    text: &str,
    format: Format,
    layout: Layout,
    proxy_exe: &str,
    routes: Option<&GatewayRoutes>,
) -> Result<Option<Edited>, String> {
    match format {
        Format::Toml | Format::Yaml => {
            let doc = parse(text, format)?;
            let mut steps: Vec<Step> = plan::wrap_changes(&doc, layout, proxy_exe)
                .into_iter()
                .map(Step::Launch)
                .collect();
            let mut skipped = Vec::new();
            if let Some(routes) = routes {
                let (urls, refused) = plan::route_steps(&doc, layout, routes);
                steps.extend(urls.into_iter().map(Step::Url));
                skipped = refused;
            }
            edit_planned(text, format, &doc, steps, skipped)
        }
        Format::Jsonc | Format::ByExtension => jsonc::wrap_text(text, layout, proxy_exe, routes),
    }
}

/// Restore the original launch of every wrapped entry and the original URL of every routed one
/// of `text`. `None` when nothing is wrapped.
pub fn unwrap_text(text: &str, format: Format, layout: Layout) -> Result<Option<Edited>, String> {
    match format {
        Format::Toml | Format::Yaml => {
            let doc = parse(text, format)?;
            let steps = plan::unwrap_changes(&doc, layout)
                .into_iter()
                .map(Step::Launch)
                .chain(plan::unroute_steps(&doc, layout).into_iter().map(Step::Url))
                .collect();
            edit_planned(text, format, &doc, steps, Vec::new())
        }
        Format::Jsonc | Format::ByExtension => jsonc::unwrap_text(text, layout),
    }
}

/// One planned change of a TOML or YAML file.
enum Step {
    /// A stdio entry's command and args.
    Launch(Change),
    /// A remote entry's URL.
    Url(UrlStep),
}

impl Step {
    fn name(&self) -> &str {
        match self {
            Self::Launch(c) => &c.name,
            Self::Url(u) => &u.name,
        }
    }

    fn apply_to(&self, doc: &mut Value) {
        match self {
            Self::Launch(c) => c.apply_to(doc),
            Self::Url(u) => u.apply_to(doc),
        }
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
    changes: Vec<Step>,
    mut skipped: Vec<Skipped>,
) -> Result<Option<Edited>, String> {
    if changes.is_empty() && skipped.is_empty() {
        return Ok(None);
    }
    let apply = |text: &str, step: &Step| -> Result<String, String> {
        match (format, step) {
            (Format::Toml, Step::Launch(change)) => toml_doc::apply(text, change),
            (Format::Toml, Step::Url(url)) => toml_doc::set_url(text, url),
            (_, Step::Launch(change)) => yaml_doc::apply(text, change),
            (_, Step::Url(url)) => yaml_doc::set_url(text, url),
        }
    };
    let mut current = text.to_string();
    let mut expected = doc.clone();
    let mut servers = Vec::new();
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
                servers.push(change.name().to_string());
            }
            Err(reason) => skipped.push(Skipped {
                server: change.name().to_string(),
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
