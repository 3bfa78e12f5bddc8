//! Bearer-token verification: every attack is a 401; RS256, ES256, EdDSA and JWKS keys work.

use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use provisioner_api::{AuthConfig, AuthConfigError, Claims, JwtVerifier, mint_hs256};
use secrecy::SecretString;
use serde_json::json;

use crate::helpers::*;

const RSA_PRIVATE: &[u8] = include_bytes!("../keys/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../keys/rsa_public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("../keys/ec_private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("../keys/ec_public.pem");
const ED_PRIVATE: &[u8] = include_bytes!("../keys/ed_private.pem");
const ED_PUBLIC: &[u8] = include_bytes!("../keys/ed_public.pem");

fn b64(v: &serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

fn sign(
    alg: Algorithm,
    key: &EncodingKey,
    claims: &serde_json::Value,
    kid: Option<&str>,
) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&h, claims, key).expect("sign")
}

fn good_claims() -> serde_json::Value {
    json!({"sub": "alice", "exp": chrono::Utc::now().timestamp() + 600, "scope": "provisioner:admin"})
}

fn verifier(cfg: AuthConfig) -> JwtVerifier {
    JwtVerifier::new(&cfg).expect("verifier")
}

#[actix_web::test]
async fn a_request_without_a_valid_token_is_401_with_www_authenticate() {
    // Arrange
    let app = spawn().await;
    let hs = EncodingKey::from_secret(SECRET.as_bytes());
    let now = chrono::Utc::now().timestamp();
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&good_claims())
    );
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("garbage", Some("not-a-jwt".into())),
        ("alg none", Some(none)),
        (
            "expired",
            Some(sign(
                Algorithm::HS256,
                &hs,
                &json!({"sub": "a", "exp": now - 3600, "scope": "provisioner:admin"}),
                None,
            )),
        ),
        (
            "no exp",
            Some(sign(
                Algorithm::HS256,
                &hs,
                &json!({"sub": "a", "scope": "provisioner:admin"}),
                None,
            )),
        ),
        (
            "no sub",
            Some(sign(
                Algorithm::HS256,
                &hs,
                &json!({"exp": now + 600, "scope": "provisioner:admin"}),
                None,
            )),
        ),
        (
            "wrong secret",
            Some(sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(b"other-secret"),
                &good_claims(),
                None,
            )),
        ),
        (
            "HS512 with the right secret",
            Some(sign(Algorithm::HS512, &hs, &good_claims(), None)),
        ),
    ];
    for (name, token) in cases {
        // Act
        let r = app.call("GET", "/v1/tenants", token.as_deref(), None).await;
        // Assert
        assert_eq!(r.status, 401, "{name}: {}", r.text());
        r.problem(401, "unauthenticated");
        assert!(
            r.header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")),
            "{name}"
        );
    }
    let r = app.call("GET", "/v1/tenants", Some(&admin()), None).await;
    assert_eq!(r.status, 200);
}

#[actix_web::test]
async fn a_non_bearer_authorization_header_is_401() {
    let app = spawn().await;
    let req = actix_web::test::TestRequest::get()
        .uri("/v1/tenants")
        .insert_header(("authorization", "Basic YTpi"));
    app.send(req).await.problem(401, "unauthenticated");
}

