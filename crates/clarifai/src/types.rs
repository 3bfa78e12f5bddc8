//! The client's public request and answer types.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::Value;

use crate::wire::{AppWire, KeyWire};

/// An app to create. The id is chosen by the caller, which makes a repeat answer "already
/// exists" instead of creating a second app.
#[derive(Clone, Debug, PartialEq)]
pub struct AppSpec {
    /// The app id (1-32 letters or digits, `-` or `_` between them).
    pub id: String,
    /// Short description.
    pub description: String,
    /// Base workflow id in `clarifai/main`, e.g. `Empty`.
    pub default_workflow: String,
    /// Arbitrary JSON stored with the app; `Value::Null` sends none.
    pub metadata: Value,
}

/// An app as the upstream reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct App {
    /// The app id.
    pub id: String,
    /// Its name, if reported.
    pub name: Option<String>,
    /// Description, empty when absent.
    pub description: String,
    /// Metadata, `Value::Null` when absent.
    pub metadata: Value,
    /// Owner, if reported.
    pub user_id: Option<String>,
    /// Creation time, if reported and well-formed.
    pub created_at: Option<DateTime<Utc>>,
}

impl From<AppWire> for App {
    fn from(w: AppWire) -> Self {
        Self {
            id: w.id,
            name: w.name,
            description: w.description.unwrap_or_default(),
            metadata: w.metadata.unwrap_or(Value::Null),
            user_id: w.user_id,
            created_at: timestamp(w.created_at.as_deref()),
        }
    }
}

/// An app-scoped key to create: one app, exactly these scopes. Its `id` and `type` are left
/// to the upstream (an app-specific key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySpec {
    /// The one app the key may reach (owned by the client's user).
    pub app_id: String,
    /// Description; put a correlation marker here to find the key after an ambiguous create.
    pub description: String,
    /// Scope names, e.g. `Predict`, `Inputs:Add`.
    pub scopes: Vec<String>,
}

/// A key as the upstream reports it. Its id is the secret, hence a [`SecretString`] that
/// `Debug` does not show.
#[derive(Clone, Debug)]
pub struct ApiKey {
    /// The key id, i.e. the secret used as `Authorization: Key <id>`.
    pub id: SecretString,
    /// `app_specific_key` or `personal_access_token`, if reported.
    pub key_type: Option<String>,
    /// Description, empty when absent.
    pub description: String,
    /// Scope names as reported.
    pub scopes: Vec<String>,
    /// Ids of the apps it is restricted to.
    pub app_ids: Vec<String>,
    /// Creation time, if reported and well-formed.
    pub created_at: Option<DateTime<Utc>>,
    /// Expiry, if any.
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<KeyWire> for ApiKey {
    fn from(w: KeyWire) -> Self {
        Self {
            id: SecretString::from(w.id),
            key_type: w.key_type,
            description: w.description.unwrap_or_default(),
            scopes: w.scopes,
            app_ids: w
                .apps
                .into_iter()
                .map(|a| a.id)
                .filter(|id| !id.is_empty())
                .collect(),
            created_at: timestamp(w.created_at.as_deref()),
            expires_at: timestamp(w.expires_at.as_deref()),
        }
    }
}

fn timestamp(s: Option<&str>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}
