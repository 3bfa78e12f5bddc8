//! The stable derivation of an upstream app id from (tenant, external id).
//!
//! `prefix + slug + "-" + hash`: the slug keeps the id readable, the hash (8 hex of SHA-256 over
//! tenant and external id) keeps it unique and stable. The result always obeys the upstream rule
//! (1-32 letters or digits, `-`/`_` only between them), whatever Unicode the external id holds.

use sha2::{Digest, Sha256};

use crate::error::ParseError;
use crate::ids::{AppId, ExternalId, TenantId, is_valid_app_id};

/// Longest accepted app-id prefix, so that slug and hash always fit in 32 characters.
pub const MAX_PREFIX_LEN: usize = 16;
const HASH_LEN: usize = 8;

/// Checks a tenant's `id_prefix`: empty, or letters/digits with inner `-`/`_`, optionally
/// ending in one separator (`acme-`), at most [`MAX_PREFIX_LEN`] characters.
pub fn validate_prefix(prefix: &str) -> Result<(), ParseError> {
    if prefix.is_empty() {
        return Ok(());
    }
    let core = prefix.strip_suffix(['-', '_']).unwrap_or(prefix);
    if prefix.len() <= MAX_PREFIX_LEN && is_valid_app_id(core) {
        Ok(())
    } else {
        Err(ParseError::new(
            "id_prefix",
            format!(
                "must be at most {MAX_PREFIX_LEN} letters or digits with '-' or '_' between them, optionally ending in one '-' or '_'"
            ),
        ))
    }
}

/// The SHA-256 of (tenant, external id), 64 lower-case hex characters: what identifies a user
/// beyond doubt in the app marker.
pub fn subject_digest(tenant: &TenantId, external_id: &ExternalId) -> String {
    let mut h = Sha256::new();
    h.update(tenant.as_str().as_bytes());
    h.update([0u8]);
    h.update(external_id.as_str().as_bytes());
    hex::encode(h.finalize())
}

/// A short stable hash of (tenant, external id), salted by `salt` when it is not 0:
/// 8 lower-case hex characters. Short, so it can clash: the store's unique (tenant, app id)
/// index catches a clash and the next salt gives another id.
fn short_hash(tenant: &TenantId, external_id: &ExternalId, salt: u32) -> String {
    if salt == 0 {
        return subject_digest(tenant, external_id)[..HASH_LEN].to_owned();
    }
    let mut h = Sha256::new();
    h.update(tenant.as_str().as_bytes());
    h.update([0u8]);
    h.update(external_id.as_str().as_bytes());
    h.update([0u8]);
    h.update(salt.to_be_bytes());
    hex::encode(h.finalize())[..HASH_LEN].to_owned()
}

/// Derives the app id; `prefix` must have passed [`validate_prefix`].
pub fn derive_app_id(prefix: &str, tenant: &TenantId, external_id: &ExternalId) -> AppId {
    derive_app_id_n(prefix, tenant, external_id, 0)
}

/// The `salt`-th candidate app id of (tenant, external id): [`derive_app_id`] for 0, another
/// stable id for each other value (used after the first is taken by another user).
pub fn derive_app_id_n(
    prefix: &str,
    tenant: &TenantId,
    external_id: &ExternalId,
    salt: u32,
) -> AppId {
    let hash = short_hash(tenant, external_id, salt);
    let (head, sep) = match prefix.strip_suffix(['-', '_']) {
        Some(core) => (core, &prefix[core.len()..]),
        None if prefix.is_empty() => ("", ""),
        None => (prefix, "-"),
    };
    // Room for the slug: 32 - head - sep - "-" - hash.
    let room = 32usize.saturating_sub(head.len() + sep.len() + 1 + HASH_LEN);
    let slug = slugify(external_id.as_str(), room);
    let mut id = String::with_capacity(32);
    id.push_str(head);
    if !slug.is_empty() {
        if !head.is_empty() {
            id.push_str(sep);
        }
        id.push_str(&slug);
    }
    if !id.is_empty() {
        id.push('-');
    }
    id.push_str(&hash);
    AppId::parse(&id).expect("derived app ids always obey the upstream rule")
}

/// Lower-case ASCII letters and digits, other runs replaced by one `-`, trimmed, at most `max`.
fn slugify(s: &str, max: usize) -> String {
    let mut out = String::new();
    let mut pending_sep = false;
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            if pending_sep && !out.is_empty() {
                out.push('-');
            }
            pending_sep = false;
            out.push(c.to_ascii_lowercase());
        } else {
            pending_sep = true;
        }
        if out.len() >= max {
            break;
        }
    }
    out.truncate(max);
    while out.ends_with('-') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }
    fn e(s: &str) -> ExternalId {
        ExternalId::parse(s).unwrap()
    }

    #[test]
    fn derived_ids_are_readable_and_stable() {
        let a = derive_app_id("acme-", &t("acme"), &e("user-42@acme.example"));
        assert!(a.as_str().starts_with("acme-user-42-acme-"), "{a}");
        assert_eq!(
            a,
            derive_app_id("acme-", &t("acme"), &e("user-42@acme.example"))
        );
        assert_ne!(
            a,
            derive_app_id("acme-", &t("acme"), &e("user-43@acme.example"))
        );
        assert_ne!(
            a,
            derive_app_id("acme-", &t("other"), &e("user-42@acme.example"))
        );
    }

    #[test]
    fn unicode_only_ids_still_derive_valid_ids() {
        let a = derive_app_id("acme-", &t("acme"), &e("ユーザー"));
        assert!(is_valid_app_id(a.as_str()));
        assert_eq!(a.as_str().len(), "acme-".len() + 8 - 1 + 1);
        let b = derive_app_id("", &t("acme"), &e("ユーザー"));
        assert_eq!(b.as_str().len(), 8);
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(validate_prefix("acme-").is_ok());
        assert!(validate_prefix("acme").is_ok());
        assert!(validate_prefix("").is_ok());
        assert!(validate_prefix("-acme").is_err());
        assert!(validate_prefix("ac--").is_err());
        assert!(validate_prefix("a.b").is_err());
        assert!(validate_prefix(&"a".repeat(17)).is_err());
    }

    #[test]
    fn salted_ids_differ_and_are_stable() {
        let (a, x) = (t("acme"), e("user-1"));
        let ids: std::collections::BTreeSet<_> = (0..16)
            .map(|n| derive_app_id_n("acme-", &a, &x, n))
            .collect();
        assert_eq!(ids.len(), 16);
        assert_eq!(
            derive_app_id_n("acme-", &a, &x, 0),
            derive_app_id("acme-", &a, &x)
        );
        assert_eq!(
            derive_app_id_n("acme-", &a, &x, 5),
            derive_app_id_n("acme-", &a, &x, 5)
        );
        assert_eq!(subject_digest(&a, &x).len(), 64);
    }

    proptest! {
        #[test]
        fn any_external_id_gives_a_valid_app_id(
            ext in "[^\\p{Cc}]{1,128}",
            prefix in "([a-z0-9]{1,8}([-_][a-z0-9]{1,3})?[-_]?)?",
        ) {
            prop_assume!(validate_prefix(&prefix).is_ok());
            let ext = ExternalId::parse(&ext).unwrap();
            let id = derive_app_id(&prefix, &t("acme"), &ext);
            prop_assert!(is_valid_app_id(id.as_str()), "{}", id);
        }
    }
}
