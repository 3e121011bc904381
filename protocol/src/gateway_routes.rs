//! Where the tenant's MCP gateway serves each remote MCP server: the gateway's public URL and its
//! upstream routes, as the control plane sends them to agents (the `gateway` key of the
//! `settings` command). The agent's `wrap` rewrites a client's remote entry whose URL is an
//! upstream's URL to that upstream's route on the gateway, `{url}/mcp/{name}` (`/sse` appended
//! for an HTTP+SSE upstream), and leaves entries that match no upstream alone.

use serde::{Deserialize, Serialize};

use crate::Transport;
use crate::agent_url::{MAX_URL_LEN, check_download_url};

/// Most routes one `gateway` setting may carry (the control plane's per-tenant upstream cap).
pub const MAX_ROUTES: usize = 256;
/// Longest upstream name (the gateway's route names).
pub const MAX_ROUTE_NAME: usize = 64;

/// How the gateway speaks to an upstream, which decides the route's path and which client
/// entries may use it (an SSE client entry cannot talk to a Streamable HTTP route).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouteTransport {
    /// MCP Streamable HTTP: `/mcp/{name}`.
    #[default]
    #[serde(rename = "streamable-http")]
    StreamableHttp,
    /// The older HTTP+SSE transport: `/mcp/{name}/sse`.
    #[serde(rename = "sse")]
    Sse,
}

impl RouteTransport {
    /// The inventory transport a client entry must have to use this route.
    pub fn transport(self) -> Transport {
        match self {
            Self::StreamableHttp => Transport::StreamableHttp,
            Self::Sse => Transport::Sse,
        }
    }
}

/// One upstream of the tenant's gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayRoute {
    /// The route name (`/mcp/{name}`): 1-64 of `a-z 0-9 - _`.
    pub name: String,
    /// The upstream's own URL, as client configs name it.
    pub url: String,
    /// How the gateway speaks to it.
    #[serde(default)]
    pub transport: RouteTransport,
}

/// The tenant's gateway as agents see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayRoutes {
    /// The gateway's public base URL (`https://`, or `http://` to a loopback host).
    pub url: String,
    /// Its upstreams.
    #[serde(default)]
    pub upstreams: Vec<GatewayRoute>,
}

impl GatewayRoutes {
    /// Check what an agent will act on: a base URL without credentials, query or fragment;
    /// unique valid route names; `http(s)://` upstream URLs.
    pub fn validate(&self) -> Result<(), String> {
        check_download_url(&self.url).map_err(|e| format!("gateway {e}"))?;
        if self.url.contains(['?', '#']) {
            return Err("gateway url must not have a query or fragment".into());
        }
        if self.upstreams.len() > MAX_ROUTES {
            return Err(format!("gateway has more than {MAX_ROUTES} upstreams"));
        }
        let mut names = std::collections::HashSet::new();
        for route in &self.upstreams {
            if !is_route_name(&route.name) {
                return Err(format!(
                    "gateway upstream name {:?} must be 1-{MAX_ROUTE_NAME} of a-z 0-9 - _",
                    route.name
                ));
            }
            if !names.insert(route.name.as_str()) {
                return Err(format!("gateway upstream {:?} is listed twice", route.name));
            }
            if endpoint_key(&route.url).is_none() || route.url.len() > MAX_URL_LEN {
                return Err(format!(
                    "gateway upstream {:?} needs an http:// or https:// url",
                    route.name
                ));
            }
        }
        Ok(())
    }

    /// The upstream a client entry's URL names, when there is one.
    pub fn route_for(&self, url: &str) -> Option<&GatewayRoute> {
        let key = endpoint_key(url)?;
        self.upstreams
            .iter()
            .find(|r| endpoint_key(&r.url).as_deref() == Some(key.as_str()))
    }

    /// The gateway URL clients use for `route`.
    pub fn route_url(&self, route: &GatewayRoute) -> String {
        let base = self.url.trim_end_matches('/');
        match route.transport {
            RouteTransport::StreamableHttp => format!("{base}/mcp/{}", route.name),
            RouteTransport::Sse => format!("{base}/mcp/{}/sse", route.name),
        }
    }
}

/// True for a gateway route name.
pub fn is_route_name(name: &str) -> bool {
    (1..=MAX_ROUTE_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// What makes two URLs the same MCP endpoint: scheme and host compared without case, a default
/// port and a trailing `/` ignored, the query kept, the fragment dropped. `None` for anything
/// but `http(s)://`.
fn endpoint_key(url: &str) -> Option<String> {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => return None,
    };
    let rest = rest.split('#').next().unwrap_or(rest);
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(split);
    let authority = authority.to_ascii_lowercase();
    let authority = authority.strip_suffix(default_port).unwrap_or(&authority);
    if authority.is_empty() {
        return None;
    }
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    let mut key = format!("{scheme}://{authority}{}", path.trim_end_matches('/'));
    if let Some(q) = query {
        key.push('?');
        key.push_str(q);
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> GatewayRoutes {
        GatewayRoutes {
            url: "https://gw.example.com/".into(),
            upstreams: vec![
                GatewayRoute {
                    name: "github".into(),
                    url: "https://api.githubcopilot.com/mcp/".into(),
                    transport: RouteTransport::StreamableHttp,
                },
                GatewayRoute {
                    name: "legacy".into(),
                    url: "http://10.0.0.5:8080/sse".into(),
                    transport: RouteTransport::Sse,
                },
            ],
        }
    }

    #[test]
    fn matching_ignores_case_default_port_and_trailing_slash() {
        let r = routes();
        assert!(r.validate().is_ok());
        for same in [
            "https://api.githubcopilot.com/mcp",
            "HTTPS://API.githubcopilot.com:443/mcp/",
            "https://api.githubcopilot.com/mcp#x",
        ] {
            assert_eq!(r.route_for(same).map(|r| r.name.as_str()), Some("github"));
        }
        for other in [
            "https://api.githubcopilot.com/mcp/x",
            "https://api.githubcopilot.com:8443/mcp",
            "http://api.githubcopilot.com/mcp",
            "https://api.githubcopilot.com/mcp?v=2",
            "ws://api.githubcopilot.com/mcp",
            "not a url",
        ] {
            assert!(r.route_for(other).is_none(), "{other}");
        }
        assert_eq!(
            r.route_url(&r.upstreams[0]),
            "https://gw.example.com/mcp/github"
        );
        assert_eq!(
            r.route_url(&r.upstreams[1]),
            "https://gw.example.com/mcp/legacy/sse"
        );
    }

    #[test]
    fn bad_settings_are_refused_with_a_reason() {
        let with = |f: &dyn Fn(&mut GatewayRoutes)| {
            let mut r = routes();
            f(&mut r);
            r.validate().unwrap_err()
        };
        assert!(with(&|r| r.url = "http://gw.example.com".into()).contains("https"));
        assert!(with(&|r| r.url = "https://u:p@gw.example.com".into()).contains("credentials"));
        assert!(with(&|r| r.url = "https://gw.example.com/#x".into()).contains("fragment"));
        assert!(with(&|r| r.upstreams[0].name = "GitHub".into()).contains("a-z"));
        assert!(with(&|r| r.upstreams[1].name = "github".into()).contains("twice"));
        assert!(with(&|r| r.upstreams[0].url = "file:///etc".into()).contains("http"));
    }
}
