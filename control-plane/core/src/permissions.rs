//! The one permission matrix: what each role may do. The API checks it on every route, the
//! service layer when a key is created or rotated (a key never gets more than its creator), and
//! `docs/roles.md` is generated from it.

use crate::store::Role;

/// What a request may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Read endpoints, their inventory and the server view.
    FleetRead,
    /// Change endpoint lifecycle and metadata; delete endpoints.
    FleetWrite,
    /// Push inventory through the agent-bom compatible `/v1/fleet/sync`.
    FleetSync,
    /// Read posture counts.
    PostureRead,
    /// List the tenant's API keys (metadata only).
    KeysRead,
    /// Create, rotate and revoke the tenant's API keys.
    KeysWrite,
    /// Read and verify the audit log.
    AuditRead,
    /// Download signed exports of the audit log and the fleet.
    AuditExport,
    /// Create and list tenants, set quotas (super-admin keys only).
    TenantsAdmin,
    /// Read the proxy policy and its revisions.
    PolicyRead,
    /// Publish a new proxy policy revision to the fleet.
    PolicyWrite,
    /// Call upstream MCP servers through the gateway (`/mcp/{upstream}`).
    GatewayUse,
}

impl Permission {
    /// Every permission, in documentation order.
    pub const ALL: [Permission; 12] = [
        Self::FleetRead,
        Self::FleetWrite,
        Self::FleetSync,
        Self::PostureRead,
        Self::KeysRead,
        Self::KeysWrite,
        Self::AuditRead,
        Self::AuditExport,
        Self::TenantsAdmin,
        Self::PolicyRead,
        Self::PolicyWrite,
        Self::GatewayUse,
    ];

    /// The scope name (also what a key's `scopes` list contains).
    pub fn name(self) -> &'static str {
        match self {
            Self::FleetRead => "fleet:read",
            Self::FleetWrite => "fleet:write",
            Self::FleetSync => "fleet:sync",
            Self::PostureRead => "posture:read",
            Self::KeysRead => "keys:read",
            Self::KeysWrite => "keys:write",
            Self::AuditRead => "audit:read",
            Self::AuditExport => "audit:export",
            Self::TenantsAdmin => "tenants:admin",
            Self::PolicyRead => "policy:read",
            Self::PolicyWrite => "policy:write",
            Self::GatewayUse => "gateway:use",
        }
    }

    /// Parse a scope name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }

    /// One line on what the permission allows (the generated docs).
    pub fn describe(self) -> &'static str {
        match self {
            Self::FleetRead => "read endpoints, their inventory and the fleet-wide server view",
            Self::FleetWrite => "change endpoint lifecycle state and metadata; delete endpoints",
            Self::FleetSync => "push inventory with `agent-bom fleet sync` (`POST /v1/fleet/sync`)",
            Self::PostureRead => "read posture counts and the deployment mode",
            Self::KeysRead => "list the tenant's API keys (metadata only)",
            Self::KeysWrite => "create, rotate and revoke the tenant's API keys",
            Self::AuditRead => "query and verify the audit log",
            Self::AuditExport => "download signed NDJSON exports of the audit log and the fleet",
            Self::TenantsAdmin => {
                "create and list tenants, set quotas (admin keys with the super-admin flag)"
            }
            Self::PolicyRead => "read the MCP proxy policy, its revisions and its rollout",
            Self::PolicyWrite => "publish a new MCP proxy policy revision to every agent",
            Self::GatewayUse => {
                "call upstream MCP servers through the gateway (give machine keys only this scope)"
            }
        }
    }
}

/// The permission matrix: for each permission, whether admin, analyst and viewer have it.
pub const ROLE_MATRIX: [(Permission, [bool; 3]); 12] = [
    (Permission::FleetRead, [true, true, true]),
    (Permission::FleetWrite, [true, false, false]),
    (Permission::FleetSync, [true, true, false]),
    (Permission::PostureRead, [true, true, true]),
    (Permission::KeysRead, [true, true, false]),
    (Permission::KeysWrite, [true, false, false]),
    (Permission::AuditRead, [true, true, false]),
    (Permission::AuditExport, [true, true, false]),
    // Also needs the key's super-admin flag.
    (Permission::TenantsAdmin, [true, false, false]),
    (Permission::PolicyRead, [true, true, true]),
    (Permission::PolicyWrite, [true, false, false]),
    (Permission::GatewayUse, [true, true, false]),
];

/// Whether `role` has `permission` (before scopes and the super-admin flag).
pub fn role_allows(role: Role, permission: Permission) -> bool {
    let column = match role {
        Role::Admin => 0,
        Role::Analyst => 1,
        Role::Viewer => 2,
    };
    ROLE_MATRIX
        .iter()
        .find(|(p, _)| *p == permission)
        .is_some_and(|(_, roles)| roles[column])
}
