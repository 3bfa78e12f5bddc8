//! The audit log: appending (alone or inside another write's transaction) and listing.

use async_trait::async_trait;
use provisioner_core::StoreError;
use provisioner_core::ids::TenantId;
use provisioner_core::model::{AuditEvent, Timestamp};
use provisioner_core::ports::AuditStore;
use sqlx::{Any, AnyConnection};

use crate::SqlStore;
use crate::error::{backend, ctx, retrying};
use crate::rows::{AuditRow, ms};
use crate::webhooks::insert_outbox;

/// The advisory lock key that orders audit writers on PostgreSQL ("provaudt").
const AUDIT_ORDER_LOCK: i64 = 0x7072_6f76_6175_6474;

const INSERT_AUDIT: &str = "INSERT INTO audit_events \
     (id, at, actor, tenant_id, action, target, outcome, request_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

fn insert_query(e: &AuditEvent) -> sqlx::query::Query<'static, Any, sqlx::any::AnyArguments> {
    sqlx::query(INSERT_AUDIT)
        .bind(e.id.clone())
        .bind(ms(e.at))
        .bind(e.actor.clone())
        .bind(e.tenant_id.as_ref().map(|t| t.as_str().to_owned()))
        .bind(e.action.clone())
        .bind(e.target.clone())
        .bind(e.outcome.clone())
        .bind(e.request_id.clone())
}

/// Writes `event` on `conn`, inside the caller's transaction: if it fails, the caller's
/// change rolls back with it (audit fails closed). Any failure, a duplicate id included, is a
/// backend failure: it must not read as "the row being written already exists".
pub(crate) async fn insert_audit(
    conn: &mut AnyConnection,
    event: &AuditEvent,
) -> Result<(), StoreError> {
    insert_ordered(conn, event, backend("writing the audit event")).await
}

/// [`insert_audit`] for an event written on its own: a duplicate id is reported as existing.
async fn insert_audit_checked(
    conn: &mut AnyConnection,
    event: &AuditEvent,
) -> Result<(), StoreError> {
    insert_ordered(conn, event, ctx("appending an audit event")).await
}

/// Writes the audit event's outbox events (and their deliveries), then the audit event itself,
/// on `conn`, inside the caller's transaction: the change, its audit event and its webhook
/// events commit together or not at all.
async fn insert_ordered(
    conn: &mut AnyConnection,
    event: &AuditEvent,
    map_err: impl FnOnce(sqlx::Error) -> StoreError,
) -> Result<(), StoreError> {
    // The outbox goes first, before the ordering lock: its inserts take row locks (the foreign
    // keys' share locks on the tenant and on the endpoints, which may be being deleted), and a
    // holder of the ordering lock that waited for a row lock would deadlock with that row's
    // writer queued on the ordering lock. Nothing reads the outbox in the order of `seq`.
    insert_outbox(conn, &event.events).await?;
    // PostgreSQL: audit writers commit one at a time, so `seq` is commit order (SQLite has one
    // writer anyway). Held from here to the commit; the audit insert is always a
    // transaction's last statement (the outbox is written just before it), so no other lock
    // is taken while it is held.
    if conn.backend_name() == "PostgreSQL" {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(AUDIT_ORDER_LOCK)
            .execute(&mut *conn)
            .await
            .map_err(backend("ordering the audit event"))?;
    }
    insert_query(event).execute(conn).await.map_err(map_err)?;
    Ok(())
}

/// The log target audit events are also written to, once committed (for shipping to a SIEM).
pub const AUDIT_TARGET: &str = "provisioner::audit";

/// Commits `tx`, then logs `event` (if any) on [`AUDIT_TARGET`]: only events that are in the
/// database reach the log.
pub(crate) async fn commit_audited(
    tx: sqlx::Transaction<'static, Any>,
    event: Option<&AuditEvent>,
    context: &'static str,
) -> Result<(), StoreError> {
    tx.commit().await.map_err(backend(context))?;
    if let Some(e) = event {
        log_audit(e);
    }
    Ok(())
}

/// One line per audit event on [`AUDIT_TARGET`] (audit events hold no secret).
pub(crate) fn log_audit(e: &AuditEvent) {
    let tenant = e.tenant_id.as_ref().map(|t| t.as_str()).unwrap_or("");
    let request_id = e.request_id.as_deref().unwrap_or("");
    tracing::info!(
        target: AUDIT_TARGET,
        event_id = %e.id,
        at = %e.at.to_rfc3339(),
        actor = %e.actor,
        tenant = %tenant,
        action = %e.action,
        object = %e.target,
        outcome = %e.outcome,
        request_id = %request_id,
        "audit event"
    );
}

/// Writes `event` if there is one.
pub(crate) async fn insert_audit_opt(
    conn: &mut AnyConnection,
    event: Option<&AuditEvent>,
) -> Result<(), StoreError> {
    match event {
        Some(e) => insert_audit(conn, e).await,
        None => Ok(()),
    }
}

#[async_trait]
impl AuditStore for SqlStore {
    #[tracing::instrument(level = "debug", skip_all, fields(audit.action = %event.action))]
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        retrying(|| async move {
            let mut tx = self.begin_write().await?;
            insert_audit_checked(&mut tx, event).await?;
            commit_audited(tx, Some(event), "committing an audit event").await
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn list_audit(
        &self,
        tenant: Option<&TenantId>,
        after: Option<&str>,
        since: Option<Timestamp>,
        limit: u32,
    ) -> Result<Vec<(AuditEvent, String)>, StoreError> {
        // The smallest timestamp means "since the beginning"; position 0 "from the start".
        // Both keep the query static.
        let since = since.map_or(i64::MIN, ms);
        let after = match after {
            None => 0,
            Some(p) => match p.parse::<i64>() {
                Ok(seq) => seq,
                // A cursor handed out before commit-ordered positions: an event id.
                Err(_) => self.position_of(p).await?,
            },
        };
        let all = tenant.is_none();
        let tenant = tenant.map_or(String::new(), |t| t.as_str().to_owned());
        let rows = sqlx::query_as::<_, AuditRow>(
            "SELECT * FROM audit_events WHERE ($1 OR tenant_id = $2) AND seq > $3 AND at >= $4 \
             ORDER BY seq LIMIT $5",
        )
        .bind(all)
        .bind(tenant)
        .bind(after)
        .bind(since)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(ctx("listing audit events"))?;
        rows.into_iter()
            .map(|r| {
                let position = r.seq.to_string();
                AuditEvent::try_from(r).map(|e| (e, position))
            })
            .collect()
    }
}

impl SqlStore {
    /// The commit-order position of the event with id `id` (cursors handed out before
    /// positions were; they named the last event's id).
    async fn position_of(&self, id: &str) -> Result<i64, StoreError> {
        let seq: Option<(i64,)> = sqlx::query_as("SELECT seq FROM audit_events WHERE id = $1")
            .bind(id.to_owned())
            .fetch_optional(self.pool())
            .await
            .map_err(ctx("reading an audit cursor"))?;
        seq.map(|(s,)| s).ok_or(StoreError::BadCursor)
    }
}
