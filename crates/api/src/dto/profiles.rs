//! Scope profiles on the wire.

use chrono::{DateTime, Utc};
use provisioner_core::model::ScopeProfile;
use provisioner_core::scope::ScopeSet;
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
}

impl TryFrom<ProfileIn> for ScopeSet {
    type Error = ApiError;

    fn try_from(v: ProfileIn) -> Result<Self, ApiError> {
        let mut c = Check::default();
        c.scopes("/scopes", &v.scopes).ok_or_else(|| c.into_error())
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
