//! The upstream's request budget in the database ([`UpstreamBudget`]), so every replica on one
//! database spends one budget per account. Each reservation is one short transaction: lock the
//! account's row, read its recent grants and the database's clock (the one clock all replicas
//! share), apply core's sliding-window rule, write the grants back.

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use provisioner_core::StoreError;
use provisioner_core::budget::{Grant, Lane, next_grant, window_us};
use provisioner_core::ports::UpstreamBudget;

use crate::error::{backend, retrying};
use crate::{Backend, SqlStore};

#[async_trait]
impl UpstreamBudget for SqlStore {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn reserve(&self, account: &str, rate: u32, lane: Lane) -> Result<Grant, StoreError> {
        // Microseconds since the epoch on the database's clock (SQLite's has milliseconds).
        let now = match self.backend() {
            Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)",
            Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS BIGINT)",
        };
        // The upsert takes the row's lock (and, on SQLite, the write lock) before reading, so
        // concurrent reservations on one account queue here and each sees the last one's grant.
        let lock = format!(
            "INSERT INTO upstream_budget (account, grants) VALUES ($1, '') \
             ON CONFLICT (account) DO UPDATE SET grants = upstream_budget.grants \
             RETURNING grants, {now}"
        );
        retrying(|| {
            let lock = lock.clone();
            async move {
                let mut tx = self.begin_write().await?;
                if self.backend() == Backend::Postgres {
                    // Never queue long behind a holder that stalled (it gives up, or its
                    // transaction is ended for it), and do not wait for the disk: a grant lost
                    // in a database crash costs at most one window's worth.
                    sqlx::raw_sql(
                        "SET LOCAL lock_timeout = '1s'; \
                         SET LOCAL idle_in_transaction_session_timeout = '5s'; \
                         SET LOCAL synchronous_commit = off",
                    )
                    .execute(&mut *tx)
                    .await
                    .map_err(backend("reading the upstream budget"))?;
                }
                // The database's clock is read somewhere within this round trip.
                let sent = tokio::time::Instant::now();
                let (grants, now): (String, i64) = sqlx::query_as(sqlx::AssertSqlSafe(lock))
                    .bind(account.to_owned())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(backend("reading the upstream budget"))?;
                let read = tokio::time::Instant::now();
                // A value that does not parse is forgotten: the window restarts (at worst one
                // window's worth too many, never a stuck account).
                let mut recent: VecDeque<i64> = grants
                    .split(',')
                    .filter_map(|g| g.trim().parse().ok())
                    .collect();
                let grant = next_grant(&mut recent, now, rate, window_us(), lane);
                let grants = recent
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
                sqlx::query("UPDATE upstream_budget SET grants = $2 WHERE account = $1")
                    .bind(account.to_owned())
                    .bind(grants)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend("spending the upstream budget"))?;
                tx.commit()
                    .await
                    .map_err(backend("spending the upstream budget"))?;
                // Mapped from the latest moment the clock could have been read: a request
                // sent then is late by at most `doubt`, never early.
                Ok(Grant {
                    at: read
                        + Duration::from_micros(
                            u64::try_from(grant.saturating_sub(now)).unwrap_or(0),
                        ),
                    doubt: read - sent,
                })
            }
        })
        .await
    }
}
