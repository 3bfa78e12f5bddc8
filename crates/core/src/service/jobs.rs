//! Bulk onboarding (docs/api.md, "Bulk onboarding"): a batch of users becomes a durable job;
//! workers in every replica claim its items and provision each user through the same
//! crash-safe steps as a single PUT ([`Provisioner::provision`]), so a crash, a restart or a
//! replica's death resumes the job and no user is provisioned twice.
//!
//! - Submission validates the whole batch first (ids, duplicates, profiles, scopes against the
//!   tenant's allowed scopes, display names and metadata): a bad batch is a 4xx that stores
//!   nothing. The job, its items and a `job.create` audit event are written in one transaction.
//! - An item is claimed under a lease renewed while it runs; its outcome and the job's
//!   counters are written together, and the job ends when no item is pending.
//! - A transient failure (the upstream unavailable, the user busy) is retried with capped
//!   backoff for as long as it lasts, like recovery (the user's own intent is finished by
//!   recovery anyway, so the job follows it rather than report a user failed that then
//!   succeeds); the item keeps the last failure. A permanent one fails the item at once with its
//!   problem code (`conflict`, `validation_failed`, ...); so does an internal error (a tenant
//!   whose credential does not open, say), whose details are logged, not shown.
//! - An item whose task panics is failed (`internal`), so a poison item cannot loop.
//! - Secrets: a key created by a job reaches no caller; the user is marked as holding an
//!   undelivered secret, read with `reveal-key` (audited), or carried once by the next `PUT`.
//! - Cancel stops what has not started; items already started finish.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::StoreError;
use crate::error::DomainError;
use crate::ids::{ExternalId, ProfileName, TenantId};
use crate::jobs::{ItemOutcome, ItemRequest, Job, JobItem, JobStatus};
use crate::model::{Actor, Lease, Page, TenantStatus, UserStatus};
use crate::scope::ScopeSet;

use super::users::check_user_fields;
use super::{
    ProvisionRequest, Provisioner, ScopeRequest, check_limit, decode_cursor, encode_cursor,
};

/// Users in one batch, at most.
/// Most users a tenant-wide rotation covers in one job.
pub const MAX_ROTATION: usize = 100_000;

pub const MAX_BATCH: usize = 10_000;
/// Failed items shown with a job, at most (the job's `failed` counts them all).
pub const MAX_ERRORS_SHOWN: u32 = 1000;

/// One user of a batch.
#[derive(Clone, Debug)]
pub struct BatchUser {
    /// The caller's id of the user.
    pub external_id: ExternalId,
    /// What is asked for.
    pub request: ItemRequest,
}

/// A job and its failed items.
#[derive(Clone, Debug)]
pub struct JobView {
    /// The job.
    pub job: Job,
    /// Its failed items, in batch order (at most [`MAX_ERRORS_SHOWN`]).
    pub errors: Vec<JobItem>,
}

/// The item tasks a worker has in flight.
#[derive(Default)]
struct ItemTasks {
    running: tokio::task::JoinSet<Option<ItemOutcome>>,
    /// Task -> (job, item, lease owner), to fail the item of a task that panicked.
    tasks: BTreeMap<tokio::task::Id, (String, i64, String)>,
    /// The actor of each job's items (its submitter).
    actors: BTreeMap<String, Actor>,
}

/// What a pass of the job worker did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobPassReport {
    /// Items claimed.
    pub claimed: u32,
    /// Items provisioned.
    pub done: u32,
    /// Items that failed for good.
    pub failed: u32,
    /// Items to be retried.
    pub retried: u32,
}

