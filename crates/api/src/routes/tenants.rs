//! `/v1/tenants`: create, list, read, patch, delete, replace the upstream credential.

use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, web};
use provisioner_core::secret::Pat;
use provisioner_core::service::{IdempotentOperation, NewTenant, TenantPatch};
use serde_json::json;

use crate::ApiState;
use crate::auth::{Admin, Global, Read, TenantAccess};
use crate::body::JsonBody;
use crate::dto::{
    CredentialIn, ListQuery, TenantIdParam, TenantIn, TenantOut, TenantPage, TenantPatchIn,
};
use crate::idempotency::{Answer, keyed_request, read_key, run_keyed};
use crate::openapi::responses::*;
use crate::problem::ApiError;

/// Creates a tenant after verifying its PAT upstream.
#[utoipa::path(
    post, path = "/v1/tenants", tag = "tenants", request_body = TenantIn,
    params(crate::routes::users::IdempotencyKeyHeader),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = TenantOut,
            headers(("location" = String, description = "URL of the new tenant"))),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge), (status = 422, response = ValidationFailedOrKeyReused),
        (status = 429, response = RateLimited), (status = 502, response = UpstreamRejected),
        (status = 503, response = UpstreamUnavailable),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn create_tenant(
    state: web::Data<ApiState>,
    auth: Global<Admin>,
    http: HttpRequest,
    JsonBody(body): JsonBody<TenantIn>,
) -> Result<HttpResponse, ApiError> {
    let keyed = match read_key(&http)? {
        None => None,
        Some(k) => {
            // The canonical body holds the PAT's SHA-256, never the PAT.
            let mut canonical = json!({
                "id": body.id, "display_name": body.display_name,
                "base_url": body.upstream.base_url, "user_id": body.upstream.user_id,
                "pat_sha256": provisioner_core::secret::fingerprint(&body.upstream.pat),
                "app_defaults": body.app_defaults, "upstream_rate_limit": body.upstream_rate_limit,
                "allowed_scopes": body.allowed_scopes,
                "default_scope_profile": body.default_scope_profile,
                "scope_profiles": body.scope_profiles,
            });
            // Only when given, so keys stored before it counted keep their hash.
            if let Some(check) = &body.auto_key_check {
                canonical["auto_key_check"] = json!(check);
            }
            let target = format!("tenants/{}", body.id);
            Some(keyed_request(
                k,
                IdempotentOperation::CreateTenant,
                None,
                target,
                &canonical,
            )?)
        }
    };
    let new = NewTenant::try_from(body)?;
    if let Some(keyed) = keyed {
        let actor = auth.caller.actor();
        let (svc, a) = (&state.service, &actor);
        return run_keyed(
            svc,
            a,
            keyed,
            move |_ticket| async move { svc.create_tenant(a, new).await },
            |view| {
                let out = TenantOut::from(view);
                let location = format!("/v1/tenants/{}", out.id);
                let mut answer = Answer::json(StatusCode::CREATED, &out)?;
                answer.location = Some(location);
                Ok(answer)
            },
            |b| b["id"].as_str().map(|id| format!("/v1/tenants/{id}")),
        )
        .await;
    }
    let view = state
        .service
        .create_tenant(&auth.caller.actor(), new)
        .await?;
    let out = TenantOut::from(view);
    Ok(HttpResponse::Created()
        .insert_header((LOCATION, format!("/v1/tenants/{}", out.id)))
        .json(out))
}

/// Lists tenants by id (items omit `scope_profiles`).
#[utoipa::path(
    get, path = "/v1/tenants", tag = "tenants", params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of tenants", body = TenantPage),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn list_tenants(
    state: web::Data<ApiState>,
    _auth: Global<Admin>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = state
        .service
        .list_tenants(q.cursor.as_deref(), q.limit())
        .await?;
    let items = page.items.into_iter().map(TenantOut::summary).collect();
    Ok(HttpResponse::Ok().json(TenantPage {
        items,
        next_cursor: page.next_cursor,
    }))
}

/// One tenant with its scope profiles (admin, or a token bound to it with `read`).
#[utoipa::path(
    get, path = "/v1/tenants/{tenant_id}", tag = "tenants",
    params(TenantIdParam),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tenant", body = TenantOut),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn get_tenant(
    state: web::Data<ApiState>,
    auth: TenantAccess<Read>,
) -> Result<HttpResponse, ApiError> {
    let view = state.service.get_tenant(&auth.tenant).await?;
    Ok(HttpResponse::Ok().json(TenantOut::from(view)))
}

/// Changes a tenant's settings (admin). Absent fields stay; `default_scope_profile: null` clears it.
#[utoipa::path(
    patch, path = "/v1/tenants/{tenant_id}", tag = "tenants", request_body = TenantPatchIn,
    params(TenantIdParam),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The changed tenant", body = TenantOut),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 409, response = Conflict), (status = 413, response = PayloadTooLarge),
        (status = 422, response = ValidationFailed), (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn patch_tenant(
    state: web::Data<ApiState>,
    auth: TenantAccess<Admin>,
    JsonBody(body): JsonBody<TenantPatchIn>,
) -> Result<HttpResponse, ApiError> {
    let patch = TenantPatch::try_from(body)?;
    let view = state
        .service
        .patch_tenant(&auth.caller.actor(), &auth.tenant, patch)
        .await?;
    Ok(HttpResponse::Ok().json(TenantOut::from(view)))
}

/// Replaces the tenant's PAT after verifying it upstream (admin).
#[utoipa::path(
    put, path = "/v1/tenants/{tenant_id}/upstream-credential", tag = "tenants", request_body = CredentialIn,
    params(TenantIdParam),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tenant with the new PAT's fingerprint", body = TenantOut),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge), (status = 422, response = ValidationFailed),
        (status = 429, response = RateLimited), (status = 502, response = UpstreamRejected),
        (status = 503, response = UpstreamUnavailable),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn set_credential(
    state: web::Data<ApiState>,
    auth: TenantAccess<Admin>,
    JsonBody(body): JsonBody<CredentialIn>,
) -> Result<HttpResponse, ApiError> {
    let pat = Pat::try_from(body)?;
    let view = state
        .service
        .set_credential(&auth.caller.actor(), &auth.tenant, pat)
        .await?;
    Ok(HttpResponse::Ok().json(TenantOut::from(view)))
}

/// Deletes a tenant whose users are all `deleted` (admin); 204.
#[utoipa::path(
    delete, path = "/v1/tenants/{tenant_id}", tag = "tenants",
    params(TenantIdParam),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 409, response = Conflict), (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn delete_tenant(
    state: web::Data<ApiState>,
    auth: TenantAccess<Admin>,
) -> Result<HttpResponse, ApiError> {
    state
        .service
        .delete_tenant(&auth.caller.actor(), &auth.tenant)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
