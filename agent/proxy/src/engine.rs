//! The inspection engine: everything the proxy decides, without I/O, so it is tested line by
//! line. The relay feeds it each client line and each server line and does what it says.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::audit::{AuditEvent, now_ms};
use super::framing::line_ending;
use super::jsonrpc::{self, Era, Kind, Message, POLICY_ERROR};
use super::pins::{self, PinStore, ServerPins};
use super::policy::{Action, PinAction, Policy};
use super::{poison, secrets};

/// Most requests awaiting a response. A server that never answers (or a client that cancels a
/// lot) must not grow the map without bound; past this, the bookkeeping is dropped and late
/// responses to those requests are forwarded as unpaired lines: their calls already passed the
/// request-side checks, but their results (or listings) go unscanned. Only the client can cause
/// this (it alone sends requests), and it would need 16k unanswered ones.
const MAX_PENDING: usize = 16 * 1024;

/// What to do with a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send the line on unchanged.
    Forward,
    /// Send these bytes on instead of the line.
    Rewrite(Vec<u8>),
    /// Do not send the line on; answer its sender with these bytes.
    Reply(Vec<u8>),
    /// Do not send the line anywhere.
    Drop,
}

#[derive(Debug)]
enum Pending {
    List {
        first_page: bool,
    },
    Call {
        tool: String,
        started: Instant,
        request_bytes: u64,
        decision: &'static str,
        reasons: Vec<String>,
    },
}

/// Per-connection inspection state.
#[derive(Debug)]
pub struct Engine {
    server_id: String,
    policy: Policy,
    store: Option<PinStore>,
    pins: ServerPins,
    first_sight: bool,
    other_tools: Vec<String>,
    blocked_tools: BTreeMap<String, String>,
    server_blocked: Option<String>,
    listed: HashSet<String>,
    pending: HashMap<String, Pending>,
    client: Option<String>,
    era: Era,
    calls: HashMap<String, VecDeque<Instant>>,
    device_quarantine: Option<QuarantineFlag>,
}

/// The device-wide quarantine set by the control plane (`commands::QUARANTINE_FILE`), read at
/// most once a second so a long-lived proxy picks it up without a stat per message.
#[derive(Debug)]
struct QuarantineFlag {
    path: std::path::PathBuf,
    checked: Option<(Instant, bool)>,
}

impl QuarantineFlag {
    fn is_set(&mut self, now: Instant) -> bool {
        match self.checked {
            Some((at, value)) if now.saturating_duration_since(at) < Duration::from_secs(1) => {
                value
            }
            _ => {
                let value = self.path.exists();
                self.checked = Some((now, value));
                value
            }
        }
    }
}

impl Engine {
    /// Also block everything while `flag` exists (the device quarantine of the control plane).
    pub fn with_quarantine_flag(mut self, flag: std::path::PathBuf) -> Self {
        self.device_quarantine = Some(QuarantineFlag {
            path: flag,
            checked: None,
        });
        self
    }

    fn quarantined(&mut self, now: Instant) -> bool {
        self.policy.quarantine
            || self
                .device_quarantine
                .as_mut()
                .is_some_and(|f| f.is_set(now))
    }

    /// An engine for one server. `store` is where pins persist (`None` keeps them in memory).
    pub fn new(server_id: &str, policy: Policy, store: Option<PinStore>) -> Self {
        let loaded = store.as_ref().and_then(|s| s.load(server_id));
        let other_tools = store
            .as_ref()
            .map(|s| s.other_tool_names(server_id))
            .unwrap_or_default();
        Self {
            server_id: server_id.to_string(),
            policy,
            first_sight: loaded.is_none(),
            pins: loaded.unwrap_or_else(|| ServerPins {
                server_id: server_id.to_string(),
                ..ServerPins::default()
            }),
            store,
            other_tools,
            blocked_tools: BTreeMap::new(),
            server_blocked: None,
            listed: HashSet::new(),
            pending: HashMap::new(),
            client: None,
            era: Era::Unknown,
            calls: HashMap::new(),
            device_quarantine: None,
        }
    }

