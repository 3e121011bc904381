//! The MSI's installer record: the properties an MDM passes to `msiexec` (`COLLECTOR`, `CA_PIN`,
//! `CONTROL_PLANE_URL`, `RELEASE_KEYS`, `CHANNEL`, `TOKEN_FILE`) are written by the MSI under
//! `HKLM\SOFTWARE\agent-bom\Installer` (see `installers/windows/agent-bom-agent.wxs`), and the
//! service adopts them when it starts: the settings into `install.json`, the token, read from
//! the file `TOKEN_FILE` names, into the state directory (SYSTEM and Administrators only).
//! A record is adopted when it differs from the one adopted last (`installer-record.json`), so
//! an operator's later `service configure` stands until the next install that changes it.
//!
//! The MSI never sees the token itself, only the path of a file holding it, so the token is in
//! no MSI property, log or registry value. Adopting rather than reading the registry on every
//! start is what keeps the values across an upgrade: a major upgrade removes the old product's
//! registry values, and an MSI upgraded without properties writes empty ones, which change
//! nothing. Elsewhere than Windows there is no record and this does nothing.

use std::path::{Path, PathBuf};

use agent_bom_protocol::secure_file::write_private;
use agent_bom_state::StateDir;

use crate::enrollment::{self, EnrollmentError, InstallSettings};
use crate::managed::registry::{self, RegValue};

/// Where the MSI writes its record (under `HKEY_LOCAL_MACHINE`).
pub const WINDOWS_KEY: &str = r"SOFTWARE\agent-bom\Installer";

/// What the MSI was told.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallerRecord {
    /// Collector, CA pin, control-plane URL, release keys, channel.
    pub settings: InstallSettings,
    /// A file holding the enrollment token.
    pub token_file: Option<PathBuf>,
}

/// The record in the registry's values (names as the MSI writes them, any case). Empty values
/// (a property not given) are left out; a value of another type is an error naming it, never
/// showing its data.
pub fn from_values(values: Vec<(String, RegValue)>) -> Result<InstallerRecord, EnrollmentError> {
    let mut record = InstallerRecord::default();
    for (name, value) in values {
        let name = name.to_ascii_lowercase();
        let text = match value {
            RegValue::Sz(s) => s,
            RegValue::ExpandSz(s) => registry::expand(&s, |v| std::env::var(v).ok()),
            _ => {
                return Err(EnrollmentError::Invalid(format!(
                    r"HKLM\{WINDOWS_KEY}\{name}: expected a string value"
                )));
            }
        };
        let text = text.trim().to_string();
        if text.is_empty() {
            continue;
        }
        let s = &mut record.settings;
        match name.as_str() {
            "collector" => s.collector = Some(text),
            "ca_pin" => s.ca_pin = Some(text),
            "control_plane_url" => s.control_plane_url = Some(text),
            "update_channel" => s.channel = Some(text),
            "release_keys" => {
                s.release_keys = text
                    .split([',', ';', ' ', '\n'])
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(str::to_ascii_lowercase)
                    .collect();
            }
            "enrollment_token_file" => record.token_file = Some(PathBuf::from(text)),
            // The MSI's own bookkeeping (its version, the component's key path).
            _ => {}
        }
    }
    record.settings.validate()?;
    Ok(record)
}

/// The record this machine's MSI left, if any.
pub fn read() -> Result<Option<InstallerRecord>, EnrollmentError> {
    let values = registry::read_key(WINDOWS_KEY).map_err(|source| EnrollmentError::Io {
        path: format!(r"HKLM\{WINDOWS_KEY}"),
        source,
    })?;
    values.map(from_values).transpose()
}

/// What [`adopt`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Adopted {
    /// `install.json` was updated.
    pub settings: bool,
    /// An enrollment token was staged.
    pub token: bool,
}

/// The settings last adopted, kept in the state directory: a record is adopted once, when it
/// changes, so that a later `service configure` is not undone by the next service start.
pub const ADOPTED_FILE: &str = "installer-record.json";

