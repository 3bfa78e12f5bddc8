//! SCIM error responses (RFC 7644 §3.12): the one place that renders a failure on `/scim`.
//!
//! Every answer under `/scim` that is not a success is a [`ScimError`]: the body is
//! `{"schemas": [Error URN], "status": "<code as a string>", "scimType"?, "detail"}` with
//! `Content-Type: application/scim+json`, never RFC 9457 problem details (the identity
//! providers check the SCIM schema, Okta's spec test even on the 401). `status` is a string,
//! as the RFC (with errata 6893 and 7898) and Entra's examples have it.
//!
//! 5xx bodies never carry internal text: the message is logged once, here, inside the
//! request's root span (which holds `request_id`), and the client gets a generic detail.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use provisioner_core::DomainError;
use serde_json::json;

/// Media type of every SCIM answer (RFC 7644 §8.1).
pub const SCIM_JSON: &str = "application/scim+json";

/// URN of the error message schema.
pub const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// The `scimType` detail of a 400 (RFC 7644 §3.12, table 9) or 409.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScimType {
    /// The filter syntax is invalid or names something not supported.
    InvalidFilter,
    /// A value is not unique (409).
    Uniqueness,
    /// An attempt to change an attribute that cannot be changed (or removed).
    Mutability,
    /// The request body is not a valid SCIM message.
    InvalidSyntax,
    /// The `path` of a PATCH operation is malformed.
    InvalidPath,
    /// The `path` selects nothing it could act on.
    NoTarget,
    /// A value is missing, of the wrong type or unacceptable.
    InvalidValue,
}

impl ScimType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
        }
    }
}

/// Every failure of a SCIM request.
#[derive(Debug, thiserror::Error)]
#[error("{status} {detail}")]
pub struct ScimError {
    status: StatusCode,
    scim_type: Option<ScimType>,
    /// Safe to show (5xx: replaced by a generic text, this one is logged).
    detail: String,
    /// Extra response header (`WWW-Authenticate`, `Allow`, `Retry-After`).
    header: Option<(header::HeaderName, String)>,
}

impl ScimError {
    fn new(status: StatusCode, scim_type: Option<ScimType>, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type,
            detail: detail.into(),
            header: None,
        }
    }

    /// 400 with a `scimType`.
    pub fn bad_request(scim_type: ScimType, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }

    /// 400 `invalidValue`.
    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidValue, detail)
    }

    /// 400 `invalidSyntax`.
    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidSyntax, detail)
    }

    /// 400 `invalidPath`.
    pub fn invalid_path(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidPath, detail)
    }

    /// 400 `invalidFilter`.
    pub fn invalid_filter(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidFilter, detail)
    }

    /// 401 with `WWW-Authenticate: Bearer` (RFC 6750 §3).
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, None, detail);
        e.header = Some((header::WWW_AUTHENTICATE, "Bearer".to_owned()));
        e
    }

    /// 403.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, None, detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, None, detail)
    }

    /// 405 with the `Allow` header.
    pub fn method_not_allowed(allow: &str) -> Self {
        let mut e = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            None,
            format!("method not allowed; this endpoint allows {allow}"),
        );
        e.header = Some((header::ALLOW, allow.to_owned()));
        e
    }

    /// 409 `uniqueness`.
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, Some(ScimType::Uniqueness), detail)
    }

    /// 413.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            format!("request body exceeds the limit of {limit} bytes"),
        )
    }

    /// 429 with `Retry-After`.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            None,
            format!("rate limit exceeded; retry after {retry_after_secs} s"),
        );
        e.header = Some((header::RETRY_AFTER, retry_after_secs.to_string()));
        e
    }

    /// 501: a feature this service does not offer.
    pub fn not_implemented(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_IMPLEMENTED, None, detail)
    }

    /// 503: retry later (the message is logged, not shown).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, None, message)
    }

    /// 500 (the message is logged, not shown).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, None, message)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `scimType`, if any.
    pub fn scim_type(&self) -> Option<ScimType> {
        self.scim_type
    }

    /// The detail the client sees: generic for 5xx.
    pub fn public_detail(&self) -> &str {
        match self.status {
            StatusCode::INTERNAL_SERVER_ERROR => {
                "an internal error occurred; quote the x-request-id header when reporting it"
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                "the service is temporarily unable to complete the request; nothing was left half-done; retry later"
            }
            _ => &self.detail,
        }
    }

    /// The body.
    pub fn body(&self) -> serde_json::Value {
        let mut body = json!({
            "schemas": [ERROR_URN],
            "status": self.status.as_u16().to_string(),
            "detail": self.public_detail(),
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = json!(t.as_str());
        }
        body
    }
}

