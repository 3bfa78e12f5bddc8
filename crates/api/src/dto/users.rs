//! End users, keys and audit events on the wire.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use provisioner_core::ids::{ProfileName, UpstreamUserId};
use provisioner_core::model::{AuditEvent, User, UserStatus};
use provisioner_core::secret::KeySecret;
use provisioner_core::service::{ProvisionRequest, ScopeRequest};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{Check, short_fingerprint};
use crate::problem::ApiError;

/// Where an end user's provisioning stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserStatusDto {
    /// App and key not both recorded yet.
    Provisioning,
    /// One app and one key upstream.
    Active,
    /// A new key is replacing the current one.
    Rotating,
    /// Key and app are being deleted upstream.
    Deprovisioning,
    /// Deactivated through SCIM (tenant policy `revoke_key`): the key is being deleted
    /// upstream, the app is kept.
    Suspending,
    /// Deactivated through SCIM (tenant policy `revoke_key`): no key; the app and its data
    /// are kept. Reactivation creates a new key with the same scopes.
    Suspended,
    /// Reactivated through SCIM: a new key (same scopes) is being created for the kept app.
    Reactivating,
    /// Key and app are gone upstream.
    Deleted,
    /// Failed for a reason retrying will not fix; a new PUT starts over.
    Failed,
}

impl From<UserStatus> for UserStatusDto {
    fn from(s: UserStatus) -> Self {
        match s {
            UserStatus::Provisioning => Self::Provisioning,
            UserStatus::Active => Self::Active,
            UserStatus::Rotating => Self::Rotating,
            UserStatus::Deprovisioning => Self::Deprovisioning,
            UserStatus::Suspending => Self::Suspending,
            UserStatus::Suspended => Self::Suspended,
            UserStatus::Reactivating => Self::Reactivating,
            UserStatus::Deleted => Self::Deleted,
            UserStatus::Failed => Self::Failed,
        }
    }
}

impl From<UserStatusDto> for UserStatus {
    fn from(s: UserStatusDto) -> Self {
        match s {
            UserStatusDto::Provisioning => Self::Provisioning,
            UserStatusDto::Active => Self::Active,
            UserStatusDto::Rotating => Self::Rotating,
            UserStatusDto::Deprovisioning => Self::Deprovisioning,
            UserStatusDto::Suspending => Self::Suspending,
            UserStatusDto::Suspended => Self::Suspended,
            UserStatusDto::Reactivating => Self::Reactivating,
            UserStatusDto::Deleted => Self::Deleted,
            UserStatusDto::Failed => Self::Failed,
        }
    }
}

/// `PUT /v1/tenants/{tenant_id}/users/{external_id}` body; every field is optional and an
/// empty body means the tenant's default profile. `scope_profile` and `scopes` together are
/// 400 `invalid_request`.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPutIn {
    /// A scope profile of the tenant.
    #[schema(example = "standard", pattern = "^[a-z][a-z0-9-]{0,31}$")]
    pub scope_profile: Option<String>,
    /// Explicit scopes (within the tenant's allowed scopes).
    pub scopes: Option<Vec<String>>,
    /// Optional human name (replaced when given).
    pub display_name: Option<String>,
    /// Optional string metadata (replaced when given).
    pub metadata: Option<BTreeMap<String, String>>,
}

impl TryFrom<UserPutIn> for ProvisionRequest {
    type Error = ApiError;

    fn try_from(v: UserPutIn) -> Result<Self, ApiError> {
        let mut c = Check::default();
        let scopes = match (&v.scope_profile, &v.scopes) {
            (Some(_), Some(_)) => {
                let both: Result<(), &str> = Err("give scope_profile or scopes, not both");
                c.syntax("/scopes", both).map(|_| ScopeRequest::Default)
            }
            (Some(p), None) => c
                .syntax("/scope_profile", ProfileName::parse(p))
                .map(ScopeRequest::Profile),
            (None, Some(s)) => c.scopes("/scopes", s).map(ScopeRequest::Scopes),
            (None, None) => Some(ScopeRequest::Default),
        };
        let Some(scopes) = scopes else {
            return Err(c.into_error());
        };
        Ok(ProvisionRequest {
            scopes,
            display_name: v.display_name,
            metadata: v.metadata,
        })
    }
}

/// `POST .../rotate-key` body (optional; empty means `grace_seconds: 0`).
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateIn {
    /// Seconds the old key keeps working, 0-86400 (default 0: deleted at once).
    #[schema(minimum = 0, maximum = 86400, default = 0)]
    #[serde(default)]
    pub grace_seconds: u32,
    /// Delete a key still in the grace period of an earlier rotation first (default false:
    /// such a rotation answers 409, so there are never three keys).
    #[serde(default)]
    pub revoke_previous: bool,
}

/// The user's upstream app.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppOut {
    /// Deterministic app id.
    #[schema(example = "acme-user-42-acme-example-5f2c1a")]
    pub id: String,
    /// The tenant's Clarifai user id owning the app.
    #[schema(example = "acme-ml")]
    pub user_id: String,
}

