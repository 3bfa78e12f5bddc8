//! Operations routes (no auth): `/healthz`, `/readyz`, `/openapi.json` (`/metrics` has its own listener, served by the binary).

use actix_web::{HttpResponse, web};

use crate::ApiState;
use crate::dto::StatusOut;
use crate::openapi::responses::*;
use crate::problem::ApiError;

/// The process is up.
#[utoipa::path(
    get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Up", body = StatusOut, example = json!({"status": "ok"})))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(StatusOut {
        status: "ok".into(),
    })
}

/// The database is reachable and migrated.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = StatusOut, example = json!({"status": "ready"})),
        (status = 503, response = NotReady),
    )
)]
pub async fn readyz(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    state
        .service
        .ready()
        .await
        .map_err(|e| ApiError::NotReady(e.to_string()))?;
    Ok(HttpResponse::Ok().json(StatusOut {
        status: "ready".into(),
    }))
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(
    get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
pub async fn openapi_json(doc: web::Data<String>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.get_ref().clone())
}
