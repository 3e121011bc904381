//! TOML configs (Codex `[mcp_servers.NAME]`, Mistral Vibe `[[mcp_servers]]`) edited through
//! `toml_edit`, which keeps comments, whitespace, quoting and key order of everything it is not
//! asked to change. The values replaced keep their decoration (a trailing comment after the
//! command, the line breaks and comments inside a multi-line `args` array).

use toml_edit::{Array, DocumentMut, Item, TableLike, Value};

use crate::wrap::plan::{ArgsEdit, Change, Seg, UrlStep};

/// Split off a byte-order mark and parse the rest, refusing a file `toml_edit` would not write
/// back byte for byte.
fn parse(text: &str) -> Result<(&'static str, DocumentMut), String> {
    let (bom, body) = match text.strip_prefix('\u{feff}') {
        Some(rest) => ("\u{feff}", rest),
        None => ("", text),
    };
    // The position only: the parser's message quotes the line, which may hold a credential.
    let doc: DocumentMut = body.parse().map_err(|e: toml_edit::TomlError| {
        e.span().map_or_else(
            || "invalid TOML".to_string(),
            |span| format!("invalid TOML at byte {}", span.start),
        )
    })?;
    // Only a file toml_edit writes back unchanged can be edited without touching other bytes.
    if doc.to_string() != body {
        return Err("this file's formatting cannot be preserved by the TOML editor".into());
    }
    Ok((bom, doc))
}

/// Replace one remote entry's URL, keeping its decoration (a trailing comment).
pub fn set_url(text: &str, step: &UrlStep) -> Result<String, String> {
    let (bom, mut doc) = parse(text)?;
    let entry = entry_mut(doc.as_item_mut(), &step.path)
        .ok_or("the entry is not a table the TOML editor can change")?;
    let slot = entry
        .get_mut(step.change.key)
        .and_then(Item::as_value_mut)
        .filter(|v| v.is_str())
        .ok_or("its URL is not a string")?;
    set_keeping_decor(slot, Value::from(step.change.url.as_str()));
    Ok(format!("{bom}{doc}"))
}

/// Apply one change to `text`.
pub fn apply(text: &str, change: &Change) -> Result<String, String> {
    let (bom, mut doc) = parse(text)?;
    let entry = entry_mut(doc.as_item_mut(), &change.path)
        .ok_or("the entry is not a table the TOML editor can change")?;
    let old_command = entry
        .get(change.command_key)
        .and_then(Item::as_value)
        .filter(|v| v.is_str())
        .ok_or("the command is not a string")?
        .clone();
    // The original command moves between `command` and `args` as the value it was written as
    // (a 'literal' string stays literal), so a structural unwrap gives back the same bytes.
    let new_command = match (&change.args, entry.get_mut("args")) {
        (ArgsEdit::Prepend(prefix), Some(item)) => {
            let array = item.as_array_mut().ok_or("`args` is not an array")?;
            prepend(array, &elements(prefix, old_command));
            None
        }
        (ArgsEdit::Prepend(prefix), None) => {
            let mut array: Array = elements(prefix, old_command).into_iter().collect();
            array.fmt();
            entry.insert("args", Item::Value(Value::Array(array)));
            None
        }
        (ArgsEdit::DropFront(n), Some(item)) => {
            let array = item.as_array_mut().ok_or("`args` is not an array")?;
            drop_front(array, *n)
        }
        (ArgsEdit::DropFront(_), None) => return Err("the wrapped entry has no `args`".into()),
    };
    let new_command = new_command
        .filter(|v| v.as_str() == Some(change.command.as_str()))
        .unwrap_or_else(|| Value::from(change.command.as_str()));
    let slot = entry
        .get_mut(change.command_key)
        .and_then(Item::as_value_mut)
        .ok_or("the command is not a string")?;
    set_keeping_decor(slot, new_command);
    Ok(format!("{bom}{doc}"))
}

