//! Idempotency-Key records (`idempotency_keys`), and the user writes that bind a record to the
//! operation they start in the same transaction.

use async_trait::async_trait;
use provisioner_core::StoreError;
use provisioner_core::idempotency::{
    IdempotencyBinding, IdempotencyClaim, IdempotencyKey, IdempotencyRecord, SavedResponse,
};
use provisioner_core::ids::{ExternalId, TenantId};
use provisioner_core::model::{AuditEvent, Lease, Timestamp, User};
use provisioner_core::ports::IdempotencyStore;
use sqlx::{Any, Transaction};

use crate::SqlStore;
use crate::audit::{commit_audited, insert_audit_opt};
use crate::error::{backend, retrying};
use crate::rows::ms;
use crate::users::{insert_user_row, update_user_row};

/// An `idempotency_keys` row.
#[derive(sqlx::FromRow)]
struct IdempotencyRow {
    subject: String,
    idem_key: String,
    operation: String,
    target: String,
    request_hash: String,
    bound_tenant_id: Option<String>,
    bound_external_id: Option<String>,
    bound_generation: Option<i64>,
    claim_owner: Option<String>,
    claim_expires_at: Option<i64>,
    response_status: Option<i64>,
    response_body: Option<String>,
    response_secret_sealed: Option<Vec<u8>>,
    created_at: i64,
    expires_at: i64,
}

fn corrupt(field: &str, why: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("corrupt idempotency_keys row: {field}: {why}"))
}

fn time(field: &str, v: i64) -> Result<Timestamp, StoreError> {
    chrono::DateTime::from_timestamp_millis(v)
        .ok_or_else(|| corrupt(field, "timestamp out of range"))
}

impl TryFrom<IdempotencyRow> for IdempotencyRecord {
    type Error = StoreError;

    fn try_from(r: IdempotencyRow) -> Result<Self, StoreError> {
        let binding = match (r.bound_tenant_id, r.bound_external_id, r.bound_generation) {
            (Some(t), Some(e), Some(generation)) => Some(IdempotencyBinding {
                tenant_id: TenantId::parse(&t).map_err(|e| corrupt("bound_tenant_id", e))?,
                external_id: ExternalId::parse(&e).map_err(|e| corrupt("bound_external_id", e))?,
                generation,
            }),
            (None, None, None) => None,
            _ => return Err(corrupt("bound_*", "partly set")),
        };
        let claim = match (r.claim_owner, r.claim_expires_at) {
            (Some(owner), Some(at)) => Some(Lease {
                owner,
                expires_at: time("claim_expires_at", at)?,
            }),
            (None, None) => None,
            _ => return Err(corrupt("claim_*", "partly set")),
        };
        let response = match (r.response_status, r.response_body) {
            (Some(status), Some(body)) => Some(SavedResponse {
                status: u16::try_from(status).map_err(|e| corrupt("response_status", e))?,
                body,
                secret_sealed: r.response_secret_sealed,
            }),
            (None, None) => None,
            _ => return Err(corrupt("response_*", "partly set")),
        };
        Ok(IdempotencyRecord {
            subject: r.subject,
            key: IdempotencyKey::parse(&r.idem_key).map_err(|e| corrupt("idem_key", e))?,
            operation: r.operation,
            target: r.target,
            request_hash: r.request_hash,
            binding,
            claim,
            response,
            created_at: time("created_at", r.created_at)?,
            expires_at: time("expires_at", r.expires_at)?,
        })
    }
}

/// Binds the record `claim` names to `user`'s operation, inside the caller's transaction, if
/// `claim.owner` still holds its claim and it has no answer. False otherwise.
async fn bind_in(
    tx: &mut Transaction<'static, Any>,
    claim: &IdempotencyClaim,
    user: &User,
) -> Result<bool, StoreError> {
    let done = sqlx::query(BIND)
        .bind(claim.subject.clone())
        .bind(claim.key.as_str().to_owned())
        .bind(claim.owner.clone())
        .bind(user.tenant_id.as_str().to_owned())
        .bind(user.external_id.as_str().to_owned())
        .bind(user.generation)
        .execute(&mut **tx)
        .await
        .map_err(backend("binding an idempotency record"))?;
    Ok(done.rows_affected() == 1)
}

const BIND: &str = "UPDATE idempotency_keys \
     SET bound_tenant_id = $4, bound_external_id = $5, bound_generation = $6 \
     WHERE subject = $1 AND idem_key = $2 AND claim_owner = $3 AND response_status IS NULL";

