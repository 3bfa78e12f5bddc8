//! Wire types: `XxxIn` bodies (deny unknown fields, converted to core commands with `TryFrom`),
//! `XxxOut` answers, list pages and query strings.
//!
//! Conversion rule: a value with the wrong shape or syntax (an id, a PAT, a name) is 400
//! `invalid_request`; a well-formed value core cannot accept (an unknown or deprecated scope
//! name) is 422 `validation_failed`. Every offending field is reported in `errors` with a JSON
//! Pointer.

mod jobs;
mod profiles;
mod reconcile;
mod scim;
mod tenants;
mod users;
mod webhooks;

use std::fmt::Display;

use provisioner_core::scope::ScopeSet;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::problem::{ApiError, FieldError};

pub use jobs::*;
pub use profiles::*;
pub use reconcile::*;
pub use scim::*;
pub use tenants::*;
pub use users::*;
pub use webhooks::*;

/// The `{tenant_id}` path segment (documentation only; [`crate::auth::TenantAccess`] parses it).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct TenantIdParam {
    /// Tenant id: 1-32 of `a-z 0-9 -`, starting with a letter.
    #[param(pattern = "^[a-z][a-z0-9-]{0,31}$", example = "acme")]
    tenant_id: String,
}

/// The `{name}` path segment of a scope profile (documentation only).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct ProfileNameParam {
    /// Profile name: 1-32 of `a-z 0-9 -`, starting with a letter.
    #[param(pattern = "^[a-z][a-z0-9-]{0,31}$", example = "standard")]
    name: String,
}

/// The `{external_id}` path segment (documentation only).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct ExternalIdParam {
    /// The caller's user id, percent-encoded: 1-128 characters, no control characters.
    #[param(
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]{1,128}$",
        example = "user-42@acme.example"
    )]
    external_id: String,
}

/// The `{token_id}` path segment of a SCIM token (documentation only).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct ScimTokenIdParam {
    /// The token's id (as listed).
    #[param(example = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")]
    token_id: String,
}

/// Default page size of list endpoints.
pub const DEFAULT_LIMIT: u32 = 100;

/// `limit` and `cursor` of a list endpoint.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000, default = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl ListQuery {
    /// The page size (default 100; core checks the range).
    pub fn limit(&self) -> u32 {
        self.limit.unwrap_or(DEFAULT_LIMIT)
    }
}

/// Collects per-field errors while converting a body, so the caller sees all of them at once.
#[derive(Default)]
pub(crate) struct Check {
    invalid: Vec<FieldError>,
    validation: Vec<FieldError>,
}

impl Check {
    /// A syntax check: an error is 400.
    pub(crate) fn syntax<T, E: Display>(&mut self, pointer: &str, r: Result<T, E>) -> Option<T> {
        r.map_err(|e| {
            self.invalid.push(FieldError {
                pointer: pointer.to_owned(),
                message: e.to_string(),
            })
        })
        .ok()
    }

    /// Scope names: an unknown one is 422 at `/pointer/index`.
    pub(crate) fn scopes(&mut self, pointer: &str, names: &[String]) -> Option<ScopeSet> {
        let before = self.validation.len();
        for (i, n) in names.iter().enumerate() {
            if let Err(e) = ScopeSet::parse([n]) {
                self.validation.push(FieldError {
                    pointer: format!("{pointer}/{i}"),
                    message: e.to_string(),
                });
            }
        }
        if self.validation.len() > before {
            return None;
        }
        ScopeSet::parse(names).ok()
    }

    /// The error for what was collected: 400 if any syntax error, else 422.
    pub(crate) fn into_error(self) -> ApiError {
        if !self.invalid.is_empty() {
            ApiError::Invalid {
                detail: summary(&self.invalid),
                errors: self.invalid,
            }
        } else if !self.validation.is_empty() {
            ApiError::Validation {
                detail: summary(&self.validation),
                errors: self.validation,
            }
        } else {
            ApiError::invalid("invalid request body")
        }
    }
}

fn summary(errors: &[FieldError]) -> String {
    match errors {
        [one] => format!("{}: {}", one.pointer, one.message),
        many => format!("{} fields are invalid", many.len()),
    }
}

/// Distinguishes `"field": null` (`Some(None)`) from an absent field (`None`) (with
/// `#[serde(default, deserialize_with = "present")]`).
pub(crate) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// JSON Pointer escaping of a map key (RFC 6901).
pub(crate) fn pointer_key(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// First 8 hex characters of a SHA-256 fingerprint.
pub(crate) fn short_fingerprint(full: &str) -> String {
    full.get(..8).unwrap_or(full).to_owned()
}

/// `{"status": "ok"}` of /healthz, `{"status": "ready"}` of /readyz.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusOut {
    /// `ok` or `ready`.
    pub status: String,
}
