//! `POST /v1/keys/lookup` (admin) and `GET /v1/audit-events` (`provisioner:audit`).

use actix_web::{HttpResponse, web};
use provisioner_core::ids::TenantId;
use provisioner_core::secret::KeySecret;

use crate::ApiState;
use crate::auth::{Admin, Audit, Caller, Global};
use crate::body::JsonBody;
use crate::dto::{AuditEventOut, AuditPage, AuditQuery, DEFAULT_LIMIT, LookupIn, LookupOut};
use crate::openapi::responses::*;
use crate::problem::ApiError;

/// Which user a (leaked) key belongs to, by its fingerprint (admin).
#[utoipa::path(
    post, path = "/v1/keys/lookup", tag = "keys", request_body = LookupIn,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The key's owner", body = LookupOut),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge), (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn lookup_key(
    state: web::Data<ApiState>,
    _auth: Global<Admin>,
    JsonBody(body): JsonBody<LookupIn>,
) -> Result<HttpResponse, ApiError> {
    let secret = KeySecret::try_from(body)?;
    let (tenant_id, external_id) = state.service.lookup_key(&secret).await?;
    Ok(HttpResponse::Ok().json(LookupOut {
        tenant_id: tenant_id.to_string(),
        external_id: external_id.to_string(),
    }))
}

/// The tenant filter a caller may use: admin any (or all); a bound token only its own (another
/// tenant's id is 404, like every other route); a non-admin token bound to no tenant is 403.
fn audit_filter(caller: &Caller, asked: Option<&str>) -> Result<Option<TenantId>, ApiError> {
    let asked = asked
        .map(TenantId::parse)
        .transpose()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    if caller.is_admin() {
        return Ok(asked);
    }
    let Some(own) = &caller.tenant else {
        return Err(ApiError::Forbidden(
            "a non-admin token must be bound to a tenant".into(),
        ));
    };
    match asked {
        Some(t) if &t != own => Err(ApiError::NotFound(format!("tenant {t} not found"))),
        _ => Ok(Some(own.clone())),
    }
}

/// Audit events in time order (`provisioner:audit`; tenant-bound tokens see only their tenant).
#[utoipa::path(
    get, path = "/v1/audit-events", tag = "audit", params(AuditQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of events", body = AuditPage),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 429, response = RateLimited),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn list_audit(
    state: web::Data<ApiState>,
    auth: Global<Audit>,
    q: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant = audit_filter(&auth.caller, q.tenant_id.as_deref())?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    let page = state
        .service
        .list_audit(tenant.as_ref(), q.after.as_deref(), limit)
        .await?;
    let items = page.items.into_iter().map(AuditEventOut::from).collect();
    Ok(HttpResponse::Ok().json(AuditPage {
        items,
        next_cursor: page.next_cursor,
    }))
}
