//! What may leave a machine: the one sanitizer for every field that can hold a credential.
//!
//! Env and header *values* are dropped wholesale by the normalizer; every other text that
//! describes a server goes through this module before it leaves the endpoint, and again on the
//! control plane's `/v1/fleet/sync` route (pushes come from other tools):
//!
//! | field | function |
//! |---|---|
//! | `args` | [`sanitize_args`] |
//! | `url` | [`sanitize_url`] |
//! | `command` | [`sanitize_command`] |
//! | names, paths (`config_path`, `cwd`, `project`, `discovery_sources`), error messages, ... | [`sanitize_text`] |
//! | a whole [`ServerEntry`] / [`Inventory`] | [`sanitize_server`] / [`sanitize_inventory`] |
//!
//! What is removed (replaced by [`REDACTED`]), wherever it sits in a string (quoted, inside a
//! `bash -c "…"` script, inside JSON passed as an argument, base64-encoded, in a URL):
//!
//! - the value after a credential flag (`--token X`, `--api-key=X`), of `NAME=X` with a
//!   credential name, of a `"key": "X"` pair with one, and of a credential header
//!   (`Authorization: Bearer X`, `X-API-Key:X`, `Cookie: X`);
//! - tokens of a known format (GitHub, GitLab, Slack, OpenAI, Anthropic, Stripe, AWS key ids,
//!   npm, Hugging Face, Google, xAI, Grafana, ...), JWTs and PEM blocks, anywhere;
//! - long random strings (base64, hex, API keys) and base64 text that decodes to a secret;
//! - URL userinfo, credential query and fragment parameters, and random path segments.
//!
//! What stays readable, because security teams read inventories: references (`${VAR}`,
//! `$VAR`, `{env:VAR}`, `${input:id}`, `%VAR%`), placeholders (`YOUR_API_KEY_HERE`,
//! `<your-key>`, `sk-...`, `xxxx`), paths after a credential flag (`--token-file /run/x`), and
//! names whose last word says they hold no secret (`TOKEN_PATH`, `API_KEY_FILE`, `AUTH_MODE`,
//! `MAX_TOKENS`). The entropy rule judges runs of characters between `-`, `_` and `.`, so package
//! names, model ids, UUIDs and flags (`awslabs-s3-tables-mcp-server`,
//! `claude-3-5-sonnet-20241022`, `--max-old-space-size=2048`) are not secrets.
//!
//! Paths are checked for token formats, not for entropy (a Nix store hash is not a credential).
//! The functions are idempotent: sanitizing sanitized text changes nothing, so identities and
//! hashes computed from sanitized fields are stable.

use serde_json::Value;

use crate::inventory::{Inventory, ServerEntry};

/// Placeholder that replaces a removed value.
pub const REDACTED: &str = "<redacted>";

/// Token formats recognised anywhere in a string: the prefix, and how many characters of the
/// token alphabet must follow it. What follows must also look random (digits and letters, or
/// both cases), so `sk-learn-...` or `ghp_xxxx` stay readable.
const TOKEN_PREFIXES: &[(&str, usize)] = &[
    ("ghp_", 30),
    ("gho_", 30),
    ("ghu_", 30),
    ("ghs_", 30),
    ("ghr_", 30),
    ("github_pat_", 30),
    ("glpat-", 20),
    ("glptt-", 20),
    ("gldt-", 20),
    ("glsa_", 20),
    ("xoxb-", 10),
    ("xoxp-", 10),
    ("xoxa-", 10),
    ("xoxs-", 10),
    ("xoxr-", 10),
    ("xoxe-", 10),
    ("xapp-", 10),
    ("sk-", 20),
    ("sk_live_", 16),
    ("sk_test_", 16),
    ("rk_live_", 16),
    ("rk_test_", 16),
    ("whsec_", 20),
    ("npm_", 30),
    ("hf_", 30),
    ("AIza", 30),
    ("ya29.", 20),
    ("pypi-", 40),
    ("dop_v1_", 40),
    ("shpat_", 24),
    ("shpss_", 24),
    ("xai-", 20),
    ("gsk_", 20),
    ("pplx-", 20),
    ("lin_api_", 20),
    ("ntn_", 20),
    ("figd_", 20),
    ("sbp_", 30),
    ("r8_", 30),
    ("tvly-", 20),
    ("sntrys_", 30),
    ("ATATT", 30),
    ("SG.", 20),
    ("AGE-SECRET-KEY-", 20),
];

/// AWS access key id prefixes (followed by 16 or more of `A-Z0-9`; real ids have exactly 16).
const AWS_KEY_PREFIXES: &[&str] = &["AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AROA"];

/// Words that make a name a credential's name wherever they appear in it.
const SECRET_SUBSTRINGS: &[&str] = &[
    "secret",
    "password",
    "passwd",
    "passphrase",
    "credential",
    "apikey",
    "api_key",
    "privatekey",
    "private_key",
    "accesskey",
    "access_key",
    "authtoken",
    "auth_token",
    "accesstoken",
    "access_token",
    "bearer",
    "cookie",
];

/// Words that make a name a credential's name when they are a whole word of it (`token` but not
/// `tokenizer`, `auth` but not `author`).
const SECRET_WORDS: &[&str] = &[
    "token",
    "tokens",
    "pwd",
    "pass",
    "auth",
    "authorization",
    "sig",
    "signature",
    "session",
    "jwt",
    "pat",
    "creds",
    "key",
];

/// A last word that says the value is not the secret itself but where or how to find it.
const NOT_SECRET_LAST_WORDS: &[&str] = &[
    "path",
    "file",
    "files",
    "dir",
    "directory",
    "url",
    "uri",
    "endpoint",
    "host",
    "hostname",
    "port",
    "env",
    "var",
    "name",
    "type",
    "mode",
    "enabled",
    "disabled",
    "header",
    "location",
    "prefix",
    "scope",
    "scopes",
    "ttl",
    "timeout",
    "expiry",
    "expires",
    "length",
    "size",
    "count",
    "limit",
    "format",
    "method",
    "provider",
    "version",
    "region",
    "issuer",
    "audience",
    "user",
    "username",
    "email",
    "kind",
    "store",
    "storage",
    "backend",
    "service",
    "model",
    "level",
    "policy",
    "command",
    "cmd",
    "helper",
    "source",
    "server",
    "cache",
];

