//! Tenants and scope profiles.

use async_trait::async_trait;
use provisioner_core::StoreError;
use provisioner_core::ids::{ProfileName, TenantId};
use provisioner_core::model::{AuditEvent, ScopeProfile, Tenant};
use provisioner_core::ports::{TenantDeletion, TenantStore};
use sqlx::AnyConnection;

use crate::audit::{commit_audited, insert_audit};
use crate::error::{backend, ctx, retrying};
use crate::rows::{ProfileRow, TenantRow, ms, to_json};
use crate::{Backend, SqlStore};

/// Inserts a profile unless (tenant, name) exists; returns whether it inserted.
async fn insert_profile(conn: &mut AnyConnection, p: &ScopeProfile) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO scope_profiles (tenant_id, name, scopes, created_at, updated_at, \
         max_key_age_secs, rotation_grace_secs) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant_id, name) DO NOTHING",
    )
    .bind(p.tenant_id.as_str().to_owned())
    .bind(p.name.as_str().to_owned())
    .bind(to_json(&p.scopes)?)
    .bind(ms(p.created_at))
    .bind(ms(p.updated_at))
    .bind(p.max_key_age_secs)
    .bind(p.rotation_grace_secs)
    .execute(conn)
    .await
    .map_err(ctx("inserting a scope profile"))?;
    Ok(done.rows_affected() == 1)
}

