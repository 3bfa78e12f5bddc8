//! The `filter` query parameter of `GET /Users` (RFC 7644 §3.4.2.2), restricted to what the
//! identity providers send: `eq` comparisons joined by `and`.
//!
//! Attribute names and operators are case-insensitive; attributes may carry the core User
//! schema URN as a prefix. Supported: `id`, `userName` (compared case-insensitively, as its
//! schema says `caseExact: false`), `externalId`, `emails.value` (also `emails`) and
//! `emails[type eq "<type>"].value`. Values are JSON strings (escapes allowed). Anything else —
//! `or`, `not`, parentheses, other operators, other attributes, a syntax error — is 400
//! `invalidFilter`. Two different values for the same single-valued attribute cannot both
//! hold: the filter then matches nothing ([`Filter::matches_nothing`]).

use provisioner_core::scim::{ScimQuery, email_needle, user_name_key};

use super::error::ScimError;
use super::resource::strip_core_urn;

/// A parsed filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// The conditions, for the store.
    pub query: ScimQuery,
    /// Two conditions contradict each other: the answer is an empty list.
    pub matches_nothing: bool,
}

/// One token of a filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Token {
    /// An attribute path, operator or keyword (with any `[...]` part kept whole).
    Word(String),
    /// A JSON string, unescaped.
    Str(String),
}

fn invalid(detail: impl Into<String>) -> ScimError {
    ScimError::invalid_filter(detail)
}

/// Splits a filter into words and strings (the errors are `invalidFilter`).
pub(super) fn tokenize(s: &str) -> Result<Vec<Token>, ScimError> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'"' => {
                let end = string_end(bytes, i)?;
                let v: String = serde_json::from_str(&s[i..end])
                    .map_err(|_| invalid("invalid string value in the filter"))?;
                // No stored value holds a control character (NUL cannot even be stored on
                // PostgreSQL): refused rather than searched.
                if v.chars().any(char::is_control) {
                    return Err(invalid("filter values may not hold control characters"));
                }
                out.push(Token::Str(v));
                i = end;
            }
            b'(' | b')' => return Err(invalid("grouping with parentheses is not supported")),
            _ => {
                let start = i;
                while i < bytes.len() && !matches!(bytes[i], b' ' | b'\t' | b'\r' | b'\n') {
                    match bytes[i] {
                        b'[' => i = bracket_end(bytes, i)?,
                        b'"' | b'(' | b')' => {
                            return Err(invalid("unexpected character in the filter"));
                        }
                        _ => i += 1,
                    }
                }
                out.push(Token::Word(s[start..i].to_owned()));
            }
        }
    }
    Ok(out)
}

/// Index just past the closing quote of the string starting at `start`.
fn string_end(bytes: &[u8], start: usize) -> Result<usize, ScimError> {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(invalid("unterminated string in the filter"))
}

/// Index just past the `]` closing the `[` at `start` (quotes inside are skipped).
fn bracket_end(bytes: &[u8], start: usize) -> Result<usize, ScimError> {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = string_end(bytes, i)?,
            b']' => return Ok(i + 1),
            b'[' => return Err(invalid("nested brackets are not supported")),
            _ => i += 1,
        }
    }
    Err(invalid("unclosed '[' in the filter"))
}

/// A filterable attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Attr {
    Id,
    UserName,
    ExternalId,
    /// `emails.value`, or `emails[type eq "<kind>"].value` with `Some(kind)`.
    Email(Option<String>),
}