/// A first word that says the name is about a credential, not one (`--max-tokens`, `--no-auth`).
const NOT_SECRET_FIRST_WORDS: &[&str] = &[
    "max", "min", "num", "no", "enable", "disable", "use", "skip", "count",
];

/// Words that make a letters-only value a placeholder (`YOUR_API_KEY_HERE`, `changeme`).
const PLACEHOLDER_SUBSTRINGS: &[&str] = &[
    "your",
    "changeme",
    "placeholder",
    "replace",
    "example",
    "insert",
];
const PLACEHOLDER_WORDS: &[&str] = &[
    "here", "todo", "dummy", "fake", "sample", "redacted", "fixme", "tbd", "xxx", "xxxx",
];

/// HTTP authentication schemes: the word after one is the credential.
const AUTH_SCHEMES: &[&str] = &["bearer", "basic", "token", "digest", "apikey"];

/// Deepest nesting followed (JSON in a string in base64 in an argument ...).
const MAX_DEPTH: u8 = 4;

/// True when a flag, env, header, JSON key or query parameter *name* says its value is a
/// credential.
pub fn is_secret_name(name: &str) -> bool {
    let words = name_words(name);
    let Some(last) = words.last() else {
        return false;
    };
    if NOT_SECRET_LAST_WORDS.contains(&last.as_str())
        || NOT_SECRET_FIRST_WORDS.contains(&words[0].as_str())
    {
        return false;
    }
    let joined = words.join("_");
    SECRET_SUBSTRINGS.iter().any(|w| joined.contains(w))
        || words.iter().any(|w| SECRET_WORDS.contains(&w.as_str()))
}

/// The lowercase words of a name: `--x-api-key` → `[x, api, key]`, `clientSecret` →
/// `[client, secret]`, `"Proxy-Authorization"` → `[proxy, authorization]`.
fn name_words(name: &str) -> Vec<String> {
    let name = name.trim_matches(|c: char| matches!(c, '-' | '"' | '\'' | '$' | '{' | '}' | ' '));
    let mut words = Vec::new();
    let mut word = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            // camelCase boundary: `apiKey` is `api key`.
            if c.is_ascii_uppercase() && prev_lower && !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
            word.push(c.to_ascii_lowercase());
        } else {
            prev_lower = false;
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// True for a reference to a credential kept elsewhere: `${VAR}`, `$VAR`, `{env:VAR}`,
/// `${input:id}`, `{{VAR}}`, `%VAR%`, optionally after an auth scheme (`Bearer ${TOKEN}`).
pub fn is_reference(value: &str) -> bool {
    let v = strip_scheme(trim_quotes(value.trim()));
    let ident = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '.' | '-'))
    };
    if let Some(inner) = v.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        return ident(inner);
    }
    if let Some(inner) = v.strip_prefix("{{").and_then(|r| r.strip_suffix("}}")) {
        return ident(inner.trim());
    }
    if let Some(inner) = v.strip_prefix("{env:").and_then(|r| r.strip_suffix('}')) {
        return ident(inner);
    }
    if let Some(inner) = v.strip_prefix('%').and_then(|r| r.strip_suffix('%')) {
        return ident(inner);
    }
    v.strip_prefix('$').is_some_and(ident)
}

/// True for a placeholder that stands where a credential goes: `<your-key>`, `xxxx`, `sk-...`,
/// `ghp_xxxx`, or letters-only text with a word like `your`, `here`, `replace`, `example`.
pub fn is_placeholder(value: &str) -> bool {
    let v = strip_scheme(trim_quotes(value.trim()));
    if v.is_empty() || (v.starts_with('<') && v.ends_with('>')) {
        return true;
    }
    let filler = |s: &str| {
        s.len() >= 3
            && s.chars()
                .all(|c| matches!(c, 'x' | 'X' | '*' | '.' | '#' | '0' | '-' | '_' | '…'))
    };
    if filler(v) {
        return true;
    }
    if let Some(rest) = TOKEN_PREFIXES
        .iter()
        .find_map(|(p, _)| v.strip_prefix(p))
        .or_else(|| AWS_KEY_PREFIXES.iter().find_map(|p| v.strip_prefix(p)))
        && (rest.is_empty() || filler(rest))
    {
        return true;
    }
    if v.chars().any(|c| c.is_ascii_digit())
        || !v
            .chars()
            .all(|c| c.is_ascii_alphabetic() || matches!(c, '_' | '-' | ' ' | '.'))
    {
        return false;
    }
    let lower = v.to_ascii_lowercase();
    PLACEHOLDER_SUBSTRINGS.iter().any(|w| lower.contains(w))
        || lower
            .split(['_', '-', ' ', '.'])
            .any(|w| PLACEHOLDER_WORDS.contains(&w))
}

/// True for a filesystem path (absolute, home-relative, explicitly relative, or a Windows
/// drive path).
fn is_path(value: &str) -> bool {
    let v = trim_quotes(value);
    let b = v.as_bytes();
    v.starts_with('/')
        || v.starts_with("~/")
        || v.starts_with("./")
        || v.starts_with("../")
        || v.starts_with("\\\\")
        || (b.len() > 2
            && b[0].is_ascii_alphabetic()
            && b[1] == b':'
            && matches!(b[2], b'\\' | b'/'))
}

/// A value after a credential name that is not the credential itself.
fn is_harmless_value(value: &str) -> bool {
    let v = trim_quotes(value.trim());
    v == REDACTED || is_reference(v) || is_placeholder(v)
}

