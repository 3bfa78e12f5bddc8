//! Standard Webhooks 1.0 symmetric signatures and endpoint secrets.
//!
//! A secret is shown as `whsec_` + standard base64 (with padding) of 24 to 64 random bytes; the
//! decoded bytes are the HMAC key. A signature is `v1,` + base64(HMAC-SHA256(key,
//! "{msg_id}.{timestamp}.{body}")); the `webhook-signature` header lists one per secret,
//! space-separated, so receivers accept during a rotation whichever key they hold.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// What every secret starts with.
pub const SECRET_PREFIX: &str = "whsec_";
/// The shortest key the specification allows, in bytes.
pub const MIN_SECRET_BYTES: usize = 24;
/// The longest key the specification allows, in bytes.
pub const MAX_SECRET_BYTES: usize = 64;
/// The length of the keys [`new_secret`] makes, in bytes.
pub const NEW_SECRET_BYTES: usize = 32;

/// Why a string is not a usable secret (never shows the secret).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// It does not start with `whsec_`.
    #[error("a webhook secret must start with `whsec_`")]
    MissingPrefix,
    /// What follows `whsec_` is not standard base64 (with padding).
    #[error("a webhook secret must be `whsec_` followed by standard base64")]
    NotBase64,
    /// The key is shorter than 24 or longer than 64 bytes (its length).
    #[error("a webhook secret's key must be 24 to 64 bytes long, not {0}")]
    BadLength(usize),
}

/// The HMAC key of a `whsec_...` secret: the prefix stripped, the rest base64-decoded, 24 to 64
/// bytes. The caller should wipe the key when done (e.g. keep it in a `Zeroizing`).
pub fn parse_secret(secret: &str) -> Result<Vec<u8>, SecretError> {
    let encoded = secret
        .strip_prefix(SECRET_PREFIX)
        .ok_or(SecretError::MissingPrefix)?;
    let key = Zeroizing::new(
        STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::NotBase64)?,
    );
    if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
        return Err(SecretError::BadLength(key.len()));
    }
    Ok(key.to_vec())
}

/// A new secret: `whsec_` + base64 of 32 bytes from the operating system's random source.
///
/// Panics only if the operating system cannot give random bytes (as `uuid::Uuid::new_v4` would).
pub fn new_secret() -> SecretString {
    let mut key = Zeroizing::new([0u8; NEW_SECRET_BYTES]);
    getrandom::fill(&mut key[..]).expect("the operating system's random source failed");
    // Sized exactly, so that turning it into the secret's boxed `str` does not reallocate and
    // leave an unwiped copy behind.
    let mut shown = String::with_capacity(SECRET_PREFIX.len() + NEW_SECRET_BYTES.div_ceil(3) * 4);
    shown.push_str(SECRET_PREFIX);
    STANDARD.encode_string(&key[..], &mut shown);
    SecretString::from(shown)
}

