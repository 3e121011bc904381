//! Just enough JSON-RPC 2.0 to route and judge MCP messages without re-serializing them.

use serde_json::{Value, json};

/// JSON-RPC error code of a message refused by policy (in the implementation-defined range).
pub const POLICY_ERROR: i64 = -32001;

/// What a parsed line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Has `method` and `id`.
    Request,
    /// Has `method`, no `id`.
    Notification,
    /// Has `id` and `result` or `error`, no `method`.
    Response,
}

/// A parsed JSON-RPC message.
#[derive(Debug, Clone)]
pub struct Message {
    /// The whole message.
    pub value: Value,
    /// Its kind.
    pub kind: Kind,
}

impl Message {
    /// Parse one line. `None` for anything that is not a single JSON-RPC object (batches were
    /// removed from MCP in 2025-06-18, so an array is not a message either).
    pub fn parse(line: &[u8]) -> Option<Self> {
        let value: Value = serde_json::from_slice(line).ok()?;
        let obj = value.as_object()?;
        let has_id = obj.get("id").is_some_and(|id| !id.is_null());
        let kind = match (obj.get("method").and_then(Value::as_str), has_id) {
            (Some(_), true) => Kind::Request,
            (Some(_), false) => Kind::Notification,
            (None, true) if obj.contains_key("result") || obj.contains_key("error") => {
                Kind::Response
            }
            _ => return None,
        };
        Some(Self { value, kind })
    }

    /// The method of a request or notification.
    pub fn method(&self) -> Option<&str> {
        self.value.get("method").and_then(Value::as_str)
    }

    /// The id of a request or response.
    pub fn id(&self) -> Option<&Value> {
        self.value.get("id")
    }

    /// `params`, when present.
    pub fn params(&self) -> Option<&Value> {
        self.value.get("params")
    }

    /// `result`, when present.
    pub fn result(&self) -> Option<&Value> {
        self.value.get("result")
    }
}

/// A map key for a request id: ids are strings or numbers and `1` and `"1"` are different ids.
pub fn id_key(id: &Value) -> String {
    id.to_string()
}

/// A JSON-RPC error response line answering `id`, ending with `ending`.
pub fn error_line(id: &Value, code: i64, message: &str, ending: &[u8]) -> Vec<u8> {
    let mut out = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
        .to_string()
        .into_bytes();
    out.extend_from_slice(if ending.is_empty() { b"\n" } else { ending });
    out
}

/// Serialize a (rewritten) message as a line ending with `ending`.
pub fn to_line(value: &Value, ending: &[u8]) -> Vec<u8> {
    let mut out = value.to_string().into_bytes();
    out.extend_from_slice(if ending.is_empty() { b"\n" } else { ending });
    out
}

/// MCP era a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Era {
    /// Not known yet.
    Unknown,
    /// `initialize` handshake (2025-11-25 and earlier).
    Handshake,
    /// Stateless 2026-07-28: `_meta` protocol version on every request.
    Stateless,
}

/// `_meta` key carrying the protocol version of a stateless-era request.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key carrying the client's identity in a stateless-era request.
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";

/// The era a client request reveals, if any.
pub fn era_of_request(msg: &Message) -> Option<Era> {
    if msg.method() == Some("initialize") {
        return Some(Era::Handshake);
    }
    let meta = msg.params()?.get("_meta")?;
    meta.get(META_PROTOCOL_VERSION).map(|_| Era::Stateless)
}

/// The client name a request reveals (`initialize` params or stateless `_meta`).
pub fn client_name_of(msg: &Message) -> Option<String> {
    let params = msg.params()?;
    let info = if msg.method() == Some("initialize") {
        params.get("clientInfo")
    } else {
        params.get("_meta").and_then(|m| m.get(META_CLIENT_INFO))
    }?;
    info.get("name").and_then(Value::as_str).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let k = |s: &str| Message::parse(s.as_bytes()).map(|m| m.kind);
        assert_eq!(
            k(r#"{"jsonrpc":"2.0","id":1,"method":"x"}"#),
            Some(Kind::Request)
        );
        assert_eq!(
            k(r#"{"jsonrpc":"2.0","method":"x"}"#),
            Some(Kind::Notification)
        );
        assert_eq!(
            k(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#),
            Some(Kind::Response)
        );
        assert_eq!(
            k(r#"{"jsonrpc":"2.0","id":2,"error":{}}"#),
            Some(Kind::Response)
        );
        assert_eq!(k("[1]"), None);
        assert_eq!(k("{\"id\":1}"), None);
        assert_eq!(k("not json"), None);
        assert_eq!(k("{\"a\":1}\r\n"), None);
    }

    #[test]
    fn eras_and_clients() {
        let init = Message::parse(
            br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"clientInfo":{"name":"cursor"}}}"#,
        )
        .unwrap();
        assert_eq!(era_of_request(&init), Some(Era::Handshake));
        assert_eq!(client_name_of(&init).as_deref(), Some("cursor"));
        let modern = Message::parse(
            br#"{"jsonrpc":"2.0","id":0,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"c"}}}}"#,
        )
        .unwrap();
        assert_eq!(era_of_request(&modern), Some(Era::Stateless));
        assert_eq!(client_name_of(&modern).as_deref(), Some("c"));
    }

    #[test]
    fn error_lines_answer_the_same_id() {
        let line = error_line(&json!("abc"), POLICY_ERROR, "no", b"\r\n");
        assert!(line.ends_with(b"\r\n"));
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["id"], "abc");
        assert_eq!(v["error"]["code"], POLICY_ERROR);
    }
}