impl From<DomainError> for ScimError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid(m) | DomainError::Validation(m) => ScimError::invalid_value(m),
            DomainError::NotFound(m) => ScimError::not_found(m),
            DomainError::Conflict(m) => ScimError::uniqueness(m),
            DomainError::Forbidden(m) => ScimError::forbidden(m),
            // An identity provider retries a 5xx later; a refusal of the upstream is not the
            // caller's to fix either.
            DomainError::UpstreamRejected(m)
            | DomainError::UpstreamUnavailable(m)
            | DomainError::UpstreamBusy(m) => ScimError::unavailable(m),
            DomainError::IdempotencyKeyReused(m) => ScimError::invalid_value(m),
            DomainError::Internal(m) => ScimError::internal(m),
        }
    }
}

impl ResponseError for ScimError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        // Logged once, here, inside the request's span (which carries request_id).
        match self.status {
            StatusCode::INTERNAL_SERVER_ERROR => {
                tracing::error!(error.message = %self.detail, "SCIM request failed")
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                tracing::warn!(error.message = %self.detail, "SCIM request failed")
            }
            _ => {}
        }
        let mut res = HttpResponse::build(self.status);
        res.insert_header((header::CONTENT_TYPE, SCIM_JSON));
        if let Some((name, value)) = &self.header
            && let Ok(v) = HeaderValue::from_str(value)
        {
            res.insert_header((name.clone(), v));
        }
        res.body(self.body().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_the_error_schema_and_a_string_status() {
        let b = ScimError::uniqueness("taken").body();
        assert_eq!(b["schemas"], json!([ERROR_URN]));
        assert_eq!(b["status"], "409");
        assert_eq!(b["scimType"], "uniqueness");
        assert_eq!(b["detail"], "taken");
        let b = ScimError::not_found("no such user").body();
        assert!(b.get("scimType").is_none(), "no null scimType: {b}");
    }

    #[test]
    fn domain_errors_map_to_scim_statuses() {
        let cases = [
            (DomainError::Invalid("x".into()), 400, Some("invalidValue")),
            (
                DomainError::Validation("x".into()),
                400,
                Some("invalidValue"),
            ),
            (DomainError::NotFound("x".into()), 404, None),
            (DomainError::Conflict("x".into()), 409, Some("uniqueness")),
            (DomainError::Forbidden("x".into()), 403, None),
            (DomainError::UpstreamRejected("x".into()), 503, None),
            (DomainError::UpstreamUnavailable("x".into()), 503, None),
            (DomainError::UpstreamBusy("x".into()), 503, None),
            (DomainError::Internal("x".into()), 500, None),
        ];
        for (e, status, scim_type) in cases {
            let e = ScimError::from(e);
            assert_eq!(e.status().as_u16(), status);
            assert_eq!(e.scim_type().map(ScimType::as_str), scim_type);
        }
    }

    #[test]
    fn five_hundreds_never_show_internal_text() {
        let b = ScimError::from(DomainError::Internal("db password=hunter2".into())).body();
        assert!(!b.to_string().contains("hunter2"));
        let b = ScimError::from(DomainError::UpstreamUnavailable("10.0.0.1 refused".into())).body();
        assert!(!b.to_string().contains("10.0.0.1"));
    }

    #[test]
    fn a_401_asks_for_a_bearer_token() {
        let res = ScimError::unauthorized("missing token").error_response();
        assert_eq!(res.status(), 401);
        assert_eq!(
            res.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            "Bearer"
        );
        assert_eq!(res.headers().get(header::CONTENT_TYPE).unwrap(), SCIM_JSON);
    }
}