impl Provisioner {
    /// Validates a batch and stores it as a job (running at once; workers pick it up).
    pub async fn submit_batch(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        users: Vec<BatchUser>,
    ) -> Result<Job, DomainError> {
        let tenant = self.tenant(tenant_id).await?;
        if tenant.status == TenantStatus::Suspended {
            return Err(DomainError::Conflict(format!(
                "tenant {tenant_id} is suspended"
            )));
        }
        if users.is_empty() || users.len() > MAX_BATCH {
            return Err(DomainError::Validation(format!(
                "a batch holds 1 to {MAX_BATCH} users ({} given)",
                users.len()
            )));
        }
        let mut seen = BTreeSet::new();
        // Profiles are read once each, not once per user.
        let mut resolved: BTreeMap<(Option<String>, Option<Vec<String>>), ScopeSet> =
            BTreeMap::new();
        for (i, u) in users.iter().enumerate() {
            let at = |m: String| format!("users/{i} ({}): {m}", u.external_id);
            if !seen.insert(u.external_id.clone()) {
                return Err(DomainError::Validation(at(
                    "appears more than once in the batch".into(),
                )));
            }
            let r = &u.request;
            check_user_fields(r.display_name.as_deref(), r.metadata.as_ref())
                .map_err(|e| relabel(e, &at))?;
            let key = (r.scope_profile.clone(), r.scopes.clone());
            if !resolved.contains_key(&key) {
                let req = scope_request(r).map_err(|e| relabel(e, &at))?;
                let scopes = self
                    .resolve_scopes(&tenant, &req)
                    .await
                    .map_err(|e| relabel(e, &at))?;
                resolved.insert(key, scopes);
            }
        }
        let (job, items) = self.new_job(
            actor,
            tenant_id,
            users.into_iter().map(|u| (u.external_id, u.request)),
        );
        let audit = self.audit(
            actor,
            Some(tenant_id),
            "job.create",
            format!("jobs/{}", job.id),
            &format!("success: {} users", job.total),
        );
        self.store.insert_job(&job, &items, &audit).await?;
        Ok(job)
    }

    /// A running job of `actor` over `users` (each with what its item asks), and its items.
    fn new_job(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        users: impl ExactSizeIterator<Item = (ExternalId, ItemRequest)>,
    ) -> (Job, Vec<JobItem>) {
        let job = Job {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: tenant_id.clone(),
            status: JobStatus::Running,
            total: i64::try_from(users.len()).unwrap_or(i64::MAX),
            done: 0,
            failed: 0,
            cancelled: 0,
            cancel_requested: false,
            created_by: actor.subject.clone(),
            request_id: actor.request_id.clone(),
            created_at: self.clock.now(),
            finished_at: None,
        };
        let items = users
            .enumerate()
            .map(|(i, (external_id, request))| JobItem {
                job_id: job.id.clone(),
                idx: i64::try_from(i).unwrap_or(i64::MAX),
                tenant_id: tenant_id.clone(),
                external_id,
                request,
                status: crate::jobs::ItemStatus::Pending,
                error_code: None,
                error_detail: None,
                attempts: 0,
                next_attempt_at: None,
            })
            .collect();
        (job, items)
    }