#[actix_web::test]
async fn issuer_and_audience_are_enforced_when_configured() {
    // Arrange
    let cfg = AuthConfig {
        issuer: Some("https://idp".into()),
        audience: Some("provisioner".into()),
        ..hs_config()
    };
    let app = spawn_with(cfg, settings()).await;
    let secret = SecretString::from(SECRET);
    let mk = |iss: Option<&str>, aud: Option<&str>| {
        let c = Claims {
            iss: iss.map(Into::into),
            aud: aud.map(Into::into),
            ..claims("provisioner:admin", None)
        };
        mint_hs256(&secret, &c).expect("mint")
    };
    // Act + Assert
    for (iss, aud) in [
        (None, Some("provisioner")),
        (Some("https://idp"), None),
        (Some("https://evil"), Some("provisioner")),
        (Some("https://idp"), Some("other")),
    ] {
        let r = app
            .call("GET", "/v1/tenants", Some(&mk(iss, aud)), None)
            .await;
        r.problem(401, "unauthenticated");
    }
    let r = app
        .call(
            "GET",
            "/v1/tenants",
            Some(&mk(Some("https://idp"), Some("provisioner"))),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[actix_web::test]
async fn an_rsa_public_key_accepts_rs256_and_refuses_algorithm_confusion() {
    // Arrange
    let app = spawn_with(
        AuthConfig {
            public_key_pem: Some(RSA_PUBLIC.to_vec()),
            ..AuthConfig::default()
        },
        settings(),
    )
    .await;
    let rs = sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("rsa"),
        &good_claims(),
        None,
    );
    // The classic confusion attack: HS256 keyed with the public key's PEM bytes.
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(RSA_PUBLIC),
        &good_claims(),
        None,
    );
    // Act + Assert
    assert_eq!(
        app.call("GET", "/v1/tenants", Some(&rs), None).await.status,
        200
    );
    app.call("GET", "/v1/tenants", Some(&confused), None)
        .await
        .problem(401, "unauthenticated");
}

#[test]
fn ec_and_ed25519_pem_keys_are_detected_and_verify() {
    let ec = verifier(AuthConfig {
        public_key_pem: Some(EC_PUBLIC.to_vec()),
        ..AuthConfig::default()
    });
    let t = sign(
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(EC_PRIVATE).expect("ec"),
        &good_claims(),
        None,
    );
    assert_eq!(ec.verify(&t).expect("es256").sub, "alice");
    let ed = verifier(AuthConfig {
        public_key_pem: Some(ED_PUBLIC.to_vec()),
        ..AuthConfig::default()
    });
    let t = sign(
        Algorithm::EdDSA,
        &EncodingKey::from_ed_pem(ED_PRIVATE).expect("ed"),
        &good_claims(),
        None,
    );
    assert_eq!(ed.verify(&t).expect("eddsa").sub, "alice");
    // A token of another family is refused by each.
    let rs = sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("rsa"),
        &good_claims(),
        None,
    );
    assert!(ec.verify(&rs).is_err());
    assert!(ed.verify(&rs).is_err());
}

#[test]
fn a_jwks_selects_the_key_by_kid() {
    // Arrange
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("rsa");
    let ec = EncodingKey::from_ec_pem(EC_PRIVATE).expect("ec");
    let mut k1 = Jwk::from_encoding_key(&rsa, Algorithm::RS256).expect("jwk");
    k1.common.key_id = Some("k1".into());
    let mut k2 = Jwk::from_encoding_key(&ec, Algorithm::ES256).expect("jwk");
    k2.common.key_id = Some("k2".into());
    let jwks = serde_json::to_string(&JwkSet { keys: vec![k1, k2] }).expect("json");
    let v = verifier(AuthConfig {
        jwks_json: Some(jwks),
        ..AuthConfig::default()
    });
    // Act + Assert
    assert!(
        v.verify(&sign(Algorithm::RS256, &rsa, &good_claims(), Some("k1")))
            .is_ok()
    );
    assert!(
        v.verify(&sign(Algorithm::ES256, &ec, &good_claims(), Some("k2")))
            .is_ok()
    );
    assert!(
        v.verify(&sign(Algorithm::RS256, &rsa, &good_claims(), Some("k2")))
            .is_err(),
        "wrong kid"
    );
    assert!(
        v.verify(&sign(Algorithm::RS256, &rsa, &good_claims(), Some("nope")))
            .is_err(),
        "unknown kid"
    );
    assert!(
        v.verify(&sign(Algorithm::RS256, &rsa, &good_claims(), None))
            .is_err(),
        "no kid, several keys"
    );
}

