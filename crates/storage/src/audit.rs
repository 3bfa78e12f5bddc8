//! The audit log: appending (alone or inside another write's transaction) and listing.

use async_trait::async_trait;
use provisioner_core::StoreError;
use provisioner_core::ids::TenantId;
use provisioner_core::model::{AuditEvent, Timestamp};
use provisioner_core::ports::AuditStore;
use sqlx::{Any, AnyConnection};

use crate::SqlStore;
use crate::error::{backend, ctx};
use crate::rows::{AuditRow, ms};

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
    insert_query(event)
        .execute(conn)
        .await
        .map_err(backend("writing the audit event"))?;
    Ok(())
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
        insert_query(event)
            .execute(self.pool())
            .await
            .map_err(ctx("appending an audit event"))?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn list_audit(
        &self,
        tenant: Option<&TenantId>,
        after_id: Option<&str>,
        since: Option<Timestamp>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        // Ids are never empty, so "" as the cursor means "from the start"; likewise the
        // smallest timestamp for "since the beginning". Both keep the queries static.
        let after = after_id.unwrap_or("").to_owned();
        let since = since.map_or(i64::MIN, ms);
        let query = match tenant {
            Some(t) => sqlx::query_as::<_, AuditRow>(
                "SELECT * FROM audit_events WHERE tenant_id = $1 AND id > $2 AND at >= $3 \
                 ORDER BY id LIMIT $4",
            )
            .bind(t.as_str().to_owned()),
            None => sqlx::query_as::<_, AuditRow>(
                "SELECT * FROM audit_events WHERE id > $1 AND at >= $2 ORDER BY id LIMIT $3",
            ),
        };
        let rows = query
            .bind(after)
            .bind(since)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await
            .map_err(ctx("listing audit events"))?;
        rows.into_iter().map(AuditEvent::try_from).collect()
    }
}
