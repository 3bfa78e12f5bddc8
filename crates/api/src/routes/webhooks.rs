//! `/v1/tenants/{tenant_id}/webhook-endpoints`: a tenant's webhook endpoints (create, list,
//! read, change, delete, rotate the secret), their messages and attempts, resend and recover
//! (docs/webhooks.md). Admin, like the tenant's other configuration (scope profiles, SCIM):
//! an endpoint's URL may carry a credential of the receiver. Signing secrets appear only in
//! the answers of a create and a rotation (every answer is `Cache-Control: no-store`).

use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpResponse, web};
use chrono::Utc;
use provisioner_core::service::{EndpointPatch, NewEndpoint};
use serde::Deserialize;

use crate::ApiState;
use crate::auth::{Admin, TenantAccess};
use crate::body::JsonBody;
use crate::dto::{
    TenantIdParam, WebhookAttemptList, WebhookAttemptOut, WebhookEndpointIdParam,
    WebhookEndpointIn, WebhookEndpointList, WebhookEndpointOut, WebhookEndpointPatchIn,
    WebhookEndpointSecretOut, WebhookEventIdParam, WebhookMessageOut, WebhookMessagePage,
    WebhookMessageQuery, WebhookMessageStatusDto, WebhookRecoverIn, WebhookRecoverOut,
    WebhookResendOut,
};
use crate::openapi::responses::*;
use crate::problem::{ApiError, Problem};

/// The `{endpoint_id}` path segment.
#[derive(Deserialize)]
pub struct EndpointPath {
    endpoint_id: String,
}

/// The `{endpoint_id}` and `{event_id}` path segments.
#[derive(Deserialize)]
pub struct MessagePath {
    endpoint_id: String,
    event_id: String,
}

/// Creates an endpoint (admin; at most 20 per tenant) with a new signing secret, shown in this
/// answer only. It receives the events written from now on that its `event_types` select.
#[utoipa::path(
    post, path = "/v1/tenants/{tenant_id}/webhook-endpoints", tag = "webhooks",
    request_body = WebhookEndpointIn,
    params(TenantIdParam),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; `secret` is shown this once", body = WebhookEndpointSecretOut,
            headers(("Location" = String, description = "The endpoint's URL"))),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 409, description = "`conflict`: the tenant already has 20 endpoints",
            body = Problem, content_type = "application/problem+json"),
        (status = 413, response = PayloadTooLarge),
        (status = 422, description = "`validation_failed`: a URL that is not an absolute `https://` URL, \
            or an unknown event type (the known ones are listed in `detail`)",
            body = Problem, content_type = "application/problem+json"),
        (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn create_webhook_endpoint(
    state: web::Data<ApiState>,
    auth: TenantAccess<Admin>,
    JsonBody(body): JsonBody<WebhookEndpointIn>,
) -> Result<HttpResponse, ApiError> {
    let new = NewEndpoint::try_from(body)?;
    let issued = state
        .service
        .create_webhook_endpoint(&auth.caller.actor(), &auth.tenant, new)
        .await?;
    let out = WebhookEndpointSecretOut::new(issued, Utc::now());
    let location = format!(
        "/v1/tenants/{}/webhook-endpoints/{}",
        auth.tenant, out.endpoint.id
    );
    Ok(HttpResponse::Created()
        .insert_header((LOCATION, location))
        .json(out))
}

/// The tenant's endpoints, oldest first (never their secrets).
#[utoipa::path(
    get, path = "/v1/tenants/{tenant_id}/webhook-endpoints", tag = "webhooks",
    params(TenantIdParam),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The endpoints", body = WebhookEndpointList),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn list_webhook_endpoints(
    state: web::Data<ApiState>,
    auth: TenantAccess<Admin>,
) -> Result<HttpResponse, ApiError> {
    let endpoints = state.service.list_webhook_endpoints(&auth.tenant).await?;
    let now = Utc::now();
    Ok(HttpResponse::Ok().json(WebhookEndpointList {
        items: endpoints
            .into_iter()
            .map(|e| WebhookEndpointOut::new(e, now))
            .collect(),
    }))
}

