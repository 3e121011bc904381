//! One layer of settings: the keys a managed source, `agent.toml`, the installer or the
//! environment may set, typed and checked the same way whichever layer sets them.

use std::path::PathBuf;

use agent_bom_proxy::policy::FailMode;

/// Most tags one endpoint carries.
pub const MAX_TAGS: usize = 32;
/// Longest owner, environment, tag or channel, in characters.
pub const MAX_LABEL_CHARS: usize = 128;
/// Most workspace roots.
pub const MAX_WORKSPACE_ROOTS: usize = 64;

/// A setting that managed configuration may set. The name is the same in every source: the TOML
/// key, the property-list key, the registry value name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// Collector `HOST:PORT` to enroll with (and to connect to once enrolled).
    Collector,
    /// SHA-256 of the control plane's CA certificate.
    CaPin,
    /// The enrollment token itself.
    EnrollmentToken,
    /// A file holding the enrollment token.
    EnrollmentTokenFile,
    /// Who owns the endpoint (a person or a team), shown in the fleet.
    Owner,
    /// The environment the endpoint belongs to (`production`, `staging`, ...).
    Environment,
    /// Free-form labels of the endpoint.
    Tags,
    /// Directories walked for project-level MCP files.
    WorkspaceRoots,
    /// Keep every stdio MCP server wrapped by the proxy.
    ManagedWrapping,
    /// What proxies do without a valid policy: `open` or `closed`.
    FailMode,
    /// The release channel self-update follows.
    UpdateChannel,
}

impl Key {
    /// Every key, in the order `status` lists them.
    pub const ALL: [Self; 11] = [
        Self::Collector,
        Self::CaPin,
        Self::EnrollmentToken,
        Self::EnrollmentTokenFile,
        Self::Owner,
        Self::Environment,
        Self::Tags,
        Self::WorkspaceRoots,
        Self::ManagedWrapping,
        Self::FailMode,
        Self::UpdateChannel,
    ];

    /// The key's name in every source.
    pub fn name(self) -> &'static str {
        match self {
            Self::Collector => "collector",
            Self::CaPin => "ca_pin",
            Self::EnrollmentToken => "enrollment_token",
            Self::EnrollmentTokenFile => "enrollment_token_file",
            Self::Owner => "owner",
            Self::Environment => "environment",
            Self::Tags => "tags",
            Self::WorkspaceRoots => "workspace_roots",
            Self::ManagedWrapping => "managed_wrapping",
            Self::FailMode => "fail_mode",
            Self::UpdateChannel => "update_channel",
        }
    }

    /// The key named `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The kind of value the key takes, for error messages and docs.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Tags | Self::WorkspaceRoots => "list of strings",
            Self::ManagedWrapping => "boolean",
            Self::FailMode => "\"open\" or \"closed\"",
            _ => "string",
        }
    }
}

/// A value as a source holds it, before it is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Raw {
    /// A string.
    Text(String),
    /// A boolean.
    Bool(bool),
    /// An integer (a registry DWORD, a property-list integer).
    Integer(i64),
    /// A list of strings.
    List(Vec<String>),
    /// Any other type (named, for the error).
    Unsupported(String),
}

/// An enrollment token, never shown: `Debug` prints a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a token.
    pub fn new(token: String) -> Self {
        Self(token)
    }

    /// The token, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where the enrollment token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// The value, from a managed source or the environment.
    Value(Secret),
    /// A file holding it (read when enrolling, so it may appear later).
    File(PathBuf),
}

