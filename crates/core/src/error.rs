//! Errors of the domain. Variants are named after what the caller can do next; the API maps
//! each one to exactly one problem code (crates/api/src/problem.rs).

use std::fmt;

/// A value that failed to parse at an edge (HTTP input, a database row, an upstream answer).
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {message}")]
pub struct ParseError {
    /// The field or kind of value, e.g. `tenant_id`.
    pub field: &'static str,
    /// What is wrong, safe to show to the caller (never contains a secret).
    pub message: String,
}

impl ParseError {
    /// Builds a parse error for `field`.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

impl fmt::Debug for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ParseError({}: {})", self.field, self.message)
    }
}

/// Every way a use case can fail, as the caller sees it.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// Malformed input: bad ids, wrong shapes (400 `invalid_request`).
    #[error("{0}")]
    Invalid(String),
    /// Well-formed but not acceptable: unknown or disallowed scope, rejected credential
    /// (422 `validation_failed`).
    #[error("{0}")]
    Validation(String),
    /// No such resource, or one the caller may not know about (404 `not_found`).
    #[error("{0}")]
    NotFound(String),
    /// Exists with a different spec, or the state does not allow the action (409 `conflict`).
    #[error("{0}")]
    Conflict(String),
    /// The caller lacks a permission on its own tenant (403 `forbidden`).
    #[error("{0}")]
    Forbidden(String),
    /// The upstream refused in a way that is not the caller's fault (502 `upstream_rejected`).
    #[error("{0}")]
    UpstreamRejected(String),
    /// The upstream could not be reached or kept failing (503 `upstream_unavailable`).
    #[error("{0}")]
    UpstreamUnavailable(String),
    /// Nothing was sent: the upstream account's request budget had no slot in time (other
    /// work on the account). Retried soon, without backing off (503 `upstream_unavailable`).
    #[error("{0}")]
    UpstreamBusy(String),
    /// An `Idempotency-Key` repeated with another request (422 `idempotency_key_reused`).
    #[error("{0}")]
    IdempotencyKeyReused(String),
    /// A bug or a broken dependency (database down); details are logged, not shown (500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl DomainError {
    /// The stable problem code the API answers this error with (docs/problems.md), also
    /// recorded with a bulk job's failed users.
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::Invalid(_) => "invalid_request",
            DomainError::Validation(_) => "validation_failed",
            DomainError::NotFound(_) => "not_found",
            DomainError::Conflict(_) => "conflict",
            DomainError::Forbidden(_) => "forbidden",
            DomainError::UpstreamRejected(_) => "upstream_rejected",
            DomainError::UpstreamUnavailable(_) | DomainError::UpstreamBusy(_) => {
                "upstream_unavailable"
            }
            DomainError::IdempotencyKeyReused(_) => "idempotency_key_reused",
            DomainError::Internal(_) => "internal",
        }
    }
}

impl From<ParseError> for DomainError {
    fn from(e: ParseError) -> Self {
        DomainError::Invalid(e.to_string())
    }
}

/// Errors of a [`crate::ports::Store`] implementation, already translated to domain meaning.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness constraint refused the write (the row exists).
    #[error("already exists")]
    AlreadyExists,
    /// Inserting a user: another user of the tenant already holds this upstream app id (the
    /// unique `(tenant_id, app_id)` index), unlike [`StoreError::AlreadyExists`] on the row's
    /// own key.
    #[error("app id taken by another user")]
    AppIdTaken,
    /// The row to change does not exist.
    #[error("not found")]
    NotFound,
    /// The write was conditioned on a lease or version the row no longer has.
    #[error("lease lost or row changed concurrently")]
    Stale,
    /// The database aborted the write for contention (PostgreSQL serialization failure or
    /// deadlock, SQLSTATE 40001/40P01) and retrying it did not help.
    #[error("the database is busy: {0}")]
    Busy(String),
    /// A list position (cursor) the store did not hand out.
    #[error("invalid cursor")]
    BadCursor,
    /// The database failed or returned a row that does not parse.
    #[error("storage failure: {0}")]
    Backend(String),
}

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AlreadyExists => DomainError::Conflict("already exists".into()),
            StoreError::AppIdTaken => DomainError::Conflict("app id taken".into()),
            StoreError::NotFound => DomainError::NotFound("not found".into()),
            StoreError::Stale => DomainError::Conflict("changed concurrently; retry".into()),
            StoreError::BadCursor => DomainError::Invalid("invalid cursor".into()),
            StoreError::Busy(_) => {
                DomainError::UpstreamUnavailable("the database is busy; retry".into())
            }
            StoreError::Backend(m) => DomainError::Internal(m),
        }
    }
}

/// Errors of an [`crate::ports::Upstream`] implementation, classified by what to do next.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// The credential was refused (unauthenticated, forbidden, insufficient scopes).
    #[error("upstream refused the credential: {0}")]
    Unauthorized(String),
    /// The resource does not exist upstream.
    #[error("not found upstream")]
    NotFound,
    /// The resource already exists upstream (duplicate id).
    #[error("already exists upstream")]
    AlreadyExists,
    /// The upstream refused the request as invalid; repeating it will not help.
    #[error("upstream rejected the request: {0}")]
    Rejected(String),
    /// Not sent: the account's request budget had no slot within the wait allowed.
    #[error("upstream busy: {0}")]
    Busy(String),
    /// The upstream failed or could not be reached, and retries ran out. `ambiguous` is true
    /// when the request may have taken effect upstream (a timeout after it was sent, a
    /// dropped connection).
    #[error("upstream unavailable: {message}")]
    Unavailable {
        /// What went wrong last, without secrets.
        message: String,
        /// Whether the operation may have happened upstream.
        ambiguous: bool,
    },
}

impl UpstreamError {
    /// Whether the request may have taken effect upstream.
    pub fn is_ambiguous(&self) -> bool {
        matches!(
            self,
            UpstreamError::Unavailable {
                ambiguous: true,
                ..
            }
        )
    }
}
