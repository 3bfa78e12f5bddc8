//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` attributes and
//! the DTOs' `ToSchema` derives. Served at `/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::dto::*;
use crate::problem::{FieldError, Problem};
use crate::routes::{
    docs, jobs, keys, ops, profiles, reconcile, scim_admin, tenants, users, webhooks,
};
use responses::*;

/// Reusable problem responses (`components/responses`), named in the handlers' attributes.
pub(crate) mod responses {
    use utoipa::ToResponse;

    use crate::problem::Problem;

    macro_rules! problem_responses {
        ($($(#[$m:meta])* $name:ident),+ $(,)?) => {$(
            $(#[$m])*
            #[derive(ToResponse)]
            #[response(content_type = "application/problem+json")]
            pub struct $name(#[allow(dead_code)] Problem);
        )+};
    }

    problem_responses!(
        /// 400 `invalid_request`: malformed JSON, wrong types, unknown fields, bad ids or query.
        BadRequest,
        /// 401 `unauthenticated`: missing, malformed, expired or wrongly signed bearer token.
        Unauthenticated,
        /// 403 `forbidden`: the token lacks the permission on its own tenant (or is not admin).
        Forbidden,
        /// 404 `not_found`: no such resource, or another tenant's.
        NotFound,
        /// 409 `conflict`: exists with a different spec, or the state does not allow the action.
        Conflict,
        /// 413 `payload_too_large`: body over the limit (default 1 MiB).
        PayloadTooLarge,
        /// 422 `validation_failed`: unknown or disallowed scope, rejected credential.
        ValidationFailed,
        /// 422 `validation_failed` (unknown or disallowed scope), or `idempotency_key_reused`:
        /// the `Idempotency-Key` was sent with another request (another body, user or route)
        /// within 24 h.
        ValidationFailedOrKeyReused,
        /// 429 `rate_limited`: the caller exceeded its request rate; see `Retry-After`.
        RateLimited,
        /// 502 `upstream_rejected`: the upstream refused; its status code is in `detail`.
        UpstreamRejected,
        /// 503 `upstream_unavailable`: the upstream could not be reached; nothing is left half-done.
        UpstreamUnavailable,
        /// 503 `not_ready`: the database is not reachable or not migrated.
        NotReady,
    );
}

/// Adds the bearer (JWT) security scheme.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "A JWT with `sub`, `exp`, `scope` (space-separated `provisioner:admin|write|read|secrets|audit`) \
                 and, for non-admin tokens, `tenant`.",
            ))
            .build();
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Provisioner API",
        description = "Provisions one Clarifai app and one app-scoped API key per end user of each tenant. \
            Errors are RFC 9457 problem details (`application/problem+json`) with a stable `code` and the \
            `request_id` also sent in the `x-request-id` header.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        tenants::create_tenant, tenants::list_tenants, tenants::get_tenant, tenants::patch_tenant,
        tenants::set_credential, tenants::delete_tenant,
        profiles::put_profile, profiles::get_profile, profiles::list_profiles, profiles::delete_profile,
        users::put_user, users::get_user, users::list_users, users::rotate_key, users::reveal_key,
        users::delete_user,
        reconcile::reconcile,
        scim_admin::get_scim_config, scim_admin::put_scim_config, scim_admin::issue_scim_token,
        scim_admin::list_scim_tokens, scim_admin::revoke_scim_token,
        jobs::submit_batch, jobs::rotate_keys, jobs::get_job, jobs::list_jobs, jobs::cancel_job,
        webhooks::create_webhook_endpoint, webhooks::list_webhook_endpoints,
        webhooks::get_webhook_endpoint, webhooks::patch_webhook_endpoint,
        webhooks::delete_webhook_endpoint, webhooks::rotate_webhook_secret,
        webhooks::list_webhook_messages, webhooks::list_webhook_attempts,
        webhooks::resend_webhook_message, webhooks::recover_webhook_endpoint,
        keys::lookup_key, keys::list_audit,
        ops::healthz, ops::readyz, ops::openapi_json, docs::docs, docs::problems,
    ),
    components(
        schemas(
            Problem, FieldError, TenantIn, UpstreamIn, AppDefaultsIn, AppDefaultsDto, RateLimitDto, TenantPatchIn,
            CredentialIn, TenantOut, UpstreamOut, TenantStatusDto, AutoKeyCheckDto, TenantPage, ProfileIn, ProfileOut,
            ProfilePage, UserPutIn, RotateIn, UserOut, AppOut, KeyOut, UserStatusDto, UserPage, RevealOut,
            LookupIn, LookupOut, AuditEventOut, AuditPage, StatusOut, ReconcileIn, ReconcileOut,
            OrphanAppOut, OrphanKeyOut, UnmarkedKeyOut, UserRefOut, ScopeDriftOut, UnmanagedAppOut,
            BatchIn, BatchUserIn, JobCreatedOut, JobStatusDto, JobErrorOut, JobOut, JobPage, RotateKeysIn,
            ScimConfigIn, ScimConfigOut, ExternalIdSourceDto, DeactivatePolicyDto, ScimTokenIn,
            ScimTokenCreatedOut, ScimTokenOut, ScimTokenList,
            WebhookEventType, WebhookEndpointIn, WebhookEndpointPatchIn, WebhookEndpointOut,
            WebhookEndpointSecretOut, WebhookEndpointList, WebhookMessageStatusDto, WebhookMessageOut,
            WebhookMessagePage, WebhookAttemptOut, WebhookAttemptList, WebhookResendOut,
            WebhookRecoverIn, WebhookRecoverOut,
        ),
        responses(
            BadRequest, Unauthenticated, Forbidden, NotFound, Conflict, PayloadTooLarge,
            ValidationFailed, ValidationFailedOrKeyReused, RateLimited, UpstreamRejected,
            UpstreamUnavailable, NotReady,
        )
    ),
    modifiers(&BearerAuth),
    // In reading order: `/docs` lists the tags as given here.
    tags(
        (name = "users", description = "End users: one app and one key each"),
        (name = "tenants", description = "Tenants and their upstream credential (admin)"),
        (name = "keys", description = "Leaked-key look-up"),
        (name = "scope profiles", description = "Named scope sets of a tenant"),
        (name = "jobs", description = "Bulk onboarding: a batch of users as a durable job"),
        (name = "scim", description = "SCIM provisioning from an identity provider (Okta, Entra ID): a tenant's \
            settings and SCIM tokens (admin). The SCIM 2.0 endpoints themselves are served under \
            `/scim/v2/{tenant_id}` (Users, Groups, ServiceProviderConfig, ResourceTypes, Schemas; RFC 7643/7644) \
            with a SCIM token, SCIM error bodies and `application/scim+json`; they are not part of this document."),
        (name = "webhooks", description = "Signed webhooks: a tenant's endpoints receive its events \
            (`user.provisioned`, `user.key_rotated`, `user.deprovisioned`, `job.completed`, `drift.detected`, ...) \
            as HTTPS POSTs of `{\"type\", \"timestamp\", \"data\"}`, signed per Standard Webhooks 1.0: headers \
            `webhook-id` (the event's id, the same on every retry: deduplicate on it), `webhook-timestamp` \
            (Unix seconds of the attempt) and `webhook-signature` (`v1,` + base64 of HMAC-SHA256 with the \
            endpoint's `whsec_` secret over `{id}.{timestamp}.{body}`; during the 24 h after a rotation one \
            signature per secret). Delivery is at least once and unordered (`data` carries a per-user \
            `version` to drop stale events): any 2xx is a success; redirects are not followed; other answers and \
            timeouts are retried with back-off and jitter (by default 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h \
            apart, about 28 h in all; `Retry-After` honoured), then the message is `failed`. An endpoint \
            answering `410 Gone`, or failing without a success for five days, is disabled (event \
            `webhook_endpoint.disabled`); a disabled endpoint is sent nothing and is not queued the events \
            written meanwhile. Failed messages can be resent one by one or recovered since an \
            instant. Payloads are thin and never carry a secret. Receivers, verification and every event's \
            `data`: docs/webhooks.md."),
        (name = "audit", description = "The audit log"),
        (name = "operations", description = "Probes and this document (no auth)"),
    )
)]
struct ApiDoc;

/// The OpenAPI 3.1 document of this API (served at `/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
