//! Idempotency keys (docs/api.md, "Retries and `Idempotency-Key`"): the record of one request's key,
//! what it asked for, which operation it started and the answer it got.
//!
//! A record is keyed by the caller's `sub` and the key: the same key sent by another caller is
//! another record (as in Stripe's API, where keys are scoped to the account). The rules that
//! use these records live in `service::idempotency`; storage keeps them beside the users' rows.

use std::fmt;

use crate::error::ParseError;
use crate::ids::{ExternalId, TenantId};
use crate::model::{Lease, Timestamp};

/// How long a record is kept: a repeat after this is a new request.
pub const IDEMPOTENCY_TTL_HOURS: i64 = 24;

/// The `Idempotency-Key` header's value: 1-255 printable ASCII characters (space to `~`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Parses and validates a key.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if (1..=255).contains(&s.len()) && s.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseError::new(
                "Idempotency-Key",
                "must be 1-255 printable ASCII characters",
            ))
        }
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// SHA-256 (hex) of a request's canonical form: what a repeat must match.
pub fn request_hash(canonical: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(canonical))
}

/// The operation a key started: the user and the generation its intent created (or the one it
/// resumed). A retry decides from that user's row what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyBinding {
    /// The user's tenant.
    pub tenant_id: TenantId,
    /// The user.
    pub external_id: ExternalId,
    /// The key generation the operation creates.
    pub generation: i64,
}

/// The answer a request got, kept to be replayed. `body` never holds a secret: a secret the
/// answer carried is in `secret_sealed`, sealed and bound to the record.
#[derive(Clone, PartialEq, Eq)]
pub struct SavedResponse {
    /// The status it was answered with (2xx or 4xx; 5xx answers are not kept).
    pub status: u16,
    /// The body as rendered, without the secret.
    pub body: String,
    /// The secret it carried, sealed (associated data: `service::idempotency` binds it to the
    /// record's subject, key and creation time).
    pub secret_sealed: Option<Vec<u8>>,
}

impl fmt::Debug for SavedResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SavedResponse")
            .field("status", &self.status)
            .field("secret", &self.secret_sealed.as_ref().map(|_| "[SEALED]"))
            .finish_non_exhaustive()
    }
}

/// One `(subject, key)` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// The caller's `sub`.
    pub subject: String,
    /// The key.
    pub key: IdempotencyKey,
    /// Which use case, e.g. `user.provision`.
    pub operation: String,
    /// On what, e.g. `acme/users/alice`.
    pub target: String,
    /// SHA-256 (hex) of the request's canonical body.
    pub request_hash: String,
    /// The operation it started, once its intent is written.
    pub binding: Option<IdempotencyBinding>,
    /// The request working on it before it is bound (a repeat waits while it is live).
    pub claim: Option<Lease>,
    /// The answer, once given (2xx or 4xx).
    pub response: Option<SavedResponse>,
    /// Created.
    pub created_at: Timestamp,
    /// After this the record counts as absent.
    pub expires_at: Timestamp,
}

/// Which record a request holds the claim of (for conditional writes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyClaim {
    /// The caller's `sub`.
    pub subject: String,
    /// The key.
    pub key: IdempotencyKey,
    /// The claim's owner token.
    pub owner: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_1_to_255_printable_ascii_characters() {
        assert!(IdempotencyKey::parse("a").is_ok());
        assert!(IdempotencyKey::parse("4f1c-9a0e key with spaces ~!").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
        assert!(IdempotencyKey::parse("tab\there").is_err());
        assert!(IdempotencyKey::parse("new\nline").is_err());
        assert!(IdempotencyKey::parse("café").is_err());
    }
}