/// The entry table at `path`: keys through tables (standard or inline), and a final index
/// into an array of tables or an array of inline tables.
fn entry_mut<'a>(item: &'a mut Item, path: &[Seg]) -> Option<&'a mut dyn TableLike> {
    match path {
        [] => item.as_table_like_mut(),
        [Seg::Index(i)] => match item {
            Item::ArrayOfTables(tables) => tables.get_mut(*i).map(|t| t as &mut dyn TableLike),
            Item::Value(Value::Array(values)) => values
                .get_mut(*i)?
                .as_inline_table_mut()
                .map(|t| t as &mut dyn TableLike),
            _ => None,
        },
        [Seg::Key(k), rest @ ..] => entry_mut(item.as_table_like_mut()?.get_mut(k)?, rest),
        [Seg::Index(_), ..] => None,
    }
}

/// The values to put in front of `args`: the prefix, its last element (the original command) as
/// the command was written.
fn elements(prefix: &[String], mut old_command: Value) -> Vec<Value> {
    let mut out: Vec<Value> = prefix.iter().map(|a| Value::from(a.as_str())).collect();
    if let Some(last) = out.last_mut() {
        old_command.decor_mut().clear();
        *last = old_command;
    }
    out
}

fn set_keeping_decor(slot: &mut Value, mut new: Value) {
    *new.decor_mut() = slot.decor().clone();
    *slot = new;
}

/// The whitespace (or line break and indentation) an array puts before its later elements.
fn separator(array: &Array) -> String {
    let prefix = |i: usize| {
        array
            .get(i)
            .and_then(|v| v.decor().prefix())
            .and_then(|p| p.as_str())
            .map(str::to_string)
    };
    match (prefix(1), prefix(0)) {
        (Some(second), _) => second,
        // One element on its own line: the next ones go on their own lines too (its prefix may
        // carry a comment; keep only the final line break and indentation).
        (None, Some(first)) if first.contains('\n') => {
            let at = first.rfind('\n').unwrap_or(0);
            first[at..].to_string()
        }
        _ => " ".to_string(),
    }
}

/// Insert `prefix` in front: the first new element takes the old first element's prefix (so an
/// opening comment stays at the top), the old first element takes the separator.
fn prepend(array: &mut Array, prefix: &[Value]) {
    if array.is_empty() {
        for a in prefix {
            array.push_formatted(a.clone());
        }
        array.fmt();
        return;
    }
    let sep = separator(array);
    let first_prefix = array
        .get(0)
        .and_then(|v| v.decor().prefix())
        .and_then(|p| p.as_str())
        .unwrap_or("")
        .to_string();
    for (i, a) in prefix.iter().enumerate() {
        let mut v = a.clone();
        v.decor_mut().set_prefix(if i == 0 {
            first_prefix.as_str()
        } else {
            sep.as_str()
        });
        v.decor_mut().set_suffix("");
        array.insert_formatted(i, v);
    }
    if let Some(old_first) = array.get_mut(prefix.len()) {
        old_first.decor_mut().set_prefix(sep);
    }
}

/// Remove `n` elements from the front; the first remaining one gets back the prefix the first
/// removed one had (the exact inverse of [`prepend`]). Returns the last one removed (the
/// original command).
fn drop_front(array: &mut Array, n: usize) -> Option<Value> {
    let first_prefix = array
        .get(0)
        .and_then(|v| v.decor().prefix())
        .and_then(|p| p.as_str())
        .map(str::to_string);
    let mut last = None;
    for _ in 0..n.min(array.len()) {
        last = Some(array.remove(0));
    }
    match (array.get_mut(0), first_prefix) {
        (Some(first), Some(prefix)) => first.decor_mut().set_prefix(prefix),
        (None, _) => array.set_trailing_comma(false),
        _ => {}
    }
    last
}

#[cfg(test)]
mod tests {
    use crate::wrap::edit::{unwrap_text, wrap_text};
    use agent_bom_discovery::catalog::{Format, Layout};

    const EXE: &str = "/opt/agent-bom/agent-bom-agent";
    const CODEX: Layout = Layout::At(&[&["mcp_servers"]]);

