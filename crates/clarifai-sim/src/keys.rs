//! App-specific keys: creation rules, look-ups and deletion.
//!
//! Rules (docs/upstream.md): exactly one app per key, the app must exist and
//! belong to the caller; scopes must be names the upstream exposes (grantable or deprecated;
//! internal and unknown names are refused); `type: personal_access_token` is refused.

use chrono::{DateTime, Utc};
use provisioner_core::scope::{DEPRECATED_SCOPES, GRANTABLE_SCOPES};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::errors::{ApiError, hex32};
use crate::state::{KeyRecord, Page, State, rfc3339};

/// An app-specific key as the simulator stores it.
#[derive(Clone, PartialEq, Serialize)]
pub struct SimKey {
    /// The key id, which is also the secret used in `Authorization: Key <id>`.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// Free text.
    pub description: String,
    /// Scope names.
    pub scopes: Vec<String>,
    /// Endpoint scopes, echoed.
    pub endpoints: Vec<String>,
    /// The app(s) the key reaches (always one for keys created through the API).
    pub app_ids: Vec<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry, if one was set.
    pub expires_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for SimKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimKey")
            .field("id", &"<redacted>")
            .field("user_id", &self.user_id)
            .field("description", &self.description)
            .field("scopes", &self.scopes)
            .field("app_ids", &self.app_ids)
            .finish_non_exhaustive()
    }
}

impl SimKey {
    /// The proto-JSON form of the key.
    pub fn to_json(&self) -> Value {
        let apps: Vec<Value> = self
            .app_ids
            .iter()
            .map(|a| json!({"id": a, "user_id": self.user_id}))
            .collect();
        let mut key = json!({
            "id": self.id,
            "type": "app_specific_key",
            "description": self.description,
            "scopes": self.scopes,
            "apps": apps,
            "created_at": rfc3339(self.created_at),
        });
        if let Some(obj) = key.as_object_mut() {
            if !self.endpoints.is_empty() {
                obj.insert("endpoints".into(), json!(self.endpoints));
            }
            if let Some(t) = self.expires_at {
                obj.insert("expires_at".into(), json!(rfc3339(t)));
            }
        }
        key
    }

    fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

/// A key in a PostKeys body. Unknown fields (and a sent `id`) are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct KeyIn {
    #[serde(rename = "type")]
    kind: String,
    description: String,
    scopes: Vec<String>,
    endpoints: Vec<String>,
    apps: Vec<AppRef>,
    expires_at: Option<String>,
}

/// `{id, user_id}` of an app named in a key.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AppRef {
    id: String,
    user_id: String,
}

/// The description of a key minted with a new app (`--auto-app-key`).
pub const AUTO_KEY_DESCRIPTION: &str = "App-specific key created with the app";

/// Filters of ListKeys.
#[derive(Clone, Debug, Default)]
pub struct KeyFilter {
    /// `not_expired=true`.
    pub not_expired: bool,
    /// `type=personal_access_token` (PATs are not listed, so the answer is empty).
    pub only_pats: bool,
}

/// Whether the simulator accepts this scope name on a new key.
pub fn scope_accepted(scope: &str) -> bool {
    GRANTABLE_SCOPES.contains(&scope) || DEPRECATED_SCOPES.contains(&scope)
}

impl State {
    /// Creates keys, all or nothing.
    pub(crate) fn create_keys(
        &mut self,
        user_id: &str,
        keys: Vec<KeyIn>,
        now: DateTime<Utc>,
    ) -> Result<Vec<SimKey>, ApiError> {
        if keys.is_empty() {
            return Err(ApiError::invalid("at least one key is required"));
        }
        let mut checked = Vec::with_capacity(keys.len());
        for k in keys {
            checked.push(self.check_key(user_id, k, now)?);
        }
        for k in &checked {
            self.store_key(k.clone());
        }
        Ok(checked)
    }

    fn check_key(
        &mut self,
        user_id: &str,
        k: KeyIn,
        now: DateTime<Utc>,
    ) -> Result<SimKey, ApiError> {
        match k.kind.as_str() {
            "" | "app_specific_key" => {}
            "personal_access_token" => {
                return Err(ApiError::invalid(
                    "a personal access token cannot create PATs",
                ));
            }
            _ => return Err(ApiError::invalid("unknown key type")),
        }
        let [app] = k.apps.as_slice() else {
            return Err(ApiError::invalid(
                "API key can only give you access to a single app",
            ));
        };
        if !(app.user_id.is_empty() || app.user_id == "me" || app.user_id == user_id) {
            return Err(ApiError::not_found("app not found for this user"));
        }
        self.app(user_id, &app.id)?;
        if k.scopes.is_empty() {
            return Err(ApiError::invalid("at least one scope is required"));
        }
        if let Some(bad) = k.scopes.iter().find(|s| !scope_accepted(s)) {
            return Err(ApiError::invalid(format!("invalid scope '{bad}'")));
        }
        if k.endpoints
            .iter()
            .any(|e| !e.starts_with("/clarifai.api.V2/"))
        {
            return Err(ApiError::invalid("invalid endpoint scope"));
        }
        let expires_at = match k.expires_at.as_deref() {
            None | Some("") => None,
            Some(s) => Some(
                DateTime::parse_from_rfc3339(s)
                    .map_err(|_| ApiError::bad_format("expires_at must be an RFC 3339 time"))?
                    .with_timezone(&Utc),
            ),
        };
        Ok(SimKey {
            id: hex32(&mut self.ids),
            user_id: user_id.to_owned(),
            description: k.description,
            scopes: k.scopes,
            endpoints: k.endpoints,
            app_ids: vec![app.id.clone()],
            created_at: now,
            expires_at,
        })
    }

