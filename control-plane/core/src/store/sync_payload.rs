//! agent-bom's `fleet sync` push body, read and checked into what a push writes
//! ([`SyncPayload`]).
//!
//! The body is read into typed structs that borrow its text: most of its ~30 KB are fields
//! nothing here keeps (trust factors, tools, packages), which are checked as JSON and dropped
//! without building a tree of them. Every field that is read takes any JSON type ([`Field`]),
//! so a field of the wrong type is refused by the checks below, in their order and with their
//! messages, rather than by the JSON reader; unknown fields are accepted. Only names of
//! environment variables and headers are kept (agent-bom already redacts values; we never
//! read them), and every text field goes through the sanitizer the agent uses
//! (`agent_bom_protocol::sanitize`): arguments, URL and command by their own rules, names,
//! paths, `discovery_sources`, hostname, owner and environment as text. A tag holding a
//! credential is dropped (a redacted tag would not be a valid tag).

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::marker::PhantomData;

use agent_bom_protocol::Transport;
use agent_bom_protocol::sanitize::{sanitize_args, sanitize_command, sanitize_text, sanitize_url};
use agent_bom_protocol::server_id::server_id;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::StoreError;
use super::fleet_ops::normalize_tags;
use super::rows::ServerRow;
use super::to_json_text;

/// Longest accepted `source_id` (agent-bom's own limit).
pub const MAX_SOURCE_ID: usize = 200;
/// Most agents (clients) in one push.
pub const MAX_AGENTS: usize = 1_000;
/// Most servers in one push.
pub const MAX_SERVERS: usize = 10_000;

/// A checked push: the endpoint's columns, its clients and servers.
#[derive(Debug, Clone)]
pub(crate) struct SyncPayload {
    pub(crate) source_id: String,
    pub(crate) hostname: String,
    pub(crate) owner: Option<String>,
    pub(crate) environment: Option<String>,
    pub(crate) tags: Vec<String>,
    /// Each client's name and config files.
    pub(crate) clients: Vec<(String, Vec<String>)>,
    pub(crate) servers: Vec<SyncServer>,
}

/// One checked server of a push.
#[derive(Debug, Clone)]
pub(crate) struct SyncServer {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) client: String,
    pub(crate) transport: Transport,
    pub(crate) command: Option<String>,
    pub(crate) args: Vec<String>,
    pub(crate) url: Option<String>,
    pub(crate) env_keys: Vec<String>,
    pub(crate) header_keys: Vec<String>,
    pub(crate) risk_flags: Vec<String>,
    pub(crate) config_path: String,
}

/// A pushed server's `endpoint_servers` row: what the push does not say is a user-scope,
/// enabled, unwrapped server.
impl From<&SyncServer> for ServerRow {
    fn from(s: &SyncServer) -> Self {
        Self {
            server_id: s.id.clone(),
            name: s.name.clone(),
            client: s.client.clone(),
            scope: "user".into(),
            transport: s.transport.as_str().to_string(),
            command: s.command.clone(),
            args: to_json_text(&s.args),
            url: s.url.clone(),
            env_keys: to_json_text(&s.env_keys),
            header_keys: to_json_text(&s.header_keys),
            cwd: None,
            enabled: 1,
            project: None,
            risk_flags: to_json_text(&s.risk_flags),
            config_path: s.config_path.clone(),
            wrapped: 0,
            auto_approve: "[]".into(),
            credential_names: "[]".into(),
            launch_hash: String::new(),
            owner: None,
            gateway: None,
        }
    }
}

/// A body as read, before its checks (see [`Body::read`]): `None` when it is not an object.
#[derive(Debug)]
pub(crate) struct Body<'a>(Option<Root<'a>>);

/// The fields of a body that is an object.
#[derive(Debug, Default)]
struct Root<'a> {
    source_id: Field<Text<'a>>,
    idempotency_key: Field<Text<'a>>,
    agents: Field<Vec<Field<Agent<'a>>>>,
}

#[derive(Debug, Default)]
struct Agent<'a> {
    name: Field<Text<'a>>,
    source_id: Field<Text<'a>>,
    enrollment_name: Field<Text<'a>>,
    owner: Field<Text<'a>>,
    environment: Field<Text<'a>>,
    tags: Field<Texts<'a>>,
    mcp_servers: Field<Vec<Field<Server<'a>>>>,
}

