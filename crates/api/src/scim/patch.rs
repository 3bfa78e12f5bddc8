//! The PATCH engine (RFC 7644 §3.5.2): applies a PatchOp message to a user's attributes.
//!
//! One engine absorbs every dialect the identity providers speak (docs: scim.md §3):
//! - `op` in any case (`replace`, Entra's default `Replace`);
//! - `active` as a boolean or the strings `"True"`/`"False"` in any case;
//! - a `path` naming an attribute (`active`, `userName`, `externalId`, `displayName`), a
//!   complex one or its sub-attribute (`name`, `name.givenName`), the multi-valued `emails`
//!   with an optional filter and sub-attribute (`emails[type eq "work"].value`), each also
//!   prefixed with the core User URN;
//! - no `path` on `add`/`replace` (Okta, and Entra with its compliance flag): the value is an
//!   object whose keys are plain, dotted (`name.givenName`) or URN-qualified paths, each
//!   applied as if it were the operation's path.
//!
//! Attributes the service does not store (`password`, `roles`, `addresses`, enterprise
//! extension paths, sub-attributes like `name.middleName`) are ignored, so a whole provisioning
//! cycle does not fail on one of them. Errors: a malformed message is `invalidSyntax`, a
//! malformed path `invalidPath`, `remove` without a path `noTarget`, removing `userName` or
//! `active` (required) `mutability`, a wrong value `invalidValue`.
//!
//! The engine is pure: core re-runs it on the fresh record when a concurrent write intervened.

use provisioner_core::scim::{ScimAttributes, ScimEmail};
use serde_json::{Map, Value};

use super::error::{ScimError, ScimType};
use super::filter::{Token, tokenize};
use super::resource::{
    USER_URN, boolean, email, emails, get_ci, opt_string, strip_core_urn, user_name,
};

/// URN of the PATCH message schema.
pub const PATCH_OP_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Most operations in one PATCH.
const MAX_OPERATIONS: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Add,
    Replace,
    Remove,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NameField {
    Given,
    Family,
    Formatted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EmailField {
    Value,
    Type,
    Primary,
}

/// One `eq` condition of an `emails[...]` filter.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Condition {
    Value(String),
    Type(String),
    Primary(bool),
}

/// What a path designates.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    /// Not stored here (unknown attribute, extension, unstored sub-attribute).
    Ignored,
    Active,
    UserName,
    ExternalId,
    DisplayName,
    /// `name`, or one of its sub-attributes.
    Name(Option<NameField>),
    /// `emails`, the elements a filter selects (all when `None`), and a sub-attribute.
    Emails {
        filter: Option<Vec<Condition>>,
        field: Option<EmailField>,
    },
}

fn bad_path(path: &str) -> ScimError {
    ScimError::invalid_path(format!("invalid path {path:?}"))
}

fn is_attr_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '$')
}

/// Parses a PATCH `path` (or a key of a no-path value).
fn parse_path(raw: &str) -> Result<Target, ScimError> {
    let path = raw.trim();
    if path
        .get(..4)
        .is_some_and(|h| h.eq_ignore_ascii_case("urn:"))
    {
        let core = strip_core_urn(path);
        if core.len() == path.len() {
            // Another schema's attribute (the enterprise extension): not stored.
            return Ok(Target::Ignored);
        }
        return parse_attr_path(core, raw);
    }
    parse_attr_path(path, raw)
}

/// `attr[filter].sub` without a URN.
fn parse_attr_path(path: &str, raw: &str) -> Result<Target, ScimError> {
    let end = path.find(['[', '.']).unwrap_or(path.len());
    let (attr, mut rest) = path.split_at(end);
    if !is_attr_name(attr) {
        return Err(bad_path(raw));
    }
    let mut filter = None;
    if let Some(after) = rest.strip_prefix('[') {
        let close = after.rfind(']').ok_or_else(|| bad_path(raw))?;
        filter = Some(&after[..close]);
        rest = &after[close + 1..];
    }
    let sub = match rest {
        "" => None,
        _ => match rest.strip_prefix('.') {
            Some(s) if is_attr_name(s) => Some(s.to_ascii_lowercase()),
            _ => return Err(bad_path(raw)),
        },
    };
    let simple = |t: Target| {
        if filter.is_some() || sub.is_some() {
            Err(bad_path(raw))
        } else {
            Ok(t)
        }
    };
    match attr.to_ascii_lowercase().as_str() {
        "active" => simple(Target::Active),
        "username" => simple(Target::UserName),
        "externalid" => simple(Target::ExternalId),
        "displayname" => simple(Target::DisplayName),
        "name" => {
            if filter.is_some() {
                return Err(bad_path(raw));
            }
            Ok(match sub.as_deref() {
                None => Target::Name(None),
                Some("givenname") => Target::Name(Some(NameField::Given)),
                Some("familyname") => Target::Name(Some(NameField::Family)),
                Some("formatted") => Target::Name(Some(NameField::Formatted)),
                Some(_) => Target::Ignored,
            })
        }
        "emails" => {
            let field = match sub.as_deref() {
                None => None,
                Some("value") => Some(EmailField::Value),
                Some("type") => Some(EmailField::Type),
                Some("primary") => Some(EmailField::Primary),
                Some(_) => return Ok(Target::Ignored),
            };
            let filter = filter.map(|f| parse_email_filter(f, raw)).transpose()?;
            Ok(Target::Emails { filter, field })
        }
        _ => Ok(Target::Ignored),
    }
}