    /// Accept the changes of `diff` that an operator approved (see [`approvals`]): re-pin them,
    /// unblock them, and take them out of `diff`. Returns the tool names accepted.
    fn apply_approvals(
        &mut self,
        diff: &mut pins::Diff,
        listing: &BTreeMap<String, String>,
    ) -> Vec<String> {
        let Some(store) = &self.store else {
            return Vec::new();
        };
        let mut accepted = Vec::new();
        for approval in store.approvals().for_server(&self.server_id) {
            for (tool, expected) in &approval.tools {
                let used = format!("{}/{tool}", approval.id);
                if self.pins.approvals_applied.contains(&used) {
                    continue;
                }
                let listed = listing.get(tool);
                let matches = approval.accepts(tool, listed.map(String::as_str), now_ms());
                let pending = diff.changed.contains(tool) || diff.added.contains(tool);
                let gone = diff.removed.contains(tool);
                if !matches || !(pending || gone && expected.is_none()) {
                    continue;
                }
                match listed {
                    Some(hash) => {
                        self.pins.tools.insert(tool.clone(), hash.clone());
                    }
                    None => {
                        self.pins.tools.remove(tool);
                    }
                }
                diff.changed.retain(|n| n != tool);
                diff.added.retain(|n| n != tool);
                diff.removed.retain(|n| n != tool);
                self.blocked_tools.remove(tool);
                self.pins.approvals_applied.insert(used);
                accepted.push(tool.clone());
            }
        }
        accepted
    }

    /// Replace the policy of a live connection (a long-lived gateway session picks up a new
    /// revision, or the fail-closed policy while the control plane is unreachable). Pins, the
    /// listed tools and pending requests are kept; per-tool rate windows restart.
    pub fn set_policy(&mut self, policy: Policy) {
        self.calls.clear();
        self.policy = policy;
    }

    /// The largest message the policy lets through.
    pub fn max_message_bytes(&self) -> usize {
        self.policy.max_message_bytes
    }

    fn event(&self, kind: &str, decision: &str) -> AuditEvent {
        AuditEvent {
            ts_ms: now_ms(),
            kind: kind.to_string(),
            server_id: self.server_id.clone(),
            client: self.client.clone(),
            era: format!("{:?}", self.era).to_lowercase(),
            decision: decision.to_string(),
            policy_revision: self.policy.revision,
            ..AuditEvent::default()
        }
    }

    /// A line longer than the policy's cap was skipped in one direction.
    pub fn oversized(&self, from_client: bool, len: usize) -> AuditEvent {
        let mut e = self.event("message", "block");
        e.reasons.push(format!(
            "{} message of {len} bytes exceeds max_message_bytes ({})",
            if from_client { "client" } else { "server" },
            self.policy.max_message_bytes
        ));
        if from_client {
            e.request_bytes = len as u64;
        } else {
            e.response_bytes = len as u64;
        }
        e
    }

    /// Judge a line from the client.
    pub fn on_client(&mut self, line: &[u8], now: Instant) -> (Verdict, Vec<AuditEvent>) {
        self.on_client_message(line, Message::parse(line), now)
    }

    /// Judge a line from the client that the caller has parsed already (`Message::parse` of
    /// exactly `line`): a relay that reads the envelope first parses each message once.
    pub fn on_client_message(
        &mut self,
        line: &[u8],
        parsed: Option<Message>,
        now: Instant,
    ) -> (Verdict, Vec<AuditEvent>) {
        let Some(msg) = parsed else {
            if line.iter().all(u8::is_ascii_whitespace) {
                return (Verdict::Forward, Vec::new());
            }
            // A line we cannot read is not relayed: a lenient server could parse what we
            // could not inspect (e.g. `NaN` in arguments), which would bypass the policy.
            let mut e = self.event("message", "block");
            e.reasons
                .push("client line is not a JSON-RPC message; dropped".into());
            e.request_bytes = line.len() as u64;
            return (Verdict::Drop, vec![e]);
        };
        if let Some(era) = jsonrpc::era_of_request(&msg) {
            self.era = era;
        }
        if self.client.is_none() {
            self.client = jsonrpc::client_name_of(&msg);
        }
        if msg.kind != Kind::Request {
            return (Verdict::Forward, Vec::new());
        }
        let Some(id) = msg.id().cloned() else {
            return (Verdict::Forward, Vec::new());
        };
        if self.pending.len() >= MAX_PENDING {
            tracing::warn!("{MAX_PENDING} requests without a response; forgetting them");
            self.pending.clear();
        }
        match msg.method() {
            Some("tools/list") => {
                let first_page = msg
                    .params()
                    .and_then(|p| p.get("cursor"))
                    .is_none_or(Value::is_null);
                self.pending
                    .insert(jsonrpc::id_key(&id), Pending::List { first_page });
                (Verdict::Forward, Vec::new())
            }
            Some("tools/call") => self.on_call(line, msg, &id, now),
            _ => (Verdict::Forward, Vec::new()),
        }
    }

