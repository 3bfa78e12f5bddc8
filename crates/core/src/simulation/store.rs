//! The simulated store: [`MemStore`] (the same rules as the SQL stores) behind a wrapper that
//! adds seeded pauses and faults at user-row calls, and records which operation took which
//! lease and wrote which row.
//!
//! At a user-row write the wrapper may: fail it with `Backend` (nothing applied), hang before
//! it (a crash before the commit) or hang after it (a crash after the commit, the answer lost).
//! Reads and writes may pause before and after, so other operations run in between (a read
//! and the lease taken on it are not atomic in the service either). Tenant and audit-only
//! calls are delegated as they are.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Commit, Ctx, current_op, lock};
use crate::error::StoreError;
use crate::idempotency::{
    IdempotencyBinding, IdempotencyClaim, IdempotencyKey, IdempotencyRecord, SavedResponse,
};
use crate::ids::{ExternalId, ProfileName, TenantId};
use crate::jobs::{ItemOutcome, Job, JobItem};
use crate::model::{AuditEvent, Lease, ScopeProfile, Tenant, Timestamp, User, UserStatus};
use crate::ports::{AuditStore, JobStore, Store, TenantDeletion, TenantStore, UserStore};
use crate::testing::MemStore;

pub(crate) struct SimStore {
    pub ctx: Arc<Ctx>,
    pub inner: MemStore,
}

/// What happens at a write.
enum WriteFault {
    None,
    Error,
    HangBefore,
    HangAfter,
}

impl SimStore {
    fn write_fault(&self) -> WriteFault {
        let ctx = &self.ctx;
        if !ctx.faulty() || !ctx.roll(ctx.fault_rate / 2) {
            return WriteFault::None;
        }
        let f = ctx.faults;
        let mut options = Vec::new();
        if f.store_error {
            options.push(WriteFault::Error);
        }
        if f.crash {
            options.push(WriteFault::HangBefore);
            options.push(WriteFault::HangAfter);
        }
        if options.is_empty() {
            return WriteFault::None;
        }
        ctx.count_fault();
        let i = usize::try_from(ctx.rand(0..options.len() as u64)).unwrap_or(0);
        options.swap_remove(i)
    }

    /// Runs a user-row write with its fault; `what` names it in the trace.
    async fn write<T>(
        &self,
        what: String,
        apply: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let op = current_op();
        self.ctx.maybe_delay(50).await;
        let fault = self.write_fault();
        match fault {
            WriteFault::Error => {
                self.ctx
                    .log(format!("op{op} store {what} -> injected Backend error"));
                lock(&self.ctx.store_failed).insert(op);
                return Err(StoreError::Backend("injected store failure".into()));
            }
            WriteFault::HangBefore => self.ctx.hang(&format!("before store {what}")).await,
            _ => {}
        }
        let r = apply.await;
        self.sync_holders().await;
        // Traced at the commit, before any pause: the trace shows the store's real order.
        self.ctx
            .log(format!("op{op} store {what} -> {:?}", r.as_ref().err()));
        if let WriteFault::HangAfter = fault {
            self.ctx.hang(&format!("after store {what}")).await
        }
        self.ctx.maybe_delay(50).await;
        r
    }

    /// Recomputes which operation holds each app's row (after every write).
    async fn sync_holders(&self) {
        let mut m = std::collections::BTreeMap::new();
        let tenants = self.inner.list_tenants(None, 100).await.unwrap_or_default();
        for t in tenants {
            for u in self
                .inner
                .list_users(&t.id, None, None, 1000)
                .await
                .unwrap_or_default()
            {
                let op = u
                    .lease
                    .as_ref()
                    .and_then(|l| lock(&self.ctx.owners).get(&l.owner).copied());
                m.insert(u.app_id.to_string(), op);
            }
        }
        *lock(&self.ctx.holders) = m;
    }

    fn took_lease(&self, user: &User) {
        let op = current_op();
        if let Some(l) = &user.lease {
            lock(&self.ctx.owners).insert(l.owner.clone(), op);
        }
        let seq = self.ctx.next_seq();
        lock(&self.ctx.acquisitions).push((op, user.external_id.to_string(), seq));
    }
}

fn describe(ctx: &Ctx, u: &User) -> String {
    format!(
        "{} {}/{} g{} key={} retired={}",
        u.external_id,
        u.status,
        u.step,
        u.generation,
        u.key
            .as_ref()
            .map_or("-".into(), |k| ctx.key_name(&k.fingerprint)),
        u.retired_key
            .as_ref()
            .map_or("-".into(), |k| ctx.key_name(&k.fingerprint)),
    )
}

