//! The typed command set: every command the control plane can send an agent, each with its
//! payload type, validated by deserialising.
//!
//! On the wire a [`crate::Command`] keeps its kind and payload as text, because its signature
//! covers those exact bytes. Both ends turn that text into a [`CommandKind`] with the same
//! function: the control plane before it queues a command (so an operator's typo is a 400, not
//! a failed command on a thousand laptops), the agent before it applies one.
//!
//! | kind | payload | operator may queue it |
//! |---|---|---|
//! | `rescan` | none | yes |
//! | `quarantine` | `{reason?}` | no (endpoint lifecycle) |
//! | `release` | none | no (endpoint lifecycle) |
//! | `policy` | `{revision, policy}` | no (policy publishing) |
//! | `settings` | `{rescan_interval_secs?, managed_wrapping?, gateway?}` (`null` resets; `gateway` is a [`GatewayRoutes`]) | yes |
//! | `wrap` / `unwrap` | `{client?}` (a catalog name: `a-z`, `0-9`, `-`) | yes |
//! | `approve_pins` | `{server_id, tools: {name: sha256 or null}}` | yes |
//! | `rotate_credential` | none | yes |
//! | `update_available` | `{version, url?, sha256?, size?, os?, arch?, signature?, expires_at_ms?, grace_secs?, rollout_id?}` (`https://` URL, or `http://` to a loopback host, without credentials; hex SHA-256) | yes (rollouts send it too) |

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::gateway_routes::GatewayRoutes;
use crate::policy::Policy;

/// Shortest rescan interval the control plane may set (a fleet-wide typo must not turn every
/// laptop into a busy loop).
pub const MIN_REMOTE_RESCAN_SECS: u64 = 30;
/// Longest rescan interval the control plane may set.
pub const MAX_REMOTE_RESCAN_SECS: u64 = 86_400;
/// Longest version string an `update_available` notice may carry.
pub const MAX_VERSION_LEN: usize = 64;
/// Longest download URL an `update_available` notice may carry.
pub use crate::agent_url::MAX_URL_LEN;
/// Longest client name a `wrap`/`unwrap` target may carry.
pub const MAX_CLIENT_LEN: usize = 64;

/// True for a name the client catalog could hold: 1 to [`MAX_CLIENT_LEN`] of `a-z`, `0-9` and
/// `-`, starting with a letter. Anything else (`../../etc`, a path, upper case) is refused before
/// it reaches code that matches it against files.
pub fn is_client_name(name: &str) -> bool {
    (1..=MAX_CLIENT_LEN).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Why a command's kind or payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The kind is not one this build knows (an agent answers `unsupported`).
    #[error("unknown command {0:?}")]
    Unknown(String),
    /// The kind is known but may not be queued by an operator.
    #[error("command {kind:?} cannot be queued directly; one of {}", OPERATOR_KINDS.join(", "))]
    NotOperator {
        /// The kind.
        kind: String,
    },
    /// The payload does not match the kind.
    #[error("invalid {kind} payload: {message}")]
    Invalid {
        /// The kind.
        kind: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// Payload of `quarantine`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    /// Why the endpoint was quarantined, shown on the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Payload of `policy`: a revision of the tenant's proxy policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDelivery {
    /// The control plane's revision counter for the tenant.
    pub revision: u64,
    /// The policy document (TOML, see `docs/proxy.md`).
    pub policy: String,
}

impl PolicyDelivery {
    /// The parsed, validated document, with its revision set to the control plane's.
    pub fn document(&self) -> Result<Policy, String> {
        let mut policy = Policy::parse(&self.policy)?;
        policy.revision = self.revision;
        Ok(policy)
    }
}

/// One setting in a `settings` patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Patch<T> {
    /// Not mentioned: keep what is in force.
    #[default]
    Keep,
    /// `null`: drop the control plane's value, fall back to the local one.
    Reset,
    /// A new value.
    Set(T),
}

impl<T: Clone> Patch<T> {
    /// Apply to the value in force.
    pub fn apply(&self, current: Option<T>) -> Option<T> {
        match self {
            Self::Keep => current,
            Self::Reset => None,
            Self::Set(v) => Some(v.clone()),
        }
    }

    fn is_keep(&self) -> bool {
        matches!(self, Self::Keep)
    }
}