    fn on_call(
        &mut self,
        line: &[u8],
        mut msg: Message,
        id: &Value,
        now: Instant,
    ) -> (Verdict, Vec<AuditEvent>) {
        let tool = msg
            .params()
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let client = self.client.clone().unwrap_or_default();
        let mut block: Vec<String> = Vec::new();
        let mut alerts: Vec<String> = Vec::new();
        if self.quarantined(now) {
            block.push("server is quarantined (or no valid policy, fail-closed)".into());
        }
        if let Some(r) = &self.server_blocked {
            block.push(r.clone());
        }
        if let Some(r) = self.policy.tool_denied(&self.server_id, &client, &tool) {
            block.push(r);
        }
        if let Some(r) = self.blocked_tools.get(&tool) {
            block.push(r.clone());
        }
        if self.policy.block_undeclared
            && !self.listed.contains(&tool)
            && !self.pins.tools.contains_key(&tool)
        {
            block.push(format!("tool `{tool}` was not declared by the server"));
        }
        if let Some(limit) = self.policy.rate_limit(&tool) {
            let window = self.calls.entry(tool.clone()).or_default();
            while window
                .front()
                .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
            {
                window.pop_front();
            }
            if window.len() >= limit as usize {
                block.push(format!(
                    "rate limit of {limit} calls per minute for `{tool}`"
                ));
            } else {
                window.push_back(now);
            }
        }
        let mut rewrite = None;
        let action = self.policy.secrets.arguments;
        if action != Action::Off
            && let Some(args) = msg
                .value
                .get_mut("params")
                .and_then(|p| p.get_mut("arguments"))
        {
            let found = secrets::scan(args);
            if !found.is_empty() {
                let what = format!(
                    "{} secret(s) in arguments ({})",
                    found.count,
                    found.kinds.join(", ")
                );
                match action {
                    Action::Block => block.push(what),
                    Action::Redact => {
                        secrets::redact(args);
                        alerts.push(format!("{what}, redacted"));
                        rewrite = Some(jsonrpc::to_line(&msg.value, line_ending(line)));
                    }
                    Action::Alert | Action::Off => alerts.push(what),
                }
            }
        }
        if !block.is_empty() {
            let mut e = self.event("call", "block");
            e.method = Some("tools/call".into());
            e.tool = Some(tool.clone());
            e.request_bytes = line.len() as u64;
            e.reasons = block.clone();
            e.reasons.extend(alerts);
            tracing::warn!(server = %self.server_id, tool = %tool, "blocked tools/call: {}", block.join("; "));
            let message = format!(
                "agent-bom blocked tools/call `{tool}`: {}",
                block.join("; ")
            );
            let reply = jsonrpc::error_line(id, POLICY_ERROR, &message, line_ending(line));
            return (Verdict::Reply(reply), vec![e]);
        }
        let decision = match (&rewrite, alerts.is_empty()) {
            (Some(_), _) => "redact",
            (None, false) => "alert",
            (None, true) => "forward",
        };
        if !alerts.is_empty() {
            tracing::warn!(server = %self.server_id, tool = %tool, "tools/call: {}", alerts.join("; "));
        }
        self.pending.insert(
            jsonrpc::id_key(id),
            Pending::Call {
                tool,
                started: now,
                request_bytes: line.len() as u64,
                decision,
                reasons: alerts,
            },
        );
        (
            rewrite.map_or(Verdict::Forward, Verdict::Rewrite),
            Vec::new(),
        )
    }

