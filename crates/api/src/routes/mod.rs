//! Route table: each resource module's handlers, mounted by [`configure`].

pub mod docs;
pub mod jobs;
pub mod keys;
pub mod ops;
pub mod profiles;
pub mod reconcile;
pub mod scim_admin;
pub mod tenants;
pub mod users;
pub mod webhooks;

use actix_web::http::Method;
use actix_web::{HttpResponse, Resource, Route, web};

use crate::problem::ApiError;

/// A resource answering `routes` (each a method and its handler); any other method answers a
/// 405 problem whose `Allow` header lists exactly these methods.
fn resource<const N: usize>(path: &str, routes: [(Method, Route); N]) -> Resource {
    let allow = routes
        .iter()
        .map(|(m, _)| m.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let mut resource = web::resource(path);
    for (method, route) in routes {
        resource = resource.route(route.method(method));
    }
    resource.default_service(web::to(move || {
        let allow = allow.clone();
        async move { Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow }) }
    }))
}

/// Unknown routes: a 404 problem.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such route".into()))
}

/// Mounts every route of this crate.
pub fn configure(cfg: &mut web::ServiceConfig) {
    use Method as M;
    const TENANT: &str = "/v1/tenants/{tenant_id}";
    let user = format!("{TENANT}/users/{{external_id}}");
    let endpoint = format!("{TENANT}/webhook-endpoints/{{endpoint_id}}");
    cfg.service(resource("/healthz", [(M::GET, web::to(ops::healthz))]))
        .service(resource("/readyz", [(M::GET, web::to(ops::readyz))]))
        .service(resource("/docs", [(M::GET, web::to(docs::docs))]))
        .service(resource(
            "/docs/problems",
            [(M::GET, web::to(docs::problems))],
        ))
        .service(resource(
            "/openapi.json",
            [(M::GET, web::to(ops::openapi_json))],
        ))
        .service(resource(
            "/v1/tenants",
            [
                (M::POST, web::to(tenants::create_tenant)),
                (M::GET, web::to(tenants::list_tenants)),
            ],
        ))
        .service(resource(
            TENANT,
            [
                (M::GET, web::to(tenants::get_tenant)),
                (M::PATCH, web::to(tenants::patch_tenant)),
                (M::DELETE, web::to(tenants::delete_tenant)),
            ],
        ))
        .service(resource(
            &format!("{TENANT}/upstream-credential"),
            [(M::PUT, web::to(tenants::set_credential))],
        ))
        .service(resource(
            &format!("{TENANT}/scope-profiles"),
            [(M::GET, web::to(profiles::list_profiles))],
        ))
        .service(resource(
            &format!("{TENANT}/scope-profiles/{{name}}"),
            [
                (M::PUT, web::to(profiles::put_profile)),
                (M::GET, web::to(profiles::get_profile)),
                (M::DELETE, web::to(profiles::delete_profile)),
            ],
        ))
        .service(resource(
            &format!("{TENANT}/reconcile"),
            [(M::POST, web::to(reconcile::reconcile))],
        ))
        .service(resource(
            &format!("{TENANT}/scim"),
            [
                (M::GET, web::to(scim_admin::get_scim_config)),
                (M::PUT, web::to(scim_admin::put_scim_config)),
            ],
        ))
        .service(resource(
            &format!("{TENANT}/scim/tokens"),
            [
                (M::POST, web::to(scim_admin::issue_scim_token)),
                (M::GET, web::to(scim_admin::list_scim_tokens)),
            ],
        ))
        .service(resource(
            &format!("{TENANT}/scim/tokens/{{token_id}}"),
            [(M::DELETE, web::to(scim_admin::revoke_scim_token))],
        ))
        .service(resource(
            &format!("{TENANT}/webhook-endpoints"),
            [
                (M::POST, web::to(webhooks::create_webhook_endpoint)),
                (M::GET, web::to(webhooks::list_webhook_endpoints)),
            ],
        ))
        .service(resource(
            &endpoint,
            [
                (M::GET, web::to(webhooks::get_webhook_endpoint)),
                (M::PATCH, web::to(webhooks::patch_webhook_endpoint)),
                (M::DELETE, web::to(webhooks::delete_webhook_endpoint)),
            ],
        ))
        .service(resource(
            &format!("{endpoint}/rotate-secret"),
            [(M::POST, web::to(webhooks::rotate_webhook_secret))],
        ))
        .service(resource(
            &format!("{endpoint}/messages"),
            [(M::GET, web::to(webhooks::list_webhook_messages))],
        ))
        .service(resource(
            &format!("{endpoint}/messages/{{event_id}}/attempts"),
            [(M::GET, web::to(webhooks::list_webhook_attempts))],
        ))
        .service(resource(
            &format!("{endpoint}/messages/{{event_id}}/resend"),
            [(M::POST, web::to(webhooks::resend_webhook_message))],
        ))
        .service(resource(
            &format!("{endpoint}/recover"),
            [(M::POST, web::to(webhooks::recover_webhook_endpoint))],
        ))
        .service(resource(
            &format!("{TENANT}/users"),
            [(M::GET, web::to(users::list_users))],
        ))
        .service(
            resource(
                &format!("{TENANT}/users:batch"),
                [(M::POST, web::to(jobs::submit_batch))],
            )
            .app_data(crate::body::BodyLimit(jobs::BATCH_BODY_LIMIT)),
        )
        .service(resource(
            &format!("{TENANT}/rotate-keys"),
            [(M::POST, web::to(jobs::rotate_keys))],
        ))
        .service(resource(
            &format!("{TENANT}/jobs"),
            [(M::GET, web::to(jobs::list_jobs))],
        ))
        .service(resource(
            "/v1/jobs/{job_id}",
            [(M::GET, web::to(jobs::get_job))],
        ))
        .service(resource(
            "/v1/jobs/{job_id}/cancel",
            [(M::POST, web::to(jobs::cancel_job))],
        ))
        .service(resource(
            &user,
            [
                (M::PUT, web::to(users::put_user)),
                (M::GET, web::to(users::get_user)),
                (M::DELETE, web::to(users::delete_user)),
            ],
        ))
        .service(resource(
            &format!("{user}/rotate-key"),
            [(M::POST, web::to(users::rotate_key))],
        ))
        .service(resource(
            &format!("{user}/reveal-key"),
            [(M::POST, web::to(users::reveal_key))],
        ))
        .service(resource(
            "/v1/keys/lookup",
            [(M::POST, web::to(keys::lookup_key))],
        ))
        .service(resource(
            "/v1/audit-events",
            [(M::GET, web::to(keys::list_audit))],
        ));
}
