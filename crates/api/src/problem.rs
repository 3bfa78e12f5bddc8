//! RFC 9457 problem details: the ONE place that maps errors to HTTP.
//!
//! Every failure of the API, whether from an extractor (bad JSON, bad path id, missing token),
//! a permission check or a use case in core, becomes an [`ApiError`]. [`ProblemKind::meta`] is
//! the single table from kind to `(status, code, title)`, and the `impl ResponseError for
//! ApiError` below is the only place that renders one. The request id is filled in by the
//! request-id middleware (see [`crate::request_id`]), which re-renders the body stored in the
//! response extensions, so every problem carries the id of its request.
//!
//! 5xx bodies never carry internal text: the full message is logged once, here, inside the
//! request's root span (which holds `request_id`), and the client gets a generic detail.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use provisioner_core::DomainError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Media type of every problem body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Every kind of problem the API answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// 400 `invalid_request`.
    InvalidRequest,
    /// 401 `unauthenticated`.
    Unauthenticated,
    /// 403 `forbidden`.
    Forbidden,
    /// 404 `not_found`.
    NotFound,
    /// 405 `method_not_allowed`.
    MethodNotAllowed,
    /// 409 `conflict`.
    Conflict,
    /// 413 `payload_too_large`.
    PayloadTooLarge,
    /// 422 `validation_failed`.
    ValidationFailed,
    /// 422 `idempotency_key_reused`.
    IdempotencyKeyReused,
    /// 429 `rate_limited`.
    RateLimited,
    /// 500 `internal`.
    Internal,
    /// 502 `upstream_rejected`.
    UpstreamRejected,
    /// 503 `upstream_unavailable`.
    UpstreamUnavailable,
    /// 503 `not_ready` (readiness probe only).
    NotReady,
}

impl ProblemKind {
    /// Every kind, in status order (for the problem-types page).
    pub const ALL: [ProblemKind; 14] = [
        ProblemKind::InvalidRequest,
        ProblemKind::Unauthenticated,
        ProblemKind::Forbidden,
        ProblemKind::NotFound,
        ProblemKind::MethodNotAllowed,
        ProblemKind::Conflict,
        ProblemKind::PayloadTooLarge,
        ProblemKind::ValidationFailed,
        ProblemKind::IdempotencyKeyReused,
        ProblemKind::RateLimited,
        ProblemKind::Internal,
        ProblemKind::UpstreamRejected,
        ProblemKind::UpstreamUnavailable,
        ProblemKind::NotReady,
    ];

    /// The table: status, machine-readable code, fixed title.
    pub const fn meta(self) -> (StatusCode, &'static str, &'static str) {
        use ProblemKind::*;
        match self {
            InvalidRequest => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Invalid request",
            ),
            Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Authentication required",
            ),
            Forbidden => (StatusCode::FORBIDDEN, "forbidden", "Permission missing"),
            NotFound => (StatusCode::NOT_FOUND, "not_found", "Not found"),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
            ),
            Conflict => (StatusCode::CONFLICT, "conflict", "Conflict"),
            PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
            ),
            ValidationFailed => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "Validation failed",
            ),
            IdempotencyKeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "Idempotency key reused",
            ),
            RateLimited => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Too many requests",
            ),
            Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
            UpstreamRejected => (
                StatusCode::BAD_GATEWAY,
                "upstream_rejected",
                "Upstream rejected the request",
            ),
            UpstreamUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_unavailable",
                "Upstream unavailable",
            ),
            NotReady => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "Service not ready",
            ),
        }
    }
}

/// One invalid field of a request body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// JSON Pointer (RFC 6901) to the field, e.g. `/scopes/1`.
    pub pointer: String,
    /// What is wrong with it (never contains a secret).
    pub message: String,
}