#[async_trait]
impl TenantStore for SimStore {
    async fn insert_tenant(
        &self,
        tenant: &Tenant,
        profiles: &[ScopeProfile],
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        self.inner.insert_tenant(tenant, profiles, audit).await
    }
    async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        self.inner.get_tenant(id).await
    }
    async fn list_tenants(
        &self,
        after: Option<&TenantId>,
        limit: u32,
    ) -> Result<Vec<Tenant>, StoreError> {
        self.inner.list_tenants(after, limit).await
    }
    async fn update_tenant(
        &self,
        tenant: &Tenant,
        read_version: i64,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        self.inner.update_tenant(tenant, read_version, audit).await
    }
    async fn delete_tenant(
        &self,
        id: &TenantId,
        audit: &AuditEvent,
    ) -> Result<TenantDeletion, StoreError> {
        self.inner.delete_tenant(id, audit).await
    }
    async fn put_profile(
        &self,
        profile: &ScopeProfile,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        self.inner.put_profile(profile, audit).await
    }
    async fn get_profile(
        &self,
        tenant: &TenantId,
        name: &ProfileName,
    ) -> Result<Option<ScopeProfile>, StoreError> {
        self.inner.get_profile(tenant, name).await
    }
    async fn list_profiles(&self, tenant: &TenantId) -> Result<Vec<ScopeProfile>, StoreError> {
        self.inner.list_profiles(tenant).await
    }
    async fn delete_profile(
        &self,
        tenant: &TenantId,
        name: &ProfileName,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        self.inner.delete_profile(tenant, name, audit).await
    }
}

