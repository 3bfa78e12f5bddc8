//! `POST /v1/tenants/{tenant_id}/reconcile` (`provisioner:read`): compare the store with the
//! tenant's upstream account; with `"repair": true` (`provisioner:admin` only), fix what differs
//! (every repair audited, each re-checked under the user's lease first).

use actix_web::{HttpResponse, web};

use crate::ApiState;
use crate::auth::{Need, Read, TenantAccess};
use crate::body::OptionalJsonBody;
use crate::dto::{ReconcileIn, ReconcileOut, TenantIdParam};
use crate::openapi::responses::*;
use crate::problem::ApiError;

/// Reports orphan apps and keys, missing apps and keys, scope drift and unmanaged apps (the
/// tenant's id prefix without this service's marker: reported, never touched). A report needs
/// `provisioner:read` and changes nothing; `"repair": true` needs `provisioner:admin` (403
/// otherwise) and deletes only what carries this service's marker.
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
    auth: TenantAccess<Read>,
    OptionalJsonBody(body): OptionalJsonBody<ReconcileIn>,
) -> Result<HttpResponse, ApiError> {
    if body.repair && !auth.caller.is_admin() {
        return Err(ApiError::Forbidden(format!(
            "repair needs {}",
            Need::Admin.scope()
        )));
    }
    let report = state
        .service
        .reconcile(&auth.caller.actor(), &auth.tenant, body.repair)
        .await?;
    Ok(HttpResponse::Ok().json(ReconcileOut::from(report)))
}