/// Payload of `settings`: the keys to change, all or nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsPatch {
    /// Seconds between periodic rescans ([`MIN_REMOTE_RESCAN_SECS`] to [`MAX_REMOTE_RESCAN_SECS`]).
    pub rescan_interval_secs: Patch<u64>,
    /// Keep every stdio server of every client wrapped by the proxy.
    pub managed_wrapping: Patch<bool>,
    /// The tenant's gateway and its upstream routes, which `wrap` sends remote servers through.
    pub gateway: Patch<GatewayRoutes>,
}

impl SettingsPatch {
    /// Names of the keys this patch changes, in a stable order.
    pub fn keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if !self.rescan_interval_secs.is_keep() {
            keys.push("rescan_interval_secs");
        }
        if !self.managed_wrapping.is_keep() {
            keys.push("managed_wrapping");
        }
        if !self.gateway.is_keep() {
            keys.push("gateway");
        }
        keys
    }

    fn from_object(object: &Map<String, Value>) -> Result<Self, String> {
        let mut patch = Self::default();
        for (key, value) in object {
            match key.as_str() {
                "rescan_interval_secs" => {
                    patch.rescan_interval_secs = match value {
                        Value::Null => Patch::Reset,
                        v => Patch::Set(
                            v.as_u64()
                                .filter(|s| {
                                    (MIN_REMOTE_RESCAN_SECS..=MAX_REMOTE_RESCAN_SECS).contains(s)
                                })
                                .ok_or_else(|| {
                                    format!(
                                        "rescan_interval_secs must be {MIN_REMOTE_RESCAN_SECS}-{MAX_REMOTE_RESCAN_SECS} seconds"
                                    )
                                })?,
                        ),
                    }
                }
                "managed_wrapping" => {
                    patch.managed_wrapping = match value {
                        Value::Null => Patch::Reset,
                        v => Patch::Set(
                            v.as_bool()
                                .ok_or("managed_wrapping must be true or false")?,
                        ),
                    }
                }
                "gateway" => {
                    patch.gateway = match value {
                        Value::Null => Patch::Reset,
                        v => {
                            let routes: GatewayRoutes = serde_json::from_value(v.clone())
                                .map_err(|e| format!("gateway: {e}"))?;
                            routes.validate()?;
                            Patch::Set(routes)
                        }
                    }
                }
                other => {
                    return Err(format!(
                        "unknown setting {other:?} (known: rescan_interval_secs, managed_wrapping, gateway)"
                    ));
                }
            }
        }
        Ok(patch)
    }

    fn to_object(&self) -> Map<String, Value> {
        fn put<T: Into<Value>>(o: &mut Map<String, Value>, key: &str, patch: Patch<T>) {
            match patch {
                Patch::Keep => {}
                Patch::Reset => {
                    o.insert(key.into(), Value::Null);
                }
                Patch::Set(v) => {
                    o.insert(key.into(), v.into());
                }
            }
        }
        let mut o = Map::new();
        put(&mut o, "rescan_interval_secs", self.rescan_interval_secs);
        put(&mut o, "managed_wrapping", self.managed_wrapping);
        match &self.gateway {
            Patch::Keep => {}
            Patch::Reset => {
                o.insert("gateway".into(), Value::Null);
            }
            Patch::Set(routes) => {
                o.insert(
                    "gateway".into(),
                    serde_json::to_value(routes).unwrap_or(Value::Null),
                );
            }
        }
        o
    }
}

/// Payload of `wrap` and `unwrap`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrapTarget {
    /// One client (catalog name), or every client when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

impl WrapTarget {
    fn validate(self) -> Result<Self, String> {
        match &self.client {
            Some(c) if !is_client_name(c) => Err(format!(
                "client must be a catalog name (1-{MAX_CLIENT_LEN} of a-z, 0-9 and -), not {c:?}"
            )),
            _ => Ok(self),
        }
    }
}

/// Payload of `approve_pins`: tool definitions to accept for one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovePins {
    /// The server identity ([`crate::server_id::server_id`]).
    pub server_id: String,
    /// Tool name → the expected lowercase hex SHA-256 of its definition, or `null` to accept the
    /// next definition seen (within the open-approval window).
    pub tools: BTreeMap<String, Option<String>>,
}

