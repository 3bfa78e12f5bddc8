//! `/v1/tenants/{tenant_id}/scim`: a tenant's SCIM settings and tokens (admin). The SCIM
//! endpoints themselves live under `/scim/v2/{tenant_id}` ([`crate::scim`]).

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::ApiState;
use crate::auth::{Admin, TenantAccess};
use crate::body::OptionalJsonBody;
use crate::dto::{
    ScimConfigIn, ScimConfigOut, ScimTokenCreatedOut, ScimTokenIdParam, ScimTokenIn, ScimTokenList,
    ScimTokenOut, TenantIdParam,
};
use crate::openapi::responses::*;
use crate::problem::ApiError;

/// The tenant's SCIM settings (the defaults when never set) and its SCIM base URL path.
#[utoipa::path(
    get, path = "/v1/tenants/{tenant_id}/scim", tag = "scim",
    params(TenantIdParam),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The settings", body = ScimConfigOut),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn get_scim_config(
    state: web::Data<ApiState>,
    auth: TenantAccess<Admin>,
) -> Result<HttpResponse, ApiError> {
    let config = state.service.scim_config(&auth.tenant).await?;
    Ok(HttpResponse::Ok().json(ScimConfigOut::from(config)))
}

/// Replaces the tenant's SCIM settings (admin); absent fields take their defaults.
#[utoipa::path(
    put, path = "/v1/tenants/{tenant_id}/scim", tag = "scim",
    request_body(content = Option<ScimConfigIn>, description = "Optional; empty means every default"),
    params(TenantIdParam),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The new settings", body = ScimConfigOut),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge), (status = 422, response = ValidationFailed),
        (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn put_scim_config(
    state: web::Data<ApiState>,
    auth: TenantAccess<Admin>,
    OptionalJsonBody(body): OptionalJsonBody<ScimConfigIn>,
) -> Result<HttpResponse, ApiError> {
    let config = body.into_config(&auth.tenant)?;
    let config = state
        .service
        .put_scim_config(&auth.caller.actor(), config)
        .await?;
    Ok(HttpResponse::Ok().json(ScimConfigOut::from(config)))
}

/// Issues a SCIM token (admin); the tenant's earlier tokens stop working after
/// `overlap_seconds`. The secret is in this answer only.
#[utoipa::path(
    post, path = "/v1/tenants/{tenant_id}/scim/tokens", tag = "scim",
    request_body(content = Option<ScimTokenIn>, description = "Optional; empty means overlap_seconds 86400"),
    params(TenantIdParam),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Issued; `token` is shown this once", body = ScimTokenCreatedOut),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge), (status = 422, response = ValidationFailed),
        (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn issue_scim_token(
    state: web::Data<ApiState>,
    auth: TenantAccess<Admin>,
    OptionalJsonBody(body): OptionalJsonBody<ScimTokenIn>,
) -> Result<HttpResponse, ApiError> {
    let issued = state
        .service
        .issue_scim_token(&auth.caller.actor(), &auth.tenant, body.overlap_seconds)
        .await?;
    Ok(HttpResponse::Created().json(ScimTokenCreatedOut::from(issued)))
}

/// The tenant's SCIM tokens, oldest first (never their secrets).
#[utoipa::path(
    get, path = "/v1/tenants/{tenant_id}/scim/tokens", tag = "scim",
    params(TenantIdParam),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tokens", body = ScimTokenList),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn list_scim_tokens(
    state: web::Data<ApiState>,
    auth: TenantAccess<Admin>,
) -> Result<HttpResponse, ApiError> {
    let tokens = state.service.list_scim_tokens(&auth.tenant).await?;
    Ok(HttpResponse::Ok().json(ScimTokenList {
        items: tokens.into_iter().map(ScimTokenOut::from).collect(),
    }))
}

/// The `{token_id}` path segment.
#[derive(Deserialize)]
pub struct TokenPath {
    token_id: String,
}

/// Revokes a SCIM token at once (admin); 204.
#[utoipa::path(
    delete, path = "/v1/tenants/{tenant_id}/scim/tokens/{token_id}", tag = "scim",
    params(TenantIdParam, ScimTokenIdParam),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn revoke_scim_token(
    state: web::Data<ApiState>,
    auth: TenantAccess<Admin>,
    path: web::Path<TokenPath>,
) -> Result<HttpResponse, ApiError> {
    state
        .service
        .revoke_scim_token(&auth.caller.actor(), &auth.tenant, &path.token_id)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