/// Take `record` into the state in `state_dir`: when it differs from the record adopted last,
/// its settings win over `install.json`'s (a new install is the administrator's latest word);
/// its token is staged unless the agent is enrolled or a token is already waiting. A token
/// file that cannot be read is an error; the settings are adopted first all the same.
pub fn adopt(state_dir: &Path, record: &InstallerRecord) -> Result<Adopted, EnrollmentError> {
    let state = StateDir::open(state_dir).map_err(|e| EnrollmentError::Io {
        path: state_dir.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let mut adopted = Adopted::default();
    let seen_path = state.path().join(ADOPTED_FILE);
    let seen: Option<InstallSettings> = std::fs::read(&seen_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    if seen.as_ref() != Some(&record.settings) {
        let current = InstallSettings::load(state.path())?;
        let mut merged = current.clone();
        merged.merge(record.settings.clone());
        if merged != current {
            merged.save(state.path())?;
            adopted.settings = true;
        }
        let bytes = serde_json::to_vec_pretty(&record.settings)
            .map_err(|e| EnrollmentError::Invalid(e.to_string()))?;
        write_private(&seen_path, &bytes).map_err(|source| EnrollmentError::Io {
            path: seen_path.display().to_string(),
            source,
        })?;
    }
    if let Some(file) = &record.token_file
        && !state.is_enrolled()
        && !enrollment::token_staged(state.path())
    {
        let token = enrollment::read_token(file)?;
        enrollment::stage_token(state.path(), &token)?;
        adopted.token = true;
    }
    Ok(adopted)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "3b6a1e520c7d4d8e8f416b2b9c0e7a213b6a1e520c7d4d8e8f416b2b9c0e7a21";

    fn sz(name: &str, value: &str) -> (String, RegValue) {
        (name.into(), RegValue::Sz(value.into()))
    }

    #[test]
    fn values_become_install_settings_and_empty_ones_are_left_out() {
        let record = from_values(vec![
            sz("Collector", "cp.example:4433"),
            sz("ca_pin", ""),
            sz("control_plane_url", "https://cp.example"),
            sz("release_keys", &format!("{},{KEY}", KEY.to_uppercase())),
            sz("update_channel", "beta"),
            (
                "enrollment_token_file".into(),
                RegValue::ExpandSz(r"%AGENT_BOM_TEST_NO_SUCH_VAR%\t".into()),
            ),
            sz("msi_version", "0.1.0"),
        ])
        .unwrap();
        assert_eq!(
            record.settings.collector.as_deref(),
            Some("cp.example:4433")
        );
        assert_eq!(
            record.settings.ca_pin, None,
            "an empty property sets nothing"
        );
        assert_eq!(record.settings.channel.as_deref(), Some("beta"));
        assert_eq!(record.settings.release_keys, vec![KEY.to_string(); 2]);
        assert!(record.token_file.is_some());
        let bad = from_values(vec![sz("ca_pin", "not-a-pin")]).unwrap_err();
        assert!(bad.to_string().contains("invalid"), "{bad}");
        let typed = from_values(vec![("collector".into(), RegValue::Dword(1))]).unwrap_err();
        assert!(typed.to_string().contains("expected a string"), "{typed}");
    }

    #[test]
    fn adopting_keeps_values_across_an_empty_upgrade_and_stages_the_token_once() {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("enroll.token");
        std::fs::write(&token_file, "tok-123\n").unwrap();
        let state = dir.path().join("state");
        let first = InstallerRecord {
            settings: InstallSettings {
                collector: Some("cp.example:4433".into()),
                release_keys: vec![KEY.into()],
                ..Default::default()
            },
            token_file: Some(token_file.clone()),
        };
        let done = adopt(&state, &first).unwrap();
        assert!(done.settings && done.token);
        let saved = InstallSettings::load(&state).unwrap();
        assert_eq!(saved.collector.as_deref(), Some("cp.example:4433"));
        let staged = state.join(agent_bom_state::layout::ENROLL_TOKEN_FILE);
        assert_eq!(std::fs::read_to_string(&staged).unwrap(), "tok-123");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&staged).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        // Starting again changes nothing.
        assert_eq!(adopt(&state, &first).unwrap(), Adopted::default());
        assert_eq!(InstallSettings::load(&state).unwrap(), saved);

        // `service configure` after the install is not undone by the next start, nor by an
        // upgrade that passed no properties.
        let mut configured = InstallSettings::load(&state).unwrap();
        configured.collector = Some("by-hand.example:4433".into());
        configured.save(&state).unwrap();
        assert_eq!(adopt(&state, &first).unwrap(), Adopted::default());
        assert_eq!(
            adopt(&state, &InstallerRecord::default()).unwrap(),
            Adopted::default()
        );
        assert_eq!(
            InstallSettings::load(&state).unwrap().collector.as_deref(),
            Some("by-hand.example:4433")
        );

        // A later install with a new collector wins over what was adopted.
        let moved = InstallerRecord {
            settings: InstallSettings {
                collector: Some("cp2.example:4433".into()),
                ..Default::default()
            },
            token_file: None,
        };
        assert!(adopt(&state, &moved).unwrap().settings);
        let now = InstallSettings::load(&state).unwrap();
        assert_eq!(now.collector.as_deref(), Some("cp2.example:4433"));
        assert_eq!(now.release_keys, vec![KEY.to_string()]);

        // A token file that is gone is a clear error once a token is needed.
        std::fs::remove_file(&staged).unwrap();
        std::fs::remove_file(&token_file).unwrap();
        let missing = adopt(&state, &first).unwrap_err();
        assert!(missing.to_string().contains("enroll.token"), "{missing}");
    }
}
