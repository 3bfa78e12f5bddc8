//! Row structs as the database holds them, and their conversion to and from domain types.
//!
//! Encoding: timestamps are unix milliseconds (UTC), enums their `as_str` text, scope sets,
//! metadata and settings JSON text. Decoding re-parses everything through core's
//! constructors, so a corrupt row becomes [`StoreError::Backend`] naming the row and field.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::str::FromStr;

use chrono::DateTime;
use provisioner_core::StoreError;
use provisioner_core::ids::{AppId, ExternalId, ProfileName, TenantId, UpstreamUserId};
use provisioner_core::model::{
    AuditEvent, Lease, RetiredKey, ScopeProfile, StoredKey, Tenant, Timestamp, User,
};
use provisioner_core::scope::ScopeSet;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A timestamp as stored: unix milliseconds.
pub(crate) fn ms(t: Timestamp) -> i64 {
    t.timestamp_millis()
}

/// Builds the error for a field of a row that does not parse.
fn corrupt(row: &str, field: &str, why: impl Display) -> StoreError {
    StoreError::Backend(format!("corrupt {row} row: {field}: {why}"))
}

/// Parses a stored value of type `T` through its `FromStr` (ids, enums).
fn parse<T: FromStr>(row: &str, field: &str, s: &str) -> Result<T, StoreError>
where
    T::Err: Display,
{
    s.parse().map_err(|e| corrupt(row, field, e))
}

pub(crate) fn time(row: &str, field: &str, v: i64) -> Result<Timestamp, StoreError> {
    DateTime::from_timestamp_millis(v).ok_or_else(|| corrupt(row, field, "timestamp out of range"))
}

fn json<T: DeserializeOwned>(row: &str, field: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| corrupt(row, field, e))
}

/// JSON text of a value whose serialization cannot fail (plain structs, maps and sets).
pub(crate) fn to_json<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(format!("encoding JSON: {e}")))
}

/// Wraps core's `parse` constructors (they are inherent functions, not `FromStr`).
macro_rules! id {
    ($t:ty, $row:expr, $field:literal, $s:expr) => {
        <$t>::parse($s).map_err(|e| corrupt($row, $field, e))
    };
}

/// A `tenants` row.
#[derive(sqlx::FromRow)]
pub(crate) struct TenantRow {
    pub id: String,
    pub display_name: String,
    pub status: String,
    pub base_url: String,
    pub upstream_user_id: String,
    pub pat_sealed: Vec<u8>,
    pub pat_fingerprint: String,
    pub app_defaults: String,
    pub rate_limit: String,
    pub allowed_scopes: String,
    pub default_scope_profile: Option<String>,
    pub auto_key_check: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
}

impl TenantRow {
    /// Encodes a tenant for writing.
    pub(crate) fn from_tenant(t: &Tenant) -> Result<Self, StoreError> {
        Ok(TenantRow {
            id: t.id.as_str().to_owned(),
            display_name: t.display_name.clone(),
            status: t.status.as_str().to_owned(),
            base_url: t.base_url.clone(),
            upstream_user_id: t.upstream_user_id.as_str().to_owned(),
            pat_sealed: t.pat_sealed.clone(),
            pat_fingerprint: t.pat_fingerprint.clone(),
            app_defaults: to_json(&t.app_defaults)?,
            rate_limit: to_json(&t.rate_limit)?,
            allowed_scopes: to_json(&t.allowed_scopes)?,
            default_scope_profile: t
                .default_scope_profile
                .as_ref()
                .map(|p| p.as_str().to_owned()),
            auto_key_check: t.auto_key_check.as_str().to_owned(),
            created_at: ms(t.created_at),
            updated_at: ms(t.updated_at),
            version: t.version,
        })
    }
}

impl TryFrom<TenantRow> for Tenant {
    type Error = StoreError;

    fn try_from(r: TenantRow) -> Result<Self, StoreError> {
        let row = "tenants";
        Ok(Tenant {
            id: id!(TenantId, row, "id", &r.id)?,
            display_name: r.display_name,
            status: parse(row, "status", &r.status)?,
            base_url: r.base_url,
            upstream_user_id: id!(UpstreamUserId, row, "upstream_user_id", &r.upstream_user_id)?,
            pat_sealed: r.pat_sealed,
            pat_fingerprint: r.pat_fingerprint,
            app_defaults: json(row, "app_defaults", &r.app_defaults)?,
            rate_limit: json(row, "rate_limit", &r.rate_limit)?,
            allowed_scopes: json(row, "allowed_scopes", &r.allowed_scopes)?,
            default_scope_profile: r
                .default_scope_profile
                .as_deref()
                .map(|p| id!(ProfileName, row, "default_scope_profile", p))
                .transpose()?,
            auto_key_check: parse(row, "auto_key_check", &r.auto_key_check)?,
            created_at: time(row, "created_at", r.created_at)?,
            updated_at: time(row, "updated_at", r.updated_at)?,
            version: r.version,
        })
    }
}

