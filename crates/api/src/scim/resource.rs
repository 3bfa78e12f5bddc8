//! The SCIM User resource on the wire (RFC 7643 §4.1): rendering a stored [`ScimUser`], reading
//! a POST or PUT body into [`ScimAttributes`], and the profile hint of a POST body.
//!
//! Only the attributes the service stores exist (the `/Schemas` document lists exactly these):
//! `userName`, `externalId`, `name.{givenName,familyName,formatted}`, `displayName`,
//! `emails[{value,type,primary}]` and `active`. Anything else an identity provider sends —
//! `password`, `roles`, `groups`, `locale`, `meta`, the enterprise extension — is ignored,
//! never stored and never logged. Attribute names are case-insensitive (RFC 7643 §2.1).
//! Rendering omits absent attributes (no `null`s, as Entra asks). An empty string is treated
//! as an unassigned attribute.

use provisioner_core::scim::{ScimAttributes, ScimEmail, ScimUser};
use serde_json::{Map, Value, json};

use super::error::ScimError;

/// URN of the core User schema.
pub const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

/// The path of a tenant's SCIM base (`/scim/v2/{tenant}`).
pub fn base_path(tenant: &str) -> String {
    format!("/scim/v2/{tenant}")
}

/// `meta.location` and the `Location` header of a user: a path under the tenant's base (an
/// absolute-path reference, like the `/v1` API's `Location`s; no `Host` header is trusted).
pub fn user_location(tenant: &str, id: &str) -> String {
    format!("{}/Users/{id}", base_path(tenant))
}

/// `path` without a leading `urn:ietf:params:scim:schemas:core:2.0:User:` (any case).
pub fn strip_core_urn(path: &str) -> &str {
    let n = USER_URN.len();
    match (path.get(..n), path.get(n..n + 1)) {
        (Some(head), Some(":")) if head.eq_ignore_ascii_case(USER_URN) => &path[n + 1..],
        _ => path,
    }
}

/// The SCIM User resource of a stored user.
pub fn render_user(u: &ScimUser) -> Value {
    let a = &u.attrs;
    let mut o = Map::new();
    o.insert("schemas".into(), json!([USER_URN]));
    o.insert("id".into(), json!(u.id));
    if let Some(v) = &a.external_id {
        o.insert("externalId".into(), json!(v));
    }
    o.insert("userName".into(), json!(a.user_name));
    let mut name = Map::new();
    for (key, v) in [
        ("givenName", &a.given_name),
        ("familyName", &a.family_name),
        ("formatted", &a.formatted_name),
    ] {
        if let Some(v) = v {
            name.insert(key.into(), json!(v));
        }
    }
    if !name.is_empty() {
        o.insert("name".into(), Value::Object(name));
    }
    if let Some(v) = &a.display_name {
        o.insert("displayName".into(), json!(v));
    }
    if !a.emails.is_empty() {
        let emails: Vec<Value> = a.emails.iter().map(render_email).collect();
        o.insert("emails".into(), Value::Array(emails));
    }
    o.insert("active".into(), json!(a.active));
    o.insert(
        "meta".into(),
        json!({
            "resourceType": "User",
            "created": rfc3339(&u.created_at),
            "lastModified": rfc3339(&u.updated_at),
            "location": user_location(u.tenant_id.as_str(), &u.id),
            "version": u.etag(),
        }),
    );
    Value::Object(o)
}

fn render_email(e: &ScimEmail) -> Value {
    let mut o = Map::new();
    o.insert("value".into(), json!(e.value));
    if let Some(k) = &e.kind {
        o.insert("type".into(), json!(k));
    }
    o.insert("primary".into(), json!(e.primary));
    Value::Object(o)
}

/// RFC 3339 with second precision (`2026-11-26T10:00:00Z`), as `xsd:dateTime` allows.
pub fn rfc3339(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The value of `key` in `o`, matching the name case-insensitively.
pub fn get_ci<'a>(o: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    o.get(key).or_else(|| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// An optional string attribute: absent, `null` and `""` are unassigned; another type is 400.
pub fn opt_string(v: Option<&Value>, name: &str) -> Result<Option<String>, ScimError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ScimError::invalid_value(format!("{name} must be a string"))),
    }
}

