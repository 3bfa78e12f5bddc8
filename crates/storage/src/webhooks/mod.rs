//! Webhook endpoints, the outbox's events, their deliveries and attempts (core's
//! [`WebhookStore`]).
//!
//! Events are written through the outbox: [`insert_outbox`] runs inside the transaction of
//! the change they describe (every audit insert calls it with the audit event's `events`), and
//! writes each event with one pending delivery per enabled endpoint of its tenant that wants
//! its type. Delivery workers claim due deliveries (moving `next_attempt_at` to the end of
//! their claim) and record each attempt.

use async_trait::async_trait;
use provisioner_core::StoreError;
use provisioner_core::ids::TenantId;
use provisioner_core::model::{AuditEvent, Timestamp};
use provisioner_core::ports::WebhookStore;
use provisioner_core::webhooks::{
    AttemptOutcome, Delivery, DeliveryAttempt, DeliveryStatus, OutboxEvent, WebhookEndpoint,
};
use sqlx::AnyConnection;

use crate::audit::{commit_audited, insert_audit};
use crate::error::{backend, ctx, retrying};
use crate::rows::{ms, to_json};
use crate::{Backend, SqlStore};

mod rows;

use rows::{AttemptRow, DELIVERY_COLUMNS, DeliveryRow, ENDPOINT_COLUMNS, EndpointRow, EventRow};

