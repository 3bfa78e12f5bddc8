//! Secrets: tenant PATs and user keys, their fingerprints, and sealing at rest.
//!
//! Every secret is a [`SecretString`]; `Debug` prints a placeholder. At rest secrets are sealed
//! with AES-256-GCM under the operator's master key; the associated data binds a ciphertext to
//! the row it belongs to, so a sealed value copied to another row does not open.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::error::ParseError;

/// SHA-256 of a secret, lower-case hex (64 characters). Used for look-ups; shows nothing.
pub fn fingerprint(secret: &SecretString) -> String {
    hex::encode(Sha256::digest(secret.expose_secret().as_bytes()))
}

macro_rules! secret_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone)]
        pub struct $name(SecretString);

        impl $name {
            /// Wraps a secret value; empty values and values with whitespace or control
            /// characters are refused.
            pub fn parse(s: impl Into<String>) -> Result<Self, ParseError> {
                let s: String = s.into();
                if s.is_empty() || s.len() > 512 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(ParseError::new(
                        stringify!($name),
                        "must be 1-512 characters without spaces or control characters",
                    ));
                }
                Ok(Self(SecretString::from(s)))
            }
            /// The secret itself; call only where it is used (a header, a seal).
            pub fn expose(&self) -> &str {
                self.0.expose_secret()
            }
            /// The secret as a [`SecretString`].
            pub fn secret(&self) -> &SecretString {
                &self.0
            }
            /// Full SHA-256 fingerprint (hex).
            pub fn fingerprint(&self) -> String {
                fingerprint(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([REDACTED])"))
            }
        }
    };
}

secret_type!(
    /// A tenant's Clarifai personal access token.
    Pat
);
secret_type!(
    /// A user's app-scoped Clarifai key. The upstream's key id is the secret.
    KeySecret
);

/// Seals and opens secrets at rest. Implementations never log or expose plaintext.
pub trait Sealer: Send + Sync {
    /// Encrypts `plaintext`, binding it to `aad` (the row it belongs to).
    fn seal(&self, plaintext: &str, aad: &str) -> Vec<u8>;
    /// Decrypts a value sealed with the same `aad`.
    fn open(&self, sealed: &[u8], aad: &str) -> Result<SecretString, SealError>;
}

/// A sealed value did not open: wrong master key, wrong row, or corrupt data.
#[derive(Debug, thiserror::Error)]
#[error("sealed secret could not be opened (wrong master key or corrupt data)")]
pub struct SealError;

/// The operator's 32-byte master key.
pub struct MasterKey([u8; 32]);

impl MasterKey {
    /// Decodes a master key from standard base64 (32 random bytes).
    pub fn from_base64(s: &str) -> Result<Self, ParseError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|_| ParseError::new("master key", "is not valid base64"))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| ParseError::new("master key", "must decode to exactly 32 bytes"))?;
        Ok(Self(arr))
    }

    /// A fresh random key (demo and tests).
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        for b in &mut k {
            *b = fastrand::u8(..);
        }
        // fastrand is not a CSPRNG: mix in a v4 uuid (OS randomness) so demo keys are unpredictable.
        for (i, b) in uuid::Uuid::new_v4()
            .as_bytes()
            .iter()
            .chain(uuid::Uuid::new_v4().as_bytes())
            .enumerate()
        {
            k[i] ^= b;
        }
        Self(k)
    }

    /// The key as standard base64.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

/// AES-256-GCM with a random 96-bit nonce per seal; output is `version || nonce || ciphertext`.
pub struct AesGcmSealer {
    cipher: Aes256Gcm,
}

const SEAL_VERSION: u8 = 1;

impl AesGcmSealer {
    /// A sealer under `key`.
    pub fn new(key: &MasterKey) -> Self {
        Self {
            cipher: Aes256Gcm::new((&key.0).into()),
        }
    }
}

impl fmt::Debug for AesGcmSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AesGcmSealer")
    }
}

impl Sealer for AesGcmSealer {
    fn seal(&self, plaintext: &str, aad: &str) -> Vec<u8> {
        let nonce_bytes: [u8; 12] = uuid::Uuid::new_v4().as_bytes()[..12]
            .try_into()
            .expect("12 bytes of a 16-byte uuid");
        let nonce = Nonce::from(nonce_bytes);
        let ct = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of a short message cannot fail");
        let mut out = Vec::with_capacity(1 + 12 + ct.len());
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ct);
        out
    }

    fn open(&self, sealed: &[u8], aad: &str) -> Result<SecretString, SealError> {
        if sealed.len() < 1 + 12 + 16 || sealed[0] != SEAL_VERSION {
            return Err(SealError);
        }
        let nonce_bytes: [u8; 12] = sealed[1..13].try_into().map_err(|_| SealError)?;
        let pt = self
            .cipher
            .decrypt(
                &Nonce::from(nonce_bytes),
                Payload {
                    msg: &sealed[13..],
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SealError)?;
        String::from_utf8(pt)
            .map(SecretString::from)
            .map_err(|_| SealError)
    }
}

