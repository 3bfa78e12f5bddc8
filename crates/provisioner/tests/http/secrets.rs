//! Secrets never reach logs or the database file in clear; caller rate limit (429).

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Db, SIM_PAT, TestApp, assert_problem, captured_logs, spawn_app_with};

crate::on_both_backends!(
    no_secret_in_logs_or_database,
    callers_over_their_rate_get_429
);

async fn no_secret_in_logs_or_database(app: TestApp) {
    // Arrange: a run that touches every secret: PAT (create, replace, a wrong one), keys
    // (create, rotate, reveal, look up, delete), tokens.
    app.create_tenant("acme").await;
    let w = app.token("provisioner:write provisioner:secrets", Some("acme"));
    let mut secrets = vec![SIM_PAT.to_owned(), w.clone(), app.admin.clone()];
    let first = app.put_user("acme", "s1", &w, json!({})).await;
    secrets.push(first.body["secret"].as_str().unwrap().to_owned());
    let rot = app
        .call(
            Method::POST,
            "/v1/tenants/acme/users/s1/rotate-key",
            Some(&w),
            Some(json!({"grace_seconds": 60})),
        )
        .await;
    secrets.push(rot.body["secret"].as_str().unwrap().to_owned());
    app.call(
        Method::POST,
        "/v1/tenants/acme/users/s1/reveal-key",
        Some(&w),
        None,
    )
    .await;
    app.call(
        Method::POST,
        "/v1/keys/lookup",
        Some(&app.admin),
        Some(json!({"secret": secrets[3]})),
    )
    .await;
    let wrong = "wrong-pat-should-not-be-logged";
    app.call(
        Method::PUT,
        "/v1/tenants/acme/upstream-credential",
        Some(&app.admin),
        Some(json!({"pat": wrong})),
    )
    .await;
    secrets.push(wrong.to_owned());
    app.put_user("acme", "s2", &w, json!({})).await;
    app.call(Method::DELETE, "/v1/tenants/acme/users/s2", Some(&w), None)
        .await;
    use secrecy::ExposeSecret as _;
    secrets.push(app.jwt_secret.expose_secret().to_owned());

    // Assert: the logs hold none of them (and did log something).
    let logs = captured_logs();
    assert!(logs.contains("/v1/tenants"), "logs were captured");
    for s in &secrets {
        assert!(!logs.contains(s.as_str()), "a secret reached the logs");
    }
    // SQLite: the database file (and its WAL) holds none in clear.
    if let Some(path) = app.db_url.strip_prefix("sqlite://") {
        let mut bytes = std::fs::read(path).unwrap();
        if let Ok(wal) = std::fs::read(format!("{path}-wal")) {
            bytes.extend(wal);
        }
        for s in &secrets[..5] {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "a secret is in the SQLite file in clear"
            );
        }
    }
}

async fn callers_over_their_rate_get_429(app: TestApp) {
    let db = if app.db_url.starts_with("postgres") {
        Db::Postgres
    } else {
        Db::Sqlite
    };
    let app = spawn_app_with(db, |s| s.caller_rate_limit = 2)
        .await
        .expect("app");
    let mut limited = None;
    for _ in 0..20 {
        let r = app
            .call(Method::GET, "/v1/tenants", Some(&app.admin), None)
            .await;
        if r.status.as_u16() == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("a 429 within 20 quick requests at 2/s");
    assert_problem(&r, 429, "rate_limited");
    assert!(r.headers.get("retry-after").is_some());
}