/// True when a value holds a credential by itself: a known token format, a JWT, a PEM block,
/// a long random string, base64 text hiding one, or a credential assignment (`TOKEN=x`).
pub fn looks_like_secret(value: &str) -> bool {
    !spans(value).is_empty()
}

/// True when `value`, set under `name` (an env var, a header), is a literal credential: it
/// looks like one, or the name says it is one and the value is long enough to be real and is
/// neither a reference, a placeholder nor a path (`TOKEN_FILE=/run/secrets/x`). The risk flag
/// `plaintext_secret` uses this rule, so what is flagged and what is redacted agree.
pub fn is_literal_credential(name: &str, value: &str) -> bool {
    let v = value.trim();
    looks_like_secret(v)
        || (is_secret_name(name)
            && v.len() >= 8
            && !is_harmless_value(v)
            && !is_path(v)
            && !is_auth_scheme(v))
}

/// Remove every credential from free text: a name, a path, an error message, a
/// `discovery_sources` entry, a shell line. Everything else is kept byte for byte; JSON text
/// whose values change is written back compact.
pub fn sanitize_text(text: &str) -> String {
    sanitize_depth(text, 0)
}

/// Remove every credential from a `command`: `API_KEY=x node`, `env TOKEN=x npx`, a whole
/// command line in one string. Commands without one are returned unchanged.
pub fn sanitize_command(command: &str) -> String {
    sanitize_text(command)
}

/// The sanitized text, or `None` when nothing had to be removed.
fn sanitized_if_changed(text: &str) -> Option<String> {
    if let Some(json) = sanitize_json_text(text, 0) {
        return (json != text).then_some(json);
    }
    let mut found = Vec::new();
    scan_text(text, 0, &mut State::default(), &mut found, 0);
    (!found.is_empty()).then(|| replace(text, found))
}

fn sanitize_depth(text: &str, depth: u8) -> String {
    if let Some(json) = sanitize_json_text(text, depth) {
        return json;
    }
    let mut found = Vec::new();
    let mut state = State::default();
    scan_text(text, 0, &mut state, &mut found, depth);
    replace(text, found)
}

/// Sanitize a server's argument list.
///
/// Every argument is judged as [`sanitize_text`] judges text; in addition the argument after a
/// credential flag (`--token`, `--password`, `-H Authorization:`) is removed whole, spaces and
/// all, unless it is a reference, a placeholder or a path.
pub fn sanitize_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut state = State::default();
    for arg in args {
        if state.pending
            && !is_flag(arg)
            && !is_auth_scheme(trim_quotes(arg.trim()))
            && !arg.trim_end().ends_with(':')
        {
            state.pending = false;
            let v = arg.trim();
            if is_harmless_value(v) || is_path(v) {
                out.push(sanitize_text(arg));
            } else {
                out.push(REDACTED.to_string());
            }
            continue;
        }
        if let Some(json) = sanitize_json_text(arg, 0) {
            state = State::default();
            out.push(json);
            continue;
        }
        let mut found = Vec::new();
        scan_text(arg, 0, &mut state, &mut found, 0);
        out.push(replace(arg, found));
    }
    out
}

/// Sanitize a URL: drop userinfo, credential-like query and fragment values, and path segments
/// that are tokens. Works on any string that contains a URL (e.g. an argument), leaving the
/// rest untouched.
pub fn sanitize_url(url: &str) -> String {
    sanitize_text(url)
}

/// Sanitize every text field of a server entry (see the table in the module docs). Env and
/// header names are names, but they are still run through [`sanitize_text`]: nothing that
/// travels skips the sanitizer.
pub fn sanitize_server(server: &mut ServerEntry) {
    // In place: most fields hold nothing to remove, and a scan sanitizes every server.
    let text = |s: &mut String| {
        if let Some(clean) = sanitized_if_changed(s) {
            *s = clean;
        }
    };
    text(&mut server.name);
    // `sanitize_command` and `sanitize_url` are `sanitize_text`.
    if let Some(c) = &mut server.command {
        text(c);
    }
    if !server.args.is_empty() {
        let args = sanitize_args(&server.args);
        if args != server.args {
            server.args = args;
        }
    }
    if let Some(u) = &mut server.url {
        text(u);
    }
    for list in [
        &mut server.env_keys,
        &mut server.header_keys,
        &mut server.credential_names,
        &mut server.auto_approve,
    ] {
        list.iter_mut().for_each(text);
    }
    for s in [&mut server.cwd, &mut server.project, &mut server.user]
        .into_iter()
        .flatten()
    {
        text(s);
    }
    text(&mut server.config_path);
}

/// Sanitize everything of an inventory that a config file can put text into: its servers, the
/// paths of client config files, and scan errors (paths and messages).
pub fn sanitize_inventory(inventory: &mut Inventory) {
    inventory.servers.iter_mut().for_each(sanitize_server);
    for client in &mut inventory.clients {
        client.name = sanitize_text(&client.name);
        for f in &mut client.config_files {
            *f = sanitize_text(f);
        }
    }
    for e in &mut inventory.errors {
        e.path = sanitize_text(&e.path);
        e.message = sanitize_text(&e.message);
    }
}

// ---------------------------------------------------------------------------------------------
// Finding credentials: byte ranges of a text, replaced at the end.

/// What the previous word announced.
#[derive(Debug, Default, Clone, Copy)]
struct State {
    /// The next word is a credential (after `--token`, `Authorization:`, `Bearer`).
    pending: bool,
}

/// Byte ranges of `text` that hold a credential.
fn spans(text: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    if let Some(json) = sanitize_json_text(text, 0) {
        if json != text {
            found.push((0, text.len()));
        }
        return found;
    }
    scan_text(text, 0, &mut State::default(), &mut found, 0);
    found
}

