//! YAML configs (Goose `extensions`, Continue `mcpServers`) edited by replacing text spans.
//!
//! No YAML library preserves formatting, so this module locates the few nodes a change touches
//! itself, line by line, and replaces only their text. It understands the block style clients
//! and people write: nested block mappings (`key:` lines), block sequences (`- item`, indented
//! or at the key's column), and single-line scalars (plain, `'single'`, `"double"`) or flow
//! sequences (`[a, "b"]`) as the command and args values. Anything else on the way to a server's
//! command and args (anchors, aliases, tags, merge keys, flow mappings, block or multi-line
//! scalars, tabs) makes that server a [`Err`] with a reason: the caller skips it and leaves the
//! file's bytes alone. Every result is parsed again by the caller and compared with the intended
//! document, so a locator mistake cannot reach the disk.

use std::ops::Range;

use crate::wrap::plan::{ArgsEdit, Change, Seg, UrlStep};

/// Apply one change to `text`.
pub fn apply(text: &str, change: &Change) -> Result<String, String> {
    let (bom, body) = match text.strip_prefix('\u{feff}') {
        Some(rest) => ("\u{feff}", rest),
        None => ("", text),
    };
    let doc = Doc::new(body);
    let mut edits = doc.edits(change)?;
    // Later spans first, so earlier offsets stay valid.
    edits.sort_by_key(|e| std::cmp::Reverse(e.0.start));
    let mut out = body.to_string();
    for (range, with) in edits {
        out.replace_range(range, &with);
    }
    Ok(format!("{bom}{out}"))
}

/// Replace one remote entry's URL: a single-line scalar on its key's line.
pub fn set_url(text: &str, step: &UrlStep) -> Result<String, String> {
    let (bom, body) = match text.strip_prefix('\u{feff}') {
        Some(rest) => ("\u{feff}", rest),
        None => ("", text),
    };
    let doc = Doc::new(body);
    let (entry_seg, section) = step.path.split_last().ok_or("the entry has no path")?;
    let entry = doc.entry(section, entry_seg)?;
    doc.check_plain_nodes(&entry)?;
    let keys = doc.keys(&entry)?;
    let node = keys
        .iter()
        .find(|k| k.key == step.change.key)
        .ok_or("its URL is not written as a plain `key: value` line")?;
    let span = node
        .inline
        .clone()
        .ok_or("its URL is not written on the key's line")?;
    if !doc.inline(span.clone())?.is_scalar() || !node.children.is_empty() {
        return Err("its URL is not a single-line scalar".into());
    }
    let old = &body[span.clone()];
    let mut out = body.to_string();
    out.replace_range(span, &url_scalar(old, &step.change.url));
    Ok(format!("{bom}{out}"))
}

/// A URL as YAML text, plain when the text it replaces was plain and the URL reads back as
/// the same string unquoted (so a structural unwrap gives back a plain URL), else quoted.
fn url_scalar(old: &str, url: &str) -> String {
    let plain_safe = !old.starts_with(['"', '\''])
        && url.starts_with(|c: char| c.is_ascii_alphabetic())
        && !url.contains(": ")
        && !url.contains(" #")
        && url.chars().all(|c| c.is_ascii_graphic());
    if plain_safe {
        url.to_string()
    } else {
        serde_json::to_string(url).unwrap_or_else(|_| format!("{url:?}"))
    }
}

/// One line: byte offsets into the text.
#[derive(Debug, Clone, Copy)]
struct Line {
    start: usize,
    /// End of the content (before `\r\n` or `\n`).
    end: usize,
    /// End including the line break.
    next: usize,
    /// Leading spaces.
    indent: usize,
    /// False for blank and comment-only lines, which carry no structure.
    content: bool,
    /// A tab in the indentation (YAML forbids it; this editor does not guess).
    tabbed: bool,
}

/// A block mapping: its first key at `first` (byte offset; on a sequence item's line it follows
/// the dash), further keys on the lines of `lines` indented to `col`.
#[derive(Debug, Clone)]
struct MapBlock {
    col: usize,
    first_line: usize,
    first: usize,
    lines: Range<usize>,
}

/// A key of a block mapping.
#[derive(Debug, Clone)]
struct KeyNode {
    key: String,
    line: usize,
    /// Byte offset just past the `:`.
    colon_end: usize,
    /// The value written on the key's own line (trimmed, without a comment).
    inline: Option<Range<usize>>,
    /// The lines below that belong to the value.
    children: Range<usize>,
}

/// A single-line scalar or flow sequence.
#[derive(Debug, Clone)]
enum Inline {
    Scalar,
    /// `[...]`: the span inside the brackets and the item spans.
    Flow {
        inner: Range<usize>,
        items: Vec<Range<usize>>,
    },
}

struct Doc<'a> {
    text: &'a str,
    lines: Vec<Line>,
    eol: &'static str,
}