/// Writes `events` on `conn`, inside the caller's transaction: each event, and one pending
/// delivery, due at once, per enabled endpoint of its tenant that wants its type (an empty
/// filter wants every type). Any failure is a backend failure (a duplicate event id must not
/// read as the caller's row existing).
///
/// PostgreSQL: the endpoints are read `FOR KEY SHARE`, so an endpoint being deleted
/// concurrently is waited for and then skipped (its foreign key check would otherwise fail
/// the whole write); an endpoint being updated is not waited for.
pub(crate) async fn insert_outbox(
    conn: &mut AnyConnection,
    events: &[OutboxEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let (contains, lock) = if conn.backend_name() == "PostgreSQL" {
        ("strpos(event_types, $5) > 0", "FOR KEY SHARE")
    } else {
        ("instr(event_types, $5) > 0", "")
    };
    // `event_types` is written by this crate as a JSON array of type names, which hold no
    // quote: the quoted name is in the array exactly when the type is.
    let deliveries = format!(
        "INSERT INTO webhook_deliveries (event_id, endpoint_id, tenant_id, event_type, status, \
         attempts, created_at, updated_at) \
         SELECT $1, id, tenant_id, $3, 'pending', 0, $4, $4 FROM webhook_endpoints \
         WHERE tenant_id = $2 AND enabled = 1 AND (event_types = '[]' OR {contains}) {lock}"
    );
    for e in events {
        sqlx::query(
            "INSERT INTO webhook_events (id, tenant_id, event_type, at, data, body) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(e.id.clone())
        .bind(e.tenant_id.as_str().to_owned())
        .bind(e.event_type.as_str())
        .bind(ms(e.at))
        .bind(to_json(&e.data)?)
        .bind(e.body())
        .execute(&mut *conn)
        .await
        .map_err(backend("writing a webhook event"))?;
        let fanned = sqlx::query(sqlx::AssertSqlSafe(deliveries.clone()))
            .bind(e.id.clone())
            .bind(e.tenant_id.as_str().to_owned())
            .bind(e.event_type.as_str())
            .bind(ms(e.at))
            .bind(format!("\"{}\"", e.event_type.as_str()))
            .execute(&mut *conn)
            .await
            .map_err(backend("writing a webhook event's deliveries"))?;
        // An event no endpoint wants is not kept.
        if fanned.rows_affected() == 0 {
            sqlx::query("DELETE FROM webhook_events WHERE id = $1")
                .bind(e.id.clone())
                .execute(&mut *conn)
                .await
                .map_err(backend("dropping an event nobody receives"))?;
        }
    }
    Ok(())
}

/// What the delivery claim takes ($1: now): pending and due (a claim is a `next_attempt_at`
/// in the future). `status = 'pending'` is what the partial index `webhook_deliveries_due`
/// is built on.
const DUE: &str = "status = 'pending' AND COALESCE(next_attempt_at, created_at) <= $1";

#[async_trait]
impl WebhookStore for SqlStore {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn purge_webhook_history(&self, before: Timestamp) -> Result<u64, StoreError> {
        retrying(|| async move {
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "DELETE FROM webhook_attempts WHERE (event_id, endpoint_id) IN \
                 (SELECT event_id, endpoint_id FROM webhook_deliveries \
                  WHERE status <> 'pending' AND updated_at < $1)",
            )
            .bind(ms(before))
            .execute(&mut *tx)
            .await
            .map_err(backend("deleting old webhook attempts"))?;
            let n = sqlx::query(
                "DELETE FROM webhook_deliveries WHERE status <> 'pending' AND updated_at < $1",
            )
            .bind(ms(before))
            .execute(&mut *tx)
            .await
            .map_err(backend("deleting old webhook deliveries"))?
            .rows_affected();
            sqlx::query(
                "DELETE FROM webhook_events WHERE at < $1 AND NOT EXISTS \
                 (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = webhook_events.id)",
            )
            .bind(ms(before))
            .execute(&mut *tx)
            .await
            .map_err(backend("deleting old webhook events"))?;
            tx.commit()
                .await
                .map_err(backend("committing a webhook purge"))?;
            Ok(n)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %endpoint.tenant_id))]
    async fn insert_endpoint(
        &self,
        endpoint: &WebhookEndpoint,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let r = &EndpointRow::from_endpoint(endpoint)?;
        retrying(|| async move {
            let mut tx = self.begin_write().await?;
            // A taken id is AlreadyExists; a missing tenant fails the foreign key (NotFound).
            let sql = format!(
                "INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(r.id.clone())
                .bind(r.tenant_id.clone())
                .bind(r.url.clone())
                .bind(r.description.clone())
                .bind(r.event_types.clone())
                .bind(r.enabled)
                .bind(r.disabled_reason.clone())
                .bind(r.secrets.clone())
                .bind(r.failing_since)
                .bind(r.created_at)
                .bind(r.updated_at)
                .bind(r.version)
                .execute(&mut *tx)
                .await
                .map_err(ctx("inserting a webhook endpoint"))?;
            insert_audit(&mut tx, audit).await?;
            commit_audited(tx, Some(audit), "committing a webhook endpoint").await
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %tenant))]
    async fn get_endpoint(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<WebhookEndpoint>, StoreError> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2"
        );
        sqlx::query_as::<_, EndpointRow>(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str().to_owned())
            .bind(id.to_owned())
            .fetch_optional(self.pool())
            .await
            .map_err(backend("reading a webhook endpoint"))?
            .map(WebhookEndpoint::try_from)
            .transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %tenant))]
    async fn list_endpoints(&self, tenant: &TenantId) -> Result<Vec<WebhookEndpoint>, StoreError> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 \
             ORDER BY created_at, id"
        );
        sqlx::query_as::<_, EndpointRow>(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str().to_owned())
            .fetch_all(self.pool())
            .await
            .map_err(backend("listing webhook endpoints"))?
            .into_iter()
            .map(WebhookEndpoint::try_from)
            .collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %endpoint.tenant_id))]
    async fn update_endpoint(
        &self,
        endpoint: &WebhookEndpoint,
        read_version: i64,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let r = &EndpointRow::from_endpoint(endpoint)?;
        retrying(|| async move {
            let mut tx = self.begin_write().await?;
            // Conditioned on the version read. The id, tenant and created_at are never written.
            let done = sqlx::query(
                "UPDATE webhook_endpoints SET url = $3, description = $4, event_types = $5, \
                 enabled = $6, disabled_reason = $7, secrets = $8, failing_since = $9, \
                 updated_at = $10, version = version + 1 \
                 WHERE tenant_id = $1 AND id = $2 AND version = $11",
            )
            .bind(r.tenant_id.clone())
            .bind(r.id.clone())
            .bind(r.url.clone())
            .bind(r.description.clone())
            .bind(r.event_types.clone())
            .bind(r.enabled)
            .bind(r.disabled_reason.clone())
            .bind(r.secrets.clone())
            .bind(r.failing_since)
            .bind(r.updated_at)
            .bind(read_version)
            .execute(&mut *tx)
            .await
            .map_err(backend("updating a webhook endpoint"))?;
            if done.rows_affected() == 0 {
                let exists: Option<String> = sqlx::query_scalar(
                    "SELECT id FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2",
                )
                .bind(r.tenant_id.clone())
                .bind(r.id.clone())
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend("reading a webhook endpoint"))?;
                return Err(if exists.is_some() {
                    StoreError::Stale
                } else {
                    StoreError::NotFound
                });
            }
            insert_audit(&mut tx, audit).await?;
            commit_audited(tx, Some(audit), "committing a webhook endpoint update").await
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %tenant))]
    async fn delete_endpoint(
        &self,
        tenant: &TenantId,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        retrying(|| async move {
            let mut tx = self.begin_write().await?;
            // Its deliveries and their attempts go with it (ON DELETE CASCADE).
            let done =
                sqlx::query("DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str().to_owned())
                    .bind(id.to_owned())
                    .execute(&mut *tx)
                    .await
                    .map_err(backend("deleting a webhook endpoint"))?;
            if done.rows_affected() == 0 {
                // Nothing changed, so nothing to audit: the transaction rolls back on drop.
                return Ok(false);
            }
            insert_audit(&mut tx, audit).await?;
            commit_audited(tx, Some(audit), "committing a webhook endpoint deletion").await?;
            Ok(true)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn get_event(&self, id: &str) -> Result<Option<(OutboxEvent, String)>, StoreError> {
        sqlx::query_as::<_, EventRow>(
            "SELECT id, tenant_id, event_type, at, data, body FROM webhook_events WHERE id = $1",
        )
        .bind(id.to_owned())
        .fetch_optional(self.pool())
        .await
        .map_err(backend("reading a webhook event"))?
        .map(<(OutboxEvent, String)>::try_from)
        .transpose()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        claim_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        retrying(|| async move {
            // One statement: the sub-select picks due deliveries of enabled endpoints, earliest
            // due first, through the partial index `webhook_deliveries_due`, and (PostgreSQL)
            // locks them, skipping those other claimers hold; the outer WHERE re-checks the
            // rule on the locked rows, so a delivery claimed and committed meanwhile is not
            // taken twice. The pick is a materialized CTE (as in `claim_job_items`):
            // PostgreSQL may otherwise run the sub-select more than once and update more than
            // `limit` rows. SQLite serialises writers.
            let (materialized, lock) = match self.backend() {
                Backend::Postgres => ("MATERIALIZED", "FOR UPDATE OF d SKIP LOCKED"),
                Backend::Sqlite => ("", ""),
            };
            let sql = format!(
                "WITH picked AS {materialized} ( \
                     SELECT d.event_id, d.endpoint_id FROM webhook_deliveries d \
                     JOIN webhook_endpoints e ON e.id = d.endpoint_id \
                     WHERE d.status = 'pending' \
                       AND COALESCE(d.next_attempt_at, d.created_at) <= $1 \
                       AND e.enabled = 1 \
                     ORDER BY COALESCE(d.next_attempt_at, d.created_at), d.event_id, \
                       d.endpoint_id \
                     LIMIT $3 {lock}) \
                 UPDATE webhook_deliveries SET next_attempt_at = $2 \
                 WHERE (event_id, endpoint_id) IN (SELECT event_id, endpoint_id FROM picked) \
                   AND {DUE} \
                 RETURNING {DELIVERY_COLUMNS}"
            );
            let rows = sqlx::query_as::<_, DeliveryRow>(sqlx::AssertSqlSafe(sql))
                .bind(ms(now))
                .bind(ms(claim_until))
                .bind(i64::from(limit))
                .fetch_all(self.pool())
                .await
                .map_err(backend("claiming webhook deliveries"))?;
            // A row that does not read back stays claimed until `claim_until` and is skipped,
            // so it does not hold up the others.
            let mut deliveries = Vec::with_capacity(rows.len());
            for row in rows {
                let (event, endpoint) = (row.event_id.clone(), row.endpoint_id.clone());
                match Delivery::try_from(row) {
                    Ok(d) => deliveries.push(d),
                    Err(e) => {
                        tracing::warn!(error.message = %e, webhook.event = %event, webhook.endpoint = %endpoint, "a stored webhook delivery does not read back; skipping it");
                    }
                }
            }
            // RETURNING has no order (and every claimed row is now due at `claim_until`).
            deliveries.sort_by(|a, b| {
                (a.created_at, &a.event_id, &a.endpoint_id).cmp(&(
                    b.created_at,
                    &b.event_id,
                    &b.endpoint_id,
                ))
            });
            Ok(deliveries)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %tenant))]
    async fn record_attempt(
        &self,
        tenant: &TenantId,
        outcome: &AttemptOutcome,
    ) -> Result<(), StoreError> {
        let a = &outcome.attempt;
        let tenant_s = tenant.as_str().to_owned();
        let tenant_s = &tenant_s;
        retrying(|| async move {
            let mut tx = self.begin_write().await?;
            // The endpoint first, then its delivery: the order an endpoint's deletion locks
            // them in (PostgreSQL), so the two cannot deadlock.
            // A late attempt (a lapsed claim, a resend racing a send) never undoes a delivery:
            // it is not recorded at all.
            // PostgreSQL: the endpoint's row, then the delivery's, locked in the order a
            // deletion takes them, so a concurrent record of the same delivery (a resend's)
            // waits here and its outcome is seen below.
            let lock = if self.backend() == Backend::Postgres {
                "FOR UPDATE"
            } else {
                ""
            };
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT id FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2 {lock}"
            )))
            .bind(tenant_s.clone())
            .bind(a.endpoint_id.clone())
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend("locking a webhook endpoint"))?;
            if outcome.status != DeliveryStatus::Delivered {
                let current: Option<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT status FROM webhook_deliveries \
                     WHERE tenant_id = $1 AND event_id = $2 AND endpoint_id = $3 {lock}"
                )))
                .bind(tenant_s.clone())
                .bind(a.event_id.clone())
                .bind(a.endpoint_id.clone())
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend("reading a webhook delivery"))?;
                if current.is_some_and(|(st,)| st == DeliveryStatus::Delivered.as_str()) {
                    return Ok(());
                }
            }
            // The failure clock, kept by the database: a success stops it, a failure starts
            // it unless it runs (a stale read of it never moves it).
            sqlx::query(
                "UPDATE webhook_endpoints SET failing_since = CASE WHEN $4 = 1 THEN NULL \
                 ELSE COALESCE(failing_since, $3) END WHERE tenant_id = $1 AND id = $2",
            )
            .bind(tenant_s.clone())
            .bind(a.endpoint_id.clone())
            .bind(ms(outcome.failing_since.unwrap_or(a.at)))
            .bind(i64::from(outcome.failing_since.is_none()))
            .execute(&mut *tx)
            .await
            .map_err(backend("recording a webhook endpoint's failures"))?;
            // Disabled before the event is written, so the endpoint gets none of it. Only an
            // enabled endpoint is disabled (and its event written): of two workers disabling
            // it at once, or a worker and an operator, the first one's reason stands.
            let disabled = match &outcome.disable {
                Some(dis) => {
                    sqlx::query(
                        "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = $3, \
                         updated_at = $4, version = version + 1 \
                         WHERE tenant_id = $1 AND id = $2 AND enabled = 1 \
                         AND failing_since IS NOT NULL AND failing_since <= $5",
                    )
                    .bind(tenant_s.clone())
                    .bind(a.endpoint_id.clone())
                    .bind(dis.reason.clone())
                    .bind(ms(a.at))
                    .bind(ms(dis.if_failing_since))
                    .execute(&mut *tx)
                    .await
                    .map_err(backend("disabling a webhook endpoint"))?
                    .rows_affected()
                        == 1
                }
                None => false,
            };
            let sql = format!(
                "UPDATE webhook_deliveries SET status = $4, next_attempt_at = $5, \
                 last_status = $6, last_error = $7, attempts = attempts + 1, updated_at = $8 \
                 WHERE tenant_id = $1 AND event_id = $2 AND endpoint_id = $3 \
                 RETURNING {DELIVERY_COLUMNS}"
            );
            let delivery = sqlx::query_as::<_, DeliveryRow>(sqlx::AssertSqlSafe(sql))
                .bind(tenant_s.clone())
                .bind(a.event_id.clone())
                .bind(a.endpoint_id.clone())
                .bind(outcome.status.as_str())
                .bind(outcome.next_attempt_at.map(ms))
                .bind(a.status_code)
                .bind(a.error.clone())
                .bind(ms(a.at))
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend("recording a webhook delivery"))?;
            // Gone (its endpoint was deleted) or another tenant's: nothing is written.
            let Some(delivery) = delivery else {
                return Err(StoreError::NotFound);
            };
            // Numbered by the delivery's count, which the row lock orders: a worker that sent
            // a delivery whose claim lapsed (or that was resent meanwhile) records its attempt
            // after the other's instead of failing on a taken number.
            sqlx::query(
                "INSERT INTO webhook_attempts (event_id, endpoint_id, attempt, at, status_code, \
                 error, duration_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(a.event_id.clone())
            .bind(a.endpoint_id.clone())
            .bind(delivery.attempts)
            .bind(ms(a.at))
            .bind(a.status_code)
            .bind(a.error.clone())
            .bind(a.duration_ms)
            .execute(&mut *tx)
            .await
            .map_err(backend("recording a webhook attempt"))?;
            if disabled && let Some(dis) = &outcome.disable {
                insert_outbox(&mut tx, std::slice::from_ref(&dis.event)).await?;
            }
            tx.commit()
                .await
                .map_err(backend("committing a webhook attempt"))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %tenant))]
    async fn list_deliveries(
        &self,
        tenant: &TenantId,
        endpoint: Option<&str>,
        status: Option<DeliveryStatus>,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        // Only the conditions given are in the statement, each a placeholder.
        let mut conditions = vec!["tenant_id = $1".to_owned()];
        let mut binds = vec![tenant.as_str().to_owned()];
        if let Some(e) = endpoint {
            binds.push(e.to_owned());
            conditions.push(format!("endpoint_id = ${}", binds.len()));
        }
        if let Some(s) = status {
            binds.push(s.as_str().to_owned());
            conditions.push(format!("status = ${}", binds.len()));
        }
        if let Some((event, endpoint)) = after {
            binds.push(event.to_owned());
            binds.push(endpoint.to_owned());
            let (ev, ep) = (binds.len() - 1, binds.len());
            conditions.push(format!(
                "(event_id < ${ev} OR (event_id = ${ev} AND endpoint_id > ${ep}))"
            ));
        }
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE {} \
             ORDER BY event_id DESC, endpoint_id LIMIT ${}",
            conditions.join(" AND "),
            binds.len() + 1
        );
        let mut query = sqlx::query_as::<_, DeliveryRow>(sqlx::AssertSqlSafe(sql));
        for b in binds {
            query = query.bind(b);
        }
        query
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await
            .map_err(backend("listing webhook deliveries"))?
            .into_iter()
            .map(Delivery::try_from)
            .collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %tenant))]
    async fn list_attempts(
        &self,
        tenant: &TenantId,
        event_id: &str,
        endpoint: Option<&str>,
    ) -> Result<Vec<DeliveryAttempt>, StoreError> {
        sqlx::query_as::<_, AttemptRow>(
            "SELECT a.event_id, a.endpoint_id, a.attempt, a.at, a.status_code, a.error, \
             a.duration_ms FROM webhook_attempts a JOIN webhook_deliveries d \
             ON d.event_id = a.event_id AND d.endpoint_id = a.endpoint_id \
             WHERE a.event_id = $1 AND d.tenant_id = $2 AND ($3 OR a.endpoint_id = $4) \
             ORDER BY a.at, a.endpoint_id, a.attempt",
        )
        .bind(event_id.to_owned())
        .bind(tenant.as_str().to_owned())
        .bind(endpoint.is_none())
        .bind(endpoint.unwrap_or_default().to_owned())
        .fetch_all(self.pool())
        .await
        .map_err(backend("listing webhook attempts"))?
        .into_iter()
        .map(DeliveryAttempt::try_from)
        .collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %tenant))]
    async fn requeue_deliveries(
        &self,
        tenant: &TenantId,
        endpoint: &str,
        event_id: Option<&str>,
        failed_since: Option<Timestamp>,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> Result<u64, StoreError> {
        retrying(|| async move {
            let mut tx = self.begin_write().await?;
            // A resend takes the event's delivery whatever its status; a recovery every failed
            // one whose event is not older than `failed_since` (a delivery is created at its
            // event's time). The attempt count is kept: attempts stay numbered in order.
            let set = "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $3, \
                 updated_at = $3 WHERE tenant_id = $1 AND endpoint_id = $2";
            let query = match event_id {
                Some(e) => sqlx::query(sqlx::AssertSqlSafe(format!("{set} AND event_id = $4")))
                    .bind(tenant.as_str().to_owned())
                    .bind(endpoint.to_owned())
                    .bind(ms(now))
                    .bind(e.to_owned()),
                None => sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{set} AND status = 'failed' AND created_at >= $4"
                )))
                .bind(tenant.as_str().to_owned())
                .bind(endpoint.to_owned())
                .bind(ms(now))
                .bind(failed_since.map_or(i64::MIN, ms)),
            };
            let n = query
                .execute(&mut *tx)
                .await
                .map_err(backend("requeueing webhook deliveries"))?
                .rows_affected();
            insert_audit(&mut tx, audit).await?;
            commit_audited(tx, Some(audit), "committing a webhook requeue").await?;
            Ok(n)
        })
        .await
    }
}
