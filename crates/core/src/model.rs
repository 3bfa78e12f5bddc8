//! The records the service keeps: tenants, scope profiles, end users, audit events.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{AppId, ExternalId, ProfileName, TenantId, UpstreamUserId};
use crate::scope::ScopeSet;
use crate::secret::Pat;

/// Timestamps are UTC.
pub type Timestamp = DateTime<Utc>;

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            /// The stored and serialized name.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::error::ParseError;
            fn from_str(s: &str) -> Result<Self, $crate::error::ParseError> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    _ => Err($crate::error::ParseError::new(stringify!($name), format!("unknown value {s:?}"))),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use text_enum;

text_enum!(
    /// Whether a tenant may provision.
    TenantStatus { Active => "active", Suspended => "suspended" }
);

text_enum!(
    /// Where an end user's provisioning stands (docs/api.md).
    UserStatus {
        /// Being created: app and key not both recorded yet.
        Provisioning => "provisioning",
        /// One app and one key upstream, recorded.
        Active => "active",
        /// A new key is being created to replace the current one.
        Rotating => "rotating",
        /// Key and app are being deleted upstream.
        Deprovisioning => "deprovisioning",
        /// Deactivated through SCIM (policy `revoke_key`): the key is being deleted upstream,
        /// the app is kept.
        Suspending => "suspending",
        /// Deactivated through SCIM (policy `revoke_key`): no key; the app and its data are
        /// kept. Reactivation creates a new key with the same scopes.
        Suspended => "suspended",
        /// Reactivated through SCIM: a new key (same scopes) is being created for the kept app.
        Reactivating => "reactivating",
        /// Key and app are gone upstream.
        Deleted => "deleted",
        /// Provisioning failed for a reason retrying will not fix; a new PUT starts over.
        Failed => "failed",
    }
);

text_enum!(
    /// The next upstream step of the operation in progress (the durable intent).
    Step {
        /// Nothing pending.
        Idle => "idle",
        /// Create the app (it may exist already: a repeated create adopts it by its marker).
        CreateApp => "create_app",
        /// Create the key of this generation (look for its marker first when resumed).
        CreateKey => "create_key",
        /// Delete the current key upstream (deprovisioning).
        DeleteKey => "delete_key",
        /// Delete the app upstream (deprovisioning).
        DeleteApp => "delete_app",
        /// Undo: delete an app this service created for a provisioning that failed.
        UndoApp => "undo_app",
        /// Active, with a late look due: a key create that got no answer may still land
        /// upstream after the key was settled; delete keys with this app's marker that are
        /// neither the current nor the retired key.
        SweepKeys => "sweep_keys",
        /// The user's app was just created (or adopted, or re-created): delete the keys on it
        /// that carry no marker of this service — a key the upstream minted with the app —
        /// before the key of this generation is created (docs/upstream.md, "Auto-created keys").
        PurgeKeys => "purge_keys",
        /// Deleted or failed, with a late look due: an app create that got no answer may still
        /// land upstream after the app was deleted; delete it then if it carries this user's
        /// marker.
        SweepApp => "sweep_app",
    }
);

text_enum!(
    /// Whether provisioning looks for a key the upstream may mint with every new app (the
    /// tenant's `auto_key_check`; docs/upstream.md, "Auto-created keys").
    AutoKeyCheck {
        /// After every app create, list the app's keys and delete those without this service's
        /// marker: one more call per new app, two when a key is found. The default.
        Always => "always",
        /// Check per upstream account until enough creations in a row showed no such key, then
        /// stop; check again as soon as one is seen (by a check or by the drift check).
        Learn => "learn",
        /// Never look (the drift check still reports such keys).
        Never => "never",
    }
);

impl Default for AutoKeyCheck {
    fn default() -> Self {
        AutoKeyCheck::Always
    }
}

/// What the service has learnt about one upstream account's app creates (for
/// [`AutoKeyCheck::Learn`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AutoKeyLearning {
    /// App creates in a row whose check found no key minted with the app.
    pub clean_checks: i64,
    /// When a minted key was last seen on the account.
    pub last_seen_at: Option<Timestamp>,
}

impl UserStatus {
    /// Whether the user still occupies upstream resources (counts against tenant deletion).
    pub fn is_live(self) -> bool {
        !matches!(self, UserStatus::Deleted)
    }
}