/// Replace the ranges (merged) with [`REDACTED`].
fn replace(text: &str, mut found: Vec<(usize, usize)>) -> String {
    if found.is_empty() {
        return text.to_string();
    }
    found.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (start, end) in found {
        if end <= last {
            continue;
        }
        let start = start.max(last);
        out.push_str(&text[last..start]);
        out.push_str(REDACTED);
        last = end;
    }
    out.push_str(&text[last..]);
    out
}

/// JSON text (an object or array) with its credentials removed, written back compact; `None`
/// when `text` is not JSON. Unchanged JSON is returned as it was.
fn sanitize_json_text(text: &str, depth: u8) -> Option<String> {
    let t = text.trim();
    if depth >= MAX_DEPTH
        || !((t.starts_with('{') && t.ends_with('}')) || (t.starts_with('[') && t.ends_with(']')))
    {
        return None;
    }
    let mut value: Value = serde_json::from_str(t).ok()?;
    if !sanitize_json_value(&mut value, false, depth + 1) {
        return Some(text.to_string());
    }
    Some(serde_json::to_string(&value).unwrap_or_else(|_| REDACTED.to_string()))
}

/// Remove credentials from a JSON value in place; `secret_key`: the value sits under a
/// credential's name. Returns true when something changed.
fn sanitize_json_value(value: &mut Value, secret_key: bool, depth: u8) -> bool {
    match value {
        Value::String(s) => {
            let new = if secret_key && !is_harmless_value(s) && !is_path(s) {
                REDACTED.to_string()
            } else {
                sanitize_depth(s, depth)
            };
            let changed = new != *s;
            *s = new;
            changed
        }
        Value::Number(_) if secret_key => {
            *value = Value::String(REDACTED.into());
            true
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |c, v| sanitize_json_value(v, secret_key, depth) | c),
        Value::Object(map) => map.iter_mut().fold(false, |c, (k, v)| {
            sanitize_json_value(v, is_secret_name(k), depth) | c
        }),
        _ => false,
    }
}

/// Find credentials in free text (`base`: offset of `text` in the string being sanitized).
fn scan_text(
    text: &str,
    base: usize,
    state: &mut State,
    found: &mut Vec<(usize, usize)>,
    depth: u8,
) {
    // PEM blocks, header to footer (or to the end of a truncated one).
    let mut from = 0;
    while let Some(at) = find_pem(&text[from..]) {
        let begin = from + at;
        words(&text[from..begin], base + from, state, found, depth);
        let end = text[begin..]
            .find("-----END")
            .and_then(|e| {
                let footer = begin + e + 8;
                text[footer..].find("-----").map(|f| footer + f + 5)
            })
            .unwrap_or(text.len());
        found.push((base + begin, base + end));
        from = end;
    }
    words(&text[from..], base + from, state, found, depth);
}

/// Where a PEM header starts (a plain byte scan: most texts are short and hold no `-----`).
fn find_pem(text: &str) -> Option<usize> {
    const BEGIN: &[u8] = b"-----BEGIN";
    let b = text.as_bytes();
    (0..b.len().saturating_sub(BEGIN.len() - 1))
        .find(|&i| b[i] == b'-' && b[i..].starts_with(BEGIN))
}

/// Walk the whitespace-separated words of `text`.
fn words(text: &str, base: usize, state: &mut State, found: &mut Vec<(usize, usize)>, depth: u8) {
    let mut start = None;
    for (i, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        match (start, c.is_whitespace()) {
            (None, false) => start = Some(i),
            (Some(s), true) => {
                word(&text[s..i], base + s, state, found, depth);
                start = None;
            }
            _ => {}
        }
    }
}

/// Characters that wrap a word without being part of it (quotes, brackets, list punctuation,
/// shell escapes).
fn is_wrapper(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | '`' | '(' | ')' | '[' | ']' | '{' | '}' | ',' | ';' | '\\'
    )
}

/// `s` without wrapping characters, with its offset inside `s`. A closing bracket that closes
/// something inside the word stays (`${KEY}`, `f(x)`).
fn trim_wrapped(s: &str) -> (usize, &str) {
    let t = s.trim_start_matches(is_wrapper);
    let off = s.len() - t.len();
    let mut t = t;
    while let Some(last) = t.chars().last().filter(|c| is_wrapper(*c)) {
        let opener = match last {
            ')' => Some('('),
            ']' => Some('['),
            '}' => Some('{'),
            _ => None,
        };
        if let Some(open) = opener
            && t.matches(open).count() >= t.matches(last).count()
        {
            break;
        }
        t = &t[..t.len() - last.len_utf8()];
    }
    (off, t)
}

fn trim_quotes(s: &str) -> &str {
    s.trim_matches(|c: char| matches!(c, '"' | '\'' | '`' | '\\'))
}

fn is_flag(s: &str) -> bool {
    let s = s.trim();
    s.len() > 1 && s.starts_with('-') && !s[1..].starts_with(|c: char| c.is_ascii_digit())
}

fn is_auth_scheme(s: &str) -> bool {
    AUTH_SCHEMES.iter().any(|a| s.eq_ignore_ascii_case(a))
}

/// `Bearer x` → `x`.
fn strip_scheme(v: &str) -> &str {
    match v.split_once(' ') {
        Some((scheme, rest)) if is_auth_scheme(scheme) => rest.trim_start(),
        _ => v,
    }
}

/// Judge one word, given what the previous one announced.
fn word(raw: &str, base: usize, state: &mut State, found: &mut Vec<(usize, usize)>, depth: u8) {
    let (off, core) = trim_wrapped(raw);
    if core.is_empty() {
        return;
    }
    let base = base + off;
    if state.pending {
        state.pending = false;
        if is_auth_scheme(core) {
            state.pending = true;
            return;
        }
        if !is_flag(core) {
            if !is_harmless_value(core) && !is_harmless_value(raw) && !is_path(core) {
                found.push((base, base + core.len()));
            } else {
                value(core, base, found, depth);
            }
            return;
        }
    }
    // `Authorization:` or `"apiKey":` — the credential is the next word.
    if let Some(name) = core.strip_suffix(':')
        && is_secret_name(trim_quotes(name))
    {
        state.pending = true;
        return;
    }
    if is_auth_scheme(core) {
        state.pending = true;
        return;
    }
    if is_flag(core) && !core.contains('=') {
        state.pending = is_secret_name(core);
        return;
    }
    value(core, base, found, depth);
}

