//! The service layer: every change an operator makes, through the API or `agent-bom admin`,
//! validated, made and audited in one database transaction.
//!
//! Each function validates its input, makes the change with the store's `…_in` methods on one
//! write transaction ([`crate::store::Tx`]), appends the audit entry on the same transaction as
//! its last step, and commits: the change and its entry commit together or not at all. The API
//! handlers (parse, authorize, call, render) and the `agent-bom admin` commands (parse, call,
//! print) call the same functions, so both write the same audit record. The store keeps the SQL;
//! reads need no service and go to the store directly.

pub mod audit;
pub mod commands;
pub mod endpoints;
pub mod enrollment;
pub mod gateway;
pub mod keys;
pub mod policy;
pub mod releases;
pub mod tenants;

use serde_json::Value;

use crate::permissions::Grant;
use crate::store::audit::NewEntry;
use crate::store::{Store, StoreError, Tx};

/// Errors of the service layer.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is not valid (an unknown scope, a lifetime out of range, ...).
    #[error("{0}")]
    Invalid(String),
    /// The actor may not do this (e.g. a key that is not super-admin creating one that is).
    #[error("{0}")]
    Forbidden(String),
    /// The store refused the change or failed; nothing was committed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ServiceError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::Query(e))
    }
}

/// Who acts: the name the audit log records, the tenant the actor belongs to (if any), and
/// whether it may manage tenants and super-admin keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    name: String,
    home_tenant: Option<String>,
    super_admin: bool,
    /// What the actor's credential may do; `None` for the operator at the store (CLI,
    /// bootstrap, the rollout driver), who is not limited by a key.
    grant: Option<Grant>,
}

impl Actor {
    /// The operator with the store at hand (`agent-bom admin`, `agent-bom up`): recorded as
    /// `cli`, outside every tenant, allowed everything.
    pub fn cli() -> Self {
        Self {
            name: "cli".into(),
            home_tenant: None,
            super_admin: true,
            grant: None,
        }
    }

    /// First start on an empty store: recorded as `bootstrap`.
    pub fn bootstrap() -> Self {
        Self {
            name: "bootstrap".into(),
            home_tenant: None,
            super_admin: true,
            grant: None,
        }
    }

    /// The rollout driver of `agent-bom serve` (offers, automatic halts and advances): recorded
    /// as `rollout`, in the chain of the tenant it acts on.
    pub fn rollout() -> Self {
        Self {
            name: "rollout".into(),
            home_tenant: None,
            super_admin: false,
            grant: None,
        }
    }

    /// An authenticated caller of tenant `tenant_id`, recorded as `name` (`key:<prefix>`,
    /// `oidc:<subject>`; never a secret), holding `grant`. `super_admin`: it may manage
    /// tenants and super-admin keys.
    pub fn member(
        name: impl Into<String>,
        tenant_id: &str,
        super_admin: bool,
        grant: Grant,
    ) -> Self {
        Self {
            name: name.into(),
            home_tenant: Some(tenant_id.to_string()),
            super_admin,
            grant: Some(grant),
        }
    }

    /// The name the audit log records.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True when the actor may manage tenants and super-admin keys.
    pub fn is_super_admin(&self) -> bool {
        self.super_admin
    }

    /// The audit chain an action on `tenant_id` is recorded in: the actor's own tenant, where
    /// it has one (a super-admin acting on another tenant leaves the trace in its own), else the
    /// tenant acted on.
    fn chain<'a>(&'a self, tenant_id: &'a str) -> &'a str {
        self.home_tenant.as_deref().unwrap_or(tenant_id)
    }

    /// Refuse unless the actor's own grant covers `wanted` (role and scopes); `what` completes
    /// "this caller may not". Actors without a key are not limited.
    fn require_covers(&self, wanted: &Grant, what: &str) -> Result<(), ServiceError> {
        match &self.grant {
            Some(own) if !own.covers(wanted) => Err(ServiceError::Forbidden(format!(
                "this caller may not {what}: role {} with scopes [{}] is more than its own (role {}, scopes [{}])",
                wanted.role.as_str(),
                wanted.scopes.join(", "),
                own.role.as_str(),
                own.scopes.join(", "),
            ))),
            _ => Ok(()),
        }
    }

    /// Refuse unless the actor is a super-admin; `what` completes "only a super-admin key may".
    fn require_super_admin(&self, what: &str) -> Result<(), ServiceError> {
        if self.super_admin {
            Ok(())
        } else {
            Err(ServiceError::Forbidden(format!(
                "only a super-admin key may {what}"
            )))
        }
    }
}

/// Append the audit entry of a change made on `tx`, in the chain `actor` records actions on
/// `tenant_id` in. The last step before the commit.
async fn record(
    store: &Store,
    tx: &mut Tx,
    actor: &Actor,
    tenant_id: &str,
    action: &str,
    target: &str,
    detail: Value,
) -> Result<(), ServiceError> {
    store
        .append_audit_in(
            tx,
            actor.chain(tenant_id),
            actor.name(),
            action,
            target,
            detail,
        )
        .await?;
    Ok(())
}

/// The audit entry of a change a group-commit writer makes (the writer appends it in the commit
/// that holds the change): the chain `actor` records actions on `tenant_id` in, and the entry.
fn batched_entry(
    actor: &Actor,
    tenant_id: &str,
    action: &str,
    target: &str,
    detail: Value,
) -> (String, NewEntry) {
    let entry = NewEntry {
        actor: actor.name().to_string(),
        action: action.to_string(),
        target: target.to_string(),
        detail,
    };
    (actor.chain(tenant_id).to_string(), entry)
}
