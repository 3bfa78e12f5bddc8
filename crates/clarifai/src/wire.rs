//! Private serde shapes of the requests and answers, named as in the proto (snake_case).
//! Requests borrow and hold only fields the API defines; answers ignore unknown fields.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Body of PostApps: exactly one app.
#[derive(Serialize)]
pub(crate) struct PostApps<'a> {
    pub apps: [NewAppWire<'a>; 1],
}

#[derive(Serialize)]
pub(crate) struct NewAppWire<'a> {
    pub id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub description: &'a str,
    pub default_workflow: WorkflowRef<'a>,
    #[serde(skip_serializing_if = "Value::is_null")]
    pub metadata: &'a Value,
    pub visibility: Visibility,
}

#[derive(Serialize)]
pub(crate) struct WorkflowRef<'a> {
    pub id: &'a str,
    pub app_id: &'a str,
    pub user_id: &'a str,
}

#[derive(Serialize)]
pub(crate) struct Visibility {
    pub gettable: &'static str,
}

/// Body of PostKeys: exactly one key, never with `id` or `type`.
#[derive(Serialize)]
pub(crate) struct PostKeys<'a> {
    pub keys: [NewKeyWire<'a>; 1],
}

#[derive(Serialize)]
pub(crate) struct NewKeyWire<'a> {
    pub description: &'a str,
    pub scopes: &'a [String],
    pub apps: [AppRef<'a>; 1],
}

#[derive(Serialize)]
pub(crate) struct AppRef<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
}

/// MultiAppResponse (PostApps, ListApps).
#[derive(Deserialize)]
pub(crate) struct MultiApp {
    #[serde(default)]
    pub apps: Vec<AppWire>,
}

/// SingleAppResponse (GetApp).
#[derive(Deserialize)]
pub(crate) struct SingleApp {
    pub app: AppWire,
}

#[derive(Deserialize)]
pub(crate) struct AppWire {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<Value>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
}

/// MultiKeyResponse (PostKeys, ListKeys, ListAppKeys).
#[derive(Deserialize)]
pub(crate) struct MultiKey {
    #[serde(default)]
    pub keys: Vec<KeyWire>,
}

/// SingleKeyResponse (GetKey).
#[derive(Deserialize)]
pub(crate) struct SingleKey {
    pub key: KeyWire,
}

#[derive(Deserialize)]
pub(crate) struct KeyWire {
    pub id: String,
    #[serde(default, rename = "type")]
    pub key_type: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub apps: Vec<KeyAppWire>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct KeyAppWire {
    #[serde(default)]
    pub id: String,
}

/// MultiScopeResponse / MyScopesUser.
#[derive(Deserialize)]
pub(crate) struct MyScopes {
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// BaseResponse: only the status, which the decoder has checked already.
#[derive(Deserialize)]
pub(crate) struct Base {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_hold_only_defined_fields() {
        let meta = serde_json::json!({"tenant": "acme"});
        let app = PostApps {
            apps: [NewAppWire {
                id: "t-acme-u-1",
                description: "d",
                default_workflow: WorkflowRef {
                    id: "Empty",
                    app_id: "main",
                    user_id: "clarifai",
                },
                metadata: &meta,
                visibility: Visibility {
                    gettable: "PRIVATE",
                },
            }],
        };
        assert_eq!(
            serde_json::to_value(&app).unwrap(),
            serde_json::json!({"apps":[{"id":"t-acme-u-1","description":"d",
                "default_workflow":{"id":"Empty","app_id":"main","user_id":"clarifai"},
                "metadata":{"tenant":"acme"},"visibility":{"gettable":"PRIVATE"}}]})
        );
        let scopes = vec!["Predict".to_owned()];
        let key = PostKeys {
            keys: [NewKeyWire {
                description: "m",
                scopes: &scopes,
                apps: [AppRef {
                    id: "a",
                    user_id: "u",
                }],
            }],
        };
        assert_eq!(
            serde_json::to_value(&key).unwrap(),
            serde_json::json!({"keys":[{"description":"m","scopes":["Predict"],"apps":[{"id":"a","user_id":"u"}]}]})
        );
    }
}
