//! Tenants, their upstream credential and their scope profiles on the wire.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use provisioner_core::ids::{ProfileName, TenantId, UpstreamUserId};
use provisioner_core::model::{AppDefaults, AutoKeyCheck, Tenant, TenantStatus, UpstreamRateLimit};
use provisioner_core::secret::Pat;
use provisioner_core::service::{NewTenant, TenantPatch, TenantView, default_app_defaults};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Check, pointer_key, present, short_fingerprint};
use crate::problem::ApiError;

/// Whether a tenant may provision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatusDto {
    /// Provisioning allowed.
    Active,
    /// Provisioning calls answer 409 `conflict`.
    Suspended,
}

impl From<TenantStatus> for TenantStatusDto {
    fn from(s: TenantStatus) -> Self {
        match s {
            TenantStatus::Active => Self::Active,
            TenantStatus::Suspended => Self::Suspended,
        }
    }
}

impl From<TenantStatusDto> for TenantStatus {
    fn from(s: TenantStatusDto) -> Self {
        match s {
            TenantStatusDto::Active => Self::Active,
            TenantStatusDto::Suspended => Self::Suspended,
        }
    }
}

/// Whether provisioning looks for (and deletes) a key the upstream may mint with every new
/// app: one list call per new app, and a delete when one is found (docs/upstream.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AutoKeyCheckDto {
    /// After every app create (the default).
    Always,
    /// Per upstream account: until enough creates in a row showed none, and again as soon as
    /// a check or the drift check sees one.
    Learn,
    /// Never (the drift check still reports such keys).
    Never,
}

impl From<AutoKeyCheck> for AutoKeyCheckDto {
    fn from(s: AutoKeyCheck) -> Self {
        match s {
            AutoKeyCheck::Always => Self::Always,
            AutoKeyCheck::Learn => Self::Learn,
            AutoKeyCheck::Never => Self::Never,
        }
    }
}

impl From<AutoKeyCheckDto> for AutoKeyCheck {
    fn from(s: AutoKeyCheckDto) -> Self {
        match s {
            AutoKeyCheckDto::Always => Self::Always,
            AutoKeyCheckDto::Learn => Self::Learn,
            AutoKeyCheckDto::Never => Self::Never,
        }
    }
}

/// The upstream account of a new tenant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamIn {
    /// Base URL of the tenant's Clarifai deployment (`https://api.clarifai.com` when absent).
    #[schema(example = "https://api.clarifai.com")]
    pub base_url: Option<String>,
    /// The Clarifai user owning the tenant's apps (1-64 of letters, digits, `-`, `_`).
    #[schema(example = "acme-ml", pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub user_id: String,
    /// The personal access token (verified upstream first; never returned): 1-512 characters,
    /// no spaces or control characters.
    #[schema(value_type = String, format = Password, pattern = "^[^\\s\\u0000-\\u001F\\u007F-\\u009F]{1,512}$")]
    pub pat: SecretString,
}

/// App creation defaults of a new tenant: each absent field takes its default (`<id>-`,
/// `Empty`, `Provisioned for {external_id}`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppDefaultsIn {
    /// Prefix of every app id (`<tenant id>-` when absent).
    #[schema(example = "acme-")]
    pub id_prefix: Option<String>,
    /// Base workflow in `clarifai/main` (`Empty` when absent).
    #[schema(example = "Empty")]
    pub default_workflow: Option<String>,
    /// Description template; `{external_id}` is replaced (`Provisioned for {external_id}`
    /// when absent).
    #[schema(example = "Provisioned for {external_id}")]
    pub description: Option<String>,
}

/// App creation defaults.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppDefaultsDto {
    /// Prefix of every app id.
    #[schema(example = "acme-")]
    pub id_prefix: String,
    /// Base workflow in `clarifai/main`.
    #[schema(example = "Empty")]
    pub default_workflow: String,
    /// Description template; `{external_id}` is replaced.
    #[schema(example = "Provisioned for {external_id}")]
    pub description: String,
}

impl From<AppDefaultsDto> for AppDefaults {
    fn from(d: AppDefaultsDto) -> Self {
        AppDefaults {
            id_prefix: d.id_prefix,
            default_workflow: d.default_workflow,
            description: d.description,
        }
    }
}

impl From<AppDefaults> for AppDefaultsDto {
    fn from(d: AppDefaults) -> Self {
        AppDefaultsDto {
            id_prefix: d.id_prefix,
            default_workflow: d.default_workflow,
            description: d.description,
        }
    }
}

/// Per-tenant upstream protection.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitDto {
    /// Requests per second sent to the tenant's upstream account.
    #[schema(example = 15)]
    pub requests_per_second: u32,
    /// Requests in flight at once.
    #[schema(example = 8)]
    pub max_concurrency: u32,
}

