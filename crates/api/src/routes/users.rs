//! `/v1/tenants/{tenant_id}/users`: provision (PUT), read, list, rotate, reveal, deprovision.
//!
//! The `{external_id}` segment is percent-decoded (UTF-8); an id containing `/` must send it
//! as `%2F` (actix keeps `%2F` inside one segment while routing and decodes it afterwards).

use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, web};
use provisioner_core::ids::{ExternalId, TenantId, UpstreamUserId};
use provisioner_core::service::{IdempotentOperation, ProvisionRequest, Provisioned};
use serde::Deserialize;
use serde_json::Value;

use crate::ApiState;
use crate::auth::{Read, Secrets, TenantAccess, Write};
use crate::body::OptionalJsonBody;
use crate::dto::{
    ExternalIdParam, RevealOut, RotateIn, TenantIdParam, UserListQuery, UserOut, UserPage,
    UserPutIn,
};
use crate::idempotency::{Answer, keyed_request, read_key, run_keyed};
use crate::openapi::responses::*;
use crate::problem::ApiError;

/// The `{external_id}` path segment (percent-decoded).
#[derive(Deserialize)]
pub struct UserPath {
    external_id: String,
}

impl UserPath {
    fn parse(&self) -> Result<ExternalId, ApiError> {
        ExternalId::parse(&self.external_id).map_err(|e| ApiError::invalid(e.to_string()))
    }
}

/// The tenant's upstream user id, shown as `app.user_id` (one primary-key read).
async fn app_user_id(state: &ApiState, tenant: &TenantId) -> Result<UpstreamUserId, ApiError> {
    Ok(state.service.tenant_upstream_user(tenant).await?)
}

/// Percent-encodes a path segment (everything but RFC 3986 unreserved characters).
fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The URL of a user.
fn user_location(tenant_id: &str, external_id: &str) -> String {
    format!(
        "/v1/tenants/{tenant_id}/users/{}",
        encode_segment(external_id)
    )
}

/// A replayed 201's `Location`, from its body.
fn location_of(body: &Value) -> Option<String> {
    Some(user_location(
        body["tenant_id"].as_str()?,
        body["external_id"].as_str()?,
    ))
}

/// The keyed answer of a provisioning or rotation (`ok`: the status when nothing was created).
fn user_answer(
    out: Provisioned,
    owner: &UpstreamUserId,
    ok: StatusCode,
) -> Result<Answer, ApiError> {
    let status = if out.created { StatusCode::CREATED } else { ok };
    let secret = out.secret;
    let user = UserOut::new(out.user, owner, None);
    let location =
        (status == StatusCode::CREATED).then(|| user_location(&user.tenant_id, &user.external_id));
    let mut answer = Answer::json(status, &user)?;
    answer.secret = secret;
    answer.location = location;
    Ok(answer)
}

/// The `Idempotency-Key` header, documented on the routes that accept it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IdempotencyKeyHeader {
    /// 1-255 printable ASCII characters. A repeat by the same caller within 24 h replays the
    /// answer (2xx/4xx, a secret included), or resumes the operation the key started and
    /// answers with its outcome; another request with the key is 422 `idempotency_key_reused`.
    #[param(rename = "Idempotency-Key")]
    idempotency_key: Option<String>,
}