impl ApprovePins {
    fn validate(mut self) -> Result<Self, String> {
        if self.server_id.is_empty() || self.tools.is_empty() {
            return Err("approve_pins needs a server_id and at least one tool".into());
        }
        if let Some(bad) = self
            .tools
            .values()
            .flatten()
            .find(|h| h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(format!("{bad:?} is not a hex SHA-256 tool hash"));
        }
        // Tool hashes compare as lowercase hex.
        for hash in self.tools.values_mut().flatten() {
            hash.make_ascii_lowercase();
        }
        Ok(self)
    }
}

/// Payload of `update_available`.
///
/// `version`, `url` and `sha256` are what the first agents knew (they record the notice and
/// show it in `status`). The other fields were added for self-update, all optional, so older
/// agents, which ignore unknown fields, keep working: an agent installs a build only when the
/// notice names one completely ([`UpdateNotice::build`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateNotice {
    /// The version on offer (1 to [`MAX_VERSION_LEN`] characters).
    pub version: String,
    /// Where to get it (HTTP or HTTPS; the build's integrity rests on `sha256` and `signature`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Hex SHA-256 of the artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Size of the build in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The OS the build is for ([`crate::release::OSES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// The architecture the build is for ([`crate::release::ARCHES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// Hex ed25519 signature of the release key over the build's
    /// [`crate::release::ReleaseManifest`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The offer lapses at this time (Unix milliseconds): an agent that receives it later
    /// declines it and keeps running what it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    /// Seconds the new build has to reconnect before the agent rolls back to the build it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_secs: Option<u64>,
    /// The rollout that sent the offer, for the agent's log and `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_id: Option<String>,
}

impl UpdateNotice {
    /// The signed build this notice offers, when it names one completely (URL, digest, size,
    /// OS, architecture and signature).
    pub fn build(&self) -> Option<(crate::release::ReleaseManifest, &str, &str)> {
        Some((
            crate::release::ReleaseManifest {
                version: self.version.clone(),
                os: self.os.clone()?,
                arch: self.arch.clone()?,
                sha256: self.sha256.clone()?,
                size: self.size?,
            },
            self.url.as_deref()?,
            self.signature.as_deref()?,
        ))
    }
}

impl UpdateNotice {
    fn validate(mut self) -> Result<Self, String> {
        let version_ok = (1..=MAX_VERSION_LEN).contains(&self.version.len())
            && self
                .version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'_'));
        if !version_ok {
            return Err(format!(
                "update_available needs a `version` (1-{MAX_VERSION_LEN} characters of letters, digits and .-+_)"
            ));
        }
        if let Some(url) = &self.url {
            crate::agent_url::check_download_url(url)?;
        }
        if let Some(hash) = &mut self.sha256 {
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("sha256 must be a hex SHA-256 (64 hex digits)".into());
            }
            hash.make_ascii_lowercase();
        }
        Ok(self)
    }
}

/// A command with its typed payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandKind {
    /// Scan and upload now.
    Rescan,
    /// Block every MCP call on the endpoint until released.
    Quarantine(Quarantine),
    /// Lift a quarantine.
    Release,
    /// Install a revision of the tenant's proxy policy.
    Policy(PolicyDelivery),
    /// Change control-plane settings of the agent.
    Settings(SettingsPatch),
    /// Route stdio servers through the proxy.
    Wrap(WrapTarget),
    /// Restore the original launch of wrapped servers.
    Unwrap(WrapTarget),
    /// Accept changed tool definitions of one server.
    ApprovePins(ApprovePins),
    /// New key pair and certificate over the connection.
    RotateCredential,
    /// A newer agent build is available.
    UpdateAvailable(UpdateNotice),
}

/// Kinds an operator may queue through the API or `agent-bom admin`; the others are issued by
/// the control plane itself (policy publishing, endpoint lifecycle).
pub const OPERATOR_KINDS: [&str; 7] = [
    "rescan",
    "wrap",
    "unwrap",
    "approve_pins",
    "rotate_credential",
    "update_available",
    "settings",
];