type Edit = (Range<usize>, String);

const UNSUPPORTED_NODE: &str =
    "uses YAML anchors, aliases, tags or merge keys; wrap it by hand or write it out in full";

impl<'a> Doc<'a> {
    fn new(text: &'a str) -> Self {
        let mut lines = Vec::new();
        let mut start = 0;
        while start < text.len() {
            let next = text[start..]
                .find('\n')
                .map_or(text.len(), |i| start + i + 1);
            let mut end = next;
            if text[..end].ends_with('\n') {
                end -= 1;
            }
            if text[..end].ends_with('\r') {
                end -= 1;
            }
            let s = &text[start..end];
            let indent = s.len() - s.trim_start_matches(' ').len();
            let rest = s[indent..].trim_start();
            lines.push(Line {
                start,
                end,
                next,
                indent,
                content: !rest.is_empty() && !rest.starts_with('#'),
                tabbed: s[indent..].starts_with('\t'),
            });
            start = next;
        }
        let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
        Self { text, lines, eol }
    }

    fn line_text(&self, i: usize) -> &'a str {
        &self.text[self.lines[i].start..self.lines[i].end]
    }

    /// The edits that make `change`.
    fn edits(&self, change: &Change) -> Result<Vec<Edit>, String> {
        let (entry_seg, section) = change.path.split_last().ok_or("the entry has no path")?;
        let entry = self.entry(section, entry_seg)?;
        self.check_plain_nodes(&entry)?;
        let keys = self.keys(&entry)?;
        if keys.iter().any(|k| k.key == "<<") {
            return Err(UNSUPPORTED_NODE.into());
        }
        let command = keys
            .iter()
            .find(|k| k.key == change.command_key)
            .ok_or("its command is not written as a plain `key: value` line")?;
        let command_span = command
            .inline
            .clone()
            .ok_or("its command is not written on the key's line")?;
        if !self.inline(command_span.clone())?.is_scalar() || !command.children.is_empty() {
            return Err("its command is not a single-line scalar".into());
        }
        // The original command moves between `command` and `args` as the text it was written
        // as (quotes and all), so a structural unwrap gives back the same bytes.
        let raw_command = &self.text[command_span.clone()];
        let args = keys.iter().find(|k| k.key == "args");
        let (mut edits, new_command) = match (&change.args, args) {
            (ArgsEdit::Prepend(prefix), None) => {
                // A new `args:` line right below the command, at the entry's key column.
                let line = self.lines[command.line];
                let mut new = String::new();
                if line.next == line.end {
                    new.push_str(self.eol);
                }
                new.push_str(&" ".repeat(entry.col));
                new.push_str("args: [");
                new.push_str(&items(prefix, raw_command, true).join(", "));
                new.push(']');
                new.push_str(self.eol);
                (vec![(line.next..line.next, new)], None)
            }
            (ArgsEdit::DropFront(_), None) => return Err("the wrapped entry has no `args`".into()),
            (edit, Some(args)) => self.args_edits(args, edit, raw_command)?,
        };
        let new_command = new_command.unwrap_or_else(|| scalar(&change.command));
        edits.push((command_span, new_command));
        Ok(edits)
    }

    /// The edits of `args`, and for an unwrap the original command's text taken from them.
    fn args_edits(
        &self,
        args: &KeyNode,
        edit: &ArgsEdit,
        raw_command: &str,
    ) -> Result<(Vec<Edit>, Option<String>), String> {
        let text = |r: &Range<usize>| self.text[r.clone()].to_string();
        if let Some(span) = &args.inline {
            if !args.children.is_empty() {
                return Err("its args are a multi-line scalar".into());
            }
            let Inline::Flow {
                inner,
                items: elems,
            } = self.inline(span.clone())?
            else {
                return Err("its args are not a list".into());
            };
            let new = |prefix: &[String]| items(prefix, raw_command, true).join(", ");
            return Ok(match (edit, elems.first()) {
                (ArgsEdit::Prepend(prefix), None) => (vec![(inner, new(prefix))], None),
                (ArgsEdit::Prepend(prefix), Some(first)) => (
                    vec![(first.start..first.start, format!("{}, ", new(prefix)))],
                    None,
                ),
                (ArgsEdit::DropFront(n), _) if *n == 0 || *n > elems.len() => {
                    return Err("its args do not hold the wrapped launch".into());
                }
                (ArgsEdit::DropFront(n), _) if *n == elems.len() => {
                    (vec![(inner, String::new())], Some(text(&elems[n - 1])))
                }
                (ArgsEdit::DropFront(n), Some(first)) => (
                    vec![(first.start..elems[*n].start, String::new())],
                    Some(text(&elems[n - 1])),
                ),
                (ArgsEdit::DropFront(_), None) => return Err("its args are empty".into()),
            });
        }
        // A block sequence: one `- item` line per element.
        let elems = self.block_items(args.children.clone())?;
        let Some(&(first, _)) = elems.first() else {
            return Err("its args are empty (null)".into());
        };
        let first_line = self.lines[first];
        Ok(match edit {
            ArgsEdit::Prepend(prefix) => {
                let line = self.line_text(first);
                let after_dash = &line[first_line.indent + 1..];
                let lead = &line[..line.len() - after_dash.trim_start().len()];
                let new: String = items(prefix, raw_command, false)
                    .iter()
                    .map(|a| format!("{lead}{a}{}", self.eol))
                    .collect();
                (vec![(first_line.start..first_line.start, new)], None)
            }
            ArgsEdit::DropFront(n) if *n == 0 || *n > elems.len() => {
                return Err("its args do not hold the wrapped launch".into());
            }
            ArgsEdit::DropFront(n) if *n < elems.len() => (
                vec![(
                    first_line.start..self.lines[elems[*n].0].start,
                    String::new(),
                )],
                Some(text(&elems[n - 1].1)),
            ),
            // Every element goes: the key gets an empty flow list on its own line.
            ArgsEdit::DropFront(n) => {
                let last = self.lines[elems[n - 1].0];
                (
                    vec![(args.colon_end..last.end, " []".to_string())],
                    Some(text(&elems[n - 1].1)),
                )
            }
        })
    }

    /// The items of a block sequence occupying `lines` (line index and value span): each a
    /// dash line with a single-line scalar, nothing else but comments in between.
    fn block_items(&self, lines: Range<usize>) -> Result<Vec<(usize, Range<usize>)>, String> {
        let not_simple = || "its args are not a list of one-line values".to_string();
        let mut out = Vec::new();
        let mut dash_col = None;
        for i in lines {
            let line = self.lines[i];
            if !line.content {
                continue;
            }
            let rest = &self.line_text(i)[line.indent..];
            let is_dash = rest == "-" || rest.starts_with("- ");
            match dash_col {
                None if is_dash => dash_col = Some(line.indent),
                Some(c) if is_dash && line.indent == c => {}
                _ => return Err(not_simple()),
            }
            let span = self
                .value_span(line.start + line.indent + 1, line.end)
                .ok_or_else(not_simple)?;
            if !self.inline(span.clone())?.is_scalar() || rest[1..].trim_start().starts_with("- ") {
                return Err(not_simple());
            }
            out.push((i, span));
        }
        Ok(out)
    }

    /// The entry's mapping: walk the section keys from the top-level mapping, then the entry's
    /// key (a map of servers) or index (a list of servers).
    fn entry(&self, section: &[Seg], entry: &Seg) -> Result<MapBlock, String> {
        let flow = || "its section is not written in YAML block style".to_string();
        let mut map = self.root().ok_or_else(flow)?;
        let mut value: Option<KeyNode> = None;
        for seg in section {
            let Seg::Key(name) = seg else {
                return Err(flow());
            };
            if let Some(v) = &value {
                map = self.child_map(v).ok_or_else(flow)?;
            }
            let node = self
                .keys(&map)?
                .into_iter()
                .find(|k| &k.key == name)
                .ok_or_else(flow)?;
            value = Some(node);
        }
        match entry {
            Seg::Key(name) => {
                if let Some(v) = &value {
                    map = self.child_map(v).ok_or_else(flow)?;
                }
                let node = self
                    .keys(&map)?
                    .into_iter()
                    .find(|k| &k.key == name)
                    .ok_or("its name is written in a form the YAML editor does not read")?;
                if node.inline.is_some() {
                    return Err(self.inline_reason(&node));
                }
                self.child_map(&node)
                    .ok_or_else(|| "it is not a block mapping".to_string())
            }
            Seg::Index(i) => {
                let v = value.as_ref().ok_or_else(flow)?;
                if v.inline.is_some() {
                    return Err(flow());
                }
                self.seq_item(v.children.clone(), *i)
            }
        }
    }

    fn inline_reason(&self, node: &KeyNode) -> String {
        match node.inline.clone().map(|span| self.inline(span)) {
            Some(Err(reason)) => reason,
            _ => "it is not a block mapping".into(),
        }
    }

    /// The top-level block mapping (after an optional `---`).
    fn root(&self) -> Option<MapBlock> {
        let mut first = (0..self.lines.len()).find(|&i| self.lines[i].content)?;
        if self.line_text(first).trim_end() == "---" {
            first = (first + 1..self.lines.len()).find(|&i| self.lines[i].content)?;
        }
        let line = self.lines[first];
        let rest = &self.line_text(first)[line.indent..];
        if line.indent != 0 || rest.starts_with(['-', '[', '{', '%']) {
            return None;
        }
        Some(MapBlock {
            col: 0,
            first_line: first,
            first: line.start,
            lines: first..self.lines.len(),
        })
    }

    /// The block mapping under a key with no inline value.
    fn child_map(&self, node: &KeyNode) -> Option<MapBlock> {
        if node.inline.is_some() {
            return None;
        }
        let first = node.children.clone().find(|&i| self.lines[i].content)?;
        let line = self.lines[first];
        let rest = &self.line_text(first)[line.indent..];
        if rest == "-" || rest.starts_with("- ") {
            return None;
        }
        Some(MapBlock {
            col: line.indent,
            first_line: first,
            first: line.start + line.indent,
            lines: first..node.children.end,
        })
    }

    /// The `index`-th item of the block sequence on `lines`, as a mapping.
    fn seq_item(&self, lines: Range<usize>, index: usize) -> Result<MapBlock, String> {
        let not_block = || "its section is not a YAML block list".to_string();
        let first = lines
            .clone()
            .find(|&i| self.lines[i].content)
            .ok_or_else(not_block)?;
        let col = self.lines[first].indent;
        let is_item = |i: usize| {
            let line = self.lines[i];
            let rest = &self.line_text(i)[line.indent..];
            line.content && line.indent == col && (rest == "-" || rest.starts_with("- "))
        };
        let items: Vec<usize> = lines.clone().filter(|&i| is_item(i)).collect();
        let &start = items.get(index).ok_or_else(not_block)?;
        let end = items.get(index + 1).copied().unwrap_or(lines.end);
        let line = self.lines[start];
        let after_dash = line.start + col + 1;
        let body = &self.text[after_dash..line.end];
        let gap = body.len() - body.trim_start().len();
        if body.trim().is_empty() {
            // `-` alone: the mapping starts on the next line.
            let next = (start + 1..end)
                .find(|&i| self.lines[i].content)
                .ok_or("it is an empty list item")?;
            let n = self.lines[next];
            return Ok(MapBlock {
                col: n.indent,
                first_line: next,
                first: n.start + n.indent,
                lines: next..end,
            });
        }
        let at = after_dash + gap;
        if self.text[at..].starts_with(['{', '&', '*', '!', '-']) {
            return Err(if self.text[at..].starts_with('{') {
                "it is written in YAML flow style (`{...}`); write it as a block mapping".into()
            } else {
                UNSUPPORTED_NODE.into()
            });
        }
        Ok(MapBlock {
            col: at - line.start,
            first_line: start,
            first: at,
            lines: start..end,
        })
    }

    /// Every key of a block mapping, with the lines its value spans.
    fn keys(&self, map: &MapBlock) -> Result<Vec<KeyNode>, String> {
        let mut starts = vec![(map.first_line, map.first)];
        let mut map_end = map.lines.end;
        for i in map.lines.clone().skip(1) {
            let line = self.lines[i];
            if !line.content {
                continue;
            }
            if line.indent < map.col {
                map_end = i;
                break;
            }
            let rest = &self.line_text(i)[line.indent..];
            if line.indent == map.col && !(rest == "-" || rest.starts_with("- ")) {
                starts.push((i, line.start + line.indent));
            }
        }
        let mut out = Vec::new();
        for (n, &(line, at)) in starts.iter().enumerate() {
            let end_line = starts.get(n + 1).map_or(map_end, |s| s.0);
            let Some((key, colon_end)) = key_at(self.text, at, self.lines[line].end) else {
                return Err("a key is written in a form the YAML editor does not read".into());
            };
            let inline = self.value_span(colon_end, self.lines[line].end);
            // The value's lines: up to the last content line before the next key.
            let last = (line + 1..end_line)
                .rev()
                .find(|&i| self.lines[i].content)
                .map_or(line + 1, |i| i + 1);
            out.push(KeyNode {
                key,
                line,
                colon_end,
                inline,
                children: line + 1..last.max(line + 1),
            });
        }
        Ok(out)
    }

    /// The value written between `from` and the end of the line, without a trailing comment;
    /// `None` when there is none. Forms this editor does not change still get a span (to the
    /// end of the line when they do not close on it): [`Self::inline`] says what they are.
    fn value_span(&self, from: usize, end: usize) -> Option<Range<usize>> {
        let s = &self.text[from..end];
        let start = from + (s.len() - s.trim_start().len());
        let s = &self.text[start..end];
        if s.is_empty() || s.starts_with('#') {
            return None;
        }
        let len = match s.as_bytes()[0] {
            q @ (b'"' | b'\'') => quoted_len(s, q),
            b'[' => flow_len(s),
            b'{' => None,
            _ => Some(plain_len(s)),
        }
        .unwrap_or(s.len());
        Some(start..start + len)
    }

    /// What a value span holds: a one-line scalar or flow list, or the reason it is neither.
    fn inline(&self, span: Range<usize>) -> Result<Inline, String> {
        let s = &self.text[span.clone()];
        match s.as_bytes().first() {
            Some(&q @ (b'"' | b'\'')) if quoted_len(s, q) != Some(s.len()) => {
                return Err("a quoted value continues on the next line".into());
            }
            Some(b'|' | b'>') => return Err("it uses a YAML block scalar (`|` or `>`)".into()),
            Some(b'&' | b'*' | b'!') => return Err(UNSUPPORTED_NODE.into()),
            Some(b'{') => {
                return Err(
                    "it is written in YAML flow style (`{...}`); write it as a block mapping"
                        .into(),
                );
            }
            Some(b'[') if !s.ends_with(']') => {
                return Err("its args are a flow list that is not on one line".into());
            }
            Some(b'[') => {}
            _ => return Ok(Inline::Scalar),
        }
        let mut items = Vec::new();
        let mut at = 1;
        let body = &s[..s.len() - 1];
        loop {
            let rest = &body[at..];
            let skip = rest.len() - rest.trim_start().len();
            at += skip;
            if at >= body.len() {
                break;
            }
            let rest = &body[at..];
            let len = match rest.as_bytes()[0] {
                b'"' => quoted_len(rest, b'"'),
                b'\'' => quoted_len(rest, b'\''),
                b'&' | b'*' | b'!' => return Err(UNSUPPORTED_NODE.into()),
                b'[' | b'{' | b',' => None,
                _ => Some(rest.find(',').unwrap_or(rest.len())),
            }
            .ok_or("its args are a flow list the YAML editor does not read")?;
            let item = rest[..len].trim_end();
            items.push(span.start + at..span.start + at + item.len());
            at += len;
            let rest = &body[at..];
            at += rest.len() - rest.trim_start().len();
            match body.as_bytes().get(at) {
                Some(b',') => at += 1,
                None => break,
                Some(_) => {
                    return Err("its args are a flow list the YAML editor does not read".into());
                }
            }
        }
        Ok(Inline::Flow {
            inner: span.start + 1..span.end - 1,
            items,
        })
    }

    /// No anchors, aliases, tags or merge keys anywhere in the entry: editing an anchored node
    /// would change its aliases too.
    fn check_plain_nodes(&self, entry: &MapBlock) -> Result<(), String> {
        for i in entry.lines.clone() {
            let line = self.lines[i];
            let from = if i == entry.first_line {
                entry.first
            } else {
                line.start
            };
            if line.content && line.tabbed {
                return Err("it is indented with tabs".into());
            }
            if line.content && has_node_property(&self.text[from..line.end]) {
                return Err(UNSUPPORTED_NODE.into());
            }
        }
        Ok(())
    }
}

