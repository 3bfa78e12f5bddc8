//! SCIM settings, bearer tokens and user resources (core's [`ScimStore`]).
//!
//! A SCIM user's attributes are stored as the JSON of [`ScimAttributes`]; the columns the
//! database enforces or searches (the case-folded `userName`, `externalId`, the e-mail key,
//! `active`) are derived from them on every write, so they never disagree with the JSON.

use async_trait::async_trait;
use provisioner_core::StoreError;
use provisioner_core::ids::{ExternalId, ProfileName, TenantId};
use provisioner_core::model::{AuditEvent, Timestamp};
use provisioner_core::ports::ScimStore;
use provisioner_core::scim::{
    ScimAttributes, ScimConfig, ScimQuery, ScimSyncOutcome, ScimToken, ScimUser, email_key,
    user_name_key,
};

use crate::audit::{commit_audited, insert_audit};
use crate::error::{backend, ctx, retrying};
use crate::rows::{ms, time, to_json};
use crate::{Backend, SqlStore};

fn corrupt(row: &str, field: &str, why: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("corrupt {row} row: {field}: {why}"))
}

/// A `scim_configs` row.
#[derive(sqlx::FromRow)]
struct ConfigRow {
    tenant_id: String,
    external_id_from: String,
    on_deactivate: String,
    scope_profile: Option<String>,
    profile_attribute: Option<String>,
    updated_at: Option<i64>,
}

impl TryFrom<ConfigRow> for ScimConfig {
    type Error = StoreError;

    fn try_from(r: ConfigRow) -> Result<Self, StoreError> {
        let row = "scim_configs";
        Ok(ScimConfig {
            tenant_id: TenantId::parse(&r.tenant_id).map_err(|e| corrupt(row, "tenant_id", e))?,
            external_id_from: r
                .external_id_from
                .parse()
                .map_err(|e| corrupt(row, "external_id_from", e))?,
            on_deactivate: r
                .on_deactivate
                .parse()
                .map_err(|e| corrupt(row, "on_deactivate", e))?,
            scope_profile: r
                .scope_profile
                .as_deref()
                .map(|p| ProfileName::parse(p).map_err(|e| corrupt(row, "scope_profile", e)))
                .transpose()?,
            profile_attribute: r.profile_attribute,
            updated_at: r
                .updated_at
                .map(|t| time(row, "updated_at", t))
                .transpose()?,
        })
    }
}

/// A `scim_tokens` row.
#[derive(sqlx::FromRow)]
struct TokenRow {
    id: String,
    tenant_id: String,
    hash: String,
    created_at: i64,
    expires_at: Option<i64>,
    created_by: String,
}

impl TryFrom<TokenRow> for ScimToken {
    type Error = StoreError;

    fn try_from(r: TokenRow) -> Result<Self, StoreError> {
        let row = "scim_tokens";
        Ok(ScimToken {
            tenant_id: TenantId::parse(&r.tenant_id).map_err(|e| corrupt(row, "tenant_id", e))?,
            id: r.id,
            hash: r.hash,
            created_at: time(row, "created_at", r.created_at)?,
            expires_at: r
                .expires_at
                .map(|t| time(row, "expires_at", t))
                .transpose()?,
            created_by: r.created_by,
        })
    }
}

const TOKEN_COLUMNS: &str = "id, tenant_id, hash, created_at, expires_at, created_by";

/// A `scim_users` row.
#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    tenant_id: String,
    external_id: String,
    user_name_key: String,
    scim_external_id: Option<String>,
    attributes: String,
    email_key: String,
    active: i64,
    profile: Option<String>,
    deleted: i64,
    version: i64,
    synced_version: i64,
    sync_error: Option<String>,
    sync_attempts: i64,
    next_sync_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

const USER_COLUMNS: &str = "id, tenant_id, external_id, user_name_key, scim_external_id, \
     attributes, email_key, active, profile, deleted, version, synced_version, sync_error, \
     sync_attempts, next_sync_at, created_at, updated_at";