/// `type eq "work"`, `value eq "a@b.c"`, `primary eq true`, joined by `and`.
fn parse_email_filter(f: &str, raw: &str) -> Result<Vec<Condition>, ScimError> {
    let tokens = tokenize(f).map_err(|_| bad_path(raw))?;
    let mut out = Vec::new();
    let mut rest = tokens.as_slice();
    loop {
        let (cond, tail) = match rest {
            [Token::Word(a), Token::Word(op), v, tail @ ..] if op.eq_ignore_ascii_case("eq") => {
                let c = match (a.to_ascii_lowercase().as_str(), v) {
                    ("type", Token::Str(s)) => Condition::Type(s.clone()),
                    ("value", Token::Str(s)) => Condition::Value(s.clone()),
                    ("primary", Token::Word(b)) if b.eq_ignore_ascii_case("true") => {
                        Condition::Primary(true)
                    }
                    ("primary", Token::Word(b)) if b.eq_ignore_ascii_case("false") => {
                        Condition::Primary(false)
                    }
                    _ => return Err(bad_path(raw)),
                };
                (c, tail)
            }
            _ => return Err(bad_path(raw)),
        };
        out.push(cond);
        match tail {
            [] => return Ok(out),
            [Token::Word(and), more @ ..]
                if and.eq_ignore_ascii_case("and") && !more.is_empty() =>
            {
                rest = more
            }
            _ => return Err(bad_path(raw)),
        }
    }
}

fn matches(e: &ScimEmail, filter: &[Condition]) -> bool {
    filter.iter().all(|c| match c {
        Condition::Value(v) => e.value.to_lowercase() == v.to_lowercase(),
        Condition::Type(t) => e
            .kind
            .as_deref()
            .is_some_and(|k| k.to_lowercase() == t.to_lowercase()),
        Condition::Primary(p) => e.primary == *p,
    })
}

/// Applies a PatchOp message to `current`.
pub fn apply_patch(current: &ScimAttributes, body: &Value) -> Result<ScimAttributes, ScimError> {
    let Value::Object(msg) = body else {
        return Err(ScimError::invalid_syntax("the body must be a JSON object"));
    };
    let is_patch = match get_ci(msg, "schemas") {
        Some(Value::Array(s)) => s.iter().any(|u| {
            u.as_str()
                .is_some_and(|u| u.eq_ignore_ascii_case(PATCH_OP_URN))
        }),
        _ => false,
    };
    if !is_patch {
        return Err(ScimError::invalid_syntax(format!(
            "schemas must contain {PATCH_OP_URN}"
        )));
    }
    let ops = match get_ci(msg, "Operations") {
        Some(Value::Array(ops)) if !ops.is_empty() => ops,
        _ => {
            return Err(ScimError::invalid_syntax(
                "Operations must be a non-empty array",
            ));
        }
    };
    if ops.len() > MAX_OPERATIONS {
        return Err(ScimError::invalid_syntax(format!(
            "at most {MAX_OPERATIONS} operations per PATCH"
        )));
    }
    let mut attrs = current.clone();
    for op in ops {
        apply_operation(&mut attrs, op)?;
    }
    Ok(attrs)
}