impl From<RateLimitDto> for UpstreamRateLimit {
    fn from(r: RateLimitDto) -> Self {
        UpstreamRateLimit {
            requests_per_second: r.requests_per_second,
            max_concurrency: r.max_concurrency,
        }
    }
}

impl From<UpstreamRateLimit> for RateLimitDto {
    fn from(r: UpstreamRateLimit) -> Self {
        RateLimitDto {
            requests_per_second: r.requests_per_second,
            max_concurrency: r.max_concurrency,
        }
    }
}

/// The upstream of a tenant that names no base URL: Clarifai's public API.
pub const DEFAULT_BASE_URL: &str = "https://api.clarifai.com";

/// `POST /v1/tenants` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantIn {
    /// 1-32 of `a-z 0-9 -`, starting with a letter.
    #[schema(example = "acme", pattern = "^[a-z][a-z0-9-]{0,31}$")]
    pub id: String,
    /// Human name (1-200 characters; the id when absent).
    #[schema(example = "Acme Corp")]
    pub display_name: Option<String>,
    /// The upstream account.
    pub upstream: UpstreamIn,
    /// App defaults (each absent field derived from the id or defaulted).
    pub app_defaults: Option<AppDefaultsIn>,
    /// Upstream protection (15 rps, 8 in flight when absent).
    pub upstream_rate_limit: Option<RateLimitDto>,
    /// Scopes the tenant's keys may ever hold.
    #[schema(example = json!(["Predict", "Inputs:Get"]))]
    pub allowed_scopes: Vec<String>,
    /// Profile used when a PUT names neither a profile nor scopes. A tenant with no profiles
    /// at all gives such a PUT all of `allowed_scopes`.
    #[schema(pattern = "^[a-z][a-z0-9-]{0,31}$", example = "standard")]
    pub default_scope_profile: Option<String>,
    /// Initial scope profiles, by name.
    #[serde(default)]
    pub scope_profiles: BTreeMap<String, Vec<String>>,
    /// Whether provisioning deletes a key the upstream mints with a new app (`always` when
    /// absent).
    pub auto_key_check: Option<AutoKeyCheckDto>,
}

impl TryFrom<TenantIn> for NewTenant {
    type Error = ApiError;

    fn try_from(v: TenantIn) -> Result<Self, ApiError> {
        let mut c = Check::default();
        let id = c.syntax("/id", TenantId::parse(&v.id));
        let user_id = c.syntax(
            "/upstream/user_id",
            UpstreamUserId::parse(&v.upstream.user_id),
        );
        let pat = c.syntax("/upstream/pat", Pat::parse(v.upstream.pat.expose_secret()));
        let allowed = c.scopes("/allowed_scopes", &v.allowed_scopes);
        let default = v
            .default_scope_profile
            .as_deref()
            .map(|p| c.syntax("/default_scope_profile", ProfileName::parse(p)));
        let mut profiles = Some(BTreeMap::new());
        for (name, scopes) in &v.scope_profiles {
            let ptr = format!("/scope_profiles/{}", pointer_key(name));
            let name = c.syntax(&ptr, ProfileName::parse(name));
            let scopes = c.scopes(&ptr, scopes);
            match (name, scopes, profiles.as_mut()) {
                (Some(n), Some(s), Some(p)) => {
                    p.insert(n, s);
                }
                _ => profiles = None,
            }
        }
        let (
            Some(id),
            Some(upstream_user_id),
            Some(pat),
            Some(allowed_scopes),
            Some(scope_profiles),
            None | Some(Some(_)),
        ) = (id, user_id, pat, allowed, profiles, default.clone())
        else {
            return Err(c.into_error());
        };
        let defaults = default_app_defaults(&id);
        let app_defaults = v.app_defaults.unwrap_or_default();
        Ok(NewTenant {
            display_name: v.display_name.unwrap_or_else(|| id.as_str().to_owned()),
            app_defaults: Some(AppDefaults {
                id_prefix: app_defaults.id_prefix.unwrap_or(defaults.id_prefix),
                default_workflow: app_defaults
                    .default_workflow
                    .unwrap_or(defaults.default_workflow),
                description: app_defaults.description.unwrap_or(defaults.description),
            }),
            id,
            base_url: v
                .upstream
                .base_url
                .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned()),
            upstream_user_id,
            pat,
            rate_limit: v.upstream_rate_limit.map(Into::into),
            allowed_scopes,
            default_scope_profile: default.flatten(),
            scope_profiles,
            auto_key_check: v.auto_key_check.map(Into::into),
        })
    }
}

