//! `PROVISIONER_JWT_JWKS_URL` against a JWKS server on 127.0.0.1 that rotates its keys, counts
//! its hits, fails on demand and goes down: a rotated key verifies without a restart, a burst of
//! unknown key ids makes at most one fetch per window, the last good keys outlive a failing or
//! stopped server, the periodic refresh picks up new keys, the service starts (answering 401)
//! while the server is down; and the setting's checks at start.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use futures::future::join_all;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use provisioner::jwks::HttpJwksSource;
use provisioner_api::auth::JwksRefresh;
use provisioner_api::{AuthConfig, JwtVerifier};
use provisioner_core::secret::MasterKey;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Db, TestApp, spawn_app_with};

const KEY_A: &[u8] = include_bytes!("../keys/ec_a.pem");
const KEY_B: &[u8] = include_bytes!("../keys/ec_b.pem");
const KEY_C: &[u8] = include_bytes!("../keys/ec_c.pem");

fn key(kid: &str) -> EncodingKey {
    let pem = match kid {
        "a" => KEY_A,
        "b" => KEY_B,
        "c" => KEY_C,
        other => panic!("no test key {other}"),
    };
    EncodingKey::from_ec_pem(pem).expect("EC key")
}

/// A JWKS of the public halves of `kids`.
fn jwks(kids: &[&str]) -> String {
    let keys = kids
        .iter()
        .map(|kid| {
            let mut jwk = Jwk::from_encoding_key(&key(kid), Algorithm::ES256).expect("jwk");
            jwk.common.key_id = Some((*kid).to_owned());
            jwk
        })
        .collect();
    serde_json::to_string(&JwkSet { keys }).expect("json")
}

/// An ES256 admin token signed with key `kid`, announcing `as_kid`.
fn signed(kid: &str, as_kid: &str) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(as_kid.to_owned());
    let claims = json!({"sub": "idp-user", "exp": chrono::Utc::now().timestamp() + 600, "scope": "provisioner:admin"});
    jsonwebtoken::encode(&h, &claims, &key(kid)).expect("sign")
}

fn token_of(kid: &str) -> String {
    signed(kid, kid)
}

/// What the JWKS server answers.
struct Answer {
    status: u16,
    body: String,
    delay: Duration,
    max_age: Option<u64>,
    location: Option<String>,
    hits: usize,
}

/// An identity provider's JWKS endpoint on 127.0.0.1.
struct JwksServer {
    url: String,
    answer: Arc<Mutex<Answer>>,
    handle: actix_web::dev::ServerHandle,
}