/// The settings one layer sets (`None`: not set by this layer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layer {
    /// Collector `HOST:PORT`.
    pub collector: Option<String>,
    /// Normalized CA pin (64 lowercase hex).
    pub ca_pin: Option<String>,
    /// The enrollment token or its file (`enrollment_token` wins over `enrollment_token_file`
    /// within one layer).
    pub enrollment_token: Option<TokenSource>,
    /// Owner of the endpoint.
    pub owner: Option<String>,
    /// Environment of the endpoint.
    pub environment: Option<String>,
    /// Tags of the endpoint (deduplicated, in order).
    pub tags: Option<Vec<String>>,
    /// Workspace roots (absolute).
    pub workspace_roots: Option<Vec<PathBuf>>,
    /// Managed wrapping on or off.
    pub managed_wrapping: Option<bool>,
    /// The proxies' fail mode.
    pub fail_mode: Option<FailMode>,
    /// Release channel.
    pub update_channel: Option<String>,
}

impl Layer {
    /// Set `key` from `raw`, checked; on error nothing changes.
    pub fn set(&mut self, key: Key, raw: Raw) -> Result<(), String> {
        match key {
            Key::Collector => self.collector = Some(check_collector(text(key, raw)?)?),
            Key::CaPin => self.ca_pin = Some(crate::tls::normalize_pin(&text(key, raw)?)?),
            Key::EnrollmentToken => {
                let token = text(key, raw)?.trim().to_string();
                if token.is_empty() {
                    return Err("the enrollment token is empty".into());
                }
                self.enrollment_token = Some(TokenSource::Value(Secret::new(token)));
            }
            Key::EnrollmentTokenFile => {
                let path = check_absolute(&text(key, raw)?)?;
                // The token itself, when the same layer has it, wins over its file.
                if !matches!(self.enrollment_token, Some(TokenSource::Value(_))) {
                    self.enrollment_token = Some(TokenSource::File(path));
                }
            }
            Key::Owner => self.owner = Some(check_label(&text(key, raw)?)?),
            Key::Environment => self.environment = Some(check_label(&text(key, raw)?)?),
            Key::Tags => self.tags = Some(check_tags(list(key, raw)?)?),
            Key::WorkspaceRoots => {
                let roots = list(key, raw)?;
                if roots.len() > MAX_WORKSPACE_ROOTS {
                    return Err(format!("at most {MAX_WORKSPACE_ROOTS} workspace roots"));
                }
                self.workspace_roots = Some(
                    roots
                        .iter()
                        .map(|r| check_absolute(r))
                        .collect::<Result<_, _>>()?,
                );
            }
            Key::ManagedWrapping => self.managed_wrapping = Some(boolean(key, raw)?),
            Key::FailMode => self.fail_mode = Some(parse_fail_mode(&text(key, raw)?)?),
            Key::UpdateChannel => self.update_channel = Some(check_channel(&text(key, raw)?)?),
        }
        Ok(())
    }

    /// Check a layer that was filled without [`Layer::set`] (deserialized `agent.toml`),
    /// normalizing the pin and tags.
    pub fn checked(mut self) -> Result<Self, String> {
        let named = |key: Key| move |e: String| format!("{}: {e}", key.name());
        if let Some(c) = self.collector.take() {
            self.collector = Some(check_collector(c).map_err(named(Key::Collector))?);
        }
        if let Some(p) = self.ca_pin.take() {
            self.ca_pin = Some(crate::tls::normalize_pin(&p).map_err(named(Key::CaPin))?);
        }
        if let Some(TokenSource::File(p)) = &self.enrollment_token {
            check_absolute(&p.to_string_lossy()).map_err(named(Key::EnrollmentTokenFile))?;
        }
        if let Some(o) = self.owner.take() {
            self.owner = Some(check_label(&o).map_err(named(Key::Owner))?);
        }
        if let Some(e) = self.environment.take() {
            self.environment = Some(check_label(&e).map_err(named(Key::Environment))?);
        }
        if let Some(t) = self.tags.take() {
            self.tags = Some(check_tags(t).map_err(named(Key::Tags))?);
        }
        if let Some(roots) = &self.workspace_roots {
            for r in roots {
                check_absolute(&r.to_string_lossy()).map_err(named(Key::WorkspaceRoots))?;
            }
        }
        if let Some(c) = self.update_channel.take() {
            self.update_channel = Some(check_channel(&c).map_err(named(Key::UpdateChannel))?);
        }
        Ok(self)
    }
}