/// A `scope_profiles` row.
#[derive(sqlx::FromRow)]
pub(crate) struct ProfileRow {
    pub tenant_id: String,
    pub name: String,
    pub scopes: String,
    pub max_key_age_secs: Option<i64>,
    pub rotation_grace_secs: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TryFrom<ProfileRow> for ScopeProfile {
    type Error = StoreError;

    fn try_from(r: ProfileRow) -> Result<Self, StoreError> {
        let row = "scope_profiles";
        Ok(ScopeProfile {
            tenant_id: id!(TenantId, row, "tenant_id", &r.tenant_id)?,
            name: id!(ProfileName, row, "name", &r.name)?,
            scopes: json::<ScopeSet>(row, "scopes", &r.scopes)?,
            max_key_age_secs: r.max_key_age_secs,
            rotation_grace_secs: r.rotation_grace_secs,
            created_at: time(row, "created_at", r.created_at)?,
            updated_at: time(row, "updated_at", r.updated_at)?,
        })
    }
}

/// A `users` row.
#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    pub tenant_id: String,
    pub external_id: String,
    pub app_id: String,
    pub status: String,
    pub step: String,
    pub generation: i64,
    pub scopes: String,
    pub key_sealed: Option<Vec<u8>>,
    pub key_fingerprint: Option<String>,
    pub key_scopes: Option<String>,
    pub key_generation: Option<i64>,
    pub key_created_at: Option<i64>,
    pub retired_key_sealed: Option<Vec<u8>>,
    pub retired_key_fingerprint: Option<String>,
    pub retired_key_delete_after: Option<i64>,
    pub display_name: Option<String>,
    pub metadata: String,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub last_error: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: Option<i64>,
    pub rotation_grace_secs: i64,
    pub secret_pending: i64,
    pub profile: Option<String>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl UserRow {
    /// Encodes a user for writing.
    pub(crate) fn from_user(u: &User) -> Result<Self, StoreError> {
        let key = u.key.as_ref();
        let retired = u.retired_key.as_ref();
        Ok(UserRow {
            tenant_id: u.tenant_id.as_str().to_owned(),
            external_id: u.external_id.as_str().to_owned(),
            app_id: u.app_id.as_str().to_owned(),
            status: u.status.as_str().to_owned(),
            step: u.step.as_str().to_owned(),
            generation: u.generation,
            scopes: to_json(&u.scopes)?,
            key_sealed: key.map(|k| k.sealed.clone()),
            key_fingerprint: key.map(|k| k.fingerprint.clone()),
            key_scopes: key.map(|k| to_json(&k.scopes)).transpose()?,
            key_generation: key.map(|k| k.generation),
            key_created_at: key.map(|k| ms(k.created_at)),
            retired_key_sealed: retired.map(|k| k.sealed.clone()),
            retired_key_fingerprint: retired.map(|k| k.fingerprint.clone()),
            retired_key_delete_after: retired.map(|k| ms(k.delete_after)),
            display_name: u.display_name.clone(),
            metadata: to_json(&u.metadata)?,
            lease_owner: u.lease.as_ref().map(|l| l.owner.clone()),
            lease_expires_at: u.lease.as_ref().map(|l| ms(l.expires_at)),
            last_error: u.last_error.clone(),
            attempts: u.attempts,
            next_attempt_at: u.next_attempt_at.map(ms),
            rotation_grace_secs: u.rotation_grace_secs,
            secret_pending: i64::from(u.secret_pending),
            profile: u.profile.as_ref().map(|p| p.as_str().to_owned()),
            version: u.version,
            created_at: ms(u.created_at),
            updated_at: ms(u.updated_at),
        })
    }
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(r: UserRow) -> Result<Self, StoreError> {
        let row = "users";
        let key = match (
            r.key_sealed,
            r.key_fingerprint,
            r.key_scopes,
            r.key_generation,
            r.key_created_at,
        ) {
            (None, None, None, None, None) => None,
            (Some(sealed), Some(fingerprint), Some(scopes), Some(generation), Some(created_at)) => {
                Some(StoredKey {
                    sealed,
                    fingerprint,
                    scopes: json(row, "key_scopes", &scopes)?,
                    generation,
                    created_at: time(row, "key_created_at", created_at)?,
                })
            }
            _ => return Err(corrupt(row, "key_*", "key columns only partly set")),
        };
        let retired_key = match (
            r.retired_key_sealed,
            r.retired_key_fingerprint,
            r.retired_key_delete_after,
        ) {
            (None, None, None) => None,
            (Some(sealed), Some(fingerprint), Some(delete_after)) => Some(RetiredKey {
                sealed,
                fingerprint,
                delete_after: time(row, "retired_key_delete_after", delete_after)?,
            }),
            _ => {
                return Err(corrupt(
                    row,
                    "retired_key_*",
                    "retired key columns only partly set",
                ));
            }
        };
        let lease = match (r.lease_owner, r.lease_expires_at) {
            (None, None) => None,
            (Some(owner), Some(expires_at)) => Some(Lease {
                owner,
                expires_at: time(row, "lease_expires_at", expires_at)?,
            }),
            _ => return Err(corrupt(row, "lease_*", "lease columns only partly set")),
        };
        Ok(User {
            tenant_id: id!(TenantId, row, "tenant_id", &r.tenant_id)?,
            external_id: id!(ExternalId, row, "external_id", &r.external_id)?,
            app_id: id!(AppId, row, "app_id", &r.app_id)?,
            status: parse(row, "status", &r.status)?,
            step: parse(row, "step", &r.step)?,
            generation: r.generation,
            scopes: json(row, "scopes", &r.scopes)?,
            key,
            retired_key,
            display_name: r.display_name,
            metadata: json::<BTreeMap<String, String>>(row, "metadata", &r.metadata)?,
            lease,
            last_error: r.last_error,
            attempts: r.attempts,
            next_attempt_at: r
                .next_attempt_at
                .map(|t| time(row, "next_attempt_at", t))
                .transpose()?,
            rotation_grace_secs: r.rotation_grace_secs,
            secret_pending: r.secret_pending != 0,
            profile: r
                .profile
                .as_deref()
                .map(|p| id!(ProfileName, row, "profile", p))
                .transpose()?,
            version: r.version,
            created_at: time(row, "created_at", r.created_at)?,
            updated_at: time(row, "updated_at", r.updated_at)?,
        })
    }
}

/// An `audit_events` row.
#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    pub id: String,
    pub at: i64,
    pub actor: String,
    pub tenant_id: Option<String>,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub request_id: Option<String>,
    /// Commit order (see migrations `*_audit_commit_order.sql`).
    pub seq: i64,
}

