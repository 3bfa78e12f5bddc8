//! Bearer-token authentication: JWT verification and minting.
//!
//! The accepted algorithms come from the configured keys, never from the token header: an
//! HS256 secret accepts only HMAC tokens, a PEM public key only its own family (RSA, EC or
//! Ed25519), a JWKS key only its `alg` (or its family). A token is tried only against keys whose
//! algorithms include its header's `alg`, so `alg: none` and algorithm confusion (an HS256 token
//! "signed" with an RSA public key's PEM) are refused. `exp` is required and `nbf` checked
//! (both with 30 s of leeway); `iss` and `aud` are required and checked when configured. An
//! HS256 secret has at least 32 bytes; a JWKS may hold keys this service cannot use (encryption
//! keys, unknown algorithms): they are skipped, not fatal. Permissions come from `scope` (a
//! space-separated string or an array) and `scp` (either form, as Entra ID sends them).
//!
//! A JWKS may also be fetched from the identity provider ([`RemoteJwks`], over a
//! [`JwksSource`] the binary provides) and kept fresh: periodically, and when a token names a
//! key id no configured key has (rate-limited). Verification reads the current key set without
//! waiting; only a token with an unknown `kid` may wait for a refresh.

mod caller;
mod jwks;

use std::sync::Arc;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};

pub use caller::{
    Admin, Audit, Caller, Global, Need, Permission, Read, Secrets, TenantAccess, Write,
};
pub use jwks::{JwksDocument, JwksRefresh, JwksSource, RemoteJwks};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: u64 = 30;

/// How callers' tokens are verified (at least one key source must be set).
#[derive(Clone, Default)]
pub struct AuthConfig {
    /// Shared HS256 secret (`PROVISIONER_JWT_HS256_SECRET`).
    pub hs256_secret: Option<SecretString>,
    /// A PEM public key: RSA (RS*/PS*), EC P-256/P-384 (ES256/ES384) or Ed25519 (EdDSA); the
    /// type is detected (`PROVISIONER_JWT_PUBLIC_KEY_FILE`).
    pub public_key_pem: Option<Vec<u8>>,
    /// A JWKS document; keys are selected by the token's `kid` (`PROVISIONER_JWT_JWKS_FILE`).
    pub jwks_json: Option<String>,
    /// Where a JWKS is fetched from and refreshed (`PROVISIONER_JWT_JWKS_URL`); its keys are
    /// selected by `kid` too, together with those of `jwks_json`.
    pub jwks_source: Option<Arc<dyn JwksSource>>,
    /// How often the fetched JWKS is refreshed.
    pub jwks_refresh: JwksRefresh,
    /// Required `iss`, when set (`PROVISIONER_JWT_ISSUER`).
    pub issuer: Option<String>,
    /// Required `aud`, when set (`PROVISIONER_JWT_AUDIENCE`).
    pub audience: Option<String>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field(
                "hs256_secret",
                &self.hs256_secret.as_ref().map(|_| "[REDACTED]"),
            )
            .field(
                "public_key_pem",
                &self.public_key_pem.as_ref().map(|_| "<pem>"),
            )
            .field("jwks_json", &self.jwks_json.as_ref().map(|_| "<jwks>"))
            .field(
                "jwks_source",
                &self.jwks_source.as_ref().map(|s| s.describe()),
            )
            .field("jwks_refresh", &self.jwks_refresh)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

/// The configuration cannot verify tokens.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// No HS256 secret, public key, JWKS or JWKS source was configured.
    #[error(
        "no JWT verifier configured: set an HS256 secret, a public key file, a JWKS file or a JWKS URL"
    )]
    NoVerifier,
    /// The HS256 secret is empty.
    #[error("the HS256 secret is empty")]
    EmptySecret,
    /// The HS256 secret is shorter than 32 bytes (guessable offline from any one token).
    #[error("the HS256 secret must be at least 32 bytes, e.g. `head -c32 /dev/urandom | base64`")]
    ShortSecret,
    /// The PEM is not an RSA, EC or Ed25519 public key.
    #[error("the JWT public key is not an RSA, EC or Ed25519 PEM key")]
    BadPem,
    /// The JWKS does not parse or holds no usable key.
    #[error("the JWKS is invalid: {0}")]
    BadJwks(String),
}

/// The claims of a caller's token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The caller, recorded in audit events.
    pub sub: String,
    /// Expiry (seconds since the epoch); required.
    pub exp: i64,
    /// Space-separated permissions, e.g. `provisioner:write provisioner:secrets` (a JSON array
    /// of them is accepted too).
    #[serde(default, deserialize_with = "words")]
    pub scope: String,
    /// Permissions under the name some identity providers use (Entra ID), merged with `scope`.
    #[serde(
        default,
        deserialize_with = "words",
        skip_serializing_if = "String::is_empty"
    )]
    pub scp: String,
    /// The one tenant a non-admin token may touch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience (a string or the first element of an array).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "string_or_first"
    )]
    pub aud: Option<String>,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
}