/// Judge a value: a URL, `key=value` / `key:value` pairs (`&`, `;`, `,` separated), then tokens.
fn value(v: &str, base: usize, found: &mut Vec<(usize, usize)>, depth: u8) {
    if depth >= MAX_DEPTH {
        return;
    }
    if let Some(scheme_at) = url_start(v) {
        // What precedes the URL (`--url=`, `API_URL=`) is a name; a credential name takes the
        // whole URL.
        let name = v[..scheme_at].trim_end_matches(['=', ':']);
        if !name.is_empty() && v[..scheme_at].ends_with(['=', ':']) && is_secret_name(name) {
            found.push((base + scheme_at, base + v.len()));
        } else {
            // The prefix is judged too: `ghp_…:0://` is a token before a URL-shaped tail.
            tokens(&v[..scheme_at], base, found, depth);
            url(&v[scheme_at..], base + scheme_at, found, depth);
        }
        return;
    }
    let mut start = 0;
    for (i, c) in v.char_indices().chain(std::iter::once((v.len(), '&'))) {
        if matches!(c, '&' | ';' | ',') {
            pair(&v[start..i], base + start, found, depth);
            start = i + c.len_utf8();
        }
    }
}

/// One `key=value`, `"key":"value"`, `Header:value` or plain piece.
fn pair(seg: &str, base: usize, found: &mut Vec<(usize, usize)>, depth: u8) {
    let (off, seg) = trim_wrapped(seg);
    if seg.is_empty() {
        return;
    }
    let base = base + off;
    for sep in ['=', ':'] {
        let Some(at) = seg.find(sep) else { continue };
        let name = trim_quotes(&seg[..at]);
        let (voff, val) = trim_wrapped(&seg[at + 1..]);
        if val.is_empty() || name.is_empty() || name.contains(['/', '@']) {
            continue;
        }
        let vbase = base + at + 1 + voff;
        if is_secret_name(name) {
            let inner = strip_scheme(val);
            if !is_harmless_value(val) && !is_path(val) && !is_auth_scheme(val) {
                let skip = val.len() - inner.len();
                found.push((vbase + skip, vbase + val.len()));
            }
            return;
        }
        if sep == '=' {
            // `--max-old-space-size=2048`: judge the value by itself (it may be `a=b` again).
            tokens(&seg[..at], base, found, depth);
            value(val, vbase, found, depth + 1);
            return;
        }
    }
    tokens(seg, base, found, depth);
}

/// Byte offset where a URL (`scheme://`) starts in `v`.
fn url_start(v: &str) -> Option<usize> {
    let sep = v.find("://")?;
    let scheme_len = v[..sep]
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'))
        .count();
    (scheme_len > 0).then_some(sep - scheme_len)
}

/// A URL: userinfo, path segments, query and fragment parameters.
fn url(u: &str, base: usize, found: &mut Vec<(usize, usize)>, depth: u8) {
    let Some(sep) = u.find("://") else { return };
    let rest_at = sep + 3;
    let rest = &u[rest_at..];
    let mut authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    // A password holding `/` (pasted unencoded): `user:pa/ss@host` still has userinfo.
    let query_start = rest.find(['?', '#']).unwrap_or(rest.len());
    if let Some(at) = rest[..query_start].rfind('@')
        && at > authority_end
        && rest[..at].find(':').is_some_and(|c| c < authority_end)
    {
        authority_end = rest[at..]
            .find(['/', '?', '#'])
            .map_or(rest.len(), |e| at + e);
    }
    if let Some(at) = rest[..authority_end].rfind('@')
        && at > 0
        && &rest[..at] != REDACTED
    {
        found.push((base + rest_at, base + rest_at + at));
    }
    let tail_at = rest_at + authority_end;
    let tail = &u[tail_at..];
    let (before_fragment, fragment_at) = match tail.find('#') {
        Some(i) => (&tail[..i], Some(tail_at + i + 1)),
        None => (tail, None),
    };
    let (path, query_at) = match before_fragment.find('?') {
        Some(i) => (&before_fragment[..i], Some(tail_at + i + 1)),
        None => (before_fragment, None),
    };
    // Path segments: a token, or an id that grants access by itself (a UUID or long hex in a
    // hosted server's URL is usually its key).
    let mut segments = Vec::new();
    let mut seg_at = tail_at;
    for seg in path.split('/') {
        let mut secret = false;
        if !seg.is_empty() && seg != REDACTED {
            let before = found.len();
            tokens(seg, base + seg_at, found, depth);
            secret = found.len() > before;
            if !secret && is_capability_id(seg) {
                found.push((base + seg_at, base + seg_at + seg.len()));
                secret = true;
            }
        }
        segments.push((seg_at, seg, secret));
        seg_at += seg.len() + 1;
    }
    // A base64 key holding `/` spans segments: its other pieces go with it.
    for i in 0..segments.len() {
        if !segments[i].2 {
            continue;
        }
        let mut take = |j: usize| {
            let (at, seg, secret): (usize, &str, bool) = segments[j];
            let piece = !secret && is_key_piece(seg);
            if piece {
                found.push((base + at, base + at + seg.len()));
            }
            piece
        };
        for j in (0..i).rev() {
            if !take(j) {
                break;
            }
        }
        for j in i + 1..segments.len() {
            if !take(j) {
                break;
            }
        }
    }
    let query_end = fragment_at.map_or(u.len(), |f| f - 1);
    if let Some(q) = query_at {
        params(&u[q..query_end], base + q, found, depth);
    }
    if let Some(f) = fragment_at {
        let fragment = &u[f..];
        if fragment.contains('=') {
            params(fragment, base + f, found, depth);
        } else {
            tokens(fragment, base + f, found, depth);
        }
    }
}