#[test]
fn a_verifier_needs_a_key_source() {
    assert!(matches!(
        JwtVerifier::new(&AuthConfig::default()),
        Err(AuthConfigError::NoVerifier)
    ));
    let bad = AuthConfig {
        public_key_pem: Some(
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".to_vec(),
        ),
        ..AuthConfig::default()
    };
    assert!(matches!(
        JwtVerifier::new(&bad),
        Err(AuthConfigError::BadPem)
    ));
    assert!(
        JwtVerifier::new(&AuthConfig {
            jwks_json: Some("{".into()),
            ..AuthConfig::default()
        })
        .is_err()
    );
}

#[test]
fn auth_config_debug_redacts_the_secret() {
    let dbg = format!("{:?}", hs_config());
    assert!(!dbg.contains(SECRET), "{dbg}");
}

#[test]
fn nbf_is_checked_and_the_hs256_secret_has_32_bytes() {
    let v = verifier(hs_config());
    let hs = EncodingKey::from_secret(SECRET.as_bytes());
    let now = chrono::Utc::now().timestamp();
    let later =
        json!({"sub": "alice", "exp": now + 600, "nbf": now + 300, "scope": "provisioner:admin"});
    let err = v
        .verify(&sign(Algorithm::HS256, &hs, &later, None))
        .unwrap_err();
    assert_eq!(err, "token not valid yet");
    // Within the leeway it is accepted.
    let soon =
        json!({"sub": "alice", "exp": now + 600, "nbf": now + 5, "scope": "provisioner:admin"});
    assert!(v.verify(&sign(Algorithm::HS256, &hs, &soon, None)).is_ok());
    assert!(matches!(
        JwtVerifier::new(&AuthConfig {
            hs256_secret: Some(SecretString::from("31-bytes-is-one-too-few-0123456")),
            ..AuthConfig::default()
        }),
        Err(AuthConfigError::ShortSecret)
    ));
}

#[test]
fn scope_may_be_an_array_and_scp_counts_too() {
    let v = verifier(hs_config());
    let hs = EncodingKey::from_secret(SECRET.as_bytes());
    let exp = chrono::Utc::now().timestamp() + 600;
    for (claims, want) in [
        (
            json!({"sub": "a", "exp": exp, "scope": ["provisioner:read", "provisioner:write"]}),
            "provisioner:read provisioner:write",
        ),
        (
            json!({"sub": "a", "exp": exp, "scp": "provisioner:read"}),
            "provisioner:read",
        ),
        (
            json!({"sub": "a", "exp": exp, "scp": ["provisioner:admin"], "scope": "openid"}),
            "openid provisioner:admin",
        ),
    ] {
        let c = v
            .verify(&sign(Algorithm::HS256, &hs, &claims, None))
            .expect("verifies");
        assert_eq!(c.permissions().collect::<Vec<_>>().join(" "), want);
    }
}

#[test]
fn a_jwks_with_keys_it_cannot_use_loads_the_usable_ones() {
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("rsa");
    let mut sig = Jwk::from_encoding_key(&rsa, Algorithm::RS256).expect("jwk");
    sig.common.key_id = Some("sig".into());
    let mut enc: serde_json::Value = serde_json::to_value(&sig).expect("json");
    enc["kid"] = json!("enc");
    enc["use"] = json!("enc");
    enc["alg"] = json!("RSA-OAEP");
    let mut odd = serde_json::to_value(&sig).expect("json");
    odd["kid"] = json!("odd");
    odd["alg"] = json!("ES256");
    let set = json!({"keys": [enc, odd, serde_json::to_value(&sig).expect("json")]});
    let v = verifier(AuthConfig {
        jwks_json: Some(set.to_string()),
        ..AuthConfig::default()
    });
    assert!(
        v.verify(&sign(Algorithm::RS256, &rsa, &good_claims(), Some("sig")))
            .is_ok()
    );
    assert!(
        v.verify(&sign(Algorithm::RS256, &rsa, &good_claims(), Some("enc")))
            .is_err()
    );
    // Only keys it cannot use: refused at start, with a clear reason.
    let only = json!({"keys": [set["keys"][0].clone()]});
    let err = JwtVerifier::new(&AuthConfig {
        jwks_json: Some(only.to_string()),
        ..AuthConfig::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("no key"), "{err}");
}
