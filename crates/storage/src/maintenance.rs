//! One-time maintenance tasks (data upgrades), recorded once done.

use async_trait::async_trait;
use provisioner_core::StoreError;
use provisioner_core::model::Timestamp;
use provisioner_core::ports::MaintenanceStore;

use crate::SqlStore;
use crate::error::backend;
use crate::rows::ms;

#[async_trait]
impl MaintenanceStore for SqlStore {
    #[tracing::instrument(level = "debug", skip_all, fields(maintenance.name = %name))]
    async fn maintenance_done(&self, name: &str) -> Result<bool, StoreError> {
        let found: Option<String> =
            sqlx::query_scalar("SELECT name FROM maintenance WHERE name = $1")
                .bind(name.to_owned())
                .fetch_optional(self.pool())
                .await
                .map_err(backend("reading a maintenance record"))?;
        Ok(found.is_some())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(maintenance.name = %name))]
    async fn record_maintenance(&self, name: &str, at: Timestamp) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO maintenance (name, done_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name.to_owned())
        .bind(ms(at))
        .execute(self.pool())
        .await
        .map_err(backend("recording a maintenance task"))?;
        Ok(())
    }
}