/// The upstream defaults a tenant's apps are created with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppDefaults {
    /// Prefix of every app id (validated by [`crate::app_id::validate_prefix`]).
    pub id_prefix: String,
    /// The base workflow, in `clarifai/main` (`Empty` avoids indexing costs).
    pub default_workflow: String,
    /// Description template; `{external_id}` is replaced.
    pub description: String,
}

/// Per-tenant upstream protection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamRateLimit {
    /// Requests per second sent to the tenant's upstream account.
    pub requests_per_second: u32,
    /// Requests in flight at once.
    pub max_concurrency: u32,
}

impl Default for UpstreamRateLimit {
    fn default() -> Self {
        Self {
            requests_per_second: 15,
            max_concurrency: 8,
        }
    }
}

/// A tenant as stored. The PAT is sealed; only its fingerprint is shown.
#[derive(Clone, Debug)]
pub struct Tenant {
    /// Its id.
    pub id: TenantId,
    /// Human name.
    pub display_name: String,
    /// Active or suspended.
    pub status: TenantStatus,
    /// Base URL of the tenant's Clarifai deployment, e.g. `https://api.clarifai.com`.
    pub base_url: String,
    /// The Clarifai user owning the tenant's apps.
    pub upstream_user_id: UpstreamUserId,
    /// The PAT, sealed under the master key, bound to the tenant, base URL and upstream user
    /// it is sent to (see `service::pat_aad`).
    pub pat_sealed: Vec<u8>,
    /// SHA-256 of the PAT, hex.
    pub pat_fingerprint: String,
    /// App creation defaults.
    pub app_defaults: AppDefaults,
    /// Upstream protection.
    pub rate_limit: UpstreamRateLimit,
    /// Scopes keys of this tenant may ever hold.
    pub allowed_scopes: ScopeSet,
    /// Profile used when a PUT names neither a profile nor scopes.
    pub default_scope_profile: Option<ProfileName>,
    /// Whether provisioning deletes keys the upstream mints with a new app.
    pub auto_key_check: AutoKeyCheck,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
    /// Optimistic concurrency: 1 on creation, incremented by every update. An update is
    /// conditioned on the version that was read ([`crate::ports::TenantStore::update_tenant`]).
    pub version: i64,
}

/// What an upstream call needs to act for a tenant.
#[derive(Clone, Debug)]
pub struct UpstreamAccount {
    /// Base URL (no trailing slash needed).
    pub base_url: String,
    /// The Clarifai user id in paths.
    pub user_id: UpstreamUserId,
    /// The PAT (redacted in `Debug`).
    pub pat: Pat,
    /// The tenant it belongs to (for per-tenant limits and logs).
    pub tenant_id: TenantId,
    /// Per-tenant protection settings.
    pub rate_limit: UpstreamRateLimit,
    /// The queue the calls wait in for the account's budget (the acting [`Actor`]'s lane).
    pub lane: crate::budget::Lane,
}

impl UpstreamAccount {
    /// The account's identity for what is learnt about it: base URL (without trailing slash)
    /// and user id. Several tenants may share one account. Holds no secret.
    pub fn key(&self) -> String {
        account_key(&self.base_url, &self.user_id)
    }
}

impl Tenant {
    /// The key of the tenant's upstream account (see [`UpstreamAccount::key`]).
    pub fn account_key(&self) -> String {
        account_key(&self.base_url, &self.upstream_user_id)
    }
}

fn account_key(base_url: &str, user_id: &UpstreamUserId) -> String {
    format!("{} {}", base_url.trim_end_matches('/'), user_id.as_str())
}

/// A named set of scopes within a tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeProfile {
    /// Owner.
    pub tenant_id: TenantId,
    /// Name, unique within the tenant.
    pub name: ProfileName,
    /// The scopes.
    pub scopes: ScopeSet,
    /// Key-age policy: a key of a user of this profile older than this (seconds) is rotated by
    /// the service (`None`: keys never expire).
    pub max_key_age_secs: Option<i64>,
    /// How long a key replaced by the key-age policy stays valid (seconds, 0-86,400).
    pub rotation_grace_secs: i64,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
}

/// A user's current key as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    /// Sealed secret, bound to tenant, app and the `current` slot (see `service::key_aad`).
    pub sealed: Vec<u8>,
    /// SHA-256 of the secret, hex.
    pub fingerprint: String,
    /// Scopes it was created with.
    pub scopes: ScopeSet,
    /// Generation whose marker its description carries.
    pub generation: i64,
    /// When it was recorded.
    pub created_at: Timestamp,
}