impl Inline {
    fn is_scalar(&self) -> bool {
        matches!(self, Self::Scalar)
    }
}

/// A key at `at`: plain or quoted, followed by `:` and a space or the end of the line. Returns
/// the key and the offset just past the colon.
fn key_at(text: &str, at: usize, end: usize) -> Option<(String, usize)> {
    let s = &text[at..end];
    let (key, len) = match s.as_bytes().first()? {
        b'"' => {
            let len = quoted_len(s, b'"')?;
            (serde_json::from_str::<String>(&s[..len]).ok()?, len)
        }
        b'\'' => {
            let len = quoted_len(s, b'\'')?;
            (s[1..len - 1].replace("''", "'"), len)
        }
        b'?' | b'[' | b'{' | b'&' | b'*' | b'!' | b'|' | b'>' | b'#' | b'%' | b'@' | b'`' => {
            return None;
        }
        _ => {
            let colon = s
                .char_indices()
                .find(|&(i, c)| {
                    c == ':' && (s[i + 1..].is_empty() || s[i + 1..].starts_with([' ', '\t']))
                })?
                .0;
            (s[..colon].trim_end().to_string(), colon)
        }
    };
    let rest = &s[len..];
    let spaces = rest.len() - rest.trim_start_matches(' ').len();
    let rest = &rest[spaces..];
    if !rest.starts_with(':') || !(rest.len() == 1 || rest[1..].starts_with([' ', '\t'])) {
        return None;
    }
    Some((key, at + len + spaces + 1))
}

