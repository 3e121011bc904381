//! Argument and URL hygiene: what leaves the machine never carries a credential.
//!
//! Env and header *values* are dropped wholesale by the normalizer; this module cleans the two
//! places where users also paste secrets: command-line arguments and URLs.

/// Placeholder that replaces a removed value.
pub const REDACTED: &str = "<redacted>";

/// Known credential prefixes (GitHub, GitLab, Slack, OpenAI/Anthropic-style, AWS, Stripe, npm,
/// Hugging Face, Google).
const TOKEN_PREFIXES: &[&str] = &[
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "xoxs-",
    "sk-",
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "AKIA",
    "ASIA",
    "npm_",
    "hf_",
    "AIza",
];

/// True when a flag, env, header or query parameter *name* suggests its value is a credential.
pub fn is_secret_name(name: &str) -> bool {
    let n = name
        .trim_start_matches('-')
        .to_ascii_lowercase()
        .replace('-', "_");
    const WORDS: &[&str] = &[
        "token",
        "secret",
        "password",
        "passwd",
        "pwd",
        "apikey",
        "api_key",
        "auth",
        "credential",
        "private_key",
        "access_key",
        "signature",
        "sig",
        "session",
        "cookie",
    ];
    WORDS.iter().any(|w| n.contains(w)) || n == "key" || n.ends_with("_key")
}

/// True when a value looks like a credential by itself: a known token prefix, a PEM block, or a
/// long high-entropy string that is not a path or a package name.
pub fn looks_like_secret(value: &str) -> bool {
    if value.contains("-----BEGIN") {
        return true;
    }
    if TOKEN_PREFIXES
        .iter()
        .any(|p| value.starts_with(p) && value.len() >= p.len() + 12)
    {
        return true;
    }
    is_high_entropy(value)
}

fn is_high_entropy(value: &str) -> bool {
    if value.len() < 24 || value.contains(['/', '\\', ' ', '@', '.']) {
        return false;
    }
    let (mut lower, mut upper, mut digit) = (false, false, false);
    for c in value.chars() {
        if !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '=')) {
            return false;
        }
        lower |= c.is_ascii_lowercase();
        upper |= c.is_ascii_uppercase();
        digit |= c.is_ascii_digit();
    }
    let classes = usize::from(lower) + usize::from(upper) + usize::from(digit);
    classes >= 2 && shannon_entropy(value) >= 3.5
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

/// Sanitize a server's argument list.
///
/// Removes the value after a credential flag (`--token X`), the value of `--flag=X` and `NAME=X`
/// forms with a credential name, credentials inside URLs, and values that look like secrets.
pub fn sanitize_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut redact_next = false;
    for arg in args {
        if redact_next {
            redact_next = false;
            if !arg.starts_with('-') {
                out.push(REDACTED.to_string());
                continue;
            }
        }
        out.push(sanitize_arg(arg, &mut redact_next));
    }
    out
}

fn sanitize_arg(arg: &str, redact_next: &mut bool) -> String {
    if arg.contains("://") {
        return sanitize_url(arg);
    }
    if let Some((name, value)) = arg.split_once('=') {
        if !value.is_empty() && (is_secret_name(name) || looks_like_secret(value)) {
            return format!("{name}={REDACTED}");
        }
        return arg.to_string();
    }
    if arg.starts_with('-') {
        *redact_next = is_secret_name(arg);
        return arg.to_string();
    }
    if looks_like_secret(arg) {
        return REDACTED.to_string();
    }
    arg.to_string()
}

/// Sanitize a URL: drop userinfo and credential-like query values. Works on any string that
/// contains a URL (e.g. an argument), leaving the rest untouched.
pub fn sanitize_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let (scheme, rest) = url.split_at(scheme_end + 3);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => format!("{REDACTED}@{}", &authority[at + 1..]),
        None => authority.to_string(),
    };
    let (path_and_query, fragment) = match tail.find('#') {
        Some(i) => tail.split_at(i),
        None => (tail, ""),
    };
    let (path, query) = match path_and_query.find('?') {
        Some(i) => (&path_and_query[..i], Some(&path_and_query[i + 1..])),
        None => (path_and_query, None),
    };
    let mut out = format!("{scheme}{authority}{path}");
    if let Some(query) = query {
        out.push('?');
        let parts: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) if is_secret_name(k) || looks_like_secret(v) => {
                    format!("{k}={REDACTED}")
                }
                _ => pair.to_string(),
            })
            .collect();
        out.push_str(&parts.join("&"));
    }
    if !fragment.is_empty() {
        out.push_str(if looks_like_secret(&fragment[1..]) {
            "#<redacted>"
        } else {
            fragment
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

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
    }

    #[test]
    fn package_names_and_paths_survive() {
        let args = s(&[
            "-y",
            "@modelcontextprotocol/server-filesystem@2025.8.21",
            "/home/alice/projects",
            "mcp-server-fetch",
            "--allowed-origins",
        ]);
        assert_eq!(sanitize_args(&args), args);
    }

    #[test]
    fn literal_tokens_are_redacted() {
        let args = s(&[
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "Zx9Qm2Lr8Tv4Wb6Yc1Nd5Hf7Kj3Pg0Sa",
        ]);
        assert_eq!(sanitize_args(&args), s(&[REDACTED, REDACTED]));
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
        ] {
            let _ = sanitize_url(input);
            let _ = sanitize_args(&s(&[input, input]));
        }
    }
}
