//! Bulk onboarding jobs and their items (core's [`JobStore`]).

use async_trait::async_trait;
use provisioner_core::StoreError;
use provisioner_core::ids::{ExternalId, TenantId};
use provisioner_core::jobs::{ItemOutcome, ItemStatus, Job, JobItem};
use provisioner_core::model::{AuditEvent, Lease, Timestamp};
use provisioner_core::ports::JobStore;
use sqlx::{Any, Transaction};

use crate::SqlStore;
use crate::audit::{commit_audited, insert_audit};
use crate::error::{backend, ctx, retrying};
use crate::rows::{ms, time};

/// Items per INSERT statement (7 values each: well under both backends' bind limits).
const INSERT_CHUNK: usize = 500;

#[derive(sqlx::FromRow)]
struct JobRow {
    id: String,
    tenant_id: String,
    status: String,
    total: i64,
    done: i64,
    failed: i64,
    cancelled: i64,
    cancel_requested: i64,
    created_by: String,
    request_id: Option<String>,
    created_at: i64,
    finished_at: Option<i64>,
}

impl TryFrom<JobRow> for Job {
    type Error = StoreError;

    fn try_from(r: JobRow) -> Result<Self, StoreError> {
        let row = "jobs";
        Ok(Job {
            tenant_id: TenantId::parse(&r.tenant_id)
                .map_err(|e| StoreError::Backend(format!("{row}.tenant_id: {e}")))?,
            status: r
                .status
                .parse()
                .map_err(|e| StoreError::Backend(format!("{row}.status: {e}")))?,
            id: r.id,
            total: r.total,
            done: r.done,
            failed: r.failed,
            cancelled: r.cancelled,
            cancel_requested: r.cancel_requested != 0,
            created_by: r.created_by,
            request_id: r.request_id,
            created_at: time(row, "created_at", r.created_at)?,
            finished_at: r
                .finished_at
                .map(|t| time(row, "finished_at", t))
                .transpose()?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ItemRow {
    job_id: String,
    idx: i64,
    tenant_id: String,
    external_id: String,
    request: String,
    status: String,
    error_code: Option<String>,
    error_detail: Option<String>,
    attempts: i64,
    next_attempt_at: Option<i64>,
}

impl TryFrom<ItemRow> for JobItem {
    type Error = StoreError;

    fn try_from(r: ItemRow) -> Result<Self, StoreError> {
        let row = "job_items";
        let bad = |field: &str, e: String| StoreError::Backend(format!("{row}.{field}: {e}"));
        Ok(JobItem {
            tenant_id: TenantId::parse(&r.tenant_id)
                .map_err(|e| bad("tenant_id", e.to_string()))?,
            external_id: ExternalId::parse(&r.external_id)
                .map_err(|e| bad("external_id", e.to_string()))?,
            request: serde_json::from_str(&r.request).map_err(|e| bad("request", e.to_string()))?,
            status: r
                .status
                .parse()
                .map_err(|e: provisioner_core::ParseError| bad("status", e.to_string()))?,
            job_id: r.job_id,
            idx: r.idx,
            error_code: r.error_code,
            error_detail: r.error_detail,
            attempts: r.attempts,
            next_attempt_at: r
                .next_attempt_at
                .map(|t| time(row, "next_attempt_at", t))
                .transpose()?,
        })
    }
}

const ITEM_COLUMNS: &str = "job_id, idx, tenant_id, external_id, request, status, error_code, \
     error_detail, attempts, next_attempt_at";

/// Ends the job when no item is pending: `cancelled` if a cancel was asked for, `failed` if an
/// item failed, `succeeded` otherwise. Run after the job row was updated in the same
/// transaction (PostgreSQL: that update's row lock orders concurrent finishers, so the last one
/// sees every other item settled).
async fn finish_if_done(
    tx: &mut Transaction<'static, Any>,
    job_id: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let ended = sqlx::query(
        "UPDATE jobs SET finished_at = $2, status = CASE WHEN cancel_requested = 1 THEN 'cancelled' \
         WHEN failed > 0 THEN 'failed' ELSE 'succeeded' END \
         WHERE id = $1 AND finished_at IS NULL \
           AND NOT EXISTS (SELECT 1 FROM job_items WHERE job_id = $1 AND status = 'pending')",
    )
    .bind(job_id.to_owned())
    .bind(ms(now))
    .execute(&mut **tx)
    .await
    .map_err(backend("ending a job"))?;
    if ended.rows_affected() > 0 {
        // Ended now: its `job.completed` webhook event, in the same transaction (the outbox).
        let job: Job = sqlx::query_as::<_, JobRow>("SELECT * FROM jobs WHERE id = $1")
            .bind(job_id.to_owned())
            .fetch_one(&mut **tx)
            .await
            .map_err(backend("reading a job that ended"))?
            .try_into()?;
        crate::webhooks::insert_outbox(&mut **tx, &[job.completed_event(now)]).await?;
    }
    Ok(())
}

#[async_trait]
impl JobStore for SqlStore {
    #[tracing::instrument(level = "debug", skip_all, fields(job.id = %job.id, items = items.len()))]
    async fn insert_job(
        &self,
        job: &Job,
        items: &[JobItem],
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let requests = items
            .iter()
            .map(|i| serde_json::to_string(&i.request))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Backend(format!("encoding a job item: {e}")))?;
        let requests = &requests;
        retrying(|| async move {
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO jobs (id, tenant_id, status, total, done, failed, cancelled, \
                 cancel_requested, created_by, request_id, created_at, finished_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(job.id.clone())
            .bind(job.tenant_id.as_str().to_owned())
            .bind(job.status.as_str())
            .bind(job.total)
            .bind(job.done)
            .bind(job.failed)
            .bind(job.cancelled)
            .bind(i64::from(job.cancel_requested))
            .bind(job.created_by.clone())
            .bind(job.request_id.clone())
            .bind(ms(job.created_at))
            .bind(job.finished_at.map(ms))
            .execute(&mut *tx)
            .await
            .map_err(ctx("inserting a job"))?;
            for (chunk, reqs) in items.chunks(INSERT_CHUNK).zip(requests.chunks(INSERT_CHUNK)) {
                let values: Vec<String> = (0..chunk.len())
                    .map(|n| {
                        let b = n * 7;
                        format!(
                            "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
                            b + 1,
                            b + 2,
                            b + 3,
                            b + 4,
                            b + 5,
                            b + 6,
                            b + 7
                        )
                    })
                    .collect();
                let sql = format!(
                    "INSERT INTO job_items (job_id, idx, tenant_id, external_id, request, status, attempts) \
                     VALUES {}",
                    values.join(", ")
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (i, req) in chunk.iter().zip(reqs) {
                    q = q
                        .bind(i.job_id.clone())
                        .bind(i.idx)
                        .bind(i.tenant_id.as_str().to_owned())
                        .bind(i.external_id.as_str().to_owned())
                        .bind(req.clone())
                        .bind(i.status.as_str())
                        .bind(i.attempts);
                }
                q.execute(&mut *tx)
                    .await
                    .map_err(ctx("inserting a job's users"))?;
            }
            insert_audit(&mut tx, audit).await?;
            commit_audited(tx, Some(audit), "committing a job").await?;
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn get_job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        sqlx::query_as::<_, JobRow>("SELECT * FROM jobs WHERE id = $1")
            .bind(id.to_owned())
            .fetch_optional(self.pool())
            .await
            .map_err(backend("reading a job"))?
            .map(Job::try_from)
            .transpose()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn list_jobs(
        &self,
        tenant: &TenantId,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        let rows = match before {
            Some(b) => sqlx::query_as::<_, JobRow>(
                "SELECT * FROM jobs WHERE tenant_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
            )
            .bind(tenant.as_str().to_owned())
            .bind(b.to_owned())
            .bind(i64::from(limit)),
            None => sqlx::query_as::<_, JobRow>(
                "SELECT * FROM jobs WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2",
            )
            .bind(tenant.as_str().to_owned())
            .bind(i64::from(limit)),
        }
        .fetch_all(self.pool())
        .await
        .map_err(backend("listing jobs"))?;
        rows.into_iter().map(Job::try_from).collect()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn job_errors(&self, id: &str, limit: u32) -> Result<Vec<JobItem>, StoreError> {
        // The request is not needed here: a row whose request does not read back is listed.
        let sql = "SELECT job_id, idx, tenant_id, external_id, '{}' AS request, status, \
             error_code, error_detail, attempts, next_attempt_at FROM job_items \
             WHERE job_id = $1 AND status = 'failed' ORDER BY idx LIMIT $2";
        let rows = sqlx::query_as::<_, ItemRow>(sqlx::AssertSqlSafe(sql))
            .bind(id.to_owned())
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await
            .map_err(backend("reading a job's errors"))?;
        rows.into_iter().map(JobItem::try_from).collect()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn claim_job_items(
        &self,
        lease: &Lease,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<JobItem>, StoreError> {
        retrying(|| async move {
            // One statement: the sub-select picks due items in batch order and locks them
            // (PostgreSQL, skipping those other claimers hold); the outer WHERE re-checks the
            // rule on the locked rows. An item not started (no lease) is skipped when its job
            // was cancelled; one whose lease expired was started and is finished regardless.
            // The pick is a materialized CTE: PostgreSQL may run an `IN (sub-select ... LIMIT n
            // FOR UPDATE SKIP LOCKED)` more than once and update more than `n` rows.
            let (materialized, lock) = match self.backend() {
                crate::Backend::Postgres => ("MATERIALIZED", "FOR UPDATE SKIP LOCKED"),
                crate::Backend::Sqlite => ("", ""),
            };
            let due = "status = 'pending' AND COALESCE(next_attempt_at, 0) <= $1 \
                 AND ((lease_owner IS NULL AND (attempts > 0 OR NOT EXISTS (SELECT 1 FROM jobs j \
                        WHERE j.id = job_items.job_id AND j.cancel_requested = 1))) \
                      OR (lease_owner IS NOT NULL AND lease_expires_at < $1))";
            let sql = format!(
                "WITH picked AS {materialized} ( \
                     SELECT job_id, idx FROM job_items WHERE {due} \
                     ORDER BY idx, job_id LIMIT $4 {lock}) \
                 UPDATE job_items SET lease_owner = $2, lease_expires_at = $3 \
                 WHERE (job_id, idx) IN (SELECT job_id, idx FROM picked) \
                   AND {due} \
                 RETURNING {ITEM_COLUMNS}"
            );
            let rows = sqlx::query_as::<_, ItemRow>(sqlx::AssertSqlSafe(sql))
                .bind(ms(now))
                .bind(lease.owner.clone())
                .bind(ms(lease.expires_at))
                .bind(i64::from(limit))
                .fetch_all(self.pool())
                .await
                .map_err(backend("claiming job items"))?;
            // A row that does not read back fails on its own; the others are worked on.
            let mut items = Vec::with_capacity(rows.len());
            for row in rows {
                let (job_id, idx) = (row.job_id.clone(), row.idx);
                match JobItem::try_from(row) {
                    Ok(item) => items.push(item),
                    Err(e) => {
                        tracing::warn!(error.message = %e, job.id = %job_id, idx, "a stored job item does not read back; failing it");
                        let failed = ItemOutcome::Failed {
                            code: "internal".into(),
                            detail: "the stored item does not read back".into(),
                        };
                        self.finish_job_item(&job_id, idx, &lease.owner, &failed, now)
                            .await?;
                    }
                }
            }
            items.sort_by(|a, b| (a.idx, &a.job_id).cmp(&(b.idx, &b.job_id)));
            Ok(items)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn renew_job_item(
        &self,
        job_id: &str,
        idx: i64,
        owner: &str,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE job_items SET lease_expires_at = $4 \
             WHERE job_id = $1 AND idx = $2 AND lease_owner = $3 AND status = 'pending'",
        )
        .bind(job_id.to_owned())
        .bind(idx)
        .bind(owner.to_owned())
        .bind(ms(expires_at))
        .execute(self.pool())
        .await
        .map_err(backend("renewing a job item's lease"))?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(job.id = %job_id, idx))]
    async fn finish_job_item(
        &self,
        job_id: &str,
        idx: i64,
        owner: &str,
        outcome: &ItemOutcome,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let (status, code, detail, retry_at, done, failed) = match outcome {
            ItemOutcome::Done => (ItemStatus::Done, None, None, None, 1_i64, 0_i64),
            ItemOutcome::Failed { code, detail } => (
                ItemStatus::Failed,
                Some(code.clone()),
                Some(detail.clone()),
                None,
                0,
                1,
            ),
            ItemOutcome::Retry {
                next_attempt_at,
                detail,
            } => (
                ItemStatus::Pending,
                None,
                Some(detail.clone()),
                Some(ms(*next_attempt_at)),
                0,
                0,
            ),
        };
        let retried = i64::from(retry_at.is_some());
        let (code, detail) = (&code, &detail);
        retrying(|| async move {
            let mut tx = self.begin_write().await?;
            let hit = sqlx::query(
                "UPDATE job_items SET status = $4, error_code = $5, error_detail = $6, \
                 attempts = attempts + $7, next_attempt_at = $8, lease_owner = NULL, \
                 lease_expires_at = NULL \
                 WHERE job_id = $1 AND idx = $2 AND lease_owner = $3 AND status = 'pending'",
            )
            .bind(job_id.to_owned())
            .bind(idx)
            .bind(owner.to_owned())
            .bind(status.as_str())
            .bind(code.clone())
            .bind(detail.clone())
            .bind(retried)
            .bind(retry_at)
            .execute(&mut *tx)
            .await
            .map_err(backend("recording a job item"))?;
            if hit.rows_affected() == 0 {
                return Err(StoreError::Stale);
            }
            // Always written (zero for a retry): its row lock orders concurrent finishers.
            sqlx::query("UPDATE jobs SET done = done + $2, failed = failed + $3 WHERE id = $1")
                .bind(job_id.to_owned())
                .bind(done)
                .bind(failed)
                .execute(&mut *tx)
                .await
                .map_err(backend("counting a job's users"))?;
            finish_if_done(&mut tx, job_id, now).await?;
            tx.commit()
                .await
                .map_err(backend("committing a job item"))?;
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(job.id = %id))]
    async fn cancel_job(
        &self,
        id: &str,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> Result<Option<Job>, StoreError> {
        let written = retrying(|| async move {
            let mut tx = self.begin_write().await?;
            // Only a running job: a cancel that arrives after the job ended changes nothing.
            let job = sqlx::query(
                "UPDATE jobs SET cancel_requested = 1 WHERE id = $1 AND finished_at IS NULL",
            )
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(backend("cancelling a job"))?;
            if job.rows_affected() == 0 {
                return Ok(false);
            }
            // Not started: never leased nor attempted (a user attempted before may hold an
            // intent that recovery finishes: its item is finished too).
            let n = sqlx::query(
                "UPDATE job_items SET status = 'cancelled' \
                 WHERE job_id = $1 AND status = 'pending' AND lease_owner IS NULL AND attempts = 0",
            )
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(backend("cancelling a job's users"))?
            .rows_affected();
            sqlx::query("UPDATE jobs SET cancelled = cancelled + $2 WHERE id = $1")
                .bind(id.to_owned())
                .bind(i64::try_from(n).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await
                .map_err(backend("counting a job's cancelled users"))?;
            finish_if_done(&mut tx, id, now).await?;
            insert_audit(&mut tx, audit).await?;
            commit_audited(tx, Some(audit), "committing a job's cancel").await?;
            Ok(true)
        })
        .await?;
        // Not written: no such job, or it had ended (answered as it stands, no event).
        let _ = written;
        self.get_job(id).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn release_job_items(&self, owner_prefix: &str) -> Result<u64, StoreError> {
        // As `release_leases`: owner tokens need no LIKE escaping; refuse anything else.
        if owner_prefix.is_empty()
            || !owner_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(StoreError::Backend("invalid lease owner prefix".into()));
        }
        // Expired rather than cleared: the item was started, so it is claimed again at once
        // and finished even if its job is cancelled meanwhile.
        let done = sqlx::query(
            "UPDATE job_items SET lease_expires_at = 0 \
             WHERE status = 'pending' AND lease_owner LIKE $1",
        )
        .bind(format!("{owner_prefix}%"))
        .execute(self.pool())
        .await
        .map_err(backend("releasing job items"))?;
        Ok(done.rows_affected())
    }
}
