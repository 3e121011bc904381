//! Mode-aware navigation: which sections apply to a tenant, derived from `/v1/posture/counts`
//! (its `deployment_mode` and `has_*` surfaces) and the caller's permissions from `/v1/me`.
//! A section that does not apply is left out of the menu; a direct link to it shows an empty
//! state that says what would enable it.

use agent_bom_protocol::deployment::DeploymentMode;
use serde_json::Value;

/// One section of the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Overview,
    Fleet,
    Servers,
    Runtime,
    Policies,
    Audit,
    Enrollment,
    Keys,
    Tenants,
}

/// Whether a section is offered to this caller in this tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Availability {
    Shown,
    /// Does not apply to the tenant yet: what would enable it, and how.
    NotApplicable {
        why: &'static str,
        how: &'static str,
    },
    /// The caller's role or scopes lack the permission.
    Forbidden {
        permission: &'static str,
    },
}

impl Section {
    /// Menu order.
    pub(crate) const ALL: [Section; 9] = [
        Self::Overview,
        Self::Fleet,
        Self::Servers,
        Self::Runtime,
        Self::Policies,
        Self::Audit,
        Self::Enrollment,
        Self::Keys,
        Self::Tenants,
    ];

    /// Where the section lives.
    pub(crate) fn path(self) -> &'static str {
        match self {
            Self::Overview => "/ui/",
            Self::Fleet => "/ui/fleet",
            Self::Servers => "/ui/servers",
            Self::Runtime => "/ui/runtime",
            Self::Policies => "/ui/policies",
            Self::Audit => "/ui/audit",
            Self::Enrollment => "/ui/enrollment",
            Self::Keys => "/ui/keys",
            Self::Tenants => "/ui/tenants",
        }
    }

    /// Menu label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Overview => "Overview",
            Self::Fleet => "Fleet",
            Self::Servers => "MCP servers",
            Self::Runtime => "Runtime",
            Self::Policies => "Policies",
            Self::Audit => "Audit",
            Self::Enrollment => "Enrollment",
            Self::Keys => "API keys",
            Self::Tenants => "Tenants",
        }
    }

    /// The permission the section's main read needs.
    fn permission(self) -> &'static str {
        match self {
            Self::Overview => "posture:read",
            Self::Fleet | Self::Servers | Self::Runtime | Self::Enrollment => "fleet:read",
            Self::Policies => "policy:read",
            Self::Audit => "audit:read",
            Self::Keys => "keys:read",
            Self::Tenants => "tenants:admin",
        }
    }

    /// Whether the section applies to a tenant with these posture counts, for a caller with
    /// these permissions.
    pub(crate) fn availability(self, posture: &Value, permissions: &[&str]) -> Availability {
        if !permissions.contains(&self.permission()) {
            return Availability::Forbidden {
                permission: self.permission(),
            };
        }
        let mode = mode_of(posture);
        let has = |k: &str| posture[k].as_bool().unwrap_or(false);
        // Remote servers exist that the gateway could front (whether or not one serves yet).
        let remote = posture["remote_servers"].as_i64().unwrap_or(0) > 0;
        let endpoints = matches!(mode, DeploymentMode::Fleet | DeploymentMode::Hybrid);
        match self {
            Self::Overview | Self::Audit | Self::Enrollment | Self::Keys | Self::Tenants => {
                Availability::Shown
            }
            Self::Fleet if endpoints => Availability::Shown,
            Self::Fleet => Availability::NotApplicable {
                why: "No endpoint reports to this tenant: the fleet view lists machines running the agent or pushing with agent-bom fleet sync.",
                how: "Enroll an agent (see Enrollment) or push an inventory with `agent-bom fleet sync --url <this control plane>`.",
            },
            Self::Servers if mode != DeploymentMode::Local => Availability::Shown,
            Self::Servers => Availability::NotApplicable {
                why: "No MCP server has been reported to this tenant yet.",
                how: "Enroll an agent or push an inventory; servers appear here grouped by identity.",
            },
            Self::Runtime
                if has("has_proxy") || has("has_traces") || has("has_gateway") || remote =>
            {
                Availability::Shown
            }
            Self::Runtime => Availability::NotApplicable {
                why: "No runtime surface exists: no server runs behind the inspecting proxy and no remote server could be fronted by the gateway.",
                how: "Wrap local servers with the proxy (`agent-bom-agent wrap`, or the Wrap action on the Fleet page), or put remote servers behind `agent-bom gateway`; detections and pin changes then show here.",
            },
            Self::Policies if endpoints => Availability::Shown,
            Self::Policies => Availability::NotApplicable {
                why: "The proxy policy is delivered to endpoint agents, and none reports to this tenant.",
                how: "Enroll agents (see Enrollment); the policy published here then rolls out to them.",
            },
        }
    }
}

/// The tenant's deployment mode from posture counts (local when unknown).
pub(crate) fn mode_of(posture: &Value) -> DeploymentMode {
    serde_json::from_value(posture["deployment_mode"].clone()).unwrap_or(DeploymentMode::Local)
}

/// The permissions listed by `/v1/me`.
pub(crate) fn permissions(me: &Value) -> Vec<&str> {
    me["permissions"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ALL_PERMS: &[&str] = &[
        "fleet:read",
        "posture:read",
        "policy:read",
        "audit:read",
        "keys:read",
        "tenants:admin",
    ];

    fn shown(posture: Value) -> Vec<Section> {
        Section::ALL
            .into_iter()
            .filter(|s| s.availability(&posture, ALL_PERMS) == Availability::Shown)
            .collect()
    }

    #[test]
    fn navigation_follows_the_mode() {
        use Section::*;
        assert_eq!(
            shown(json!({"deployment_mode": "local"})),
            [Overview, Audit, Enrollment, Keys, Tenants]
        );
        assert_eq!(
            shown(json!({"deployment_mode": "fleet"})),
            [
                Overview, Fleet, Servers, Policies, Audit, Enrollment, Keys, Tenants
            ]
        );
        assert_eq!(
            shown(json!({"deployment_mode": "cluster", "has_gateway": true})),
            [Overview, Servers, Runtime, Audit, Enrollment, Keys, Tenants]
        );
        assert_eq!(
            shown(json!({"deployment_mode": "hybrid", "has_proxy": true})),
            Section::ALL
        );
        assert_eq!(
            shown(json!({"deployment_mode": "fleet", "remote_servers": 2})),
            [
                Overview, Fleet, Servers, Runtime, Policies, Audit, Enrollment, Keys, Tenants
            ],
            "remote servers a gateway could front"
        );
    }

    #[test]
    fn a_viewer_sees_no_admin_sections() {
        let viewer = ["fleet:read", "posture:read", "policy:read"];
        let posture = json!({"deployment_mode": "fleet"});
        assert!(matches!(
            Section::Keys.availability(&posture, &viewer),
            Availability::Forbidden {
                permission: "keys:read"
            }
        ));
        assert!(matches!(
            Section::Tenants.availability(&posture, &viewer),
            Availability::Forbidden { .. }
        ));
        assert_eq!(
            Section::Fleet.availability(&posture, &viewer),
            Availability::Shown
        );
    }
}