/// Provisions an end user, idempotently: 201 with `secret` when created, 200 without when it
/// exists with the same scopes, 409 when it exists with other scopes.
#[utoipa::path(
    put, path = "/v1/tenants/{tenant_id}/users/{external_id}", tag = "users", request_body(content = Option<UserPutIn>, description = "Optional; empty means the default profile"),
    params(TenantIdParam, ExternalIdParam, IdempotencyKeyHeader),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Provisioned now; `secret` is shown this once", body = UserOut,
            headers(("location" = String, description = "URL of the user"))),
        (status = 200, description = "Already provisioned with the same scopes: no `secret`, except once when the key was finished by recovery after the answer that carried it was lost", body = UserOut),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 409, response = Conflict), (status = 413, response = PayloadTooLarge),
        (status = 422, response = ValidationFailedOrKeyReused),
        (status = 429, response = RateLimited),
        (status = 502, response = UpstreamRejected), (status = 503, response = UpstreamUnavailable),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn put_user(
    state: web::Data<ApiState>,
    auth: TenantAccess<Write>,
    path: web::Path<UserPath>,
    http: HttpRequest,
    OptionalJsonBody(body): OptionalJsonBody<UserPutIn>,
) -> Result<HttpResponse, ApiError> {
    let external_id = path.parse()?;
    let keyed = read_key(&http)?
        .map(|k| {
            keyed_request(
                k,
                IdempotentOperation::Provision,
                Some(&auth.tenant),
                format!("{}/users/{}", auth.tenant, external_id),
                &body,
            )
        })
        .transpose()?;
    let request = ProvisionRequest::try_from(body)?;
    let owner = app_user_id(&state, &auth.tenant).await?;
    if let Some(keyed) = keyed {
        let actor = auth.caller.actor();
        let (svc, a, tenant, xid) = (&state.service, &actor, &auth.tenant, &external_id);
        return run_keyed(
            svc,
            a,
            keyed,
            move |t| async move { svc.provision_keyed(a, tenant, xid, request, &t).await },
            |out| user_answer(out, &owner, StatusCode::OK),
            location_of,
        )
        .await;
    }
    let out = state
        .service
        .provision(&auth.caller.actor(), &auth.tenant, &external_id, request)
        .await?;
    let user = UserOut::new(out.user, &owner, out.secret.as_ref());
    if out.created {
        let location = format!(
            "/v1/tenants/{}/users/{}",
            user.tenant_id,
            encode_segment(&user.external_id)
        );
        Ok(HttpResponse::Created()
            .insert_header((LOCATION, location))
            .json(user))
    } else {
        Ok(HttpResponse::Ok().json(user))
    }
}

/// One end user.
#[utoipa::path(
    get, path = "/v1/tenants/{tenant_id}/users/{external_id}", tag = "users",
    params(TenantIdParam, ExternalIdParam),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user", body = UserOut),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn get_user(
    state: web::Data<ApiState>,
    auth: TenantAccess<Read>,
    path: web::Path<UserPath>,
) -> Result<HttpResponse, ApiError> {
    let external_id = path.parse()?;
    let owner = app_user_id(&state, &auth.tenant).await?;
    let user = state.service.get_user(&auth.tenant, &external_id).await?;
    let due = state.service.key_rotation_due(&user).await?;
    let mut out = UserOut::new(user, &owner, None);
    if let Some(k) = out.key.as_mut() {
        k.rotation_due_at = due;
    }
    Ok(HttpResponse::Ok().json(out))
}

/// A tenant's users by external id (keyset pagination), optionally of one status.
#[utoipa::path(
    get, path = "/v1/tenants/{tenant_id}/users", tag = "users",
    params(TenantIdParam, UserListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of users", body = UserPage),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn list_users(
    state: web::Data<ApiState>,
    auth: TenantAccess<Read>,
    q: web::Query<UserListQuery>,
) -> Result<HttpResponse, ApiError> {
    let owner = app_user_id(&state, &auth.tenant).await?;
    let limit = q.limit.unwrap_or(crate::dto::DEFAULT_LIMIT);
    let status = q.status.map(Into::into);
    let page = state
        .service
        .list_users(&auth.tenant, status, q.cursor.as_deref(), limit)
        .await?;
    let items = page
        .items
        .into_iter()
        .map(|u| UserOut::new(u, &owner, None))
        .collect();
    Ok(HttpResponse::Ok().json(UserPage {
        items,
        next_cursor: page.next_cursor,
    }))
}

