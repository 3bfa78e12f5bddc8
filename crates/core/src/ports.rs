//! The ports core needs from the outside world. Implementations live in other crates
//! (storage, clarifai) or in tests (in-memory fakes); core only sees these traits.

use async_trait::async_trait;
use serde_json::Value;

use crate::error::{StoreError, UpstreamError};
use crate::idempotency::{
    IdempotencyBinding, IdempotencyClaim, IdempotencyKey, IdempotencyRecord, SavedResponse,
};
use crate::ids::{AppId, ExternalId, ProfileName, TenantId};
use crate::jobs::{ItemOutcome, Job, JobItem};
use crate::model::UpstreamAccount;
use crate::model::{
    AuditEvent, AutoKeyLearning, Lease, ScopeProfile, Tenant, Timestamp, User, UserStatus,
};
use crate::scim::{ScimConfig, ScimQuery, ScimSyncOutcome, ScimToken, ScimUser};
use crate::scope::ScopeSet;
use crate::secret::KeySecret;
use crate::webhooks::{
    AttemptOutcome, Delivery, DeliveryAttempt, DeliveryStatus, OutboxEvent, WebhookEndpoint,
};

/// Result of deleting a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantDeletion {
    /// Deleted with its profiles and (deleted) user rows.
    Deleted,
    /// No such tenant.
    NotFound,
    /// It still has users whose status is not `deleted`.
    HasLiveUsers,
}