fn apply_operation(attrs: &mut ScimAttributes, op: &Value) -> Result<(), ScimError> {
    let Value::Object(o) = op else {
        return Err(ScimError::invalid_syntax(
            "each operation must be an object",
        ));
    };
    let kind = match get_ci(o, "op")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("add") => Op::Add,
        Some("replace") => Op::Replace,
        Some("remove") => Op::Remove,
        _ => {
            return Err(ScimError::invalid_syntax(
                "op must be add, replace or remove",
            ));
        }
    };
    let value = get_ci(o, "value");
    let path = match get_ci(o, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if p.trim().is_empty() => None,
        // The core schema's URN itself names the whole resource: as a no-path operation.
        Some(Value::String(p)) if p.trim().eq_ignore_ascii_case(super::resource::USER_URN) => None,
        Some(Value::String(p)) => Some(p.as_str()),
        Some(_) => return Err(ScimError::invalid_path("path must be a string")),
    };
    match (kind, path) {
        (Op::Remove, None) => Err(ScimError::bad_request(
            ScimType::NoTarget,
            "remove needs a path",
        )),
        (_, Some(p)) => {
            let target = parse_path(p)?;
            if kind != Op::Remove && value.is_none() {
                return Err(ScimError::invalid_syntax(format!(
                    "the operation on {p:?} has no value"
                )));
            }
            apply(attrs, kind, &target, value.unwrap_or(&Value::Null))
        }
        (_, None) => match value {
            Some(Value::Object(members)) => apply_members(attrs, kind, members),
            _ => Err(ScimError::invalid_syntax(
                "an add or replace without a path needs an object value",
            )),
        },
    }
}

/// A no-path add/replace: each key of the value is a path.
fn apply_members(
    attrs: &mut ScimAttributes,
    kind: Op,
    members: &Map<String, Value>,
) -> Result<(), ScimError> {
    for (key, value) in members {
        if key.eq_ignore_ascii_case(USER_URN) {
            // The core schema's attributes grouped under its URN.
            match value {
                Value::Object(inner) => apply_members(attrs, kind, inner)?,
                _ => return Err(ScimError::invalid_value(format!("{key} must be an object"))),
            }
            continue;
        }
        let target = parse_path(key)?;
        apply(attrs, kind, &target, value)?;
    }
    Ok(())
}

fn apply(
    attrs: &mut ScimAttributes,
    kind: Op,
    target: &Target,
    value: &Value,
) -> Result<(), ScimError> {
    let remove = kind == Op::Remove;
    let string = |slot: &mut Option<String>, name: &str| -> Result<(), ScimError> {
        *slot = if remove {
            None
        } else {
            opt_string(Some(value), name)?
        };
        Ok(())
    };
    match target {
        Target::Ignored => Ok(()),
        Target::Active if remove => Err(ScimError::bad_request(
            ScimType::Mutability,
            "active is required and cannot be removed; replace it with false",
        )),
        Target::Active => {
            attrs.active = boolean(value, "active")?;
            Ok(())
        }
        Target::UserName if remove => Err(ScimError::bad_request(
            ScimType::Mutability,
            "userName is required and cannot be removed",
        )),
        Target::UserName => {
            attrs.user_name = user_name(Some(value))?;
            Ok(())
        }
        Target::ExternalId => string(&mut attrs.external_id, "externalId"),
        Target::DisplayName => string(&mut attrs.display_name, "displayName"),
        Target::Name(Some(NameField::Given)) => string(&mut attrs.given_name, "name.givenName"),
        Target::Name(Some(NameField::Family)) => string(&mut attrs.family_name, "name.familyName"),
        Target::Name(Some(NameField::Formatted)) => {
            string(&mut attrs.formatted_name, "name.formatted")
        }
        Target::Name(None) => apply_name(attrs, remove, value),
        Target::Emails { filter, field } => {
            apply_emails(&mut attrs.emails, kind, filter.as_deref(), *field, value)
        }
    }
}

/// `name` as a whole: sub-attributes given are set, others stay (RFC 7644 §3.5.2.3).
fn apply_name(attrs: &mut ScimAttributes, remove: bool, value: &Value) -> Result<(), ScimError> {
    match value {
        _ if remove => {
            attrs.given_name = None;
            attrs.family_name = None;
            attrs.formatted_name = None;
        }
        Value::Null => {}
        Value::Object(n) => {
            for (key, v) in n {
                let slot = match key.to_ascii_lowercase().as_str() {
                    "givenname" => &mut attrs.given_name,
                    "familyname" => &mut attrs.family_name,
                    "formatted" => &mut attrs.formatted_name,
                    _ => continue,
                };
                *slot = opt_string(Some(v), &format!("name.{key}"))?;
            }
        }
        _ => return Err(ScimError::invalid_value("name must be an object")),
    }
    Ok(())
}

/// The values of an `emails` operation: an array of email objects, or one.
fn email_values(value: &Value) -> Result<Vec<ScimEmail>, ScimError> {
    match value {
        Value::Object(_) => Ok(email(value)?.into_iter().collect()),
        other => emails(Some(other)),
    }
}

fn same_email(a: &ScimEmail, b: &ScimEmail) -> bool {
    a.value.to_lowercase() == b.value.to_lowercase()
        && a.kind.as_deref().map(str::to_lowercase) == b.kind.as_deref().map(str::to_lowercase)
}

/// Makes `keep` the only primary address when it is one.
fn single_primary(list: &mut [ScimEmail], keep: usize) {
    if list[keep].primary {
        for (i, e) in list.iter_mut().enumerate() {
            if i != keep {
                e.primary = false;
            }
        }
    }
}

