//! Bulk onboarding: `POST /v1/tenants/{tenant_id}/users:batch` starts a job; `GET
//! /v1/jobs/{job_id}`, `GET /v1/tenants/{tenant_id}/jobs` and `POST /v1/jobs/{job_id}/cancel`
//! follow it. Jobs are tenant-bound like users: another tenant's job is 404.

use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, web};
use provisioner_core::service::{BatchUser, IdempotentOperation};
use serde::Deserialize;

use crate::ApiState;
use crate::auth::{Admin, Caller, Need, Read, TenantAccess, Write};
use crate::body::JsonBody;
use crate::dto::{
    BatchIn, JobCreatedOut, JobIdParam, JobListQuery, JobOut, JobPage, JobStatusDto, RotateKeysIn,
    TenantIdParam,
};
use crate::idempotency::{Answer, keyed_request, read_key, run_keyed};
use crate::openapi::responses::*;
use crate::problem::ApiError;

/// Largest `users:batch` body, in bytes: 10,000 users with typical fields fit (users with large
/// metadata may not: 413, send smaller batches).
pub const BATCH_BODY_LIMIT: usize = 16 << 20;

/// The `{job_id}` path segment.
#[derive(Deserialize)]
pub struct JobPath {
    job_id: String,
}

/// Validates the whole batch (ids, duplicates, profiles, scopes, names, metadata) and starts a
/// job that provisions each user through the same crash-safe steps as a `PUT`. A bad batch is
/// refused whole and stores nothing. The new keys' secrets are read with `reveal-key`
/// (`provisioner:secrets`, audited); the job's answer never carries a secret.
#[utoipa::path(
    post, path = "/v1/tenants/{tenant_id}/users:batch", tag = "jobs",
    request_body = BatchIn,
    params(TenantIdParam, crate::routes::users::IdempotencyKeyHeader),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "The job, running",
            headers(("Location" = String, description = "The job's URL")), body = JobCreatedOut),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 409, response = Conflict), (status = 413, response = PayloadTooLarge),
        (status = 422, response = ValidationFailedOrKeyReused), (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn submit_batch(
    state: web::Data<ApiState>,
    auth: TenantAccess<Write>,
    http: HttpRequest,
    JsonBody(body): JsonBody<BatchIn>,
) -> Result<HttpResponse, ApiError> {
    let keyed = match read_key(&http)? {
        None => None,
        Some(k) => Some(keyed_request(
            k,
            IdempotentOperation::SubmitBatch,
            Some(&auth.tenant),
            format!("{}/users:batch", auth.tenant),
            &body,
        )?),
    };
    let users: Vec<BatchUser> = body.try_into()?;
    if let Some(keyed) = keyed {
        // A repeat gets the first answer (the same job); the job's users are each provisioned
        // once whatever happens, so a repeat after a lost answer that starts a second job
        // provisions nobody twice.
        let actor = auth.caller.actor();
        let (svc, a, tenant) = (&state.service, &actor, &auth.tenant);
        return run_keyed(
            svc,
            a,
            keyed,
            move |_ticket| async move { svc.submit_batch(a, tenant, users).await },
            |job| {
                let location = format!("/v1/jobs/{}", job.id);
                let mut answer = Answer::json(
                    StatusCode::ACCEPTED,
                    &JobCreatedOut {
                        job_id: job.id,
                        status: JobStatusDto::from(job.status),
                    },
                )?;
                answer.location = Some(location);
                Ok(answer)
            },
            |b| b["job_id"].as_str().map(|id| format!("/v1/jobs/{id}")),
        )
        .await;
    }
    let job = state
        .service
        .submit_batch(&auth.caller.actor(), &auth.tenant, users)
        .await?;
    Ok(HttpResponse::Accepted()
        .insert_header((LOCATION, format!("/v1/jobs/{}", job.id)))
        .json(JobCreatedOut {
            job_id: job.id,
            status: JobStatusDto::from(job.status),
        }))
}

/// Starts a job that replaces the key of every user of the tenant active now: the answer to
/// "our key export leaked". Durable and resumable like a bulk onboarding (follow it at
/// `/v1/jobs/{job_id}`); each user's rotation is crash-safe, happens once (a key created after
/// the job began is left alone), keeps the replaced key for `grace_seconds` (0: deleted at
/// once; a key still in an earlier grace period is deleted first), and sends
/// `user.key_rotated`. The new secrets are read with `reveal-key`. Admin only.
#[utoipa::path(
    post, path = "/v1/tenants/{tenant_id}/rotate-keys", tag = "jobs",
    request_body = RotateKeysIn,
    params(TenantIdParam),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "The job, running",
            headers(("Location" = String, description = "The job's URL")), body = JobCreatedOut),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 409, response = Conflict), (status = 413, response = PayloadTooLarge),
        (status = 422, response = ValidationFailed), (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn rotate_keys(
    state: web::Data<ApiState>,
    auth: TenantAccess<Admin>,
    JsonBody(body): JsonBody<RotateKeysIn>,
) -> Result<HttpResponse, ApiError> {
    let job = state
        .service
        .rotate_all_keys(&auth.caller.actor(), &auth.tenant, body.grace_seconds)
        .await?;
    Ok(HttpResponse::Accepted()
        .insert_header((LOCATION, format!("/v1/jobs/{}", job.id)))
        .json(JobCreatedOut {
            job_id: job.id,
            status: JobStatusDto::from(job.status),
        }))
}

/// The job, a caller of its tenant may see it (with `read`).
async fn visible_job(
    state: &ApiState,
    caller: &Caller,
    id: &str,
    need: Need,
) -> Result<provisioner_core::service::JobView, ApiError> {
    let view = state.service.get_job(id).await?;
    if !caller.may_see(&view.job.tenant_id) {
        return Err(ApiError::NotFound(format!("job {id} not found")));
    }
    if !caller.has(need) {
        return Err(ApiError::Forbidden(format!(
            "this action needs {}",
            need.scope()
        )));
    }
    Ok(view)
}

/// A job: its counts and its failed users with their problem codes.
#[utoipa::path(
    get, path = "/v1/jobs/{job_id}", tag = "jobs",
    params(JobIdParam),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The job", body = JobOut),
        (status = 401, response = Unauthenticated), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn get_job(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<JobPath>,
) -> Result<HttpResponse, ApiError> {
    let view = visible_job(&state, &caller, &path.job_id, Need::Read).await?;
    Ok(HttpResponse::Ok().json(JobOut::from(view)))
}

/// Stops what has not started; users already started finish. Cancelling a finished job
/// changes nothing. Audited (`job.cancel`).
#[utoipa::path(
    post, path = "/v1/jobs/{job_id}/cancel", tag = "jobs",
    params(JobIdParam),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The job as it stands", body = JobOut),
        (status = 401, response = Unauthenticated), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn cancel_job(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<JobPath>,
) -> Result<HttpResponse, ApiError> {
    visible_job(&state, &caller, &path.job_id, Need::Write).await?;
    let view = state
        .service
        .cancel_job(&caller.actor(), &path.job_id)
        .await?;
    Ok(HttpResponse::Ok().json(JobOut::from(view)))
}

/// A tenant's jobs, newest first (keyset pagination; no `errors` in list items).
#[utoipa::path(
    get, path = "/v1/tenants/{tenant_id}/jobs", tag = "jobs",
    params(TenantIdParam, JobListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of jobs", body = JobPage),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn list_jobs(
    state: web::Data<ApiState>,
    auth: TenantAccess<Read>,
    q: web::Query<JobListQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = q.limit.unwrap_or(crate::dto::DEFAULT_LIMIT);
    let page = state
        .service
        .list_jobs(&auth.tenant, q.cursor.as_deref(), limit)
        .await?;
    Ok(HttpResponse::Ok().json(JobPage {
        items: page.items.into_iter().map(JobOut::summary).collect(),
        next_cursor: page.next_cursor,
    }))
}
