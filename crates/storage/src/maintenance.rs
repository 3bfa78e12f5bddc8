//! One-time maintenance tasks (data upgrades), recorded once done.

use async_trait::async_trait;
use provisioner_core::StoreError;
use provisioner_core::model::Timestamp;
use provisioner_core::ports::MaintenanceStore;

use crate::error::{backend, retrying};
use crate::rows::ms;
use crate::{Backend, SqlStore};

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

impl SqlStore {
    /// Claims the periodic work `name` for `holder` for `ttl` (on the database's clock, the
    /// one clock all replicas share): taken when free, lapsed, or already `holder`'s (which
    /// renews it). `false` when another holder has it: that replica does the work.
    #[tracing::instrument(level = "debug", skip_all, fields(claim.name = %name))]
    pub async fn claim_periodic(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let now = match self.backend() {
            Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)",
            Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS BIGINT)",
        };
        let sql = format!(
            "INSERT INTO periodic_claims (name, holder, until_us) VALUES ($1, $2, {now} + $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_us = excluded.until_us \
             WHERE periodic_claims.holder = excluded.holder OR periodic_claims.until_us <= {now} \
             RETURNING holder"
        );
        let ttl_us = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX / 2);
        let won: Option<String> = retrying(|| {
            let sql = sql.clone();
            async move {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(name.to_owned())
                    .bind(holder.to_owned())
                    .bind(ttl_us)
                    .fetch_optional(self.pool())
                    .await
                    .map_err(backend("claiming periodic work"))
            }
        })
        .await?;
        Ok(won.is_some())
    }
}
