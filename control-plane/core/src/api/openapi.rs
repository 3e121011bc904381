//! `GET /openapi.json`, generated from the route table ([`super::auth::ROUTES`]).

use axum::Json;
use serde_json::{Map, Value, json};

use super::auth::ROUTES;

fn q(name: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": schema})
}

fn text() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 200})
}

fn limit() -> Value {
    json!({"type": "integer", "minimum": 1, "maximum": 1000})
}

/// Query parameters and request body schema of a route (kept beside the route table).
fn extras(method: &str, path: &str) -> (Vec<Value>, Option<Value>) {
    let states = json!({"type": "string", "enum": ["discovered", "approved", "quarantined", "decommissioned"]});
    match (method, path) {
        ("GET", "/v1/fleet/endpoints") => (
            vec![
                q("limit", limit()),
                q("cursor", json!({"type": "string"})),
                q(
                    "sort",
                    json!({"type": "string", "enum": ["hostname", "-hostname", "last_seen", "-last_seen", "enrolled_at", "-enrolled_at", "server_count", "-server_count"]}),
                ),
                q(
                    "status",
                    json!({"type": "string", "enum": ["online", "offline", "stale"]}),
                ),
                q("state", states.clone()),
                q("os", text()),
                q(
                    "tag",
                    json!({"type": "string", "pattern": "^[A-Za-z0-9._:=/-]{1,64}$"}),
                ),
                q("owner", text()),
                q("environment", text()),
                q("agent_version", text()),
                q("client", text()),
                q("server", text()),
                q("risk_flag", text()),
                q("q", text()),
            ],
            None,
        ),
        ("GET", "/v1/fleet/servers") => (
            vec![q("limit", limit()), q("cursor", json!({"type": "string"}))],
            None,
        ),
        ("GET", "/v1/audit") => (
            vec![
                q("after", json!({"type": "integer", "minimum": 0})),
                q("limit", limit()),
                q(
                    "action",
                    json!({"type": "string", "minLength": 1, "maxLength": 100}),
                ),
            ],
            None,
        ),
        ("GET", "/v1/posture/history") => (
            vec![q(
                "window",
                json!({"type": "string", "enum": crate::store::posture_history::Window::NAMES}),
            )],
            None,
        ),
        ("GET", "/install/latest") => (
            vec![
                json!({"name": "os", "in": "query", "required": true, "schema": {"type": "string", "enum": ["linux", "macos", "windows"]}}),
                json!({"name": "arch", "in": "query", "required": true, "schema": {"type": "string", "enum": ["x86_64", "aarch64"]}}),
                q(
                    "channel",
                    json!({"type": "string", "pattern": "^[a-z0-9-]{1,32}$"}),
                ),
                q(
                    "version",
                    json!({"type": "string", "pattern": "^[0-9][A-Za-z0-9.+-]{0,63}$"}),
                ),
            ],
            None,
        ),
        ("GET", "/install/agent.sh" | "/install/agent.ps1") => (
            vec![q(
                "channel",
                json!({"type": "string", "pattern": "^[a-z0-9-]{1,32}$"}),
            )],
            None,
        ),
        ("POST", "/v1/rollouts") => {
            let ring = json!({"type": "object", "additionalProperties": false, "required": ["name"],
                "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 64},
                    "tag": {"type": "string", "pattern": "^[A-Za-z0-9._:=/-]{1,64}$"},
                    "percent": {"type": "integer", "minimum": 1, "maximum": 100}}});
            (
                vec![],
                Some(
                    json!({"type": "object", "additionalProperties": false, "required": ["version"],
                    "properties": {
                        "version": {"type": "string", "pattern": "^[0-9][A-Za-z0-9.+-]{0,63}$"},
                        "rings": {"type": "array", "maxItems": 10, "items": ring},
                        "soak_secs": {"type": ["integer", "null"], "minimum": 0, "maximum": 2_592_000},
                        "max_failure_pct": {"type": ["integer", "null"], "minimum": 1, "maximum": 100},
                        "min_failures": {"type": ["integer", "null"], "minimum": 1, "maximum": 100_000},
                        "grace_secs": {"type": ["integer", "null"], "minimum": 5, "maximum": 3600},
                        "offer_ttl_secs": {"type": ["integer", "null"], "minimum": 60, "maximum": 2_592_000}}}),
                ),
            )
        }
        ("POST", "/v1/enrollment-tokens") => (
            vec![],
            Some(
                json!({"type": "object", "additionalProperties": false, "required": ["name"],
                "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": "\\S"},
                    "max_uses": {"type": ["integer", "null"], "minimum": 1, "maximum": 10_000_000},
                    "expires_in_secs": {"type": ["integer", "null"], "minimum": 1, "maximum": 315_360_000}}}),
            ),
        ),
        ("POST", "/v1/fleet/endpoints/{id}/reenroll-token") => (
            vec![],
            Some(json!({"type": "object", "additionalProperties": false,
                "properties": {"expires_in_secs": {"type": ["integer", "null"], "minimum": 1, "maximum": 2_592_000}}})),
        ),
        ("POST", "/v1/tenants") => (
            vec![],
            Some(
                json!({"type": "object", "additionalProperties": false, "required": ["name"],
                "properties": {"name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"}}}),
            ),
        ),
        ("PUT", "/v1/tenants/{name}/quotas") => {
            let n = json!({"type": ["integer", "null"], "minimum": 0, "maximum": 1_000_000_000});
            (
                vec![],
                Some(
                    json!({"type": "object", "additionalProperties": false, "properties": {
                    "max_endpoints": n, "max_api_keys": n, "rate_per_key_per_min": n, "rate_per_tenant_per_min": n}}),
                ),
            )
        }
        ("POST", "/v1/keys") => (
            vec![],
            Some(
                json!({"type": "object", "additionalProperties": false, "required": ["name", "role"],
                "properties": {
                    "name": text(),
                    "role": {"type": "string", "enum": ["admin", "analyst", "viewer"]},
                    "scopes": {"type": "array", "maxItems": 64, "items": {"type": "string"}},
                    "owner": {"type": ["string", "null"], "maxLength": 200},
                    "expires_in_secs": {"type": ["integer", "null"], "minimum": 1, "maximum": 315_360_000},
                    "super_admin": {"type": "boolean"}}}),
            ),
        ),
        ("POST", "/v1/keys/{id}/rotate") => (
            vec![],
            Some(
                json!({"type": "object", "additionalProperties": false, "properties": {
                "overlap_secs": {"type": ["integer", "null"], "minimum": 0, "maximum": 2_592_000}}}),
            ),
        ),
        ("PATCH", "/v1/fleet/endpoints/{id}") => (
            vec![],
            Some(
                json!({"type": "object", "additionalProperties": false, "properties": {
                "owner": {"type": ["string", "null"], "minLength": 1, "maxLength": 200},
                "environment": {"type": ["string", "null"], "minLength": 1, "maxLength": 200},
                "tags": {"type": "array", "maxItems": 64, "items": {"type": "string", "pattern": "^[A-Za-z0-9._:=/-]{1,64}$"}}}}),
            ),
        ),
        ("POST", "/v1/fleet/endpoints/{id}/pins/deny") => (
            vec![],
            Some(
                json!({"type": "object", "additionalProperties": false, "required": ["server_id", "tools"],
                "properties": {"server_id": {"type": "string", "minLength": 1, "maxLength": 200},
                "tools": {"type": "array", "minItems": 1, "maxItems": 100, "items": {"type": "string", "minLength": 1, "maxLength": 200}},
                "reason": {"type": "string", "maxLength": 1000}}}),
            ),
        ),
        ("GET", "/v1/fleet/endpoints/{id}/timeline") => (
            vec![q(
                "limit",
                json!({"type": "integer", "minimum": 1, "maximum": 100}),
            )],
            None,
        ),
        ("GET", "/v1/fleet/endpoints/{id}/commands")
        | ("GET", "/v1/policy/revisions")
        | ("GET", "/v1/policy/rollout") => (vec![q("limit", limit())], None),
        ("POST", "/v1/fleet/endpoints/{id}/commands") => (
            vec![],
            Some(
                json!({"type": "object", "additionalProperties": false, "required": ["kind"],
                "properties": {
                    "kind": {"type": "string", "enum": agent_bom_protocol::command::OPERATOR_KINDS},
                    "payload": {"type": "object"}}}),
            ),
        ),
        ("POST", "/v1/gateway/upstreams/{name}/pin-approvals") => (
            vec![],
            Some(
                json!({"type": "object", "additionalProperties": false, "required": ["tools"],
                "properties": {"tools": {"type": "object", "minProperties": 1,
                    "additionalProperties": {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$"}}}}),
            ),
        ),
        ("PUT", "/v1/policy") => (
            vec![],
            Some(
                json!({"type": "object", "additionalProperties": false, "required": ["policy"],
                "properties": {"policy": {"type": "string", "maxLength": crate::store::policies::MAX_POLICY_BYTES}}}),
            ),
        ),
        ("POST", "/v1/fleet/endpoints/{id}/state") => (
            vec![],
            Some(
                json!({"type": "object", "additionalProperties": false, "required": ["state"],
                "properties": {"state": states, "reason": {"type": "string", "maxLength": 1000}}}),
            ),
        ),
        ("POST", "/v1/fleet/sync") => (
            vec![],
            Some(json!({"type": "object", "properties": {
                "source_id": {"type": "string", "minLength": 1, "maxLength": 200},
                "idempotency_key": {"type": "string", "maxLength": 200},
                "agents": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
                    "name": text(),
                    "source_id": {"type": "string", "maxLength": 200},
                    "owner": {"type": ["string", "null"], "maxLength": 200},
                    "environment": {"type": ["string", "null"], "maxLength": 200},
                    "tags": {"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z0-9._:=/-]{1,64}$"}},
                    "mcp_servers": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
                        "name": text(),
                        "command": {"type": ["string", "null"]},
                        "args": {"type": "array", "items": {"type": "string"}},
                        "url": {"type": ["string", "null"]},
                        "transport": {"type": ["string", "null"]},
                        "credential_names": {"type": "array", "items": {"type": "string"}}}}}}}}}})),
        ),
        _ => (vec![], None),
    }
}

