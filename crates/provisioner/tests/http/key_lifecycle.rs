//! Key lifecycle on both backends, through the real service and its workers: a profile's
//! key-age policy rotates keys that reach the age (once each, the grace kept), and a
//! tenant-wide rotation job replaces every active key and runs to completion.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use provisioner::config::Settings;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{SIM_USER, TestApp};

crate::on_both_backends!(
    settings = super::quick_key_age;
    key_age_and_tenant_wide_rotation_run_to_completion,
);

fn quick_key_age(s: &mut Settings) {
    s.key_age_interval_secs = 1;
}

async fn user(app: &TestApp, id: &str) -> Value {
    let r = app
        .call(
            Method::GET,
            &format!("/v1/tenants/acme/users/{id}"),
            Some(&app.admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body
}

fn keys_per_app(app: &TestApp) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for k in app.sim.keys(SIM_USER) {
        for a in k.app_ids {
            *out.entry(a).or_insert(0) += 1;
        }
    }
    out
}

/// Polls until every user's key differs from `before` (or the deadline).
async fn wait_rotated(app: &TestApp, before: &BTreeMap<String, String>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut pending = Vec::new();
        for (id, fp) in before {
            if user(app, id).await["key"]["fingerprint"] == json!(fp) {
                pending.push(id.clone());
            }
        }
        if pending.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not rotated: {pending:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn fingerprints(app: &TestApp, ids: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for id in ids {
        let fp = user(app, id).await["key"]["fingerprint"]
            .as_str()
            .unwrap()
            .to_owned();
        out.insert((*id).to_owned(), fp);
    }
    out
}

async fn key_age_and_tenant_wide_rotation_run_to_completion(app: TestApp) {
    app.create_tenant("acme").await;
    let tenant = app
        .call(Method::GET, "/v1/tenants/acme", Some(&app.admin), None)
        .await;
    let default = tenant.body["default_scope_profile"]
        .as_str()
        .expect("a default profile")
        .to_owned();
    let profile = app
        .call(
            Method::GET,
            &format!("/v1/tenants/acme/scope-profiles/{default}"),
            Some(&app.admin),
            None,
        )
        .await;
    let scopes = profile.body["scopes"].clone();
    let r = app
        .call(
            Method::PUT,
            &format!("/v1/tenants/acme/scope-profiles/{default}"),
            Some(&app.admin),
            Some(json!({"scopes": scopes, "max_key_age_seconds": 3600, "rotation_grace_seconds": 600})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["max_key_age_seconds"], json!(3600));
    let ids = ["ann", "bob", "cy"];
    for id in ids {
        let r = app
            .call(
                Method::PUT,
                &format!("/v1/tenants/acme/users/{id}"),
                Some(&app.admin),
                Some(json!({})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    // GET shows when the key is due: an hour after it was created.
    let ann = user(&app, "ann").await;
    let created =
        chrono::DateTime::parse_from_rfc3339(ann["key"]["created_at"].as_str().unwrap()).unwrap();
    let due = chrono::DateTime::parse_from_rfc3339(
        ann["key"]["rotation_due_at"]
            .as_str()
            .expect("rotation_due_at"),
    )
    .unwrap();
    assert_eq!(due - created, chrono::Duration::hours(1));

    // The keys age by two hours (the clock cannot be moved for a real service).
    let store = provisioner_storage::SqlStore::connect(&app.db_url)
        .await
        .expect("store");
    sqlx::query("UPDATE users SET key_created_at = key_created_at - 7200000")
        .execute(provisioner_storage::testing::pool(&store))
        .await
        .expect("age the keys");
    let before = fingerprints(&app, &ids).await;
    wait_rotated(&app, &before, "key-age policy").await;
    // Once each, the replaced keys kept for the grace: two keys per app for now.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after_policy = fingerprints(&app, &ids).await;
    for id in ids {
        assert_ne!(after_policy[id], before[id]);
    }
    assert!(
        keys_per_app(&app).values().all(|n| *n == 2),
        "{:?}",
        keys_per_app(&app)
    );
    let second_look = fingerprints(&app, &ids).await;
    assert_eq!(second_look, after_policy, "rotated more than once");

    // "Our key export leaked": every active key replaced by one job, no grace.
    let r = app
        .call(
            Method::POST,
            "/v1/tenants/acme/rotate-keys",
            Some(&app.admin),
            Some(json!({"grace_seconds": 0})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let job = r.body["job_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let view = loop {
        let v = app
            .call(
                Method::GET,
                &format!("/v1/jobs/{job}"),
                Some(&app.admin),
                None,
            )
            .await;
        if v.body["status"] != json!("running") {
            break v.body;
        }
        assert!(Instant::now() < deadline, "the job did not end: {}", v.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(view["status"], json!("succeeded"), "{view}");
    assert_eq!(
        (view["total"].clone(), view["done"].clone()),
        (json!(3), json!(3))
    );
    let after_job = fingerprints(&app, &ids).await;
    for id in ids {
        assert_ne!(
            after_job[id], after_policy[id],
            "{id} not rotated by the job"
        );
    }
    // No grace, and the policy's replaced keys deleted first: one key per app.
    assert!(
        keys_per_app(&app).values().all(|n| *n == 1),
        "{:?}",
        keys_per_app(&app)
    );
}
