//! End users' provisioning records: leases, conditional updates, look-ups, the recovery scan.

use async_trait::async_trait;
use provisioner_core::StoreError;
use provisioner_core::ids::{ExternalId, TenantId};
use provisioner_core::model::{AuditEvent, Lease, Timestamp, User, UserStatus};
use provisioner_core::ports::UserStore;
use sqlx::Any;
use sqlx::any::AnyArguments;
use sqlx::query::Query;

use crate::SqlStore;
use crate::audit::{commit_audited, insert_audit_opt};
use crate::error::{backend, ctx, retrying};
use crate::rows::{UserRow, ms};

pub(crate) type AnyQuery = Query<'static, Any, AnyArguments>;

/// Binds, in this order, the 25 columns shared by the insert and the update:
/// tenant_id, external_id, then the mutable fields up to secret_pending, then profile.
fn bind_user(q: AnyQuery, r: UserRow) -> AnyQuery {
    q.bind(r.tenant_id)
        .bind(r.external_id)
        .bind(r.app_id)
        .bind(r.status)
        .bind(r.step)
        .bind(r.generation)
        .bind(r.scopes)
        .bind(r.key_sealed)
        .bind(r.key_fingerprint)
        .bind(r.key_scopes)
        .bind(r.key_generation)
        .bind(r.key_created_at)
        .bind(r.retired_key_sealed)
        .bind(r.retired_key_fingerprint)
        .bind(r.retired_key_delete_after)
        .bind(r.display_name)
        .bind(r.metadata)
        .bind(r.lease_owner)
        .bind(r.lease_expires_at)
        .bind(r.last_error)
        .bind(r.attempts)
        .bind(r.next_attempt_at)
        .bind(r.rotation_grace_secs)
        .bind(r.secret_pending)
        .bind(r.profile)
}

const INSERT_USER: &str = "INSERT INTO users (tenant_id, external_id, app_id, status, step, \
     generation, scopes, key_sealed, key_fingerprint, key_scopes, key_generation, key_created_at, \
     retired_key_sealed, retired_key_fingerprint, retired_key_delete_after, display_name, metadata, \
     lease_owner, lease_expires_at, last_error, attempts, next_attempt_at, rotation_grace_secs, \
     secret_pending, profile, created_at, updated_at, version) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
     $20, $21, $22, $23, $24, $25, $26, $27, $28)";

/// Every mutable column (all but tenant_id, external_id and created_at), conditioned on the
/// lease owner ($27); bumps the version.
const UPDATE_USER: &str = "UPDATE users SET app_id = $3, status = $4, step = $5, generation = $6, \
     scopes = $7, key_sealed = $8, key_fingerprint = $9, key_scopes = $10, key_generation = $11, \
     key_created_at = $12, retired_key_sealed = $13, retired_key_fingerprint = $14, \
     retired_key_delete_after = $15, display_name = $16, metadata = $17, lease_owner = $18, \
     lease_expires_at = $19, last_error = $20, attempts = $21, next_attempt_at = $22, \
     rotation_grace_secs = $23, secret_pending = $24, profile = $25, updated_at = $26, \
     version = version + 1 \
     WHERE tenant_id = $1 AND external_id = $2 AND lease_owner = $27";

/// The rule for work due at $1 (shared by the scan and the claim): a pending step, or a retired
/// key whose grace period ended; either way not backed off (`next_attempt_at`) and not leased
/// (or the lease expired: its holder stopped). Each branch is served by its own partial index.
const DUE_PENDING: &str = "step <> 'idle' AND (next_attempt_at IS NULL OR next_attempt_at <= $1) \
     AND (lease_owner IS NULL OR lease_expires_at < $1)";
const DUE_RETIRED: &str = "retired_key_delete_after <= $1 \
     AND (next_attempt_at IS NULL OR next_attempt_at <= $1) \
     AND (lease_owner IS NULL OR lease_expires_at < $1)";

/// Rows with work due at $1, oldest first, at most $2. UNION also removes rows that match both.
fn due_users_sql() -> String {
    format!(
        "SELECT tenant_id, external_id, COALESCE(next_attempt_at, updated_at) AS due_at FROM users \
         WHERE {DUE_PENDING} \
         UNION \
         SELECT tenant_id, external_id, COALESCE(next_attempt_at, updated_at) AS due_at FROM users \
         WHERE {DUE_RETIRED} \
         ORDER BY due_at, tenant_id, external_id LIMIT $2"
    )
}

