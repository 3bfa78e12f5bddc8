//! SCIM 2.0 as the service stores it: a tenant's SCIM settings and tokens, and the SCIM user
//! resources an identity provider (Okta, Entra ID) manages. The protocol (JSON shapes, PATCH
//! dialects, filters, error bodies) is the api crate's; this module holds the records and the
//! rules that map them onto provisioning (docs/scim.md).
//!
//! A SCIM user is the identity provider's record of a person; its `active` flag (and whether
//! it is deleted) is the desired state of that person's provisioning. Every SCIM write stores
//! the record with a new `version`; a sync worker then brings the provisioning record
//! ([`crate::model::User`]) to that state through the ordinary, crash-safe use cases and marks
//! the version as synced. A crash in between leaves the version unsynced, so the worker does it
//! again (each use case is idempotent).

use serde::{Deserialize, Serialize};

use crate::ids::{ExternalId, ProfileName, TenantId};
use crate::model::{Timestamp, text_enum};

text_enum!(
    /// Which SCIM attribute becomes a SCIM user's provisioning `external_id` (fixed once set).
    ExternalIdSource {
        /// `userName` (always sent by both identity providers). The default.
        UserName => "user_name",
        /// `externalId` (Okta's user id when mapped; Entra's mapped source attribute).
        ExternalId => "external_id",
    }
);

text_enum!(
    /// What `active: false` does to a SCIM user's Clarifai app and key.
    DeactivatePolicy {
        /// Delete the key at once, keep the app and its data (user status `suspended`);
        /// `active: true` again creates a new key with the same scopes. The default.
        RevokeKey => "revoke_key",
        /// Delete the key and the app (user status `deleted`); `active: true` again provisions
        /// a new app and key.
        Deprovision => "deprovision",
    }
);

/// A tenant's SCIM settings ([`ScimConfig::default_for`] when never set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScimConfig {
    /// Owner.
    pub tenant_id: TenantId,
    /// Source of the provisioning external id.
    pub external_id_from: ExternalIdSource,
    /// What deactivation does.
    pub on_deactivate: DeactivatePolicy,
    /// Profile of SCIM users whose attribute names none (else the tenant's default).
    pub scope_profile: Option<ProfileName>,
    /// A SCIM attribute whose value, when it names one of the tenant's profiles, chooses the
    /// user's profile at creation: a core attribute (`userType`, `title`) or an
    /// enterprise-extension one given with its URN.
    pub profile_attribute: Option<String>,
    /// Last changed (`None`: never set, the defaults).
    pub updated_at: Option<Timestamp>,
}

impl ScimConfig {
    /// The settings of a tenant that never set them.
    pub fn default_for(tenant_id: &TenantId) -> Self {
        Self {
            tenant_id: tenant_id.clone(),
            external_id_from: ExternalIdSource::UserName,
            on_deactivate: DeactivatePolicy::RevokeKey,
            scope_profile: None,
            profile_attribute: None,
            updated_at: None,
        }
    }
}

/// A SCIM bearer token as stored: only the SHA-256 of its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScimToken {
    /// Public id (shown in lists, used to revoke).
    pub id: String,
    /// The one tenant it acts for.
    pub tenant_id: TenantId,
    /// SHA-256 of the secret, hex.
    pub hash: String,
    /// Issued.
    pub created_at: Timestamp,
    /// Stops working at this instant (set when a newer token replaces it, after the overlap).
    pub expires_at: Option<Timestamp>,
    /// Who issued it.
    pub created_by: String,
}

/// One e-mail address of a SCIM user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScimEmail {
    /// The address, as sent.
    pub value: String,
    /// `work`, `home`, ...
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Whether it is the primary address.
    #[serde(default)]
    pub primary: bool,
}

/// The SCIM attributes stored (and nothing else: the schema the service advertises lists
/// exactly these). Values are kept as sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScimAttributes {
    /// `userName`: unique within the tenant, compared case-insensitively.
    pub user_name: String,
    /// `externalId`: the identity provider's id of the person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// `name.givenName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// `name.familyName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    /// `name.formatted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formatted_name: Option<String>,
    /// `displayName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `emails`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<ScimEmail>,
    /// `active`: whether the person should hold a working key.
    pub active: bool,
}