    /// The key the portal mints with a new app: every grantable scope, a description that is
    /// no marker of the provisioner's.
    pub(crate) fn mint_app_key(&mut self, user_id: &str, app_id: &str, now: DateTime<Utc>) {
        let id = hex32(&mut self.ids);
        self.store_key(SimKey {
            id,
            user_id: user_id.to_owned(),
            description: AUTO_KEY_DESCRIPTION.to_owned(),
            scopes: GRANTABLE_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            endpoints: Vec::new(),
            app_ids: vec![app_id.to_owned()],
            created_at: now,
            expires_at: None,
        });
    }

    /// Stores a key as is (the id must be fresh).
    pub(crate) fn store_key(&mut self, key: SimKey) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.keys.insert(key.id.clone(), KeyRecord { key, seq });
    }

    /// A key by its secret, whoever owns it.
    pub(crate) fn key_by_secret(&self, secret: &str) -> Option<&SimKey> {
        self.keys.get(secret).map(|r| &r.key)
    }

    /// One key of a user.
    pub(crate) fn key(&self, user_id: &str, key_id: &str) -> Result<&SimKey, ApiError> {
        self.key_by_secret(key_id)
            .filter(|k| k.user_id == user_id)
            .ok_or_else(|| ApiError::not_found("key not found"))
    }

    /// Keys of a user matching `keep`, in creation order.
    pub(crate) fn keys_where(&self, user_id: &str, keep: impl Fn(&SimKey) -> bool) -> Vec<SimKey> {
        let mut v: Vec<&KeyRecord> = self
            .keys
            .values()
            .filter(|r| r.key.user_id == user_id && keep(&r.key))
            .collect();
        v.sort_by_key(|r| r.seq);
        v.into_iter().map(|r| r.key.clone()).collect()
    }

    /// ListKeys.
    pub(crate) fn list_keys(&self, user_id: &str, filter: &KeyFilter, page: Page) -> Vec<SimKey> {
        if filter.only_pats {
            return Vec::new();
        }
        let now = Utc::now();
        page.slice(self.keys_where(user_id, |k| !(filter.not_expired && k.expired(now))))
    }

    /// ListAppKeys (the app must exist).
    pub(crate) fn list_app_keys(
        &self,
        user_id: &str,
        app_id: &str,
        page: Page,
    ) -> Result<Vec<SimKey>, ApiError> {
        self.app(user_id, app_id)?;
        Ok(page.slice(self.keys_where(user_id, |k| k.app_ids.iter().any(|a| a == app_id))))
    }

    /// DeleteKey.
    pub(crate) fn delete_key(&mut self, user_id: &str, key_id: &str) -> Result<(), ApiError> {
        self.key(user_id, key_id)?;
        self.keys.remove(key_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_in(app: &str, scopes: &[&str]) -> KeyIn {
        KeyIn {
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            apps: vec![AppRef {
                id: app.to_owned(),
                user_id: String::new(),
            }],
            ..KeyIn::default()
        }
    }

    fn state_with_app() -> State {
        let mut s = State::new(vec![]);
        let app: crate::state::AppIn =
            serde_json::from_value(json!({"id": "a1"})).expect("app json");
        s.create_apps("u", vec![app], Utc::now()).expect("app");
        s
    }

    #[test]
    fn scopes_are_checked() {
        let mut s = state_with_app();
        assert!(
            s.create_keys(
                "u",
                vec![key_in("a1", &["Predict", "Inputs:Patch"])],
                Utc::now()
            )
            .is_ok()
        );
        for bad in ["Concepts:Delete", "Nope", "predict"] {
            assert!(
                s.create_keys("u", vec![key_in("a1", &[bad])], Utc::now())
                    .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn key_needs_exactly_one_existing_own_app() {
        let mut s = state_with_app();
        let mut two = key_in("a1", &["Predict"]);
        two.apps.push(AppRef {
            id: "a1".into(),
            user_id: String::new(),
        });
        assert!(s.create_keys("u", vec![two], Utc::now()).is_err());
        assert!(
            s.create_keys("u", vec![key_in("zz", &["Predict"])], Utc::now())
                .is_err()
        );
        assert!(
            s.create_keys("other", vec![key_in("a1", &["Predict"])], Utc::now())
                .is_err()
        );
        assert!(s.keys.is_empty());
    }

    #[test]
    fn deleting_the_app_deletes_its_keys() {
        let mut s = state_with_app();
        let k = s
            .create_keys("u", vec![key_in("a1", &["Predict"])], Utc::now())
            .expect("key");
        assert_eq!(k[0].id.len(), 32);
        s.delete_app("u", "a1").expect("delete");
        assert!(s.key("u", &k[0].id).is_err());
    }
}
