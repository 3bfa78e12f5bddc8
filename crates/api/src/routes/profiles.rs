//! `/v1/tenants/{tenant_id}/scope-profiles`: put (admin), read and list (read), delete (admin).

use actix_web::http::header::LOCATION;
use actix_web::{HttpResponse, web};
use provisioner_core::ids::ProfileName;
use serde::Deserialize;

use crate::ApiState;
use crate::auth::{Admin, Read, TenantAccess};
use crate::body::JsonBody;
use crate::dto::{ProfileIn, ProfileNameParam, ProfileOut, ProfilePage, TenantIdParam};
use crate::openapi::responses::*;
use crate::problem::ApiError;

/// The `{name}` path segment.
#[derive(Deserialize)]
pub struct ProfilePath {
    name: String,
}

impl ProfilePath {
    fn parse(&self) -> Result<ProfileName, ApiError> {
        ProfileName::parse(&self.name).map_err(|e| ApiError::invalid(e.to_string()))
    }
}

/// Creates (201) or replaces (200) a scope profile (admin).
#[utoipa::path(
    put, path = "/v1/tenants/{tenant_id}/scope-profiles/{name}", tag = "scope profiles", request_body = ProfileIn,
    params(TenantIdParam, ProfileNameParam),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = ProfileOut,
            headers(("location" = String, description = "URL of the new profile"))),
        (status = 200, description = "Replaced", body = ProfileOut),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge), (status = 422, response = ValidationFailed),
        (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn put_profile(
    state: web::Data<ApiState>,
    auth: TenantAccess<Admin>,
    path: web::Path<ProfilePath>,
    JsonBody(body): JsonBody<ProfileIn>,
) -> Result<HttpResponse, ApiError> {
    let name = path.parse()?;
    let (scopes, policy) = body.parts()?;
    let (profile, created) = state
        .service
        .put_profile(&auth.caller.actor(), &auth.tenant, name, scopes, policy)
        .await?;
    let out = ProfileOut::from(profile);
    if created {
        let location = format!("/v1/tenants/{}/scope-profiles/{}", out.tenant_id, out.name);
        Ok(HttpResponse::Created()
            .insert_header((LOCATION, location))
            .json(out))
    } else {
        Ok(HttpResponse::Ok().json(out))
    }
}

/// One scope profile.
#[utoipa::path(
    get, path = "/v1/tenants/{tenant_id}/scope-profiles/{name}", tag = "scope profiles",
    params(TenantIdParam, ProfileNameParam),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The profile", body = ProfileOut),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn get_profile(
    state: web::Data<ApiState>,
    auth: TenantAccess<Read>,
    path: web::Path<ProfilePath>,
) -> Result<HttpResponse, ApiError> {
    let name = path.parse()?;
    let profile = state.service.get_profile(&auth.tenant, &name).await?;
    Ok(HttpResponse::Ok().json(ProfileOut::from(profile)))
}

/// A tenant's scope profiles, by name (one page).
#[utoipa::path(
    get, path = "/v1/tenants/{tenant_id}/scope-profiles", tag = "scope profiles",
    params(TenantIdParam),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The profiles", body = ProfilePage),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn list_profiles(
    state: web::Data<ApiState>,
    auth: TenantAccess<Read>,
) -> Result<HttpResponse, ApiError> {
    let profiles = state.service.list_profiles(&auth.tenant).await?;
    let items = profiles.into_iter().map(ProfileOut::from).collect();
    Ok(HttpResponse::Ok().json(ProfilePage {
        items,
        next_cursor: None,
    }))
}

/// Deletes a profile that is not the tenant's default (admin); 204.
#[utoipa::path(
    delete, path = "/v1/tenants/{tenant_id}/scope-profiles/{name}", tag = "scope profiles",
    params(TenantIdParam, ProfileNameParam),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 409, response = Conflict), (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn delete_profile(
    state: web::Data<ApiState>,
    auth: TenantAccess<Admin>,
    path: web::Path<ProfilePath>,
) -> Result<HttpResponse, ApiError> {
    let name = path.parse()?;
    state
        .service
        .delete_profile(&auth.caller.actor(), &auth.tenant, &name)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