#[async_trait]
impl UserStore for SimStore {
    async fn keys_older_than(
        &self,
        tenant: &TenantId,
        profile: &ProfileName,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<ExternalId>, StoreError> {
        self.inner
            .keys_older_than(tenant, profile, before, limit)
            .await
    }
    async fn get_user(
        &self,
        tenant: &TenantId,
        external_id: &ExternalId,
    ) -> Result<Option<User>, StoreError> {
        let r = self.inner.get_user(tenant, external_id).await;
        // A pause after the read: others may change the row before the reader acts on it.
        self.ctx.maybe_delay(50).await;
        r
    }
    async fn list_users(
        &self,
        tenant: &TenantId,
        status: Option<UserStatus>,
        after: Option<&ExternalId>,
        limit: u32,
    ) -> Result<Vec<User>, StoreError> {
        let r = self.inner.list_users(tenant, status, after, limit).await;
        self.ctx.maybe_delay(50).await;
        r
    }
    async fn insert_user(&self, user: &User, audit: Option<&AuditEvent>) -> Result<(), StoreError> {
        let r = self
            .write(format!("insert {}", describe(&self.ctx, user)), async {
                let r = self.inner.insert_user(user, audit).await;
                if r.is_ok() {
                    self.took_lease(user);
                }
                r
            })
            .await;
        if r.is_ok() {
            lock(&self.ctx.writers).insert(current_op());
        }
        r
    }
    async fn acquire_lease(
        &self,
        tenant: &TenantId,
        external_id: &ExternalId,
        lease: &Lease,
        now: Timestamp,
        expected_version: Option<i64>,
    ) -> Result<Option<User>, StoreError> {
        let r = self
            .write(format!("acquire {external_id}"), async {
                let r = self
                    .inner
                    .acquire_lease(tenant, external_id, lease, now, expected_version)
                    .await;
                if let Ok(Some(u)) = &r {
                    self.took_lease(u);
                }
                r
            })
            .await;
        if let Ok(Some(u)) = &r {
            let op = current_op();
            self.ctx
                .log(format!("op{op}   acquired {}", describe(&self.ctx, u)));
        }
        r
    }
    async fn renew_lease(
        &self,
        tenant: &TenantId,
        external_id: &ExternalId,
        owner: &str,
        generation: i64,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.write(
            format!("renew {external_id}"),
            self.inner
                .renew_lease(tenant, external_id, owner, generation, expires_at),
        )
        .await
    }
    async fn defer_user(
        &self,
        tenant: &TenantId,
        external_id: &ExternalId,
        owner: &str,
        now: Timestamp,
        next_attempt_at: Timestamp,
        last_error: &str,
    ) -> Result<(), StoreError> {
        self.write(
            format!("defer {external_id}"),
            self.inner
                .defer_user(tenant, external_id, owner, now, next_attempt_at, last_error),
        )
        .await
    }
    async fn claim_due_user(
        &self,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        let r = self
            .write("claim".to_owned(), async {
                let r = self.inner.claim_due_user(lease, now).await;
                if let Ok(Some(u)) = &r {
                    self.took_lease(u);
                }
                r
            })
            .await;
        if let Ok(Some(u)) = &r {
            let op = current_op();
            self.ctx
                .log(format!("op{op}   claimed {}", describe(&self.ctx, u)));
        }
        r
    }
    async fn update_user(
        &self,
        user: &User,
        owner: &str,
        audit: Option<&AuditEvent>,
    ) -> Result<(), StoreError> {
        let op = current_op();
        let what = format!(
            "update {}{}{}",
            describe(&self.ctx, user),
            if user.lease.is_some() {
                " leased"
            } else {
                " released"
            },
            audit.map_or(String::new(), |a| format!(" audit={}", a.action)),
        );
        let ext = user.external_id.to_string();
        let ctx = self.ctx.clone();
        let r = self
            .write(what, async {
                let before = self
                    .inner
                    .get_user(&user.tenant_id, &user.external_id)
                    .await
                    .ok()
                    .flatten();
                let r = self.inner.update_user(user, owner, audit).await;
                if r.is_ok() {
                    // The commit's place in the global order (before any pause after it).
                    let seq = ctx.next_seq();
                    lock(&ctx.commits).push(Commit {
                        op,
                        user: ext,
                        seq,
                        world_ms: ctx.world_ms(),
                        from: before.map(|u| u.status),
                        to: user.status,
                        key: user.key.as_ref().map(|k| k.fingerprint.clone()),
                    });
                }
                r
            })
            .await;
        if r.is_ok() {
            lock(&self.ctx.writers).insert(op);
        }
        r
    }
    async fn release_leases(&self, owner_prefix: &str) -> Result<u64, StoreError> {
        let r = self.inner.release_leases(owner_prefix).await;
        self.sync_holders().await;
        r
    }
    async fn find_by_fingerprint(
        &self,
        fingerprint: &str,
    ) -> Result<Option<(TenantId, ExternalId)>, StoreError> {
        self.inner.find_by_fingerprint(fingerprint).await
    }
    async fn due_users(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(TenantId, ExternalId)>, StoreError> {
        let r = self.inner.due_users(now, limit).await;
        self.ctx.maybe_delay(50).await;
        r
    }
    async fn count_users_by_status(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<(UserStatus, u64)>, StoreError> {
        self.inner.count_users_by_status(tenant).await
    }
    async fn count_all_users_by_status(
        &self,
    ) -> Result<Vec<(TenantId, UserStatus, u64)>, StoreError> {
        self.inner.count_all_users_by_status().await
    }
}

#[async_trait]
impl AuditStore for SimStore {
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        self.write(
            format!("append_audit {}", event.action),
            self.inner.append_audit(event),
        )
        .await
    }
    async fn list_audit(
        &self,
        tenant: Option<&TenantId>,
        after: Option<&str>,
        since: Option<Timestamp>,
        limit: u32,
    ) -> Result<Vec<(AuditEvent, String)>, StoreError> {
        self.inner.list_audit(tenant, after, since, limit).await
    }
}

#[async_trait]
impl crate::ports::MaintenanceStore for SimStore {
    async fn maintenance_done(&self, name: &str) -> Result<bool, StoreError> {
        self.inner.maintenance_done(name).await
    }
    async fn record_maintenance(&self, name: &str, at: Timestamp) -> Result<(), StoreError> {
        self.inner.record_maintenance(name, at).await
    }
}

/// A failed record is harmless (the service goes on); injected like a row write.
#[async_trait]
impl crate::ports::AccountStore for SimStore {
    async fn auto_key_learning(
        &self,
        account: &str,
    ) -> Result<crate::model::AutoKeyLearning, StoreError> {
        self.ctx.maybe_delay(50).await;
        self.inner.auto_key_learning(account).await
    }
    async fn record_auto_key_check(
        &self,
        account: &str,
        found: bool,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        // Not a row write: a failure here must not excuse a lease left held (check (e)).
        self.ctx.maybe_delay(50).await;
        let ctx = &self.ctx;
        if ctx.faulty() && ctx.faults.store_error && ctx.roll(ctx.fault_rate / 2) {
            ctx.count_fault();
            ctx.log(format!(
                "op{} store record_auto_key_check -> injected Backend error",
                current_op()
            ));
            return Err(StoreError::Backend("injected store failure".into()));
        }
        self.inner.record_auto_key_check(account, found, at).await
    }
}

/// Jobs are not simulated (their items go through `provision`, which is): plain delegation.
#[async_trait]
impl JobStore for SimStore {
    async fn insert_job(
        &self,
        job: &Job,
        items: &[JobItem],
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        self.inner.insert_job(job, items, audit).await
    }
    async fn get_job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        self.inner.get_job(id).await
    }
    async fn list_jobs(
        &self,
        tenant: &TenantId,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        self.inner.list_jobs(tenant, before, limit).await
    }
    async fn job_errors(&self, id: &str, limit: u32) -> Result<Vec<JobItem>, StoreError> {
        self.inner.job_errors(id, limit).await
    }
    async fn claim_job_items(
        &self,
        lease: &Lease,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<JobItem>, StoreError> {
        self.inner.claim_job_items(lease, now, limit).await
    }
    async fn renew_job_item(
        &self,
        job_id: &str,
        idx: i64,
        owner: &str,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner
            .renew_job_item(job_id, idx, owner, expires_at)
            .await
    }
    async fn finish_job_item(
        &self,
        job_id: &str,
        idx: i64,
        owner: &str,
        outcome: &ItemOutcome,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.inner
            .finish_job_item(job_id, idx, owner, outcome, now)
            .await
    }
    async fn cancel_job(
        &self,
        id: &str,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> Result<Option<Job>, StoreError> {
        self.inner.cancel_job(id, now, audit).await
    }
    async fn release_job_items(&self, owner_prefix: &str) -> Result<u64, StoreError> {
        self.inner.release_job_items(owner_prefix).await
    }
}

/// Idempotency records are not simulated (no operation sends a key): plain delegation, with
/// the user writes going through the same fault injection as the unbound ones.
#[async_trait]
impl crate::ports::IdempotencyStore for SimStore {
    async fn get_idempotency(
        &self,
        subject: &str,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.inner.get_idempotency(subject, key).await
    }
    async fn put_idempotency(
        &self,
        record: &IdempotencyRecord,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner.put_idempotency(record, now).await
    }
    async fn claim_idempotency(
        &self,
        subject: &str,
        key: &IdempotencyKey,
        claim: &Lease,
        now: Timestamp,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.inner.claim_idempotency(subject, key, claim, now).await
    }
    async fn release_idempotency(&self, claim: &IdempotencyClaim) -> Result<(), StoreError> {
        self.inner.release_idempotency(claim).await
    }
    async fn bind_idempotency(
        &self,
        claim: &IdempotencyClaim,
        binding: &IdempotencyBinding,
    ) -> Result<bool, StoreError> {
        self.inner.bind_idempotency(claim, binding).await
    }
    async fn insert_user_bound(
        &self,
        user: &User,
        audit: Option<&AuditEvent>,
        claim: &IdempotencyClaim,
    ) -> Result<(), StoreError> {
        self.write(
            format!("insert (bound) {}", describe(&self.ctx, user)),
            self.inner.insert_user_bound(user, audit, claim),
        )
        .await
    }
    async fn update_user_bound(
        &self,
        user: &User,
        owner: &str,
        audit: Option<&AuditEvent>,
        claim: &IdempotencyClaim,
    ) -> Result<(), StoreError> {
        self.write(
            format!("update (bound) {}", describe(&self.ctx, user)),
            self.inner.update_user_bound(user, owner, audit, claim),
        )
        .await
    }
    async fn complete_idempotency(
        &self,
        subject: &str,
        key: &IdempotencyKey,
        created_at: Timestamp,
        response: &SavedResponse,
    ) -> Result<bool, StoreError> {
        self.inner
            .complete_idempotency(subject, key, created_at, response)
            .await
    }
    async fn purge_idempotency(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.inner.purge_idempotency(now).await
    }
}

#[async_trait]
impl Store for SimStore {
    async fn ready(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// SCIM resources are not simulated (their sync goes through the use cases, which are): plain
/// delegation.
#[async_trait]
impl crate::ports::ScimStore for SimStore {
    async fn get_scim_config(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<crate::scim::ScimConfig>, StoreError> {
        self.inner.get_scim_config(tenant).await
    }
    async fn put_scim_config(
        &self,
        config: &crate::scim::ScimConfig,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        self.inner.put_scim_config(config, audit).await
    }
    async fn insert_scim_token(
        &self,
        token: &crate::scim::ScimToken,
        others_expire_at: Timestamp,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        self.inner
            .insert_scim_token(token, others_expire_at, audit)
            .await
    }
    async fn list_scim_tokens(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<crate::scim::ScimToken>, StoreError> {
        self.inner.list_scim_tokens(tenant).await
    }
    async fn find_scim_token(
        &self,
        hash: &str,
    ) -> Result<Option<crate::scim::ScimToken>, StoreError> {
        self.inner.find_scim_token(hash).await
    }
    async fn delete_scim_token(
        &self,
        tenant: &TenantId,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        self.inner.delete_scim_token(tenant, id, audit).await
    }
    async fn insert_scim_user(
        &self,
        user: &crate::scim::ScimUser,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        self.inner.insert_scim_user(user, audit).await
    }
    async fn update_scim_user(
        &self,
        user: &crate::scim::ScimUser,
        read_version: i64,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        self.inner.update_scim_user(user, read_version, audit).await
    }
    async fn get_scim_user(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<crate::scim::ScimUser>, StoreError> {
        self.inner.get_scim_user(tenant, id).await
    }
    async fn list_scim_users(
        &self,
        tenant: &TenantId,
        query: &crate::scim::ScimQuery,
        offset: u64,
        count: u32,
    ) -> Result<(Vec<crate::scim::ScimUser>, u64), StoreError> {
        self.inner
            .list_scim_users(tenant, query, offset, count)
            .await
    }
    async fn claim_scim_sync(
        &self,
        now: Timestamp,
        claim_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<crate::scim::ScimUser>, StoreError> {
        self.inner.claim_scim_sync(now, claim_until, limit).await
    }
    async fn finish_scim_sync(
        &self,
        tenant: &TenantId,
        id: &str,
        outcome: &crate::scim::ScimSyncOutcome,
    ) -> Result<(), StoreError> {
        self.inner.finish_scim_sync(tenant, id, outcome).await
    }
}

/// Webhooks are not simulated: plain delegation.
#[async_trait]
impl crate::ports::WebhookStore for SimStore {
    async fn insert_endpoint(
        &self,
        endpoint: &crate::webhooks::WebhookEndpoint,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        self.inner.insert_endpoint(endpoint, audit).await
    }
    async fn get_endpoint(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<crate::webhooks::WebhookEndpoint>, StoreError> {
        self.inner.get_endpoint(tenant, id).await
    }
    async fn list_endpoints(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<crate::webhooks::WebhookEndpoint>, StoreError> {
        self.inner.list_endpoints(tenant).await
    }
    async fn update_endpoint(
        &self,
        endpoint: &crate::webhooks::WebhookEndpoint,
        read_version: i64,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        self.inner
            .update_endpoint(endpoint, read_version, audit)
            .await
    }
    async fn delete_endpoint(
        &self,
        tenant: &TenantId,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        self.inner.delete_endpoint(tenant, id, audit).await
    }
    async fn get_event(
        &self,
        id: &str,
    ) -> Result<Option<(crate::webhooks::OutboxEvent, String)>, StoreError> {
        self.inner.get_event(id).await
    }
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        claim_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<crate::webhooks::Delivery>, StoreError> {
        self.inner.claim_deliveries(now, claim_until, limit).await
    }
    async fn record_attempt(
        &self,
        tenant: &TenantId,
        outcome: &crate::webhooks::AttemptOutcome,
    ) -> Result<(), StoreError> {
        self.inner.record_attempt(tenant, outcome).await
    }
    async fn list_deliveries(
        &self,
        tenant: &TenantId,
        endpoint: Option<&str>,
        status: Option<crate::webhooks::DeliveryStatus>,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<crate::webhooks::Delivery>, StoreError> {
        self.inner
            .list_deliveries(tenant, endpoint, status, after, limit)
            .await
    }
    async fn list_attempts(
        &self,
        tenant: &TenantId,
        event_id: &str,
        endpoint: Option<&str>,
    ) -> Result<Vec<crate::webhooks::DeliveryAttempt>, StoreError> {
        self.inner.list_attempts(tenant, event_id, endpoint).await
    }
    async fn purge_webhook_history(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.inner.purge_webhook_history(before).await
    }
    async fn requeue_deliveries(
        &self,
        tenant: &TenantId,
        endpoint: &str,
        event_id: Option<&str>,
        failed_since: Option<Timestamp>,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> Result<u64, StoreError> {
        self.inner
            .requeue_deliveries(tenant, endpoint, event_id, failed_since, now, audit)
            .await
    }
}