/// One `v1,...` signature of `{msg_id}.{timestamp}.{body}` with `key`.
fn sign(key: &[u8], msg_id: &str, timestamp: i64, body: &str) -> String {
    // HMAC takes keys of any length: `new_from_slice` cannot fail.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        unreachable!("HMAC accepts keys of any length")
    };
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header for a message: one `v1,<base64>` entry per secret, in the
/// order given, space-separated. `body` must be exactly the bytes sent.
///
/// A secret that is not valid ([`parse_secret`]) is skipped, with a warning naming its position
/// (never its value); if none is valid the header is empty, and must not be sent.
pub fn signature_header(
    secrets: &[SecretString],
    msg_id: &str,
    timestamp: i64,
    body: &str,
) -> String {
    let mut entries = Vec::with_capacity(secrets.len());
    for (index, secret) in secrets.iter().enumerate() {
        match parse_secret(secret.expose_secret()) {
            Ok(key) => {
                let key = Zeroizing::new(key);
                entries.push(sign(&key, msg_id, timestamp, body));
            }
            Err(error) => tracing::warn!(
                secret.index = index,
                error.message = %error,
                "skipping a webhook secret that cannot sign"
            ),
        }
    }
    entries.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};
    use standardwebhooks::Webhook;

    const VECTOR_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const VECTOR_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const VECTOR_TS: i64 = 1649367553;
    const VECTOR_BODY: &str = r#"{"email":"test@example.com","username":"test_user"}"#;
    const VECTOR_SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn headers(id: &str, ts: i64, signature: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("webhook-id", HeaderValue::from_str(id).unwrap());
        h.insert(
            "webhook-timestamp",
            HeaderValue::from_str(&ts.to_string()).unwrap(),
        );
        h.insert(
            "webhook-signature",
            HeaderValue::from_str(signature).unwrap(),
        );
        h
    }

    #[test]
    fn the_specification_vector() {
        assert_eq!(
            signature_header(&[secret(VECTOR_SECRET)], VECTOR_ID, VECTOR_TS, VECTOR_BODY),
            VECTOR_SIG
        );
        // The reference library agrees.
        let wh = Webhook::new(VECTOR_SECRET).unwrap();
        assert_eq!(
            wh.sign(VECTOR_ID, VECTOR_TS, VECTOR_BODY.as_bytes())
                .unwrap(),
            VECTOR_SIG
        );
    }

    #[test]
    fn two_secrets_give_two_entries_each_verifiable() {
        let (a, b) = (new_secret(), new_secret());
        let ts = now();
        let body = r#"{"type":"user.provisioned","data":{}}"#;
        let header = signature_header(&[a.clone(), b.clone()], "msg_1", ts, body);
        let entries: Vec<&str> = header.split(' ').collect();
        assert_eq!(entries.len(), 2);
        assert!(entries.iter().all(|e| e.starts_with("v1,")));
        assert_ne!(entries[0], entries[1]);
        assert_eq!(
            entries[0],
            signature_header(std::slice::from_ref(&a), "msg_1", ts, body)
        );

        let h = headers("msg_1", ts, &header);
        for s in [&a, &b] {
            Webhook::new(s.expose_secret())
                .unwrap()
                .verify(body.as_bytes(), &h)
                .expect("either key verifies");
        }
        let other = new_secret();
        assert!(
            Webhook::new(other.expose_secret())
                .unwrap()
                .verify(body.as_bytes(), &h)
                .is_err()
        );
        // A changed body, id or timestamp does not verify.
        let wh = Webhook::new(a.expose_secret()).unwrap();
        assert!(wh.verify(b"{}", &h).is_err());
        assert!(
            wh.verify(body.as_bytes(), &headers("msg_2", ts, &header))
                .is_err()
        );
        assert!(
            wh.verify(body.as_bytes(), &headers("msg_1", ts + 1, &header))
                .is_err()
        );
    }

    #[test]
    fn a_new_secret_round_trips() {
        let s = new_secret();
        let shown = s.expose_secret();
        assert!(shown.starts_with("whsec_"));
        assert_eq!(parse_secret(shown).unwrap().len(), NEW_SECRET_BYTES);
        let wh = Webhook::new(shown).unwrap();
        let ts = now();
        let ours = signature_header(std::slice::from_ref(&s), "msg_x", ts, "{}");
        assert_eq!(wh.sign("msg_x", ts, b"{}").unwrap(), ours);
        wh.verify(b"{}", &headers("msg_x", ts, &ours)).unwrap();
        // Random: two secrets differ.
        assert_ne!(new_secret().expose_secret(), shown);
    }

    #[test]
    fn secrets_are_validated() {
        let of_len = |n: usize| format!("whsec_{}", STANDARD.encode(vec![7u8; n]));
        assert_eq!(parse_secret(&of_len(24)).unwrap().len(), 24);
        assert_eq!(parse_secret(&of_len(64)).unwrap().len(), 64);
        assert_eq!(parse_secret(&of_len(23)), Err(SecretError::BadLength(23)));
        assert_eq!(parse_secret(&of_len(65)), Err(SecretError::BadLength(65)));
        assert_eq!(parse_secret("whsec_"), Err(SecretError::BadLength(0)));
        assert_eq!(
            parse_secret("C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
            Err(SecretError::MissingPrefix)
        );
        assert_eq!(
            parse_secret("whsec_not base64!"),
            Err(SecretError::NotBase64)
        );
        // URL-safe alphabet is not the standard one.
        assert_eq!(
            parse_secret("whsec_C2FVsBQIhrscChlQIMV-b5sSYspob7oD"),
            Err(SecretError::NotBase64)
        );
        // Errors never show the secret.
        let e = parse_secret("whsec_c2VjcmV0").unwrap_err().to_string();
        assert!(!e.contains("c2VjcmV0"), "{e}");
    }

    #[test]
    fn invalid_secrets_are_skipped() {
        let good = secret(VECTOR_SECRET);
        let bad = secret("whsec_short");
        assert_eq!(
            signature_header(&[bad.clone(), good], VECTOR_ID, VECTOR_TS, VECTOR_BODY),
            VECTOR_SIG
        );
        assert_eq!(
            signature_header(&[bad], VECTOR_ID, VECTOR_TS, VECTOR_BODY),
            ""
        );
        assert_eq!(signature_header(&[], VECTOR_ID, VECTOR_TS, VECTOR_BODY), "");
    }
}