impl TryFrom<AuditRow> for AuditEvent {
    type Error = StoreError;

    fn try_from(r: AuditRow) -> Result<Self, StoreError> {
        let row = "audit_events";
        Ok(AuditEvent {
            at: time(row, "at", r.at)?,
            tenant_id: r
                .tenant_id
                .as_deref()
                .map(|t| id!(TenantId, row, "tenant_id", t))
                .transpose()?,
            id: r.id,
            actor: r.actor,
            action: r.action,
            target: r.target,
            outcome: r.outcome,
            request_id: r.request_id,
            events: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> UserRow {
        UserRow {
            tenant_id: "acme".into(),
            external_id: "alice".into(),
            app_id: "acme-alice".into(),
            status: "active".into(),
            step: "idle".into(),
            generation: 1,
            scopes: r#"["Predict"]"#.into(),
            key_sealed: None,
            key_fingerprint: None,
            key_scopes: None,
            key_generation: None,
            key_created_at: None,
            retired_key_sealed: None,
            retired_key_fingerprint: None,
            retired_key_delete_after: None,
            display_name: None,
            metadata: "{}".into(),
            lease_owner: None,
            lease_expires_at: None,
            last_error: None,
            attempts: 0,
            next_attempt_at: None,
            rotation_grace_secs: 0,
            secret_pending: 0,
            profile: None,
            version: 0,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn error_of(r: UserRow) -> String {
        match User::try_from(r) {
            Err(StoreError::Backend(m)) => m,
            other => panic!("expected a backend error, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_row_parses() {
        assert!(User::try_from(row()).is_ok());
    }

    #[test]
    fn corrupt_rows_are_backend_errors_naming_the_field() {
        let mut r = row();
        r.status = "bogus".into();
        assert!(error_of(r).contains("status"));
        let mut r = row();
        r.scopes = r#"["Not:AScope"]"#.into();
        assert!(error_of(r).contains("scopes"));
        let mut r = row();
        r.external_id = String::new();
        assert!(error_of(r).contains("external_id"));
        let mut r = row();
        r.key_sealed = Some(vec![1]);
        assert!(error_of(r).contains("key_"));
        let mut r = row();
        r.lease_owner = Some("op".into());
        assert!(error_of(r).contains("lease"));
        let mut r = row();
        r.created_at = i64::MAX;
        assert!(error_of(r).contains("created_at"));
        let mut r = row();
        r.metadata = "[1]".into();
        assert!(error_of(r).contains("metadata"));
    }
}
