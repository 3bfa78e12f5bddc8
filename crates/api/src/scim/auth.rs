//! The SCIM caller: a tenant's SCIM bearer token, bound to the tenant of the path.
//!
//! Order of checks (so nothing can be probed): token (401, with `WWW-Authenticate: Bearer`),
//! token's tenant against the `{tenant_id}` of the path (404, as if that tenant did not exist),
//! rate limit (429, per tenant). Only SCIM tokens work here: a `/v1` JWT is an unknown token
//! (401), and a SCIM token is not a JWT, so `/v1` refuses it in turn.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures::future::LocalBoxFuture;
use provisioner_core::budget::Lane;
use provisioner_core::ids::TenantId;
use provisioner_core::model::Actor;

use super::error::ScimError;
use crate::ApiState;
use crate::problem::ApiError;
use crate::ratelimit::CallerLimiter;
use crate::request_id::{RequestId, record_tenant};

/// An identity provider authenticated for the tenant of the path.
#[derive(Clone, Debug)]
pub struct ScimCaller {
    /// The tenant (the token's, equal to the path's).
    pub tenant: TenantId,
    /// The actor of its writes: `scim:<tenant>`, this request's id, interactive lane.
    pub actor: Actor,
}

/// The bearer token of `Authorization: Bearer <token>` (scheme in any case).
fn bearer(req: &HttpRequest) -> Result<&str, ScimError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ScimError::unauthorized("missing Authorization: Bearer token"))?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ScimError::unauthorized("the Authorization header must be `Bearer <token>`"))
}

impl ScimCaller {
    async fn authenticate(req: &HttpRequest) -> Result<Self, ScimError> {
        let state = req
            .app_data::<web::Data<ApiState>>()
            .ok_or_else(|| ScimError::internal("ApiState missing from app data"))?;
        let token = bearer(req)?;
        let tenant = state
            .service
            .authenticate_scim(token)
            .await?
            .ok_or_else(|| ScimError::unauthorized("unknown, revoked or expired SCIM token"))?;
        let path_tenant = req.match_info().get("tenant_id").unwrap_or_default();
        if path_tenant != tenant.as_str() {
            return Err(ScimError::not_found(format!(
                "tenant {path_tenant} not found"
            )));
        }
        record_tenant(req, tenant.as_str());
        let subject = format!("scim:{tenant}");
        if let Some(limiter) = req.app_data::<web::Data<CallerLimiter>>() {
            limiter.check(&subject).map_err(|e| match e {
                ApiError::RateLimited { retry_after_secs } => {
                    ScimError::rate_limited(retry_after_secs)
                }
                other => ScimError::internal(other.to_string()),
            })?;
        }
        Ok(ScimCaller {
            tenant,
            actor: Actor {
                subject,
                request_id: Some(RequestId::of(req)),
                lane: Lane::Interactive,
            },
        })
    }
}

impl FromRequest for ScimCaller {
    type Error = ScimError;
    type Future = LocalBoxFuture<'static, Result<Self, ScimError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { ScimCaller::authenticate(&req).await })
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn only_a_bearer_authorization_yields_a_token() {
        let req = |v: Option<&str>| {
            let mut r = TestRequest::default();
            if let Some(v) = v {
                r = r.insert_header((header::AUTHORIZATION, v));
            }
            r.to_http_request()
        };
        assert_eq!(bearer(&req(Some("Bearer scim_abc"))).unwrap(), "scim_abc");
        assert_eq!(bearer(&req(Some("bearer  scim_abc "))).unwrap(), "scim_abc");
        for bad in [
            None,
            Some("Basic dXNlcjpwYXNz"),
            Some("Bearer "),
            Some("non-token"),
        ] {
            let e = bearer(&req(bad)).unwrap_err();
            assert_eq!(e.status(), 401, "{bad:?}");
        }
    }
}
