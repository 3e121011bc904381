//! Secrets of the deployment as a whole (not of a tenant), shared by every process on the store.

use sqlx::Row;

use super::{Store, StoreError, now_ms};

/// Length of a deployment secret (bytes).
const SECRET_LEN: usize = 32;

/// The name of the secret collectors derive their QUIC keys from.
pub(crate) const QUIC_SECRET: &str = "quic";

impl Store {
    /// The deployment secret `name`: random, created by the first process that asks, the same
    /// for every process on the store afterwards (a concurrent creation keeps the first one).
    pub(crate) async fn deployment_secret(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        let mut fresh = [0u8; SECRET_LEN];
        aws_lc_rs::rand::fill(&mut fresh)
            .map_err(|_| StoreError::Invalid("the system random generator failed".into()))?;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO deployment_secrets (name, secret, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(hex::encode(fresh))
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let stored: String = sqlx::query("SELECT secret FROM deployment_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?
            .try_get("secret")?;
        tx.commit().await?;
        hex::decode(&stored)
            .ok()
            .filter(|s| s.len() >= SECRET_LEN)
            .ok_or_else(|| StoreError::Invalid(format!("deployment secret {name:?} is malformed")))
    }
}
