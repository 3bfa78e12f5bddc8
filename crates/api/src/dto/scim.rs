//! A tenant's SCIM settings and SCIM tokens on the wire (the admin side of `/scim`).

use chrono::{DateTime, Utc};
use provisioner_core::ids::{ProfileName, TenantId};
use provisioner_core::scim::{DeactivatePolicy, ExternalIdSource, ScimConfig, ScimToken};
use provisioner_core::service::IssuedScimToken;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Check;
use crate::problem::ApiError;

/// Which SCIM attribute becomes a SCIM user's provisioning `external_id` (fixed once set).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExternalIdSourceDto {
    /// `userName` (always sent by both identity providers). The default.
    #[default]
    UserName,
    /// `externalId` (then required on every SCIM create).
    ExternalId,
}

impl From<ExternalIdSource> for ExternalIdSourceDto {
    fn from(s: ExternalIdSource) -> Self {
        match s {
            ExternalIdSource::UserName => Self::UserName,
            ExternalIdSource::ExternalId => Self::ExternalId,
        }
    }
}

impl From<ExternalIdSourceDto> for ExternalIdSource {
    fn from(s: ExternalIdSourceDto) -> Self {
        match s {
            ExternalIdSourceDto::UserName => Self::UserName,
            ExternalIdSourceDto::ExternalId => Self::ExternalId,
        }
    }
}

/// What `active: false` does to a SCIM user's app and key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeactivatePolicyDto {
    /// Delete the key, keep the app and its data (user status `suspended`); reactivation
    /// creates a new key. The default.
    #[default]
    RevokeKey,
    /// Delete the key and the app (user status `deleted`).
    Deprovision,
}

impl From<DeactivatePolicy> for DeactivatePolicyDto {
    fn from(s: DeactivatePolicy) -> Self {
        match s {
            DeactivatePolicy::RevokeKey => Self::RevokeKey,
            DeactivatePolicy::Deprovision => Self::Deprovision,
        }
    }
}

impl From<DeactivatePolicyDto> for DeactivatePolicy {
    fn from(s: DeactivatePolicyDto) -> Self {
        match s {
            DeactivatePolicyDto::RevokeKey => Self::RevokeKey,
            DeactivatePolicyDto::Deprovision => Self::Deprovision,
        }
    }
}

/// `PUT /v1/tenants/{tenant_id}/scim` body: the whole settings; an absent field takes its
/// default (an empty body restores every default).
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScimConfigIn {
    /// Source of the provisioning external id (`user_name` when absent).
    pub external_id_from: Option<ExternalIdSourceDto>,
    /// What deactivation does (`revoke_key` when absent).
    pub on_deactivate: Option<DeactivatePolicyDto>,
    /// Profile of SCIM users whose profile attribute names none (`null`: the tenant's
    /// default profile at sync time). Must exist.
    #[schema(pattern = "^[a-z][a-z0-9-]{0,31}$", example = "standard")]
    pub scope_profile: Option<String>,
    /// A SCIM attribute whose value, when it names one of the tenant's profiles, chooses a new
    /// SCIM user's profile: `userType`, `title`, or an extension attribute with its schema URN.
    /// 1-200 characters, no spaces.
    #[schema(
        example = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
        pattern = "^\\S{1,200}$"
    )]
    pub profile_attribute: Option<String>,
}

impl ScimConfigIn {
    /// The settings of `tenant` this body describes.
    pub fn into_config(self, tenant: &TenantId) -> Result<ScimConfig, ApiError> {
        let mut c = Check::default();
        let profile = match &self.scope_profile {
            None => Some(None),
            Some(p) => c.syntax("/scope_profile", ProfileName::parse(p)).map(Some),
        };
        let Some(scope_profile) = profile else {
            return Err(c.into_error());
        };
        Ok(ScimConfig {
            tenant_id: tenant.clone(),
            external_id_from: self.external_id_from.unwrap_or_default().into(),
            on_deactivate: self.on_deactivate.unwrap_or_default().into(),
            scope_profile,
            profile_attribute: self.profile_attribute,
            updated_at: None,
        })
    }
}

/// A tenant's SCIM settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScimConfigOut {
    /// Owner tenant.
    pub tenant_id: String,
    /// Source of the provisioning external id.
    pub external_id_from: ExternalIdSourceDto,
    /// What deactivation does.
    pub on_deactivate: DeactivatePolicyDto,
    /// Profile of SCIM users whose profile attribute names none.
    pub scope_profile: Option<String>,
    /// The SCIM attribute that may choose a new user's profile.
    pub profile_attribute: Option<String>,
    /// The SCIM base URL path to configure in the identity provider (after this service's
    /// origin): the tenant URL of Entra ID, the SCIM connector base URL of Okta.
    #[schema(example = "/scim/v2/acme")]
    pub scim_base_url: String,
    /// Last changed; `null` while the defaults were never changed.
    pub updated_at: Option<DateTime<Utc>>,
}