#[async_trait]
impl TenantStore for SqlStore {
    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %tenant.id))]
    async fn insert_tenant(
        &self,
        tenant: &Tenant,
        profiles: &[ScopeProfile],
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        retrying(|| async move {
            let r = TenantRow::from_tenant(tenant)?;
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO tenants (id, display_name, status, base_url, upstream_user_id, pat_sealed, \
                 pat_fingerprint, app_defaults, rate_limit, allowed_scopes, default_scope_profile, \
                 created_at, updated_at, version, auto_key_check) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            )
            .bind(r.id)
            .bind(r.display_name)
            .bind(r.status)
            .bind(r.base_url)
            .bind(r.upstream_user_id)
            .bind(r.pat_sealed)
            .bind(r.pat_fingerprint)
            .bind(r.app_defaults)
            .bind(r.rate_limit)
            .bind(r.allowed_scopes)
            .bind(r.default_scope_profile)
            .bind(r.created_at)
            .bind(r.updated_at)
            .bind(r.version)
            .bind(r.auto_key_check)
            .execute(&mut *tx)
            .await
            .map_err(ctx("inserting a tenant"))?;
            for p in profiles {
                if !insert_profile(&mut tx, p).await? {
                    return Err(StoreError::Backend(format!(
                        "duplicate scope profile {} in a new tenant",
                        p.name
                    )));
                }
            }
            insert_audit(&mut tx, audit).await?;
            commit_audited(tx, Some(audit), "committing a new tenant").await
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %id))]
    async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        sqlx::query_as::<_, TenantRow>("SELECT * FROM tenants WHERE id = $1")
            .bind(id.as_str().to_owned())
            .fetch_optional(self.pool())
            .await
            .map_err(backend("reading a tenant"))?
            .map(Tenant::try_from)
            .transpose()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn list_tenants(
        &self,
        after: Option<&TenantId>,
        limit: u32,
    ) -> Result<Vec<Tenant>, StoreError> {
        // Tenant ids are never empty: "" as the cursor lists from the start.
        sqlx::query_as::<_, TenantRow>("SELECT * FROM tenants WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after.map_or("", |a| a.as_str()).to_owned())
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await
            .map_err(backend("listing tenants"))?
            .into_iter()
            .map(Tenant::try_from)
            .collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %tenant.id))]
    async fn update_tenant(
        &self,
        tenant: &Tenant,
        read_version: i64,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        retrying(|| async move {
            let r = TenantRow::from_tenant(tenant)?;
            let id = r.id.clone();
            let mut tx = self.begin_write().await?;
            // Conditioned on the version read: a row changed since is not overwritten.
            let done = sqlx::query(
                "UPDATE tenants SET display_name = $2, status = $3, base_url = $4, upstream_user_id = $5, \
                 pat_sealed = $6, pat_fingerprint = $7, app_defaults = $8, rate_limit = $9, \
                 allowed_scopes = $10, default_scope_profile = $11, updated_at = $12, version = $13, \
                 auto_key_check = $15 \
                 WHERE id = $1 AND version = $14",
            )
            .bind(r.id)
            .bind(r.display_name)
            .bind(r.status)
            .bind(r.base_url)
            .bind(r.upstream_user_id)
            .bind(r.pat_sealed)
            .bind(r.pat_fingerprint)
            .bind(r.app_defaults)
            .bind(r.rate_limit)
            .bind(r.allowed_scopes)
            .bind(r.default_scope_profile)
            .bind(r.updated_at)
            .bind(read_version.saturating_add(1))
            .bind(read_version)
            .bind(r.auto_key_check)
            .execute(&mut *tx)
            .await
            .map_err(backend("updating a tenant"))?;
            if done.rows_affected() == 0 {
                // Gone, or changed since it was read.
                let exists: Option<String> = sqlx::query_scalar("SELECT id FROM tenants WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(backend("reading a tenant"))?;
                return Err(if exists.is_some() {
                    StoreError::Stale
                } else {
                    StoreError::NotFound
                });
            }
            insert_audit(&mut tx, audit).await?;
            commit_audited(tx, Some(audit), "committing a tenant update").await
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %id))]
    async fn delete_tenant(
        &self,
        id: &TenantId,
        audit: &AuditEvent,
    ) -> Result<TenantDeletion, StoreError> {
        retrying(|| async move {
            let id = id.as_str().to_owned();
            let mut tx = self.begin_write().await?;
            // On PostgreSQL, lock the tenant row first: inserting a user checks its foreign key
            // with a KEY SHARE lock, which conflicts, so no user can appear until we commit. Then
            // lock the tenant's user rows and count the live ones: a concurrent update (a deleted
            // user being provisioned again) either committed before, and is counted, or waits for
            // us. SQLite needs neither: BEGIN IMMEDIATE already serialises writers.
            let (lock_tenant, count_live) = match self.backend() {
                Backend::Postgres => (
                    "SELECT id FROM tenants WHERE id = $1 FOR UPDATE",
                    "SELECT COUNT(*) FROM (SELECT status FROM users WHERE tenant_id = $1 FOR UPDATE) u \
                     WHERE status <> 'deleted'",
                ),
                Backend::Sqlite => (
                    "SELECT id FROM tenants WHERE id = $1",
                    "SELECT COUNT(*) FROM users WHERE tenant_id = $1 AND status <> 'deleted'",
                ),
            };
            let found: Option<String> = sqlx::query_scalar(lock_tenant)
                .bind(id.clone())
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend("locking a tenant"))?;
            if found.is_none() {
                return Ok(TenantDeletion::NotFound);
            }
            let live: i64 = sqlx::query_scalar(count_live)
                .bind(id.clone())
                .fetch_one(&mut *tx)
                .await
                .map_err(backend("counting a tenant's live users"))?;
            if live > 0 {
                return Ok(TenantDeletion::HasLiveUsers);
            }
            // Profiles and (deleted) user rows go with it: ON DELETE CASCADE.
            sqlx::query("DELETE FROM tenants WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(backend("deleting a tenant"))?;
            insert_audit(&mut tx, audit).await?;
            commit_audited(tx, Some(audit), "committing a tenant deletion").await?;
            Ok(TenantDeletion::Deleted)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %profile.tenant_id))]
    async fn put_profile(
        &self,
        profile: &ScopeProfile,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        retrying(|| async move {
            let mut tx = self.begin_write().await?;
            // Insert-or-nothing, then update: portable, and tells "created" from "replaced"
            // without dialect tricks. A missing tenant fails the insert's foreign key (NotFound).
            let created = insert_profile(&mut tx, profile).await?;
            if !created {
                // A replaced profile keeps its created_at.
                sqlx::query(
                    "UPDATE scope_profiles SET scopes = $3, updated_at = $4, max_key_age_secs = $5, \
                     rotation_grace_secs = $6 WHERE tenant_id = $1 AND name = $2",
                )
                    .bind(profile.tenant_id.as_str().to_owned())
                    .bind(profile.name.as_str().to_owned())
                    .bind(to_json(&profile.scopes)?)
                    .bind(ms(profile.updated_at))
                    .bind(profile.max_key_age_secs)
                    .bind(profile.rotation_grace_secs)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend("replacing a scope profile"))?;
            }
            insert_audit(&mut tx, audit).await?;
            commit_audited(tx, Some(audit), "committing a scope profile").await?;
            Ok(created)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %tenant))]
    async fn get_profile(
        &self,
        tenant: &TenantId,
        name: &ProfileName,
    ) -> Result<Option<ScopeProfile>, StoreError> {
        sqlx::query_as::<_, ProfileRow>(
            "SELECT * FROM scope_profiles WHERE tenant_id = $1 AND name = $2",
        )
        .bind(tenant.as_str().to_owned())
        .bind(name.as_str().to_owned())
        .fetch_optional(self.pool())
        .await
        .map_err(backend("reading a scope profile"))?
        .map(ScopeProfile::try_from)
        .transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %tenant))]
    async fn list_profiles(&self, tenant: &TenantId) -> Result<Vec<ScopeProfile>, StoreError> {
        sqlx::query_as::<_, ProfileRow>(
            "SELECT * FROM scope_profiles WHERE tenant_id = $1 ORDER BY name",
        )
        .bind(tenant.as_str().to_owned())
        .fetch_all(self.pool())
        .await
        .map_err(backend("listing scope profiles"))?
        .into_iter()
        .map(ScopeProfile::try_from)
        .collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant.id = %tenant))]
    async fn delete_profile(
        &self,
        tenant: &TenantId,
        name: &ProfileName,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        retrying(|| async move {
            let mut tx = self.begin_write().await?;
            let done = sqlx::query("DELETE FROM scope_profiles WHERE tenant_id = $1 AND name = $2")
                .bind(tenant.as_str().to_owned())
                .bind(name.as_str().to_owned())
                .execute(&mut *tx)
                .await
                .map_err(backend("deleting a scope profile"))?;
            if done.rows_affected() == 0 {
                // Nothing changed, so nothing to audit: the transaction rolls back on drop.
                return Ok(false);
            }
            insert_audit(&mut tx, audit).await?;
            commit_audited(tx, Some(audit), "committing a scope profile deletion").await?;
            Ok(true)
        })
        .await
    }
}