    fn round_trip(text: &str) -> String {
        let w = wrap_text(text, Format::Toml, CODEX, EXE, None)
            .unwrap()
            .unwrap();
        assert!(w.skipped.is_empty(), "{:?}", w.skipped);
        assert!(
            wrap_text(&w.text, Format::Toml, CODEX, EXE, None)
                .unwrap()
                .is_none(),
            "idempotent"
        );
        let u = unwrap_text(&w.text, Format::Toml, CODEX).unwrap().unwrap();
        assert_eq!(u.text, text, "structural unwrap restores the bytes");
        w.text
    }

    #[test]
    fn codex_tables_keep_comments_and_other_keys() {
        let text = "# Codex\nmodel = \"o3\" # default\n\n[mcp_servers.fs]\ncommand = 'npx' # runner\nargs = [\n  # the package\n  \"-y\",\n  \"@modelcontextprotocol/server-filesystem\", # pinned\n  \"/tmp\",\n]\ncwd = \"/work\"\nstartup_timeout_sec = 20\n\n[mcp_servers.fs.env]\nTOKEN = \"secret\"\n\n[mcp_servers.remote]\nurl = \"https://example.com/mcp\"\n";
        let wrapped = round_trip(text);
        for kept in [
            "# Codex\nmodel = \"o3\" # default\n",
            "# runner\n",
            "# the package\n",
            "# pinned\n",
            "cwd = \"/work\"\nstartup_timeout_sec = 20\n",
            "[mcp_servers.fs.env]\nTOKEN = \"secret\"\n",
            "url = \"https://example.com/mcp\"\n",
        ] {
            assert!(wrapped.contains(kept), "{kept:?} missing from:\n{wrapped}");
        }
        assert!(wrapped.contains(&format!("command = \"{EXE}\" # runner")));
        assert!(
            wrapped.contains("args = [\n  # the package\n  \"proxy\",\n  \"--server-id\",\n"),
            "{wrapped}"
        );
        assert!(
            wrapped.contains("  \"--\",\n  'npx',\n  \"-y\",\n"),
            "{wrapped}"
        );
    }

    #[test]
    fn an_entry_without_args_gets_them() {
        let text = "[mcp_servers.bare]\ncommand = \"my-server\"\nenabled = true\n";
        let w = wrap_text(text, Format::Toml, CODEX, EXE, None)
            .unwrap()
            .unwrap();
        let doc: serde_json::Value = toml::from_str(&w.text).unwrap();
        assert_eq!(doc["mcp_servers"]["bare"]["args"][4], "my-server");
        assert_eq!(doc["mcp_servers"]["bare"]["command"], EXE);
        let u = unwrap_text(&w.text, Format::Toml, CODEX).unwrap().unwrap();
        let doc: serde_json::Value = toml::from_str(&u.text).unwrap();
        assert_eq!(doc["mcp_servers"]["bare"]["command"], "my-server");
        assert!(
            u.text
                .starts_with("[mcp_servers.bare]\ncommand = \"my-server\"\nenabled = true\n")
        );
    }

    #[test]
    fn inline_tables_and_arrays_of_tables() {
        round_trip(
            "mcp_servers = { fs = { command = \"npx\", args = [\"-y\", \"pkg\"] }, x = { command = \"y\", args = [] } }\n",
        );
        let vibe = "[[mcp_servers]]\nname = \"fetch\"\ntransport = \"stdio\"\ncommand = \"uvx\"\nargs = [\"mcp-server-fetch\"]\n\n[[mcp_servers]]\nname = \"web\"\ntransport = \"http\"\nurl = \"https://h/mcp\"\n";
        let w = round_trip(vibe);
        assert!(w.contains("args = [\"proxy\", \"--server-id\", "), "{w}");
        assert!(w.contains("\"--\", \"uvx\", \"mcp-server-fetch\"]"), "{w}");
        assert!(w.contains("name = \"web\"\ntransport = \"http\""));
    }

    #[test]
    fn invalid_toml_is_an_error() {
        assert!(wrap_text("[mcp_servers.x\n", Format::Toml, CODEX, EXE, None).is_err());
    }
}