#[derive(Debug, Default)]
struct Server<'a> {
    name: Field<Text<'a>>,
    command: Field<Text<'a>>,
    url: Field<Text<'a>>,
    transport: Field<Text<'a>>,
    args: Field<Texts<'a>>,
    credential_names: Field<Texts<'a>>,
    discovery_sources: Field<Texts<'a>>,
    env: Field<Keys<'a>>,
    connection_metadata: Field<ConnectionMetadata<'a>>,
    security_blocked: Field<bool>,
    security_warnings: Field<Count>,
}

#[derive(Debug, Default)]
struct ConnectionMetadata<'a> {
    header_names: Field<Texts<'a>>,
}

/// A string of the body: borrowed unless it has escapes.
type Text<'a> = Cow<'a, str>;
/// A list of the body, each item of any type.
type Texts<'a> = Vec<Field<Text<'a>>>;

/// The keys of an object (its values are dropped unread).
#[derive(Debug, Default)]
struct Keys<'a>(Vec<Text<'a>>);

/// The length of a list (its items are dropped unread).
#[derive(Debug, Default)]
struct Count(usize);

/// A field as the body has it.
#[derive(Debug, Default)]
enum Field<T> {
    /// Absent or `null`.
    #[default]
    Absent,
    /// Of the JSON type `T` is read from.
    Is(T),
    /// Of another JSON type.
    Other,
}

impl<T> Field<T> {
    fn get(&self) -> Option<&T> {
        match self {
            Self::Is(v) => Some(v),
            Self::Absent | Self::Other => None,
        }
    }
}

fn invalid(m: impl Into<String>) -> StoreError {
    StoreError::Invalid(m.into())
}

impl<'a> Body<'a> {
    /// Read `raw` (JSON of any shape: what is not an object fails [`Body::check`]).
    pub(crate) fn read(raw: &'a [u8]) -> Result<Self, StoreError> {
        let body: Field<Root<'a>> = serde_json::from_slice(raw)
            .map_err(|e| invalid(format!("the body is not valid JSON: {e}")))?;
        Ok(match body {
            Field::Is(root) => Self(Some(root)),
            Field::Absent | Field::Other => Self(None),
        })
    }

    /// The body's `idempotency_key`, when it is a non-empty string.
    pub(crate) fn idempotency_key(&self) -> Option<&str> {
        self.0
            .as_ref()?
            .idempotency_key
            .get()
            .map(|k| k.as_ref())
            .filter(|k| !k.is_empty())
    }
}

fn opt_str<'b>(field: &'b Field<Text<'_>>, key: &str) -> Result<Option<&'b str>, StoreError> {
    match field {
        Field::Absent => Ok(None),
        Field::Is(s) => Ok(Some(s)),
        Field::Other => Err(invalid(format!("{key} must be a string"))),
    }
}

fn str_list<'b>(field: &'b Field<Texts<'_>>, key: &str) -> Result<Vec<&'b str>, StoreError> {
    let wrong = || invalid(format!("{key} must be a list of strings"));
    match field {
        Field::Absent => Ok(Vec::new()),
        Field::Is(items) => items
            .iter()
            .map(|item| item.get().map(|s| s.as_ref()).ok_or_else(wrong))
            .collect(),
        Field::Other => Err(wrong()),
    }
}

/// `v` when it is at most `max` bytes and holds no control character.
pub(crate) fn bounded<'v>(field: &str, v: &'v str, max: usize) -> Result<&'v str, StoreError> {
    if v.len() > max || v.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{field} must be at most {max} printable characters"
        )));
    }
    Ok(v)
}

/// The identity a push's endpoint is stored under. A source id the sanitizer would redact in
/// part (a long random hex run: a systemd machine-id, an MD5 of the hostname) is not stored, but
/// a name derived from it is: redacted, every such machine would share one endpoint,
/// `<redacted>`. The digest keeps them apart and says nothing of the value.
fn endpoint_source_id(source_id: &str) -> String {
    if sanitize_text(source_id) == source_id {
        return source_id.to_string();
    }
    let digest = crate::secrets::hash(source_id);
    format!("redacted-{}", &digest[..16])
}

/// The non-empty text of an optional field, checked and sanitized.
fn opt_text(field: &Field<Text<'_>>, key: &str, max: usize) -> Result<Option<String>, StoreError> {
    opt_str(field, key)?
        .filter(|s| !s.is_empty())
        .map(|s| bounded(key, s, max).map(sanitize_text))
        .transpose()
}