/// `k=v&k2=v2`: a credential name takes the value; other values are judged by themselves.
fn params(q: &str, base: usize, found: &mut Vec<(usize, usize)>, depth: u8) {
    let mut at = 0;
    for pair in q.split('&') {
        if let Some((k, v)) = pair.split_once('=') {
            let vat = base + at + k.len() + 1;
            if !v.is_empty() {
                if is_secret_name(k) {
                    if !is_harmless_value(v) {
                        found.push((vat, vat + v.len()));
                    }
                } else {
                    value(v, vat, found, depth + 1);
                }
            }
        } else {
            tokens(pair, base + at, found, depth);
        }
        at += pair.len() + 1;
    }
}

/// A short piece that reads like part of a key, not a word: letters of both cases and digits.
fn is_key_piece(seg: &str) -> bool {
    let (lower, upper, digit) = classes(seg);
    seg.len() >= 4
        && lower
        && upper
        && digit
        && seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'='))
}

/// A UUID or a long hex string.
fn is_capability_id(seg: &str) -> bool {
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    let parts: Vec<&str> = seg.split('-').collect();
    let uuid = parts.len() == 5
        && parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts.iter().all(|p| hex(p));
    uuid || (seg.len() >= 24 && hex(seg) && seg.bytes().any(|b| b.is_ascii_digit()))
}

/// The token alphabet: base64 (both flavours), hex, JWT.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'_' | b'-' | b'.' | b'~')
}

/// Tokens inside a piece of text without spaces: known formats at any word boundary, then each
/// run of token characters judged by its shape.
fn tokens(s: &str, base: usize, found: &mut Vec<(usize, usize)>, depth: u8) {
    if s.len() < 8 || s == REDACTED {
        return;
    }
    let bytes = s.as_bytes();
    let before = found.len();
    let mut i = 0;
    while i < bytes.len() {
        let boundary = s.is_char_boundary(i) && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric());
        if boundary && let Some(end) = known_token_end(&s[i..]) {
            found.push((base + i, base + i + end));
            i += end;
            continue;
        }
        i += 1;
    }
    let covered = |a: usize, b: usize, found: &[(usize, usize)]| {
        found[before..]
            .iter()
            .any(|&(x, y)| x <= base + a && base + b <= y)
    };
    // Runs of token characters (a `sha256:` digest is an image pin, not a credential).
    let mut start = None;
    for (i, b) in bytes
        .iter()
        .copied()
        .chain(std::iter::once(b' '))
        .enumerate()
    {
        match (start, is_token_char(b)) {
            (None, true) => start = Some(i),
            (Some(st), false) => {
                start = None;
                let run = &s[st..i];
                let digest = s[..st].ends_with("sha256:")
                    || s[..st].ends_with("sha512:")
                    || s[..st].ends_with("sha1:");
                if !digest && !covered(st, i, found) && (is_random(run) || hides_secret(run, depth))
                {
                    found.push((base + st, base + i));
                }
            }
            _ => {}
        }
    }
}

/// Length of a known-format token at the start of `s`.
fn known_token_end(s: &str) -> Option<usize> {
    let first = s.as_bytes().first().copied();
    if !first.is_some_and(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let run = |from: usize, extra: &[u8]| {
        s.as_bytes()[from..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || extra.contains(b))
            .count()
    };
    // JWT: `eyJ` (base64 of `{"`), three dot-separated base64url parts.
    if s.starts_with("eyJ") {
        let len = run(0, b"_-.");
        let t = &s[..len];
        if len >= 20 && t.split('.').filter(|p| !p.is_empty()).count() >= 2 {
            return Some(len);
        }
    }
    for p in AWS_KEY_PREFIXES.iter().filter(|_| first == Some(b'A')) {
        if s.starts_with(p) {
            let tail = s.as_bytes()[p.len()..]
                .iter()
                .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
                .count();
            let next = s.as_bytes().get(p.len() + tail);
            if tail >= 16 && next.is_none_or(|b| !b.is_ascii_alphanumeric()) {
                return Some(p.len() + tail);
            }
        }
    }
    for (p, min) in TOKEN_PREFIXES {
        // Compare the first byte before the prefix: this runs at every word boundary.
        if p.as_bytes().first().copied() != first {
            continue;
        }
        if let Some(rest) = s.strip_prefix(p) {
            let len = run(p.len(), b"_-.").min(rest.len());
            // A trailing `.` ends a sentence, not a token.
            let tail = rest[..len].trim_end_matches('.');
            if tail.len() >= *min && looks_random_tail(tail) {
                return Some(p.len() + tail.len());
            }
        }
    }
    None
}

/// The part after a token prefix is random: letters and digits mixed, or both cases.
fn looks_random_tail(t: &str) -> bool {
    let (lower, upper, digit) = classes(t);
    let distinct = {
        let mut seen = [false; 128];
        t.bytes()
            .filter(|b| b.is_ascii())
            .for_each(|b| seen[usize::from(b)] = true);
        seen.iter().filter(|s| **s).count()
    };
    distinct >= 6 && ((digit && (lower || upper)) || (lower && upper))
}

fn classes(s: &str) -> (bool, bool, bool) {
    s.bytes().fold((false, false, false), |(l, u, d), b| {
        (
            l || b.is_ascii_lowercase(),
            u || b.is_ascii_uppercase(),
            d || b.is_ascii_digit(),
        )
    })
}

/// A random-looking run: a long base64, base64url or hex string (an API key, a secret access
/// key), judged per stretch between `-`, `_` and `.` (and `/`, when the run reads like a path),
/// so names made of words and numbers are not.
fn is_random(run: &str) -> bool {
    let run = run.trim_end_matches('=');
    if run.len() < 16 || run.starts_with(['/', '~', '.']) {
        return false;
    }
    let wordish = |p: &str| {
        p.len() >= 2
            && p.bytes().any(|b| b.is_ascii_lowercase())
            && p.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            })
    };
    let path_like = run.contains('/') && run.split('/').any(wordish);
    let seps: &[char] = if path_like {
        &['-', '_', '.', '/']
    } else {
        &['-', '_', '.']
    };
    run.split(seps).any(random_stretch)
}

