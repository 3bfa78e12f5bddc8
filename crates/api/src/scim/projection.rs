//! The `attributes` and `excludedAttributes` query parameters (RFC 7644 §3.4.2.5): a partial
//! rendering of a resource.
//!
//! Each is a comma-separated list of attribute paths: `userName`, `name.givenName`,
//! `emails.value`, optionally prefixed with the core User URN; names are case-insensitive.
//! `schemas` and `id` (`returned: always`) are kept whatever is asked. A name the resource does
//! not have is ignored. Given both, `attributes` wins (the RFC makes them mutually exclusive;
//! answering something is kinder than a 400 to an identity provider).

use serde_json::{Map, Value};

use super::resource::strip_core_urn;

/// Attributes every projection keeps.
const ALWAYS: [&str; 2] = ["schemas", "id"];

/// What a request asks to see of each resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Projection {
    /// The default set (everything).
    #[default]
    All,
    /// Only these paths (plus `schemas` and `id`).
    Only(Vec<Vec<String>>),
    /// All but these paths (never `schemas` or `id`).
    Except(Vec<Vec<String>>),
}

/// Splits a comma-separated list into lower-cased paths (each a list of segments).
fn paths(list: &str) -> Vec<Vec<String>> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            strip_core_urn(p)
                .split('.')
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .collect()
}

impl Projection {
    /// From the two query parameters.
    pub fn new(attributes: Option<&str>, excluded: Option<&str>) -> Self {
        match (attributes.map(paths), excluded.map(paths)) {
            (Some(p), _) if !p.is_empty() => Projection::Only(p),
            (_, Some(p)) if !p.is_empty() => Projection::Except(p),
            _ => Projection::All,
        }
    }

    /// Applies the projection to a rendered resource.
    pub fn apply(&self, resource: Value) -> Value {
        let Value::Object(o) = resource else {
            return resource;
        };
        Value::Object(match self {
            Projection::All => o,
            Projection::Only(p) => only(o, p, true),
            Projection::Except(p) => except(o, p, true),
        })
    }
}

/// The members of `o` named by `paths` (their sub-attributes when a path goes deeper).
fn only(o: Map<String, Value>, paths: &[Vec<String>], top: bool) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in o {
        let lower = key.to_ascii_lowercase();
        if top && ALWAYS.contains(&lower.as_str()) {
            out.insert(key, value);
            continue;
        }
        let mine: Vec<&Vec<String>> = paths.iter().filter(|p| p[0] == lower).collect();
        if mine.is_empty() {
            continue;
        }
        if mine.iter().any(|p| p.len() == 1) {
            out.insert(key, value);
            continue;
        }
        let rest: Vec<Vec<String>> = mine.iter().map(|p| p[1..].to_vec()).collect();
        if let Some(v) = map_complex(value, |inner| only(inner, &rest, false)) {
            out.insert(key, v);
        }
    }
    out
}

/// `o` without the members named by `paths` (or without their sub-attributes).
fn except(o: Map<String, Value>, paths: &[Vec<String>], top: bool) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in o {
        let lower = key.to_ascii_lowercase();
        if top && ALWAYS.contains(&lower.as_str()) {
            out.insert(key, value);
            continue;
        }
        let mine: Vec<&Vec<String>> = paths.iter().filter(|p| p[0] == lower).collect();
        if mine.iter().any(|p| p.len() == 1) {
            continue;
        }
        if mine.is_empty() {
            out.insert(key, value);
            continue;
        }
        let rest: Vec<Vec<String>> = mine.iter().map(|p| p[1..].to_vec()).collect();
        if let Some(v) = map_complex(value, |inner| except(inner, &rest, false)) {
            out.insert(key, v);
        }
    }
    out
}

/// Applies `f` to a complex value, or to each complex element of a multi-valued one; `None`
/// when nothing is left.
fn map_complex(
    value: Value,
    f: impl Fn(Map<String, Value>) -> Map<String, Value>,
) -> Option<Value> {
    match value {
        Value::Object(inner) => {
            let m = f(inner);
            (!m.is_empty()).then_some(Value::Object(m))
        }
        Value::Array(items) => {
            let items: Vec<Value> = items
                .into_iter()
                .filter_map(|i| match i {
                    Value::Object(inner) => {
                        let m = f(inner);
                        (!m.is_empty()).then_some(Value::Object(m))
                    }
                    _ => None,
                })
                .collect();
            (!items.is_empty()).then_some(Value::Array(items))
        }
        // A simple attribute has no sub-attributes to pick.
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn user() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": "1", "userName": "ann", "displayName": "Ann",
            "name": {"givenName": "Ann", "familyName": "Lee"},
            "emails": [{"value": "a@b.c", "type": "work", "primary": true}],
            "active": true,
            "meta": {"resourceType": "User"}
        })
    }

    #[test]
    fn attributes_keep_only_the_named_ones_and_always_id_and_schemas() {
        let p = Projection::new(Some("userName, name.givenName,EMAILS.value"), None);
        assert_eq!(
            p.apply(user()),
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "1",
                "userName": "ann", "name": {"givenName": "Ann"}, "emails": [{"value": "a@b.c"}]
            })
        );
        let p = Projection::new(
            Some("urn:ietf:params:scim:schemas:core:2.0:User:displayName"),
            None,
        );
        assert_eq!(
            p.apply(user()),
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "1", "displayName": "Ann"
            })
        );
    }

    #[test]
    fn excluded_attributes_drop_the_named_ones_but_never_id() {
        let p = Projection::new(
            None,
            Some("displayName,name.familyName,id,emails.primary,nothing"),
        );
        let r = p.apply(user());
        assert!(r.get("displayName").is_none());
        assert_eq!(r["id"], "1");
        assert_eq!(r["name"], json!({"givenName": "Ann"}));
        assert_eq!(r["emails"], json!([{"value": "a@b.c", "type": "work"}]));
        assert_eq!(r["userName"], "ann");
    }

    #[test]
    fn empty_lists_mean_the_default_set() {
        assert_eq!(Projection::new(Some(""), Some(" , ")), Projection::All);
        assert_eq!(Projection::All.apply(user()), user());
    }
}