fn transport_of(s: Option<&str>, url: Option<&str>) -> Transport {
    match s {
        Some("stdio") => Transport::Stdio,
        Some("sse") => Transport::Sse,
        Some("streamable-http" | "http" | "streamable_http") => Transport::StreamableHttp,
        Some("ws" | "websocket") => Transport::Ws,
        _ if url.is_some() => Transport::StreamableHttp,
        _ => Transport::Unknown,
    }
}

impl Body<'_> {
    /// Check the body and make what it writes. `header_source` is the
    /// `X-Agent-Bom-Source-Id` header, used when the body names no source.
    pub(crate) fn check(&self, header_source: Option<&str>) -> Result<SyncPayload, StoreError> {
        let root = self
            .0
            .as_ref()
            .ok_or_else(|| invalid("the body must be a JSON object"))?;
        let agents = match &root.agents {
            Field::Is(a) => a.as_slice(),
            Field::Absent => &[],
            Field::Other => return Err(invalid("agents must be a list")),
        };
        if agents.len() > MAX_AGENTS {
            return Err(invalid(format!("at most {MAX_AGENTS} agents per push")));
        }
        let first_agent_source = agents
            .iter()
            .find_map(|a| a.get()?.source_id.get().map(|s| s.as_ref()))
            .filter(|s| !s.is_empty());
        // agent-bom puts the configured `--source-id` on every agent and a hash of the hostname
        // on the root; the configured one is the stable endpoint identity, so it wins.
        let source_id = first_agent_source
            .or(opt_str(&root.source_id, "source_id")?.filter(|s| !s.is_empty()))
            .or(header_source.filter(|s| !s.is_empty()))
            .ok_or_else(|| {
                invalid("source_id is required (in the body or the X-Agent-Bom-Source-Id header)")
            })?;
        let source_id = endpoint_source_id(bounded("source_id", source_id, MAX_SOURCE_ID)?);
        let mut hostname = None;
        let (mut owner, mut environment, mut tags) = (None, None, BTreeSet::new());
        let mut clients = Vec::new();
        let mut servers = Vec::new();
        for agent in agents {
            let a = agent
                .get()
                .ok_or_else(|| invalid("each agent must be an object"))?;
            let name = opt_str(&a.name, "name")?
                .filter(|n| !n.is_empty())
                .ok_or_else(|| invalid("each agent needs a non-empty name"))?;
            let name = sanitize_text(bounded("agent name", name, 200)?);
            if hostname.is_none() {
                hostname = opt_text(&a.enrollment_name, "enrollment_name", 255)?;
            }
            if owner.is_none() {
                owner = opt_text(&a.owner, "owner", 200)?;
            }
            if environment.is_none() {
                environment = opt_text(&a.environment, "environment", 200)?;
            }
            tags.extend(
                str_list(&a.tags, "tags")?
                    .into_iter()
                    .filter(|t| sanitize_text(t) == *t),
            );
            let list = match &a.mcp_servers {
                Field::Is(s) => s.as_slice(),
                Field::Absent => &[],
                Field::Other => return Err(invalid("mcp_servers must be a list")),
            };
            let mut files = BTreeSet::new();
            for server in list {
                let s = server
                    .get()
                    .ok_or_else(|| invalid("each MCP server must be an object"))?;
                let sname = opt_str(&s.name, "name")?
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| invalid("each MCP server needs a non-empty name"))?;
                let command = opt_str(&s.command, "command")?
                    .filter(|c| !c.is_empty())
                    .map(|c| bounded("command", c, 4096).map(sanitize_command))
                    .transpose()?;
                let url = opt_str(&s.url, "url")?
                    .filter(|u| !u.is_empty())
                    .map(|u| bounded("url", u, 4096).map(sanitize_url))
                    .transpose()?;
                let args: Vec<String> = str_list(&s.args, "args")?
                    .into_iter()
                    .map(str::to_string)
                    .collect();
                let args = sanitize_args(&args);
                let transport = transport_of(opt_str(&s.transport, "transport")?, url.as_deref());
                let mut env_keys: BTreeSet<String> =
                    str_list(&s.credential_names, "credential_names")?
                        .into_iter()
                        .map(sanitize_text)
                        .collect();
                if let Field::Is(env) = &s.env {
                    // Names only: values were never read.
                    env_keys.extend(env.0.iter().map(|k| sanitize_text(k)));
                }
                let header_keys = match &s.connection_metadata {
                    Field::Is(m) => str_list(&m.header_names, "header_names")?
                        .into_iter()
                        .map(sanitize_text)
                        .collect(),
                    Field::Absent | Field::Other => Vec::new(),
                };
                let sources = str_list(&s.discovery_sources, "discovery_sources")?;
                let config_path = sources
                    .first()
                    .map(|d| sanitize_text(d.split_once(':').map_or(*d, |(_, p)| p)))
                    .unwrap_or_default();
                if !config_path.is_empty() {
                    files.insert(config_path.clone());
                }
                let mut risk_flags = Vec::new();
                if s.security_blocked.get() == Some(&true) {
                    risk_flags.push("security-blocked".to_string());
                }
                if s.security_warnings.get().is_some_and(|w| w.0 > 0) {
                    risk_flags.push("security-warnings".to_string());
                }
                if !env_keys.is_empty() {
                    risk_flags.push("credential-env".to_string());
                }
                servers.push(SyncServer {
                    id: server_id(transport, command.as_deref(), &args, url.as_deref()),
                    name: sanitize_text(bounded("server name", sname, 200)?),
                    client: name.clone(),
                    transport,
                    command,
                    args,
                    url,
                    env_keys: env_keys.into_iter().collect(),
                    header_keys,
                    risk_flags,
                    config_path,
                });
                if servers.len() > MAX_SERVERS {
                    return Err(invalid(format!("at most {MAX_SERVERS} servers per push")));
                }
            }
            clients.push((name, files.into_iter().collect()));
        }
        let tags: Vec<String> = tags.into_iter().map(str::to_string).collect();
        Ok(SyncPayload {
            hostname: hostname.unwrap_or_else(|| source_id.clone()),
            source_id,
            owner,
            environment,
            tags: normalize_tags(&tags)?,
            clients,
            servers,
        })
    }
}

