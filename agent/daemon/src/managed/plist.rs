//! macOS configuration profiles: the property list macOS writes to
//! `/Library/Managed Preferences/com.agentbom.agent.plist` from a profile's payload for the
//! domain `com.agentbom.agent` (XML or binary). Parsed with the `plist` crate on every OS, so
//! the mapping is tested on Linux.

use super::Raw;

/// The entries of a managed-preferences property list (a dictionary at the top).
pub fn entries(bytes: &[u8]) -> Result<Vec<(String, Raw)>, String> {
    let value = plist::Value::from_reader(std::io::Cursor::new(bytes))
        .map_err(|e| format!("not a valid property list: {e}"))?;
    let plist::Value::Dictionary(dict) = value else {
        return Err("the property list's top level is not a dictionary".into());
    };
    Ok(dict
        .into_iter()
        .map(|(name, value)| (name, raw(value)))
        .collect())
}

fn raw(value: plist::Value) -> Raw {
    match value {
        plist::Value::String(s) => Raw::Text(s),
        plist::Value::Boolean(b) => Raw::Bool(b),
        plist::Value::Integer(i) => match i.as_signed() {
            Some(i) => Raw::Integer(i),
            None => Raw::Unsupported("an integer out of range".into()),
        },
        plist::Value::Array(items) => {
            let mut list = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    plist::Value::String(s) => list.push(s),
                    _ => return Raw::Unsupported("a list with items that are not strings".into()),
                }
            }
            Raw::List(list)
        }
        plist::Value::Dictionary(_) => Raw::Unsupported("a dictionary".into()),
        plist::Value::Data(_) => Raw::Unsupported("data".into()),
        plist::Value::Date(_) => Raw::Unsupported("a date".into()),
        plist::Value::Real(_) => Raw::Unsupported("a real number".into()),
        _ => Raw::Unsupported("an unsupported value".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Key, ManagedConfig, TokenSource};
    use super::*;

    const PROFILE_PREFS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
    <key>collector</key><string>collector.example.com:4433</string>
    <key>ca_pin</key><string>ababababababababababababababababababababababababababababababab00</string>
    <key>enrollment_token</key><string>abe_from_profile</string>
    <key>owner</key><string>it@example.com</string>
    <key>tags</key><array><string>laptop</string><string>mac</string></array>
    <key>managed_wrapping</key><true/>
    <key>fail_mode</key><string>closed</string>
    <key>PayloadUUID</key><string>8F1B0C52-0000-4000-8000-000000000001</string>
    <key>environment</key><integer>3</integer>
</dict>
</plist>"#;

    #[test]
    fn xml_profile_preferences_map_to_settings() {
        let mut config = ManagedConfig::default();
        config.absorb("profile", entries(PROFILE_PREFS.as_bytes()).unwrap());
        let l = &config.layer;
        assert_eq!(l.collector.as_deref(), Some("collector.example.com:4433"));
        assert_eq!(l.ca_pin.as_ref().map(String::len), Some(64));
        assert!(
            matches!(&l.enrollment_token, Some(TokenSource::Value(t)) if t.expose() == "abe_from_profile")
        );
        assert_eq!(l.tags.as_ref().map(Vec::len), Some(2));
        assert_eq!(l.managed_wrapping, Some(true));
        // PayloadUUID is profile bookkeeping; an integer environment is refused by name.
        assert_eq!(config.problems.len(), 1, "{:?}", config.problems);
        assert!(config.problems[0].contains("environment"));
        assert!(!config.origins.contains_key(&Key::Environment));
    }

    #[test]
    fn binary_property_lists_parse_too() {
        let mut dict = plist::Dictionary::new();
        dict.insert("update_channel".into(), plist::Value::String("beta".into()));
        dict.insert("managed_wrapping".into(), plist::Value::Boolean(false));
        let mut bytes = Vec::new();
        plist::Value::Dictionary(dict)
            .to_writer_binary(&mut bytes)
            .unwrap();
        assert!(bytes.starts_with(b"bplist00"));
        let mut config = ManagedConfig::default();
        config.absorb("binary", entries(&bytes).unwrap());
        assert_eq!(config.layer.update_channel.as_deref(), Some("beta"));
        assert_eq!(config.layer.managed_wrapping, Some(false));
    }

    #[test]
    fn not_a_dictionary_or_not_a_plist_is_an_error() {
        assert!(entries(b"{\"collector\": 1}").is_err());
        let array = r#"<?xml version="1.0"?><plist version="1.0"><array/></plist>"#;
        assert!(
            entries(array.as_bytes())
                .unwrap_err()
                .contains("dictionary")
        );
    }
}
