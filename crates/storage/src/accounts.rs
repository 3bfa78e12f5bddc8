//! What the service learns per upstream account (the `learn` policy of `auto_key_check`).

use async_trait::async_trait;
use provisioner_core::StoreError;
use provisioner_core::model::{AutoKeyLearning, Timestamp};
use provisioner_core::ports::AccountStore;

use crate::SqlStore;
use crate::error::{backend, retrying};
use crate::rows::{ms, time};

#[async_trait]
impl AccountStore for SqlStore {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn auto_key_learning(&self, account: &str) -> Result<AutoKeyLearning, StoreError> {
        let row: Option<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT auto_key_clean_checks, auto_key_last_seen_at FROM upstream_accounts \
             WHERE account = $1",
        )
        .bind(account.to_owned())
        .fetch_optional(self.pool())
        .await
        .map_err(backend("reading what was learnt about an upstream account"))?;
        let Some((clean_checks, seen)) = row else {
            return Ok(AutoKeyLearning::default());
        };
        Ok(AutoKeyLearning {
            clean_checks,
            last_seen_at: seen
                .map(|t| time("upstream_accounts", "auto_key_last_seen_at", t))
                .transpose()?,
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(found))]
    async fn record_auto_key_check(
        &self,
        account: &str,
        found: bool,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        // One statement: concurrent records (other replicas, other tenants on the account)
        // never lose a sighting; a sighting always wins over a clean check.
        let sql = if found {
            "INSERT INTO upstream_accounts (account, auto_key_clean_checks, auto_key_last_seen_at) \
             VALUES ($1, 0, $2) ON CONFLICT (account) DO UPDATE \
             SET auto_key_clean_checks = 0, auto_key_last_seen_at = $2"
        } else {
            "INSERT INTO upstream_accounts (account, auto_key_clean_checks) VALUES ($1, 1) \
             ON CONFLICT (account) DO UPDATE \
             SET auto_key_clean_checks = upstream_accounts.auto_key_clean_checks + 1"
        };
        retrying(|| async move {
            let q = sqlx::query(sql).bind(account.to_owned());
            let q = if found { q.bind(ms(at)) } else { q };
            q.execute(self.pool()).await.map_err(backend(
                "recording what was learnt about an upstream account",
            ))?;
            Ok(())
        })
        .await
    }
}
