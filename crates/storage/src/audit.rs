//! The audit log: appending (alone or inside another write's transaction) and listing.

use async_trait::async_trait;
use provisioner_core::StoreError;
use provisioner_core::ids::TenantId;
use provisioner_core::model::{AuditEvent, Timestamp};
use provisioner_core::ports::AuditStore;
use sqlx::{Any, AnyConnection};

use crate::error::{backend, ctx};
use crate::rows::{AuditRow, ms};
use crate::{Backend, SqlStore};

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
        after: Option<&str>,
        since: Option<Timestamp>,
        limit: u32,
    ) -> Result<Vec<(AuditEvent, String)>, StoreError> {
        // The smallest timestamp means "since the beginning"; position (0, 0) "from the
        // start". Both keep the queries static.
        let since = since.map_or(i64::MIN, ms);
        let (after_tx, after_seq) = match after {
            None => (0, 0),
            Some(p) => parse_position(p, self.backend())?,
        };
        let all = tenant.is_none();
        let tenant = tenant.map_or(String::new(), |t| t.as_str().to_owned());
        let rows = match self.backend() {
            // Only transactions older than every one still running: their events are all
            // committed (or rolled back), and any event committed later has a larger txid.
            Backend::Postgres => sqlx::query_as::<_, AuditRow>(
                "SELECT * FROM audit_events \
                 WHERE ($1 OR tenant_id = $2) AND (txid, seq) > ($3, $4) AND at >= $5 \
                   AND txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
                 ORDER BY txid, seq LIMIT $6",
            ),
            // One writer at a time: insertion order is commit order.
            Backend::Sqlite => sqlx::query_as::<_, AuditRow>(
                "SELECT * FROM audit_events \
                 WHERE ($1 OR tenant_id = $2) AND $3 = $3 AND seq > $4 AND at >= $5 \
                 ORDER BY seq LIMIT $6",
            ),
        }
        .bind(all)
        .bind(tenant)
        .bind(after_tx)
        .bind(after_seq)
        .bind(since)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(ctx("listing audit events"))?;
        rows.into_iter()
            .map(|r| {
                let position = r.position();
                AuditEvent::try_from(r).map(|e| (e, position))
            })
            .collect()
    }
}

/// Reads a position handed out by [`AuditRow::position`] on this backend.
fn parse_position(p: &str, backend: Backend) -> Result<(i64, i64), StoreError> {
    let number = |s: &str| s.parse::<i64>().map_err(|_| StoreError::BadCursor);
    match (backend, p.split_once('.')) {
        (Backend::Postgres, Some((tx, seq))) => Ok((number(tx)?, number(seq)?)),
        (Backend::Sqlite, None) => Ok((0, number(p)?)),
        _ => Err(StoreError::BadCursor),
    }
}