/// Inserts `user`'s row on `conn` (inside the caller's transaction). The primary key
/// (tenant_id, external_id) makes concurrent inserts race safely: one wins, the others get a
/// unique violation, reported as AlreadyExists; the (tenant_id, app_id) index as AppIdTaken
/// (see [`SqlStore::insert_error`]). A missing tenant fails the foreign key (NotFound).
pub(crate) async fn insert_user_row(
    conn: &mut sqlx::AnyConnection,
    user: &User,
) -> Result<(), StoreError> {
    let r = UserRow::from_user(user)?;
    let (created_at, updated_at, version) = (r.created_at, r.updated_at, r.version);
    bind_user(sqlx::query(INSERT_USER), r)
        .bind(created_at)
        .bind(updated_at)
        .bind(version)
        .execute(conn)
        .await
        .map_err(ctx("inserting a user"))?;
    Ok(())
}

/// Writes `user`'s row on `conn` if `owner` holds its lease; false when it does not (or the
/// row is gone).
pub(crate) async fn update_user_row(
    conn: &mut sqlx::AnyConnection,
    user: &User,
    owner: &str,
) -> Result<bool, StoreError> {
    let r = UserRow::from_user(user)?;
    let updated_at = r.updated_at;
    let done = bind_user(sqlx::query(UPDATE_USER), r)
        .bind(updated_at)
        .bind(owner.to_owned())
        .execute(conn)
        .await
        .map_err(ctx("updating a user"))?;
    Ok(done.rows_affected() > 0)
}

impl SqlStore {
    /// What a failed insert means to the caller, once its transaction is dropped: with both
    /// unique keys violated SQLite may name the app id's, but the row existing is what the
    /// caller must hear.
    pub(crate) async fn insert_error(&self, user: &User, e: StoreError) -> StoreError {
        if !matches!(e, StoreError::AppIdTaken) {
            return e;
        }
        match self.get_user(&user.tenant_id, &user.external_id).await {
            Ok(Some(_)) => StoreError::AlreadyExists,
            Ok(None) => StoreError::AppIdTaken,
            Err(e) => e,
        }
    }
}

fn parse_key(tenant: &str, external: &str) -> Result<(TenantId, ExternalId), StoreError> {
    let bad = |e| StoreError::Backend(format!("corrupt users row: {e}"));
    Ok((
        TenantId::parse(tenant).map_err(bad)?,
        ExternalId::parse(external).map_err(bad)?,
    ))
}