impl JwksServer {
    async fn start(kids: &[&str]) -> Self {
        let answer = Arc::new(Mutex::new(Answer {
            status: 200,
            body: jwks(kids),
            delay: Duration::ZERO,
            max_age: None,
            location: None,
            hits: 0,
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!(
            "http://127.0.0.1:{}/.well-known/jwks.json",
            listener.local_addr().unwrap().port()
        );
        let data = web::Data::new(answer.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/.well-known/jwks.json", web::get().to(serve))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            url,
            answer,
            handle,
        }
    }
    fn set(&self, f: impl FnOnce(&mut Answer)) {
        f(&mut self.answer.lock().unwrap());
    }
    fn serve(&self, kids: &[&str]) {
        let body = jwks(kids);
        self.set(|a| {
            a.status = 200;
            a.body = body;
        });
    }
    fn hits(&self) -> usize {
        self.answer.lock().unwrap().hits
    }
    /// Stops listening (connections are refused from then on).
    async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

async fn serve(answer: web::Data<Arc<Mutex<Answer>>>) -> HttpResponse {
    let (status, body, delay, max_age, location) = {
        let mut a = answer.lock().unwrap();
        a.hits += 1;
        (
            a.status,
            a.body.clone(),
            a.delay,
            a.max_age,
            a.location.clone(),
        )
    };
    tokio::time::sleep(delay).await;
    let mut resp = HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
    resp.content_type("application/json");
    if let Some(secs) = max_age {
        resp.insert_header(("cache-control", format!("public, max-age={secs}")));
    }
    if let Some(to) = location {
        resp.insert_header(("location", to));
    }
    resp.body(body)
}

/// A verifier of the server's JWKS alone, with the given refresh policy (in milliseconds).
fn verifier(server: &JwksServer, min_interval_ms: u64, interval_ms: u64) -> Arc<JwtVerifier> {
    let refresh = JwksRefresh {
        interval: Duration::from_millis(interval_ms),
        min_interval: Duration::from_millis(min_interval_ms),
        retry: Duration::from_millis(50),
        fetch_timeout: Duration::from_millis(800),
    };
    let source = HttpJwksSource::new(&server.url, refresh.fetch_timeout).expect("source");
    Arc::new(
        JwtVerifier::new(&AuthConfig {
            jwks_source: Some(Arc::new(source)),
            jwks_refresh: refresh,
            ..AuthConfig::default()
        })
        .expect("verifier"),
    )
}

/// `n` concurrent verifications of `token` (each may refresh); whether each succeeded.
async fn burst(v: &Arc<JwtVerifier>, token: &str, n: usize) -> Vec<bool> {
    join_all((0..n).map(|_| {
        let (v, token) = (v.clone(), token.to_owned());
        tokio::spawn(async move { v.verify_refreshing(&token).await.is_ok() })
    }))
    .await
    .into_iter()
    .map(|r| r.expect("task"))
    .collect()
}

async fn get_tenants(app: &TestApp, token: &str) -> StatusCode {
    app.call(Method::GET, "/v1/tenants", Some(token), None)
        .await
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_unknown_key_ids_makes_one_fetch_per_window() {
    // Arrange: a slowish server, a 1.5 s window.
    let server = JwksServer::start(&["a"]).await;
    server.set(|a| a.delay = Duration::from_millis(150));
    let v = verifier(&server, 1500, 600_000);
    let remote = v.remote_jwks().unwrap().clone();
    assert_eq!(remote.refresh().await, Ok(1));
    assert!(v.verify(&token_of("a")).is_ok());
    server.serve(&["a", "b"]);
    // Act: key b's tokens right after the start fetch.
    let early = burst(&v, &token_of("b"), 30).await;
    // Assert: nothing fetched within the window.
    assert!(early.iter().all(|ok| !ok));
    assert_eq!(server.hits(), 1);
    // Act: after the window, a burst.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let late = burst(&v, &token_of("b"), 30).await;
    // Assert: one fetch, which every request of the burst waited for.
    assert!(late.iter().all(|ok| *ok), "{late:?}");
    assert_eq!(server.hits(), 2);
    // Made-up key ids within the new window fetch nothing.
    let made_up = burst(&v, &signed("c", "made-up"), 30).await;
    assert!(made_up.iter().all(|ok| !ok));
    assert_eq!(server.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_good_keys_outlive_a_failing_or_stopped_jwks_server() {
    // Arrange
    let server = JwksServer::start(&["a"]).await;
    let v = verifier(&server, 1, 600_000);
    let remote = v.remote_jwks().unwrap().clone();
    remote.refresh().await.expect("first fetch");
    let big = format!(
        r#"{{"keys": [], "padding": "{}"}}"#,
        "x".repeat(provisioner::jwks::MAX_JWKS_BYTES)
    );
    type Case = (&'static str, &'static str, Box<dyn Fn(&mut Answer)>);
    let cases: Vec<Case> = vec![
        ("503", "503", Box::new(|a| a.status = 503)),
        (
            "not a JWKS",
            "invalid",
            Box::new(|a| {
                a.status = 200;
                a.body = "<html>maintenance</html>".into();
            }),
        ),
        (
            "too large",
            "larger than",
            Box::new(move |a| {
                a.status = 200;
                a.body = big.clone();
            }),
        ),
        (
            "too slow",
            "",
            Box::new(|a| {
                a.body = jwks(&["b"]);
                a.delay = Duration::from_secs(3);
            }),
        ),
        (
            "redirected to plain http elsewhere",
            "redirected to a URL that must be https://",
            Box::new(|a| {
                a.delay = Duration::ZERO;
                a.status = 302;
                a.location = Some("http://idp.example.com/jwks".into());
            }),
        ),
    ];
    for (name, reason, case) in cases {
        server.set(|a| case(a));
        // Act
        let forced = remote.refresh().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let unknown = v.verify_refreshing(&token_of("b")).await;
        // Assert
        let err = forced.expect_err(name);
        if reason.is_empty() {
            assert!(
                err.contains("timed out") || err.contains("no answer within"),
                "{name}: {err}"
            );
        } else {
            assert!(err.contains(reason), "{name}: {err}");
        }
        assert!(unknown.is_err(), "{name}");
        assert!(v.verify(&token_of("a")).is_ok(), "{name}: key a kept");
        assert_eq!(remote.key_ids(), ["a"], "{name}");
    }
    // The server goes down altogether.
    server.set(|a| {
        a.delay = Duration::ZERO;
        a.location = None;
    });
    server.stop().await;
    let hits = server.hits();
    let err = remote.refresh().await.unwrap_err();
    assert!(!err.is_empty());
    assert_eq!(server.hits(), hits, "the server is down");
    assert!(v.verify_refreshing(&token_of("b")).await.is_err());
    assert!(v.verify_refreshing(&token_of("a")).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_periodic_refresh_picks_up_a_new_key_over_http() {
    // Arrange: a 200 ms period.
    let server = JwksServer::start(&["a"]).await;
    let v = verifier(&server, 100, 200);
    let remote = v.remote_jwks().unwrap().clone();
    remote.refresh().await.unwrap();
    let refresher = tokio::spawn(remote.clone().run());
    // Act: the provider adds key c.
    server.serve(&["a", "c"]);
    // Assert: `verify` never fetches, so only the periodic refresh can bring it.
    let mut picked_up = false;
    for _ in 0..100 {
        if v.verify(&token_of("c")).is_ok() {
            picked_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    refresher.abort();
    assert!(picked_up, "hits: {}", server.hits());
    assert!(server.hits() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_follows_a_key_rotation_of_its_jwks_url_without_a_restart() {
    // Arrange: the service fetches the server's keys at start (and has its HS256 secret too).
    let server = JwksServer::start(&["a"]).await;
    let url = server.url.clone();
    let app = spawn_app_with(Db::Sqlite, move |s| {
        s.jwt_jwks_url = Some(url);
        s.jwt_jwks_min_refresh_secs = 1;
    })
    .await
    .expect("app");
    assert_eq!(server.hits(), 1, "fetched at start");
    // Act + Assert: key a verifies, so does the HS256 admin token.
    assert_eq!(get_tenants(&app, &token_of("a")).await, StatusCode::OK);
    assert_eq!(get_tenants(&app, &app.admin).await, StatusCode::OK);
    // The provider rotates to key b: once the window has passed, b's first token refreshes.
    server.serve(&["b"]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get_tenants(&app, &token_of("b")).await, StatusCode::OK);
    assert_eq!(server.hits(), 2);
    // Key a is gone from the provider's set: refused.
    assert_eq!(
        get_tenants(&app, &token_of("a")).await,
        StatusCode::UNAUTHORIZED
    );
    // The server goes down: key b keeps working, unknown key ids are refused.
    server.stop().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        get_tenants(&app, &token_of("c")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(get_tenants(&app, &token_of("b")).await, StatusCode::OK);
    assert!(
        crate::helpers::captured_logs().contains("JWKS fetch failed"),
        "the failed refresh is logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_starts_while_its_jwks_url_fails_and_loads_the_keys_later() {
    // Arrange: the URL is the only verifier and answers 503 at start.
    let server = JwksServer::start(&["a"]).await;
    server.set(|a| a.status = 503);
    let url = server.url.clone();
    let app = spawn_app_with(Db::Sqlite, move |s| {
        s.jwt_hs256_secret = None;
        s.jwt_jwks_url = Some(url);
        s.jwt_jwks_min_refresh_secs = 1;
        s.jwt_jwks_refresh_secs = 600;
    })
    .await
    .expect("the service starts");
    // Act + Assert: 401 while no key is held.
    assert_eq!(
        get_tenants(&app, &token_of("a")).await,
        StatusCode::UNAUTHORIZED
    );
    // The provider recovers: the background retry (or the next token) loads the keys.
    server.set(|a| a.status = 200);
    let mut status = StatusCode::UNAUTHORIZED;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = get_tenants(&app, &token_of("a")).await;
        if status == StatusCode::OK {
            break;
        }
    }
    assert_eq!(status, StatusCode::OK, "hits: {}", server.hits());
}

const BIN: &str = env!("CARGO_BIN_EXE_provisioner");

/// `provisioner serve` with only `vars` among the `PROVISIONER_*` variables; its stderr.
fn serve_fails_with(vars: &[(&str, &str)]) -> String {
    let (db, _dir) = provisioner_storage::testing::fresh_sqlite_url();
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("PROVISIONER_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("serve")
        .env("PROVISIONER_LOG", "warn")
        .env("PROVISIONER_DATABASE_URL", &db)
        .env("PROVISIONER_MASTER_KEY", MasterKey::generate().to_base64())
        .env("PROVISIONER_METRICS_LISTEN", "off")
        .env("PROVISIONER_LISTEN", "127.0.0.1:0");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the binary");
    assert!(!out.status.success(), "serve must refuse to start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn serve_names_the_jwks_url_among_the_verifiers_and_refuses_plain_http_elsewhere() {
    let err = serve_fails_with(&[]);
    assert!(err.contains("PROVISIONER_JWT_JWKS_URL"), "{err}");
    let err = serve_fails_with(&[(
        "PROVISIONER_JWT_JWKS_URL",
        "http://idp.example.com/.well-known/jwks.json",
    )]);
    assert!(
        err.contains("PROVISIONER_JWT_JWKS_URL") && err.contains("https://"),
        "{err}"
    );
    let err = serve_fails_with(&[("PROVISIONER_JWT_JWKS_URL", "not a url")]);
    assert!(err.contains("PROVISIONER_JWT_JWKS_URL"), "{err}");
}