fn random_stretch(s: &str) -> bool {
    let n = s.len();
    if n < 16 {
        return false;
    }
    let (lower, upper, digit) = classes(s);
    let switches = s
        .as_bytes()
        .windows(2)
        .filter(|w| class(w[0]) != class(w[1]))
        .count();
    let hex = s.bytes().all(|b| b.is_ascii_hexdigit());
    if hex && n >= 32 && digit {
        return true;
    }
    let entropy = shannon_entropy(s);
    if digit && (lower || upper) {
        return entropy >= 3.3 && switches * 4 >= n;
    }
    lower && upper && n >= 24 && entropy >= 3.8 && switches * 3 >= n
}

fn class(b: u8) -> u8 {
    if b.is_ascii_lowercase() {
        0
    } else if b.is_ascii_uppercase() {
        1
    } else if b.is_ascii_digit() {
        2
    } else {
        3
    }
}

fn shannon_entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[usize::from(b)] += 1;
    }
    let len = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / len;
            -p * p.log2()
        })
        .sum()
}

/// Base64 text that decodes to text holding a credential (a token in base64 JSON).
fn hides_secret(run: &str, depth: u8) -> bool {
    if depth + 1 >= MAX_DEPTH || run.len() < 16 {
        return false;
    }
    let Some(decoded) = base64_decode(run) else {
        return false;
    };
    let Ok(text) = String::from_utf8(decoded) else {
        return false;
    };
    if text.chars().any(|c| c.is_control() && !c.is_whitespace()) {
        return false;
    }
    sanitize_depth(&text, depth + 1) != text
}