/// Length of a quoted scalar starting at `s[0]`, closing quote included; `None` if it does not
/// close on this line.
fn quoted_len(s: &str, quote: u8) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' if quote == b'"' => i += 2,
            c if c == quote => {
                if quote == b'\'' && b.get(i + 1) == Some(&b'\'') {
                    i += 2;
                } else {
                    return Some(i + 1);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// Length of a one-line flow sequence of scalars starting at `s[0] == '['`.
fn flow_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => i += quoted_len(&s[i..], b[i])?,
            b']' => return Some(i + 1),
            b'[' | b'{' | b'}' => return None,
            _ => i += 1,
        }
    }
    None
}

/// Length of a plain scalar: up to ` #` or the end of the line, trailing spaces excluded.
fn plain_len(s: &str) -> usize {
    let end = s
        .char_indices()
        .find(|&(i, c)| c == '#' && i > 0 && s[..i].ends_with([' ', '\t']))
        .map_or(s.len(), |(i, _)| i);
    s[..end].trim_end().len()
}

/// True when a token of the line (outside quotes and comments) starts with `&`, `*` or `!`, or
/// the line has a `<<` merge key.
fn has_node_property(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let mut token_start = true;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' if token_start => match quoted_len(&s[i..], c) {
                Some(len) => {
                    i += len;
                    token_start = false;
                    continue;
                }
                None => return false,
            },
            b'#' if token_start => return false,
            b'&' | b'*' | b'!' if token_start => return true,
            b'<' if token_start && s[i..].starts_with("<<") => return true,
            _ => {}
        }
        token_start = matches!(c, b' ' | b'\t' | b'[' | b',' | b'{');
        if c == b'-' && i + 1 < b.len() && b[i + 1] == b' ' {
            token_start = true;
        }
        i += 1;
    }
    false
}