    /// One job with its errors. The caller checks the job's tenant against the token's
    /// (another tenant's job is "not found").
    pub async fn get_job(&self, id: &str) -> Result<JobView, DomainError> {
        let job = self
            .store
            .get_job(id)
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("job {id} not found")))?;
        let errors = if job.failed > 0 {
            self.store.job_errors(id, MAX_ERRORS_SHOWN).await?
        } else {
            Vec::new()
        };
        Ok(JobView { job, errors })
    }

    /// A tenant's jobs, newest first.
    pub async fn list_jobs(
        &self,
        tenant_id: &TenantId,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Job>, DomainError> {
        self.tenant(tenant_id).await?;
        let limit = check_limit(limit)?;
        let before = cursor.map(decode_cursor).transpose()?;
        let jobs = self
            .store
            .list_jobs(tenant_id, before.as_deref(), limit + 1)
            .await?;
        let more = jobs.len() > limit as usize;
        let mut items = jobs;
        items.truncate(limit as usize);
        let next_cursor = more
            .then(|| items.last().map(|j| encode_cursor(&j.id)))
            .flatten();
        Ok(Page { items, next_cursor })
    }

    /// Cancels a job: users not started are not provisioned; started ones finish. Audited.
    /// Cancelling a finished job changes nothing and answers it as it is.
    pub async fn cancel_job(&self, actor: &Actor, id: &str) -> Result<JobView, DomainError> {
        let view = self.get_job(id).await?;
        if view.job.finished_at.is_some() {
            return Ok(view);
        }
        let audit = self.audit(
            actor,
            Some(&view.job.tenant_id),
            "job.cancel",
            format!("jobs/{id}"),
            "success",
        );
        self.store
            .cancel_job(id, self.clock.now(), &audit)
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("job {id} not found")))?;
        self.get_job(id).await
    }

    /// One pass of the job worker: claims up to `limit` items, provisions them at once (the
    /// upstream client paces the calls per account) and waits for all of them. Never fails
    /// because of one item. Tests drive jobs with it; `serve` runs [`Provisioner::run_job_worker`].
    pub async fn run_job_pass(&self, limit: u32) -> Result<JobPassReport, DomainError> {
        let mut w = ItemTasks::default();
        let claimed = self.claim_into(&mut w, limit).await?;
        let mut report = JobPassReport {
            claimed,
            ..JobPassReport::default()
        };
        while let Some(r) = w.running.join_next_with_id().await {
            self.settle_task(&mut w, r, &mut report).await;
        }
        Ok(report)
    }

    /// The job worker of `serve`: keeps up to `concurrency` items in flight, claiming more as
    /// soon as one settles (a slow user holds one slot, not a whole pass), and polls every
    /// half second when there is nothing to claim. Returns when `stop` turns true; items still
    /// in flight are dropped there, as in a crash (their users' steps are crash-safe, and the
    /// shutdown then expires their leases so another worker resumes them at once).
    pub async fn run_job_worker(
        &self,
        concurrency: u32,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        const IDLE: Duration = Duration::from_millis(500);
        let concurrency = concurrency.max(1);
        let mut w = ItemTasks::default();
        let mut report = JobPassReport::default();
        loop {
            if *stop.borrow() {
                return;
            }
            let free =
                concurrency.saturating_sub(u32::try_from(w.running.len()).unwrap_or(u32::MAX));
            if free > 0 {
                match self.claim_into(&mut w, free).await {
                    Ok(n) => report.claimed += n,
                    Err(e) => tracing::warn!(error.message = %e, "claiming job items failed"),
                }
            }
            if w.running.is_empty() {
                tokio::select! {
                    biased;
                    _ = stop.changed() => return,
                    () = tokio::time::sleep(IDLE) => {}
                }
                continue;
            }
            tokio::select! {
                biased;
                _ = stop.changed() => return,
                Some(r) = w.running.join_next_with_id() => {
                    self.settle_task(&mut w, r, &mut report).await;
                }
                () = tokio::time::sleep(IDLE) => {}
            }
        }
    }

    /// Claims up to `limit` items and starts a task for each; how many.
    async fn claim_into(&self, w: &mut ItemTasks, limit: u32) -> Result<u32, DomainError> {
        let owner = self.new_owner();
        let now = self.clock.now();
        let lease = Lease {
            owner: owner.clone(),
            expires_at: now + self.item_ttl(),
        };
        let items = self.store.claim_job_items(&lease, now, limit).await?;
        let claimed = u32::try_from(items.len()).unwrap_or(u32::MAX);
        for item in items {
            if !w.actors.contains_key(&item.job_id) {
                let actor = match self.store.get_job(&item.job_id).await {
                    Ok(Some(job)) => Actor {
                        subject: job.created_by,
                        request_id: Some(format!("job:{}", job.id)),
                        lane: crate::budget::Lane::Bulk,
                    },
                    _ => Actor::system("jobs"),
                };
                w.actors.insert(item.job_id.clone(), actor);
            }
            let this = self.clone();
            let actor = w
                .actors
                .get(&item.job_id)
                .cloned()
                .unwrap_or_else(|| Actor::system("jobs"));
            let task_owner = owner.clone();
            let key = (item.job_id.clone(), item.idx, owner.clone());
            let handle = w
                .running
                .spawn(async move { this.work_item(&actor, item, &task_owner).await });
            w.tasks.insert(handle.id(), key);
        }
        Ok(claimed)
    }

    /// Counts a settled task; a panicked one fails its item rather than let it loop through
    /// every worker.
    async fn settle_task(
        &self,
        w: &mut ItemTasks,
        r: Result<(tokio::task::Id, Option<ItemOutcome>), tokio::task::JoinError>,
        report: &mut JobPassReport,
    ) {
        match r {
            Ok((id, outcome)) => {
                w.tasks.remove(&id);
                match outcome {
                    Some(ItemOutcome::Done) => report.done += 1,
                    Some(ItemOutcome::Failed { .. }) => report.failed += 1,
                    Some(ItemOutcome::Retry { .. }) => report.retried += 1,
                    None => {}
                }
            }
            Err(e) => {
                tracing::warn!(error.message = %e, "a job item's task failed");
                if let Some((job_id, idx, owner)) = w.tasks.remove(&e.id()) {
                    let failed = ItemOutcome::Failed {
                        code: "internal".into(),
                        detail: "internal error".into(),
                    };
                    let _ = self
                        .store
                        .finish_job_item(&job_id, idx, &owner, &failed, self.clock.now())
                        .await;
                    report.failed += 1;
                }
            }
        }
    }

    /// Releases the item leases this instance holds (a shutdown), so another worker resumes
    /// them at once.
    pub async fn release_own_job_items(&self) -> Result<u64, DomainError> {
        Ok(self
            .store
            .release_job_items(&format!("{}-", self.instance))
            .await?)
    }

    /// Provisions one item under its lease, renewed while it runs; records the outcome.
    /// `None` when the lease was lost (another worker has the item) or the outcome could not
    /// be written (the lease expires and the item is claimed again: provisioning is
    /// idempotent).
    async fn work_item(&self, actor: &Actor, item: JobItem, owner: &str) -> Option<ItemOutcome> {
        let work = self.provision_item(actor, &item);
        tokio::pin!(work);
        let renew_every = self.item_ttl_std() / 3;
        let outcome = loop {
            tokio::select! {
                out = &mut work => break out,
                () = tokio::time::sleep(renew_every) => {
                    let expires = self.clock.now() + self.item_ttl();
                    match self.store.renew_job_item(&item.job_id, item.idx, owner, expires).await {
                        Ok(true) => {}
                        Ok(false) => return None,
                        Err(e) => {
                            tracing::debug!(error.message = %e, "could not renew a job item's lease");
                        }
                    }
                }
            }
        };
        let outcome = match outcome {
            Ok(()) => ItemOutcome::Done,
            Err(e) => self.item_failure(&item, &e),
        };
        match self
            .store
            .finish_job_item(&item.job_id, item.idx, owner, &outcome, self.clock.now())
            .await
        {
            Ok(()) => Some(outcome),
            Err(StoreError::Stale) => None,
            Err(e) => {
                tracing::warn!(error.message = %e, job.id = %item.job_id, "could not record a job item's outcome; it is retried");
                None
            }
        }
    }

    async fn provision_item(&self, actor: &Actor, item: &JobItem) -> Result<(), DomainError> {
        let r = &item.request;
        if let Some(rot) = &r.rotate {
            return self.rotate_item(actor, item, rot).await;
        }
        let req = ProvisionRequest {
            scopes: scope_request(r)?,
            display_name: r.display_name.clone(),
            metadata: r.metadata.clone(),
        };
        self.provision_with(actor, &item.tenant_id, &item.external_id, req, None, false)
            .await
            .map(|_| ())
    }

    /// A tenant-wide rotation's user: its key is replaced unless it was created after the job
    /// began (rotated meanwhile, or by an earlier run of this item that was cut off). A key
    /// still in a grace period goes first (never three keys). A user no longer active is
    /// skipped (nothing to rotate).
    pub(super) async fn rotate_item(
        &self,
        actor: &Actor,
        item: &JobItem,
        rot: &crate::jobs::RotateItem,
    ) -> Result<(), DomainError> {
        match self.get_user(&item.tenant_id, &item.external_id).await {
            Err(DomainError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
            Ok(u) if !matches!(u.status, UserStatus::Active | UserStatus::Rotating) => {
                return Ok(());
            }
            Ok(_) => {}
        }
        match self
            .rotate_key_with(
                actor,
                &item.tenant_id,
                &item.external_id,
                rot.grace_seconds,
                true,
                None,
                super::rotation::Background::KeysBefore(rot.keys_before),
            )
            .await
        {
            // Deprovisioned (or deactivated) since the job began: nothing to rotate.
            Err(DomainError::Conflict(m)) if m.starts_with("user is ") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Starts a job that rotates the key of every user of the tenant active now (the answer
    /// to "our key export leaked"): durable and resumable like a bulk onboarding, with
    /// progress and per-user errors; each rotation writes `user.key_rotated`. The replaced
    /// keys stay valid for `grace_seconds` (0: deleted at once).
    pub async fn rotate_all_keys(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        grace_seconds: u32,
    ) -> Result<Job, DomainError> {
        if grace_seconds > super::users::MAX_GRACE_SECONDS {
            return Err(DomainError::Validation(format!(
                "grace_seconds must be 0-{}",
                super::users::MAX_GRACE_SECONDS
            )));
        }
        let tenant = self.tenant(tenant_id).await?;
        if tenant.status == TenantStatus::Suspended {
            return Err(DomainError::Conflict(format!(
                "tenant {tenant_id} is suspended"
            )));
        }
        let now = self.clock.now();
        let mut users = Vec::new();
        let mut after: Option<ExternalId> = None;
        loop {
            let page = self
                .store
                .list_users(tenant_id, Some(UserStatus::Active), after.as_ref(), 1000)
                .await?;
            let full = page.len() == 1000;
            after = page.last().map(|u| u.external_id.clone());
            users.extend(page.into_iter().map(|u| u.external_id));
            if users.len() > MAX_ROTATION {
                return Err(DomainError::Conflict(format!(
                    "a tenant-wide rotation covers at most {MAX_ROTATION} users; rotate the rest with rotate-key"
                )));
            }
            if !full {
                break;
            }
        }
        if users.is_empty() {
            return Err(DomainError::Conflict(format!(
                "tenant {tenant_id} has no active user to rotate"
            )));
        }
        let request = crate::jobs::ItemRequest {
            rotate: Some(crate::jobs::RotateItem {
                grace_seconds,
                keys_before: now,
            }),
            ..Default::default()
        };
        let (job, items) = self.new_job(
            actor,
            tenant_id,
            users.into_iter().map(|e| (e, request.clone())),
        );
        let audit = self.audit(
            actor,
            Some(tenant_id),
            "job.rotate_keys",
            format!("jobs/{}", job.id),
            &format!("success: {} users, grace {grace_seconds} s", job.total),
        );
        self.store.insert_job(&job, &items, &audit).await?;
        Ok(job)
    }

    fn item_failure(&self, item: &JobItem, e: &DomainError) -> ItemOutcome {
        if matches!(e, DomainError::UpstreamBusy(_)) {
            return ItemOutcome::Retry {
                next_attempt_at: self.clock.now() + super::busy_retry(),
                detail: e.to_string(),
            };
        }
        if matches!(e, DomainError::UpstreamUnavailable(_)) {
            return ItemOutcome::Retry {
                next_attempt_at: self.clock.now() + self.backoff(item.attempts + 1),
                detail: e.to_string(),
            };
        }
        ItemOutcome::Failed {
            code: e.code().to_owned(),
            detail: match e {
                // Details of internal errors are logged, never shown.
                DomainError::Internal(_) => {
                    tracing::warn!(error.message = %e, job.id = %item.job_id, "a job item failed");
                    "internal error".to_owned()
                }
                other => other.to_string(),
            },
        }
    }

    /// How long an item's lease lasts without renewal.
    fn item_ttl(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.item_ttl_std()).unwrap_or(chrono::Duration::seconds(30))
    }

    fn item_ttl_std(&self) -> Duration {
        self.config.lease_ttl.max(Duration::from_secs(3)) * 3
    }
}

/// The scopes an item asks for: a profile, explicit scopes, or the tenant's default.
fn scope_request(r: &ItemRequest) -> Result<ScopeRequest, DomainError> {
    match (&r.scope_profile, &r.scopes) {
        (Some(_), Some(_)) => Err(DomainError::Invalid(
            "give scope_profile or scopes, not both".into(),
        )),
        (Some(p), None) => Ok(ScopeRequest::Profile(ProfileName::parse(p)?)),
        (None, Some(s)) => Ok(ScopeRequest::Scopes(ScopeSet::parse(s.iter())?)),
        (None, None) => Ok(ScopeRequest::Default),
    }
}

/// The same error, its message prefixed with where in the batch it was found.
fn relabel(e: DomainError, at: &impl Fn(String) -> String) -> DomainError {
    match e {
        DomainError::Invalid(m) => DomainError::Invalid(at(m)),
        DomainError::Validation(m) => DomainError::Validation(at(m)),
        DomainError::NotFound(m) => DomainError::Validation(at(m)),
        other => other,
    }
}
