//! Bulk onboarding jobs: one job per `users:batch` request, one item per user.
//!
//! A job is durable: its items are rows, claimed by workers (any replica) under a lease and
//! each provisioned through the same crash-safe steps as a single PUT, so a crash, a restart
//! or a replica's death resumes the job and no user is provisioned twice. An item's outcome
//! and the job's counters are written in one transaction.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{ExternalId, TenantId};
use crate::model::{Timestamp, text_enum};

text_enum!(
    /// Where a job stands. A job runs from its creation (`queued` is reserved for a job that
    /// waits for another); it ends `succeeded` (every user provisioned), `failed` (at least one
    /// user failed: see its errors) or `cancelled` (a cancel arrived before it ended).
    JobStatus {
        /// Accepted, not started.
        Queued => "queued",
        /// Users are being provisioned.
        Running => "running",
        /// Every user was provisioned.
        Succeeded => "succeeded",
        /// Every user settled, at least one failed.
        Failed => "failed",
        /// Cancelled: users not started were not provisioned.
        Cancelled => "cancelled",
    }
);

text_enum!(
    /// Where one user of a job stands.
    ItemStatus {
        /// Not provisioned yet (possibly in progress, or waiting to be retried).
        Pending => "pending",
        /// Provisioned (or already was, with the same scopes).
        Done => "done",
        /// Not provisioned; the item records why.
        Failed => "failed",
        /// The job was cancelled before this user was started.
        Cancelled => "cancelled",
    }
);

/// What one user of a batch asks for, as stored with its item.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRequest {
    /// A profile of the tenant (or none: `scopes`, or the tenant's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_profile: Option<String>,
    /// Explicit scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// Optional human name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Optional string metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Set in a tenant-wide rotation's items: rotate the user's key instead of provisioning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate: Option<RotateItem>,
}

/// A tenant-wide rotation's item: replace the user's key unless it was created after the job
/// began (so an item run twice, after a crash, rotates once).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateItem {
    /// How long the replaced key stays valid (0-86,400 s).
    pub grace_seconds: u32,
    /// Only a key created before this instant is replaced (the job's creation).
    pub keys_before: Timestamp,
}

/// A bulk onboarding job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// Its id (UUID v7: ordered by creation).
    pub id: String,
    /// The tenant it onboards users of.
    pub tenant_id: TenantId,
    /// Where it stands.
    pub status: JobStatus,
    /// Users in the batch.
    pub total: i64,
    /// Users provisioned.
    pub done: i64,
    /// Users that failed.
    pub failed: i64,
    /// Users not started because the job was cancelled.
    pub cancelled: i64,
    /// Whether a cancel was asked for (items already started finish).
    pub cancel_requested: bool,
    /// Who submitted it (the token's `sub`), for the audit events of its users.
    pub created_by: String,
    /// The submitting request's id.
    pub request_id: Option<String>,
    /// Created.
    pub created_at: Timestamp,
    /// When its last user settled.
    pub finished_at: Option<Timestamp>,
}

/// One user of a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobItem {
    /// Its job.
    pub job_id: String,
    /// Its position in the batch (0-based).
    pub idx: i64,
    /// The job's tenant.
    pub tenant_id: TenantId,
    /// The user.
    pub external_id: ExternalId,
    /// What the batch asked for this user.
    pub request: ItemRequest,
    /// Where it stands.
    pub status: ItemStatus,
    /// Why it failed: a problem code (`conflict`, `validation_failed`, ...).
    pub error_code: Option<String>,
    /// Why it failed, for humans (no secrets).
    pub error_detail: Option<String>,
    /// Attempts that ended in a transient failure.
    pub attempts: i64,
    /// Not retried before this time.
    pub next_attempt_at: Option<Timestamp>,
}

/// How one item ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Provisioned.
    Done,
    /// Will not be provisioned by this job.
    Failed {
        /// Problem code.
        code: String,
        /// Detail.
        detail: String,
    },
    /// A transient failure: retried at `next_attempt_at` (the lease is released).
    Retry {
        /// When to try again.
        next_attempt_at: Timestamp,
        /// The failure, kept visible until it succeeds.
        detail: String,
    },
}

impl Job {
    /// The `job.completed` webhook event of a job that just ended (the stores write it in the
    /// transaction that ends the job).
    pub fn completed_event(&self, at: Timestamp) -> crate::webhooks::OutboxEvent {
        crate::webhooks::OutboxEvent::new(
            &self.tenant_id,
            crate::webhooks::EventType::JobCompleted,
            at,
            serde_json::json!({
                "tenant_id": self.tenant_id.as_str(),
                "job_id": self.id,
                "status": self.status.as_str(),
                "total": self.total,
                "done": self.done,
                "failed": self.failed,
                "cancelled": self.cancelled,
            }),
        )
    }
}