/// Standard or URL-safe base64, padded or not.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    const GH: &str = "ghp_C3J27XDCG2LmlZGEONYlgCtjfIZ4SOcMz9CP";

    #[test]
    fn flag_values_are_redacted() {
        assert_eq!(
            sanitize_args(&s(&["--token", "abc123", "--port", "8080"])),
            s(&["--token", REDACTED, "--port", "8080"])
        );
        assert_eq!(
            sanitize_args(&s(&["--api-key=hunter2", "--verbose"])),
            s(&["--api-key=<redacted>", "--verbose"])
        );
        assert_eq!(
            sanitize_args(&s(&["GITHUB_TOKEN=x", "MODE=fast"])),
            s(&["GITHUB_TOKEN=<redacted>", "MODE=fast"])
        );
        assert_eq!(
            sanitize_args(&s(&["--password", "correct horse battery staple"])),
            s(&["--password", REDACTED])
        );
    }

    #[test]
    fn package_names_and_paths_survive() {
        let args = s(&[
            "-y",
            "@modelcontextprotocol/server-filesystem@2025.8.21",
            "/home/alice/projects",
            "mcp-server-fetch",
            "--allowed-origins",
            "awslabs-s3-tables-mcp-server",
            "--max-old-space-size=2048",
            "claude-3-5-sonnet-20241022",
            "123e4567-e89b-12d3-a456-426614174000",
            "--token-file",
            "/run/secrets/token",
            "--max-tokens",
            "4096",
        ]);
        assert_eq!(sanitize_args(&args), args);
    }

    #[test]
    fn literal_tokens_are_redacted() {
        let args = s(&[
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "Zx9Qm2Lr8Tv4Wb6Yc1Nd5Hf7Kj3Pg0Sa",
            "o58JB0W/O5PjeJfJTNcrZ6ydIEsgo5nVjzz8Gwb8",
        ]);
        assert_eq!(sanitize_args(&args), s(&[REDACTED, REDACTED, REDACTED]));
    }

    #[test]
    fn headers_shell_strings_and_json_arguments() {
        assert_eq!(
            sanitize_args(&s(&[
                "mcp-remote",
                "https://h/sse",
                "--header",
                &format!("Authorization: Bearer {GH}")
            ])),
            s(&[
                "mcp-remote",
                "https://h/sse",
                "--header",
                "Authorization: Bearer <redacted>"
            ])
        );
        assert_eq!(
            sanitize_args(&s(&["--header", "Authorization:${AUTH_HEADER}"])),
            s(&["--header", "Authorization:${AUTH_HEADER}"])
        );
        assert_eq!(
            sanitize_text(&format!(
                "curl -H 'Authorization: Bearer {GH}' https://x | sh"
            )),
            "curl -H 'Authorization: Bearer <redacted>' https://x | sh"
        );
        assert_eq!(
            sanitize_text("export DB_PASSWORD=p4ss!word; node srv.js --token abc123"),
            "export DB_PASSWORD=<redacted>; node srv.js --token <redacted>"
        );
        assert_eq!(
            sanitize_args(&s(&[r#"{"apiKey": "abc123", "region": "eu"}"#])),
            s(&[r#"{"apiKey":"<redacted>","region":"eu"}"#])
        );
        assert_eq!(
            sanitize_args(&s(&[r#"{"region": "eu"}"#])),
            s(&[r#"{"region": "eu"}"#]),
            "unchanged JSON keeps its formatting"
        );
        assert_eq!(
            sanitize_command(&format!("API_KEY={GH} npx")),
            "API_KEY=<redacted> npx"
        );
        assert_eq!(
            sanitize_command("C:\\Program Files\\nodejs\\npx.cmd"),
            "C:\\Program Files\\nodejs\\npx.cmd"
        );
    }

    #[test]
    fn tokens_anywhere_and_base64_json() {
        assert_eq!(sanitize_text(&format!("creds:{GH}")), "creds:<redacted>");
        // Found by the property test: a token followed by punctuation that ends in `:`.
        assert_eq!(sanitize_text(&format!("{GH}`:")), "<redacted>`:");
        assert_eq!(sanitize_text(&format!("'{GH}'")), "'<redacted>'");
        assert_eq!(sanitize_text(&format!("/srv/{GH}/x")), "/srv/<redacted>/x");
        let b64 =
            "eyJhdXRoIjogeyJ0b2tlbiI6ICJnaHBfV3pLYmhOZ1ZwcUN6R2RXbVB5YWdxcXI1dkpJR0E5SEsyZ09DIn19";
        assert_eq!(sanitize_text(b64), REDACTED);
        assert!(looks_like_secret(
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"
        ));
        assert!(!looks_like_secret("task-runner-with-a-long-name"));
        assert!(!looks_like_secret("sk-learn-some-long-package-name"));
        assert!(!looks_like_secret(
            "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        ));
    }

    #[test]
    fn urls_lose_userinfo_and_secret_params() {
        assert_eq!(
            sanitize_url("https://bob:pw@mcp.example.com/sse?api_key=k1&region=eu#x"),
            "https://<redacted>@mcp.example.com/sse?api_key=<redacted>&region=eu#x"
        );
        assert_eq!(
            sanitize_url("http://localhost:3000/mcp"),
            "http://localhost:3000/mcp"
        );
        assert_eq!(
            sanitize_args(&s(&["--url", "https://h/x?token=abc"])),
            s(&["--url", "https://h/x?token=<redacted>"])
        );
        assert_eq!(
            sanitize_url("https://h/cb#access_token=abc&token_type=bearer"),
            "https://h/cb#access_token=<redacted>&token_type=bearer"
        );
        assert_eq!(
            sanitize_url("https://mcp.pipedream.net/123e4567-e89b-12d3-a456-426614174000/gmail"),
            "https://mcp.pipedream.net/<redacted>/gmail"
        );
        assert_eq!(
            sanitize_url("https://h/mcp?api_key=${KEY}"),
            "https://h/mcp?api_key=${KEY}"
        );
    }

    #[test]
    fn names() {
        for yes in [
            "--token",
            "GITHUB_PERSONAL_ACCESS_TOKEN",
            "apiKey",
            "x-api-key",
            "Authorization",
            "clientSecret",
            "privateKey",
            "accountKey",
            "PGPASSWORD",
            "NGROK_AUTHTOKEN",
            "sig",
            "key",
        ] {
            assert!(is_secret_name(yes), "{yes}");
        }
        for no in [
            "--tokenizer",
            "--author",
            "--design",
            "TOKEN_PATH",
            "GDRIVE_TOKEN_PATH",
            "API_KEY_FILE",
            "AUTH_MODE",
            "--max-tokens",
            "CLIENT_ID",
            "--port",
        ] {
            assert!(!is_secret_name(no), "{no}");
        }
    }

    #[test]
    fn placeholders_and_references() {
        for p in [
            "YOUR_API_KEY_HERE",
            "<your-token>",
            "sk-...",
            "xxxxxxxx",
            "your-brave-api-key-here",
            "changeme",
        ] {
            assert!(is_placeholder(p), "{p}");
        }
        assert!(!is_placeholder("AKIAIOSFODNN7EXAMPLE"));
        for r in [
            "${A}",
            "$A",
            "{env:A}",
            "${input:tok}",
            "%A%",
            "Bearer ${T}",
        ] {
            assert!(is_reference(r), "{r}");
        }
        assert!(!is_reference("$5 off"));
    }

    #[test]
    fn never_panics_on_odd_input() {
        for input in [
            "://",
            "a://@",
            "x://h?&&=&a=",
            "é://ü@ß?ö=ä#",
            "?#://",
            "-",
            "=",
            ":",
            "{",
            "[]",
            "-----BEGIN",
            "-----BEGIN X-----\n-----END",
            "eyJ",
            "a=b=c",
            "é=ü",
            "'\"'",
            // Found by the property tests: multi-byte text after a word boundary.
            "®®𘠀",
            "ghp_®",
            "é-ghp_",
        ] {
            let _ = sanitize_url(input);
            let _ = sanitize_text(input);
            let _ = sanitize_args(&s(&[input, input]));
        }
    }

    /// Found by `tokens_never_survive`: a token right before a URL-shaped tail (`:0://`) was
    /// taken for the name in front of a URL and left as it was.
    #[test]
    fn a_token_before_a_url_tail_is_redacted() {
        for text in [format!("{GH}:0://"), format!("x={GH}:a://h")] {
            assert!(!sanitize_text(&text).contains(&GH[4..]), "{text}");
            assert!(
                !sanitize_args(&s(&[&text])).concat().contains(&GH[4..]),
                "{text}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Sanitizing twice is sanitizing once, for any text and any argument list.
        #[test]
        fn idempotent(text in "\\PC{0,80}", args in proptest::collection::vec("\\PC{0,24}", 0..6)) {
            let once = sanitize_text(&text);
            prop_assert_eq!(sanitize_text(&once), once.clone());
            let a = sanitize_args(&args);
            prop_assert_eq!(sanitize_args(&a), a.clone());
        }

        /// A known token never survives, whatever surrounds it.
        #[test]
        fn tokens_never_survive(
            before in "[ -~]{0,20}",
            after in "[ -~&&[^A-Za-z0-9_.\\-]][ -~]{0,20}",
            quote in prop::sample::select(vec!["", "'", "\"", "`"]),
        ) {
            let text = format!("{before} {quote}{GH}{quote}{after}");
            let out = sanitize_text(&text);
            prop_assert!(!out.contains("C3J27XDCG2LmlZGEONYlgCtjfIZ4SOcMz9CP"), "{} -> {}", text, out);
            let args = sanitize_args(&[before.clone(), format!("{quote}{GH}{quote}{after}")]);
            prop_assert!(!args.concat().contains("C3J27XDCG2LmlZGEONYlgCtjfIZ4SOcMz9CP"));
        }
    }
}