/// A space-separated string, or an array of words joined with spaces.
fn words<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Words {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<Words>::deserialize(d)? {
        None => String::new(),
        Some(Words::One(s)) => s,
        Some(Words::Many(v)) => v.join(" "),
    })
}

impl Claims {
    /// Every permission word of `scope` and `scp`.
    pub fn permissions(&self) -> impl Iterator<Item = &str> {
        self.scope
            .split_whitespace()
            .chain(self.scp.split_whitespace())
    }
}

fn string_or_first<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Aud {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<Aud>::deserialize(d)? {
        None => None,
        Some(Aud::One(s)) => Some(s),
        Some(Aud::Many(v)) => v.into_iter().next(),
    })
}

/// Signs `claims` as an HS256 token (for `provisioner token`, demos and tests).
pub fn mint_hs256(
    secret: &SecretString,
    claims: &Claims,
) -> Result<String, jsonwebtoken::errors::Error> {
    let key = EncodingKey::from_secret(secret.expose_secret().as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key)
}

/// One configured key and the only algorithms it accepts.
struct VerifyKey {
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
    kid: Option<String>,
}

/// Verifies bearer tokens against the configured keys.
pub struct JwtVerifier {
    /// HS256 secret and/or PEM key.
    static_keys: Vec<VerifyKey>,
    /// JWKS keys, selected by `kid`.
    jwks: Vec<VerifyKey>,
    /// The fetched JWKS, selected by `kid` like `jwks`.
    remote: Option<Arc<RemoteJwks>>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("static_keys", &self.static_keys.len())
            .field("jwks_keys", &self.jwks.len())
            .field("remote_jwks", &self.remote)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl JwtVerifier {
    /// Builds a verifier; fails when no key source is configured or a key does not parse.
    pub fn new(cfg: &AuthConfig) -> Result<Self, AuthConfigError> {
        let mut static_keys = Vec::new();
        if let Some(secret) = &cfg.hs256_secret {
            if secret.expose_secret().is_empty() {
                return Err(AuthConfigError::EmptySecret);
            }
            if secret.expose_secret().len() < 32 {
                return Err(AuthConfigError::ShortSecret);
            }
            let key = DecodingKey::from_secret(secret.expose_secret().as_bytes());
            static_keys.push(VerifyKey {
                key,
                algorithms: vec![Algorithm::HS256],
                kid: None,
            });
        }
        if let Some(pem) = &cfg.public_key_pem {
            static_keys.push(pem_key(pem)?);
        }
        let jwks = match &cfg.jwks_json {
            Some(json) => {
                let (keys, skipped) = jwks_keys(json)?;
                log_skipped(&skipped);
                keys
            }
            None => Vec::new(),
        };
        let remote = cfg
            .jwks_source
            .as_ref()
            .map(|source| RemoteJwks::new(source.clone(), cfg.jwks_refresh));
        if static_keys.is_empty() && jwks.is_empty() && remote.is_none() {
            return Err(AuthConfigError::NoVerifier);
        }
        Ok(Self {
            static_keys,
            jwks,
            remote,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
        })
    }

    /// The fetched JWKS, when a [`JwksSource`] is configured: the binary loads it at start and
    /// runs its periodic refresh ([`RemoteJwks::run`]).
    pub fn remote_jwks(&self) -> Option<&Arc<RemoteJwks>> {
        self.remote.as_ref()
    }

    /// Verifies a token against the keys held now and returns its claims (never waits). The
    /// error text is safe to show the caller.
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| "malformed bearer token".to_owned())?;
        let fetched = self.remote.as_ref().map(|r| r.keys());
        let jwks: Vec<&VerifyKey> = self
            .jwks
            .iter()
            .chain(fetched.iter().flat_map(|k| k.iter()))
            .collect();
        let candidates: Vec<&VerifyKey> = match &header.kid {
            Some(kid) if jwks.iter().any(|k| k.kid.as_deref() == Some(kid)) => jwks
                .into_iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect(),
            _ => {
                let single_jwk = (jwks.len() == 1 && header.kid.is_none()).then(|| jwks[0]);
                self.static_keys.iter().chain(single_jwk).collect()
            }
        };
        let usable: Vec<&VerifyKey> = candidates
            .into_iter()
            .filter(|k| k.algorithms.contains(&header.alg))
            .collect();
        if usable.is_empty() {
            return Err("token algorithm or key id not accepted".into());
        }
        let mut last = String::from("invalid token");
        for k in usable {
            match jsonwebtoken::decode::<Claims>(token, &k.key, &self.validation(&k.algorithms)) {
                Ok(data) => return Ok(data.claims),
                Err(e) => last = describe(&e),
            }
        }
        Err(last)
    }

    /// As [`JwtVerifier::verify`]; when that fails and the token names a key id that no key held
    /// now has while a JWKS is fetched, the JWKS is refreshed first (at most once per
    /// [`JwksRefresh::min_interval`], one fetch shared by every request waiting for it) and the
    /// token verified again. A failed refresh keeps the keys held.
    pub async fn verify_refreshing(&self, token: &str) -> Result<Claims, String> {
        let first = self.verify(token);
        let Err(error) = first else {
            return first;
        };
        let Some(remote) = &self.remote else {
            return Err(error);
        };
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return Err(error);
        };
        let Some(kid) = header.kid else {
            return Err(error);
        };
        let known = |k: &VerifyKey| k.kid.as_deref() == Some(kid.as_str());
        if self.jwks.iter().any(known) || remote.keys().iter().any(known) {
            return Err(error);
        }
        remote.refresh_for_unknown_kid().await;
        // Verified again whatever the refresh did: another one may have brought the key.
        self.verify(token)
    }

    fn validation(&self, algorithms: &[Algorithm]) -> Validation {
        let mut v = Validation::new(algorithms[0]);
        v.algorithms = algorithms.to_vec();
        v.leeway = LEEWAY_SECS;
        v.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &self.issuer {
            Some(iss) => {
                v.set_issuer(&[iss]);
                required.push("iss");
            }
            None => v.iss = None,
        }
        match &self.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&required);
        v
    }
}