#[async_trait]
impl IdempotencyStore for SqlStore {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn get_idempotency(
        &self,
        subject: &str,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        sqlx::query_as::<_, IdempotencyRow>(
            "SELECT * FROM idempotency_keys WHERE subject = $1 AND idem_key = $2",
        )
        .bind(subject.to_owned())
        .bind(key.as_str().to_owned())
        .fetch_optional(self.pool())
        .await
        .map_err(backend("reading an idempotency record"))?
        .map(IdempotencyRecord::try_from)
        .transpose()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn put_idempotency(
        &self,
        r: &IdempotencyRecord,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        // One statement: concurrent puts of one key have one winner (the primary key), and an
        // expired record is replaced in place.
        let b = r.binding.as_ref();
        let s = r.response.as_ref();
        let done = sqlx::query(
            "INSERT INTO idempotency_keys (subject, idem_key, operation, target, request_hash, \
             bound_tenant_id, bound_external_id, bound_generation, claim_owner, claim_expires_at, \
             response_status, response_body, response_secret_sealed, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
             ON CONFLICT (subject, idem_key) DO UPDATE SET operation = excluded.operation, \
             target = excluded.target, request_hash = excluded.request_hash, \
             bound_tenant_id = excluded.bound_tenant_id, \
             bound_external_id = excluded.bound_external_id, \
             bound_generation = excluded.bound_generation, claim_owner = excluded.claim_owner, \
             claim_expires_at = excluded.claim_expires_at, \
             response_status = excluded.response_status, response_body = excluded.response_body, \
             response_secret_sealed = excluded.response_secret_sealed, \
             created_at = excluded.created_at, expires_at = excluded.expires_at \
             WHERE idempotency_keys.expires_at <= $16",
        )
        .bind(r.subject.clone())
        .bind(r.key.as_str().to_owned())
        .bind(r.operation.clone())
        .bind(r.target.clone())
        .bind(r.request_hash.clone())
        .bind(b.map(|b| b.tenant_id.as_str().to_owned()))
        .bind(b.map(|b| b.external_id.as_str().to_owned()))
        .bind(b.map(|b| b.generation))
        .bind(r.claim.as_ref().map(|c| c.owner.clone()))
        .bind(r.claim.as_ref().map(|c| ms(c.expires_at)))
        .bind(s.map(|s| i64::from(s.status)))
        .bind(s.map(|s| s.body.clone()))
        .bind(s.and_then(|s| s.secret_sealed.clone()))
        .bind(ms(r.created_at))
        .bind(ms(r.expires_at))
        .bind(ms(now))
        .execute(self.pool())
        .await
        .map_err(backend("writing an idempotency record"))?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn claim_idempotency(
        &self,
        subject: &str,
        key: &IdempotencyKey,
        claim: &Lease,
        now: Timestamp,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        sqlx::query_as::<_, IdempotencyRow>(
            "UPDATE idempotency_keys SET claim_owner = $3, claim_expires_at = $4 \
             WHERE subject = $1 AND idem_key = $2 AND response_status IS NULL \
               AND (claim_owner IS NULL OR claim_expires_at < $5 OR claim_owner = $3) \
             RETURNING *",
        )
        .bind(subject.to_owned())
        .bind(key.as_str().to_owned())
        .bind(claim.owner.clone())
        .bind(ms(claim.expires_at))
        .bind(ms(now))
        .fetch_optional(self.pool())
        .await
        .map_err(backend("claiming an idempotency record"))?
        .map(IdempotencyRecord::try_from)
        .transpose()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn release_idempotency(&self, claim: &IdempotencyClaim) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE idempotency_keys SET claim_owner = NULL, claim_expires_at = NULL \
             WHERE subject = $1 AND idem_key = $2 AND claim_owner = $3 \
               AND response_status IS NULL",
        )
        .bind(claim.subject.clone())
        .bind(claim.key.as_str().to_owned())
        .bind(claim.owner.clone())
        .execute(self.pool())
        .await
        .map_err(backend("releasing an idempotency record"))?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn bind_idempotency(
        &self,
        claim: &IdempotencyClaim,
        binding: &IdempotencyBinding,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(BIND)
            .bind(claim.subject.clone())
            .bind(claim.key.as_str().to_owned())
            .bind(claim.owner.clone())
            .bind(binding.tenant_id.as_str().to_owned())
            .bind(binding.external_id.as_str().to_owned())
            .bind(binding.generation)
            .execute(self.pool())
            .await
            .map_err(backend("binding an idempotency record"))?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %user.tenant_id))]
    async fn insert_user_bound(
        &self,
        user: &User,
        audit: Option<&AuditEvent>,
        claim: &IdempotencyClaim,
    ) -> Result<(), StoreError> {
        retrying(|| async move {
            let mut tx = self.begin_write().await?;
            if !bind_in(&mut tx, claim, user).await? {
                return Err(StoreError::Stale);
            }
            if let Err(e) = insert_user_row(&mut tx, user).await {
                drop(tx);
                return Err(self.insert_error(user, e).await);
            }
            insert_audit_opt(&mut tx, audit).await?;
            commit_audited(
                tx,
                audit,
                "committing a new user with its idempotency record",
            )
            .await
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %user.tenant_id))]
    async fn update_user_bound(
        &self,
        user: &User,
        owner: &str,
        audit: Option<&AuditEvent>,
        claim: &IdempotencyClaim,
    ) -> Result<(), StoreError> {
        retrying(|| async move {
            let mut tx = self.begin_write().await?;
            if !update_user_row(&mut tx, user, owner).await?
                || !bind_in(&mut tx, claim, user).await?
            {
                return Err(StoreError::Stale);
            }
            insert_audit_opt(&mut tx, audit).await?;
            commit_audited(
                tx,
                audit,
                "committing a user update with its idempotency record",
            )
            .await
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn complete_idempotency(
        &self,
        subject: &str,
        key: &IdempotencyKey,
        created_at: Timestamp,
        response: &SavedResponse,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE idempotency_keys SET response_status = $4, response_body = $5, \
             response_secret_sealed = $6, claim_owner = NULL, claim_expires_at = NULL \
             WHERE subject = $1 AND idem_key = $2 AND created_at = $3 \
               AND response_status IS NULL",
        )
        .bind(subject.to_owned())
        .bind(key.as_str().to_owned())
        .bind(ms(created_at))
        .bind(i64::from(response.status))
        .bind(response.body.clone())
        .bind(response.secret_sealed.clone())
        .execute(self.pool())
        .await
        .map_err(backend("recording an idempotency answer"))?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn purge_idempotency(&self, now: Timestamp) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= $1")
            .bind(ms(now))
            .execute(self.pool())
            .await
            .map_err(backend("deleting expired idempotency records"))?;
        Ok(done.rows_affected())
    }
}