#[async_trait]
impl UserStore for SqlStore {
    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %tenant))]
    async fn keys_older_than(
        &self,
        tenant: &TenantId,
        profile: &provisioner_core::ids::ProfileName,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<ExternalId>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT external_id FROM users WHERE tenant_id = $1 AND profile = $2 \
             AND status = 'active' AND profile IS NOT NULL AND step IN ('idle', 'sweep_keys') \
             AND key_created_at < $3 ORDER BY key_created_at, external_id LIMIT $4",
        )
        .bind(tenant.as_str().to_owned())
        .bind(profile.as_str().to_owned())
        .bind(ms(before))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(backend("listing keys past their age"))?;
        rows.into_iter()
            .map(|(e,)| {
                ExternalId::parse(&e)
                    .map_err(|err| StoreError::Backend(format!("users.external_id: {err}")))
            })
            .collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %tenant))]
    async fn get_user(
        &self,
        tenant: &TenantId,
        external_id: &ExternalId,
    ) -> Result<Option<User>, StoreError> {
        sqlx::query_as::<_, UserRow>(
            "SELECT * FROM users WHERE tenant_id = $1 AND external_id = $2",
        )
        .bind(tenant.as_str().to_owned())
        .bind(external_id.as_str().to_owned())
        .fetch_optional(self.pool())
        .await
        .map_err(backend("reading a user"))?
        .map(User::try_from)
        .transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %tenant))]
    async fn list_users(
        &self,
        tenant: &TenantId,
        status: Option<UserStatus>,
        after: Option<&ExternalId>,
        limit: u32,
    ) -> Result<Vec<User>, StoreError> {
        // External ids are never empty: "" as the cursor lists from the start. The order is
        // byte order on both backends (SQLite's BINARY collation, PostgreSQL's COLLATE "C" on
        // the column).
        let after = after.map_or("", |a| a.as_str()).to_owned();
        let query = match status {
            Some(_) => sqlx::query_as::<_, UserRow>(
                "SELECT * FROM users WHERE tenant_id = $1 AND external_id > $2 AND status = $4 \
                 ORDER BY external_id LIMIT $3",
            ),
            None => sqlx::query_as::<_, UserRow>(
                "SELECT * FROM users WHERE tenant_id = $1 AND external_id > $2 \
                 ORDER BY external_id LIMIT $3",
            ),
        }
        .bind(tenant.as_str().to_owned())
        .bind(after)
        .bind(i64::from(limit));
        let query = match status {
            Some(s) => query.bind(s.as_str()),
            None => query,
        };
        query
            .fetch_all(self.pool())
            .await
            .map_err(backend("listing users"))?
            .into_iter()
            .map(User::try_from)
            .collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %user.tenant_id))]
    async fn insert_user(&self, user: &User, audit: Option<&AuditEvent>) -> Result<(), StoreError> {
        retrying(|| async move {
            let mut tx = self.begin_write().await?;
            if let Err(e) = insert_user_row(&mut tx, user).await {
                drop(tx);
                return Err(self.insert_error(user, e).await);
            }
            insert_audit_opt(&mut tx, audit).await?;
            commit_audited(tx, audit, "committing a new user").await
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %tenant))]
    async fn acquire_lease(
        &self,
        tenant: &TenantId,
        external_id: &ExternalId,
        lease: &Lease,
        now: Timestamp,
        expected_version: Option<i64>,
    ) -> Result<Option<User>, StoreError> {
        retrying(|| async move {
            // One atomic statement: on PostgreSQL the row lock taken by UPDATE makes a concurrent
            // taker re-check the WHERE clause against our committed lease (and fail), so this is
            // safe across replicas; SQLite serialises writers. The holder itself may renew. With
            // an expected version ($6), a row changed since it was read is not taken.
            let row = sqlx::query_as::<_, UserRow>(
                "UPDATE users SET lease_owner = $3, lease_expires_at = $4, version = version + 1 \
                 WHERE tenant_id = $1 AND external_id = $2 \
                   AND (lease_owner IS NULL OR lease_expires_at < $5 OR lease_owner = $3) \
                   AND ($6 < 0 OR version = $6) \
                 RETURNING *",
            )
            .bind(tenant.as_str().to_owned())
            .bind(external_id.as_str().to_owned())
            .bind(lease.owner.clone())
            .bind(ms(lease.expires_at))
            .bind(ms(now))
            .bind(expected_version.unwrap_or(-1))
            .fetch_optional(self.pool())
            .await
            .map_err(backend("acquiring a lease"))?;
            row.map(User::try_from).transpose()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn release_leases(&self, owner_prefix: &str) -> Result<u64, StoreError> {
        // Owner tokens are `<instance hex>-<uuid hex>`: no LIKE metacharacters to escape, but
        // refuse anything else rather than match too much.
        if owner_prefix.is_empty()
            || !owner_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(StoreError::Backend("invalid lease owner prefix".into()));
        }
        let done = sqlx::query(
            "UPDATE users SET lease_owner = NULL, lease_expires_at = NULL, version = version + 1 \
             WHERE lease_owner LIKE $1",
        )
        .bind(format!("{owner_prefix}%"))
        .execute(self.pool())
        .await
        .map_err(backend("releasing leases"))?;
        Ok(done.rows_affected())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %user.tenant_id))]
    async fn update_user(
        &self,
        user: &User,
        owner: &str,
        audit: Option<&AuditEvent>,
    ) -> Result<(), StoreError> {
        retrying(|| async move {
            let mut tx = self.begin_write().await?;
            if !update_user_row(&mut tx, user, owner).await? {
                // Someone else holds the lease now (or the row is gone with its tenant).
                return Err(StoreError::Stale);
            }
            insert_audit_opt(&mut tx, audit).await?;
            commit_audited(tx, audit, "committing a user update").await
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %tenant))]
    async fn renew_lease(
        &self,
        tenant: &TenantId,
        external_id: &ExternalId,
        owner: &str,
        generation: i64,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        // Not a version bump: the row's content does not change.
        let done = sqlx::query(
            "UPDATE users SET lease_expires_at = $4 \
             WHERE tenant_id = $1 AND external_id = $2 AND lease_owner = $3 AND generation = $5",
        )
        .bind(tenant.as_str().to_owned())
        .bind(external_id.as_str().to_owned())
        .bind(owner.to_owned())
        .bind(ms(expires_at))
        .bind(generation)
        .execute(self.pool())
        .await
        .map_err(backend("renewing a lease"))?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %tenant))]
    async fn defer_user(
        &self,
        tenant: &TenantId,
        external_id: &ExternalId,
        owner: &str,
        now: Timestamp,
        next_attempt_at: Timestamp,
        last_error: &str,
    ) -> Result<(), StoreError> {
        retrying(|| async move {
            let done = sqlx::query(
                "UPDATE users SET attempts = attempts + 1, last_error = $5, next_attempt_at = $6, \
                 lease_owner = NULL, lease_expires_at = NULL, version = version + 1 \
                 WHERE tenant_id = $1 AND external_id = $2 \
                   AND (lease_owner IS NULL OR lease_owner = $3 OR lease_expires_at < $4) \
                   AND (next_attempt_at IS NULL OR next_attempt_at <= $4)",
            )
            .bind(tenant.as_str().to_owned())
            .bind(external_id.as_str().to_owned())
            .bind(owner.to_owned())
            .bind(ms(now))
            .bind(last_error.to_owned())
            .bind(ms(next_attempt_at))
            .execute(self.pool())
            .await
            .map_err(backend("backing off a user"))?;
            if done.rows_affected() == 0 {
                return Err(StoreError::Stale);
            }
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn claim_due_user(
        &self,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        retrying(|| async move {
            // One statement picks the oldest due row and leases it. The sub-select walks the
            // partial index `users_due` in due order (rows backed off into the future are not
            // even visited), so a claim costs about the rows it skips, not the table. PostgreSQL: the sub-select
            // locks the row it picks and skips rows other claimers have locked, so replicas
            // claiming at once get different rows; the outer WHERE re-checks the rule on the
            // locked row. SQLite serialises writers.
            let lock = match self.backend() {
                crate::Backend::Postgres => "FOR UPDATE SKIP LOCKED",
                crate::Backend::Sqlite => "",
            };
            let sql = format!(
                "UPDATE users SET lease_owner = $2, lease_expires_at = $3, version = version + 1 \
                 WHERE (tenant_id, external_id) = ( \
                     SELECT tenant_id, external_id FROM users \
                     WHERE (step <> 'idle' OR retired_key_delete_after IS NOT NULL) \
                       AND COALESCE(next_attempt_at, updated_at) <= $1 \
                       AND (({DUE_PENDING}) OR ({DUE_RETIRED})) \
                     ORDER BY COALESCE(next_attempt_at, updated_at) \
                     LIMIT 1 {lock}) \
                   AND (lease_owner IS NULL OR lease_expires_at < $1) \
                 RETURNING *"
            );
            let row = sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(sql))
                .bind(ms(now))
                .bind(lease.owner.clone())
                .bind(ms(lease.expires_at))
                .fetch_optional(self.pool())
                .await
                .map_err(backend("claiming due work"))?;
            row.map(User::try_from).transpose()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn find_by_fingerprint(
        &self,
        fingerprint: &str,
    ) -> Result<Option<(TenantId, ExternalId)>, StoreError> {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT tenant_id, external_id FROM users WHERE key_fingerprint = $1 \
             UNION ALL \
             SELECT tenant_id, external_id FROM users WHERE retired_key_fingerprint = $1 \
             LIMIT 1",
        )
        .bind(fingerprint.to_owned())
        .fetch_optional(self.pool())
        .await
        .map_err(backend("looking up a key fingerprint"))?;
        row.map(|(t, e)| parse_key(&t, &e)).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn due_users(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(TenantId, ExternalId)>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(due_users_sql()))
            .bind(ms(now))
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await
            .map_err(backend("scanning for due users"))?;
        rows.iter().map(|(t, e, _)| parse_key(t, e)).collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %tenant))]
    async fn count_users_by_status(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<(UserStatus, u64)>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM users WHERE tenant_id = $1 GROUP BY status ORDER BY status")
                .bind(tenant.as_str().to_owned())
                .fetch_all(self.pool())
                .await
                .map_err(backend("counting users"))?;
        rows.into_iter()
            .map(|(s, n)| {
                let status = s
                    .parse::<UserStatus>()
                    .map_err(|e| StoreError::Backend(format!("corrupt users row: {e}")))?;
                let n =
                    u64::try_from(n).map_err(|_| StoreError::Backend("negative count".into()))?;
                Ok((status, n))
            })
            .collect()
    }

    async fn count_all_users_by_status(
        &self,
    ) -> Result<Vec<(TenantId, UserStatus, u64)>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT tenant_id, status, COUNT(*) FROM users GROUP BY tenant_id, status ORDER BY tenant_id, status",
        )
        .fetch_all(self.pool())
        .await
        .map_err(backend("counting users"))?;
        rows.into_iter()
            .map(|(t, s, n)| {
                let tenant = TenantId::parse(&t)
                    .map_err(|e| StoreError::Backend(format!("corrupt users row: {e}")))?;
                let status = s
                    .parse::<UserStatus>()
                    .map_err(|e| StoreError::Backend(format!("corrupt users row: {e}")))?;
                let n =
                    u64::try_from(n).map_err(|_| StoreError::Backend("negative count".into()))?;
                Ok((tenant, status, n))
            })
            .collect()
    }
}
