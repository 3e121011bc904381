//! Secret detection in message content, on top of the discovery hygiene heuristics
//! (`agent_bom_protocol::sanitize`): known token prefixes, PEM private keys and high-entropy
//! strings, found inside any string of a JSON value.

use serde_json::Value;

use agent_bom_protocol::sanitize::{REDACTED, looks_like_secret};

/// Longest token considered for the entropy heuristic: credentials are short, while base64
/// images and file contents are long and would otherwise all look "random".
const MAX_ENTROPY_TOKEN: usize = 256;
/// Shortest token judged at all (the shortest known-format token is longer).
const MIN_TOKEN: usize = 16;

/// What was found: kinds only, never the value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// Number of secret-looking tokens.
    pub count: usize,
    /// Distinct kinds (`private_key`, `token`).
    pub kinds: Vec<&'static str>,
}

impl Findings {
    fn add(&mut self, kind: &'static str) {
        self.count += 1;
        if !self.kinds.contains(&kind) {
            self.kinds.push(kind);
        }
    }

    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Scan every string in `value`.
pub fn scan(value: &Value) -> Findings {
    let mut findings = Findings::default();
    visit(value, &mut |s| {
        scan_str(s, &mut findings, &mut |_| {});
    });
    findings
}

/// Replace every secret in `value` with the redaction placeholder; returns what was replaced.
pub fn redact(value: &mut Value) -> Findings {
    let mut findings = Findings::default();
    visit_mut(value, &mut |s| {
        let mut ranges = Vec::new();
        scan_str(s, &mut findings, &mut |r| ranges.push(r));
        if !ranges.is_empty() {
            let mut out = String::with_capacity(s.len());
            let mut last = 0;
            for (start, end) in ranges {
                out.push_str(&s[last..start]);
                out.push_str(REDACTED);
                last = end;
            }
            out.push_str(&s[last..]);
            *s = out;
        }
    });
    findings
}

fn scan_str(s: &str, findings: &mut Findings, on_range: &mut dyn FnMut((usize, usize))) {
    // A PEM private key is redacted whole, header to footer.
    let mut rest_start = 0;
    while let Some(begin) = s[rest_start..].find("-----BEGIN") {
        let begin = rest_start + begin;
        let header_end = s[begin..].find('\n').map_or(s.len(), |i| begin + i);
        if !s[begin..header_end].contains("PRIVATE KEY") {
            rest_start = header_end.min(s.len());
            if rest_start >= s.len() {
                break;
            }
            continue;
        }
        let end = s[begin..]
            .find("-----END")
            .and_then(|e| {
                s[begin + e + 8..]
                    .find("-----")
                    .map(|f| begin + e + 8 + f + 5)
            })
            .unwrap_or(s.len());
        findings.add("private_key");
        on_range((begin, end));
        tokens(&s[rest_start..begin], rest_start, findings, on_range);
        rest_start = end;
    }
    tokens(&s[rest_start..], rest_start, findings, on_range);
}

fn tokens(
    s: &str,
    offset: usize,
    findings: &mut Findings,
    on_range: &mut dyn FnMut((usize, usize)),
) {
    // Separators are ASCII, and ASCII bytes never occur inside a multi-byte UTF-8 sequence, so
    // walking bytes (much faster than chars on large results) still cuts at char boundaries.
    let is_sep = |b: u8| {
        b.is_ascii_whitespace()
            || matches!(
                b,
                b'"' | b'\''
                    | b','
                    | b';'
                    | b'('
                    | b')'
                    | b'<'
                    | b'>'
                    | b'`'
                    | b'['
                    | b']'
                    | b'{'
                    | b'}'
            )
    };
    let mut start = None;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        match (start, is_sep(b)) {
            (None, false) => start = Some(i),
            (Some(st), true) => {
                if i - st >= MIN_TOKEN {
                    check_token(&s[st..i], offset + st, findings, on_range);
                }
                start = None;
            }
            _ => {}
        }
    }
    if let Some(st) = start
        && s.len() - st >= MIN_TOKEN
    {
        check_token(&s[st..], offset + st, findings, on_range);
    }
}

fn check_token(
    token: &str,
    at: usize,
    findings: &mut Findings,
    on_range: &mut dyn FnMut((usize, usize)),
) {
    // `key=value` and `key:value`: judge the value part.
    let (token, at) = match token.rfind(['=', ':']) {
        Some(i) if i + 1 < token.len() && !token.ends_with('=') => (&token[i + 1..], at + i + 1),
        _ => (token, at),
    };
    if token.len() < MIN_TOKEN || token.len() > MAX_ENTROPY_TOKEN * 4 {
        return;
    }
    if token.len() > MAX_ENTROPY_TOKEN && !has_known_prefix(token) {
        return;
    }
    if looks_like_secret(token) {
        findings.add("token");
        on_range((at, at + token.len()));
    }
}

fn has_known_prefix(token: &str) -> bool {
    [
        "ghp_",
        "github_pat_",
        "glpat-",
        "xox",
        "sk-",
        "sk_live_",
        "AKIA",
        "npm_",
        "hf_",
        "AIza",
    ]
    .iter()
    .any(|p| token.starts_with(p))
}

fn visit(value: &Value, f: &mut dyn FnMut(&str)) {
    match value {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter().for_each(|v| visit(v, f)),
        Value::Object(o) => o.iter().for_each(|(k, v)| {
            f(k);
            visit(v, f);
        }),
        _ => {}
    }
}

fn visit_mut(value: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match value {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter_mut().for_each(|v| visit_mut(v, f)),
        Value::Object(o) => o.values_mut().for_each(|v| visit_mut(v, f)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GH: &str = "ghp_Ab3dEf6hIj9lMn2pQr5tUv8xYz1BcD4fGh7K";

    #[test]
    fn finds_tokens_keys_and_entropy() {
        assert!(scan(&json!({"q": format!("token is {GH}.")})).count >= 1);
        assert_eq!(scan(&json!({"k": "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----"})).kinds, vec!["private_key"]);
        assert!(!scan(&json!({"k": "Zx9Qm2Lr8Tv4Wb6Yc1Nd5Hf7Kj3Pg0Sa"})).is_empty());
        assert!(!scan(&json!({"a": "AWS_KEY=AKIAIOSFODNN7EXAMPLE1"})).is_empty());
    }

    #[test]
    fn ordinary_content_is_not_a_secret() {
        for s in [
            "Adds two numbers.",
            "/home/alice/projects/agent-bom/src/main.rs",
            "@modelcontextprotocol/server-filesystem",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
            "https://example.com/a/b?c=d",
        ] {
            assert!(scan(&json!({"x": s})).is_empty(), "{s}");
        }
        // A long base64 blob (an image) is not judged by entropy.
        let blob: String = (0..4000)
            .map(|i| ["Q", "w", "9", "z", "K"][i % 5])
            .collect();
        assert!(scan(&json!({ "data": blob })).is_empty());
    }

    #[test]
    fn redaction_keeps_the_rest() {
        let mut v = json!({"a": [format!("use {GH} now")], "n": 1});
        let f = redact(&mut v);
        assert_eq!(f.count, 1);
        assert_eq!(v, json!({"a": ["use <redacted> now"], "n": 1}));
        let mut k =
            json!("x -----BEGIN RSA PRIVATE KEY-----\nAAA\n-----END RSA PRIVATE KEY----- y");
        redact(&mut k);
        assert_eq!(k, json!("x <redacted> y"));
    }
}