/// Tenants and their scope profiles.
#[async_trait]
pub trait TenantStore: Send + Sync {
    /// Inserts a tenant, its profiles and the audit event in one transaction;
    /// [`StoreError::AlreadyExists`] if the id is taken.
    async fn insert_tenant(
        &self,
        tenant: &Tenant,
        profiles: &[ScopeProfile],
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// One tenant.
    async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError>;
    /// Tenants ordered by id, after `after`.
    async fn list_tenants(
        &self,
        after: Option<&TenantId>,
        limit: u32,
    ) -> Result<Vec<Tenant>, StoreError>;
    /// Replaces a tenant's mutable fields (all but id and created_at) with the audit event, if
    /// the row still has `read_version` (the version the caller read it at); the row's version
    /// becomes `read_version + 1` (`tenant.version` is ignored). [`StoreError::Stale`] if the
    /// row changed meanwhile (nothing is written), [`StoreError::NotFound`] if it is gone.
    async fn update_tenant(
        &self,
        tenant: &Tenant,
        read_version: i64,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// Deletes a tenant that has no live users, with the audit event.
    async fn delete_tenant(
        &self,
        id: &TenantId,
        audit: &AuditEvent,
    ) -> Result<TenantDeletion, StoreError>;
    /// Inserts or replaces a profile; returns true when it was created.
    async fn put_profile(
        &self,
        profile: &ScopeProfile,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
    /// One profile.
    async fn get_profile(
        &self,
        tenant: &TenantId,
        name: &ProfileName,
    ) -> Result<Option<ScopeProfile>, StoreError>;
    /// All of a tenant's profiles, by name.
    async fn list_profiles(&self, tenant: &TenantId) -> Result<Vec<ScopeProfile>, StoreError>;
    /// Deletes a profile; false if it did not exist.
    async fn delete_profile(
        &self,
        tenant: &TenantId,
        name: &ProfileName,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
}

/// End users' provisioning records.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// One user.
    async fn get_user(
        &self,
        tenant: &TenantId,
        external_id: &ExternalId,
    ) -> Result<Option<User>, StoreError>;
    /// Users ordered by external id (byte order), after `after`, optionally of one status.
    async fn list_users(
        &self,
        tenant: &TenantId,
        status: Option<UserStatus>,
        after: Option<&ExternalId>,
        limit: u32,
    ) -> Result<Vec<User>, StoreError>;
    /// Inserts a new user row (normally holding a lease), with an optional audit event;
    /// [`StoreError::AlreadyExists`] if (tenant, external id) exists — the database enforces it.
    async fn insert_user(&self, user: &User, audit: Option<&AuditEvent>) -> Result<(), StoreError>;
    /// Takes the row's lease if it is free or expired at `now` and, when `expected_version` is
    /// given, the row still has that version (it is unchanged since it was read); bumps the
    /// version. Returns the row as leased, or `None` if someone else holds a live lease, the
    /// row changed, or it does not exist.
    async fn acquire_lease(
        &self,
        tenant: &TenantId,
        external_id: &ExternalId,
        lease: &Lease,
        now: Timestamp,
        expected_version: Option<i64>,
    ) -> Result<Option<User>, StoreError>;
    /// Compare-and-swap renewal: moves the lease's expiry to `expires_at` if `owner` still holds
    /// it on `generation`. False when the lease was taken over (or the row is gone): the holder
    /// must stop before its next upstream call.
    async fn renew_lease(
        &self,
        tenant: &TenantId,
        external_id: &ExternalId,
        owner: &str,
        generation: i64,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Backs off a row whose work failed outside the state machine (its tenant's credential
    /// does not open, a write failed, the lease was lost, the database was busy): one narrow
    /// write of `attempts + 1`, `last_error` and `next_attempt_at`, releasing the lease. Only if
    /// `owner` holds the lease, or it is free, or it expired before `horizon` (now less the
    /// tolerated clock skew); and only if the row is not backed off already (the state machine
    /// recorded the failure itself). [`StoreError::Stale`] when it does nothing.
    async fn defer_user(
        &self,
        tenant: &TenantId,
        external_id: &ExternalId,
        owner: &str,
        horizon: Timestamp,
        next_attempt_at: Timestamp,
        last_error: &str,
    ) -> Result<(), StoreError>;
    /// Claims one user with work due at `now` (see [`UserStore::due_users`]) by taking its
    /// lease in the same statement; concurrent claimers never get the same row (PostgreSQL:
    /// `FOR UPDATE SKIP LOCKED`). `None` when nothing is due.
    async fn claim_due_user(
        &self,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError>;
    /// Writes the whole row (all mutable fields, the lease included) if `owner` still holds the
    /// lease, with an optional audit event in the same transaction, and bumps the version (the
    /// stored version is the caller's `user.version + 1`); [`StoreError::Stale`] if the lease
    /// was lost.
    async fn update_user(
        &self,
        user: &User,
        owner: &str,
        audit: Option<&AuditEvent>,
    ) -> Result<(), StoreError>;
    /// Releases every lease whose owner starts with `owner_prefix` (a stopping process's own,
    /// so a restart or another replica resumes its operations at once); returns how many.
    async fn release_leases(&self, owner_prefix: &str) -> Result<u64, StoreError>;
    /// Which user a key belongs to, by the SHA-256 fingerprint of its secret (current or retired key).
    async fn find_by_fingerprint(
        &self,
        fingerprint: &str,
    ) -> Result<Option<(TenantId, ExternalId)>, StoreError>;
    /// Users with work due at `now`: a pending step, or a retired key whose grace period ended,
    /// whose lease is free or expired and whose `next_attempt_at` (a back-off) has passed.
    /// Oldest first.
    async fn due_users(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(TenantId, ExternalId)>, StoreError>;
    /// Active users of a tenant and profile whose current key was created before `before`, with
    /// no operation pending (step `idle` or `sweep_keys`), oldest key first: due for rotation by
    /// the profile's key-age policy.
    async fn keys_older_than(
        &self,
        tenant: &TenantId,
        profile: &ProfileName,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<ExternalId>, StoreError>;
    /// Number of users of a tenant per status.
    async fn count_users_by_status(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<(UserStatus, u64)>, StoreError>;
    /// Number of users per tenant and status, every tenant in one read (for metrics).
    async fn count_all_users_by_status(
        &self,
    ) -> Result<Vec<(TenantId, UserStatus, u64)>, StoreError>;
}

/// The append-only audit log.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends one event on its own (reveals, failures).
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError>;
    /// Events in commit order, optionally of one tenant, after the position `after` (from an
    /// earlier answer) and with time not before `since`; each with its position. Commit order
    /// means a cursor never skips an event: one that commits later than the events already
    /// listed always comes after them (an event still being committed is not listed yet).
    async fn list_audit(
        &self,
        tenant: Option<&TenantId>,
        after: Option<&str>,
        since: Option<Timestamp>,
        limit: u32,
    ) -> Result<Vec<(AuditEvent, String)>, StoreError>;
}

/// One-time maintenance tasks (data upgrades a release runs once per database).
#[async_trait]
pub trait MaintenanceStore: Send + Sync {
    /// Whether the named task was recorded as done.
    async fn maintenance_done(&self, name: &str) -> Result<bool, StoreError>;
    /// Records the named task as done at `at` (recording it again changes nothing).
    async fn record_maintenance(&self, name: &str, at: Timestamp) -> Result<(), StoreError>;
}

/// Idempotency-Key records (see [`crate::idempotency`]), kept beside the users' rows.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// The record of `(subject, key)`, expired or not.
    async fn get_idempotency(
        &self,
        subject: &str,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;
    /// Inserts `record`, or replaces a record of the same `(subject, key)` that expired before
    /// `now`. False (nothing written) when a live record holds the key.
    async fn put_idempotency(
        &self,
        record: &IdempotencyRecord,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Takes the claim of a record that has no answer yet, if its claim is free, expired at
    /// `now`, or already `claim.owner`'s. Returns the record as claimed, `None` otherwise.
    async fn claim_idempotency(
        &self,
        subject: &str,
        key: &IdempotencyKey,
        claim: &Lease,
        now: Timestamp,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;
    /// Frees the claim if `claim.owner` holds it.
    async fn release_idempotency(&self, claim: &IdempotencyClaim) -> Result<(), StoreError>;
    /// Binds a record that has no answer yet to the operation its request resumes, if
    /// `claim.owner` still holds its claim; false (nothing written) otherwise.
    async fn bind_idempotency(
        &self,
        claim: &IdempotencyClaim,
        binding: &IdempotencyBinding,
    ) -> Result<bool, StoreError>;
    /// [`UserStore::insert_user`] and, in the same transaction, binds the claimed record to the
    /// new row's tenant, external id and generation. [`StoreError::Stale`] (nothing written)
    /// if the claim was lost or the record has an answer.
    async fn insert_user_bound(
        &self,
        user: &User,
        audit: Option<&AuditEvent>,
        claim: &IdempotencyClaim,
    ) -> Result<(), StoreError>;
    /// [`UserStore::update_user`] and, in the same transaction, binds the claimed record to the
    /// row's tenant, external id and generation. [`StoreError::Stale`] (nothing written) if the
    /// lease or the claim was lost.
    async fn update_user_bound(
        &self,
        user: &User,
        owner: &str,
        audit: Option<&AuditEvent>,
        claim: &IdempotencyClaim,
    ) -> Result<(), StoreError>;
    /// Records the answer of the record created at `created_at`, frees its claim; the first
    /// answer wins: false when it already has one (or is gone).
    async fn complete_idempotency(
        &self,
        subject: &str,
        key: &IdempotencyKey,
        created_at: Timestamp,
        response: &SavedResponse,
    ) -> Result<bool, StoreError>;
    /// Deletes the records expired at `now`; returns how many.
    async fn purge_idempotency(&self, now: Timestamp) -> Result<u64, StoreError>;
}

/// What the service learns about upstream accounts, shared by every tenant on one account
/// (keyed by [`UpstreamAccount::key`]).
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// What was learnt about keys minted with new apps on the account (zeroes when nothing).
    async fn auto_key_learning(&self, account: &str) -> Result<AutoKeyLearning, StoreError>;
    /// Records one look at a new app's keys: `found` (a key without this service's marker was
    /// there) resets the count of clean checks and sets `last_seen_at`; otherwise the count goes
    /// up by one. One atomic statement, so concurrent records never lose a sighting.
    async fn record_auto_key_check(
        &self,
        account: &str,
        found: bool,
        at: Timestamp,
    ) -> Result<(), StoreError>;
}

/// The upstream's request budget of each account (see [`crate::budget`]), shared by everyone
/// who uses the same instance: in-process ([`crate::budget::LocalBudget`]) or in the database,
/// so several replicas together never exceed an account's limit.
#[async_trait]
pub trait UpstreamBudget: Send + Sync {
    /// Reserves the account's next grant at `rate` per window ([`crate::budget::next_grant`]):
    /// when the request may go, on this process's clock. A reservation is spent whether or not
    /// its request is sent, so the budget errs on the side of sending less. Bulk grants are
    /// spaced evenly; interactive ones are not.
    async fn reserve(
        &self,
        account: &str,
        rate: u32,
        lane: crate::budget::Lane,
    ) -> Result<crate::budget::Grant, StoreError>;
}

/// Bulk onboarding jobs and their items (see [`crate::jobs`]).
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Inserts a job, its items and the audit event in one transaction.
    async fn insert_job(
        &self,
        job: &Job,
        items: &[JobItem],
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// One job.
    async fn get_job(&self, id: &str) -> Result<Option<Job>, StoreError>;
    /// A tenant's jobs, newest first, after the job `before` (from an earlier page).
    async fn list_jobs(
        &self,
        tenant: &TenantId,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError>;
    /// A job's failed items, in batch order, at most `limit`.
    async fn job_errors(&self, id: &str, limit: u32) -> Result<Vec<JobItem>, StoreError>;
    /// Claims up to `limit` items to work on, by leasing them in one statement: pending
    /// items whose retry time has come and that are not leased, of jobs not cancelled (or
    /// already attempted: started); and items whose lease expired (a crashed worker's: they
    /// were started, so they are finished even in a cancelled job). An item that does not read
    /// back is failed on its own. Lowest batch position first across jobs, so concurrent jobs
    /// advance together. Concurrent claimers never get the same item (PostgreSQL: `SKIP
    /// LOCKED`).
    async fn claim_job_items(
        &self,
        lease: &Lease,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<JobItem>, StoreError>;
    /// Renews the lease `owner` holds on an item; false when it lost it.
    async fn renew_job_item(
        &self,
        job_id: &str,
        idx: i64,
        owner: &str,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Records an item's outcome if `owner` still holds its lease, with the job's counters, and
    /// ends the job (at `now`) when no item is pending any more, in one transaction.
    /// [`StoreError::Stale`] when the lease was lost (nothing written).
    async fn finish_job_item(
        &self,
        job_id: &str,
        idx: i64,
        owner: &str,
        outcome: &ItemOutcome,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Cancels a running job: its items not started (never leased nor attempted) are
    /// cancelled, started ones finish; the job ends now if nothing is left pending. With the
    /// audit event. A job that has ended is not changed (and no event written). Returns the
    /// job as it stands, `None` if there is no such job.
    async fn cancel_job(
        &self,
        id: &str,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> Result<Option<Job>, StoreError>;
    /// Expires the item leases whose owner starts with `owner_prefix` (a stopping process's), so
    /// the items are claimed again at once (as started items: finished even if their job is
    /// cancelled).
    async fn release_job_items(&self, owner_prefix: &str) -> Result<u64, StoreError>;
}

/// SCIM settings, tokens and user resources (see [`crate::scim`]).
#[async_trait]
pub trait ScimStore: Send + Sync {
    /// A tenant's SCIM settings, `None` when never set.
    async fn get_scim_config(&self, tenant: &TenantId) -> Result<Option<ScimConfig>, StoreError>;
    /// Inserts or replaces a tenant's SCIM settings, with the audit event.
    async fn put_scim_config(
        &self,
        config: &ScimConfig,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// Inserts a token and, in the same transaction, makes every other token of its tenant
    /// expire at `others_expire_at` at the latest (an expiry already earlier stays).
    async fn insert_scim_token(
        &self,
        token: &ScimToken,
        others_expire_at: Timestamp,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// A tenant's tokens, oldest first (expired ones included).
    async fn list_scim_tokens(&self, tenant: &TenantId) -> Result<Vec<ScimToken>, StoreError>;
    /// The token whose secret hashes to `hash`, whatever its tenant or expiry.
    async fn find_scim_token(&self, hash: &str) -> Result<Option<ScimToken>, StoreError>;
    /// Deletes one of a tenant's tokens with the audit event; false if it did not exist.
    async fn delete_scim_token(
        &self,
        tenant: &TenantId,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
    /// Inserts a SCIM user with the audit event. [`StoreError::AlreadyExists`] when another
    /// SCIM user of the tenant that is not deleted has the same case-folded `userName`, or any
    /// SCIM user of the tenant (a deleted one too, until its deletion is synced and the row
    /// removed) has the same provisioning external id (the database enforces both).
    async fn insert_scim_user(&self, user: &ScimUser, audit: &AuditEvent)
    -> Result<(), StoreError>;
    /// Writes a SCIM user's attributes, `profile`, `deleted` and `updated_at`, with the audit
    /// event, and sets `sync_attempts` to 0, if the row still has `read_version`. The other
    /// sync fields stay as stored: a claim taken since the read (which does not change the
    /// version) is never cleared by a write made on that read. The stored
    /// version becomes `read_version + 1` (`user.version` is ignored). [`StoreError::Stale`]
    /// if it changed, [`StoreError::NotFound`] if it is gone, [`StoreError::AlreadyExists`]
    /// on a `userName` clash. The id, tenant, external id and `created_at` never change.
    async fn update_scim_user(
        &self,
        user: &ScimUser,
        read_version: i64,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// One SCIM user of the tenant by id, deleted ones included (callers hide them).
    async fn get_scim_user(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<ScimUser>, StoreError>;
    /// The tenant's SCIM users that are not deleted and match every condition of `query`,
    /// ordered by id: `count` of them after skipping `offset`, and how many match in all.
    async fn list_scim_users(
        &self,
        tenant: &TenantId,
        query: &ScimQuery,
        offset: u64,
        count: u32,
    ) -> Result<(Vec<ScimUser>, u64), StoreError>;
    /// Claims up to `limit` SCIM users whose version is not synced and whose `next_sync_at`
    /// is unset or not after `now`, deleted ones included, by setting their `next_sync_at` to
    /// `claim_until` in the same statement (concurrent claimers never get the same row;
    /// PostgreSQL: `FOR UPDATE SKIP LOCKED`). Oldest `updated_at` first. The rows are returned
    /// as stored after the claim.
    async fn claim_scim_sync(
        &self,
        now: Timestamp,
        claim_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<ScimUser>, StoreError>;
    /// Records how a sync of `id` ended. `Synced`: `synced_version` becomes `version` (if
    /// larger), `sync_error` is set as given, `sync_attempts` 0 and `next_sync_at` unset; a
    /// deleted row whose deletion is now synced is removed. `Retry`: `sync_attempts + 1`,
    /// `sync_error` and `next_sync_at` set. Never touches attributes or `version`.
    async fn finish_scim_sync(
        &self,
        tenant: &TenantId,
        id: &str,
        outcome: &ScimSyncOutcome,
    ) -> Result<(), StoreError>;
}

/// Webhook endpoints, the outbox's events, their deliveries and attempts (crate::webhooks).
///
/// The outbox itself has no method: every store writes the [`crate::model::AuditEvent::events`]
/// of an audit event it writes, in the same transaction, and with each event one `pending`
/// delivery (due at once) per enabled endpoint of its tenant that wants its type.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Inserts an endpoint with the audit event; [`StoreError::AlreadyExists`] if the id is
    /// taken.
    async fn insert_endpoint(
        &self,
        endpoint: &WebhookEndpoint,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// One of a tenant's endpoints.
    async fn get_endpoint(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<WebhookEndpoint>, StoreError>;
    /// A tenant's endpoints, oldest first.
    async fn list_endpoints(&self, tenant: &TenantId) -> Result<Vec<WebhookEndpoint>, StoreError>;
    /// Writes every mutable field of an endpoint (url, description, event types, enabled,
    /// disabled reason, secrets, failing_since, updated_at) with the audit event, if the row
    /// still has `read_version`; the stored version becomes `read_version + 1`.
    /// [`StoreError::Stale`] if it changed, [`StoreError::NotFound`] if it is gone.
    async fn update_endpoint(
        &self,
        endpoint: &WebhookEndpoint,
        read_version: i64,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// Deletes an endpoint, its deliveries and their attempts, with the audit event; false if
    /// it did not exist.
    async fn delete_endpoint(
        &self,
        tenant: &TenantId,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
    /// An event written through the outbox, with the exact body its deliveries send.
    async fn get_event(&self, id: &str) -> Result<Option<(OutboxEvent, String)>, StoreError>;
    /// Claims up to `limit` `pending` deliveries due at `now` (`next_attempt_at` unset or not
    /// after it) whose endpoint is enabled, by setting `next_attempt_at` to `claim_until` in
    /// the same statement (concurrent claimers never get the same delivery; PostgreSQL:
    /// `FOR UPDATE SKIP LOCKED`). Earliest due first. Returned as stored after the claim.
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        claim_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError>;
    /// Records an attempt in one transaction: inserts the attempt; sets the delivery's status,
    /// `next_attempt_at`, `last_status`, `last_error`, `attempts + 1` and `updated_at`; sets
    /// the endpoint's `failing_since`; and with `disable`, disables the endpoint with the
    /// reason and writes its event through the outbox.
    async fn record_attempt(
        &self,
        tenant: &TenantId,
        outcome: &AttemptOutcome,
    ) -> Result<(), StoreError>;
    /// A tenant's deliveries, newest event first, optionally of one endpoint and one status,
    /// after the delivery `(event_id, endpoint_id)` of an earlier page.
    async fn list_deliveries(
        &self,
        tenant: &TenantId,
        endpoint: Option<&str>,
        status: Option<DeliveryStatus>,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError>;
    /// The attempts of one event's deliveries (of one endpoint, if given), in order.
    async fn list_attempts(
        &self,
        tenant: &TenantId,
        event_id: &str,
        endpoint: Option<&str>,
    ) -> Result<Vec<DeliveryAttempt>, StoreError>;
    /// Deletes deliveries that ended (`delivered` or `failed`) and last changed before `before`,
    /// with their attempts, and then the events left with no delivery; how many deliveries.
    async fn purge_webhook_history(&self, before: Timestamp) -> Result<u64, StoreError>;
    /// Makes deliveries of `endpoint` `pending` and due at `now`, with the audit event: the
    /// one of `event_id` whatever its status (a resend), or else every `failed` one whose event
    /// is not older than `failed_since` (a recovery). How many.
    async fn requeue_deliveries(
        &self,
        tenant: &TenantId,
        endpoint: &str,
        event_id: Option<&str>,
        failed_since: Option<Timestamp>,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> Result<u64, StoreError>;
}

/// Everything the service stores; implemented for SQLite and PostgreSQL by crates/storage.
#[async_trait]
pub trait Store:
    TenantStore
    + UserStore
    + AuditStore
    + MaintenanceStore
    + IdempotencyStore
    + AccountStore
    + JobStore
    + ScimStore
    + WebhookStore
{
    /// Whether the database is reachable and migrated.
    async fn ready(&self) -> Result<(), StoreError>;
}

/// An app to create upstream.
#[derive(Clone, Debug)]
pub struct NewApp {
    /// The deterministic id.
    pub id: AppId,
    /// For humans.
    pub description: String,
    /// The base workflow id in `clarifai/main`.
    pub default_workflow: String,
    /// The marker naming tenant and subject (see [`crate::marker`]).
    pub metadata: Value,
}

/// An app as the upstream reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamApp {
    /// The app id (not validated: the account may hold apps of any shape).
    pub id: String,
    /// Description.
    pub description: String,
    /// Metadata, `Value::Null` when absent.
    pub metadata: Value,
}

/// A key to create upstream: restricted to one app, with exactly these scopes.
#[derive(Clone, Debug)]
pub struct NewKey {
    /// The one app it may reach.
    pub app_id: AppId,
    /// Carries the generation marker.
    pub description: String,
    /// Exactly the resolved scopes.
    pub scopes: ScopeSet,
}

/// A key as the upstream reports it. Its id is the secret.
#[derive(Clone, Debug)]
pub struct UpstreamKey {
    /// The key id, i.e. the secret.
    pub secret: KeySecret,
    /// Description (carries our marker when we made it).
    pub description: String,
    /// Scope names as reported (not validated: drift may hold anything).
    pub scopes: Vec<String>,
    /// Ids of the apps it is restricted to.
    pub app_ids: Vec<String>,
}

/// Sends one webhook delivery: signs it per Standard Webhooks 1.0 (`webhook-id`,
/// `webhook-timestamp`, `webhook-signature` with one `v1,` entry per secret) and POSTs it,
/// refusing targets the deployment does not allow. Implemented by crates/webhooks.
#[async_trait]
pub trait WebhookSender: Send + Sync {
    /// One attempt; never follows redirects (a 3xx is a failure).
    async fn send(&self, request: &crate::webhooks::WebhookRequest) -> crate::webhooks::SendResult;
}

/// The Clarifai REST API, as core needs it. Each call acts for one tenant's account.
#[async_trait]
pub trait Upstream: Send + Sync {
    /// Verifies a PAT (its own-scopes route) and returns the scopes it holds.
    async fn verify_credential(
        &self,
        account: &UpstreamAccount,
    ) -> Result<Vec<String>, UpstreamError>;
    /// Creates one app. Safe to repeat: a repeat answers [`UpstreamError::AlreadyExists`].
    async fn create_app(
        &self,
        account: &UpstreamAccount,
        app: &NewApp,
    ) -> Result<UpstreamApp, UpstreamError>;
    /// One app.
    async fn get_app(
        &self,
        account: &UpstreamAccount,
        app_id: &AppId,
    ) -> Result<UpstreamApp, UpstreamError>;
    /// Every app of the account (all pages).
    async fn list_apps(&self, account: &UpstreamAccount)
    -> Result<Vec<UpstreamApp>, UpstreamError>;
    /// Deletes an app (and, upstream, its keys). [`UpstreamError::NotFound`] if absent.
    async fn delete_app(
        &self,
        account: &UpstreamAccount,
        app_id: &AppId,
    ) -> Result<(), UpstreamError>;
    /// Creates one key. Not safe to repeat: never retried after it may have been sent; an
    /// ambiguous failure is reported as such.
    async fn create_key(
        &self,
        account: &UpstreamAccount,
        key: &NewKey,
    ) -> Result<UpstreamKey, UpstreamError>;
    /// The keys of one app (all pages).
    async fn list_app_keys(
        &self,
        account: &UpstreamAccount,
        app_id: &AppId,
    ) -> Result<Vec<UpstreamKey>, UpstreamError>;
    /// Deletes a key. [`UpstreamError::NotFound`] if absent.
    async fn delete_key(
        &self,
        account: &UpstreamAccount,
        key: &KeySecret,
    ) -> Result<(), UpstreamError>;
}

/// The time source (a fake in tests).
pub trait Clock: Send + Sync {
    /// Now, UTC.
    fn now(&self) -> Timestamp;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    /// Millisecond precision: what the stores keep, so a response right after a write shows
    /// the same timestamps as a later read.
    fn now(&self) -> Timestamp {
        use chrono::SubsecRound as _;
        chrono::Utc::now().trunc_subsecs(3)
    }
}