// Reading. Every value goes through `deserialize_any`, as `serde_json::Value` does: the body is
// checked as JSON exactly as a `Value` would be (numbers, escapes, nesting depth), so a body is
// refused as JSON when and as it was.

/// What a [`Field`] of this type is read from: each JSON type it does not take reads as
/// [`Field::Other`] (and its contents are checked and dropped).
trait Shape<'de>: Sized {
    fn from_text(_text: Text<'de>) -> Option<Self> {
        None
    }

    fn from_bool(_b: bool) -> Option<Self> {
        None
    }

    fn from_list<A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(None)
    }

    fn from_object<A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(None)
    }
}

impl<'de> Shape<'de> for Text<'de> {
    fn from_text(text: Text<'de>) -> Option<Self> {
        Some(text)
    }
}

impl Shape<'_> for bool {
    fn from_bool(b: bool) -> Option<Self> {
        Some(b)
    }
}

impl<'de, T: Shape<'de>> Shape<'de> for Vec<Field<T>> {
    fn from_list<A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Some(items))
    }
}

impl<'de> Shape<'de> for Count {
    fn from_list<A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
        let mut n = 0;
        while seq.next_element::<Skip>()?.is_some() {
            n += 1;
        }
        Ok(Some(Self(n)))
    }
}

impl<'de> Shape<'de> for Keys<'de> {
    fn from_object<A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        let mut keys = Vec::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            map.next_value::<Skip>()?;
            keys.push(key.0);
        }
        Ok(Some(Self(keys)))
    }
}

/// An object read into `$ty`'s fields by key; a later duplicate key replaces an earlier one
/// (as in a `Value`), other keys are checked and dropped.
macro_rules! object_shape {
    ($ty:ident { $($field:ident),* $(,)? }) => {
        impl<'de> Shape<'de> for $ty<'de> {
            fn from_object<A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
                let mut read = Self::default();
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    match key.0.as_ref() {
                        $(stringify!($field) => read.$field = map.next_value()?,)*
                        _ => {
                            map.next_value::<Skip>()?;
                        }
                    }
                }
                Ok(Some(read))
            }
        }
    };
}

object_shape!(Root {
    source_id,
    idempotency_key,
    agents
});
object_shape!(Agent {
    name,
    source_id,
    enrollment_name,
    owner,
    environment,
    tags,
    mcp_servers
});
object_shape!(Server {
    name,
    command,
    url,
    transport,
    args,
    credential_names,
    discovery_sources,
    env,
    connection_metadata,
    security_blocked,
    security_warnings
});
object_shape!(ConnectionMetadata { header_names });

