//! The simulated upstream data: accounts, apps and app-specific keys, and the app rules.
//!
//! Everything here is synchronous and fast; callers hold the state mutex only for one call.
//! Key operations live in [`crate::keys`].

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::config::Account;
use crate::errors::ApiError;

/// Longest app id the docs allow.
pub const MAX_APP_ID_LEN: usize = 32;

/// An app as the simulator stores it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimApp {
    /// App id, unique within its owner.
    pub id: String,
    /// Display name (defaults to the id).
    pub name: String,
    /// Owner.
    pub user_id: String,
    /// Free text.
    pub description: String,
    /// Arbitrary JSON object (`Value::Null` when none was given).
    pub metadata: Value,
    /// Base workflow, echoed as given (`Universal` from `clarifai/main` by default).
    pub default_workflow: Value,
    /// `{"gettable": 10|30|50}`.
    pub visibility: Value,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub modified_at: DateTime<Utc>,
}

impl SimApp {
    /// The proto-JSON form of the app.
    pub fn to_json(&self) -> Value {
        let mut app = json!({
            "id": self.id,
            "name": self.name,
            "user_id": self.user_id,
            "default_workflow": self.default_workflow,
            "visibility": self.visibility,
            "created_at": rfc3339(self.created_at),
            "modified_at": rfc3339(self.modified_at),
        });
        if let Some(obj) = app.as_object_mut() {
            if let Some(wf) = self.default_workflow.get("id").and_then(Value::as_str) {
                obj.insert("default_workflow_id".into(), json!(wf));
            }
            if !self.description.is_empty() {
                obj.insert("description".into(), json!(self.description));
            }
            if self.metadata.as_object().is_some_and(|m| !m.is_empty()) {
                obj.insert("metadata".into(), self.metadata.clone());
            }
        }
        app
    }
}

/// An app in a PostApps body. Unknown fields are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AppIn {
    id: String,
    name: String,
    description: String,
    metadata: Option<Value>,
    default_workflow: Option<Value>,
    default_workflow_id: String,
    visibility: Option<Value>,
}

/// One page of a listing: `page` from 1, `per_page` in `1..=1000`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    /// 1-based page number.
    pub page: usize,
    /// Items per page.
    pub per_page: usize,
}

impl Page {
    /// Default items per page.
    pub const DEFAULT_PER_PAGE: usize = 128;
    /// Largest page; larger requests are clamped (upstream behaviour unconfirmed).
    pub const MAX_PER_PAGE: usize = 1000;

    /// A page from raw query values: 0 or absent means the default.
    pub fn new(page: usize, per_page: usize) -> Self {
        let per_page = match per_page {
            0 => Self::DEFAULT_PER_PAGE,
            n => n.min(Self::MAX_PER_PAGE),
        };
        Self {
            page: page.max(1),
            per_page,
        }
    }

    /// The items of this page.
    pub fn slice<T>(&self, items: impl IntoIterator<Item = T>) -> Vec<T> {
        let skip = (self.page - 1).saturating_mul(self.per_page);
        items.into_iter().skip(skip).take(self.per_page).collect()
    }
}

impl Default for Page {
    fn default() -> Self {
        Self::new(1, 0)
    }
}

/// A stored key with its creation order.
#[derive(Clone, Debug)]
pub(crate) struct KeyRecord {
    pub(crate) key: crate::keys::SimKey,
    pub(crate) seq: u64,
}

/// All upstream data of one simulator.
pub(crate) struct State {
    pub(crate) accounts: HashMap<String, Account>,
    pub(crate) apps: BTreeMap<String, BTreeMap<String, SimApp>>,
    pub(crate) keys: HashMap<String, KeyRecord>,
    pub(crate) next_seq: u64,
    pub(crate) ids: fastrand::Rng,
    /// Whether a new app gets a key of its own (see [`crate::SimConfig::auto_app_key`]).
    pub(crate) auto_app_key: bool,
}