fn attribute(path: &str) -> Result<Attr, ScimError> {
    let p = strip_core_urn(path);
    let lower = p.to_ascii_lowercase();
    match lower.as_str() {
        "id" => return Ok(Attr::Id),
        "username" => return Ok(Attr::UserName),
        "externalid" => return Ok(Attr::ExternalId),
        "emails" | "emails.value" => return Ok(Attr::Email(None)),
        _ => {}
    }
    // emails[type eq "work"].value
    if lower.starts_with("emails[") && lower.ends_with("].value") {
        let inner = &p["emails[".len()..p.len() - "].value".len()];
        let tokens = tokenize(inner)?;
        return match tokens.as_slice() {
            [Token::Word(a), Token::Word(op), Token::Str(kind)]
                if a.eq_ignore_ascii_case("type") && op.eq_ignore_ascii_case("eq") =>
            {
                Ok(Attr::Email(Some(kind.clone())))
            }
            _ => Err(invalid(
                "only emails[type eq \"...\"].value is supported inside brackets",
            )),
        };
    }
    Err(invalid(format!(
        "filtering on {path:?} is not supported; use id, userName, externalId, emails.value or emails[type eq \"work\"].value"
    )))
}

/// Sets `slot` to `value`, or notes a contradiction when it holds another one.
fn set(slot: &mut Option<String>, value: String, contradiction: &mut bool) {
    match slot {
        Some(v) if *v != value => *contradiction = true,
        _ => *slot = Some(value),
    }
}