/// A sealer during a master key rotation: seals under the current key, opens under the current
/// key and, failing that, under the previous one. A service configured with the new key as
/// current and the old one as previous reads every value whether or not it has been re-sealed
/// yet, so a re-seal can run (and be repeated) while values under both keys coexist.
pub struct RotatingSealer {
    current: AesGcmSealer,
    previous: Option<AesGcmSealer>,
}

impl RotatingSealer {
    /// Seals under `current`; opens under `current`, then `previous` (when given).
    pub fn new(current: &MasterKey, previous: Option<&MasterKey>) -> Self {
        Self {
            current: AesGcmSealer::new(current),
            previous: previous.map(AesGcmSealer::new),
        }
    }

    /// Whether a previous (retired) key is configured.
    pub fn has_previous(&self) -> bool {
        self.previous.is_some()
    }
}

impl fmt::Debug for RotatingSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotatingSealer")
            .field("previous", &self.previous.is_some())
            .finish_non_exhaustive()
    }
}

impl Sealer for RotatingSealer {
    fn seal(&self, plaintext: &str, aad: &str) -> Vec<u8> {
        self.current.seal(plaintext, aad)
    }

    fn open(&self, sealed: &[u8], aad: &str) -> Result<SecretString, SealError> {
        match self.current.open(sealed, aad) {
            Ok(s) => Ok(s),
            Err(e) => match &self.previous {
                Some(p) => p.open(sealed, aad),
                None => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_row() {
        let key = MasterKey::generate();
        let s = AesGcmSealer::new(&key);
        let sealed = s.seal("top-secret", "key:acme:u1");
        assert!(!String::from_utf8_lossy(&sealed).contains("top-secret"));
        assert_eq!(
            s.open(&sealed, "key:acme:u1").unwrap().expose_secret(),
            "top-secret"
        );
        assert!(s.open(&sealed, "key:acme:u2").is_err());
        let other = AesGcmSealer::new(&MasterKey::generate());
        assert!(other.open(&sealed, "key:acme:u1").is_err());
        assert!(s.open(&sealed[..10], "key:acme:u1").is_err());
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let k = KeySecret::parse("abc123secret").unwrap();
        let p = Pat::parse("pat-xyz-secret").unwrap();
        let m = MasterKey::generate();
        let all = format!("{k:?} {p:?} {m:?}");
        assert!(!all.contains("abc123secret") && !all.contains("pat-xyz-secret"));
        assert!(!all.contains(&m.to_base64()));
    }

    #[test]
    fn master_key_must_be_32_bytes_of_base64() {
        let m = MasterKey::generate();
        assert!(MasterKey::from_base64(&m.to_base64()).is_ok());
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
        assert!(MasterKey::from_base64("not base64!").is_err());
    }

    #[test]
    fn a_rotating_sealer_seals_under_the_current_key_and_opens_under_either() {
        let (a, b) = (MasterKey::generate(), MasterKey::generate());
        let under_a = AesGcmSealer::new(&a).seal("old-secret", "pat:acme");
        let rot = RotatingSealer::new(&b, Some(&a));
        assert!(rot.has_previous());
        assert_eq!(
            rot.open(&under_a, "pat:acme").unwrap().expose_secret(),
            "old-secret",
            "falls back to the previous key"
        );
        assert!(
            rot.open(&under_a, "pat:other").is_err(),
            "still bound to its row"
        );
        let under_b = rot.seal("new-secret", "pat:acme");
        assert!(AesGcmSealer::new(&a).open(&under_b, "pat:acme").is_err());
        assert_eq!(
            AesGcmSealer::new(&b)
                .open(&under_b, "pat:acme")
                .unwrap()
                .expose_secret(),
            "new-secret",
            "seals under the current key"
        );
        let only_b = RotatingSealer::new(&b, None);
        assert!(only_b.open(&under_a, "pat:acme").is_err());
        assert!(only_b.open(&under_b, "pat:acme").is_ok());
        assert!(rot.open(b"garbage", "pat:acme").is_err());
        let d = format!("{rot:?}");
        assert!(
            !d.contains(&a.to_base64()) && !d.contains(&b.to_base64()),
            "{d}"
        );
    }
}
