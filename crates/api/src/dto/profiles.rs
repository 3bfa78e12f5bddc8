//! Scope profiles on the wire.

use chrono::{DateTime, Utc};
use provisioner_core::model::ScopeProfile;
use provisioner_core::scope::ScopeSet;
use provisioner_core::service::KeyAgePolicy;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Check;
use crate::problem::ApiError;

/// `PUT /v1/tenants/{tenant_id}/scope-profiles/{name}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileIn {
    /// The scopes (within the tenant's allowed scopes).
    #[schema(example = json!(["Predict", "Inputs:Get"]))]
    pub scopes: Vec<String>,
    /// Key-age policy: the service rotates a key of this profile's users once it is this old
    /// (3,600 to 315,360,000 s; absent or `null`: keys never expire).
    #[serde(default)]
    #[schema(minimum = 3600, maximum = 315360000, example = 7776000)]
    pub max_key_age_seconds: Option<i64>,
    /// How long a key the policy replaces stays valid (0 to 86,400 s, shorter than
    /// `max_key_age_seconds`); 0 by default.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 86400)]
    pub rotation_grace_seconds: i64,
}

impl ProfileIn {
    /// The scopes and the key-age policy.
    pub fn parts(self) -> Result<(ScopeSet, KeyAgePolicy), ApiError> {
        let mut c = Check::default();
        let scopes = c
            .scopes("/scopes", &self.scopes)
            .ok_or_else(|| c.into_error())?;
        Ok((
            scopes,
            KeyAgePolicy {
                max_key_age_secs: self.max_key_age_seconds,
                rotation_grace_secs: self.rotation_grace_seconds,
            },
        ))
    }
}

/// A scope profile.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileOut {
    /// Owner tenant.
    pub tenant_id: String,
    /// Name, unique within the tenant.
    pub name: String,
    /// Scopes, sorted.
    pub scopes: Vec<String>,
    /// Key-age policy (`null`: keys never expire).
    pub max_key_age_seconds: Option<i64>,
    /// How long a key the policy replaces stays valid.
    pub rotation_grace_seconds: i64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<ScopeProfile> for ProfileOut {
    fn from(p: ScopeProfile) -> Self {
        ProfileOut {
            tenant_id: p.tenant_id.to_string(),
            name: p.name.to_string(),
            scopes: p.scopes.names(),
            max_key_age_seconds: p.max_key_age_secs,
            rotation_grace_seconds: p.rotation_grace_secs,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// A tenant's scope profiles (one page: `next_cursor` is always `null`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProfilePage {
    /// Profiles by name.
    pub items: Vec<ProfileOut>,
    /// Always `null`.
    pub next_cursor: Option<String>,
}