/// A key replaced by a rotation, deleted upstream once `delete_after` has passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetiredKey {
    /// Sealed secret, bound to tenant, app and the `retired` slot (see `service::key_aad`).
    pub sealed: Vec<u8>,
    /// SHA-256 of the secret, hex.
    pub fingerprint: String,
    /// End of the grace period.
    pub delete_after: Timestamp,
}

/// Who holds a user's row while an operation runs, and until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// A token unique to the holder (one per request or worker pass).
    pub owner: String,
    /// After this instant anyone may take the lease over and resume.
    pub expires_at: Timestamp,
}

/// One end user's provisioning record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Owner tenant.
    pub tenant_id: TenantId,
    /// The caller's id of the user.
    pub external_id: ExternalId,
    /// Deterministic upstream app id.
    pub app_id: AppId,
    /// Where it stands.
    pub status: UserStatus,
    /// The pending upstream step (the intent).
    pub step: Step,
    /// Generation of the newest key (its description marker); starts at 1.
    pub generation: i64,
    /// Scopes the user's key has (or is being created with).
    pub scopes: ScopeSet,
    /// The scope profile its scopes came from (`None`: explicit scopes), for the profile's
    /// key-age policy.
    pub profile: Option<ProfileName>,
    /// The current key, once created.
    pub key: Option<StoredKey>,
    /// A key replaced by rotation, awaiting deletion.
    pub retired_key: Option<RetiredKey>,
    /// Optional human name.
    pub display_name: Option<String>,
    /// Caller's string metadata.
    pub metadata: BTreeMap<String, String>,
    /// Set while an operation holds the row.
    pub lease: Option<Lease>,
    /// The last upstream failure, kept visible until the operation succeeds.
    pub last_error: Option<String>,
    /// Failed attempts of the pending step (recovery backs off on it).
    pub attempts: i64,
    /// Earliest time recovery retries the pending step.
    pub next_attempt_at: Option<Timestamp>,
    /// Grace period, in seconds, that the rotation in progress keeps the key it replaces
    /// (durable, so a rotation finished by recovery or another request keeps it).
    pub rotation_grace_secs: i64,
    /// Whether the current key's secret has reached no caller yet (recovery finished the
    /// operation whose answer was lost): the next PUT carries it once.
    pub secret_pending: bool,
    /// Incremented by every write of the row; a lease is taken conditioned on the version
    /// that was read, so a decision made on a read never applies to a changed row.
    pub version: i64,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
}

/// An append-only record of a state change or a secret reveal. Holds no secrets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    /// Time-ordered unique id (UUID v7).
    pub id: String,
    /// When.
    pub at: Timestamp,
    /// The token's `sub`, or `system:<worker>`.
    pub actor: String,
    /// The tenant concerned, if any.
    pub tenant_id: Option<TenantId>,
    /// What, e.g. `user.provision`.
    pub action: String,
    /// On what, e.g. `users/alice`.
    pub target: String,
    /// `success`, or `failure: <reason>`.
    pub outcome: String,
    /// The request that caused it.
    pub request_id: Option<String>,
    /// Events to deliver to the tenant's webhook endpoints, written by the store in the same
    /// transaction as this audit event (the outbox; crate::webhooks). Not part of the audit
    /// log itself.
    #[serde(skip)]
    pub events: Vec<crate::webhooks::OutboxEvent>,
}

/// Who is acting, for audit events.
#[derive(Clone, Debug)]
pub struct Actor {
    /// The token's `sub` or a worker name.
    pub subject: String,
    /// The request id, when acting for a request.
    pub request_id: Option<String>,
    /// Where its upstream calls queue: a caller waiting for an answer is interactive; jobs
    /// and background workers are bulk.
    pub lane: crate::budget::Lane,
}

impl Actor {
    /// A background worker of the service.
    pub fn system(name: &str) -> Self {
        Self {
            subject: format!("system:{name}"),
            request_id: None,
            lane: crate::budget::Lane::Bulk,
        }
    }
}

/// A page of results and the cursor of the next one.
#[derive(Clone, Debug)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Opaque cursor of the next page, `None` at the end.
    pub next_cursor: Option<String>,
}