impl From<ScimConfig> for ScimConfigOut {
    fn from(c: ScimConfig) -> Self {
        ScimConfigOut {
            scim_base_url: crate::scim::resource::base_path(c.tenant_id.as_str()),
            tenant_id: c.tenant_id.to_string(),
            external_id_from: c.external_id_from.into(),
            on_deactivate: c.on_deactivate.into(),
            scope_profile: c.scope_profile.map(|p| p.to_string()),
            profile_attribute: c.profile_attribute,
            updated_at: c.updated_at,
        }
    }
}

/// Seconds the tenant's earlier SCIM tokens keep working when none is given.
pub const DEFAULT_TOKEN_OVERLAP_SECONDS: u32 = 86_400;

fn default_overlap() -> u32 {
    DEFAULT_TOKEN_OVERLAP_SECONDS
}

/// `POST /v1/tenants/{tenant_id}/scim/tokens` body (optional).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScimTokenIn {
    /// Seconds the tenant's earlier tokens keep working, 0-2592000 (default 86400), so the
    /// identity provider can be switched to the new one; 0 revokes them at once.
    #[serde(default = "default_overlap")]
    #[schema(minimum = 0, maximum = 2_592_000, default = 86400)]
    pub overlap_seconds: u32,
}

impl Default for ScimTokenIn {
    fn default() -> Self {
        Self {
            overlap_seconds: DEFAULT_TOKEN_OVERLAP_SECONDS,
        }
    }
}

/// A SCIM token just issued: `token` is shown this once.
#[derive(Serialize, ToSchema)]
pub struct ScimTokenCreatedOut {
    /// Public id (to list and revoke it).
    pub id: String,
    /// The bearer secret for the identity provider (`scim_...`); only its hash is stored.
    #[schema(example = "scim_3q2-7wEXAMPLEonlyEXAMPLEonlyEXAMPLEonly0")]
    pub token: String,
    /// Issued.
    pub created_at: DateTime<Utc>,
    /// Always `null`: a token expires only when a newer one replaces it.
    pub expires_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for ScimTokenCreatedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScimTokenCreatedOut")
            .field("id", &self.id)
            .field("token", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

impl From<IssuedScimToken> for ScimTokenCreatedOut {
    fn from(t: IssuedScimToken) -> Self {
        ScimTokenCreatedOut {
            token: t.secret.expose_secret().to_owned(),
            id: t.token.id,
            created_at: t.token.created_at,
            expires_at: t.token.expires_at,
        }
    }
}

/// A SCIM token as listed (never its secret or hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct ScimTokenOut {
    /// Public id.
    pub id: String,
    /// Issued.
    pub created_at: DateTime<Utc>,
    /// When it stops (or stopped) working; `null`: until replaced or revoked.
    pub expires_at: Option<DateTime<Utc>>,
    /// The `sub` of the administrator who issued it.
    pub created_by: String,
}

impl From<ScimToken> for ScimTokenOut {
    fn from(t: ScimToken) -> Self {
        ScimTokenOut {
            id: t.id,
            created_at: t.created_at,
            expires_at: t.expires_at,
            created_by: t.created_by,
        }
    }
}

/// A tenant's SCIM tokens, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScimTokenList {
    /// The tokens (expired ones included until they are cleaned up).
    pub items: Vec<ScimTokenOut>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_settings_body_means_the_defaults() {
        let t = TenantId::parse("acme").unwrap();
        let c = ScimConfigIn::default().into_config(&t).unwrap();
        assert_eq!(c, ScimConfig::default_for(&t));
        let e = ScimConfigIn {
            scope_profile: Some("Not A Profile".into()),
            ..Default::default()
        }
        .into_config(&t)
        .unwrap_err();
        assert_eq!(e.problem().status, 400);
    }

    #[test]
    fn unknown_fields_are_refused_and_the_overlap_defaults_to_a_day() {
        assert!(
            serde_json::from_str::<ScimConfigIn>(r#"{"external_id_from":"user_name","x":1}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<ScimConfigIn>(r#"{"on_deactivate":"suspend"}"#).is_err());
        let t: ScimTokenIn = serde_json::from_str("{}").unwrap();
        assert_eq!(t.overlap_seconds, 86_400);
        assert_eq!(ScimTokenIn::default().overlap_seconds, 86_400);
    }
}
