//! `GET /openapi.json`, generated from the route table ([`super::auth::ROUTES`]).

use axum::Json;
use serde_json::{Map, Value, json};

use super::auth::ROUTES;

/// The OpenAPI 3.1 document of this API.
pub fn openapi() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut responses = Map::new();
        responses.insert("200".into(), json!({"description": "success"}));
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
        if matches!(r.method, "POST" | "PUT" | "PATCH") {
            op["requestBody"] = json!({"required": false, "content": {"application/json": {"schema": {"type": "object"}}}});
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