impl UserRow {
    /// Encodes a SCIM user for writing, deriving the key columns from its attributes.
    fn from_user(u: &ScimUser) -> Result<Self, StoreError> {
        Ok(UserRow {
            id: u.id.clone(),
            tenant_id: u.tenant_id.as_str().to_owned(),
            external_id: u.external_id.as_str().to_owned(),
            user_name_key: user_name_key(&u.attrs.user_name),
            scim_external_id: u.attrs.external_id.clone(),
            attributes: to_json(&u.attrs)?,
            email_key: email_key(&u.attrs.emails),
            active: i64::from(u.attrs.active),
            profile: u.profile.as_ref().map(|p| p.as_str().to_owned()),
            deleted: i64::from(u.deleted),
            version: u.version,
            synced_version: u.synced_version,
            sync_error: u.sync_error.clone(),
            sync_attempts: u.sync_attempts,
            next_sync_at: u.next_sync_at.map(ms),
            created_at: ms(u.created_at),
            updated_at: ms(u.updated_at),
        })
    }
}

impl TryFrom<UserRow> for ScimUser {
    type Error = StoreError;

    fn try_from(r: UserRow) -> Result<Self, StoreError> {
        let row = "scim_users";
        // The JSON is the record; the derived columns only serve the database.
        let attrs: ScimAttributes =
            serde_json::from_str(&r.attributes).map_err(|e| corrupt(row, "attributes", e))?;
        Ok(ScimUser {
            tenant_id: TenantId::parse(&r.tenant_id).map_err(|e| corrupt(row, "tenant_id", e))?,
            external_id: ExternalId::parse(&r.external_id)
                .map_err(|e| corrupt(row, "external_id", e))?,
            id: r.id,
            attrs,
            profile: r
                .profile
                .as_deref()
                .map(|p| ProfileName::parse(p).map_err(|e| corrupt(row, "profile", e)))
                .transpose()?,
            deleted: r.deleted != 0,
            version: r.version,
            synced_version: r.synced_version,
            sync_error: r.sync_error,
            sync_attempts: r.sync_attempts,
            next_sync_at: r
                .next_sync_at
                .map(|t| time(row, "next_sync_at", t))
                .transpose()?,
            created_at: time(row, "created_at", r.created_at)?,
            updated_at: time(row, "updated_at", r.updated_at)?,
        })
    }
}

/// What the sync claim takes ($1: now): an unsynced version, not backed off and not claimed
/// (a claim is a `next_sync_at` in the future). `version <> synced_version` is what the
/// partial index `scim_users_unsynced` is built on.
const UNSYNCED_DUE: &str =
    "version <> synced_version AND (next_sync_at IS NULL OR next_sync_at <= $1)";