/// An agent-bom enrollment token or API key.
fn looks_like_token(v: &str) -> bool {
    v.starts_with("abe_") || v.starts_with("abk_")
}

/// A value quoted for an error message, unless it looks like a credential (a token pasted
/// into the wrong setting must not reach a log or `status`).
fn shown(value: &str) -> String {
    let v = value.trim();
    if looks_like_token(v) {
        "a value that looks like a token (not shown)".to_string()
    } else {
        format!("{v:?}")
    }
}

fn text(key: Key, raw: Raw) -> Result<String, String> {
    match raw {
        Raw::Text(s) => Ok(s),
        other => Err(wrong_type(key, &other)),
    }
}

/// A list, or a string of comma- or newline-separated items (what a registry string or an
/// environment variable holds).
fn list(key: Key, raw: Raw) -> Result<Vec<String>, String> {
    match raw {
        Raw::List(items) => Ok(items),
        Raw::Text(s) => Ok(split_list(&s)),
        other => Err(wrong_type(key, &other)),
    }
}

/// Split a comma- or newline-separated list, dropping empty items.
pub fn split_list(s: &str) -> Vec<String> {
    s.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A boolean, or 0 / 1 (a registry DWORD), or the words true / false / yes / no / on / off.
fn boolean(key: Key, raw: Raw) -> Result<bool, String> {
    match raw {
        Raw::Bool(b) => Ok(b),
        Raw::Integer(0) => Ok(false),
        Raw::Integer(1) => Ok(true),
        Raw::Text(s) => parse_bool(&s),
        other => Err(wrong_type(key, &other)),
    }
}

/// `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off` (any case).
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("expected true or false, got {}", shown(s))),
    }
}

/// `open` or `closed`.
pub fn parse_fail_mode(s: &str) -> Result<FailMode, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "open" => Ok(FailMode::Open),
        "closed" => Ok(FailMode::Closed),
        _ => Err(format!("expected \"open\" or \"closed\", got {}", shown(s))),
    }
}

fn wrong_type(key: Key, raw: &Raw) -> String {
    let found = match raw {
        Raw::Text(_) => "a string",
        Raw::Bool(_) => "a boolean",
        Raw::Integer(_) => "an integer",
        Raw::List(_) => "a list",
        Raw::Unsupported(t) => t.as_str(),
    };
    format!("expected a {}, found {found}", key.kind())
}

/// `HOST:PORT` with a port in 1..=65535.
fn check_collector(s: String) -> Result<String, String> {
    let s = s.trim().to_string();
    let port_ok = s
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if port_ok && !s.chars().any(|c| c.is_whitespace() || c == '/') {
        Ok(s)
    } else {
        Err(format!("expected HOST:PORT, got {}", shown(&s)))
    }
}

fn check_absolute(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s.trim());
    // A Windows path is absolute on Windows only; accept a drive letter everywhere so a
    // ProgramData file can be checked on any machine.
    let windows_absolute = s.trim().as_bytes().get(1..3) == Some(b":\\");
    if path.is_absolute() || windows_absolute {
        Ok(path)
    } else {
        Err(format!("expected an absolute path, got {}", shown(s)))
    }
}

fn check_label(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty".into());
    }
    if s.chars().count() > MAX_LABEL_CHARS {
        return Err(format!("longer than {MAX_LABEL_CHARS} characters"));
    }
    if s.chars().any(char::is_control) {
        return Err("contains control characters".into());
    }
    // Labels leave the machine: a token pasted into one must not.
    if looks_like_token(s) {
        return Err(shown(s));
    }
    Ok(s.to_string())
}