/// A client-safe description of a verification failure (never echoes the token).
fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "token expired".into(),
        K::InvalidSignature => "token signature invalid".into(),
        K::InvalidIssuer => "token issuer not accepted".into(),
        K::InvalidAudience => "token audience not accepted".into(),
        K::MissingRequiredClaim(c) => format!("token lacks the required claim {c:?}"),
        K::ImmatureSignature => "token not valid yet".into(),
        K::InvalidAlgorithm => "token algorithm not accepted".into(),
        _ => "invalid token".into(),
    }
}

fn pem_key(pem: &[u8]) -> Result<VerifyKey, AuthConfigError> {
    use jsonwebtoken::AlgorithmFamily as F;
    let (key, family) = if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
        (k, F::Rsa)
    } else if let Ok(k) = DecodingKey::from_ec_pem(pem) {
        (k, F::Ec)
    } else if let Ok(k) = DecodingKey::from_ed_pem(pem) {
        (k, F::Ed)
    } else {
        return Err(AuthConfigError::BadPem);
    };
    Ok(VerifyKey {
        key,
        algorithms: family.algorithms().to_vec(),
        kid: None,
    })
}

/// A JWKS key this service cannot verify signatures with (skipped, and logged).
struct Skipped {
    kid: String,
    /// `Some(alg)` when the key's `alg` is not a signature algorithm of its type.
    alg: Option<String>,
    encryption: bool,
}

/// Logs the keys of a JWKS that were skipped.
fn log_skipped(skipped: &[Skipped]) {
    for s in skipped {
        let kid = s.kid.as_str();
        if s.encryption {
            tracing::info!(kid, "JWKS: skipping an encryption key");
        } else if let Some(alg) = &s.alg {
            tracing::warn!(kid, alg = %alg, "JWKS: skipping a key whose algorithm is not a signature this service verifies");
        } else {
            tracing::warn!(kid, "JWKS: skipping a key that cannot verify signatures");
        }
    }
}

/// The usable keys of a JWKS document and the skipped ones; an error when it does not parse or
/// holds no usable key.
fn jwks_keys(json: &str) -> Result<(Vec<VerifyKey>, Vec<Skipped>), AuthConfigError> {
    let (keys, skipped) = usable_jwks_keys(json)?;
    if keys.is_empty() {
        log_skipped(&skipped);
        return Err(AuthConfigError::BadJwks(
            "it holds no key this service can verify signatures with".into(),
        ));
    }
    Ok((keys, skipped))
}

/// The keys of a JWKS this service can verify with (possibly none), and those it skipped.
fn usable_jwks_keys(json: &str) -> Result<(Vec<VerifyKey>, Vec<Skipped>), AuthConfigError> {
    let set: JwkSet =
        serde_json::from_str(json).map_err(|e| AuthConfigError::BadJwks(e.to_string()))?;
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for jwk in &set.keys {
        let kid = jwk.common.key_id.as_deref().unwrap_or("-").to_owned();
        // Keys for encryption, or of a kind or algorithm this service cannot verify with, are
        // skipped: an identity provider's set often holds some.
        if matches!(
            jwk.common.public_key_use,
            Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
        ) {
            skipped.push(Skipped {
                kid,
                alg: None,
                encryption: true,
            });
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            skipped.push(Skipped {
                kid,
                alg: None,
                encryption: false,
            });
            continue;
        };
        let algorithms = match jwk.common.key_algorithm {
            Some(alg) => match format!("{alg:?}").parse::<Algorithm>() {
                Ok(a) if key.family().algorithms().contains(&a) => vec![a],
                _ => {
                    skipped.push(Skipped {
                        kid,
                        alg: Some(format!("{alg:?}")),
                        encryption: false,
                    });
                    continue;
                }
            },
            None => key.family().algorithms().to_vec(),
        };
        keys.push(VerifyKey {
            key,
            algorithms,
            kid: jwk.common.key_id.clone(),
        });
    }
    Ok((keys, skipped))
}