/// Parses a `filter` into a store query.
pub fn parse_filter(filter: &str) -> Result<Filter, ScimError> {
    let tokens = tokenize(filter)?;
    if tokens.is_empty() {
        return Err(invalid("the filter is empty"));
    }
    let mut out = Filter::default();
    // The email condition as given (kind, folded value), to compare a second one with.
    let mut email: Option<(Option<String>, String)> = None;
    let mut rest = tokens.as_slice();
    loop {
        let (path, op, value, tail) = match rest {
            [Token::Word(path), Token::Word(op), Token::Str(v), tail @ ..] => (path, op, v, tail),
            [Token::Word(_), Token::Word(op), ..] if !op.eq_ignore_ascii_case("eq") => {
                return Err(invalid(format!(
                    "the operator {op:?} is not supported; only eq (joined by and)"
                )));
            }
            [Token::Word(_), Token::Word(_), _, ..] => {
                return Err(invalid("the value of a comparison must be a JSON string"));
            }
            _ => return Err(invalid("expected: <attribute> eq \"<value>\" [and ...]")),
        };
        if !op.eq_ignore_ascii_case("eq") {
            return Err(invalid(format!(
                "the operator {op:?} is not supported; only eq (joined by and)"
            )));
        }
        let hit = &mut out.matches_nothing;
        match attribute(path)? {
            Attr::Id => set(&mut out.query.id, value.clone(), hit),
            Attr::UserName => set(&mut out.query.user_name_key, user_name_key(value), hit),
            Attr::ExternalId => set(&mut out.query.external_id, value.clone(), hit),
            Attr::Email(kind) => {
                let kind = kind.map(|k| k.to_lowercase());
                let folded = value.to_lowercase();
                let merged = match email.take() {
                    None => (kind, folded),
                    Some((k0, v0)) if v0 == folded && (k0 == kind || kind.is_none()) => (k0, v0),
                    Some((None, v0)) if v0 == folded => (kind, v0),
                    Some(_) => {
                        return Err(invalid(
                            "at most one email address (and type) per filter is supported",
                        ));
                    }
                };
                out.query.email_needle = Some(email_needle(merged.0.as_deref(), &merged.1));
                email = Some(merged);
            }
        }
        match tail {
            [] => return Ok(out),
            [Token::Word(and), more @ ..]
                if and.eq_ignore_ascii_case("and") && !more.is_empty() =>
            {
                rest = more;
            }
            [Token::Word(w), ..]
                if w.eq_ignore_ascii_case("or") || w.eq_ignore_ascii_case("not") =>
            {
                return Err(invalid(format!("{w:?} is not supported; only and")));
            }
            _ => return Err(invalid("expected `and` between comparisons")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(f: &str) -> Filter {
        parse_filter(f).unwrap_or_else(|e| panic!("{f}: {e}"))
    }

    fn bad(f: &str) {
        let e = parse_filter(f).expect_err(f);
        assert_eq!(e.status(), 400, "{f}");
        assert_eq!(e.body()["scimType"], "invalidFilter", "{f}");
    }

    #[test]
    fn user_name_is_matched_case_insensitively_and_names_and_ops_in_any_case() {
        let f = ok(r#"userName eq "Ann.Lee@Example.COM""#);
        assert_eq!(
            f.query.user_name_key.as_deref(),
            Some("ann.lee@example.com")
        );
        assert!(!f.matches_nothing);
        let g = ok(r#"USERNAME EQ "ann.lee@example.com""#);
        assert_eq!(f, g);
        let h =
            ok(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "ANN.LEE@example.com""#);
        assert_eq!(f, h);
    }

    #[test]
    fn the_supported_attributes_fill_the_query() {
        let f = ok(r#"externalId eq "00u1" and id eq "abc""#);
        assert_eq!(f.query.external_id.as_deref(), Some("00u1"));
        assert_eq!(f.query.id.as_deref(), Some("abc"));
        let f = ok(r#"emails[type eq "Work"].value eq "Ann@Example.com""#);
        assert_eq!(
            f.query.email_needle,
            Some(email_needle(Some("work"), "ann@example.com"))
        );
        for plain in [r#"emails.value eq "a@b.c""#, r#"emails eq "a@b.c""#] {
            assert_eq!(
                ok(plain).query.email_needle,
                Some(email_needle(None, "a@b.c"))
            );
        }
        let f = ok(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:emails[type eq "work"].value eq "a@b.c""#,
        );
        assert_eq!(
            f.query.email_needle,
            Some(email_needle(Some("work"), "a@b.c"))
        );
    }

    #[test]
    fn any_number_of_conditions_join_with_and() {
        let f = ok(
            r#"userName eq "a" and externalId eq "x" AND emails.value eq "a@b.c" and id eq "1""#,
        );
        assert_eq!(f.query.user_name_key.as_deref(), Some("a"));
        assert_eq!(f.query.external_id.as_deref(), Some("x"));
        assert_eq!(f.query.id.as_deref(), Some("1"));
        assert!(f.query.email_needle.is_some());
    }

    #[test]
    fn two_values_for_one_attribute_match_nothing() {
        assert!(ok(r#"userName eq "a" and userName eq "b""#).matches_nothing);
        assert!(!ok(r#"userName eq "a" and userName eq "A""#).matches_nothing);
        assert!(ok(r#"externalId eq "a" and externalId eq "A""#).matches_nothing);
    }

    #[test]
    fn a_typed_and_an_untyped_email_condition_on_one_address_combine() {
        let f = ok(r#"emails.value eq "a@b.c" and emails[type eq "work"].value eq "A@b.c""#);
        assert_eq!(
            f.query.email_needle,
            Some(email_needle(Some("work"), "a@b.c"))
        );
        bad(r#"emails.value eq "a@b.c" and emails.value eq "d@e.f""#);
    }

    #[test]
    fn string_values_take_json_escapes_and_spaces() {
        let f = ok(r#"userName eq "a \"b\" c\u0041""#);
        assert_eq!(f.query.user_name_key.as_deref(), Some("a \"b\" ca"));
    }

    #[test]
    fn everything_else_is_an_invalid_filter() {
        for f in [
            "",
            "userName",
            r#"userName eq"#,
            r#"userName co "a""#,
            r#"userName sw "a""#,
            r#"userName pr"#,
            r#"meta.lastModified gt "2020-01-01T00:00:00Z""#,
            r#"userName eq "a" or userName eq "b""#,
            r#"not (userName eq "a")"#,
            r#"(userName eq "a")"#,
            r#"displayName eq "a""#,
            r#"userName eq "a" and"#,
            r#"userName eq "a" userName eq "b""#,
            r#"userName eq "unterminated"#,
            r#"userName eq true"#,
            r#"userName eq 12"#,
            r#"emails[value eq "a"].value eq "b""#,
            r#"emails[type eq "work"] eq "b""#,
            r#"emails[type eq "work".value eq "b""#,
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "1""#,
        ] {
            bad(f);
        }
    }
}