fn check_tags(tags: Vec<String>) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for tag in tags {
        let tag = tag.trim().to_string();
        // The control plane's rule for tags, so a tag is refused here, where it is visible,
        // rather than dropped there.
        let ok = !tag.is_empty()
            && tag.len() <= 64
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:=/".contains(c));
        if !ok || looks_like_token(&tag) {
            return Err(format!(
                "invalid tag {}: use 1-64 letters, digits and -_.:=/",
                shown(&tag)
            ));
        }
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    if out.len() > MAX_TAGS {
        return Err(format!("at most {MAX_TAGS} tags"));
    }
    Ok(out)
}

fn check_channel(s: &str) -> Result<String, String> {
    let s = s.trim();
    if !s.is_empty()
        && !looks_like_token(s)
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Ok(s.to_string())
    } else {
        Err(format!(
            "a channel is 1 to 64 letters, digits, '-', '_' or '.', got {}",
            shown(s)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_round_trips_its_name() {
        for key in Key::ALL {
            assert_eq!(Key::from_name(key.name()), Some(key));
        }
        assert_eq!(Key::from_name("Collector"), None, "names are exact");
    }

    #[test]
    fn values_are_typed_and_checked() {
        let mut l = Layer::default();
        assert!(l.set(Key::Collector, Raw::Text("cp".into())).is_err());
        assert!(l.set(Key::Collector, Raw::Text("cp:0".into())).is_err());
        assert!(l.set(Key::Collector, Raw::Integer(4433)).is_err());
        l.set(Key::Collector, Raw::Text(" [::1]:4433 ".into()))
            .unwrap();
        assert_eq!(l.collector.as_deref(), Some("[::1]:4433"));
        assert!(l.set(Key::ManagedWrapping, Raw::Integer(2)).is_err());
        l.set(Key::ManagedWrapping, Raw::Integer(1)).unwrap();
        assert_eq!(l.managed_wrapping, Some(true));
        l.set(Key::ManagedWrapping, Raw::Text("Off".into()))
            .unwrap();
        assert_eq!(l.managed_wrapping, Some(false));
        assert!(l.set(Key::FailMode, Raw::Text("half".into())).is_err());
        l.set(Key::Tags, Raw::Text("a, b,a\nc".into())).unwrap();
        assert_eq!(l.tags, Some(vec!["a".into(), "b".into(), "c".into()]));
        assert!(l.set(Key::Owner, Raw::Text("x\u{7}".into())).is_err());
        assert!(
            l.set(Key::Tags, Raw::List(vec!["has space".into()]))
                .is_err()
        );
        assert!(
            l.set(Key::WorkspaceRoots, Raw::List(vec!["src".into()]))
                .is_err()
        );
        l.set(
            Key::WorkspaceRoots,
            Raw::List(vec![r"C:\src".into(), "/srv".into()]),
        )
        .unwrap();
        assert!(
            l.set(Key::UpdateChannel, Raw::Text("be ta".into()))
                .is_err()
        );
        assert!(
            l.set(Key::EnrollmentToken, Raw::Text("  ".into())).is_err(),
            "an empty token is refused"
        );
    }

    #[test]
    fn a_token_in_the_wrong_setting_is_not_echoed() {
        let mut l = Layer::default();
        for key in [
            Key::Collector,
            Key::FailMode,
            Key::UpdateChannel,
            Key::Tags,
            Key::CaPin,
            Key::Owner,
            Key::Environment,
        ] {
            let err = l
                .set(key, Raw::Text("abe_0123456789ab_secretsecretsecret".into()))
                .unwrap_err();
            assert!(!err.contains("secret"), "{}: {err}", key.name());
        }
    }

    #[test]
    fn the_token_wins_over_its_file_and_is_never_printed() {
        let mut l = Layer::default();
        l.set(Key::EnrollmentToken, Raw::Text("abe_secret".into()))
            .unwrap();
        l.set(Key::EnrollmentTokenFile, Raw::Text("/etc/t".into()))
            .unwrap();
        assert!(matches!(l.enrollment_token, Some(TokenSource::Value(_))));
        assert!(!format!("{l:?}").contains("abe_secret"));
    }
}
