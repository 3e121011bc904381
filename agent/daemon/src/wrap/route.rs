//! Routing remote entries through the tenant's MCP gateway: which URL of an entry changes, to
//! what, and back. The decision is made on the entry as the scanner parses it; each format's
//! editor then only replaces one string value.
//!
//! The routed URL carries the original in its fragment ([`agent_bom_discovery::launch`]'s
//! marker), so `unwrap` needs neither the record nor the control plane to restore it.

use serde_json::Value;

use agent_bom_discovery::launch::{URL_KEYS, launch, routed_parts, routed_url};
use agent_bom_protocol::Transport;
use agent_bom_protocol::gateway_routes::GatewayRoutes;
use agent_bom_protocol::sanitize::is_secret_name;

/// The change of one remote entry's URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlChange {
    /// The key holding the URL (`url`, `serverUrl`, `httpUrl` or `uri`).
    pub key: &'static str,
    /// The new URL.
    pub url: String,
}

/// What `wrap` does with an entry's URL: `None` when the entry is not remote or already where
/// it should be; `Err` (a reason to report) when it matches an upstream it cannot use.
///
/// An entry already routed is moved when the gateway's URL changed, and restored when the
/// tenant's gateway no longer has its upstream (a client pointed at a route that is gone would
/// lose the server).
pub fn route(body: &Value, routes: &GatewayRoutes) -> Option<Result<UrlChange, String>> {
    let (key, current) = remote_url(body)?;
    let original = routed_parts(current).map_or_else(|| current.to_string(), |(_, o)| o);
    let desired = match routes.route_for(&original) {
        None => original.clone(),
        Some(upstream) => {
            if let Some(name) = own_credential(body) {
                return (current == original.as_str()).then(|| {
                    Err(format!(
                        "it sends its own credential ({name}) to the server, which the gateway never forwards upstream; left direct (configure the upstream's credential on the gateway and drop it from the entry)"
                    ))
                });
            }
            let transport = entry_transport(body, &original);
            if transport != upstream.transport.transport() {
                return (current == original.as_str()).then(|| {
                    Err(format!(
                        "its URL is the gateway upstream {:?}, which speaks {}, but the entry is {}; left direct",
                        upstream.name,
                        upstream.transport.transport().as_str(),
                        transport.as_str()
                    ))
                });
            }
            routed_url(&routes.route_url(upstream), &original)
        }
    };
    (desired != current).then_some(Ok(UrlChange { key, url: desired }))
}

/// What `unwrap` does: the original URL of an entry `wrap` routed.
pub fn unroute(body: &Value) -> Option<UrlChange> {
    let (key, current) = remote_url(body)?;
    let (_, original) = routed_parts(current)?;
    Some(UrlChange { key, url: original })
}

/// The key and value of a remote entry's URL: an object with a string URL under one of the
/// clients' keys and no command (an entry with both is not a plain remote server).
fn remote_url(body: &Value) -> Option<(&'static str, &str)> {
    let map = body.as_object()?;
    if map.contains_key("command") || map.contains_key("cmd") {
        return None;
    }
    URL_KEYS
        .into_iter()
        .find_map(|k| Some((k, map.get(k)?.as_str()?)))
}