/// A string as a YAML scalar: plain when that reads back as the same string in any context
/// (block or flow), double-quoted (JSON escapes, which YAML accepts) otherwise.
fn scalar(s: &str) -> String {
    let plain_char = |c: char| c.is_ascii_alphanumeric() || "_./@+=-~".contains(c);
    let first_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '_');
    // `-x`, `--flag`, `--`: a dash followed by a letter or another dash is plain.
    let dashed = s
        .strip_prefix('-')
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '-'));
    let reserved = matches!(
        s.to_ascii_lowercase().as_str(),
        "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
    );
    if (first_ok || dashed) && !reserved && s.chars().all(plain_char) {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    }
}

/// The new list elements as text: every one rendered, except the last (the original command),
/// which keeps the text it was written as when that text is also valid in a list of this kind.
fn items(prefix: &[String], raw_command: &str, flow: bool) -> Vec<String> {
    let mut out: Vec<String> = prefix.iter().map(|a| scalar(a)).collect();
    let quoted = raw_command.starts_with(['"', '\'']);
    let flow_safe = !raw_command.contains([',', '[', ']', '{', '}']);
    if let Some(last) = out.last_mut()
        && (quoted || !flow || flow_safe)
    {
        *last = raw_command.to_string();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wrap::edit::{unwrap_text, wrap_text};
    use agent_bom_discovery::catalog::{Format, Layout};

    const EXE: &str = "/opt/agent-bom/agent-bom-agent";
    const GOOSE: Layout = Layout::At(&[&["extensions"]]);
    const CONTINUE: Layout = Layout::At(&[&["mcpServers"]]);
    const CONTINUE_BLOCK: Layout = Layout::AtOrRoot("mcpServers");

    /// Wrap (all servers), check idempotence, unwrap structurally back to the same bytes.
    fn round_trip(text: &str, layout: Layout) -> String {
        let w = wrap_text(text, Format::Yaml, layout, EXE, None)
            .unwrap()
            .unwrap();
        assert!(w.skipped.is_empty(), "{:?}", w.skipped);
        assert!(!w.servers.is_empty());
        assert!(
            wrap_text(&w.text, Format::Yaml, layout, EXE, None)
                .unwrap()
                .is_none(),
            "idempotent:\n{}",
            w.text
        );
        let u = unwrap_text(&w.text, Format::Yaml, layout).unwrap().unwrap();
        assert!(u.skipped.is_empty(), "{:?}", u.skipped);
        assert_eq!(u.text, text, "structural unwrap restores the bytes");
        w.text
    }

    fn doc(text: &str) -> serde_json::Value {
        serde_norway::from_str(text).unwrap()
    }

    #[test]
    fn goose_as_goose_writes_it() {
        // Goose serializes with serde: keys sorted, `args` before `cmd`, sequences at the key's
        // column.
        let text = "GOOSE_PROVIDER: openai # provider\nextensions:\n  developer:\n    bundled: true\n    enabled: true\n    name: developer\n    type: builtin\n  fetch:\n    args:\n    - mcp-server-fetch\n    - --ignore-robots-txt\n    cmd: uvx # runner\n    enabled: true\n    envs:\n      TOKEN: secret\n    name: fetch\n    timeout: 300\n    type: stdio\n  web:\n    enabled: true\n    type: sse\n    uri: http://localhost:8080/sse\n";
        let w = round_trip(text, GOOSE);
        assert!(
            w.contains("    args:\n    - proxy\n    - --server-id\n"),
            "{w}"
        );
        assert!(
            w.contains("    - --\n    - uvx\n    - mcp-server-fetch\n"),
            "{w}"
        );
        assert!(w.contains(&format!("    cmd: {EXE} # runner\n")), "{w}");
        assert!(w.contains("GOOSE_PROVIDER: openai # provider\n"));
        let d = doc(&w);
        assert_eq!(d["extensions"]["fetch"]["envs"]["TOKEN"], "secret");
        assert_eq!(d["extensions"]["developer"]["type"], "builtin");
    }

    #[test]
    fn continue_lists_block_and_flow() {
        let text = "name: Local assistant\nversion: 1.0.0\nschema: v1\nmcpServers:\n  # SQLite\n  - name: SQLite MCP\n    command: \"npx\"\n    args:\n      # the package\n      - \"-y\"\n      - 'mcp-sqlite'\n      - /Users/me/db.sqlite # data\n    env: {}\n  - name: flow\n    command: uvx\n    args: [\"mcp-server-fetch\", --x ]\n  - name: none\n    command: my-server\n    args: []\n  -\n    name: dash alone\n    command: srv\n    cwd: /tmp\n    args:\n    - a b\n";
        let w = round_trip(text, CONTINUE);
        assert!(w.contains("      # the package\n      - proxy\n"), "{w}");
        assert!(w.contains("      - /Users/me/db.sqlite # data\n"), "{w}");
        assert!(w.contains("args: [proxy, --server-id, "), "{w}");
        assert!(w.contains(", --, uvx, \"mcp-server-fetch\", --x ]"), "{w}");
        assert!(w.contains(", --, my-server]"), "{w}");
        let d = doc(&w);
        assert_eq!(d["mcpServers"][3]["command"], EXE);
        assert_eq!(d["mcpServers"][3]["args"][5], "a b");
        round_trip(text, CONTINUE_BLOCK);
    }

    #[test]
    fn continue_block_files_with_a_root_map() {
        round_trip(
            "---\n# servers\nfs:\n  command: npx\n  args:\n    - -y\n    - \"@modelcontextprotocol/server-filesystem\"\n",
            CONTINUE_BLOCK,
        );
        // CRLF line endings and a BOM stay.
        round_trip(
            "\u{feff}mcpServers:\r\n  - name: a\r\n    command: x\r\n    args:\r\n      - y\r\n",
            CONTINUE_BLOCK,
        );
    }

    #[test]
    fn an_entry_without_args_gets_them_below_the_command() {
        let text = "extensions:\n  gh:\n    type: stdio\n    cmd: gh-mcp\n    enabled: true";
        let w = wrap_text(text, Format::Yaml, GOOSE, EXE, None)
            .unwrap()
            .unwrap();
        assert!(
            w.text
                .contains(&format!("    cmd: {EXE}\n    args: [proxy, --server-id, ")),
            "{}",
            w.text
        );
        assert!(
            w.text.ends_with(", --, gh-mcp]\n    enabled: true"),
            "{}",
            w.text
        );
        let u = unwrap_text(&w.text, Format::Yaml, GOOSE).unwrap().unwrap();
        assert_eq!(doc(&u.text)["extensions"]["gh"]["cmd"], "gh-mcp");
        let list = "mcpServers:\n- name: last\n  command: srv";
        let w = wrap_text(list, Format::Yaml, CONTINUE, EXE, None)
            .unwrap()
            .unwrap();
        assert_eq!(doc(&w.text)["mcpServers"][0]["args"][4], "srv");
    }

    #[test]
    fn unsupported_forms_are_skipped_with_a_reason() {
        let cases = [
            // An anchor reused by another entry.
            "extensions:\n  a:\n    cmd: uvx\n    args: &shared [x]\n  b:\n    cmd: uvx\n    args: *shared\n",
            // A merge key (the scanner reads it as a literal key).
            "base: &base\n  x: 1\nextensions:\n  a:\n    <<: *base\n    cmd: uvx\n",
            // Flow mapping.
            "extensions:\n  a: {cmd: uvx, args: [x]}\n",
            // Block scalar.
            "extensions:\n  a:\n    cmd: >-\n      uvx\n    args: [x]\n",
            // Multi-line plain scalar.
            "extensions:\n  a:\n    cmd: uvx\n      --from x\n    args: [x]\n",
            // A tag.
            "extensions:\n  a:\n    cmd: !!str uvx\n",
            // Multi-line flow list.
            "extensions:\n  a:\n    cmd: uvx\n    args: [x,\n      y]\n",
            // Quoted string over two lines.
            "extensions:\n  a:\n    cmd: uvx\n    args:\n      - \"x\n        y\"\n",
        ];
        for text in cases {
            let e = wrap_text(text, Format::Yaml, GOOSE, EXE, None)
                .unwrap()
                .unwrap_or_else(|| panic!("no change planned for {text}"));
            assert!(e.servers.is_empty(), "{text}: {e:?}");
            assert_eq!(e.text, text);
            assert!(
                !e.skipped.is_empty() && !e.skipped[0].reason.is_empty(),
                "{text}"
            );
        }
        // The other servers of the file are still wrapped.
        let mixed = "extensions:\n  a: {cmd: uvx}\n  b:\n    cmd: npx\n";
        let e = wrap_text(mixed, Format::Yaml, GOOSE, EXE, None)
            .unwrap()
            .unwrap();
        assert_eq!(e.servers, ["b"]);
        assert_eq!(e.skipped[0].server, "a");
        assert!(
            e.skipped[0].reason.contains("flow style"),
            "{:?}",
            e.skipped
        );
        assert!(e.text.starts_with("extensions:\n  a: {cmd: uvx}\n  b:\n"));
    }

    #[test]
    fn scalars_read_back_as_the_same_strings() {
        for s in [
            "npx",
            "-y",
            "--server-id",
            "--",
            "0123abcd",
            "true",
            "null",
            "~",
            "a: b",
            "x #y",
            "C:\\bin\\srv.exe",
            "",
            "@scope/pkg@1.0",
            "a,b",
            "[x]",
            "'q'",
            "\"d\"",
            "*.md",
            "é",
            "1e5",
            ".inf",
            "- x",
            "yes",
        ] {
            let y = format!("k: {}\nl: [{}]\n", scalar(s), scalar(s));
            let v: serde_json::Value = serde_norway::from_str(&y).unwrap();
            assert_eq!(v["k"], s, "{y}");
            assert_eq!(v["l"][0], s, "{y}");
        }
    }

    /// Drop `args: []` everywhere: an entry wrapped without `args` comes back with an empty one.
    fn without_empty_args(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                if map
                    .get("args")
                    .and_then(|a| a.as_array())
                    .is_some_and(Vec::is_empty)
                {
                    map.remove("args");
                }
                map.values_mut().for_each(without_empty_args);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(without_empty_args),
            _ => {}
        }
    }

    /// Random edits of real configs (structure characters, quotes, anchors, tabs, non-ASCII,
    /// deleted and duplicated lines): whatever still parses is wrapped and unwrapped without a
    /// panic, every server wrapped reads back wrapped, and unwrapping gives back the document.
    #[test]
    fn randomized_configs_never_panic_nor_change_other_nodes() {
        let bases = [
            (
                "extensions:\n  fetch:\n    args:\n    - mcp-server-fetch\n    - --x # c\n    cmd: uvx\n    envs: {}\n    type: stdio\n  gh:\n    cmd: 'npx'\n    args: [-y, \"gh\"]\n",
                GOOSE,
            ),
            (
                "mcpServers:\n  # db\n  - name: a\n    command: npx\n    args:\n      - -y\n      - \"pkg\"\n    env:\n      K: v\n  - name: b\n    command: uvx\n    args: []\n",
                CONTINUE,
            ),
        ];
        let pieces = [
            " ", "  ", "\n", "-", "- ", ":", ": ", "#", " #", "'", "\"", "[", "]", ",", "&a ",
            "*a", "{", "}", "|", ">", "\t", "é", "!!str ", "<<: ", "\r\n", "- x\n", "k: v\n",
            "---\n",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut wrapped_some = 0;
        for _ in 0..4000 {
            let (base, layout) = bases[next(bases.len())];
            let mut text = base.to_string();
            for _ in 0..1 + next(3) {
                let bounds: Vec<usize> = (0..=text.len())
                    .filter(|&i| text.is_char_boundary(i))
                    .collect();
                let at = bounds[next(bounds.len())];
                match next(3) {
                    0 => text.insert_str(at, pieces[next(pieces.len())]),
                    1 => {
                        let end = bounds
                            .iter()
                            .copied()
                            .find(|&b| b > at + next(3))
                            .unwrap_or(at);
                        text.replace_range(at..end, "");
                    }
                    _ => {
                        let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
                        let end = text[at..].find('\n').map_or(text.len(), |i| at + i + 1);
                        let line = text[start..end].to_string();
                        text.insert_str(start, &line);
                    }
                }
            }
            let Ok(Some(w)) = wrap_text(&text, Format::Yaml, layout, EXE, None) else {
                continue;
            };
            if w.servers.is_empty() {
                assert_eq!(w.text, text);
                continue;
            }
            wrapped_some += 1;
            let u = unwrap_text(&w.text, Format::Yaml, layout).unwrap().unwrap();
            if u.skipped.is_empty() {
                let (mut a, mut b) = (doc(&text), doc(&u.text));
                without_empty_args(&mut a);
                without_empty_args(&mut b);
                assert_eq!(a, b, "{text:?}\n{:?}", u.text);
            }
        }
        assert!(
            wrapped_some > 500,
            "the mutations leave most files editable: {wrapped_some}"
        );
    }

    #[test]
    fn invalid_yaml_is_an_error() {
        assert!(wrap_text("extensions: [\n", Format::Yaml, GOOSE, EXE, None).is_err());
    }
}