fn apply_emails(
    list: &mut Vec<ScimEmail>,
    kind: Op,
    filter: Option<&[Condition]>,
    field: Option<EmailField>,
    value: &Value,
) -> Result<(), ScimError> {
    let selected: Vec<usize> = (0..list.len())
        .filter(|&i| filter.is_none_or(|f| matches(&list[i], f)))
        .collect();
    match (kind, filter, field) {
        // The whole attribute.
        (Op::Remove, None, None) => {
            let only: Vec<ScimEmail> = match value {
                Value::Null => Vec::new(),
                v => email_values(v)?,
            };
            if only.is_empty() {
                list.clear();
            } else {
                list.retain(|e| {
                    !only
                        .iter()
                        .any(|o| o.value.to_lowercase() == e.value.to_lowercase())
                });
            }
        }
        (Op::Replace, None, None) => *list = email_values(value)?,
        (Op::Add, None, None) => {
            for e in email_values(value)? {
                if let Some(i) = list.iter().position(|x| same_email(x, &e)) {
                    list[i].primary = e.primary;
                    single_primary(list, i);
                } else {
                    list.push(e);
                    let last = list.len() - 1;
                    single_primary(list, last);
                }
            }
        }
        // Selected elements.
        (Op::Remove, Some(_), None) | (Op::Remove, _, Some(EmailField::Value)) => {
            let mut i = 0;
            list.retain(|_| {
                i += 1;
                !selected.contains(&(i - 1))
            });
        }
        (Op::Remove, _, Some(EmailField::Type)) => {
            selected.iter().for_each(|&i| list[i].kind = None)
        }
        (Op::Remove, _, Some(EmailField::Primary)) => {
            selected.iter().for_each(|&i| list[i].primary = false)
        }
        (_, Some(f), None) => {
            let Value::Object(given) = value else {
                return Err(ScimError::invalid_value(
                    "the value of an emails[...] operation must be an object",
                ));
            };
            if selected.is_empty() {
                // Nothing selected: the value (with the filter's conditions) is a new address.
                let mut e = new_email(f);
                set_email_fields(&mut e, given)?;
                push_new(list, e)?;
            } else {
                for &i in &selected {
                    set_email_fields(&mut list[i], given)?;
                    single_primary(list, i);
                }
            }
        }
        (_, filter, Some(field)) => {
            if selected.is_empty() {
                // `emails[type eq "work"].value` when there is no work address: add one.
                let mut e = new_email(filter.unwrap_or(&[]));
                set_email_field(&mut e, field, value)?;
                push_new(list, e)?;
            } else {
                for &i in &selected {
                    set_email_field(&mut list[i], field, value)?;
                    single_primary(list, i);
                }
            }
        }
    }
    Ok(())
}

/// An address carrying a filter's `type` and `primary` conditions.
fn new_email(filter: &[Condition]) -> ScimEmail {
    let mut e = ScimEmail {
        value: String::new(),
        kind: None,
        primary: false,
    };
    for c in filter {
        match c {
            Condition::Value(v) => e.value = v.clone(),
            Condition::Type(t) => e.kind = Some(t.clone()),
            Condition::Primary(p) => e.primary = *p,
        }
    }
    e
}

fn push_new(list: &mut Vec<ScimEmail>, e: ScimEmail) -> Result<(), ScimError> {
    if e.value.is_empty() {
        return Err(ScimError::bad_request(
            ScimType::NoTarget,
            "no email address matches the path, and the value names none to add",
        ));
    }
    list.push(e);
    let last = list.len() - 1;
    single_primary(list, last);
    Ok(())
}

fn set_email_fields(e: &mut ScimEmail, given: &Map<String, Value>) -> Result<(), ScimError> {
    for (key, v) in given {
        let field = match key.to_ascii_lowercase().as_str() {
            "value" => EmailField::Value,
            "type" => EmailField::Type,
            "primary" => EmailField::Primary,
            _ => continue,
        };
        set_email_field(e, field, v)?;
    }
    Ok(())
}

fn set_email_field(e: &mut ScimEmail, field: EmailField, v: &Value) -> Result<(), ScimError> {
    match field {
        EmailField::Value => {
            e.value = opt_string(Some(v), "emails.value")?
                .ok_or_else(|| ScimError::invalid_value("emails.value must not be empty"))?;
        }
        EmailField::Type => e.kind = opt_string(Some(v), "emails.type")?,
        EmailField::Primary => e.primary = boolean(v, "emails.primary")?,
    }
    Ok(())
}

#[cfg(test)]
#[path = "patch_tests.rs"]
mod tests;