/// Replaces the user's key with a new one of the same scopes; the answer carries the new
/// `secret`. The old key is deleted upstream at once or after `grace_seconds` (kept durably).
/// While an earlier replaced key is still in its grace period: 409, unless `revoke_previous`.
#[utoipa::path(
    post, path = "/v1/tenants/{tenant_id}/users/{external_id}/rotate-key", tag = "users",
    request_body(content = Option<RotateIn>, description = "Optional; empty means grace_seconds 0"),
    params(TenantIdParam, ExternalIdParam, IdempotencyKeyHeader),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Rotated; `secret` is the new key, shown this once", body = UserOut),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 409, response = Conflict), (status = 413, response = PayloadTooLarge),
        (status = 422, response = ValidationFailedOrKeyReused),
        (status = 429, response = RateLimited),
        (status = 502, response = UpstreamRejected), (status = 503, response = UpstreamUnavailable),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn rotate_key(
    state: web::Data<ApiState>,
    auth: TenantAccess<Write>,
    path: web::Path<UserPath>,
    http: HttpRequest,
    OptionalJsonBody(body): OptionalJsonBody<RotateIn>,
) -> Result<HttpResponse, ApiError> {
    let external_id = path.parse()?;
    let keyed = read_key(&http)?
        .map(|k| {
            keyed_request(
                k,
                IdempotentOperation::RotateKey,
                Some(&auth.tenant),
                format!("{}/users/{}", auth.tenant, external_id),
                &body,
            )
        })
        .transpose()?;
    let owner = app_user_id(&state, &auth.tenant).await?;
    if let Some(keyed) = keyed {
        let actor = auth.caller.actor();
        let (svc, a, tenant, xid) = (&state.service, &actor, &auth.tenant, &external_id);
        let (grace, revoke) = (body.grace_seconds, body.revoke_previous);
        return run_keyed(
            svc,
            a,
            keyed,
            move |t| async move {
                svc.rotate_key_keyed(a, tenant, xid, grace, revoke, &t)
                    .await
                    .map(|mut p| {
                        // A rotation answers 200 whether it ran now or is resumed.
                        p.created = false;
                        p
                    })
            },
            |out| user_answer(out, &owner, StatusCode::OK),
            location_of,
        )
        .await;
    }
    let out = state
        .service
        .rotate_key(
            &auth.caller.actor(),
            &auth.tenant,
            &external_id,
            body.grace_seconds,
            body.revoke_previous,
        )
        .await?;
    Ok(HttpResponse::Ok().json(UserOut::new(out.user, &owner, out.secret.as_ref())))
}

/// The stored secret of the user's current key (`provisioner:secrets`; always audited).
#[utoipa::path(
    post, path = "/v1/tenants/{tenant_id}/users/{external_id}/reveal-key", tag = "users",
    params(TenantIdParam, ExternalIdParam),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The secret", body = RevealOut),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 409, response = Conflict), (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn reveal_key(
    state: web::Data<ApiState>,
    auth: TenantAccess<Secrets>,
    path: web::Path<UserPath>,
) -> Result<HttpResponse, ApiError> {
    let external_id = path.parse()?;
    let secret = state
        .service
        .reveal_key(&auth.caller.actor(), &auth.tenant, &external_id)
        .await?;
    Ok(HttpResponse::Ok().json(RevealOut {
        secret: secret.expose().to_owned(),
    }))
}

/// Deletes the user's key and app upstream; 200 with status `deleted` (again on repeats).
#[utoipa::path(
    delete, path = "/v1/tenants/{tenant_id}/users/{external_id}", tag = "users",
    params(TenantIdParam, ExternalIdParam),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Deprovisioned", body = UserOut),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 409, response = Conflict), (status = 429, response = RateLimited),
        (status = 502, response = UpstreamRejected), (status = 503, response = UpstreamUnavailable),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn delete_user(
    state: web::Data<ApiState>,
    auth: TenantAccess<Write>,
    path: web::Path<UserPath>,
) -> Result<HttpResponse, ApiError> {
    let external_id = path.parse()?;
    let owner = app_user_id(&state, &auth.tenant).await?;
    let user = state
        .service
        .deprovision(&auth.caller.actor(), &auth.tenant, &external_id)
        .await?;
    Ok(HttpResponse::Ok().json(UserOut::new(user, &owner, None)))
}
