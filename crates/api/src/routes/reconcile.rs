//! `POST /v1/tenants/{tenant_id}/reconcile` (`provisioner:write`): compare the store with the
//! tenant's upstream account; with `"repair": true`, fix what differs (every repair audited).

use actix_web::{HttpResponse, web};

use crate::ApiState;
use crate::auth::{TenantAccess, Write};
use crate::body::OptionalJsonBody;
use crate::dto::{ReconcileIn, ReconcileOut, TenantIdParam};
use crate::openapi::responses::*;
use crate::problem::ApiError;

/// Reports orphan apps and keys, missing apps and keys, and scope drift; repairs them when
/// asked. A report changes nothing.
#[utoipa::path(
    post, path = "/v1/tenants/{tenant_id}/reconcile", tag = "tenants",
    request_body(content = Option<ReconcileIn>, description = "Optional; empty means report only"),
    params(TenantIdParam),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The report", body = ReconcileOut),
        (status = 400, response = BadRequest), (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 409, response = Conflict), (status = 413, response = PayloadTooLarge),
        (status = 429, response = RateLimited), (status = 502, response = UpstreamRejected),
        (status = 503, response = UpstreamUnavailable),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn reconcile(
    state: web::Data<ApiState>,
    auth: TenantAccess<Write>,
    OptionalJsonBody(body): OptionalJsonBody<ReconcileIn>,
) -> Result<HttpResponse, ApiError> {
    let report = state
        .service
        .reconcile(&auth.caller.actor(), &auth.tenant, body.repair)
        .await?;
    Ok(HttpResponse::Ok().json(ReconcileOut::from(report)))
}