/// `userName`: a non-empty string.
pub fn user_name(v: Option<&Value>) -> Result<String, ScimError> {
    match v {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            Err(ScimError::invalid_value("userName is required"))
        }
        Some(_) => Err(ScimError::invalid_value("userName must be a string")),
    }
}

/// A boolean the identity providers may send as a string: `true`/`false`, or `"True"`,
/// `"false"`, ... in any case (Entra's default PATCH dialect). Anything else is 400.
pub fn boolean(v: &Value, name: &str) -> Result<bool, ScimError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(ScimError::invalid_value(format!(
            "{name} must be true or false"
        ))),
    }
}

/// One element of `emails`: an object with a string `value`; `None` when the value is empty.
pub fn email(v: &Value) -> Result<Option<ScimEmail>, ScimError> {
    let Value::Object(o) = v else {
        return Err(ScimError::invalid_value(
            "each element of emails must be an object with a value",
        ));
    };
    let Some(value) = opt_string(get_ci(o, "value"), "emails.value")? else {
        return Ok(None);
    };
    let kind = opt_string(get_ci(o, "type"), "emails.type")?;
    let primary = match get_ci(o, "primary") {
        None | Some(Value::Null) => false,
        Some(p) => boolean(p, "emails.primary")?,
    };
    Ok(Some(ScimEmail {
        value,
        kind,
        primary,
    }))
}

/// The `emails` attribute: an array of email objects (or `null`: none).
pub fn emails(v: Option<&Value>) -> Result<Vec<ScimEmail>, ScimError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for item in items {
                out.extend(email(item)?);
            }
            Ok(out)
        }
        Some(_) => Err(ScimError::invalid_value("emails must be an array")),
    }
}

/// Reads a POST body (`current: None`) or a PUT body (`current`: the stored attributes) into
/// the attributes to store. A PUT replaces every attribute (an omitted one is cleared, RFC 7644
/// §3.5.1) except `active`, which an omission leaves unchanged (a PUT without it is not a
/// deactivation); a POST without `active` creates an active user.
pub fn parse_user(
    body: &Value,
    current: Option<&ScimAttributes>,
) -> Result<ScimAttributes, ScimError> {
    let Value::Object(o) = body else {
        return Err(ScimError::invalid_syntax("the body must be a JSON object"));
    };
    let (given_name, family_name, formatted_name) = match get_ci(o, "name") {
        None | Some(Value::Null) => (None, None, None),
        Some(Value::Object(n)) => (
            opt_string(get_ci(n, "givenName"), "name.givenName")?,
            opt_string(get_ci(n, "familyName"), "name.familyName")?,
            opt_string(get_ci(n, "formatted"), "name.formatted")?,
        ),
        Some(_) => return Err(ScimError::invalid_value("name must be an object")),
    };
    let active = match get_ci(o, "active") {
        None | Some(Value::Null) => current.is_none_or(|c| c.active),
        Some(v) => boolean(v, "active")?,
    };
    Ok(ScimAttributes {
        user_name: user_name(get_ci(o, "userName"))?,
        external_id: opt_string(get_ci(o, "externalId"), "externalId")?,
        given_name,
        family_name,
        formatted_name,
        display_name: opt_string(get_ci(o, "displayName"), "displayName")?,
        emails: emails(get_ci(o, "emails"))?,
        active,
    })
}

