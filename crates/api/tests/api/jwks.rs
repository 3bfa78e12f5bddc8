//! A JWKS fetched from the identity provider (a fake [`JwksSource`] here; the HTTPS source is
//! tested in the binary's tests): a rotated key verifies without a restart, unknown key ids
//! refresh at most once per window (one shared fetch), a failed refresh keeps the keys held, the
//! periodic refresh (and a shorter `max-age`) picks up new keys.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::{BoxFuture, join_all};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use provisioner_api::auth::{JwksDocument, JwksRefresh, JwksSource};
use provisioner_api::{AuthConfig, AuthConfigError, JwtVerifier};
use serde_json::json;

use crate::helpers::*;

const RSA_PRIVATE: &[u8] = include_bytes!("../keys/rsa_private.pem");
const EC_PRIVATE: &[u8] = include_bytes!("../keys/ec_private.pem");
const ED_PRIVATE: &[u8] = include_bytes!("../keys/ed_private.pem");

/// Key "a" (RS256), "b" (ES256) and "c" (EdDSA).
fn key(kid: &str) -> (Algorithm, EncodingKey) {
    match kid {
        "a" => (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        ),
        "b" => (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(),
        ),
        "c" => (
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(ED_PRIVATE).unwrap(),
        ),
        other => panic!("no test key {other}"),
    }
}

/// A JWKS holding the public halves of `kids`.
fn jwks(kids: &[&str]) -> String {
    let keys = kids
        .iter()
        .map(|kid| {
            let (alg, k) = key(kid);
            let mut jwk = Jwk::from_encoding_key(&k, alg).unwrap();
            jwk.common.key_id = Some((*kid).to_owned());
            jwk
        })
        .collect();
    serde_json::to_string(&JwkSet { keys }).unwrap()
}

/// An admin token signed with key `kid` (announced under `as_kid`).
fn signed(kid: &str, as_kid: &str) -> String {
    let (alg, k) = key(kid);
    let mut h = Header::new(alg);
    h.kid = Some(as_kid.to_owned());
    let claims = json!({"sub": "idp-user", "exp": chrono::Utc::now().timestamp() + 600, "scope": "provisioner:admin"});
    jsonwebtoken::encode(&h, &claims, &k).unwrap()
}

fn token_of(kid: &str) -> String {
    signed(kid, kid)
}

/// An identity provider in memory: what it answers, how slowly, and how often it was asked.
struct FakeIdp {
    answer: Mutex<Result<String, String>>,
    max_age: Mutex<Option<Duration>>,
    delay: Duration,
    fetches: AtomicUsize,
}

impl FakeIdp {
    fn new(kids: &[&str], delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            answer: Mutex::new(Ok(jwks(kids))),
            max_age: Mutex::new(None),
            delay,
            fetches: AtomicUsize::new(0),
        })
    }
    fn serve(&self, kids: &[&str]) {
        *self.answer.lock().unwrap() = Ok(jwks(kids));
    }
    fn serve_text(&self, text: &str) {
        *self.answer.lock().unwrap() = Ok(text.to_owned());
    }
    fn fail(&self) {
        *self.answer.lock().unwrap() = Err("connection refused".into());
    }
    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl JwksSource for FakeIdp {
    fn describe(&self) -> String {
        "fake-idp".into()
    }
    fn fetch(&self) -> BoxFuture<'static, Result<JwksDocument, String>> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let answer = self.answer.lock().unwrap().clone();
        let max_age = *self.max_age.lock().unwrap();
        let delay = self.delay;
        async move {
            tokio::time::sleep(delay).await;
            answer.map(|json| JwksDocument { json, max_age })
        }
        .boxed()
    }
}

fn policy(min_interval_ms: u64, interval_ms: u64) -> JwksRefresh {
    JwksRefresh {
        interval: Duration::from_millis(interval_ms),
        min_interval: Duration::from_millis(min_interval_ms),
        retry: Duration::from_millis(20),
        fetch_timeout: Duration::from_secs(5),
    }
}

fn remote_config(idp: &Arc<FakeIdp>, refresh: JwksRefresh) -> AuthConfig {
    AuthConfig {
        jwks_source: Some(idp.clone()),
        jwks_refresh: refresh,
        ..AuthConfig::default()
    }
}

