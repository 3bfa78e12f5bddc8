//! The in-memory [`Store`]: the same rules as the SQL stores (uniqueness, leases, versions,
//! audit in the same "transaction"), with hooks that let a test land another writer's change
//! between a read and a write.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::idempotency::{
    IdempotencyBinding, IdempotencyClaim, IdempotencyKey, IdempotencyRecord, SavedResponse,
};
use crate::ids::{ExternalId, ProfileName, TenantId};
use crate::jobs::{Job, JobItem};
use crate::model::{
    AuditEvent, AutoKeyLearning, Lease, ScopeProfile, Tenant, Timestamp, User, UserStatus,
};
use crate::ports::{
    AccountStore, AuditStore, IdempotencyStore, MaintenanceStore, Store, TenantDeletion,
    TenantStore, UserStore,
};

use super::lock;

#[derive(Default)]
pub(super) struct MemState {
    pub(super) tenants: BTreeMap<TenantId, Tenant>,
    profiles: BTreeMap<(TenantId, ProfileName), ScopeProfile>,
    users: BTreeMap<(TenantId, ExternalId), User>,
    audit: Vec<AuditEvent>,
    maintenance: BTreeMap<String, Timestamp>,
    idempotency: BTreeMap<(String, String), IdempotencyRecord>,
    accounts: BTreeMap<String, AutoKeyLearning>,
    pub(super) jobs: BTreeMap<String, Job>,
    pub(super) items: BTreeMap<(String, i64), (JobItem, Option<Lease>)>,
    pub(super) scim_configs: BTreeMap<TenantId, crate::scim::ScimConfig>,
    pub(super) scim_tokens: BTreeMap<String, crate::scim::ScimToken>,
    pub(super) scim_users: BTreeMap<String, crate::scim::ScimUser>,
    pub(super) endpoints: BTreeMap<String, crate::webhooks::WebhookEndpoint>,
    pub(super) events: BTreeMap<String, (crate::webhooks::OutboxEvent, String)>,
    pub(super) deliveries: BTreeMap<(String, String), crate::webhooks::Delivery>,
    pub(super) attempts: Vec<crate::webhooks::DeliveryAttempt>,
}

impl MemState {
    /// The unanswered record `claim` names, if `claim.owner` holds its claim.
    fn claimed(&mut self, claim: &IdempotencyClaim) -> Option<&mut IdempotencyRecord> {
        self.idempotency
            .get_mut(&(claim.subject.clone(), claim.key.as_str().to_owned()))
            .filter(|r| {
                r.response.is_none() && r.claim.as_ref().is_some_and(|c| c.owner == claim.owner)
            })
    }
}

fn binding_of(user: &User) -> IdempotencyBinding {
    IdempotencyBinding {
        tenant_id: user.tenant_id.clone(),
        external_id: user.external_id.clone(),
        generation: user.generation,
    }
}

/// An in-memory [`Store`].
#[derive(Default)]
pub struct MemStore {
    pub(super) state: Mutex<MemState>,
    /// When set, every write that carries an audit event fails (audit fails closed).
    pub fail_audit: std::sync::atomic::AtomicBool,
    /// When set, a write whose audit event matches fails (audit fails closed).
    fail_audit_if: Mutex<Option<AuditFilter>>,
    /// Applied once to the row, inside the next `acquire_lease`, before its conditions are
    /// checked: another request's change landing between a read and the lease.
    on_next_acquire: Mutex<Option<RowHook>>,
    /// A change another writer makes to a tenant row just before the next `update_tenant`
    /// (see [`MemStore::before_next_tenant_update`]).
    tenant_hook: Mutex<Option<TenantHook>>,
}

type AuditFilter = Box<dyn Fn(&AuditEvent) -> bool + Send>;
type RowHook = Box<dyn FnOnce(&mut User) + Send>;
type TenantHook = Box<dyn FnOnce(&mut Tenant) + Send>;

impl MemStore {
    /// Makes `change` land on the stored tenant row just before the next `update_tenant` is
    /// applied, as a concurrent writer's committed update would (a race between a read and a
    /// write of the same row; the change should bump `version` as such a write does).
    pub fn before_next_tenant_update(&self, change: impl FnOnce(&mut Tenant) + Send + 'static) {
        *lock(&self.tenant_hook) = Some(Box::new(change));
    }

