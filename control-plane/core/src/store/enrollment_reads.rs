//! What an enrollment reads once per group-commit batch (see `writer` and `collector`): its
//! token's row, locked until the batch commits, and its tenant's policy in force, read under
//! the tenant's policy lock. The batch's later enrollments with the same token or in the same
//! tenant reuse them: while the locks are held nothing can change what a fresh read would
//! return (a revocation waits for the commit). Forgotten when a job's savepoint is rolled
//! back, which releases the locks taken inside it.

use std::collections::HashMap;

/// An enrollment token as an enrollment checks it.
#[derive(Debug, Clone)]
pub(crate) struct TokenRow {
    pub(crate) id: String,
    pub(crate) tenant_id: String,
    pub(crate) secret_hash: String,
    pub(crate) expires_at: Option<i64>,
    pub(crate) revoked_at: Option<i64>,
    /// The endpoint a re-enroll token replaces (set when the token is made, never after).
    pub(crate) replaces_endpoint_id: Option<String>,
}

/// A batch's reads for its enrollments.
#[derive(Debug, Default)]
pub(crate) struct EnrollmentReads {
    /// Token rows by prefix, locked in this batch.
    tokens: HashMap<String, TokenRow>,
    /// Policy in force (revision, body) by tenant, its lock held in this batch.
    policies: HashMap<String, Option<(i64, String)>>,
}

impl EnrollmentReads {
    pub(crate) fn token(&self, prefix: &str) -> Option<&TokenRow> {
        self.tokens.get(prefix)
    }

    pub(crate) fn keep_token(&mut self, prefix: &str, row: TokenRow) {
        self.tokens.insert(prefix.to_string(), row);
    }

    pub(crate) fn policy(&self, tenant_id: &str) -> Option<&Option<(i64, String)>> {
        self.policies.get(tenant_id)
    }

    pub(crate) fn keep_policy(&mut self, tenant_id: &str, policy: Option<(i64, String)>) {
        self.policies.insert(tenant_id.to_string(), policy);
    }
}

/// Which tenant each enrollment token (by prefix) belongs to, as this process found them: an
/// enrollment is queued scoped to its token's tenant, so its statements need no switch to the
/// credential-lookup scope and back. A token never changes tenant; the job still reads the
/// token in that tenant and falls back to the lookup when it is not there. Bounded: beyond
/// [`MAX_TOKENS`] tokens are not remembered (their enrollments take the lookup).
#[derive(Debug, Clone, Default)]
pub(crate) struct TokenTenants(std::sync::Arc<std::sync::RwLock<HashMap<String, String>>>);

/// Tokens remembered at most.
const MAX_TOKENS: usize = 10_000;

impl TokenTenants {
    pub(crate) fn of(&self, prefix: &str) -> Option<String> {
        self.0.read().ok()?.get(prefix).cloned()
    }

    pub(crate) fn remember(&self, prefix: &str, tenant_id: &str) {
        if let Ok(mut map) = self.0.write()
            && (map.len() < MAX_TOKENS || map.contains_key(prefix))
        {
            map.insert(prefix.to_string(), tenant_id.to_string());
        }
    }
}