impl State {
    /// Empty state with these accounts.
    pub(crate) fn new(accounts: Vec<Account>) -> Self {
        let mut state = Self {
            accounts: HashMap::new(),
            apps: BTreeMap::new(),
            keys: HashMap::new(),
            next_seq: 0,
            ids: fastrand::Rng::new(),
            auto_app_key: false,
        };
        for a in accounts {
            state.add_account(a);
        }
        state
    }

    /// Adds or replaces an account (by PAT).
    pub(crate) fn add_account(&mut self, account: Account) {
        self.accounts.insert(account.pat.clone(), account);
    }

    /// The account whose PAT this is.
    /// Revokes a PAT: later requests with it are refused as unknown (11009).
    pub(crate) fn revoke_pat(&mut self, pat: &str) -> bool {
        self.accounts.remove(pat).is_some()
    }

    pub(crate) fn account_by_pat(&self, pat: &str) -> Option<&Account> {
        self.accounts.get(pat)
    }

    /// Creates apps, all or nothing.
    pub(crate) fn create_apps(
        &mut self,
        user_id: &str,
        apps: Vec<AppIn>,
        now: DateTime<Utc>,
    ) -> Result<Vec<SimApp>, ApiError> {
        if apps.is_empty() {
            return Err(ApiError::invalid("at least one app is required"));
        }
        let mut created: Vec<SimApp> = Vec::with_capacity(apps.len());
        for app in apps {
            let new = self.new_app(user_id, app, now)?;
            let exists = self
                .apps
                .get(user_id)
                .is_some_and(|m| m.contains_key(&new.id));
            if exists || created.iter().any(|a| a.id == new.id) {
                return Err(ApiError::duplicate(format!(
                    "app '{}' already exists",
                    new.id
                )));
            }
            created.push(new);
        }
        let owned = self.apps.entry(user_id.to_owned()).or_default();
        for app in &created {
            owned.insert(app.id.clone(), app.clone());
        }
        if self.auto_app_key {
            for app in &created {
                self.mint_app_key(user_id, &app.id, now);
            }
        }
        Ok(created)
    }

    fn new_app(
        &mut self,
        user_id: &str,
        app: AppIn,
        now: DateTime<Utc>,
    ) -> Result<SimApp, ApiError> {
        let id = if app.id.is_empty() {
            crate::errors::hex32(&mut self.ids)
        } else {
            validate_app_id(&app.id)?;
            app.id
        };
        let metadata = match app.metadata {
            None | Some(Value::Null) => Value::Null,
            Some(Value::Object(m)) => Value::Object(m),
            Some(_) => return Err(ApiError::bad_format("metadata must be a JSON object")),
        };
        let default_workflow = match app.default_workflow {
            Some(Value::Object(w)) => Value::Object(w),
            _ if !app.default_workflow_id.is_empty() => {
                json!({"id": app.default_workflow_id, "app_id": "main", "user_id": "clarifai"})
            }
            _ => json!({"id": "Universal", "app_id": "main", "user_id": "clarifai"}),
        };
        Ok(SimApp {
            name: if app.name.is_empty() {
                id.clone()
            } else {
                app.name
            },
            id,
            user_id: user_id.to_owned(),
            description: app.description,
            metadata,
            default_workflow,
            visibility: visibility(app.visibility)?,
            created_at: now,
            modified_at: now,
        })
    }

    /// One app of a user.
    pub(crate) fn app(&self, user_id: &str, app_id: &str) -> Result<&SimApp, ApiError> {
        self.apps
            .get(user_id)
            .and_then(|m| m.get(app_id))
            .ok_or_else(|| ApiError::not_found(format!("app '{app_id}' not found")))
    }

    /// A user's apps, ordered by id.
    pub(crate) fn list_apps(&self, user_id: &str, page: Page) -> Vec<SimApp> {
        self.apps
            .get(user_id)
            .map(|m| page.slice(m.values().cloned()))
            .unwrap_or_default()
    }