/// The OpenAPI 3.1 document of this API.
pub fn openapi() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let (query, body) = extras(r.method, r.path);
        let mut params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let validates = body.is_some() || !query.is_empty();
        params.extend(query);
        let mut responses = Map::new();
        let ok = match r.method {
            "POST"
                if r.path == "/v1/keys"
                    || r.path == "/v1/tenants"
                    || r.path == "/v1/rollouts"
                    || r.path.ends_with("/rotate") =>
            {
                "201"
            }
            "PUT" if r.path == "/v1/policy" => "201",
            "POST" if r.path.ends_with("/commands") => "202",
            "DELETE" => "204",
            _ => "200",
        };
        responses.insert(ok.into(), json!({"description": "success"}));
        if r.method == "POST" && r.path.ends_with("/commands") {
            responses.insert(
                "409".into(),
                json!({"description": "the endpoint has no agent, or it is revoked or decommissioned"}),
            );
        }
        if r.path.contains('{') {
            responses.insert(
                "404".into(),
                json!({"description": "not found (or another tenant's)"}),
            );
        }
        let mut op = json!({
            "operationId": format!("{}_{}", r.method.to_lowercase(), r.path.trim_matches('/').replace(['/', '{', '}', '.'], "_")),
            "summary": r.summary,
            "parameters": params,
        });
        if let Some(p) = r.permission {
            op["security"] = json!([{"bearer": []}]);
            op["x-permission"] = json!(p.name());
            responses.insert("401".into(), json!({"description": "no or bad credentials", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}));
            responses.insert("403".into(), json!({"description": "role or scope lacks the permission", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}));
            responses.insert(
                "429".into(),
                json!({"description": "rate limit or quota; see Retry-After"}),
            );
        }
        if validates {
            responses.insert("400".into(), json!({"description": "invalid request", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}));
        }
        if let Some(schema) = body {
            op["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": schema}}});
            responses.insert("400".into(), json!({"description": "invalid request", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}));
        }
        op["responses"] = Value::Object(responses);
        let entry = paths
            .entry(r.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        entry[r.method.to_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "agent-bom control plane", "version": crate::VERSION},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "object", "required": ["code", "message", "request_id"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "request_id": {"type": "string"}}}}
            }}
        }
    })
}

/// `GET /openapi.json`
pub(super) async fn document() -> Json<Value> {
    Json(openapi())
}