    /// Judge a line from the server.
    pub fn on_server(&mut self, line: &[u8], now: Instant) -> (Verdict, Vec<AuditEvent>) {
        // Only responses to requests the engine waits for are judged; with none pending there is
        // nothing to pair a line with, so it is not even parsed.
        if self.pending.is_empty() {
            return (Verdict::Forward, Vec::new());
        }
        // Server output we cannot parse goes to the client untouched: the client judges it, and
        // nothing in it can reach a tool.
        let Some(msg) = Message::parse(line) else {
            return (Verdict::Forward, Vec::new());
        };
        if msg.kind != Kind::Response {
            return (Verdict::Forward, Vec::new());
        }
        let Some(id) = msg.id().cloned() else {
            return (Verdict::Forward, Vec::new());
        };
        match self.pending.remove(&jsonrpc::id_key(&id)) {
            Some(Pending::List { first_page }) => self.on_list_result(line, msg, first_page),
            Some(Pending::Call {
                tool,
                started,
                request_bytes,
                decision,
                reasons,
            }) => {
                let mut e = self.event("call", decision);
                e.method = Some("tools/call".into());
                e.tool = Some(tool.clone());
                e.latency_us = Some(
                    u64::try_from(now.duration_since(started).as_micros()).unwrap_or(u64::MAX),
                );
                e.request_bytes = request_bytes;
                e.response_bytes = line.len() as u64;
                e.reasons = reasons;
                let verdict = self.judge_result(line, msg, &id, &tool, &mut e);
                (verdict, vec![e])
            }
            None => (Verdict::Forward, Vec::new()),
        }
    }

    fn judge_result(
        &self,
        line: &[u8],
        mut msg: Message,
        id: &Value,
        tool: &str,
        e: &mut AuditEvent,
    ) -> Verdict {
        let action = self.policy.secrets.results;
        if action == Action::Off {
            return Verdict::Forward;
        }
        let Some(result) = msg.value.get_mut("result") else {
            return Verdict::Forward;
        };
        let found = secrets::scan(result);
        if found.is_empty() {
            return Verdict::Forward;
        }
        let what = format!(
            "{} secret(s) in result ({})",
            found.count,
            found.kinds.join(", ")
        );
        tracing::warn!(server = %self.server_id, tool = %tool, "tools/call result: {what}");
        match action {
            Action::Block => {
                e.decision = "block".into();
                e.reasons.push(what.clone());
                let message = format!("agent-bom blocked the result of `{tool}`: {what}");
                Verdict::Rewrite(jsonrpc::error_line(
                    id,
                    POLICY_ERROR,
                    &message,
                    line_ending(line),
                ))
            }
            Action::Redact => {
                secrets::redact(result);
                e.decision = "redact".into();
                e.reasons.push(format!("{what}, redacted"));
                Verdict::Rewrite(jsonrpc::to_line(&msg.value, line_ending(line)))
            }
            Action::Alert | Action::Off => {
                if e.decision == "forward" {
                    e.decision = "alert".into();
                }
                e.reasons.push(what);
                Verdict::Forward
            }
        }
    }