/// The user's current key (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyOut {
    /// First 8 hex characters of the key's SHA-256.
    #[schema(example = "9b1d0c7e")]
    pub fingerprint: String,
    /// Scopes, sorted.
    pub scopes: Vec<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When the service rotates it under its scope profile's key-age policy (shown by `GET` of
    /// one user; absent elsewhere, and when the profile has no policy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_due_at: Option<DateTime<Utc>>,
}

/// An end user. `secret` appears only on the 201 of a PUT and on rotate-key.
#[derive(Serialize, ToSchema)]
pub struct UserOut {
    /// Owner tenant.
    pub tenant_id: String,
    /// The caller's id of the user.
    pub external_id: String,
    /// Where it stands.
    pub status: UserStatusDto,
    /// The upstream app.
    pub app: AppOut,
    /// The current key, `null` when none.
    pub key: Option<KeyOut>,
    /// Optional human name.
    pub display_name: Option<String>,
    /// Caller's string metadata.
    pub metadata: BTreeMap<String, String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// The last upstream failure, visible until the pending operation succeeds.
    pub last_error: Option<String>,
    /// The new key's secret, shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl std::fmt::Debug for UserOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserOut")
            .field("tenant_id", &self.tenant_id)
            .field("external_id", &self.external_id)
            .field("status", &self.status)
            .field("secret", &self.secret.as_ref().map(|_| "[REDACTED]"))
            .finish_non_exhaustive()
    }
}

impl UserOut {
    /// The user as shown; `app_user_id` is the tenant's upstream user id.
    pub fn new(u: User, app_user_id: &UpstreamUserId, secret: Option<&KeySecret>) -> Self {
        UserOut {
            tenant_id: u.tenant_id.to_string(),
            external_id: u.external_id.to_string(),
            status: u.status.into(),
            app: AppOut {
                id: u.app_id.to_string(),
                user_id: app_user_id.to_string(),
            },
            key: u.key.map(|k| KeyOut {
                fingerprint: short_fingerprint(&k.fingerprint),
                scopes: k.scopes.names(),
                created_at: k.created_at,
                rotation_due_at: None,
            }),
            display_name: u.display_name,
            metadata: u.metadata,
            created_at: u.created_at,
            updated_at: u.updated_at,
            last_error: u.last_error,
            secret: secret.map(|s| s.expose().to_owned()),
        }
    }
}

/// A page of users.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserPage {
    /// Users by external id (byte order).
    pub items: Vec<UserOut>,
    /// Cursor of the next page; `null` at the end.
    pub next_cursor: Option<String>,
}

/// `GET /v1/tenants/{tenant_id}/users` query.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserListQuery {
    /// Page size, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000, default = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only users of this status.
    #[param(inline)]
    pub status: Option<UserStatusDto>,
}

/// `reveal-key` answer.
#[derive(Serialize, ToSchema)]
pub struct RevealOut {
    /// The key's secret.
    pub secret: String,
}

/// `POST /v1/keys/lookup` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupIn {
    /// A (leaked) key secret: 1-512 characters, no spaces or control characters.
    #[schema(value_type = String, format = Password, pattern = "^[^\\s\\u0000-\\u001F\\u007F-\\u009F]{1,512}$")]
    pub secret: SecretString,
}

impl TryFrom<LookupIn> for KeySecret {
    type Error = ApiError;

    fn try_from(v: LookupIn) -> Result<Self, ApiError> {
        let mut c = Check::default();
        c.syntax("/secret", KeySecret::parse(v.secret.expose_secret()))
            .ok_or_else(|| c.into_error())
    }
}

/// Which user a key belongs to.
#[derive(Debug, Serialize, ToSchema)]
pub struct LookupOut {
    /// The tenant.
    pub tenant_id: String,
    /// The user's external id.
    pub external_id: String,
}

/// `GET /v1/audit-events` query.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this tenant's events (a tenant-bound token sees only its own tenant).
    #[param(pattern = "^[a-z][a-z0-9-]{0,31}$", example = "acme")]
    pub tenant_id: Option<String>,
    /// `next_cursor` of the previous page, or an RFC 3339 time (events not before it).
    pub after: Option<String>,
    /// Page size, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000, default = 100)]
    pub limit: Option<u32>,
}

/// An audit event (holds no secrets).
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventOut {
    /// Time-ordered id.
    pub id: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The token's `sub`, or `system:<worker>`.
    pub actor: String,
    /// The tenant concerned.
    pub tenant_id: Option<String>,
    /// What, e.g. `user.provision`.
    pub action: String,
    /// On what, e.g. `users/alice`.
    pub target: String,
    /// `success`, or `failure: <reason>`.
    pub outcome: String,
    /// The request that caused it.
    pub request_id: Option<String>,
}

impl From<AuditEvent> for AuditEventOut {
    fn from(e: AuditEvent) -> Self {
        AuditEventOut {
            id: e.id,
            at: e.at,
            actor: e.actor,
            tenant_id: e.tenant_id.map(|t| t.to_string()),
            action: e.action,
            target: e.target,
            outcome: e.outcome,
            request_id: e.request_id,
        }
    }
}

/// A page of audit events.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Events in time order.
    pub items: Vec<AuditEventOut>,
    /// Cursor of the next page (pass as `after`); `null` at the end.
    pub next_cursor: Option<String>,
}