    /// Deletes an app and its keys.
    pub(crate) fn delete_app(&mut self, user_id: &str, app_id: &str) -> Result<(), ApiError> {
        let removed = self.apps.get_mut(user_id).and_then(|m| m.remove(app_id));
        if removed.is_none() {
            return Err(ApiError::not_found(format!("app '{app_id}' not found")));
        }
        self.keys.retain(|_, r| {
            !(r.key.user_id == user_id && r.key.app_ids.iter().any(|a| a == app_id))
        });
        Ok(())
    }

    /// Every user id with an account or with apps, sorted.
    pub(crate) fn user_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.accounts.values().map(|a| a.user_id.clone()).collect();
        ids.extend(self.apps.keys().cloned());
        ids.sort();
        ids.dedup();
        ids
    }
}

/// Checks an app id against `^[A-Za-z0-9]+([-_][A-Za-z0-9]+)*$` and the 32-character limit.
pub fn validate_app_id(id: &str) -> Result<(), ApiError> {
    let invalid = || {
        ApiError::invalid(
            "invalid app id: use 1-32 letters and digits, with '-' or '_' between them",
        )
    };
    if id.is_empty() || id.len() > MAX_APP_ID_LEN {
        return Err(invalid());
    }
    let mut prev_sep = true; // the first character may not be a separator
    for c in id.chars() {
        let sep = c == '-' || c == '_';
        if !(c.is_ascii_alphanumeric() || sep) || (sep && prev_sep) {
            return Err(invalid());
        }
        prev_sep = sep;
    }
    if prev_sep { Err(invalid()) } else { Ok(()) }
}

/// Normalises `visibility` to `{"gettable": <number>}` (names accepted, private by default).
fn visibility(v: Option<Value>) -> Result<Value, ApiError> {
    let gettable = v.as_ref().and_then(|v| v.get("gettable"));
    let n = match gettable {
        None | Some(Value::Null) => 10,
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(s)) => match s.as_str() {
            "PRIVATE" => 10,
            "ORG" => 30,
            "PUBLIC" => 50,
            _ => 0,
        },
        Some(_) => 0,
    };
    if matches!(n, 10 | 30 | 50) {
        Ok(json!({ "gettable": n }))
    } else {
        Err(ApiError::invalid(
            "visibility.gettable must be PRIVATE, ORG or PUBLIC",
        ))
    }
}

/// RFC 3339 with microseconds and `Z`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `{"apps": [...]}`-style map entry helper.
pub(crate) fn field(name: &str, value: Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(name.to_owned(), value);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_in(id: &str) -> AppIn {
        AppIn {
            id: id.to_owned(),
            ..AppIn::default()
        }
    }

    #[test]
    fn app_id_rule_accepts_and_refuses() {
        for ok in ["a", "abc-def_1", "A1", &"x".repeat(32)] {
            assert!(validate_app_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a--b",
            "a b",
            "a.b",
            "é",
            &"x".repeat(33),
            "a-_b",
        ] {
            assert!(validate_app_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn duplicate_in_one_request_creates_nothing() {
        let mut s = State::new(vec![]);
        let err = s
            .create_apps("u", vec![app_in("a"), app_in("a")], Utc::now())
            .expect_err("duplicate");
        assert_eq!(err.code, crate::errors::Code::Number(40010));
        assert!(s.list_apps("u", Page::default()).is_empty());
    }

    #[test]
    fn page_clamps_and_defaults() {
        assert_eq!(
            Page::new(0, 0),
            Page {
                page: 1,
                per_page: 128
            }
        );
        assert_eq!(Page::new(2, 5000).per_page, 1000);
        assert_eq!(Page::new(2, 2).slice(1..=5), vec![3, 4]);
        assert!(Page::new(9, 2).slice(1..=5).is_empty());
    }

    #[test]
    fn name_defaults_to_id_and_workflow_to_universal() {
        let mut s = State::new(vec![]);
        let apps = s
            .create_apps("u", vec![app_in("a1")], Utc::now())
            .expect("create");
        assert_eq!(apps[0].name, "a1");
        assert_eq!(apps[0].default_workflow["id"], "Universal");
        assert_eq!(apps[0].visibility, json!({"gettable": 10}));
    }
}