impl CommandKind {
    /// The wire name of the kind.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Rescan => "rescan",
            Self::Quarantine(_) => "quarantine",
            Self::Release => "release",
            Self::Policy(_) => "policy",
            Self::Settings(_) => "settings",
            Self::Wrap(_) => "wrap",
            Self::Unwrap(_) => "unwrap",
            Self::ApprovePins(_) => "approve_pins",
            Self::RotateCredential => "rotate_credential",
            Self::UpdateAvailable(_) => "update_available",
        }
    }

    /// Parse a kind and its payload as they travel (payload as JSON text; empty means `{}`).
    /// Kinds without a payload ignore one, so a newer control plane may add fields.
    pub fn parse(kind: &str, payload: &str) -> Result<Self, CommandError> {
        let name = known_name(kind).ok_or_else(|| CommandError::Unknown(kind.to_string()))?;
        let value = if payload.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            serde_json::from_str(payload).map_err(|e| invalid(name, e.to_string()))?
        };
        Self::from_value(name, &value)
    }

    /// Parse what an operator asks to queue: one of [`OPERATOR_KINDS`], with a payload that is a
    /// JSON object (or null), and no payload at all for kinds that take none.
    pub fn for_operator(kind: &str, payload: &Value) -> Result<Self, CommandError> {
        let name = known_name(kind).ok_or_else(|| CommandError::Unknown(kind.to_string()))?;
        if !OPERATOR_KINDS.contains(&name) {
            return Err(CommandError::NotOperator { kind: kind.into() });
        }
        let object = match payload {
            Value::Null => Map::new(),
            Value::Object(o) => o.clone(),
            _ => return Err(invalid(name, "payload must be a JSON object")),
        };
        let parsed = Self::from_value(name, &Value::Object(object.clone()))?;
        if parsed.takes_no_payload() && !object.is_empty() {
            return Err(invalid(name, format!("{name} takes no payload")));
        }
        Ok(parsed)
    }

    /// The payload as the JSON text that travels (and is signed).
    pub fn payload_json(&self) -> String {
        let value = match self {
            Self::Rescan | Self::Release | Self::RotateCredential => Value::Object(Map::new()),
            Self::Quarantine(p) => to_value(p),
            Self::Policy(p) => to_value(p),
            Self::Settings(p) => Value::Object(p.to_object()),
            Self::Wrap(p) | Self::Unwrap(p) => to_value(p),
            Self::ApprovePins(p) => to_value(p),
            Self::UpdateAvailable(p) => to_value(p),
        };
        value.to_string()
    }

    fn takes_no_payload(&self) -> bool {
        matches!(self, Self::Rescan | Self::Release | Self::RotateCredential)
    }

    fn from_value(kind: &str, value: &Value) -> Result<Self, CommandError> {
        let name = known_name(kind).ok_or_else(|| CommandError::Unknown(kind.to_string()))?;
        let typed = |v: &Value| -> Result<Self, String> {
            Ok(match name {
                "rescan" => Self::Rescan,
                "release" => Self::Release,
                "rotate_credential" => Self::RotateCredential,
                "quarantine" => Self::Quarantine(from_json(v)?),
                "policy" => {
                    let p: PolicyDelivery = from_json(v)?;
                    p.document()?;
                    Self::Policy(p)
                }
                "settings" => Self::Settings(SettingsPatch::from_object(
                    v.as_object().ok_or("must be a JSON object")?,
                )?),
                "wrap" => Self::Wrap(from_json::<WrapTarget>(v)?.validate()?),
                "unwrap" => Self::Unwrap(from_json::<WrapTarget>(v)?.validate()?),
                "approve_pins" => Self::ApprovePins(from_json::<ApprovePins>(v)?.validate()?),
                "update_available" => {
                    let p: UpdateNotice = from_json(v).map_err(|_| {
                        format!(
                            "update_available needs a `version` (1-{MAX_VERSION_LEN} characters)"
                        )
                    })?;
                    Self::UpdateAvailable(p.validate()?)
                }
                _ => return Err("unreachable kind".into()),
            })
        };
        typed(value).map_err(|message| invalid(name, message))
    }
}

/// The `'static` name of a known kind.
fn known_name(kind: &str) -> Option<&'static str> {
    [
        "rescan",
        "quarantine",
        "release",
        "policy",
        "settings",
        "wrap",
        "unwrap",
        "approve_pins",
        "rotate_credential",
        "update_available",
    ]
    .into_iter()
    .find(|k| *k == kind)
}

fn invalid(kind: &'static str, message: impl Into<String>) -> CommandError {
    CommandError::Invalid {
        kind,
        message: message.into(),
    }
}

fn from_json<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, String> {
    serde_json::from_value(v.clone()).map_err(|e| e.to_string())
}