    /// All audit events.
    pub fn audit_events(&self) -> Vec<AuditEvent> {
        lock(&self.state).audit.clone()
    }

    /// Makes every write whose audit event matches `f` fail.
    pub fn fail_audit_if(&self, f: impl Fn(&AuditEvent) -> bool + Send + 'static) {
        *lock(&self.fail_audit_if) = Some(Box::new(f));
    }

    /// Runs `f` on the row inside the next `acquire_lease`, before it checks anything.
    pub fn on_next_acquire(&self, f: impl FnOnce(&mut User) + Send + 'static) {
        *lock(&self.on_next_acquire) = Some(Box::new(f));
    }

    pub(super) fn write_audit(
        &self,
        st: &mut MemState,
        audit: Option<&AuditEvent>,
    ) -> Result<(), StoreError> {
        if let Some(a) = audit {
            if self.fail_audit.load(Ordering::SeqCst)
                || lock(&self.fail_audit_if).as_ref().is_some_and(|f| f(a))
            {
                return Err(StoreError::Backend("audit log unavailable".into()));
            }
            if st.audit.iter().any(|e| e.id == a.id) {
                return Err(StoreError::AlreadyExists);
            }
            st.audit.push(a.clone());
            for e in &a.events {
                super::webhooks::write_event(st, e);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl TenantStore for MemStore {
    async fn insert_tenant(
        &self,
        tenant: &Tenant,
        profiles: &[ScopeProfile],
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut st = lock(&self.state);
        if st.tenants.contains_key(&tenant.id) {
            return Err(StoreError::AlreadyExists);
        }
        self.write_audit(&mut st, Some(audit))?;
        st.tenants.insert(tenant.id.clone(), tenant.clone());
        for p in profiles {
            st.profiles
                .insert((p.tenant_id.clone(), p.name.clone()), p.clone());
        }
        Ok(())
    }
    async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        Ok(lock(&self.state).tenants.get(id).cloned())
    }
    async fn list_tenants(
        &self,
        after: Option<&TenantId>,
        limit: u32,
    ) -> Result<Vec<Tenant>, StoreError> {
        let st = lock(&self.state);
        Ok(st
            .tenants
            .values()
            .filter(|t| after.is_none_or(|a| &t.id > a))
            .take(limit as usize)
            .cloned()
            .collect())
    }
    async fn update_tenant(
        &self,
        tenant: &Tenant,
        read_version: i64,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let hook = lock(&self.tenant_hook).take();
        let mut st = lock(&self.state);
        if let (Some(change), Some(row)) = (hook, st.tenants.get_mut(&tenant.id)) {
            change(row);
        }
        match st.tenants.get(&tenant.id) {
            None => return Err(StoreError::NotFound),
            Some(t) if t.version != read_version => return Err(StoreError::Stale),
            Some(_) => {}
        }
        self.write_audit(&mut st, Some(audit))?;
        let mut row = tenant.clone();
        row.version = read_version + 1;
        st.tenants.insert(tenant.id.clone(), row);
        Ok(())
    }
    async fn delete_tenant(
        &self,
        id: &TenantId,
        audit: &AuditEvent,
    ) -> Result<TenantDeletion, StoreError> {
        let mut st = lock(&self.state);
        if !st.tenants.contains_key(id) {
            return Ok(TenantDeletion::NotFound);
        }
        if st
            .users
            .values()
            .any(|u| &u.tenant_id == id && u.status.is_live())
        {
            return Ok(TenantDeletion::HasLiveUsers);
        }
        self.write_audit(&mut st, Some(audit))?;
        st.tenants.remove(id);
        st.profiles.retain(|(t, _), _| t != id);
        st.users.retain(|(t, _), _| t != id);
        // Its jobs go with it (ON DELETE CASCADE in SQL).
        st.jobs.retain(|_, j| &j.tenant_id != id);
        st.items.retain(|_, (i, _)| &i.tenant_id != id);
        st.scim_configs.remove(id);
        st.scim_tokens.retain(|_, t| &t.tenant_id != id);
        st.scim_users.retain(|_, u| &u.tenant_id != id);
        st.endpoints.retain(|_, e| &e.tenant_id != id);
        st.events.retain(|_, (e, _)| &e.tenant_id != id);
        st.deliveries.retain(|_, d| &d.tenant_id != id);
        Ok(TenantDeletion::Deleted)
    }
    async fn put_profile(
        &self,
        profile: &ScopeProfile,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut st = lock(&self.state);
        self.write_audit(&mut st, Some(audit))?;
        Ok(st
            .profiles
            .insert(
                (profile.tenant_id.clone(), profile.name.clone()),
                profile.clone(),
            )
            .is_none())
    }
    async fn get_profile(
        &self,
        tenant: &TenantId,
        name: &ProfileName,
    ) -> Result<Option<ScopeProfile>, StoreError> {
        Ok(lock(&self.state)
            .profiles
            .get(&(tenant.clone(), name.clone()))
            .cloned())
    }
    async fn list_profiles(&self, tenant: &TenantId) -> Result<Vec<ScopeProfile>, StoreError> {
        Ok(lock(&self.state)
            .profiles
            .values()
            .filter(|p| &p.tenant_id == tenant)
            .cloned()
            .collect())
    }
    async fn delete_profile(
        &self,
        tenant: &TenantId,
        name: &ProfileName,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut st = lock(&self.state);
        if !st.profiles.contains_key(&(tenant.clone(), name.clone())) {
            return Ok(false);
        }
        self.write_audit(&mut st, Some(audit))?;
        st.profiles.remove(&(tenant.clone(), name.clone()));
        Ok(true)
    }
}

#[async_trait]
impl UserStore for MemStore {
    async fn keys_older_than(
        &self,
        tenant: &TenantId,
        profile: &ProfileName,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<ExternalId>, StoreError> {
        let st = lock(&self.state);
        let mut due: Vec<(Timestamp, ExternalId)> = st
            .users
            .values()
            .filter(|u| {
                &u.tenant_id == tenant
                    && u.profile.as_ref() == Some(profile)
                    && u.status == UserStatus::Active
                    && matches!(
                        u.step,
                        crate::model::Step::Idle | crate::model::Step::SweepKeys
                    )
            })
            .filter_map(|u| {
                let k = u.key.as_ref()?;
                (k.created_at < before).then(|| (k.created_at, u.external_id.clone()))
            })
            .collect();
        due.sort();
        Ok(due
            .into_iter()
            .take(limit as usize)
            .map(|(_, e)| e)
            .collect())
    }
    async fn get_user(
        &self,
        tenant: &TenantId,
        external_id: &ExternalId,
    ) -> Result<Option<User>, StoreError> {
        Ok(lock(&self.state)
            .users
            .get(&(tenant.clone(), external_id.clone()))
            .cloned())
    }
    async fn list_users(
        &self,
        tenant: &TenantId,
        status: Option<UserStatus>,
        after: Option<&ExternalId>,
        limit: u32,
    ) -> Result<Vec<User>, StoreError> {
        let st = lock(&self.state);
        Ok(st
            .users
            .values()
            .filter(|u| &u.tenant_id == tenant)
            .filter(|u| status.is_none_or(|s| u.status == s))
            .filter(|u| after.is_none_or(|a| u.external_id.as_str() > a.as_str()))
            .take(limit as usize)
            .cloned()
            .collect())
    }
    async fn insert_user(&self, user: &User, audit: Option<&AuditEvent>) -> Result<(), StoreError> {
        let mut st = lock(&self.state);
        let k = (user.tenant_id.clone(), user.external_id.clone());
        if st.users.contains_key(&k) {
            return Err(StoreError::AlreadyExists);
        }
        if st
            .users
            .values()
            .any(|u| u.tenant_id == user.tenant_id && u.app_id == user.app_id)
        {
            return Err(StoreError::AppIdTaken);
        }
        self.write_audit(&mut st, audit)?;
        st.users.insert(k, user.clone());
        Ok(())
    }
    async fn acquire_lease(
        &self,
        tenant: &TenantId,
        external_id: &ExternalId,
        lease: &Lease,
        now: Timestamp,
        expected_version: Option<i64>,
    ) -> Result<Option<User>, StoreError> {
        let hook = lock(&self.on_next_acquire).take();
        let mut st = lock(&self.state);
        let Some(u) = st.users.get_mut(&(tenant.clone(), external_id.clone())) else {
            return Ok(None);
        };
        if let Some(hook) = hook {
            hook(u);
        }
        if u.lease.as_ref().is_some_and(|l| l.expires_at >= now)
            || expected_version.is_some_and(|v| v != u.version)
        {
            return Ok(None);
        }
        u.lease = Some(lease.clone());
        u.version += 1;
        Ok(Some(u.clone()))
    }
    async fn renew_lease(
        &self,
        tenant: &TenantId,
        external_id: &ExternalId,
        owner: &str,
        generation: i64,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut st = lock(&self.state);
        let Some(u) = st.users.get_mut(&(tenant.clone(), external_id.clone())) else {
            return Ok(false);
        };
        match u.lease.as_mut() {
            Some(l) if l.owner == owner && u.generation == generation => {
                l.expires_at = expires_at;
                Ok(true)
            }
            _ => Ok(false),
        }
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
        let mut st = lock(&self.state);
        let Some(u) = st.users.get_mut(&(tenant.clone(), external_id.clone())) else {
            return Err(StoreError::NotFound);
        };
        if u.lease
            .as_ref()
            .is_some_and(|l| l.owner != owner && l.expires_at >= now)
            || u.next_attempt_at.is_some_and(|t| t > now)
        {
            return Err(StoreError::Stale);
        }
        u.attempts += 1;
        u.last_error = Some(last_error.to_owned());
        u.next_attempt_at = Some(next_attempt_at);
        u.lease = None;
        u.version += 1;
        Ok(())
    }
    async fn claim_due_user(
        &self,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        let mut st = lock(&self.state);
        let Some(k) = st
            .users
            .values()
            .filter(|u| is_due(u, now))
            .min_by_key(|u| (due_order(u), u.tenant_id.clone(), u.external_id.clone()))
            .map(|u| (u.tenant_id.clone(), u.external_id.clone()))
        else {
            return Ok(None);
        };
        let u = st.users.get_mut(&k).expect("found above");
        u.lease = Some(lease.clone());
        u.version += 1;
        Ok(Some(u.clone()))
    }
    async fn update_user(
        &self,
        user: &User,
        owner: &str,
        audit: Option<&AuditEvent>,
    ) -> Result<(), StoreError> {
        let mut st = lock(&self.state);
        let k = (user.tenant_id.clone(), user.external_id.clone());
        let held = st
            .users
            .get(&k)
            .and_then(|u| u.lease.as_ref())
            .is_some_and(|l| l.owner == owner);
        if !held {
            return Err(StoreError::Stale);
        }
        self.write_audit(&mut st, audit)?;
        let version = st.users.get(&k).map_or(0, |u| u.version) + 1;
        let mut row = user.clone();
        row.version = version;
        st.users.insert(k, row);
        Ok(())
    }
    async fn release_leases(&self, owner_prefix: &str) -> Result<u64, StoreError> {
        let mut st = lock(&self.state);
        let mut n = 0;
        for u in st.users.values_mut() {
            if u.lease
                .as_ref()
                .is_some_and(|l| l.owner.starts_with(owner_prefix))
            {
                u.lease = None;
                u.version += 1;
                n += 1;
            }
        }
        Ok(n)
    }
    async fn find_by_fingerprint(
        &self,
        fingerprint: &str,
    ) -> Result<Option<(TenantId, ExternalId)>, StoreError> {
        let st = lock(&self.state);
        Ok(st
            .users
            .values()
            .find(|u| {
                u.key.as_ref().is_some_and(|k| k.fingerprint == fingerprint)
                    || u.retired_key
                        .as_ref()
                        .is_some_and(|k| k.fingerprint == fingerprint)
            })
            .map(|u| (u.tenant_id.clone(), u.external_id.clone())))
    }
    async fn due_users(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(TenantId, ExternalId)>, StoreError> {
        let st = lock(&self.state);
        let mut due: Vec<&User> = st.users.values().filter(|u| is_due(u, now)).collect();
        due.sort_by_key(|u| due_order(u));
        Ok(due
            .into_iter()
            .take(limit as usize)
            .map(|u| (u.tenant_id.clone(), u.external_id.clone()))
            .collect())
    }
    async fn count_users_by_status(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<(UserStatus, u64)>, StoreError> {
        let st = lock(&self.state);
        let mut counts: BTreeMap<&'static str, (UserStatus, u64)> = BTreeMap::new();
        for u in st.users.values().filter(|u| &u.tenant_id == tenant) {
            counts.entry(u.status.as_str()).or_insert((u.status, 0)).1 += 1;
        }
        Ok(counts.into_values().collect())
    }
    async fn count_all_users_by_status(
        &self,
    ) -> Result<Vec<(TenantId, UserStatus, u64)>, StoreError> {
        let st = lock(&self.state);
        let mut counts: BTreeMap<(String, &'static str), (TenantId, UserStatus, u64)> =
            BTreeMap::new();
        for u in st.users.values() {
            counts
                .entry((u.tenant_id.as_str().to_owned(), u.status.as_str()))
                .or_insert((u.tenant_id.clone(), u.status, 0))
                .2 += 1;
        }
        Ok(counts.into_values().collect())
    }
}

/// Work due at `now` (the stores' `due_users` rule): a pending step or a retired key whose
/// grace ended, not leased (or the lease expired), not backed off.
fn is_due(u: &User, now: Timestamp) -> bool {
    u.lease.as_ref().is_none_or(|l| l.expires_at < now)
        && u.next_attempt_at.is_none_or(|t| t <= now)
        && (u.step != crate::model::Step::Idle
            || u.retired_key
                .as_ref()
                .is_some_and(|k| k.delete_after <= now))
}

/// Oldest first: by the back-off time when there is one, else by the last change.
fn due_order(u: &User) -> Timestamp {
    u.next_attempt_at.unwrap_or(u.updated_at)
}

#[async_trait]
impl AuditStore for MemStore {
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let mut st = lock(&self.state);
        self.write_audit(&mut st, Some(event))
    }
    /// Positions are the append order (the log is a vector: append order is commit order).
    async fn list_audit(
        &self,
        tenant: Option<&TenantId>,
        after: Option<&str>,
        since: Option<Timestamp>,
        limit: u32,
    ) -> Result<Vec<(AuditEvent, String)>, StoreError> {
        let after = match after {
            Some(a) => Some(a.parse::<usize>().map_err(|_| StoreError::BadCursor)?),
            None => None,
        };
        let st = lock(&self.state);
        Ok(st
            .audit
            .iter()
            .enumerate()
            .filter(|(i, _)| after.is_none_or(|a| *i > a))
            .filter(|(_, e)| tenant.is_none_or(|t| e.tenant_id.as_ref() == Some(t)))
            .filter(|(_, e)| since.is_none_or(|s| e.at >= s))
            .take(limit as usize)
            .map(|(i, e)| (e.clone(), i.to_string()))
            .collect())
    }
}

#[async_trait]
impl MaintenanceStore for MemStore {
    async fn maintenance_done(&self, name: &str) -> Result<bool, StoreError> {
        Ok(lock(&self.state).maintenance.contains_key(name))
    }
    async fn record_maintenance(&self, name: &str, at: Timestamp) -> Result<(), StoreError> {
        lock(&self.state)
            .maintenance
            .entry(name.to_owned())
            .or_insert(at);
        Ok(())
    }
}

#[async_trait]
impl IdempotencyStore for MemStore {
    async fn get_idempotency(
        &self,
        subject: &str,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        Ok(lock(&self.state)
            .idempotency
            .get(&(subject.to_owned(), key.as_str().to_owned()))
            .cloned())
    }
    async fn put_idempotency(
        &self,
        record: &IdempotencyRecord,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut st = lock(&self.state);
        let k = (record.subject.clone(), record.key.as_str().to_owned());
        if st.idempotency.get(&k).is_some_and(|r| r.expires_at > now) {
            return Ok(false);
        }
        st.idempotency.insert(k, record.clone());
        Ok(true)
    }
    async fn claim_idempotency(
        &self,
        subject: &str,
        key: &IdempotencyKey,
        claim: &Lease,
        now: Timestamp,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let mut st = lock(&self.state);
        let Some(r) = st
            .idempotency
            .get_mut(&(subject.to_owned(), key.as_str().to_owned()))
        else {
            return Ok(None);
        };
        let free = r
            .claim
            .as_ref()
            .is_none_or(|c| c.expires_at < now || c.owner == claim.owner);
        if r.response.is_some() || !free {
            return Ok(None);
        }
        r.claim = Some(claim.clone());
        Ok(Some(r.clone()))
    }
    async fn release_idempotency(&self, claim: &IdempotencyClaim) -> Result<(), StoreError> {
        let mut st = lock(&self.state);
        if let Some(r) = st.claimed(claim) {
            r.claim = None;
        }
        Ok(())
    }
    async fn bind_idempotency(
        &self,
        claim: &IdempotencyClaim,
        binding: &IdempotencyBinding,
    ) -> Result<bool, StoreError> {
        let mut st = lock(&self.state);
        Ok(match st.claimed(claim) {
            Some(r) => {
                r.binding = Some(binding.clone());
                true
            }
            None => false,
        })
    }
    async fn insert_user_bound(
        &self,
        user: &User,
        audit: Option<&AuditEvent>,
        claim: &IdempotencyClaim,
    ) -> Result<(), StoreError> {
        let mut st = lock(&self.state);
        if st.claimed(claim).is_none() {
            return Err(StoreError::Stale);
        }
        let k = (user.tenant_id.clone(), user.external_id.clone());
        if st.users.contains_key(&k) {
            return Err(StoreError::AlreadyExists);
        }
        if st
            .users
            .values()
            .any(|u| u.tenant_id == user.tenant_id && u.app_id == user.app_id)
        {
            return Err(StoreError::AppIdTaken);
        }
        self.write_audit(&mut st, audit)?;
        st.users.insert(k, user.clone());
        if let Some(r) = st.claimed(claim) {
            r.binding = Some(binding_of(user));
        }
        Ok(())
    }
    async fn update_user_bound(
        &self,
        user: &User,
        owner: &str,
        audit: Option<&AuditEvent>,
        claim: &IdempotencyClaim,
    ) -> Result<(), StoreError> {
        let mut st = lock(&self.state);
        let k = (user.tenant_id.clone(), user.external_id.clone());
        let held = st
            .users
            .get(&k)
            .and_then(|u| u.lease.as_ref())
            .is_some_and(|l| l.owner == owner);
        if !held || st.claimed(claim).is_none() {
            return Err(StoreError::Stale);
        }
        self.write_audit(&mut st, audit)?;
        let version = st.users.get(&k).map_or(0, |u| u.version) + 1;
        let mut row = user.clone();
        row.version = version;
        st.users.insert(k, row);
        if let Some(r) = st.claimed(claim) {
            r.binding = Some(binding_of(user));
        }
        Ok(())
    }
    async fn complete_idempotency(
        &self,
        subject: &str,
        key: &IdempotencyKey,
        created_at: Timestamp,
        response: &SavedResponse,
    ) -> Result<bool, StoreError> {
        let mut st = lock(&self.state);
        Ok(
            match st
                .idempotency
                .get_mut(&(subject.to_owned(), key.as_str().to_owned()))
                .filter(|r| r.created_at == created_at && r.response.is_none())
            {
                Some(r) => {
                    r.response = Some(response.clone());
                    r.claim = None;
                    true
                }
                None => false,
            },
        )
    }
    async fn purge_idempotency(&self, now: Timestamp) -> Result<u64, StoreError> {
        let mut st = lock(&self.state);
        let before = st.idempotency.len();
        st.idempotency.retain(|_, r| r.expires_at > now);
        Ok((before - st.idempotency.len()) as u64)
    }
}

impl MemStore {
    /// Every idempotency record (for tests).
    pub fn idempotency_records(&self) -> Vec<IdempotencyRecord> {
        lock(&self.state).idempotency.values().cloned().collect()
    }
}

#[async_trait]
impl AccountStore for MemStore {
    async fn auto_key_learning(&self, account: &str) -> Result<AutoKeyLearning, StoreError> {
        Ok(lock(&self.state)
            .accounts
            .get(account)
            .copied()
            .unwrap_or_default())
    }
    async fn record_auto_key_check(
        &self,
        account: &str,
        found: bool,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut st = lock(&self.state);
        let l = st.accounts.entry(account.to_owned()).or_default();
        if found {
            l.clean_checks = 0;
            l.last_seen_at = Some(at);
        } else {
            l.clean_checks += 1;
        }
        Ok(())
    }
}

#[async_trait]
impl Store for MemStore {
    async fn ready(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
