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

/// What one credential may do: a role, narrowed by scopes when it has any. The super-admin flag
/// is separate (it only adds tenant management) and checked on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The role.
    pub role: Role,
    /// Permission names the credential is limited to; empty means the whole role.
    pub scopes: Vec<String>,
}

impl Grant {
    /// A grant of `role`, limited to `scopes` when that is not empty.
    pub fn new(role: Role, scopes: &[String]) -> Self {
        Self {
            role,
            scopes: scopes.to_vec(),
        }
    }

    /// Whether the grant includes `permission` (before the super-admin flag).
    pub fn allows(&self, permission: Permission) -> bool {
        role_allows(self.role, permission)
            && (self.scopes.is_empty() || self.scopes.iter().any(|s| s == permission.name()))
    }

    /// Whether everything `other` may do, this grant may do too, and its role is not above
    /// this one's: a credential never creates or takes over one with more than it has.
    pub fn covers(&self, other: &Grant) -> bool {
        rank(self.role) >= rank(other.role)
            && Permission::ALL
                .into_iter()
                .all(|p| !other.allows(p) || self.allows(p))
    }
}

/// Roles in order of what they may do (the matrix gives a higher role every permission of a
/// lower one).
fn rank(role: Role) -> u8 {
    match role {
        Role::Viewer => 0,
        Role::Analyst => 1,
        Role::Admin => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scoped(role: Role, scopes: &[&str]) -> Grant {
        Grant::new(
            role,
            &scopes.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn a_grant_covers_only_what_it_has() {
        let admin = scoped(Role::Admin, &[]);
        let keys_writer = scoped(Role::Admin, &["keys:write"]);
        assert!(admin.covers(&keys_writer));
        assert!(
            !keys_writer.covers(&admin),
            "a scoped key cannot mint an unscoped one"
        );
        assert!(keys_writer.covers(&keys_writer));
        assert!(!keys_writer.covers(&scoped(Role::Viewer, &["fleet:read"])));
        assert!(!keys_writer.covers(&scoped(Role::Viewer, &[])));
        assert!(!scoped(Role::Analyst, &[]).covers(&scoped(Role::Admin, &["fleet:read"])));
        assert!(scoped(Role::Analyst, &[]).covers(&scoped(Role::Viewer, &[])));
        // Scopes a role does not have grant nothing, so they cover nothing either.
        assert!(!scoped(Role::Viewer, &["keys:write"]).allows(Permission::KeysWrite));
    }

    #[test]
    fn higher_roles_have_every_permission_of_lower_ones() {
        for p in Permission::ALL {
            assert!(!role_allows(Role::Viewer, p) || role_allows(Role::Analyst, p));
            assert!(!role_allows(Role::Analyst, p) || role_allows(Role::Admin, p));
        }
    }
}