/// `PATCH /v1/tenants/{tenant_id}` body: absent (or `null`) fields stay as they are, except
/// `default_scope_profile`, where `null` clears the default.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantPatchIn {
    /// New display name.
    pub display_name: Option<String>,
    /// Suspend or reactivate.
    pub status: Option<TenantStatusDto>,
    /// New app defaults (for users provisioned later).
    pub app_defaults: Option<AppDefaultsDto>,
    /// New allowed scopes; existing profiles must stay within them.
    pub allowed_scopes: Option<Vec<String>>,
    /// New default profile; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, pattern = "^[a-z][a-z0-9-]{0,31}$")]
    pub default_scope_profile: Option<Option<String>>,
    /// New upstream protection.
    pub upstream_rate_limit: Option<RateLimitDto>,
    /// New policy for keys the upstream mints with a new app.
    pub auto_key_check: Option<AutoKeyCheckDto>,
}

impl TryFrom<TenantPatchIn> for TenantPatch {
    type Error = ApiError;

    fn try_from(v: TenantPatchIn) -> Result<Self, ApiError> {
        let mut c = Check::default();
        let allowed = v
            .allowed_scopes
            .as_deref()
            .map(|s| c.scopes("/allowed_scopes", s));
        let default = match &v.default_scope_profile {
            None => Some(None),
            Some(None) => Some(Some(None)),
            Some(Some(p)) => c
                .syntax("/default_scope_profile", ProfileName::parse(p))
                .map(|p| Some(Some(p))),
        };
        let (None | Some(Some(_)), Some(default_scope_profile)) = (&allowed, default) else {
            return Err(c.into_error());
        };
        Ok(TenantPatch {
            display_name: v.display_name,
            status: v.status.map(Into::into),
            app_defaults: v.app_defaults.map(Into::into),
            allowed_scopes: allowed.flatten(),
            default_scope_profile,
            rate_limit: v.upstream_rate_limit.map(Into::into),
            auto_key_check: v.auto_key_check.map(Into::into),
        })
    }
}

/// `PUT /v1/tenants/{tenant_id}/upstream-credential` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialIn {
    /// The new personal access token (verified upstream first; never returned): 1-512
    /// characters, no spaces or control characters.
    #[schema(value_type = String, format = Password, pattern = "^[^\\s\\u0000-\\u001F\\u007F-\\u009F]{1,512}$")]
    pub pat: SecretString,
}

impl TryFrom<CredentialIn> for Pat {
    type Error = ApiError;

    fn try_from(v: CredentialIn) -> Result<Self, ApiError> {
        let mut c = Check::default();
        c.syntax("/pat", Pat::parse(v.pat.expose_secret()))
            .ok_or_else(|| c.into_error())
    }
}

/// The upstream account as shown: never the PAT, only its fingerprint.
#[derive(Debug, Serialize, ToSchema)]
pub struct UpstreamOut {
    /// Base URL.
    pub base_url: String,
    /// The Clarifai user owning the apps.
    pub user_id: String,
    /// First 8 hex characters of the PAT's SHA-256.
    #[schema(example = "3f1a9c0d")]
    pub pat_fingerprint: String,
}

/// A tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantOut {
    /// Its id.
    pub id: String,
    /// Human name.
    pub display_name: String,
    /// Active or suspended.
    pub status: TenantStatusDto,
    /// The upstream account (no secret).
    pub upstream: UpstreamOut,
    /// App creation defaults.
    pub app_defaults: AppDefaultsDto,
    /// Upstream protection.
    pub upstream_rate_limit: RateLimitDto,
    /// Scopes its keys may hold, sorted.
    pub allowed_scopes: Vec<String>,
    /// Profile used when a PUT names none.
    pub default_scope_profile: Option<String>,
    /// Whether provisioning deletes a key the upstream mints with a new app.
    pub auto_key_check: AutoKeyCheckDto,
    /// Scope profiles by name (absent in list items).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_profiles: Option<BTreeMap<String, Vec<String>>>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl TenantOut {
    /// A tenant without its profiles (list items).
    pub fn summary(t: Tenant) -> Self {
        TenantOut {
            upstream: UpstreamOut {
                base_url: t.base_url,
                user_id: t.upstream_user_id.to_string(),
                pat_fingerprint: short_fingerprint(&t.pat_fingerprint),
            },
            id: t.id.to_string(),
            display_name: t.display_name,
            status: t.status.into(),
            app_defaults: t.app_defaults.into(),
            upstream_rate_limit: t.rate_limit.into(),
            allowed_scopes: t.allowed_scopes.names(),
            default_scope_profile: t.default_scope_profile.map(|p| p.to_string()),
            auto_key_check: t.auto_key_check.into(),
            scope_profiles: None,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

impl From<TenantView> for TenantOut {
    fn from(v: TenantView) -> Self {
        let profiles = v
            .profiles
            .into_iter()
            .map(|p| (p.name.to_string(), p.scopes.names()))
            .collect();
        TenantOut {
            scope_profiles: Some(profiles),
            ..TenantOut::summary(v.tenant)
        }
    }
}

/// A page of tenants.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantPage {
    /// Tenants by id (without `scope_profiles`).
    pub items: Vec<TenantOut>,
    /// Cursor of the next page; `null` at the end.
    pub next_cursor: Option<String>,
}
