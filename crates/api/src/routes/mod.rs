//! Route table: each resource module's handlers, mounted by [`configure`].

pub mod keys;
pub mod ops;
pub mod profiles;
pub mod reconcile;
pub mod tenants;
pub mod users;

use actix_web::{HttpResponse, Resource, web};

use crate::problem::ApiError;

/// A resource whose unmatched methods answer a 405 problem.
fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

/// Unknown routes: a 404 problem.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such route".into()))
}

/// Mounts every route of this crate.
pub fn configure(cfg: &mut web::ServiceConfig) {
    const TENANT: &str = "/v1/tenants/{tenant_id}";
    cfg.service(resource("/healthz").get(ops::healthz))
        .service(resource("/readyz").get(ops::readyz))
        .service(resource("/openapi.json").get(ops::openapi_json))
        .service(
            resource("/v1/tenants")
                .post(tenants::create_tenant)
                .get(tenants::list_tenants),
        )
        .service(
            resource(TENANT)
                .get(tenants::get_tenant)
                .patch(tenants::patch_tenant)
                .delete(tenants::delete_tenant),
        )
        .service(resource(&format!("{TENANT}/upstream-credential")).put(tenants::set_credential))
        .service(resource(&format!("{TENANT}/scope-profiles")).get(profiles::list_profiles))
        .service(
            resource(&format!("{TENANT}/scope-profiles/{{name}}"))
                .put(profiles::put_profile)
                .get(profiles::get_profile)
                .delete(profiles::delete_profile),
        )
        .service(resource(&format!("{TENANT}/reconcile")).post(reconcile::reconcile))
        .service(resource(&format!("{TENANT}/users")).get(users::list_users))
        .service(
            resource(&format!("{TENANT}/users/{{external_id}}"))
                .put(users::put_user)
                .get(users::get_user)
                .delete(users::delete_user),
        )
        .service(
            resource(&format!("{TENANT}/users/{{external_id}}/rotate-key")).post(users::rotate_key),
        )
        .service(
            resource(&format!("{TENANT}/users/{{external_id}}/reveal-key")).post(users::reveal_key),
        )
        .service(resource("/v1/keys/lookup").post(keys::lookup_key))
        .service(resource("/v1/audit-events").get(keys::list_audit));
}
