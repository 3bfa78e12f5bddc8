//! The authenticated caller and the permission extractors handlers name in their signatures.
//!
//! Order of checks (so nothing can be probed): token (401), caller rate limit (429), tenant id
//! in the path (400), tenant binding (404: another tenant's resources do not exist for this
//! token), permission on the caller's own tenant (403).

use std::marker::PhantomData;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures::future::LocalBoxFuture;
use provisioner_core::ids::TenantId;
use provisioner_core::model::Actor;
use serde::Deserialize;

use crate::ApiState;
use crate::problem::ApiError;
use crate::ratelimit::CallerLimiter;
use crate::request_id::{RequestId, record_tenant};

/// A permission a route needs (the `scope` claim's `provisioner:*` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// `provisioner:read` (implied by `write`).
    Read,
    /// `provisioner:write`.
    Write,
    /// `provisioner:secrets` (reveal a stored key).
    Secrets,
    /// `provisioner:audit`.
    Audit,
    /// `provisioner:admin` (implies everything, on every tenant).
    Admin,
}

impl Need {
    /// The scope value granting it.
    pub fn scope(self) -> &'static str {
        match self {
            Need::Read => "provisioner:read",
            Need::Write => "provisioner:write",
            Need::Secrets => "provisioner:secrets",
            Need::Audit => "provisioner:audit",
            Need::Admin => "provisioner:admin",
        }
    }
}

/// A permission named at the type level: `TenantAccess<Write>`.
pub trait Permission {
    /// The permission.
    const NEED: Need;
}

macro_rules! permission {
    ($($(#[$m:meta])* $name:ident => $need:expr),+ $(,)?) => {$(
        $(#[$m])*
        #[derive(Debug)]
        pub struct $name;
        impl Permission for $name {
            const NEED: Need = $need;
        }
    )+};
}

permission!(
    /// Needs `provisioner:read` (or `write`).
    Read => Need::Read,
    /// Needs `provisioner:write`.
    Write => Need::Write,
    /// Needs `provisioner:secrets`.
    Secrets => Need::Secrets,
    /// Needs `provisioner:audit`.
    Audit => Need::Audit,
    /// Needs `provisioner:admin`.
    Admin => Need::Admin,
);

/// A verified caller.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The token's `sub`.
    pub subject: String,
    /// The token's `tenant` (ignored for admin tokens).
    pub tenant: Option<TenantId>,
    scopes: Vec<Need>,
    request_id: String,
}

impl Caller {
    /// Whether the token grants `need`.
    pub fn has(&self, need: Need) -> bool {
        self.scopes.contains(&Need::Admin)
            || self.scopes.contains(&need)
            || (need == Need::Read && self.scopes.contains(&Need::Write))
    }

    /// Whether the token is an admin token.
    pub fn is_admin(&self) -> bool {
        self.scopes.contains(&Need::Admin)
    }

    /// Whether the caller may see `tenant` at all.
    pub fn may_see(&self, tenant: &TenantId) -> bool {
        self.is_admin() || self.tenant.as_ref() == Some(tenant)
    }

    /// The actor recorded in audit events (with this request's id).
    pub fn actor(&self) -> Actor {
        Actor {
            subject: self.subject.clone(),
            request_id: Some(self.request_id.clone()),
            lane: provisioner_core::budget::Lane::Interactive,
        }
    }

    /// Verifies the bearer token. Waits only when the token names a key id no held key has
    /// and a JWKS is fetched from the identity provider (a rate-limited refresh).
    async fn authenticate(req: &HttpRequest) -> Result<Self, ApiError> {
        let state = req
            .app_data::<web::Data<ApiState>>()
            .ok_or_else(|| ApiError::Internal("ApiState missing from app data".into()))?;
        let value = req.headers().get(header::AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthenticated("missing Authorization: Bearer token", false)
        })?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthenticated(
                    "the Authorization header must be `Bearer <token>`",
                    false,
                )
            })?;
        let claims = state
            .verifier
            .verify_refreshing(token)
            .await
            .map_err(|m| ApiError::unauthenticated(m, true))?;
        if claims.sub.trim().is_empty() {
            return Err(ApiError::unauthenticated("token has an empty sub", true));
        }
        let tenant = match &claims.tenant {
            Some(t) => Some(TenantId::parse(t).map_err(|_| {
                ApiError::unauthenticated("token has an invalid tenant claim", true)
            })?),
            None => None,
        };
        let scopes = claims
            .permissions()
            .filter_map(|s| {
                [
                    Need::Read,
                    Need::Write,
                    Need::Secrets,
                    Need::Audit,
                    Need::Admin,
                ]
                .into_iter()
                .find(|n| n.scope() == s)
            })
            .collect();
        let caller = Caller {
            subject: claims.sub,
            tenant,
            scopes,
            request_id: RequestId::of(req),
        };
        if let Some(limiter) = req.app_data::<web::Data<CallerLimiter>>() {
            limiter.check(&caller.subject)?;
        }
        Ok(caller)
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { Caller::authenticate(&req).await })
    }
}

/// A caller allowed on the tenant named by the `{tenant_id}` path segment with permission `P`.
#[derive(Debug)]
pub struct TenantAccess<P> {
    /// The caller.
    pub caller: Caller,
    /// The tenant of the path.
    pub tenant: TenantId,
    _p: PhantomData<P>,
}

#[derive(Deserialize)]
struct TenantSegment {
    tenant_id: String,
}

impl<P: Permission> FromRequest for TenantAccess<P> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let caller = Caller::authenticate(&req).await?;
            let seg = web::Path::<TenantSegment>::extract(&req)
                .await
                .map_err(|_| ApiError::invalid("missing tenant id in the path"))?;
            let tenant =
                TenantId::parse(&seg.tenant_id).map_err(|e| ApiError::invalid(e.to_string()))?;
            if !caller.may_see(&tenant) {
                return Err(ApiError::NotFound(format!("tenant {tenant} not found")));
            }
            record_tenant(&req, tenant.as_str());
            if !caller.has(P::NEED) {
                return Err(ApiError::Forbidden(format!(
                    "this action needs {}",
                    P::NEED.scope()
                )));
            }
            Ok(TenantAccess {
                caller,
                tenant,
                _p: PhantomData,
            })
        })
    }
}

/// A caller with permission `P` on a route that names no tenant.
#[derive(Debug)]
pub struct Global<P> {
    /// The caller.
    pub caller: Caller,
    _p: PhantomData<P>,
}

impl<P: Permission> FromRequest for Global<P> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let caller = Caller::authenticate(&req).await?;
            if caller.has(P::NEED) {
                Ok(Global {
                    caller,
                    _p: PhantomData,
                })
            } else {
                Err(ApiError::Forbidden(format!(
                    "this action needs {}",
                    P::NEED.scope()
                )))
            }
        })
    }
}
