//! Windows group policy: the values under `HKLM\SOFTWARE\Policies\agent-bom\agent` (what an ADMX
//! policy, Intune's settings catalog or `reg add` writes). Value names are the [`super::Key`]
//! names, matched without regard to case as Windows does.
//!
//! The mapping from registry values to settings is plain code tested on every OS; only
//! [`read_policy`] touches the registry, on Windows.
//!
//! | registry type | becomes |
//! |---|---|
//! | `REG_SZ` | a string; for a list, items separated by commas or newlines; for a boolean, `true`/`false`/`1`/`0` |
//! | `REG_EXPAND_SZ` | the same, after `%VARIABLE%` expansion (`%ProgramData%\agent-bom\enroll.token`) |
//! | `REG_MULTI_SZ` | a list |
//! | `REG_DWORD`, `REG_QWORD` | an integer (`managed_wrapping`: 0 or 1) |

use super::Raw;

/// A registry value, as read from the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegValue {
    /// `REG_SZ`.
    Sz(String),
    /// `REG_EXPAND_SZ`, not yet expanded.
    ExpandSz(String),
    /// `REG_MULTI_SZ`.
    MultiSz(Vec<String>),
    /// `REG_DWORD`.
    Dword(u32),
    /// `REG_QWORD`.
    Qword(u64),
    /// Any other type (`REG_BINARY`, ...), named for the error.
    Other(String),
}

/// The entries of the policy key's values. Names are lowercased; values of unreadable types are
/// reported in `problems` (never their data).
pub fn entries(
    values: Vec<(String, RegValue)>,
    problems: &mut Vec<String>,
    origin: &str,
) -> Vec<(String, Raw)> {
    let mut out = Vec::with_capacity(values.len());
    for (name, value) in values {
        let name = name.to_ascii_lowercase();
        let raw = match value {
            RegValue::Sz(s) => Raw::Text(s),
            RegValue::ExpandSz(s) => Raw::Text(expand(&s, |v| std::env::var(v).ok())),
            RegValue::MultiSz(items) => Raw::List(items),
            RegValue::Dword(d) => Raw::Integer(i64::from(d)),
            RegValue::Qword(q) => match i64::try_from(q) {
                Ok(q) => Raw::Integer(q),
                Err(_) => Raw::Unsupported("a REG_QWORD out of range".into()),
            },
            RegValue::Other(ty) => {
                problems.push(format!(
                    "{origin}: {name}: unsupported registry type {ty}; ignored"
                ));
                continue;
            }
        };
        out.push((name, raw));
    }
    out
}

