//! Identifiers that parse at the edges: after `parse`, a value is valid everywhere.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ParseError;

/// 1-32 of `a-z 0-9 -`, starting with a letter (tenant ids and profile names, docs/api.md).
fn parse_slug_id(field: &'static str, s: &str) -> Result<String, ParseError> {
    let ok_len = (1..=32).contains(&s.len());
    let starts = s.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    let chars_ok = s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok_len && starts && chars_ok {
        Ok(s.to_owned())
    } else {
        Err(ParseError::new(
            field,
            "must be 1-32 characters of a-z, 0-9 and '-', starting with a letter",
        ))
    }
}

macro_rules! string_id {
    ($(#[$m:meta])* $name:ident, $field:literal, $parse:expr) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses and validates the value.
            pub fn parse(s: &str) -> Result<Self, ParseError> {
                let f: fn(&'static str, &str) -> Result<String, ParseError> = $parse;
                f($field, s).map(Self)
            }
            /// The value as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_id!(
    /// A tenant (an enterprise customer): 1-32 of `a-z 0-9 -`, starting with a letter.
    TenantId, "tenant_id", parse_slug_id
);
string_id!(
    /// A scope profile's name: same rule as tenant ids.
    ProfileName, "profile name", parse_slug_id
);
string_id!(
    /// The caller's own id of an end user: 1-128 characters, no control characters.
    ExternalId, "external_id", |field, s| {
        let n = s.chars().count();
        if n == 0 || n > 128 {
            return Err(ParseError::new(field, "must be 1-128 characters"));
        }
        if s.chars().any(char::is_control) {
            return Err(ParseError::new(field, "must not contain control characters"));
        }
        Ok(s.to_owned())
    }
);
string_id!(
    /// An upstream app id: 1-32 letters or digits, `-` or `_` only between them.
    AppId, "app id", |field, s| {
        if is_valid_app_id(s) {
            Ok(s.to_owned())
        } else {
            Err(ParseError::new(
                field,
                "must be 1-32 letters or digits, with '-' or '_' only between them",
            ))
        }
    }
);
string_id!(
    /// The Clarifai user id owning a tenant's apps (1-64 of letters, digits, `-`, `_`).
    UpstreamUserId, "upstream user_id", |field, s| {
        let ok = (1..=64).contains(&s.len())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(s.to_owned())
        } else {
            Err(ParseError::new(field, "must be 1-64 letters, digits, '-' or '_'"))
        }
    }
);

/// The upstream's app-id rule: `^[A-Za-z0-9]+([-_][A-Za-z0-9]+)*$`, at most 32 characters.
pub fn is_valid_app_id(s: &str) -> bool {
    if s.is_empty() || s.len() > 32 {
        return false;
    }
    let mut prev_sep = true; // the first character may not be a separator
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            prev_sep = false;
        } else if c == '-' || c == '_' {
            if prev_sep {
                return false;
            }
            prev_sep = true;
        } else {
            return false;
        }
    }
    !prev_sep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_follow_the_contract() {
        assert!(TenantId::parse("acme").is_ok());
        assert!(TenantId::parse("a-1").is_ok());
        assert!(TenantId::parse("1acme").is_err());
        assert!(TenantId::parse("Acme").is_err());
        assert!(TenantId::parse("").is_err());
        assert!(TenantId::parse(&"a".repeat(33)).is_err());
    }

    #[test]
    fn external_ids_accept_unicode_but_not_control_characters() {
        assert!(ExternalId::parse("user-42@acme.example").is_ok());
        assert!(ExternalId::parse("ユーザー🙂").is_ok());
        assert!(ExternalId::parse("a\nb").is_err());
        assert!(ExternalId::parse(&"é".repeat(128)).is_ok());
        assert!(ExternalId::parse(&"é".repeat(129)).is_err());
    }

    #[test]
    fn app_id_rule_matches_the_upstream_pattern() {
        assert!(is_valid_app_id("a"));
        assert!(is_valid_app_id("acme-user_42"));
        assert!(!is_valid_app_id("-a"));
        assert!(!is_valid_app_id("a-"));
        assert!(!is_valid_app_id("a--b"));
        assert!(!is_valid_app_id("a.b"));
        assert!(!is_valid_app_id(&"a".repeat(33)));
    }
}