/// One endpoint (never its secrets).
#[utoipa::path(
    get, path = "/v1/tenants/{tenant_id}/webhook-endpoints/{endpoint_id}", tag = "webhooks",
    params(TenantIdParam, WebhookEndpointIdParam),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The endpoint", body = WebhookEndpointOut),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn get_webhook_endpoint(
    state: web::Data<ApiState>,
    auth: TenantAccess<Admin>,
    path: web::Path<EndpointPath>,
) -> Result<HttpResponse, ApiError> {
    let endpoint = state
        .service
        .get_webhook_endpoint(&auth.tenant, &path.endpoint_id)
        .await?;
    Ok(HttpResponse::Ok().json(WebhookEndpointOut::new(endpoint, Utc::now())))
}

/// Changes an endpoint's URL, description, event types, or enables or disables it (admin);
/// absent fields keep their value. Enabling clears `disabled_reason` and `failing_since`.
#[utoipa::path(
    patch, path = "/v1/tenants/{tenant_id}/webhook-endpoints/{endpoint_id}", tag = "webhooks",
    request_body = WebhookEndpointPatchIn,
    params(TenantIdParam, WebhookEndpointIdParam),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The endpoint as changed", body = WebhookEndpointOut),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 422, description = "`validation_failed`: a URL that is not an absolute `https://` URL, \
            or an unknown event type (the known ones are listed in `detail`)",
            body = Problem, content_type = "application/problem+json"),
        (status = 429, response = RateLimited),
        (status = 503, description = "`upstream_unavailable`: the endpoint kept changing concurrently \
            (the delivery worker records attempts on it); nothing was changed, retry",
            body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn patch_webhook_endpoint(
    state: web::Data<ApiState>,
    auth: TenantAccess<Admin>,
    path: web::Path<EndpointPath>,
    JsonBody(body): JsonBody<WebhookEndpointPatchIn>,
) -> Result<HttpResponse, ApiError> {
    let patch = EndpointPatch::try_from(body)?;
    let endpoint = state
        .service
        .update_webhook_endpoint(&auth.caller.actor(), &auth.tenant, &path.endpoint_id, patch)
        .await?;
    Ok(HttpResponse::Ok().json(WebhookEndpointOut::new(endpoint, Utc::now())))
}

/// Deletes an endpoint with its messages and their attempts (admin); 204. Nothing more is
/// sent to it, messages being sent included.
#[utoipa::path(
    delete, path = "/v1/tenants/{tenant_id}/webhook-endpoints/{endpoint_id}", tag = "webhooks",
    params(TenantIdParam, WebhookEndpointIdParam),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn delete_webhook_endpoint(
    state: web::Data<ApiState>,
    auth: TenantAccess<Admin>,
    path: web::Path<EndpointPath>,
) -> Result<HttpResponse, ApiError> {
    state
        .service
        .delete_webhook_endpoint(&auth.caller.actor(), &auth.tenant, &path.endpoint_id)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Replaces the endpoint's signing secret (admin); the new one is shown in this answer only.
/// The previous secret keeps signing for 24 hours: until then every message carries one `v1,`
/// signature per secret in `webhook-signature`, so the receiver can switch to the new secret
/// without losing a message. Rotating again within those 24 hours gives the then-current
/// secret its own 24 hours; at most two earlier secrets sign beside the new one (the oldest is
/// dropped first).
#[utoipa::path(
    post, path = "/v1/tenants/{tenant_id}/webhook-endpoints/{endpoint_id}/rotate-secret", tag = "webhooks",
    params(TenantIdParam, WebhookEndpointIdParam),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Rotated; `secret` is shown this once", body = WebhookEndpointSecretOut),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 429, response = RateLimited),
        (status = 503, description = "`upstream_unavailable`: the endpoint kept changing concurrently \
            (the delivery worker records attempts on it); nothing was changed, retry",
            body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn rotate_webhook_secret(
    state: web::Data<ApiState>,
    auth: TenantAccess<Admin>,
    path: web::Path<EndpointPath>,
) -> Result<HttpResponse, ApiError> {
    let issued = state
        .service
        .rotate_webhook_secret(&auth.caller.actor(), &auth.tenant, &path.endpoint_id)
        .await?;
    Ok(HttpResponse::Ok().json(WebhookEndpointSecretOut::new(issued, Utc::now())))
}

/// The endpoint's messages (one per event it was to receive), newest event first, optionally
/// of one status (keyset pagination).
#[utoipa::path(
    get, path = "/v1/tenants/{tenant_id}/webhook-endpoints/{endpoint_id}/messages", tag = "webhooks",
    params(TenantIdParam, WebhookEndpointIdParam, WebhookMessageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of messages", body = WebhookMessagePage),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn list_webhook_messages(
    state: web::Data<ApiState>,
    auth: TenantAccess<Admin>,
    path: web::Path<EndpointPath>,
    q: web::Query<WebhookMessageQuery>,
) -> Result<HttpResponse, ApiError> {
    // An unknown endpoint is 404, not an empty page.
    let endpoint = state
        .service
        .get_webhook_endpoint(&auth.tenant, &path.endpoint_id)
        .await?;
    let page = state
        .service
        .list_webhook_messages(
            &auth.tenant,
            Some(&endpoint.id),
            q.status.map(Into::into),
            q.cursor.as_deref(),
            q.limit.unwrap_or(crate::dto::DEFAULT_LIMIT),
        )
        .await?;
    Ok(HttpResponse::Ok().json(WebhookMessagePage {
        items: page
            .items
            .into_iter()
            .map(WebhookMessageOut::from)
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// The attempts to deliver one message to the endpoint, in order (empty while none was made,
/// and for an event the endpoint never received).
#[utoipa::path(
    get, path = "/v1/tenants/{tenant_id}/webhook-endpoints/{endpoint_id}/messages/{event_id}/attempts",
    tag = "webhooks",
    params(TenantIdParam, WebhookEndpointIdParam, WebhookEventIdParam),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The attempts", body = WebhookAttemptList),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn list_webhook_attempts(
    state: web::Data<ApiState>,
    auth: TenantAccess<Admin>,
    path: web::Path<MessagePath>,
) -> Result<HttpResponse, ApiError> {
    let endpoint = state
        .service
        .get_webhook_endpoint(&auth.tenant, &path.endpoint_id)
        .await?;
    let attempts = state
        .service
        .list_webhook_attempts(&auth.tenant, &path.event_id, Some(&endpoint.id))
        .await?;
    Ok(HttpResponse::Ok().json(WebhookAttemptList {
        items: attempts.into_iter().map(WebhookAttemptOut::from).collect(),
    }))
}

/// Sends one message to the endpoint again, whatever its state (admin): it becomes `pending`
/// and due now, with the same `webhook-id`, so receivers that deduplicate see it once. While
/// the endpoint is disabled it waits until the endpoint is enabled. Audited.
#[utoipa::path(
    post, path = "/v1/tenants/{tenant_id}/webhook-endpoints/{endpoint_id}/messages/{event_id}/resend",
    tag = "webhooks",
    params(TenantIdParam, WebhookEndpointIdParam, WebhookEventIdParam),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Queued: the message is `pending`", body = WebhookResendOut),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, description = "`not_found`: no such endpoint, or the event was never to be sent to it",
            body = Problem, content_type = "application/problem+json"),
        (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn resend_webhook_message(
    state: web::Data<ApiState>,
    auth: TenantAccess<Admin>,
    path: web::Path<MessagePath>,
) -> Result<HttpResponse, ApiError> {
    state
        .service
        .resend_webhook_message(
            &auth.caller.actor(),
            &auth.tenant,
            &path.endpoint_id,
            &path.event_id,
        )
        .await?;
    Ok(
        HttpResponse::build(StatusCode::ACCEPTED).json(WebhookResendOut {
            status: WebhookMessageStatusDto::Pending,
        }),
    )
}

/// Sends again every `failed` message of the endpoint whose event was written at or after
/// `since` (admin), e.g. after fixing a receiver that was down: they become `pending` and due
/// now, with their `webhook-id`s. Messages still `pending` or `delivered` are left alone
/// (resend one to send it again). While the endpoint is disabled they wait until it is
/// enabled. Audited.
#[utoipa::path(
    post, path = "/v1/tenants/{tenant_id}/webhook-endpoints/{endpoint_id}/recover", tag = "webhooks",
    request_body = WebhookRecoverIn,
    params(TenantIdParam, WebhookEndpointIdParam),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Queued: how many messages are `pending` again", body = WebhookRecoverOut),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge), (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn recover_webhook_endpoint(
    state: web::Data<ApiState>,
    auth: TenantAccess<Admin>,
    path: web::Path<EndpointPath>,
    JsonBody(body): JsonBody<WebhookRecoverIn>,
) -> Result<HttpResponse, ApiError> {
    let requeued = state
        .service
        .recover_webhook_endpoint(
            &auth.caller.actor(),
            &auth.tenant,
            &path.endpoint_id,
            body.since,
        )
        .await?;
    Ok(HttpResponse::Accepted().json(WebhookRecoverOut { requeued }))
}