/// A SCIM user resource as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScimUser {
    /// SCIM `id`: server-assigned (UUID v7), unique across the service, never reused.
    pub id: String,
    /// Owner tenant.
    pub tenant_id: TenantId,
    /// The provisioning record it drives (fixed at creation).
    pub external_id: ExternalId,
    /// The attributes.
    pub attrs: ScimAttributes,
    /// Scope profile chosen at creation (`None`: the tenant's default at sync time).
    pub profile: Option<ProfileName>,
    /// Deleted through SCIM (hidden; removed once its deprovisioning is synced).
    pub deleted: bool,
    /// Incremented by every write.
    pub version: i64,
    /// The last version brought onto the provisioning record.
    pub synced_version: i64,
    /// Why the last sync did not finish (kept until one does).
    pub sync_error: Option<String>,
    /// Failed syncs of the current version (the worker backs off on it).
    pub sync_attempts: i64,
    /// Earliest time the worker (re)tries the sync; also its claim while it runs.
    pub next_sync_at: Option<Timestamp>,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed through SCIM.
    pub updated_at: Timestamp,
}

impl ScimUser {
    /// The case-folded `userName` the tenant's uniqueness and filters use.
    pub fn user_name_key(&self) -> String {
        user_name_key(&self.attrs.user_name)
    }

    /// The e-mail search key (see [`email_key`]).
    pub fn email_key(&self) -> String {
        email_key(&self.attrs.emails)
    }

    /// `meta.version`: a weak ETag of the stored version.
    pub fn etag(&self) -> String {
        format!("W/\"{}\"", self.version)
    }
}

/// `userName` as compared (`caseExact: false`, RFC 7643 §4.1.1).
pub fn user_name_key(user_name: &str) -> String {
    user_name.to_lowercase()
}

/// A text the stores search with a plain substring test ([`email_needle`]): each address
/// (case-folded) once with any type and once with its own type, each framed by newlines.
pub fn email_key(emails: &[ScimEmail]) -> String {
    let mut out = String::from("\n");
    for e in emails {
        let value = e.value.to_lowercase();
        out.push_str(&format!("*\u{1f}{value}\n"));
        if let Some(kind) = &e.kind {
            out.push_str(&format!("{}\u{1f}{value}\n", kind.to_lowercase()));
        }
    }
    out
}

/// What [`email_key`] holds for an address of `kind` (any kind when `None`).
pub fn email_needle(kind: Option<&str>, value: &str) -> String {
    format!(
        "\n{}\u{1f}{}\n",
        kind.map_or_else(|| "*".to_owned(), str::to_lowercase),
        value.to_lowercase()
    )
}

/// A SCIM user query: every condition given must hold (a filter's `and`); none lists all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScimQuery {
    /// `id eq`.
    pub id: Option<String>,
    /// `userName eq`, case-folded ([`user_name_key`]).
    pub user_name_key: Option<String>,
    /// `externalId eq` (exact).
    pub external_id: Option<String>,
    /// `emails.value eq` / `emails[type eq "work"].value eq` ([`email_needle`]).
    pub email_needle: Option<String>,
    /// The provisioning external id it drives (not a SCIM filter; the service's own look-up).
    pub provisioning_id: Option<String>,
}

/// How a sync ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScimSyncOutcome {
    /// The provisioning record reached (or is durably on its way to) the state of `version`;
    /// `error` tells why it will not (a permanent refusal), kept for operators.
    Synced {
        /// The version brought over.
        version: i64,
        /// A refusal retrying will not fix.
        error: Option<String>,
    },
    /// Try again at `next_sync_at`.
    Retry {
        /// Why.
        error: String,
        /// When.
        next_sync_at: Timestamp,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_needles_find_addresses_by_value_and_by_type_case_insensitively() {
        let emails = vec![
            ScimEmail {
                value: "Ann@Example.com".into(),
                kind: Some("Work".into()),
                primary: true,
            },
            ScimEmail {
                value: "ann@home.example".into(),
                kind: None,
                primary: false,
            },
        ];
        let key = email_key(&emails);
        assert!(key.contains(&email_needle(None, "ann@example.COM")));
        assert!(key.contains(&email_needle(Some("work"), "ann@example.com")));
        assert!(!key.contains(&email_needle(Some("home"), "ann@example.com")));
        assert!(key.contains(&email_needle(None, "ann@home.example")));
        assert!(!key.contains(&email_needle(Some("work"), "ann@home.example")));
        // A value never matches across the framing.
        assert!(!key.contains(&email_needle(None, "ann@example")));
    }
}