fn to_value<T: Serialize>(v: &T) -> Value {
    // Serialising these plain structs to a JSON value cannot fail (string keys, no maps with
    // non-string keys); an empty object is the harmless fallback.
    serde_json::to_value(v).unwrap_or_else(|_| Value::Object(Map::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_kind_round_trips_through_its_wire_text() {
        let kinds = [
            CommandKind::Rescan,
            CommandKind::Quarantine(Quarantine {
                reason: Some("lost laptop".into()),
            }),
            CommandKind::Release,
            CommandKind::Policy(PolicyDelivery {
                revision: 3,
                policy: "version = 1\n".into(),
            }),
            CommandKind::Settings(SettingsPatch {
                rescan_interval_secs: Patch::Set(60),
                managed_wrapping: Patch::Reset,
                gateway: Patch::Keep,
            }),
            CommandKind::Settings(SettingsPatch {
                gateway: Patch::Set(crate::gateway_routes::GatewayRoutes {
                    url: "https://gw.example.com".into(),
                    upstreams: vec![crate::gateway_routes::GatewayRoute {
                        name: "docs".into(),
                        url: "https://mcp.example.com/mcp".into(),
                        transport: crate::gateway_routes::RouteTransport::Sse,
                    }],
                }),
                ..SettingsPatch::default()
            }),
            CommandKind::Settings(SettingsPatch {
                gateway: Patch::Reset,
                ..SettingsPatch::default()
            }),
            CommandKind::Wrap(WrapTarget {
                client: Some("cursor".into()),
            }),
            CommandKind::Unwrap(WrapTarget::default()),
            CommandKind::ApprovePins(ApprovePins {
                server_id: "s".into(),
                tools: [("t".to_string(), None)].into(),
            }),
            CommandKind::RotateCredential,
            CommandKind::UpdateAvailable(UpdateNotice {
                version: "1.2.3".into(),
                ..UpdateNotice::default()
            }),
            CommandKind::UpdateAvailable(UpdateNotice {
                version: "1.2.4".into(),
                url: Some("https://cp/install/releases/r".into()),
                sha256: Some("ab".repeat(32)),
                size: Some(7),
                os: Some("linux".into()),
                arch: Some("x86_64".into()),
                signature: Some("cd".repeat(64)),
                expires_at_ms: Some(1),
                grace_secs: Some(120),
                rollout_id: Some("ro".into()),
            }),
        ];
        for k in kinds {
            let back = CommandKind::parse(k.name(), &k.payload_json()).unwrap();
            assert_eq!(back, k, "{}", k.name());
        }
    }

    #[test]
    fn bad_payloads_are_refused_with_the_reason() {
        let e = |k: &str, p: &str| CommandKind::parse(k, p).unwrap_err().to_string();
        assert!(e("settings", r#"{"rescan_interval_secs":5}"#).contains("30-86400"));
        assert!(e("settings", r#"{"colour":"red"}"#).contains("unknown setting"));
        assert!(e("settings", r#"{"gateway":{"url":"http://gw.example.com"}}"#).contains("https"));
        assert!(
            e(
                "settings",
                r#"{"gateway":{"url":"https://gw","upstreams":[{"name":"a b","url":"https://x"}]}}"#
            )
            .contains("a-z")
        );
        assert!(
            e("settings", r#"{"gateway":{"url":"https://gw","extra":1}}"#)
                .contains("unknown field")
        );
        assert!(e("approve_pins", r#"{"server_id":"s","tools":{}}"#).contains("at least one"));
        assert!(e("approve_pins", r#"{"server_id":"s","tools":{"t":"abc"}}"#).contains("SHA-256"));
        assert!(
            e(
                "approve_pins",
                r#"{"server_id":"s","tools":{"t":null},"x":1}"#
            )
            .contains("x")
        );
        assert!(e("wrap", r#"{"clients":"a"}"#).contains("unknown field"));
        assert!(e("update_available", "{}").contains("version"));
        assert!(e("policy", r#"{"revision":1,"policy":"version = 2"}"#).contains("policy"));
        assert_eq!(
            CommandKind::parse("reboot", ""),
            Err(CommandError::Unknown("reboot".into()))
        );
        // Kinds without a payload ignore one on the wire (newer control planes may add fields).
        assert_eq!(
            CommandKind::parse("rescan", r#"{"why":1}"#),
            Ok(CommandKind::Rescan)
        );
    }

    #[test]
    fn update_and_wrap_payloads_are_validated() {
        let e = |k: &str, p: &str| CommandKind::parse(k, p).unwrap_err().to_string();
        assert!(
            e(
                "update_available",
                r#"{"version":"1","url":"file:///etc/passwd"}"#
            )
            .contains("https://")
        );
        assert!(
            e(
                "update_available",
                r#"{"version":"1","url":"https://u:p@h/x"}"#
            )
            .contains("credentials")
        );
        assert!(e("update_available", r#"{"version":"1","url":"https:///x"}"#).contains("host"));
        // Plain HTTP only to this machine (the build is checked against its signed digest).
        assert!(
            e(
                "update_available",
                r#"{"version":"1","url":"http://cp.example.com/x"}"#
            )
            .contains("https://")
        );
        assert!(
            e(
                "update_available",
                r#"{"version":"1","url":"http://127.0.0.1.evil.com/x"}"#
            )
            .contains("https://")
        );
        for ok in [
            "http://127.0.0.1:8422/x",
            "http://localhost/x",
            "http://[::1]:1/x",
        ] {
            let payload = json!({"version": "1", "url": ok}).to_string();
            assert!(
                CommandKind::parse("update_available", &payload).is_ok(),
                "{ok}"
            );
        }
        assert!(
            e(
                "update_available",
                r#"{"version":"1","url":"https://h/a b"}"#
            )
            .contains("spaces")
        );
        assert!(e("update_available", r#"{"version":"1","sha256":"zz"}"#).contains("SHA-256"));
        assert!(e("update_available", r#"{"version":"1 2"}"#).contains("version"));
        assert!(e("wrap", r#"{"client":"../../etc"}"#).contains("catalog name"));
        assert!(e("unwrap", r#"{"client":"Cursor"}"#).contains("catalog name"));
        let upper = "AB".repeat(32);
        let k = CommandKind::parse(
            "update_available",
            &json!({"version": "1.4.0", "url": "HTTPS://h/x", "sha256": upper}).to_string(),
        )
        .unwrap();
        let CommandKind::UpdateAvailable(n) = k else {
            panic!("kind")
        };
        assert_eq!(n.sha256.as_deref(), Some("ab".repeat(32).as_str()));
        assert!(is_client_name("vscode-insiders") && !is_client_name("-x") && !is_client_name(""));
    }

    #[test]
    fn an_older_agent_reads_a_self_update_notice() {
        // The payload shape agents before self-update parsed: unknown fields are ignored.
        #[derive(Deserialize)]
        struct OldNotice {
            version: String,
            sha256: Option<String>,
        }
        let new = CommandKind::UpdateAvailable(UpdateNotice {
            version: "2.0.0".into(),
            sha256: Some("ab".repeat(32)),
            signature: Some("00".into()),
            grace_secs: Some(60),
            ..UpdateNotice::default()
        });
        let old: OldNotice = serde_json::from_str(&new.payload_json()).unwrap();
        assert_eq!(old.version, "2.0.0");
        assert!(old.sha256.is_some());
        let CommandKind::UpdateAvailable(n) = new else {
            panic!()
        };
        assert!(
            n.build().is_none(),
            "no url/os/arch/size: not a complete build"
        );
    }

    #[test]
    fn hashes_are_normalised_to_lowercase() {
        let upper = "AB".repeat(32);
        let k = CommandKind::parse(
            "approve_pins",
            &json!({"server_id":"s","tools":{"t": upper}}).to_string(),
        )
        .unwrap();
        let CommandKind::ApprovePins(p) = k else {
            panic!("kind")
        };
        assert_eq!(p.tools["t"].as_deref(), Some("ab".repeat(32).as_str()));
    }

    #[test]
    fn operators_queue_only_operator_kinds_and_no_stray_payloads() {
        assert!(CommandKind::for_operator("rescan", &Value::Null).is_ok());
        assert!(matches!(
            CommandKind::for_operator("policy", &json!({})),
            Err(CommandError::NotOperator { .. })
        ));
        assert!(
            CommandKind::for_operator("rescan", &json!({"x":1}))
                .unwrap_err()
                .to_string()
                .contains("takes no payload")
        );
        assert!(CommandKind::for_operator("wrap", &json!([1])).is_err());
        assert!(CommandKind::for_operator("settings", &json!({"managed_wrapping": true})).is_ok());
    }
}