/// Expand `%NAME%` references with `lookup` (unknown names stay as written, as Windows does;
/// `%%` is a literal percent sign).
pub fn expand(s: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('%') {
            Some(0) => {
                out.push('%');
                rest = &after[1..];
            }
            Some(end) => {
                let name = &after[..end];
                match lookup(name) {
                    Some(value) => out.push_str(&value),
                    None => {
                        out.push('%');
                        out.push_str(name);
                        out.push('%');
                    }
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push('%');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The values of the policy key, or `None` when the key does not exist.
pub fn read_policy() -> std::io::Result<Option<Vec<(String, RegValue)>>> {
    read_key(super::WINDOWS_POLICY_KEY)
}

/// The values of `HKLM\{path}`, or `None` when the key does not exist (also read for the MSI's
/// installer record, `crate::installer_record`).
#[cfg(windows)]
pub fn read_key(path: &str) -> std::io::Result<Option<Vec<(String, RegValue)>>> {
    use windows_registry::{LOCAL_MACHINE, Type};
    // HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND): the key is absent.
    const NOT_FOUND: i32 = 0x8007_0002_u32 as i32;
    let key = match LOCAL_MACHINE.open(path) {
        Ok(key) => key,
        Err(e) if e.code().0 == NOT_FOUND => return Ok(None),
        Err(e) => return Err(std::io::Error::other(e.message())),
    };
    let mut values = Vec::new();
    for (name, value) in key
        .values()
        .map_err(|e| std::io::Error::other(e.message()))?
    {
        let ty = value.ty();
        let read = match ty {
            Type::String => String::try_from(value).map(RegValue::Sz),
            Type::ExpandString => String::try_from(value).map(RegValue::ExpandSz),
            Type::MultiString => Vec::<String>::try_from(value).map(RegValue::MultiSz),
            Type::U32 => u32::try_from(value).map(RegValue::Dword),
            Type::U64 => u64::try_from(value).map(RegValue::Qword),
            other => Ok(RegValue::Other(format!("{other:?}"))),
        };
        values.push((
            name,
            read.unwrap_or_else(|e| RegValue::Other(format!("{ty:?} ({})", e.message()))),
        ));
    }
    Ok(Some(values))
}

/// Elsewhere there is no registry: nothing is read from it.
#[cfg(not(windows))]
pub fn read_key(_path: &str) -> std::io::Result<Option<Vec<(String, RegValue)>>> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::super::{ManagedConfig, TokenSource};
    use super::*;

    #[test]
    fn policy_values_map_to_settings() {
        let mut problems = Vec::new();
        let values = vec![
            (
                "Collector".into(),
                RegValue::Sz("cp.example.com:4433".into()),
            ),
            ("MANAGED_WRAPPING".into(), RegValue::Dword(1)),
            (
                "tags".into(),
                RegValue::MultiSz(vec!["windows".into(), "eng".into()]),
            ),
            (
                "workspace_roots".into(),
                RegValue::Sz(r"C:\src, D:\work".into()),
            ),
            (
                "enrollment_token_file".into(),
                RegValue::ExpandSz(r"%SystemDrive%\agent-bom\enroll.token".into()),
            ),
            ("fail_mode".into(), RegValue::Sz("closed".into())),
            ("owner".into(), RegValue::Other("Bytes".into())),
        ];
        let entries = entries(values, &mut problems, "policy");
        let mut config = ManagedConfig::default();
        config.absorb("policy", entries);
        let l = &config.layer;
        assert_eq!(l.collector.as_deref(), Some("cp.example.com:4433"));
        assert_eq!(l.managed_wrapping, Some(true));
        assert_eq!(l.tags.as_ref().map(Vec::len), Some(2));
        assert_eq!(l.workspace_roots.as_ref().map(Vec::len), Some(2));
        assert_eq!(l.fail_mode, Some(agent_bom_proxy::policy::FailMode::Closed));
        // %SystemDrive% is unset here: the path stays as written and is not absolute.
        if std::env::var_os("SystemDrive").is_none() {
            assert_eq!(l.enrollment_token, None);
            assert!(
                config
                    .problems
                    .iter()
                    .any(|p| p.contains("enrollment_token_file"))
            );
        } else {
            assert!(matches!(l.enrollment_token, Some(TokenSource::File(_))));
        }
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("owner") && problems[0].contains("Bytes"));
    }

    #[test]
    fn a_dword_other_than_zero_or_one_is_refused() {
        let mut problems = Vec::new();
        let mut config = ManagedConfig::default();
        config.absorb(
            "policy",
            entries(
                vec![("managed_wrapping".into(), RegValue::Dword(7))],
                &mut problems,
                "policy",
            ),
        );
        assert_eq!(config.layer.managed_wrapping, None);
        assert!(config.problems[0].contains("managed_wrapping"));
    }

    #[test]
    fn expansion_follows_windows_rules() {
        let lookup = |v: &str| (v == "ProgramData").then(|| r"C:\ProgramData".to_string());
        assert_eq!(
            expand(r"%ProgramData%\agent-bom\enroll.token", lookup),
            r"C:\ProgramData\agent-bom\enroll.token"
        );
        assert_eq!(expand("%Unknown%\\x", lookup), "%Unknown%\\x");
        assert_eq!(expand("100%% and 5%", lookup), "100% and 5%");
    }
}
