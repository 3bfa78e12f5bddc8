//! Bulk onboarding: `POST /v1/tenants/{tenant_id}/users:batch` body, jobs as answered.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use provisioner_core::ids::ExternalId;
use provisioner_core::jobs::{ItemRequest, Job, JobItem, JobStatus};
use provisioner_core::service::{BatchUser, JobView};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::Check;
use crate::problem::ApiError;

/// One user of a batch: the fields of a `PUT` body plus its external id.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchUserIn {
    /// The caller's id of the user (1-128 characters, no control characters).
    #[schema(example = "alice@example.com")]
    pub external_id: String,
    /// A scope profile of the tenant (or `scopes`, or neither: the tenant's default).
    #[schema(example = "standard", pattern = "^[a-z][a-z0-9-]{0,31}$")]
    pub scope_profile: Option<String>,
    /// Explicit scopes (within the tenant's allowed scopes).
    pub scopes: Option<Vec<String>>,
    /// Optional human name.
    pub display_name: Option<String>,
    /// Optional string metadata.
    pub metadata: Option<BTreeMap<String, String>>,
}

/// `POST /v1/tenants/{tenant_id}/users:batch` body: 1-10,000 users.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchIn {
    /// The users to onboard, each at most once.
    #[schema(min_items = 1, max_items = 10000)]
    pub users: Vec<BatchUserIn>,
}

impl TryFrom<BatchIn> for Vec<BatchUser> {
    type Error = ApiError;

    fn try_from(v: BatchIn) -> Result<Self, ApiError> {
        let mut c = Check::default();
        let mut out = Some(Vec::with_capacity(v.users.len()));
        for (i, u) in v.users.into_iter().enumerate() {
            let id = c.syntax(
                &format!("/users/{i}/external_id"),
                ExternalId::parse(&u.external_id),
            );
            match (id, out.as_mut()) {
                (Some(external_id), Some(out)) => out.push(BatchUser {
                    external_id,
                    request: ItemRequest {
                        scope_profile: u.scope_profile,
                        scopes: u.scopes,
                        display_name: u.display_name,
                        metadata: u.metadata,
                        rotate: None,
                    },
                }),
                _ => out = None,
            }
        }
        out.ok_or_else(|| c.into_error())
    }
}

/// The body of `POST /v1/tenants/{tenant_id}/rotate-keys`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKeysIn {
    /// How long each replaced key stays valid, in seconds (0: deleted at once).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 86400)]
    pub grace_seconds: u32,
}

/// The answer of `POST .../users:batch`.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobCreatedOut {
    /// The job's id (its URL is in `Location`).
    pub job_id: String,
    /// `running`: workers provision the users from now on.
    pub status: JobStatusDto,
}

/// Where a job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatusDto {
    /// Accepted, not started.
    Queued,
    /// Users are being provisioned.
    Running,
    /// Every user was provisioned.
    Succeeded,
    /// Every user settled, at least one failed (see `errors`).
    Failed,
    /// Cancelled: users not started were not provisioned.
    Cancelled,
}

impl From<JobStatus> for JobStatusDto {
    fn from(s: JobStatus) -> Self {
        match s {
            JobStatus::Queued => Self::Queued,
            JobStatus::Running => Self::Running,
            JobStatus::Succeeded => Self::Succeeded,
            JobStatus::Failed => Self::Failed,
            JobStatus::Cancelled => Self::Cancelled,
        }
    }
}

/// A user of a job that was not provisioned.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobErrorOut {
    /// The user.
    pub external_id: String,
    /// The problem code a `PUT` of this user would have answered (`conflict`,
    /// `validation_failed`, `upstream_rejected`, `upstream_unavailable`, ...).
    pub code: String,
    /// Why, for humans (no secrets).
    pub detail: String,
}

/// A bulk onboarding job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobOut {
    /// Its id.
    pub job_id: String,
    /// The tenant.
    pub tenant_id: String,
    /// Where it stands.
    pub status: JobStatusDto,
    /// Users in the batch.
    pub total: i64,
    /// Users provisioned (or already provisioned with the same scopes).
    pub done: i64,
    /// Users that failed (each listed in `errors`, up to 1,000).
    pub failed: i64,
    /// Users not started because the job was cancelled.
    pub cancelled: i64,
    /// The failed users, in batch order (at most 1,000; absent from list items).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<JobErrorOut>>,
    /// Submitted.
    pub created_at: DateTime<Utc>,
    /// When its last user settled; `null` while it runs.
    pub finished_at: Option<DateTime<Utc>>,
}

impl JobOut {
    /// A job without its errors (list items).
    pub fn summary(j: Job) -> Self {
        JobOut {
            job_id: j.id,
            tenant_id: j.tenant_id.to_string(),
            status: j.status.into(),
            total: j.total,
            done: j.done,
            failed: j.failed,
            cancelled: j.cancelled,
            errors: None,
            created_at: j.created_at,
            finished_at: j.finished_at,
        }
    }
}

impl From<JobView> for JobOut {
    fn from(v: JobView) -> Self {
        let errors = v.errors.into_iter().map(error_out).collect();
        JobOut {
            errors: Some(errors),
            ..JobOut::summary(v.job)
        }
    }
}

fn error_out(i: JobItem) -> JobErrorOut {
    JobErrorOut {
        external_id: i.external_id.to_string(),
        code: i.error_code.unwrap_or_else(|| "internal".into()),
        detail: i.error_detail.unwrap_or_default(),
    }
}

/// A page of jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobPage {
    /// Jobs, newest first.
    pub items: Vec<JobOut>,
    /// Cursor of the next page; `null` at the end.
    pub next_cursor: Option<String>,
}

/// `GET /v1/tenants/{tenant_id}/jobs` query.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct JobListQuery {
    /// Page size, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000, default = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The `{job_id}` path segment (documentation only).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct JobIdParam {
    /// The job's id (from the `users:batch` answer).
    job_id: String,
}