/// The value of the tenant's `profile_attribute` in a POST body, if it holds a non-empty
/// string: a core attribute (`userType`, `title`, also URN-qualified, or dotted into a complex
/// one) or an extension attribute given with its schema URN
/// (`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`).
pub fn profile_hint(body: &Value, attribute: &str) -> Option<String> {
    let Value::Object(o) = body else {
        return None;
    };
    let (scope, path) = if attribute
        .get(..4)
        .is_some_and(|h| h.eq_ignore_ascii_case("urn:"))
    {
        let core = strip_core_urn(attribute);
        if core.len() != attribute.len() {
            (o, core)
        } else {
            // `<schema urn>:<attribute>`: the schema's object holds the attribute.
            let (urn, attr) = attribute.rsplit_once(':')?;
            match get_ci(o, urn)? {
                Value::Object(ext) => (ext, attr),
                _ => return None,
            }
        }
    } else {
        (o, attribute)
    };
    let mut parts = path.split('.');
    let mut v = get_ci(scope, parts.next()?)?;
    for part in parts {
        v = match v {
            Value::Object(inner) => get_ci(inner, part)?,
            _ => return None,
        };
    }
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use provisioner_core::ids::{ExternalId, TenantId};

    use super::*;

    fn stored(attrs: ScimAttributes) -> ScimUser {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-26T10:00:00.123Z")
            .unwrap()
            .to_utc();
        ScimUser {
            id: "0193-abc".into(),
            tenant_id: TenantId::parse("acme").unwrap(),
            external_id: ExternalId::parse("ann").unwrap(),
            attrs,
            profile: None,
            deleted: false,
            version: 3,
            synced_version: 3,
            sync_error: None,
            sync_attempts: 0,
            next_sync_at: None,
            created_at: t,
            updated_at: t,
        }
    }

    fn okta_post() -> Value {
        json!({
            "schemas": [USER_URN],
            "userName": "ann@example.com",
            "name": {"givenName": "Ann", "familyName": "Lee"},
            "emails": [{"primary": true, "value": "ann@example.com", "type": "work"}],
            "displayName": "Ann Lee",
            "locale": "en-US",
            "externalId": "00u1",
            "groups": [],
            "password": "hunter2-secret",
            "active": true
        })
    }

    #[test]
    fn an_okta_post_keeps_the_stored_attributes_and_drops_the_password() {
        let a = parse_user(&okta_post(), None).unwrap();
        assert_eq!(a.user_name, "ann@example.com");
        assert_eq!(a.given_name.as_deref(), Some("Ann"));
        assert_eq!(a.family_name.as_deref(), Some("Lee"));
        assert_eq!(a.external_id.as_deref(), Some("00u1"));
        assert_eq!(a.emails[0].kind.as_deref(), Some("work"));
        assert!(a.emails[0].primary && a.active);
        assert!(!format!("{a:?}").contains("hunter2"));
    }

    #[test]
    fn an_entra_post_with_the_enterprise_extension_and_roles_parses() {
        let body = json!({
            "schemas": [USER_URN, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "externalId": "ann", "userName": "Ann@contoso.com", "active": "True",
            "emails": [{"primary": true, "type": "work", "value": "Ann@contoso.com"}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": "Ann Lee", "familyName": "Lee", "givenName": "Ann"},
            "roles": [],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "ml"}
        });
        let a = parse_user(&body, None).unwrap();
        assert_eq!(a.formatted_name.as_deref(), Some("Ann Lee"));
        assert!(a.active);
    }

    #[test]
    fn attribute_names_are_case_insensitive() {
        let a = parse_user(
            &json!({"USERNAME": "ann", "Name": {"GIVENNAME": "Ann"}, "Active": false}),
            None,
        )
        .unwrap();
        assert_eq!(a.user_name, "ann");
        assert_eq!(a.given_name.as_deref(), Some("Ann"));
        assert!(!a.active);
    }

    #[test]
    fn user_name_is_required_and_active_must_be_a_boolean() {
        for body in [
            json!({}),
            json!({"userName": ""}),
            json!({"userName": 5}),
            json!({"userName": null}),
        ] {
            let e = parse_user(&body, None).unwrap_err();
            assert_eq!(
                (e.status().as_u16(), e.body()["scimType"].as_str()),
                (400, Some("invalidValue"))
            );
        }
        for active in [json!("yes"), json!(1), json!([])] {
            let e = parse_user(&json!({"userName": "a", "active": active}), None).unwrap_err();
            assert_eq!(e.body()["scimType"], "invalidValue");
        }
        for (active, want) in [
            (json!("TRUE"), true),
            (json!("False"), false),
            (json!(false), false),
        ] {
            assert_eq!(
                parse_user(&json!({"userName": "a", "active": active}), None)
                    .unwrap()
                    .active,
                want
            );
        }
        assert!(parse_user(&json!([]), None).is_err());
    }

    #[test]
    fn an_absent_active_is_true_on_post_and_unchanged_on_put() {
        assert!(parse_user(&json!({"userName": "a"}), None).unwrap().active);
        let current = ScimAttributes {
            user_name: "a".into(),
            display_name: Some("A".into()),
            active: false,
            ..Default::default()
        };
        let a = parse_user(&json!({"userName": "a"}), Some(&current)).unwrap();
        assert!(!a.active, "a PUT without active keeps it");
        assert_eq!(a.display_name, None, "a PUT clears what it omits");
    }

    #[test]
    fn a_user_renders_without_nulls_and_with_meta() {
        let u = stored(ScimAttributes {
            user_name: "ann".into(),
            given_name: Some("Ann".into()),
            emails: vec![ScimEmail {
                value: "a@b.c".into(),
                kind: None,
                primary: false,
            }],
            active: true,
            ..Default::default()
        });
        let r = render_user(&u);
        assert_eq!(r["schemas"], json!([USER_URN]));
        assert_eq!(r["id"], "0193-abc");
        assert_eq!(r["name"], json!({"givenName": "Ann"}));
        assert_eq!(r["emails"], json!([{"value": "a@b.c", "primary": false}]));
        assert!(r.get("externalId").is_none() && r.get("displayName").is_none());
        assert_eq!(r["meta"]["resourceType"], "User");
        assert_eq!(r["meta"]["created"], "2026-11-26T10:00:00Z");
        assert_eq!(r["meta"]["location"], "/scim/v2/acme/Users/0193-abc");
        assert_eq!(r["meta"]["version"], "W/\"3\"");
        assert!(!r.to_string().contains("null"));
        let bare = render_user(&stored(ScimAttributes {
            user_name: "b".into(),
            ..Default::default()
        }));
        assert!(bare.get("name").is_none() && bare.get("emails").is_none());
        assert_eq!(bare["active"], false);
    }

    #[test]
    fn the_profile_hint_reads_core_dotted_and_extension_attributes() {
        let body = json!({
            "userName": "a", "userType": "annotator", "title": " ", "name": {"givenName": "Ann"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"Department": "standard"}
        });
        assert_eq!(
            profile_hint(&body, "usertype").as_deref(),
            Some("annotator")
        );
        assert_eq!(
            profile_hint(&body, "urn:ietf:params:scim:schemas:core:2.0:User:userType").as_deref(),
            Some("annotator")
        );
        assert_eq!(
            profile_hint(&body, "name.givenName").as_deref(),
            Some("Ann")
        );
        assert_eq!(
            profile_hint(
                &body,
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"
            )
            .as_deref(),
            Some("standard")
        );
        assert_eq!(profile_hint(&body, "title"), None, "blank");
        assert_eq!(profile_hint(&body, "costCenter"), None);
        assert_eq!(profile_hint(&body, "urn:x:y:department"), None);
    }

    #[test]
    fn the_core_urn_prefix_is_stripped_in_any_case() {
        assert_eq!(
            strip_core_urn("urn:ietf:params:scim:schemas:core:2.0:User:name.givenName"),
            "name.givenName"
        );
        assert_eq!(
            strip_core_urn("URN:IETF:params:scim:schemas:core:2.0:user:active"),
            "active"
        );
        assert_eq!(
            strip_core_urn("urn:ietf:params:scim:schemas:core:2.0:User"),
            "urn:ietf:params:scim:schemas:core:2.0:User"
        );
        assert_eq!(strip_core_urn("userName"), "userName");
        assert_eq!(strip_core_urn("ü"), "ü");
    }
}
