//! [`MemStore`]'s bulk onboarding jobs: the same rules as the SQL store (crates/storage).

use async_trait::async_trait;

use crate::error::StoreError;
use crate::ids::TenantId;
use crate::jobs::{ItemOutcome, ItemStatus, Job, JobItem, JobStatus};
use crate::model::{AuditEvent, Lease, Timestamp};
use crate::ports::JobStore;

use super::lock;
use super::store::{MemState, MemStore};

impl MemState {
    /// Ends the job when no item is pending (the store's rule for `finish` and `cancel`).
    fn finish_job_if_done(&mut self, job_id: &str, now: Timestamp) {
        let pending = self
            .items
            .values()
            .any(|(i, _)| i.job_id == job_id && i.status == ItemStatus::Pending);
        if let Some(job) = self.jobs.get_mut(job_id)
            && !pending
            && job.finished_at.is_none()
        {
            job.status = if job.cancel_requested {
                JobStatus::Cancelled
            } else if job.failed > 0 {
                JobStatus::Failed
            } else {
                JobStatus::Succeeded
            };
            job.finished_at = Some(now);
            let event = job.completed_event(now);
            super::webhooks::write_event(self, &event);
        }
    }
}

#[async_trait]
impl JobStore for MemStore {
    async fn insert_job(
        &self,
        job: &Job,
        items: &[JobItem],
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut st = lock(&self.state);
        if st.jobs.contains_key(&job.id) {
            return Err(StoreError::AlreadyExists);
        }
        self.write_audit(&mut st, Some(audit))?;
        st.jobs.insert(job.id.clone(), job.clone());
        for i in items {
            st.items
                .insert((i.job_id.clone(), i.idx), (i.clone(), None));
        }
        Ok(())
    }
    async fn get_job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        Ok(lock(&self.state).jobs.get(id).cloned())
    }
    async fn list_jobs(
        &self,
        tenant: &TenantId,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        Ok(lock(&self.state)
            .jobs
            .values()
            .rev()
            .filter(|j| &j.tenant_id == tenant && before.is_none_or(|b| j.id.as_str() < b))
            .take(limit as usize)
            .cloned()
            .collect())
    }
    async fn job_errors(&self, id: &str, limit: u32) -> Result<Vec<JobItem>, StoreError> {
        Ok(lock(&self.state)
            .items
            .values()
            .filter(|(i, _)| i.job_id == id && i.status == ItemStatus::Failed)
            .take(limit as usize)
            .map(|(i, _)| i.clone())
            .collect())
    }
    async fn claim_job_items(
        &self,
        lease: &Lease,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<JobItem>, StoreError> {
        let mut st = lock(&self.state);
        let cancelled: Vec<String> = st
            .jobs
            .values()
            .filter(|j| j.cancel_requested)
            .map(|j| j.id.clone())
            .collect();
        let mut due: Vec<(i64, String)> = st
            .items
            .values()
            .filter(|(i, l)| {
                i.status == ItemStatus::Pending
                    && i.next_attempt_at.is_none_or(|t| t <= now)
                    && match l {
                        None => i.attempts > 0 || !cancelled.contains(&i.job_id),
                        Some(l) => l.expires_at < now,
                    }
            })
            .map(|(i, _)| (i.idx, i.job_id.clone()))
            .collect();
        due.sort();
        due.truncate(limit as usize);
        let mut out = Vec::new();
        for (idx, job) in due {
            if let Some((i, l)) = st.items.get_mut(&(job, idx)) {
                *l = Some(lease.clone());
                out.push(i.clone());
            }
        }
        Ok(out)
    }
    async fn renew_job_item(
        &self,
        job_id: &str,
        idx: i64,
        owner: &str,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut st = lock(&self.state);
        match st.items.get_mut(&(job_id.to_owned(), idx)) {
            Some((i, Some(l))) if l.owner == owner && i.status == ItemStatus::Pending => {
                l.expires_at = expires_at;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
    async fn finish_job_item(
        &self,
        job_id: &str,
        idx: i64,
        owner: &str,
        outcome: &ItemOutcome,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut st = lock(&self.state);
        let key = (job_id.to_owned(), idx);
        let Some((item, lease)) = st.items.get_mut(&key) else {
            return Err(StoreError::Stale);
        };
        if item.status != ItemStatus::Pending || lease.as_ref().is_none_or(|l| l.owner != owner) {
            return Err(StoreError::Stale);
        }
        *lease = None;
        let counter = match outcome {
            ItemOutcome::Done => {
                item.status = ItemStatus::Done;
                item.error_code = None;
                item.error_detail = None;
                Some(true)
            }
            ItemOutcome::Failed { code, detail } => {
                item.status = ItemStatus::Failed;
                item.error_code = Some(code.clone());
                item.error_detail = Some(detail.clone());
                Some(false)
            }
            ItemOutcome::Retry {
                next_attempt_at,
                detail,
            } => {
                item.attempts += 1;
                item.next_attempt_at = Some(*next_attempt_at);
                item.error_detail = Some(detail.clone());
                None
            }
        };
        if let Some(done) = counter
            && let Some(job) = st.jobs.get_mut(job_id)
        {
            if done {
                job.done += 1;
            } else {
                job.failed += 1;
            }
        }
        st.finish_job_if_done(job_id, now);
        Ok(())
    }
    async fn cancel_job(
        &self,
        id: &str,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> Result<Option<Job>, StoreError> {
        let mut st = lock(&self.state);
        match st.jobs.get(id) {
            None => return Ok(None),
            Some(j) if j.finished_at.is_some() => return Ok(Some(j.clone())),
            Some(_) => {}
        }
        self.write_audit(&mut st, Some(audit))?;
        let mut n = 0;
        for (i, l) in st.items.values_mut() {
            if i.job_id == id && i.status == ItemStatus::Pending && l.is_none() && i.attempts == 0 {
                i.status = ItemStatus::Cancelled;
                n += 1;
            }
        }
        if let Some(job) = st.jobs.get_mut(id) {
            job.cancel_requested = true;
            job.cancelled += n;
        }
        st.finish_job_if_done(id, now);
        Ok(st.jobs.get(id).cloned())
    }
    async fn release_job_items(&self, owner_prefix: &str) -> Result<u64, StoreError> {
        let mut n = 0;
        for (i, l) in lock(&self.state).items.values_mut() {
            if let Some(l) = l
                && i.status == ItemStatus::Pending
                && l.owner.starts_with(owner_prefix)
            {
                // Expired, not cleared: the item was started.
                l.expires_at = chrono::DateTime::UNIX_EPOCH;
                n += 1;
            }
        }
        Ok(n)
    }
}