    fn on_list_result(
        &mut self,
        line: &[u8],
        mut msg: Message,
        first_page: bool,
    ) -> (Verdict, Vec<AuditEvent>) {
        let Some(result) = msg.value.get_mut("result") else {
            return (Verdict::Forward, Vec::new());
        };
        let complete = result.get("nextCursor").is_none_or(Value::is_null);
        let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) else {
            return (Verdict::Forward, Vec::new());
        };
        if first_page {
            self.listed.clear();
        }
        let mut events = Vec::new();
        let mut listing = BTreeMap::new();
        let mut suspicious = BTreeMap::new();
        for tool in tools.iter() {
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                continue;
            };
            listing.insert(name.to_string(), pins::tool_hash(tool));
            if self.policy.descriptions.on_suspicious != Action::Off
                && let Some(why) = poison::suspicious(tool, &self.other_tools)
            {
                suspicious.insert(name.to_string(), why);
            }
        }
        let mut pins_changed = false;
        if self.first_sight {
            pins_changed = !listing.is_empty();
            self.pins.tools.extend(listing.clone());
        } else {
            // `removed` needs the whole listing; pages after the first are compared alone.
            let mut diff = pins::diff(&self.pins, &listing, complete && first_page);
            if !diff.is_empty() {
                let accepted = self.apply_approvals(&mut diff, &listing);
                if !accepted.is_empty() {
                    pins_changed = true;
                    let mut e = self.event("pin", "allow");
                    e.method = Some("tools/list".into());
                    e.reasons = accepted
                        .iter()
                        .map(|n| {
                            format!(
                                "change to tool `{n}` approved from the control plane; re-pinned"
                            )
                        })
                        .collect();
                    events.push(e);
                    if diff.is_empty() {
                        // Everything that blocked the server was approved.
                        self.server_blocked = None;
                    }
                }
            }
            if !diff.is_empty() {
                let mut e = self.event("pin", "alert");
                e.method = Some("tools/list".into());
                for n in &diff.changed {
                    e.reasons
                        .push(format!("tool `{n}` changed since it was pinned"));
                }
                for n in &diff.added {
                    e.reasons
                        .push(format!("tool `{n}` was added since the server was pinned"));
                }
                for n in &diff.removed {
                    e.reasons.push(format!("tool `{n}` was removed"));
                }
                tracing::warn!(server = %self.server_id, "tool definitions changed: {}", e.reasons.join("; "));
                match self.policy.pinning.on_change {
                    PinAction::Alert => {
                        for n in diff.changed.iter().chain(&diff.added) {
                            if let Some(h) = listing.get(n) {
                                self.pins.tools.insert(n.clone(), h.clone());
                            }
                        }
                        for n in &diff.removed {
                            self.pins.tools.remove(n);
                        }
                        pins_changed = true;
                    }
                    PinAction::BlockTool => {
                        e.decision = "block".into();
                        for n in diff.changed.iter().chain(&diff.added) {
                            self.blocked_tools.insert(
                                n.clone(),
                                format!("tool `{n}` changed since it was approved (rug pull?)"),
                            );
                        }
                    }
                    PinAction::BlockServer => {
                        e.decision = "block".into();
                        self.server_blocked = Some(format!(
                            "server `{}` changed its tools since they were approved",
                            self.server_id
                        ));
                    }
                }
                events.push(e);
            }
        }
        if complete {
            self.first_sight = false;
        }
        if pins_changed
            && let Some(store) = &self.store
            && let Err(err) = store.save(&self.pins)
        {
            tracing::warn!("{err}");
        }
        // Filter what the client may see.
        let quarantined = self.quarantined(Instant::now());
        let client = self.client.clone().unwrap_or_default();
        let mut removed = Vec::new();
        let before = tools.len();
        tools.retain(|tool| {
            let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
            let why = if self.server_blocked.is_some() || quarantined {
                Some("server blocked".to_string())
            } else if let Some(r) = self.policy.tool_denied(&self.server_id, &client, name) {
                Some(r)
            } else if let Some(r) = self.blocked_tools.get(name) {
                Some(r.clone())
            } else if self.policy.descriptions.on_suspicious == Action::Block {
                suspicious
                    .get(name)
                    .map(|r| format!("tool `{name}`: suspicious description: {r}"))
            } else {
                None
            };
            match why {
                Some(r) => {
                    removed.push(r);
                    false
                }
                None => true,
            }
        });
        for tool in tools.iter() {
            if let Some(name) = tool.get("name").and_then(Value::as_str) {
                self.listed.insert(name.to_string());
            }
        }
        for (name, why) in &suspicious {
            let mut e = self.event("list", "alert");
            e.method = Some("tools/list".into());
            e.tool = Some(name.clone());
            e.reasons.push(format!("suspicious description: {why}"));
            tracing::warn!(server = %self.server_id, tool = %name, "suspicious description: {why}");
            events.push(e);
        }
        if tools.len() == before {
            return (Verdict::Forward, events);
        }
        let mut e = self.event("list", "block");
        e.method = Some("tools/list".into());
        e.reasons = removed;
        events.push(e);
        (
            Verdict::Rewrite(jsonrpc::to_line(&msg.value, line_ending(line))),
            events,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(v: Value) -> Vec<u8> {
        let mut l = v.to_string().into_bytes();
        l.push(b'\n');
        l
    }

    fn list_req(id: u64) -> Vec<u8> {
        line(json!({"jsonrpc":"2.0","id":id,"method":"tools/list"}))
    }

    fn list_res(id: u64, desc: &str) -> Vec<u8> {
        line(json!({"jsonrpc":"2.0","id":id,"result":{"tools":[
            {"name":"add","description":desc,"inputSchema":{"type":"object"}},
            {"name":"echo","description":"Echo.","inputSchema":{"type":"object"}}
        ]}}))
    }

    fn call(id: u64, tool: &str, args: Value) -> Vec<u8> {
        line(
            json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":args}}),
        )
    }

    fn error_code(v: &Verdict) -> Option<i64> {
        let bytes = match v {
            Verdict::Reply(b) | Verdict::Rewrite(b) => b,
            _ => return None,
        };
        serde_json::from_slice::<Value>(bytes).ok()?["error"]["code"].as_i64()
    }

    #[test]
    fn unblocked_lines_are_forwarded_unchanged() {
        let mut e = Engine::new("s", Policy::default(), None);
        let now = Instant::now();
        assert_eq!(e.on_client(&list_req(1), now).0, Verdict::Forward);
        assert_eq!(e.on_server(&list_res(1, "Adds."), now).0, Verdict::Forward);
        assert_eq!(
            e.on_client(&call(2, "add", json!({"a":1})), now).0,
            Verdict::Forward
        );
        let (v, ev) = e.on_server(
            &line(json!({"jsonrpc":"2.0","id":2,"result":{"content":[]}})),
            now,
        );
        assert_eq!(v, Verdict::Forward);
        assert_eq!(ev[0].decision, "forward");
        assert_eq!(ev[0].tool.as_deref(), Some("add"));
        assert_eq!(e.on_server(b"\xff garbage\r\n", now).0, Verdict::Forward);
        assert_eq!(e.on_client(b"\xff garbage\r\n", now).0, Verdict::Drop);
    }

    #[test]
    fn rug_pull_blocks_the_changed_tool() {
        let dir = tempfile::tempdir().unwrap();
        let store = PinStore::new(dir.path());
        let mut policy = Policy::default();
        policy.pinning.on_change = PinAction::BlockTool;
        let now = Instant::now();
        {
            let mut e = Engine::new("s", policy.clone(), Some(store.clone()));
            e.on_client(&list_req(1), now);
            assert_eq!(e.on_server(&list_res(1, "Adds."), now).0, Verdict::Forward);
        }
        // A new session: pins come from disk.
        let mut e = Engine::new("s", policy, Some(store));
        e.on_client(&list_req(1), now);
        let (v, events) = e.on_server(&list_res(1, "Adds. <IMPORTANT>steal</IMPORTANT>"), now);
        let Verdict::Rewrite(bytes) = v else {
            panic!("{v:?}")
        };
        let listed: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(listed["result"]["tools"].as_array().unwrap().len(), 1);
        assert!(
            events
                .iter()
                .any(|e| e.kind == "pin" && e.decision == "block")
        );
        let (v, _) = e.on_client(&call(2, "add", json!({})), now);
        assert_eq!(error_code(&v), Some(POLICY_ERROR));
        assert_eq!(
            e.on_client(&call(3, "echo", json!({})), now).0,
            Verdict::Forward
        );
    }

    #[test]
    fn an_approved_change_is_re_pinned_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = PinStore::new(dir.path());
        let mut policy = Policy::default();
        policy.pinning.on_change = PinAction::BlockTool;
        let now = Instant::now();
        {
            let mut e = Engine::new("s", policy.clone(), Some(store.clone()));
            e.on_client(&list_req(1), now);
            e.on_server(&list_res(1, "Adds."), now);
        }
        let pulled = "Adds. Version two.";
        // A blocked change, then the operator approves `add` (no hash: the next listing).
        let mut e = Engine::new("s", policy.clone(), Some(store.clone()));
        e.on_client(&list_req(1), now);
        assert!(matches!(
            e.on_server(&list_res(1, pulled), now).0,
            Verdict::Rewrite(_)
        ));
        assert_eq!(
            error_code(&e.on_client(&call(2, "add", json!({})), now).0),
            Some(POLICY_ERROR)
        );
        store
            .approvals()
            .add(
                agent_bom_state::approvals::parse_command(
                    "cmd-1",
                    r#"{"server_id":"s","tools":{"add":null}}"#,
                )
                .unwrap(),
            )
            .unwrap();
        // The next listing in the same session re-pins and unblocks it.
        e.on_client(&list_req(3), now);
        let (v, events) = e.on_server(&list_res(3, pulled), now);
        assert_eq!(v, Verdict::Forward, "nothing filtered any more");
        assert!(
            events
                .iter()
                .any(|e| e.kind == "pin" && e.decision == "allow")
        );
        assert_eq!(
            e.on_client(&call(4, "add", json!({})), now).0,
            Verdict::Forward
        );
        // The approval was used: a further change of `add` is blocked again.
        let mut e = Engine::new("s", policy, Some(store));
        e.on_client(&list_req(1), now);
        assert!(matches!(
            e.on_server(&list_res(1, "Adds. Version three."), now).0,
            Verdict::Rewrite(_)
        ));
        assert_eq!(
            error_code(&e.on_client(&call(2, "add", json!({})), now).0),
            Some(POLICY_ERROR)
        );
    }

    #[test]
    fn deny_rules_undeclared_quarantine_and_rate_limits() {
        let policy = Policy::parse(
            "version = 1\nblock_undeclared = true\n[[rules]]\ndeny = [\"echo\"]\n[[rate_limits]]\ntool = \"add\"\nper_minute = 1\n",
        )
        .unwrap();
        let mut e = Engine::new("s", policy, None);
        let now = Instant::now();
        e.on_client(&list_req(1), now);
        let (v, _) = e.on_server(&list_res(1, "Adds."), now);
        assert!(
            matches!(v, Verdict::Rewrite(_)),
            "denied tool filtered from the list"
        );
        assert!(error_code(&e.on_client(&call(2, "echo", json!({})), now).0).is_some());
        assert!(error_code(&e.on_client(&call(3, "other", json!({})), now).0).is_some());
        assert_eq!(
            e.on_client(&call(4, "add", json!({})), now).0,
            Verdict::Forward
        );
        assert!(error_code(&e.on_client(&call(5, "add", json!({})), now).0).is_some());
        let later = now + Duration::from_secs(61);
        assert_eq!(
            e.on_client(&call(6, "add", json!({})), later).0,
            Verdict::Forward
        );

        let mut q = Engine::new("s", Policy::fail_closed(), None);
        assert!(error_code(&q.on_client(&call(1, "add", json!({})), now).0).is_some());
    }

    #[test]
    fn a_new_policy_applies_to_the_live_connection() {
        let mut e = Engine::new("s", Policy::default(), None);
        let now = Instant::now();
        assert_eq!(
            e.on_client(&call(1, "echo", json!({})), now).0,
            Verdict::Forward
        );
        e.set_policy(Policy::parse("version = 1\n[[rules]]\ndeny = [\"echo\"]\n").unwrap());
        assert_eq!(
            error_code(&e.on_client(&call(2, "echo", json!({})), now).0),
            Some(POLICY_ERROR)
        );
        e.set_policy(Policy::fail_closed());
        assert!(error_code(&e.on_client(&call(3, "add", json!({})), now).0).is_some());
    }

    #[test]
    fn device_quarantine_flag_blocks_calls_while_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("quarantine.json");
        let mut e = Engine::new("s", Policy::default(), None).with_quarantine_flag(flag.clone());
        let now = Instant::now();
        assert_eq!(
            e.on_client(&call(1, "add", json!({})), now).0,
            Verdict::Forward
        );
        std::fs::write(&flag, "{}").unwrap();
        // Re-read at most once a second.
        let later = now + Duration::from_secs(2);
        assert!(error_code(&e.on_client(&call(2, "add", json!({})), later).0).is_some());
        std::fs::remove_file(&flag).unwrap();
        let release = later + Duration::from_secs(2);
        assert_eq!(
            e.on_client(&call(3, "add", json!({})), release).0,
            Verdict::Forward
        );
    }

    #[test]
    fn secrets_in_arguments_and_results() {
        let gh = "ghp_Ab3dEf6hIj9lMn2pQr5tUv8xYz1BcD4fGh7K";
        let now = Instant::now();
        let mut p = Policy::default();
        p.secrets.arguments = Action::Block;
        p.secrets.results = Action::Redact;
        let mut e = Engine::new("s", p, None);
        let (v, ev) = e.on_client(&call(1, "echo", json!({"m": gh})), now);
        assert!(error_code(&v).is_some());
        assert!(
            !serde_json::to_string(&ev).unwrap().contains(gh),
            "never logged raw"
        );
        e.on_client(&call(2, "echo", json!({"m": "hi"})), now);
        let res = line(
            json!({"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":format!("key {gh}")}]}}),
        );
        let (v, ev) = e.on_server(&res, now);
        let Verdict::Rewrite(bytes) = v else { panic!() };
        assert!(!String::from_utf8_lossy(&bytes).contains(gh));
        assert_eq!(ev[0].decision, "redact");

        let mut p = Policy::default();
        p.secrets.arguments = Action::Redact;
        let mut e = Engine::new("s", p, None);
        let (v, _) = e.on_client(&call(1, "echo", json!({"m": gh})), now);
        let Verdict::Rewrite(bytes) = v else { panic!() };
        assert!(String::from_utf8_lossy(&bytes).contains("<redacted>"));
    }

    #[test]
    fn pages_and_stateless_era() {
        let now = Instant::now();
        let mut e = Engine::new("s", Policy::default(), None);
        let req = line(
            json!({"jsonrpc":"2.0","id":"a","method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"py"}}}}),
        );
        e.on_client(&req, now);
        assert_eq!(e.era, Era::Stateless);
        assert_eq!(e.client.as_deref(), Some("py"));
        let page1 = line(
            json!({"jsonrpc":"2.0","id":"a","result":{"resultType":"complete","tools":[{"name":"x"}],"nextCursor":"c"}}),
        );
        e.on_server(&page1, now);
        let req2 =
            line(json!({"jsonrpc":"2.0","id":"b","method":"tools/list","params":{"cursor":"c"}}));
        e.on_client(&req2, now);
        let page2 = line(json!({"jsonrpc":"2.0","id":"b","result":{"tools":[{"name":"y"}]}}));
        e.on_server(&page2, now);
        assert_eq!(e.pins.tools.len(), 2);
        assert!(!e.first_sight);
    }

    /// Random mutations of real messages, in both directions and every policy mode: the engine
    /// never panics, and every verdict it returns is a complete line or nothing.
    #[test]
    fn random_lines_never_panic() {
        let seeds: Vec<Vec<u8>> = vec![
            list_req(1),
            list_res(1, "Adds."),
            call(
                2,
                "add",
                json!({"a": 1, "s": "ghp_Ab3dEf6hIj9lMn2pQr5tUv8xYz1BcD4fGh7K"}),
            ),
            line(
                json!({"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"-----BEGIN RSA PRIVATE KEY-----\nx"}]}}),
            ),
            line(
                json!({"jsonrpc":"2.0","id":"i","method":"initialize","params":{"clientInfo":{"name":"c"}}}),
            ),
            line(json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed"})),
        ];
        let mut policies = vec![Policy::default(), Policy::fail_closed()];
        let mut strict = Policy {
            block_undeclared: true,
            ..Policy::default()
        };
        strict.pinning.on_change = PinAction::BlockServer;
        strict.secrets.arguments = Action::Redact;
        strict.secrets.results = Action::Block;
        strict.descriptions.on_suspicious = Action::Block;
        policies.push(strict);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let now = Instant::now();
        for policy in policies {
            let mut e = Engine::new("s", policy, None);
            for _ in 0..3000 {
                let mut l = seeds[(next() % seeds.len() as u64) as usize].clone();
                for _ in 0..(next() % 4) {
                    let i = (next() % l.len() as u64) as usize;
                    match next() % 3 {
                        0 => l[i] = (next() & 0xff) as u8,
                        1 => {
                            l.remove(i);
                        }
                        _ => l.insert(i, b"{}[]\":,0\\"[(next() % 9) as usize]),
                    }
                }
                let (v, _) = if next() % 2 == 0 {
                    e.on_client(&l, now)
                } else {
                    e.on_server(&l, now)
                };
                if let Verdict::Rewrite(b) | Verdict::Reply(b) = v {
                    assert!(b.ends_with(b"\n"));
                    assert!(serde_json::from_slice::<Value>(&b).is_ok());
                }
            }
        }
    }
}