impl<'de, T: Shape<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FieldVisitor(PhantomData))
    }
}

struct FieldVisitor<T>(PhantomData<T>);

impl<T> FieldVisitor<T> {
    fn is(v: Option<T>) -> Field<T> {
        v.map_or(Field::Other, Field::Is)
    }
}

impl<'de, T: Shape<'de>> Visitor<'de> for FieldVisitor<T> {
    type Value = Field<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Field<T>, E> {
        Ok(Field::Absent)
    }

    fn visit_none<E>(self) -> Result<Field<T>, E> {
        Ok(Field::Absent)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Field<T>, E> {
        Ok(Self::is(T::from_bool(b)))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Field<T>, E> {
        Ok(Field::Other)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Field<T>, E> {
        Ok(Field::Other)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Field<T>, E> {
        Ok(Field::Other)
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Field<T>, E> {
        Ok(Self::is(T::from_text(Cow::Borrowed(s))))
    }

    fn visit_str<E>(self, s: &str) -> Result<Field<T>, E> {
        Ok(Self::is(T::from_text(Cow::Owned(s.to_string()))))
    }

    fn visit_string<E>(self, s: String) -> Result<Field<T>, E> {
        Ok(Self::is(T::from_text(Cow::Owned(s))))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Field<T>, A::Error> {
        Ok(Self::is(T::from_list(seq)?))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Field<T>, A::Error> {
        Ok(Self::is(T::from_object(map)?))
    }
}

/// An object's key, borrowed unless it has escapes.
struct Key<'de>(Text<'de>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Field::<Text<'de>>::deserialize(d)? {
            Field::Is(key) => Ok(Self(key)),
            // JSON keys are strings: the reader never gives anything else.
            Field::Absent | Field::Other => Ok(Self(Cow::Borrowed(""))),
        }
    }
}

/// A value nothing reads: checked as JSON and dropped. Not serde's `IgnoredAny`: serde_json
/// skips that without decoding it, so a number out of range or a lone surrogate escape would
/// pass where the JSON reader refuses them (see the test
/// `text_that_is_not_json_is_refused_as_the_json_reader_refuses_it`).
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_none<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &serde_json::Value, header: Option<&str>) -> Result<SyncPayload, StoreError> {
        Body::read(body.to_string().as_bytes())?.check(header)
    }

    fn message(r: Result<SyncPayload, StoreError>) -> String {
        match r {
            Err(StoreError::Invalid(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn parses_the_recorded_agent_bom_payload() {
        let text = include_str!("../../../../tests/fixtures/agent-bom-fleet-sync-payload.json");
        let body = Body::read(text.as_bytes()).unwrap();
        assert_eq!(
            body.idempotency_key(),
            Some("f46ce844-93df-4d75-9d53-856f54a78959")
        );
        let p = body.check(None).unwrap();
        assert_eq!(p.source_id, "compat-laptop-01");
        assert!(p.clients.iter().any(|(n, _)| n == "claude-desktop"));
        assert!(!p.servers.is_empty());
        let json =
            serde_json::to_string(&p.servers.iter().map(|s| &s.env_keys).collect::<Vec<_>>())
                .unwrap();
        assert!(!json.contains("REDACTED"));
        assert!(p.servers.iter().any(|s| !s.env_keys.is_empty()));
        assert!(p.servers.iter().any(|s| !s.config_path.is_empty()));
    }

    #[test]
    fn a_source_id_that_looks_like_a_credential_keeps_its_machines_apart() {
        use serde_json::json;
        let machine_ids = [
            "4c4c4544004e3510804cb4c04f4d4b32",
            "0f2a6e1c9b7d4e3fa1c2b3d4e5f60718",
        ];
        let stored: Vec<String> = machine_ids
            .iter()
            .map(|id| {
                check(&json!({"source_id": id, "agents": []}), None)
                    .unwrap()
                    .source_id
            })
            .collect();
        assert_ne!(stored[0], stored[1], "two machines, two endpoints");
        for (id, s) in machine_ids.iter().zip(&stored) {
            assert!(s.starts_with("redacted-") && !s.contains(id), "{s}");
            let again = check(&json!({"source_id": id, "agents": []}), None).unwrap();
            assert_eq!(&again.source_id, s, "the same machine, the same endpoint");
        }
        // agent-bom's own ids (12 hex digits of a hostname digest) and UUIDs are kept as sent.
        for id in ["5bce98f73f3e", "3f2504e0-4f89-11d3-9a0c-0305e82c3301"] {
            assert_eq!(
                check(&json!({"source_id": id, "agents": []}), None)
                    .unwrap()
                    .source_id,
                id
            );
        }
    }

    #[test]
    fn rejects_bad_shapes() {
        use serde_json::json;
        assert!(check(&json!([]), None).is_err());
        assert!(check(&json!({"agents": []}), None).is_err());
        assert!(check(&json!({"source_id": "x", "agents": 3}), None).is_err());
        assert!(check(&json!({"source_id": "x".repeat(201)}), None).is_err());
        assert!(check(&json!({"agents": []}), Some("hdr")).is_ok());
    }

    #[test]
    fn a_field_of_the_wrong_type_is_refused_by_its_check() {
        use serde_json::json;
        let cases = [
            (json!(null), "the body must be a JSON object"),
            (json!("x"), "the body must be a JSON object"),
            (json!({"agents": {}}), "agents must be a list"),
            (json!({"source_id": 1}), "source_id must be a string"),
            (
                json!({"source_id": "x", "agents": [null]}),
                "each agent must be an object",
            ),
            (
                json!({"source_id": "x", "agents": [{"name": ""}]}),
                "each agent needs a non-empty name",
            ),
            (
                json!({"source_id": "x", "agents": [{"name": "a", "tags": ["t", 1]}]}),
                "tags must be a list of strings",
            ),
            (
                json!({"source_id": "x", "agents": [{"name": "a", "owner": true}]}),
                "owner must be a string",
            ),
            (
                json!({"source_id": "x", "agents": [{"name": "a", "mcp_servers": "s"}]}),
                "mcp_servers must be a list",
            ),
            (
                json!({"source_id": "x", "agents": [{"name": "a", "mcp_servers": [{"name": "s", "args": "a"}]}]}),
                "args must be a list of strings",
            ),
            (
                json!({"source_id": "x", "agents": [{"name": "a", "mcp_servers": [{"name": "s", "connection_metadata": {"header_names": [null]}}]}]}),
                "header_names must be a list of strings",
            ),
            (
                json!({"source_id": "x", "agents": [{"name": "a", "mcp_servers": [{"name": "s", "url": "u\u{1}"}]}]}),
                "url must be at most 4096 printable characters",
            ),
        ];
        for (body, want) in cases {
            let got = match Body::read(body.to_string().as_bytes()) {
                Ok(b) => message(b.check(None)),
                Err(e) => panic!("{body}: refused as JSON: {e:?}"),
            };
            assert_eq!(got, want, "{body}");
        }
    }

    #[test]
    fn fields_nothing_reads_and_wrong_types_where_unread_are_accepted() {
        use serde_json::json;
        let body = json!({"source_id": "x", "extra": {"deep": [1, 2.5, null, "\u{e9}"]},
            "agents": [{"name": "a", "source_id": "first", "unknown": [], "mcp_servers": [
                {"name": "s", "env": "not an object", "connection_metadata": 3,
                 "security_blocked": "yes", "security_warnings": {}, "tools": [{"name": "t"}]}]},
                {"name": "b", "source_id": 7}]});
        let p = check(&body, None).unwrap();
        assert_eq!(p.source_id, "first");
        assert!(p.servers[0].risk_flags.is_empty());
    }

    #[test]
    fn a_later_duplicate_key_wins_as_in_a_json_value() {
        let raw = br#"{"source_id": 1, "source_id": "later", "agents": []}"#;
        assert_eq!(
            Body::read(raw).unwrap().check(None).unwrap().source_id,
            "later"
        );
    }

    #[test]
    fn text_that_is_not_json_is_refused_as_the_json_reader_refuses_it() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let bodies: [&[u8]; 9] = [
            b"",
            b"{",
            br#"{"a": 1e400}"#,
            br#"{"a": "\ud800"}"#,
            br#"{"a": "\x"}"#,
            b"{\"a\": \"\xff\"}",
            br#"{"agents": []} x"#,
            br#"{"agents": [1,]}"#,
            deep.as_bytes(),
        ];
        for raw in bodies {
            let want = serde_json::from_slice::<serde_json::Value>(raw).unwrap_err();
            match Body::read(raw) {
                Err(StoreError::Invalid(m)) => {
                    assert_eq!(m, format!("the body is not valid JSON: {want}"));
                }
                other => panic!("{}: {other:?}", String::from_utf8_lossy(raw)),
            }
        }
    }
}