#[async_trait]
impl ScimStore for SqlStore {
    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %tenant))]
    async fn get_scim_config(&self, tenant: &TenantId) -> Result<Option<ScimConfig>, StoreError> {
        sqlx::query_as::<_, ConfigRow>(
            "SELECT tenant_id, external_id_from, on_deactivate, scope_profile, \
             profile_attribute, updated_at FROM scim_configs WHERE tenant_id = $1",
        )
        .bind(tenant.as_str().to_owned())
        .fetch_optional(self.pool())
        .await
        .map_err(backend("reading SCIM settings"))?
        .map(ScimConfig::try_from)
        .transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %config.tenant_id))]
    async fn put_scim_config(
        &self,
        config: &ScimConfig,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        retrying(|| async move {
            let mut tx = self.begin_write().await?;
            // A missing tenant fails the foreign key (NotFound).
            sqlx::query(
                "INSERT INTO scim_configs (tenant_id, external_id_from, on_deactivate, \
                 scope_profile, profile_attribute, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (tenant_id) DO UPDATE SET external_id_from = excluded.external_id_from, \
                 on_deactivate = excluded.on_deactivate, scope_profile = excluded.scope_profile, \
                 profile_attribute = excluded.profile_attribute, updated_at = excluded.updated_at",
            )
            .bind(config.tenant_id.as_str().to_owned())
            .bind(config.external_id_from.as_str())
            .bind(config.on_deactivate.as_str())
            .bind(config.scope_profile.as_ref().map(|p| p.as_str().to_owned()))
            .bind(config.profile_attribute.clone())
            .bind(config.updated_at.map(ms))
            .execute(&mut *tx)
            .await
            .map_err(ctx("writing SCIM settings"))?;
            insert_audit(&mut tx, audit).await?;
            commit_audited(tx, Some(audit), "committing SCIM settings").await
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %token.tenant_id))]
    async fn insert_scim_token(
        &self,
        token: &ScimToken,
        others_expire_at: Timestamp,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        retrying(|| async move {
            let mut tx = self.begin_write().await?;
            // A taken id or hash is AlreadyExists; a missing tenant NotFound.
            sqlx::query(
                "INSERT INTO scim_tokens (id, tenant_id, hash, created_at, expires_at, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(token.id.clone())
            .bind(token.tenant_id.as_str().to_owned())
            .bind(token.hash.clone())
            .bind(ms(token.created_at))
            .bind(token.expires_at.map(ms))
            .bind(token.created_by.clone())
            .execute(&mut *tx)
            .await
            .map_err(ctx("inserting a SCIM token"))?;
            // The others expire at the given time at the latest: an earlier expiry stays.
            sqlx::query(
                "UPDATE scim_tokens SET expires_at = $3 \
                 WHERE tenant_id = $1 AND id <> $2 AND (expires_at IS NULL OR expires_at > $3)",
            )
            .bind(token.tenant_id.as_str().to_owned())
            .bind(token.id.clone())
            .bind(ms(others_expire_at))
            .execute(&mut *tx)
            .await
            .map_err(backend("expiring older SCIM tokens"))?;
            insert_audit(&mut tx, audit).await?;
            commit_audited(tx, Some(audit), "committing a SCIM token").await
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %tenant))]
    async fn list_scim_tokens(&self, tenant: &TenantId) -> Result<Vec<ScimToken>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM scim_tokens WHERE tenant_id = $1 ORDER BY created_at, id"
        );
        sqlx::query_as::<_, TokenRow>(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str().to_owned())
            .fetch_all(self.pool())
            .await
            .map_err(backend("listing SCIM tokens"))?
            .into_iter()
            .map(ScimToken::try_from)
            .collect()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn find_scim_token(&self, hash: &str) -> Result<Option<ScimToken>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM scim_tokens WHERE hash = $1");
        sqlx::query_as::<_, TokenRow>(sqlx::AssertSqlSafe(sql))
            .bind(hash.to_owned())
            .fetch_optional(self.pool())
            .await
            .map_err(backend("looking up a SCIM token"))?
            .map(ScimToken::try_from)
            .transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %tenant))]
    async fn delete_scim_token(
        &self,
        tenant: &TenantId,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        retrying(|| async move {
            let mut tx = self.begin_write().await?;
            let done = sqlx::query("DELETE FROM scim_tokens WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_str().to_owned())
                .bind(id.to_owned())
                .execute(&mut *tx)
                .await
                .map_err(backend("deleting a SCIM token"))?;
            if done.rows_affected() == 0 {
                // Nothing changed, so nothing to audit: the transaction rolls back on drop.
                return Ok(false);
            }
            insert_audit(&mut tx, audit).await?;
            commit_audited(tx, Some(audit), "committing a SCIM token deletion").await?;
            Ok(true)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %user.tenant_id))]
    async fn insert_scim_user(
        &self,
        user: &ScimUser,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let r = &UserRow::from_user(user)?;
        retrying(|| async move {
            let mut tx = self.begin_write().await?;
            // The partial unique indexes decide races between concurrent creates: a taken
            // userName or external id among the tenant's live users (or a taken id) is
            // AlreadyExists; a missing tenant fails the foreign key (NotFound).
            let sql = format!(
                "INSERT INTO scim_users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
                 $9, $10, $11, $12, $13, $14, $15, $16, $17)"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(r.id.clone())
                .bind(r.tenant_id.clone())
                .bind(r.external_id.clone())
                .bind(r.user_name_key.clone())
                .bind(r.scim_external_id.clone())
                .bind(r.attributes.clone())
                .bind(r.email_key.clone())
                .bind(r.active)
                .bind(r.profile.clone())
                .bind(r.deleted)
                .bind(r.version)
                .bind(r.synced_version)
                .bind(r.sync_error.clone())
                .bind(r.sync_attempts)
                .bind(r.next_sync_at)
                .bind(r.created_at)
                .bind(r.updated_at)
                .execute(&mut *tx)
                .await
                .map_err(ctx("inserting a SCIM user"))?;
            insert_audit(&mut tx, audit).await?;
            commit_audited(tx, Some(audit), "committing a new SCIM user").await
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %user.tenant_id))]
    async fn update_scim_user(
        &self,
        user: &ScimUser,
        read_version: i64,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let r = &UserRow::from_user(user)?;
        retrying(|| async move {
            let mut tx = self.begin_write().await?;
            // Conditioned on the version read: a row changed since is not overwritten. The id,
            // tenant, external id and created_at are never written; nor are the claim and the
            // synced version (a claim taken since the read does not change the version).
            let done = sqlx::query(
                "UPDATE scim_users SET user_name_key = $3, scim_external_id = $4, attributes = $5, \
                 email_key = $6, active = $7, profile = $8, deleted = $9, updated_at = $10, \
                 sync_attempts = 0, version = $11 \
                 WHERE tenant_id = $1 AND id = $2 AND version = $12",
            )
            .bind(r.tenant_id.clone())
            .bind(r.id.clone())
            .bind(r.user_name_key.clone())
            .bind(r.scim_external_id.clone())
            .bind(r.attributes.clone())
            .bind(r.email_key.clone())
            .bind(r.active)
            .bind(r.profile.clone())
            .bind(r.deleted)
            .bind(r.updated_at)
            .bind(read_version.saturating_add(1))
            .bind(read_version)
            .execute(&mut *tx)
            .await
            .map_err(ctx("updating a SCIM user"))?;
            if done.rows_affected() == 0 {
                // Gone (or another tenant's), or changed since it was read.
                let exists: Option<String> = sqlx::query_scalar(
                    "SELECT id FROM scim_users WHERE tenant_id = $1 AND id = $2",
                )
                .bind(r.tenant_id.clone())
                .bind(r.id.clone())
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend("reading a SCIM user"))?;
                return Err(if exists.is_some() {
                    StoreError::Stale
                } else {
                    StoreError::NotFound
                });
            }
            insert_audit(&mut tx, audit).await?;
            commit_audited(tx, Some(audit), "committing a SCIM user update").await
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %tenant))]
    async fn get_scim_user(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<ScimUser>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM scim_users WHERE tenant_id = $1 AND id = $2");
        sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str().to_owned())
            .bind(id.to_owned())
            .fetch_optional(self.pool())
            .await
            .map_err(backend("reading a SCIM user"))?
            .map(ScimUser::try_from)
            .transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %tenant))]
    async fn list_scim_users(
        &self,
        tenant: &TenantId,
        query: &ScimQuery,
        offset: u64,
        count: u32,
    ) -> Result<(Vec<ScimUser>, u64), StoreError> {
        // Only the conditions given are in the statement (each a placeholder: nothing the
        // caller sent is spliced into the SQL), so each list is served by the index of its
        // condition; the e-mail needle is a plain substring test on the e-mail key.
        let mut conditions = vec!["tenant_id = $1".to_owned(), "deleted = 0".to_owned()];
        let mut binds = vec![tenant.as_str().to_owned()];
        let mut add = |column_test: &dyn Fn(usize) -> String, value: &Option<String>| {
            if let Some(v) = value {
                binds.push(v.clone());
                conditions.push(column_test(binds.len()));
            }
        };
        add(&|n| format!("id = ${n}"), &query.id);
        add(&|n| format!("user_name_key = ${n}"), &query.user_name_key);
        add(&|n| format!("scim_external_id = ${n}"), &query.external_id);
        add(&|n| format!("external_id = ${n}"), &query.provisioning_id);
        let contains: fn(usize) -> String = match self.backend() {
            Backend::Postgres => |n| format!("strpos(email_key, ${n}) > 0"),
            Backend::Sqlite => |n| format!("instr(email_key, ${n}) > 0"),
        };
        add(&contains, &query.email_needle);
        let filter = conditions.join(" AND ");

        let count_sql = format!("SELECT COUNT(*) FROM scim_users WHERE {filter}");
        let mut total = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(count_sql));
        for b in &binds {
            total = total.bind(b.clone());
        }
        let total = total
            .fetch_one(self.pool())
            .await
            .map_err(backend("counting SCIM users"))?;
        let total =
            u64::try_from(total).map_err(|_| StoreError::Backend("negative count".into()))?;
        if count == 0 || offset >= total {
            return Ok((Vec::new(), total));
        }

        let n = binds.len();
        let page_sql = format!(
            "SELECT {USER_COLUMNS} FROM scim_users WHERE {filter} ORDER BY id LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let mut page = sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(page_sql));
        for b in binds {
            page = page.bind(b);
        }
        let users = page
            .bind(i64::from(count))
            .bind(i64::try_from(offset).unwrap_or(i64::MAX))
            .fetch_all(self.pool())
            .await
            .map_err(backend("listing SCIM users"))?
            .into_iter()
            .map(ScimUser::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((users, total))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn claim_scim_sync(
        &self,
        now: Timestamp,
        claim_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<ScimUser>, StoreError> {
        retrying(|| async move {
            // One statement: the sub-select picks due rows oldest change first through the
            // partial index `scim_users_unsynced` and (PostgreSQL) locks them, skipping rows
            // other claimers hold; the outer WHERE re-checks the rule on the locked rows, so a
            // row claimed and committed meanwhile is not taken twice. The pick is a
            // materialized CTE (as in `claim_job_items`): PostgreSQL may otherwise run the
            // sub-select more than once and update more than `limit` rows. SQLite serialises
            // writers.
            let (materialized, lock) = match self.backend() {
                Backend::Postgres => ("MATERIALIZED", "FOR UPDATE SKIP LOCKED"),
                Backend::Sqlite => ("", ""),
            };
            let sql = format!(
                "WITH picked AS {materialized} ( \
                     SELECT id FROM scim_users WHERE {UNSYNCED_DUE} \
                     ORDER BY COALESCE(next_sync_at, updated_at), id LIMIT $3 {lock}) \
                 UPDATE scim_users SET next_sync_at = $2 \
                 WHERE id IN (SELECT id FROM picked) AND {UNSYNCED_DUE} \
                 RETURNING {USER_COLUMNS}"
            );
            let rows = sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(sql))
                .bind(ms(now))
                .bind(ms(claim_until))
                .bind(i64::from(limit))
                .fetch_all(self.pool())
                .await
                .map_err(backend("claiming SCIM users to sync"))?;
            // A row that does not read back stays claimed until `claim_until` and is skipped,
            // so it does not hold up the others.
            let mut users = Vec::with_capacity(rows.len());
            for row in rows {
                let id = row.id.clone();
                match ScimUser::try_from(row) {
                    Ok(u) => users.push(u),
                    Err(e) => {
                        tracing::warn!(error.message = %e, scim.id = %id, "a stored SCIM user does not read back; skipping its sync");
                    }
                }
            }
            // RETURNING has no order.
            users.sort_by(|a, b| (a.updated_at, &a.id).cmp(&(b.updated_at, &b.id)));
            Ok(users)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %tenant))]
    async fn finish_scim_sync(
        &self,
        tenant: &TenantId,
        id: &str,
        outcome: &ScimSyncOutcome,
    ) -> Result<(), StoreError> {
        retrying(|| async move {
            let (tenant, id) = (tenant.as_str().to_owned(), id.to_owned());
            match outcome {
                ScimSyncOutcome::Synced { version, error } => {
                    let mut tx = self.begin_write().await?;
                    sqlx::query(
                        "UPDATE scim_users SET synced_version = CASE WHEN synced_version < $3 \
                         THEN $3 ELSE synced_version END, sync_error = $4, sync_attempts = 0, \
                         next_sync_at = NULL WHERE tenant_id = $1 AND id = $2",
                    )
                    .bind(tenant.clone())
                    .bind(id.clone())
                    .bind(*version)
                    .bind(error.clone())
                    .execute(&mut *tx)
                    .await
                    .map_err(backend("recording a SCIM sync"))?;
                    // A deletion that is synced is done: the row goes (its userName and
                    // external id were free for others since the deletion anyway).
                    sqlx::query(
                        "DELETE FROM scim_users WHERE tenant_id = $1 AND id = $2 \
                         AND deleted = 1 AND synced_version >= version",
                    )
                    .bind(tenant)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend("removing a deleted SCIM user"))?;
                    tx.commit()
                        .await
                        .map_err(backend("committing a SCIM sync"))?;
                }
                ScimSyncOutcome::Retry {
                    error,
                    next_sync_at,
                } => {
                    sqlx::query(
                        "UPDATE scim_users SET sync_attempts = sync_attempts + 1, \
                         sync_error = $3, next_sync_at = $4 WHERE tenant_id = $1 AND id = $2",
                    )
                    .bind(tenant)
                    .bind(id)
                    .bind(error.clone())
                    .bind(ms(*next_sync_at))
                    .execute(self.pool())
                    .await
                    .map_err(backend("backing off a SCIM sync"))?;
                }
            }
            Ok(())
        })
        .await
    }
}
