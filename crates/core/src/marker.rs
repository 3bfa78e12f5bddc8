//! Markers the service leaves upstream so a repeated step finds what it made.
//!
//! Apps carry `{"provisioner": {"tenant": <tenant>, "subject": <digest>}}` in their metadata:
//! the full SHA-256 of (tenant, external id) in hex, so it names one user beyond doubt (the app
//! id's own 8-hex hash can clash) and no end-user identifier is copied upstream. Keys
//! carry `prov:<app id>:g<generation>` in their description (short ASCII, at most 47 characters).

use serde_json::{Value, json};

use crate::app_id::subject_digest;
use crate::ids::{AppId, ExternalId, TenantId};

/// The metadata marker of the app of (tenant, external id).
pub fn app_marker(tenant: &TenantId, external_id: &ExternalId) -> Value {
    json!({"provisioner": {"tenant": tenant.as_str(), "subject": subject_digest(tenant, external_id)}})
}

/// Whether an upstream app's metadata carries the marker of (tenant, external id).
pub fn app_has_marker(metadata: &Value, tenant: &TenantId, external_id: &ExternalId) -> bool {
    metadata.get("provisioner") == app_marker(tenant, external_id).get("provisioner")
}

/// Whether an app's metadata says it is managed by this service for `tenant`.
pub fn app_managed_by(metadata: &Value, tenant: &TenantId) -> bool {
    metadata
        .get("provisioner")
        .and_then(|p| p.get("tenant"))
        .and_then(Value::as_str)
        == Some(tenant.as_str())
}

/// The description of the key of generation `generation` of app `app_id`.
pub fn key_description(app_id: &AppId, generation: i64) -> String {
    format!("prov:{app_id}:g{generation}")
}

/// The generation a key description names, if it is one of ours for `app_id`.
pub fn key_generation(description: &str, app_id: &AppId) -> Option<i64> {
    description
        .strip_prefix("prov:")?
        .strip_prefix(app_id.as_str())?
        .strip_prefix(":g")?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip() {
        let t = TenantId::parse("acme").unwrap();
        let e = ExternalId::parse("u1").unwrap();
        let m = app_marker(&t, &e);
        assert!(app_has_marker(&m, &t, &e));
        assert!(app_managed_by(&m, &t));
        assert!(!app_has_marker(&m, &t, &ExternalId::parse("u2").unwrap()));
        // A marker of the short (8 hex) digest of older versions names nobody for sure.
        let short = json!({"provisioner": {"tenant": "acme",
            "subject": &crate::app_id::subject_digest(&t, &e)[..8]}});
        assert!(!app_has_marker(&short, &t, &e));
        let app = AppId::parse("acme-u1-1234abcd").unwrap();
        assert_eq!(key_generation(&key_description(&app, 7), &app), Some(7));
        assert_eq!(key_generation("prov:other:g7", &app), None);
        assert_eq!(key_generation("hand made", &app), None);
    }
}