#[actix_web::test]
async fn a_rotated_key_verifies_without_a_restart() {
    // Arrange: the provider signs with key a.
    let idp = FakeIdp::new(&["a"], Duration::ZERO);
    let app = spawn_with(remote_config(&idp, policy(200, 600_000)), settings()).await;
    // Act + Assert: the first token loads the set (nothing held yet).
    let r = app
        .call("GET", "/v1/tenants", Some(&token_of("a")), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(idp.fetches(), 1);
    // The provider rotates to key b; once the window has passed, its first token refreshes.
    idp.serve(&["b"]);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let r = app
        .call("GET", "/v1/tenants", Some(&token_of("b")), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(idp.fetches(), 2);
    // Key a was withdrawn: its tokens are refused (and within the window, fetch nothing).
    app.call("GET", "/v1/tenants", Some(&token_of("a")), None)
        .await
        .problem(401, "unauthenticated");
    assert_eq!(idp.fetches(), 2);
    // A token claiming key b's id but signed with key a is refused.
    app.call("GET", "/v1/tenants", Some(&signed("a", "b")), None)
        .await
        .problem(401, "unauthenticated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_unknown_key_ids_shares_one_fetch_per_window() {
    // Arrange
    let idp = FakeIdp::new(&["a"], Duration::from_millis(100));
    let v = Arc::new(JwtVerifier::new(&remote_config(&idp, policy(400, 600_000))).unwrap());
    let remote = v.remote_jwks().unwrap().clone();
    assert_eq!(remote.refresh().await, Ok(1));
    let burst = |token: String| {
        join_all((0..20).map(|_| {
            let (v, token) = (v.clone(), token.clone());
            tokio::spawn(async move { v.verify_refreshing(&token).await.is_ok() })
        }))
    };
    // Act: key b appears at the provider right after the start fetch.
    idp.serve(&["a", "b"]);
    let early = burst(token_of("b")).await;
    // Assert: within the window nothing is fetched; every token is refused.
    assert!(early.iter().all(|r| !*r.as_ref().unwrap()));
    assert_eq!(idp.fetches(), 1);
    // Act: after the window, a burst makes one fetch, which every request waits for.
    tokio::time::sleep(Duration::from_millis(450)).await;
    let late = burst(token_of("b")).await;
    // Assert
    assert!(late.iter().all(|r| *r.as_ref().unwrap()), "{late:?}");
    assert_eq!(idp.fetches(), 2);
    assert_eq!(remote.fetches(), 2);
    // Made-up key ids right after fetch nothing more.
    let made_up = burst(signed("c", "made-up")).await;
    assert!(made_up.iter().all(|r| !*r.as_ref().unwrap()));
    assert_eq!(idp.fetches(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_gives_up_does_not_cancel_the_fetch_for_the_others() {
    // Arrange: a slow provider.
    let idp = FakeIdp::new(&["a"], Duration::from_millis(300));
    let v = Arc::new(JwtVerifier::new(&remote_config(&idp, policy(60_000, 600_000))).unwrap());
    // Act: a first request gives up before the answer; a second one comes meanwhile.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(50),
        v.verify_refreshing(&token_of("a")),
    )
    .await;
    assert!(gave_up.is_err(), "the first request timed out");
    let second = v.verify_refreshing(&token_of("a")).await;
    // Assert: the second joined the fetch still under way (a new one is rate-limited).
    assert!(second.is_ok(), "{second:?}");
    assert_eq!(idp.fetches(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_refresh_keeps_the_last_good_keys() {
    // Arrange
    let idp = FakeIdp::new(&["a"], Duration::ZERO);
    let v = JwtVerifier::new(&remote_config(&idp, policy(20, 600_000))).unwrap();
    let remote = v.remote_jwks().unwrap().clone();
    remote.refresh().await.unwrap();
    for broken in [
        None,
        Some("<html>503 Service Unavailable</html>"),
        Some("{\"keys\": 7}"),
    ] {
        match broken {
            None => idp.fail(),
            Some(text) => idp.serve_text(text),
        }
        // Act: a forced refresh, then an unknown key id after the window.
        let forced = remote.refresh().await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        let unknown = v.verify_refreshing(&token_of("b")).await;
        // Assert
        assert!(forced.is_err(), "{broken:?}");
        assert!(unknown.is_err(), "{broken:?}");
        assert!(v.verify(&token_of("a")).is_ok(), "{broken:?}: key a kept");
        assert!(
            v.verify_refreshing(&token_of("a")).await.is_ok(),
            "{broken:?}"
        );
        assert_eq!(remote.key_ids(), ["a"]);
    }
    // The provider is back: its new set replaces the held one.
    idp.serve(&["b"]);
    assert_eq!(remote.refresh().await, Ok(1));
    assert!(v.verify(&token_of("b")).is_ok());
    assert!(v.verify(&token_of("a")).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_set_without_usable_keys_withdraws_the_held_ones() {
    // Arrange
    let idp = FakeIdp::new(&["a"], Duration::ZERO);
    let v = JwtVerifier::new(&remote_config(&idp, policy(20, 600_000))).unwrap();
    let remote = v.remote_jwks().unwrap().clone();
    remote.refresh().await.unwrap();
    assert!(v.verify(&token_of("a")).is_ok());
    for revoking in [
        r#"{"keys": []}"#,
        r#"{"keys": [{"kty": "RSA", "use": "enc", "alg": "RSA-OAEP", "n": "AQAB", "e": "AQAB"}]}"#,
    ] {
        idp.serve(&["a"]);
        remote.refresh().await.unwrap();
        assert!(v.verify(&token_of("a")).is_ok());
        // Act: the identity provider publishes a set with no key this service can use.
        idp.serve_text(revoking);
        let refreshed = remote.refresh().await;
        // Assert: it is the provider's word, so key a no longer verifies.
        assert_eq!(refreshed, Ok(0), "{revoking}");
        assert!(
            v.verify(&token_of("a")).is_err(),
            "{revoking}: key a withdrawn"
        );
        assert!(remote.key_ids().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_periodic_refresh_picks_up_a_new_key() {
    // Arrange: a long window for unknown key ids, a short period.
    let idp = FakeIdp::new(&["a"], Duration::ZERO);
    let v = JwtVerifier::new(&remote_config(&idp, policy(100, 150))).unwrap();
    let remote = v.remote_jwks().unwrap().clone();
    remote.refresh().await.unwrap();
    let refresher = tokio::spawn(remote.clone().run());
    // Act
    idp.serve(&["a", "c"]);
    // Assert: `verify` never fetches; only the periodic refresh can bring key c.
    let mut picked_up = false;
    for _ in 0..100 {
        if v.verify(&token_of("c")).is_ok() {
            picked_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    refresher.abort();
    assert!(picked_up, "key c never loaded; fetches: {}", idp.fetches());
    assert!(v.verify(&token_of("a")).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shorter_max_age_brings_the_periodic_refresh_forward() {
    // Arrange: a 10 min period, but the provider says max-age 100 ms.
    let idp = FakeIdp::new(&["a"], Duration::ZERO);
    *idp.max_age.lock().unwrap() = Some(Duration::from_millis(100));
    let v = JwtVerifier::new(&remote_config(&idp, policy(50, 600_000))).unwrap();
    let remote = v.remote_jwks().unwrap().clone();
    remote.refresh().await.unwrap();
    let refresher = tokio::spawn(remote.clone().run());
    // Act
    idp.serve(&["b"]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    refresher.abort();
    // Assert
    assert!(
        v.verify(&token_of("b")).is_ok(),
        "fetches: {}",
        idp.fetches()
    );
    assert!(idp.fetches() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_source_alone_is_a_verifier_refusing_tokens_until_its_keys_arrive() {
    // Arrange: the provider is down when the service starts.
    let idp = FakeIdp::new(&["a"], Duration::ZERO);
    idp.fail();
    let v = JwtVerifier::new(&remote_config(&idp, policy(50, 600_000))).unwrap();
    let remote = v.remote_jwks().unwrap().clone();
    assert!(remote.refresh().await.is_err());
    let refresher = tokio::spawn(remote.clone().run());
    // Act + Assert: refused while nothing is held.
    assert!(v.verify_refreshing(&token_of("a")).await.is_err());
    // The provider comes back: the background retry loads the keys.
    idp.serve(&["a"]);
    let mut ok = false;
    for _ in 0..100 {
        if v.verify(&token_of("a")).is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    refresher.abort();
    assert!(ok, "fetches: {}", idp.fetches());
    // The error naming the verifiers mentions the URL.
    let none = JwtVerifier::new(&AuthConfig::default()).unwrap_err();
    assert!(matches!(none, AuthConfigError::NoVerifier));
    assert!(none.to_string().contains("JWKS URL"), "{none}");
}

#[actix_web::test]
async fn a_fetched_jwks_combines_with_an_hs256_secret() {
    // Arrange: HS256 secret and a fetched JWKS.
    let idp = FakeIdp::new(&["a"], Duration::ZERO);
    let cfg = AuthConfig {
        jwks_source: Some(idp.clone()),
        jwks_refresh: policy(60_000, 600_000),
        ..hs_config()
    };
    let app = spawn_with(cfg, settings()).await;
    // Act + Assert: the HS256 token needs no fetch; the JWKS token loads the set.
    let r = app.call("GET", "/v1/tenants", Some(&admin()), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(idp.fetches(), 0);
    let r = app
        .call("GET", "/v1/tenants", Some(&token_of("a")), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(idp.fetches(), 1);
    let dbg = format!("{:?}", remote_config(&idp, JwksRefresh::default()));
    assert!(dbg.contains("fake-idp"), "{dbg}");
}