/// An RFC 9457 problem details body (`application/problem+json`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// URI reference of the problem type: `/docs/problems#<code>`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Fixed per code.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// Safe, human-readable explanation of this occurrence.
    pub detail: String,
    /// Stable machine-readable code (see docs/problems.md).
    #[schema(example = "not_found")]
    pub code: String,
    /// The request's id (also in the `x-request-id` header).
    pub request_id: Option<String>,
    /// Per-field errors of a request body (400 and 422 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// Every error the API answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed input (400).
    #[error("{detail}")]
    Invalid {
        /// Explanation.
        detail: String,
        /// Offending fields, if known.
        errors: Vec<FieldError>,
    },
    /// Well-formed but unacceptable input (422).
    #[error("{detail}")]
    Validation {
        /// Explanation.
        detail: String,
        /// Offending fields, if known.
        errors: Vec<FieldError>,
    },
    /// No valid bearer token (401). `token_given` selects the `WWW-Authenticate` variant.
    #[error("{detail}")]
    Unauthenticated {
        /// Explanation (never echoes the token).
        detail: String,
        /// Whether a token was presented (then `error="invalid_token"`).
        token_given: bool,
    },
    /// Permission missing on the caller's own tenant (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such resource, or another tenant's (404).
    #[error("{0}")]
    NotFound(String),
    /// Route exists, method does not (405); `allow` lists the route's methods (the `Allow`
    /// header, RFC 9110).
    #[error("method not allowed; this route allows {allow}")]
    MethodNotAllowed {
        /// The methods the route answers, e.g. `GET, PUT, DELETE`.
        allow: String,
    },
    /// Conflicting state (409).
    #[error("{0}")]
    Conflict(String),
    /// An `Idempotency-Key` repeated with another request (422).
    #[error("{0}")]
    IdempotencyKeyReused(String),
    /// Body over the limit (413).
    #[error("request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The caller exceeded its request rate (429).
    #[error("rate limit exceeded; retry after {retry_after_secs} s")]
    RateLimited {
        /// Seconds until a request is allowed again (the `Retry-After` header).
        retry_after_secs: u64,
    },
    /// The upstream refused (502); the message names its status code.
    #[error("{0}")]
    UpstreamRejected(String),
    /// The upstream could not be reached (503); the message is logged, not shown.
    #[error("{0}")]
    UpstreamUnavailable(String),
    /// The database is not reachable or not migrated (503 on /readyz).
    #[error("{0}")]
    NotReady(String),
    /// A bug or a broken dependency (500); the message is logged, not shown.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// 400 with a detail and no field errors.
    pub fn invalid(detail: impl Into<String>) -> Self {
        ApiError::Invalid {
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    /// 401 for a missing or unusable token.
    pub fn unauthenticated(detail: impl Into<String>, token_given: bool) -> Self {
        ApiError::Unauthenticated {
            detail: detail.into(),
            token_given,
        }
    }

    /// The kind, for the table.
    pub fn kind(&self) -> ProblemKind {
        match self {
            ApiError::Invalid { .. } => ProblemKind::InvalidRequest,
            ApiError::Validation { .. } => ProblemKind::ValidationFailed,
            ApiError::Unauthenticated { .. } => ProblemKind::Unauthenticated,
            ApiError::Forbidden(_) => ProblemKind::Forbidden,
            ApiError::NotFound(_) => ProblemKind::NotFound,
            ApiError::MethodNotAllowed { .. } => ProblemKind::MethodNotAllowed,
            ApiError::Conflict(_) => ProblemKind::Conflict,
            ApiError::IdempotencyKeyReused(_) => ProblemKind::IdempotencyKeyReused,
            ApiError::PayloadTooLarge { .. } => ProblemKind::PayloadTooLarge,
            ApiError::RateLimited { .. } => ProblemKind::RateLimited,
            ApiError::UpstreamRejected(_) => ProblemKind::UpstreamRejected,
            ApiError::UpstreamUnavailable(_) => ProblemKind::UpstreamUnavailable,
            ApiError::NotReady(_) => ProblemKind::NotReady,
            ApiError::Internal(_) => ProblemKind::Internal,
        }
    }

    /// The client-safe detail: generic for 5xx other than `upstream_rejected`.
    fn public_detail(&self) -> String {
        match self {
            ApiError::Internal(_) => "an internal error occurred; quote the request id when reporting it".into(),
            ApiError::UpstreamUnavailable(_) => {
                "the upstream could not be reached or kept failing; nothing was left half-done; retry later".into()
            }
            ApiError::NotReady(_) => "the database is not reachable or not migrated".into(),
            other => other.to_string(),
        }
    }

    /// The problem body (without request id: the middleware adds it).
    pub fn problem(&self) -> Problem {
        let (status, code, title) = self.kind().meta();
        let errors = match self {
            ApiError::Invalid { errors, .. } | ApiError::Validation { errors, .. }
                if !errors.is_empty() =>
            {
                Some(errors.clone())
            }
            _ => None,
        };
        Problem {
            type_: format!("/docs/problems#{code}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: self.public_detail(),
            code: code.to_owned(),
            request_id: None,
            errors,
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid(m) => ApiError::invalid(m),
            DomainError::Validation(m) => ApiError::Validation {
                detail: m,
                errors: Vec::new(),
            },
            DomainError::NotFound(m) => ApiError::NotFound(m),
            DomainError::Conflict(m) => ApiError::Conflict(m),
            DomainError::Forbidden(m) => ApiError::Forbidden(m),
            DomainError::UpstreamRejected(m) => ApiError::UpstreamRejected(m),
            DomainError::UpstreamUnavailable(m) | DomainError::UpstreamBusy(m) => {
                ApiError::UpstreamUnavailable(m)
            }
            DomainError::IdempotencyKeyReused(m) => ApiError::IdempotencyKeyReused(m),
            DomainError::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.kind().meta().0
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            // Logged once, here, inside the request's span (which carries request_id).
            ApiError::Internal(m) => tracing::error!(error.message = %m, "request failed"),
            ApiError::UpstreamUnavailable(m) | ApiError::NotReady(m) => {
                tracing::warn!(error.message = %m, "request failed")
            }
            _ => {}
        }
        let problem = self.problem();
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((header::CONTENT_TYPE, PROBLEM_JSON));
        match self {
            ApiError::Unauthenticated { token_given, .. } => {
                let v = if *token_given {
                    "Bearer error=\"invalid_token\""
                } else {
                    "Bearer"
                };
                res.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static(v)));
            }
            ApiError::RateLimited { retry_after_secs } => {
                res.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            ApiError::MethodNotAllowed { allow } => {
                res.insert_header((header::ALLOW, allow.as_str()));
            }
            _ => {}
        }
        let body = render(&problem);
        let mut res = res.body(body);
        res.extensions_mut().insert(problem);
        res
    }
}

/// Serializes a problem body.
pub(crate) fn render(problem: &Problem) -> String {
    serde_json::to_string(problem)
        .unwrap_or_else(|_| String::from("{\"status\":500,\"code\":\"internal\"}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_hundreds_never_show_internal_text() {
        let p = ApiError::Internal("db password=hunter2 at host".into()).problem();
        assert_eq!(p.status, 500);
        assert!(!p.detail.contains("hunter2"));
        let p = ApiError::UpstreamUnavailable("connect to 10.0.0.1 refused".into()).problem();
        assert!(!p.detail.contains("10.0.0.1"));
    }

    #[test]
    fn domain_errors_map_to_the_contract_codes() {
        let cases = [
            (DomainError::Invalid("x".into()), 400, "invalid_request"),
            (
                DomainError::Validation("x".into()),
                422,
                "validation_failed",
            ),
            (DomainError::NotFound("x".into()), 404, "not_found"),
            (DomainError::Conflict("x".into()), 409, "conflict"),
            (DomainError::Forbidden("x".into()), 403, "forbidden"),
            (
                DomainError::UpstreamRejected("x".into()),
                502,
                "upstream_rejected",
            ),
            (
                DomainError::UpstreamUnavailable("x".into()),
                503,
                "upstream_unavailable",
            ),
            (
                DomainError::IdempotencyKeyReused("x".into()),
                422,
                "idempotency_key_reused",
            ),
            (DomainError::Internal("x".into()), 500, "internal"),
        ];
        for (e, status, code) in cases {
            let p = ApiError::from(e).problem();
            assert_eq!((p.status, p.code.as_str()), (status, code));
        }
    }
}