/// The name of a credential the entry sends to its server (a secret-looking or `Authorization`
/// header, or a header or bearer token taken from the environment), if any. Routed through the
/// gateway, it would reach the gateway instead, and the server would never get it.
fn own_credential(body: &Value) -> Option<String> {
    let l = launch(body);
    let headers = l
        .headers
        .map(|h| h.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    headers
        .into_iter()
        .chain(l.header_names)
        .find(|h| h.eq_ignore_ascii_case("authorization") || is_secret_name(h))
        .or_else(|| l.env_names.into_iter().next())
}

/// The transport the client uses for the entry when its URL is `url` (a declared type wins).
fn entry_transport(body: &Value, url: &str) -> Transport {
    let mut probe = body.clone();
    if let Some(map) = probe.as_object_mut() {
        for k in URL_KEYS {
            if let Some(v) = map.get_mut(k) {
                *v = Value::from(url);
            }
        }
    }
    launch(&probe).transport
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_bom_protocol::gateway_routes::{GatewayRoute, RouteTransport};
    use serde_json::json;

    fn routes(base: &str) -> GatewayRoutes {
        GatewayRoutes {
            url: base.into(),
            upstreams: vec![
                GatewayRoute {
                    name: "docs".into(),
                    url: "https://mcp.example.com/mcp".into(),
                    transport: RouteTransport::StreamableHttp,
                },
                GatewayRoute {
                    name: "legacy".into(),
                    url: "http://localhost:8080/sse".into(),
                    transport: RouteTransport::Sse,
                },
            ],
        }
    }

    #[test]
    fn routes_matching_entries_and_restores_them() {
        let r = routes("https://gw.example.com");
        let entry = json!({"type": "http", "url": "https://mcp.example.com/mcp/"});
        let change = route(&entry, &r).unwrap().unwrap();
        assert_eq!(change.key, "url");
        assert_eq!(
            change.url,
            "https://gw.example.com/mcp/docs#agent-bom-original=https://mcp.example.com/mcp/"
        );
        let routed = json!({"type": "http", "url": change.url});
        assert!(route(&routed, &r).is_none(), "already routed");
        assert_eq!(
            unroute(&routed).unwrap().url,
            "https://mcp.example.com/mcp/"
        );
        // The gateway moved: the entry follows; the upstream is gone: the entry goes direct.
        let moved = route(&routed, &routes("https://gw2.example.com"))
            .unwrap()
            .unwrap();
        assert!(moved.url.starts_with("https://gw2.example.com/mcp/docs#"));
        let gone = GatewayRoutes {
            upstreams: Vec::new(),
            ..r.clone()
        };
        assert_eq!(
            route(&routed, &gone).unwrap().unwrap().url,
            "https://mcp.example.com/mcp/"
        );

        let sse = json!({"serverUrl": "http://localhost:8080/sse"});
        let change = route(&sse, &r).unwrap().unwrap();
        assert_eq!(change.key, "serverUrl");
        assert!(
            change
                .url
                .starts_with("https://gw.example.com/mcp/legacy/sse#")
        );
        let gemini = json!({"httpUrl": "https://mcp.example.com/mcp"});
        assert_eq!(route(&gemini, &r).unwrap().unwrap().key, "httpUrl");
    }

    #[test]
    fn leaves_other_entries_alone() {
        let r = routes("https://gw.example.com");
        for entry in [
            json!({"url": "https://other.example.com/mcp"}),
            json!({"command": "npx", "url": "https://mcp.example.com/mcp"}),
            json!({"command": "npx", "args": ["x"]}),
            json!({"url": 3}),
        ] {
            assert!(route(&entry, &r).is_none(), "{entry}");
            assert!(unroute(&entry).is_none(), "{entry}");
        }
        // An entry that authenticates to the server itself stays direct.
        for own in [
            json!({"url": "https://mcp.example.com/mcp", "headers": {"Authorization": "Bearer x"}}),
            json!({"url": "https://mcp.example.com/mcp", "headers": {"X-Api-Key": "x"}}),
            json!({"url": "https://mcp.example.com/mcp", "bearer_token_env_var": "DOCS_TOKEN"}),
        ] {
            assert!(
                route(&own, &r).unwrap().unwrap_err().contains("credential"),
                "{own}"
            );
        }
        let harmless =
            json!({"url": "https://mcp.example.com/mcp", "headers": {"X-Client": "ide"}});
        assert!(route(&harmless, &r).unwrap().is_ok());
        // The upstream speaks Streamable HTTP; an SSE entry cannot use its route.
        let wrong = json!({"type": "sse", "url": "https://mcp.example.com/mcp"});
        assert!(route(&wrong, &r).unwrap().unwrap_err().contains("docs"));
    }
}
