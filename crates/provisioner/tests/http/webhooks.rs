//! Signed webhooks over HTTP (docs/webhooks.md; shared reference webhooks.md §6 "Tests"): a
//! loopback receiver ([`crate::webhook_receiver`]) verifies every delivery with the
//! `standardwebhooks` crate and counts deliveries per `webhook-id`.
//!
//! - every event type is delivered, signed, listed by the messages API under its `webhook-id`,
//!   and carries no secret;
//! - failure injection: a 500 is retried (~5 s) with the same `webhook-id`; a 429 with
//!   `Retry-After` waits at least a minute; a hang past the timeout is recorded as a timeout;
//!   a 410 disables the endpoint;
//! - a rotated secret: both secrets sign for a while (at most three at once);
//! - resend and recover keep the `webhook-id`; a 3xx is a failure and is not followed; a resend
//!   racing a hung attempt leaves the message delivered;
//! - a credential in an endpoint's URL is never shown in attempts or logged;
//! - SSRF: with private targets not allowed (the default), nothing reaches 127.0.0.1 (each
//!   loopback spelling refused when the endpoint is created, or else at delivery);
//! - kill -9 of the real binary between commit and send, and between send and record: the
//!   message arrives after the restart (the second time with the same `webhook-id`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use provisioner::config::Settings;
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{SIM_PAT, SIM_USER, TestApp, assert_problem, enc};
use crate::process::{
    Server, ServerEnv, call, free_port, short_fingerprint, simulator, tenant_body,
};
use crate::webhook_receiver::{Received, Receiver, Reply, verify};

crate::on_both_backends!(
    settings = super::loopback;
    every_event_type_is_delivered_signed_and_verifiable,
    a_500_is_retried_with_the_same_webhook_id,
    a_429_waits_a_minute_and_a_410_disables,
    a_rotated_secret_and_the_previous_one_both_sign,
    resend_and_recover_keep_the_webhook_id_and_redirects_are_not_followed,
    a_credential_in_the_url_is_never_shown_or_logged,
    a_resend_during_a_hung_attempt_ends_delivered,
);

/// Deliveries to loopback over `http://` (tests only), a timeout that a loaded machine meets.
fn loopback(s: &mut Settings) {
    s.webhook_allow_http = true;
    s.webhook_allow_private_targets = true;
    s.webhook_timeout_secs = 5;
}

/// A hang past a one-second timeout.
mod timeout {
    use super::*;

    crate::on_both_backends!(settings = super::one_second; a_hang_past_the_timeout_is_a_timeout);
}

fn one_second(s: &mut Settings) {
    loopback(s);
    s.webhook_timeout_secs = 1;
}

/// Private targets refused (the default); `http://` allowed so that only the address decides.
mod ssrf {
    use super::*;

    crate::on_both_backends!(settings = super::private_refused; loopback_targets_get_nothing);
}

fn private_refused(s: &mut Settings) {
    s.webhook_allow_http = true;
    s.webhook_allow_private_targets = false;
}

// --- helpers --------------------------------------------------------------------------------

const TENANT: &str = "acme";

/// Creates an endpoint (201, the secret shown once); `(id, secret)`.
async fn create_endpoint(app: &TestApp, url: &str, event_types: &[&str]) -> (String, String) {
    let r = app
        .call(
            Method::POST,
            &format!("/v1/tenants/{TENANT}/webhook-endpoints"),
            Some(&app.admin),
            Some(json!({"url": url, "description": "test receiver", "event_types": event_types})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.body["id"].as_str().expect("id").to_owned();
    let secret = r.body["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_"), "{}", r.text);
    assert_eq!(r.body["enabled"], true, "{}", r.text);
    (id, secret)
}

async fn get_endpoint(app: &TestApp, ep: &str) -> Value {
    let r = app
        .call(
            Method::GET,
            &format!("/v1/tenants/{TENANT}/webhook-endpoints/{ep}"),
            Some(&app.admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.body.get("secret").is_none(), "{}", r.text);
    r.body
}

/// The endpoint's messages (one page of up to 1000).
async fn messages(app: &TestApp, ep: &str) -> Vec<Value> {
    let r = app
        .call(
            Method::GET,
            &format!("/v1/tenants/{TENANT}/webhook-endpoints/{ep}/messages?limit=1000"),
            Some(&app.admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.body["next_cursor"].is_null(), "{}", r.text);
    r.body["items"].as_array().expect("items").clone()
}

async fn attempts(app: &TestApp, ep: &str, msg: &str) -> Vec<Value> {
    let r = app
        .call(
            Method::GET,
            &format!("/v1/tenants/{TENANT}/webhook-endpoints/{ep}/messages/{msg}/attempts"),
            Some(&app.admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body["items"].as_array().expect("items").clone()
}

/// Polls the endpoint's messages every 50 ms until `pred` holds; panics after `within`.
async fn wait_messages(
    app: &TestApp,
    ep: &str,
    what: &str,
    within: Duration,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let m = messages(app, ep).await;
        if pred(&m) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "not within {within:?}: {what}; messages {}",
            Value::Array(m)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ts(v: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("a time: {v}")))
        .unwrap_or_else(|e| panic!("{v}: {e}"))
        .to_utc()
}

/// What every delivery must look like (Standard Webhooks 1.0 headers, a verifying signature,
/// the documented body), whatever its event.
fn assert_well_formed(r: &Received, secret: &str) {
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/hook"));
    assert!(
        r.header("content-type").starts_with("application/json"),
        "{:?}",
        r.headers
    );
    let id = r.id();
    assert!(
        id.starts_with("msg_") && !id.contains('.'),
        "webhook-id {id:?}"
    );
    let t: i64 = r
        .header("webhook-timestamp")
        .parse()
        .expect("webhook-timestamp is Unix seconds");
    assert!(
        (chrono::Utc::now().timestamp() - t).abs() < 300,
        "webhook-timestamp {t}"
    );
    assert!(
        r.header("webhook-signature")
            .split(' ')
            .all(|s| s.starts_with("v1,")),
        "{}",
        r.header("webhook-signature")
    );
    assert!(r.verified, "{id}: did not verify on arrival");
    r.verify_with(secret)
        .unwrap_or_else(|e| panic!("{id} does not verify: {e}"));
    let body = r.json();
    assert!(body["type"].is_string(), "{body}");
    ts(&body["timestamp"]);
    let stamp = body["timestamp"].as_str().unwrap_or_default();
    assert!(
        stamp.len() == 24 && stamp.ends_with('Z'),
        "timestamp as 2026-12-03T07:00:00.000Z: {stamp}"
    );
    assert_eq!(body["data"]["tenant_id"], TENANT, "{body}");
}

/// Sends a SCIM request to `acme`.
async fn scim(app: &TestApp, token: &str, method: Method, path: &str, body: Value) -> Value {
    let r = app
        .http
        .request(method, format!("{}/scim/v2/{TENANT}{path}", app.base))
        .bearer_auth(token)
        .header("content-type", "application/scim+json")
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .expect("SCIM request");
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    assert!(status.is_success(), "SCIM {path}: {status} {text}");
    serde_json::from_str(&text).expect("SCIM JSON")
}

async fn wait_user(app: &TestApp, ext: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = app
            .call(
                Method::GET,
                &format!("/v1/tenants/{TENANT}/users/{}", enc(ext)),
                Some(&app.admin),
                None,
            )
            .await;
        if r.status == StatusCode::OK && r.body["status"] == status {
            return r.body;
        }
        assert!(
            Instant::now() < deadline,
            "user {ext} not {status} in 20 s: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every key secret upstream now (a key's id is its secret).
fn upstream_secrets(app: &TestApp) -> Vec<String> {
    app.sim.keys(SIM_USER).into_iter().map(|k| k.id).collect()
}

// --- a. Every event type ----------------------------------------------------------------------

async fn every_event_type_is_delivered_signed_and_verifiable(app: TestApp) {
    let started = Instant::now();
    app.create_tenant(TENANT).await;
    let rx = Receiver::ok().await;
    let (ep, secret) = create_endpoint(&app, &rx.url, &[]).await;
    rx.set_secrets(&[&secret]);
    let w = app.token("provisioner:write provisioner:read", Some(TENANT));
    // Secrets that must never appear in a delivery.
    let mut secrets: Vec<String> = vec![secret.clone(), SIM_PAT.to_owned()];

    // user.provisioned, user.key_rotated, user.deprovisioned.
    let r = app.put_user(TENANT, "u1", &w, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let first_key = r.body["secret"].as_str().expect("secret").to_owned();
    secrets.push(first_key.clone());
    let r = app
        .call(
            Method::POST,
            &format!("/v1/tenants/{TENANT}/users/u1/rotate-key"),
            Some(&w),
            Some(json!({"grace_seconds": 0})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let second_key = r.body["secret"].as_str().expect("secret").to_owned();
    secrets.push(second_key.clone());

    // user.key_revoked and user.reactivated through SCIM (policy `revoke_key`).
    let r = app
        .call(
            Method::PUT,
            &format!("/v1/tenants/{TENANT}/scim"),
            Some(&app.admin),
            Some(json!({"external_id_from": "user_name", "on_deactivate": "revoke_key"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app
        .call(
            Method::POST,
            &format!("/v1/tenants/{TENANT}/scim/tokens"),
            Some(&app.admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let scim_token = r.body["token"].as_str().expect("token").to_owned();
    secrets.push(scim_token.clone());
    let person = "scim.person@example.com";
    let created = scim(
        &app,
        &scim_token,
        Method::POST,
        "/Users",
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": person,
            "name": {"givenName": "Scim", "familyName": "Person"},
            "emails": [{"primary": true, "value": person, "type": "work"}],
            "active": true
        }),
    )
    .await;
    let scim_id = created["id"].as_str().expect("SCIM id").to_owned();
    wait_user(&app, person, "active").await;
    secrets.extend(upstream_secrets(&app));
    let active = |on: bool| {
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "replace", "path": "active", "value": on}]})
    };
    scim(
        &app,
        &scim_token,
        Method::PATCH,
        &format!("/Users/{scim_id}"),
        active(false),
    )
    .await;
    wait_user(&app, person, "suspended").await;
    scim(
        &app,
        &scim_token,
        Method::PATCH,
        &format!("/Users/{scim_id}"),
        active(true),
    )
    .await;
    wait_user(&app, person, "active").await;
    secrets.extend(upstream_secrets(&app));

    let r = app
        .call(
            Method::DELETE,
            &format!("/v1/tenants/{TENANT}/users/u1"),
            Some(&w),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "deleted", "{}", r.text);

    // job.completed.
    let r = app
        .call(
            Method::POST,
            &format!("/v1/tenants/{TENANT}/users:batch"),
            Some(&w),
            Some(json!({"users": [{"external_id": "b1"}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let job_id = r.body["job_id"].as_str().expect("job_id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = app
            .call(Method::GET, &format!("/v1/jobs/{job_id}"), Some(&w), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        if !r.body["finished_at"].is_null() {
            assert_eq!(r.body["done"], 1, "{}", r.text);
            break;
        }
        assert!(Instant::now() < deadline, "job still running: {}", r.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    secrets.extend(upstream_secrets(&app));

    // drift.detected: b1's key deleted behind the service's back; a report (which changes
    // nothing and sends nothing), then an admin's repair (which sends the event).
    let b1 = wait_user(&app, "b1", "active").await;
    let b1_app = b1["app"]["id"].as_str().expect("app id").to_owned();
    let b1_key = app
        .sim
        .keys(SIM_USER)
        .into_iter()
        .find(|k| k.app_ids == [b1_app.clone()])
        .expect("b1's key upstream");
    assert!(app.sim.remove_key(SIM_USER, &b1_key.id));
    for (token, repair) in [(&w, false), (&app.admin, true)] {
        let r = app
            .call(
                Method::POST,
                &format!("/v1/tenants/{TENANT}/reconcile"),
                Some(token),
                Some(json!({"repair": repair})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(
            r.body["missing_keys"].as_array().map(Vec::len),
            Some(1),
            "{}",
            r.text
        );
    }
    secrets.extend(upstream_secrets(&app));

    // A second endpoint answering 410, for the PAT rejection only.
    let gone = Receiver::start(Reply::status(410)).await;
    let (gone_ep, gone_secret) =
        create_endpoint(&app, &gone.url, &["tenant.upstream_credential_rejected"]).await;
    gone.set_secrets(&[&gone_secret]);
    secrets.push(gone_secret.clone());

    // user.provisioning_failed and tenant.upstream_credential_rejected: the PAT is revoked.
    assert!(app.sim.revoke_pat(SIM_PAT));
    let r = app.put_user(TENANT, "doomed", &w, json!({})).await;
    assert_problem(&r, 502, "upstream_rejected");

    // Everything arrives at the first endpoint; the second one answered 410 and is disabled.
    let all_types = [
        "user.provisioned",
        "user.provisioning_failed",
        "user.key_rotated",
        "user.key_revoked",
        "user.reactivated",
        "user.deprovisioned",
        "job.completed",
        "drift.detected",
        "tenant.upstream_credential_rejected",
        "webhook_endpoint.disabled",
    ];
    let got = rx
        .wait_until("every event type", Duration::from_secs(30), |got| {
            let types: BTreeSet<String> = got.iter().map(Received::event_type).collect();
            all_types.iter().all(|t| types.contains(*t))
        })
        .await;
    let listed = wait_messages(
        &app,
        &ep,
        "every message delivered",
        Duration::from_secs(10),
        |m| m.len() >= got.len() && m.iter().all(|x| x["status"] == "delivered"),
    )
    .await;
    let got = rx.received();

    // Each delivery: signed, verifiable, listed under its webhook-id with its type, once.
    let listed_types: BTreeMap<String, String> = listed
        .iter()
        .map(|m| {
            (
                m["event_id"].as_str().unwrap().to_owned(),
                m["event_type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(listed_types.len(), listed.len(), "event ids are unique");
    for r in &got {
        assert_well_formed(r, &secret);
        assert_eq!(
            listed_types.get(&r.id()),
            Some(&r.event_type()),
            "{} ({}) is not a listed message",
            r.id(),
            r.event_type()
        );
        assert_eq!(
            rx.count_id(&r.id()),
            1,
            "{} delivered more than once",
            r.id()
        );
        let text = String::from_utf8_lossy(&r.body);
        for s in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "a secret in {}: {text}",
                r.event_type()
            );
        }
        assert!(!text.contains("\"secret\""), "{text}");
    }
    let received_ids: BTreeSet<String> = got.iter().map(Received::id).collect();
    let listed_ids: BTreeSet<String> = listed_types.keys().cloned().collect();
    assert_eq!(received_ids, listed_ids, "received = listed");
    // Newest first; pages of 5 with the cursor give the same list.
    let order: Vec<&str> = listed
        .iter()
        .map(|m| m["event_id"].as_str().unwrap())
        .collect();
    let mut sorted = order.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(order, sorted, "newest first");
    let mut paged = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = app
            .call(
                Method::GET,
                &format!(
                    "/v1/tenants/{TENANT}/webhook-endpoints/{ep}/messages?limit=5&status=delivered{cursor}"
                ),
                Some(&app.admin),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        for m in r.body["items"].as_array().unwrap() {
            paged.push(m["event_id"].as_str().unwrap().to_owned());
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(paged, order, "paging");

    // The payloads.
    let one = |t: &str| {
        let v = rx.of_type(t);
        assert!(!v.is_empty(), "no {t}");
        v.into_iter().map(|r| r.json()).collect::<Vec<Value>>()
    };
    let of_user = |t: &str, ext: &str| {
        one(t)
            .into_iter()
            .find(|b| b["data"]["external_id"] == ext)
            .unwrap_or_else(|| panic!("no {t} of {ext}"))
    };
    let provisioned = of_user("user.provisioned", "u1");
    let rotated = of_user("user.key_rotated", "u1");
    let deprovisioned = of_user("user.deprovisioned", "u1");
    for b in [&provisioned, &rotated, &deprovisioned] {
        for k in [
            "status",
            "app_id",
            "key_fingerprint",
            "generation",
            "version",
        ] {
            assert!(b["data"].get(k).is_some(), "{k} missing: {b}");
        }
    }
    assert_eq!(provisioned["data"]["status"], "active");
    assert_eq!(
        provisioned["data"]["key_fingerprint"],
        short_fingerprint(&first_key)
    );
    assert_eq!(
        rotated["data"]["key_fingerprint"],
        short_fingerprint(&second_key)
    );
    assert_eq!(deprovisioned["data"]["status"], "deleted");
    let v = |b: &Value| b["data"]["version"].as_i64().expect("version");
    assert!(
        v(&provisioned) < v(&rotated) && v(&rotated) < v(&deprovisioned),
        "versions increase: {} {} {}",
        v(&provisioned),
        v(&rotated),
        v(&deprovisioned)
    );
    let revoked = of_user("user.key_revoked", person);
    let reactivated = of_user("user.reactivated", person);
    assert_eq!(revoked["data"]["status"], "suspended", "{revoked}");
    assert!(revoked["data"]["key_fingerprint"].is_null(), "{revoked}");
    assert_eq!(reactivated["data"]["status"], "active", "{reactivated}");
    assert!(v(&of_user("user.provisioned", person)) < v(&revoked));
    assert!(v(&revoked) < v(&reactivated));
    let failed = of_user("user.provisioning_failed", "doomed");
    assert_eq!(failed["data"]["status"], "failed", "{failed}");
    let job = &one("job.completed")[0];
    assert_eq!(job["data"]["job_id"], job_id.as_str(), "{job}");
    assert_eq!(job["data"]["done"], 1, "{job}");
    let drift = one("drift.detected");
    assert_eq!(drift.len(), 1, "the repair's, not the report's: {drift:?}");
    assert_eq!(drift[0]["data"]["missing_keys"], 1, "{}", drift[0]);
    let rejected = &one("tenant.upstream_credential_rejected")[0];
    assert_eq!(rejected["data"]["upstream_user_id"], SIM_USER, "{rejected}");
    let fp = rejected["data"]["pat_fingerprint"]
        .as_str()
        .unwrap_or_default();
    assert!(
        fp.len() == 8 && fp.chars().all(|c| c.is_ascii_hexdigit()),
        "{rejected}"
    );
    let disabled = one("webhook_endpoint.disabled");
    assert_eq!(disabled.len(), 1, "one disabling, one event: {disabled:?}");
    assert_eq!(disabled[0]["data"]["endpoint_id"], gone_ep.as_str());
    assert!(
        disabled[0]["data"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("410"),
        "{}",
        disabled[0]
    );

    // The 410 endpoint: sent only its type, verified, disabled.
    let g = gone.received();
    assert!(!g.is_empty());
    for r in &g {
        assert_well_formed(r, &gone_secret);
        assert_eq!(r.event_type(), "tenant.upstream_credential_rejected");
    }
    let e = get_endpoint(&app, &gone_ep).await;
    assert_eq!(e["enabled"], false, "{e}");
    assert!(
        e["disabled_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("410"),
        "{e}"
    );
    println!(
        "webhooks every-type: {} deliveries of {} types, all verified, in {:.1} s",
        got.len(),
        all_types.len(),
        started.elapsed().as_secs_f64()
    );
}

// --- b. Failure injection ---------------------------------------------------------------------

async fn a_500_is_retried_with_the_same_webhook_id(app: TestApp) {
    app.create_tenant(TENANT).await;
    let rx = Receiver::ok().await;
    rx.script([Reply::status(500)]);
    let (ep, secret) = create_endpoint(&app, &rx.url, &[]).await;
    rx.set_secrets(&[&secret]);
    let w = app.token("provisioner:write", Some(TENANT));
    let r = app.put_user(TENANT, "u1", &w, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    // The first attempt (500), then the retry ~5 s ±20 % later (200).
    let got = rx
        .wait_for_count(2, Duration::from_secs(15), Duration::from_millis(50))
        .await;
    assert_eq!(got[0].id(), got[1].id(), "the same webhook-id on the retry");
    assert_eq!(rx.count_id(&got[0].id()), 2);
    for r in &got {
        assert_well_formed(r, &secret);
        assert_eq!(r.event_type(), "user.provisioned");
    }
    assert_eq!(got[0].body, got[1].body, "the same body");
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(3_500) && gap <= Duration::from_millis(7_500),
        "the retry came {gap:?} after the first attempt (5 s ±20 %)"
    );
    let msg = got[0].id();
    let m = wait_messages(&app, &ep, "delivered", Duration::from_secs(5), |m| {
        m.len() == 1 && m[0]["status"] == "delivered"
    })
    .await;
    assert_eq!(m[0]["event_id"], msg.as_str());
    assert_eq!(m[0]["attempts"], 2, "{}", m[0]);
    assert_eq!(m[0]["last_status"], 200, "{}", m[0]);
    let a = attempts(&app, &ep, &msg).await;
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(a[0]["attempt"], 1);
    assert_eq!(a[0]["status_code"], 500, "{}", a[0]);
    assert!(
        a[0]["error"].as_str().unwrap_or_default().contains("500"),
        "{}",
        a[0]
    );
    assert_eq!(a[1]["attempt"], 2);
    assert_eq!(a[1]["status_code"], 200, "{}", a[1]);
    assert!(a[1]["error"].is_null(), "{}", a[1]);
    println!("webhooks 500-then-200: retried after {gap:?}, same webhook-id {msg}");
}

async fn a_429_waits_a_minute_and_a_410_disables(app: TestApp) {
    app.create_tenant(TENANT).await;
    let throttled = Receiver::start(Reply::Status(429, vec![("retry-after", "120".into())])).await;
    let gone = Receiver::start(Reply::status(410)).await;
    let (t_ep, t_secret) = create_endpoint(&app, &throttled.url, &["user.provisioned"]).await;
    let (g_ep, g_secret) = create_endpoint(&app, &gone.url, &["user.provisioned"]).await;
    throttled.set_secrets(&[&t_secret]);
    gone.set_secrets(&[&g_secret]);
    let w = app.token("provisioner:write", Some(TENANT));
    let r = app.put_user(TENANT, "u1", &w, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    // 429 with Retry-After: 120 → pending, next attempt at least a minute later (120 s: the
    // Retry-After lies between the scheduled delay, raised to a minute, and twice that).
    let got = throttled
        .wait_for_count(1, Duration::from_secs(10), Duration::from_millis(50))
        .await;
    assert_well_formed(&got[0], &t_secret);
    let msg = got[0].id();
    let m = wait_messages(
        &app,
        &t_ep,
        "the 429 recorded",
        Duration::from_secs(5),
        |m| m.len() == 1 && m[0]["attempts"] == 1,
    )
    .await;
    assert_eq!(m[0]["status"], "pending", "{}", m[0]);
    assert_eq!(m[0]["last_status"], 429, "{}", m[0]);
    let a = attempts(&app, &t_ep, &msg).await;
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["status_code"], 429, "{}", a[0]);
    let wait = ts(&m[0]["next_attempt_at"]) - ts(&a[0]["at"]);
    assert!(
        wait >= chrono::Duration::seconds(60),
        "next attempt {wait} after a 429 with Retry-After: 120"
    );
    assert!(
        (wait - chrono::Duration::seconds(120))
            .num_milliseconds()
            .abs()
            <= 1_000,
        "Retry-After 120 honoured: {wait}"
    );

    // 410 → the endpoint is disabled at once; the message failed.
    let got = gone
        .wait_for_count(1, Duration::from_secs(10), Duration::from_millis(50))
        .await;
    assert_well_formed(&got[0], &g_secret);
    let m = wait_messages(
        &app,
        &g_ep,
        "the 410 recorded",
        Duration::from_secs(5),
        |m| m.len() == 1 && m[0]["attempts"] == 1,
    )
    .await;
    assert_eq!(m[0]["status"], "failed", "{}", m[0]);
    assert_eq!(m[0]["last_status"], 410, "{}", m[0]);
    let e = get_endpoint(&app, &g_ep).await;
    assert_eq!(e["enabled"], false, "{e}");
    assert!(
        e["disabled_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("410"),
        "{e}"
    );

    // A later event: the throttled endpoint gets it at once, the disabled one nothing.
    let r = app.put_user(TENANT, "u2", &w, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    throttled
        .wait_for_count(2, Duration::from_secs(10), Duration::from_millis(50))
        .await;
    assert_eq!(throttled.count_id(&msg), 1, "the 429'd message waits");
    assert_eq!(gone.count(), 1, "nothing more to the disabled endpoint");
    assert_eq!(
        messages(&app, &g_ep).await.len(),
        1,
        "nothing queued for it"
    );
    println!("webhooks 429/410: next attempt {wait} after the 429; 410 disabled the endpoint");
}

async fn a_hang_past_the_timeout_is_a_timeout(app: TestApp) {
    app.create_tenant(TENANT).await;
    let rx = Receiver::start(Reply::Hang).await;
    let (ep, secret) = create_endpoint(&app, &rx.url, &[]).await;
    rx.set_secrets(&[&secret]);
    let w = app.token("provisioner:write", Some(TENANT));
    let r = app.put_user(TENANT, "u1", &w, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let got = rx
        .wait_for_count(1, Duration::from_secs(10), Duration::from_millis(50))
        .await;
    assert_well_formed(&got[0], &secret);
    let msg = got[0].id();
    let m = wait_messages(
        &app,
        &ep,
        "the timeout recorded",
        Duration::from_secs(10),
        |m| m.len() == 1 && m[0]["attempts"] == 1,
    )
    .await;
    assert_eq!(m[0]["status"], "pending", "{}", m[0]);
    assert!(m[0]["last_status"].is_null(), "{}", m[0]);
    let a = attempts(&app, &ep, &msg).await;
    assert_eq!(a.len(), 1, "{a:?}");
    assert!(a[0]["status_code"].is_null(), "{}", a[0]);
    let error = a[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("timed out"), "{}", a[0]);
    let took = a[0]["duration_ms"].as_i64().unwrap_or_default();
    assert!((900..5_000).contains(&took), "{}", a[0]);
    let wait = ts(&m[0]["next_attempt_at"]) - ts(&a[0]["at"]);
    assert!(
        wait >= chrono::Duration::seconds(60),
        "next attempt {wait} after a timeout"
    );
    // The sender gave up: the receiver's connection was closed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while rx.hanging() > 0 {
        assert!(Instant::now() < deadline, "the hung request is still open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rx.count(), 1);
    println!("webhooks hang: attempt recorded as {error:?} after {took} ms; next in {wait}");
}

// --- Resend, recover, redirects ----------------------------------------------------------------

async fn resend(app: &TestApp, ep: &str, msg: &str) {
    let r = app
        .call(
            Method::POST,
            &format!("/v1/tenants/{TENANT}/webhook-endpoints/{ep}/messages/{msg}/resend"),
            Some(&app.admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body["status"], "pending", "{}", r.text);
}

async fn recover(app: &TestApp, ep: &str, since: chrono::DateTime<chrono::Utc>) -> u64 {
    let r = app
        .call(
            Method::POST,
            &format!("/v1/tenants/{TENANT}/webhook-endpoints/{ep}/recover"),
            Some(&app.admin),
            Some(json!({"since": since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    r.body["requeued"].as_u64().expect("requeued")
}

async fn resend_and_recover_keep_the_webhook_id_and_redirects_are_not_followed(app: TestApp) {
    let since = chrono::Utc::now() - chrono::Duration::minutes(1);
    app.create_tenant(TENANT).await;
    let elsewhere = Receiver::ok().await;
    let rx = Receiver::ok().await;
    rx.script([Reply::Status(
        302,
        vec![("location", elsewhere.url.clone())],
    )]);
    let gone = Receiver::ok().await;
    gone.script([Reply::status(410)]);
    let (ep, secret) = create_endpoint(&app, &rx.url, &["user.provisioned"]).await;
    let (g_ep, g_secret) = create_endpoint(&app, &gone.url, &["user.provisioned"]).await;
    rx.set_secrets(&[&secret]);
    gone.set_secrets(&[&g_secret]);
    let w = app.token("provisioner:write", Some(TENANT));
    let r = app.put_user(TENANT, "u1", &w, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    // A 302 is a failure, and not followed.
    let got = rx
        .wait_for_count(1, Duration::from_secs(10), Duration::from_millis(50))
        .await;
    let msg = got[0].id();
    let m = wait_messages(&app, &ep, "the 302 recorded", Duration::from_secs(5), |m| {
        m.len() == 1 && m[0]["attempts"] == 1
    })
    .await;
    assert_eq!(m[0]["status"], "pending", "{}", m[0]);
    assert_eq!(m[0]["last_status"], 302, "{}", m[0]);
    assert_eq!(elsewhere.connections(), 0, "the redirect was followed");

    // Resend (pending): now, same id; then resend the delivered message: once more, same id.
    resend(&app, &ep, &msg).await;
    rx.wait_for_count(2, Duration::from_secs(3), Duration::from_millis(50))
        .await;
    wait_messages(&app, &ep, "delivered", Duration::from_secs(5), |m| {
        m[0]["status"] == "delivered" && m[0]["attempts"] == 2
    })
    .await;
    resend(&app, &ep, &msg).await;
    let got = rx
        .wait_for_count(3, Duration::from_secs(3), Duration::from_millis(50))
        .await;
    let m = wait_messages(&app, &ep, "delivered again", Duration::from_secs(5), |m| {
        m[0]["status"] == "delivered" && m[0]["attempts"] == 3
    })
    .await;
    assert_eq!(m.len(), 1);
    for r in &got {
        assert_eq!(r.id(), msg, "one webhook-id across a retry and resends");
        assert_well_formed(r, &secret);
    }
    let a = attempts(&app, &ep, &msg).await;
    let numbers: Vec<i64> = a.iter().map(|x| x["attempt"].as_i64().unwrap()).collect();
    let codes: Vec<i64> = a
        .iter()
        .map(|x| x["status_code"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3], "{a:?}");
    assert_eq!(codes, [302, 200, 200], "{a:?}");

    // Recover: the 410'd endpoint's failed message, once it is enabled again.
    gone.wait_for_count(1, Duration::from_secs(10), Duration::from_millis(50))
        .await;
    wait_messages(
        &app,
        &g_ep,
        "the 410 recorded",
        Duration::from_secs(5),
        |m| m.len() == 1 && m[0]["status"] == "failed",
    )
    .await;
    assert_eq!(get_endpoint(&app, &g_ep).await["enabled"], false);
    let r = app
        .call(
            Method::PATCH,
            &format!("/v1/tenants/{TENANT}/webhook-endpoints/{g_ep}"),
            Some(&app.admin),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["enabled"], true, "{}", r.text);
    assert!(r.body["disabled_reason"].is_null(), "{}", r.text);
    assert_eq!(
        recover(&app, &g_ep, chrono::Utc::now() + chrono::Duration::hours(1)).await,
        0,
        "nothing failed since then"
    );
    assert_eq!(recover(&app, &g_ep, since).await, 1);
    let got = gone
        .wait_for_count(2, Duration::from_secs(3), Duration::from_millis(50))
        .await;
    assert_eq!(got[0].id(), got[1].id());
    assert_well_formed(&got[1], &g_secret);
    let m = wait_messages(&app, &g_ep, "recovered", Duration::from_secs(5), |m| {
        m[0]["status"] == "delivered"
    })
    .await;
    assert_eq!(m[0]["attempts"], 2, "{}", m[0]);
}

/// A resend while an attempt of the same message hangs: a second worker sends it (200,
/// `delivered`) while the first still waits; when the first times out, its late record must
/// not turn the message back to `pending` (on a8a29d4 it did, with a retry a minute later: a
/// third send of a delivered message).
async fn a_resend_during_a_hung_attempt_ends_delivered(app: TestApp) {
    app.create_tenant(TENANT).await;
    let rx = Receiver::ok().await;
    rx.script([Reply::Hang]);
    let (ep, secret) = create_endpoint(&app, &rx.url, &["user.provisioned"]).await;
    rx.set_secrets(&[&secret]);
    let w = app.token("provisioner:write", Some(TENANT));
    let r = app.put_user(TENANT, "u1", &w, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let got = rx
        .wait_for_count(1, Duration::from_secs(10), Duration::from_millis(50))
        .await;
    let msg = got[0].id();
    assert_eq!(rx.hanging(), 1);
    resend(&app, &ep, &msg).await;
    rx.wait_for_count(2, Duration::from_secs(3), Duration::from_millis(50))
        .await;
    wait_messages(
        &app,
        &ep,
        "delivered by the resend",
        Duration::from_secs(5),
        |m| m[0]["status"] == "delivered",
    )
    .await;
    // The hung attempt times out (5 s); its record (or its being dropped) follows at once:
    // the message must stay delivered.
    let deadline = Instant::now() + Duration::from_secs(10);
    while rx.hanging() > 0 {
        assert!(Instant::now() < deadline, "the hung request is still open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let m = messages(&app, &ep).await;
        if m[0]["status"] != "delivered" {
            let a = attempts(&app, &ep, &msg).await;
            panic!(
                "a late timeout of an earlier attempt turned a delivered message back: {}\nattempts {}",
                m[0],
                Value::Array(a)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rx.count(), 2, "nothing sent after the delivery");
}

/// A receiver's URL may carry a credential (chat hooks put one in the path or query): a failed
/// attempt's error, the endpoint's messages and the service's logs never repeat it.
async fn a_credential_in_the_url_is_never_shown_or_logged(app: TestApp) {
    app.create_tenant(TENANT).await;
    // Port 1: nothing listens, the connection is refused.
    let token = format!("tok{}", fastrand::u64(..));
    let url = format!("http://127.0.0.1:1/hooks/{token}?key={token}");
    let (ep, _) = create_endpoint(&app, &url, &[]).await;
    let w = app.token("provisioner:write", Some(TENANT));
    let r = app.put_user(TENANT, "u1", &w, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let m = wait_messages(
        &app,
        &ep,
        "the failed attempt recorded",
        Duration::from_secs(10),
        |m| m.len() == 1 && m[0]["attempts"] == 1,
    )
    .await;
    assert_eq!(m[0]["status"], "pending", "{}", m[0]);
    let a = attempts(&app, &ep, m[0]["event_id"].as_str().unwrap()).await;
    let error = a[0]["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        !error.is_empty() && a[0]["status_code"].is_null(),
        "{}",
        a[0]
    );
    for shown in [m[0].to_string(), Value::Array(a).to_string()] {
        assert!(!shown.contains(&token), "the URL's credential in {shown}");
    }
    // Give the log lines of the attempt a moment to be written.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = crate::helpers::captured_logs();
    let leaked: Vec<&str> = logs.lines().filter(|l| l.contains(&token)).collect();
    assert!(
        leaked.is_empty(),
        "the URL's credential logged:\n{}",
        leaked.join("\n")
    );
    println!("webhooks url-credential: attempt error {error:?}; not in messages, attempts or logs");
}

// --- d. Secret rotation -----------------------------------------------------------------------

async fn a_rotated_secret_and_the_previous_one_both_sign(app: TestApp) {
    app.create_tenant(TENANT).await;
    let rx = Receiver::ok().await;
    let (ep, old) = create_endpoint(&app, &rx.url, &[]).await;
    let r = app
        .call(
            Method::POST,
            &format!("/v1/tenants/{TENANT}/webhook-endpoints/{ep}/rotate-secret"),
            Some(&app.admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let new = r.body["secret"].as_str().expect("secret").to_owned();
    assert!(new.starts_with("whsec_") && new != old, "{}", r.text);
    assert_eq!(r.body["secret_count"], 2, "{}", r.text);
    let e = get_endpoint(&app, &ep).await;
    assert_eq!(e["secret_count"], 2, "{e}");
    let shown = e.to_string();
    assert!(!shown.contains(&old) && !shown.contains(&new), "{shown}");
    rx.set_secrets(&[&new]);

    let w = app.token("provisioner:write", Some(TENANT));
    let r = app.put_user(TENANT, "u1", &w, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let got = rx
        .wait_for_count(1, Duration::from_secs(10), Duration::from_millis(50))
        .await;
    let d = &got[0];
    assert_well_formed(d, &new);
    let header = d.header("webhook-signature");
    let sigs: Vec<&str> = header.split(' ').collect();
    assert_eq!(sigs.len(), 2, "two v1 signatures: {header}");
    d.verify_with(&old).expect("the previous secret verifies");
    d.verify_with(&new).expect("the new secret verifies");
    let stranger = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    assert!(
        d.verify_with(stranger).is_err(),
        "another secret must not verify"
    );
    // Each signature is one secret's: one verifies with the old, the other with the new.
    let alone = |sig: &str, secret: &str| {
        let mut h = d.headers.clone();
        h.insert("webhook-signature", sig.parse().unwrap());
        verify(secret, &d.body, &h).is_ok()
    };
    assert!(
        (alone(sigs[0], &old) && alone(sigs[1], &new))
            || (alone(sigs[0], &new) && alone(sigs[1], &old)),
        "{header}"
    );

    // Rotating again within the overlap: three secrets sign; a third rotation drops the oldest.
    let rotate = || async {
        let r = app
            .call(
                Method::POST,
                &format!("/v1/tenants/{TENANT}/webhook-endpoints/{ep}/rotate-secret"),
                Some(&app.admin),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        (
            r.body["secret"].as_str().expect("secret").to_owned(),
            r.body["secret_count"].clone(),
        )
    };
    let (third, count) = rotate().await;
    assert_eq!(count, 3);
    let r = app.put_user(TENANT, "u2", &w, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let d = rx
        .wait_for_count(2, Duration::from_secs(10), Duration::from_millis(50))
        .await
        .remove(1);
    assert_eq!(d.header("webhook-signature").split(' ').count(), 3);
    for s in [&old, &new, &third] {
        d.verify_with(s).expect("each live secret verifies");
    }
    let (fourth, count) = rotate().await;
    assert_eq!(
        count, 3,
        "at most two earlier secrets sign beside the new one"
    );
    let r = app.put_user(TENANT, "u3", &w, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let d = rx
        .wait_for_count(3, Duration::from_secs(10), Duration::from_millis(50))
        .await
        .remove(2);
    assert_eq!(d.header("webhook-signature").split(' ').count(), 3);
    for s in [&new, &third, &fourth] {
        d.verify_with(s).expect("each live secret verifies");
    }
    assert!(
        d.verify_with(&old).is_err(),
        "the oldest secret was dropped"
    );
    println!(
        "webhooks rotate-secret: 2 then 3 signatures, each live secret verifies, the oldest dropped"
    );
}

// --- e. SSRF ----------------------------------------------------------------------------------

async fn loopback_targets_get_nothing(app: TestApp) {
    app.create_tenant(TENANT).await;
    let rx = Receiver::ok().await;
    let mut urls = vec![
        rx.url.clone(),
        format!("http://localhost:{}/hook", rx.port),
        format!("https://127.0.0.1:{}/hook", rx.port),
        format!("http://[::ffff:127.0.0.1]:{}/hook", rx.port),
        // 0.0.0.0 reaches this host on Linux; 127.1 and 2130706433 are 127.0.0.1 spelled
        // otherwise; a `localhost` name in capitals with the root dot.
        format!("http://0.0.0.0:{}/hook", rx.port),
        format!("http://127.1:{}/hook", rx.port),
        format!("http://2130706433:{}/hook", rx.port),
        format!("http://LocalHost.:{}/hook", rx.port),
        format!("http://hooks.localhost:{}/hook", rx.port),
    ];
    // A host name resolving to loopback (this machine's name, where /etc/hosts says so):
    // refused after resolution, not by the URL.
    if let Some(host) = loopback_host_name().await {
        urls.push(format!("http://{host}:{}/hook", rx.port));
    }
    // Each is refused when the endpoint is created (422), or else at delivery ("not sent").
    let mut accepted = Vec::new();
    for u in &urls {
        let r = app
            .call(
                Method::POST,
                &format!("/v1/tenants/{TENANT}/webhook-endpoints"),
                Some(&app.admin),
                Some(json!({"url": u})),
            )
            .await;
        if r.status == StatusCode::CREATED {
            accepted.push((r.body["id"].as_str().unwrap().to_owned(), u.clone()));
        } else {
            assert_problem(&r, 422, "validation_failed");
            println!(
                "webhooks ssrf: {u} refused at creation: {}",
                r.body["detail"]
            );
        }
    }
    let w = app.token("provisioner:write", Some(TENANT));
    let r = app.put_user(TENANT, "u1", &w, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    for (ep, url) in &accepted {
        let m = wait_messages(
            &app,
            ep,
            "the refusal recorded",
            Duration::from_secs(10),
            |m| m.len() == 1 && m[0]["attempts"] == 1,
        )
        .await;
        assert_eq!(m[0]["status"], "failed", "{url}: {}", m[0]);
        let a = attempts(&app, ep, m[0]["event_id"].as_str().unwrap()).await;
        assert_eq!(a.len(), 1, "{url}: {a:?}");
        assert!(a[0]["status_code"].is_null(), "{url}: {}", a[0]);
        let error = a[0]["error"].as_str().unwrap_or_default();
        assert!(error.starts_with("not sent"), "{url}: {}", a[0]);
        assert!(
            !error.contains(&rx.port.to_string()),
            "the URL is not repeated: {error}"
        );
        println!("webhooks ssrf: {url} accepted, then not sent: {error:?}");
    }
    assert_eq!(rx.connections(), 0, "a refused target opens no connection");
    assert_eq!(rx.count(), 0);
}

/// This machine's host name if it resolves to loopback addresses only.
async fn loopback_host_name() -> Option<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let host = host.trim().to_owned();
    if host.is_empty() || host.eq_ignore_ascii_case("localhost") {
        return None;
    }
    let addrs: Vec<_> = tokio::net::lookup_host((host.as_str(), 0))
        .await
        .ok()?
        .collect();
    (!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())).then_some(host)
}

// --- c. kill -9 of the real binary ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_webhook_deliveries_survive_kill9() {
    let (url, _db) = provisioner_storage::testing::fresh_sqlite_url();
    kill9_deliveries("sqlite", &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_webhook_deliveries_survive_kill9() {
    let Some((store, url, _db)) = provisioner_storage::testing::fresh_postgres().await else {
        eprintln!(
            "PostgreSQL unreachable: skipped (set PROVISIONER_TEST_REQUIRE_PG=1 to fail instead)"
        );
        return;
    };
    store.close().await;
    kill9_deliveries("postgres", &url).await;
}

/// The child's settings: deliveries to loopback, a 2 s timeout (claims lapse after 9 s),
/// `concurrency` delivery workers.
fn webhook_env(concurrency: u32) -> Vec<(String, String)> {
    [
        ("PROVISIONER_WEBHOOK_ALLOW_HTTP", "true".to_owned()),
        (
            "PROVISIONER_WEBHOOK_ALLOW_PRIVATE_TARGETS",
            "true".to_owned(),
        ),
        ("PROVISIONER_WEBHOOK_TIMEOUT_SECS", "2".to_owned()),
        ("PROVISIONER_WEBHOOK_CONCURRENCY", concurrency.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

async fn kill9_deliveries(backend: &str, db_url: &str) {
    let started = Instant::now();
    let sim = simulator(0, 0).await;
    let rx = Receiver::ok().await;
    let logs = tempfile::tempdir().expect("log dir");
    let jwt = SecretString::from(provisioner_core::secret::MasterKey::generate().to_base64());
    let mut env = ServerEnv::new(free_port(), db_url, &jwt, &logs.path().join("serve.log"));
    env.extra_env = webhook_env(0);
    let mut server = Server::new(env);
    server.start().await;
    let base = server.base();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client");
    let admin = crate::helpers::token(&jwt, "provisioner:admin", None);
    let w = crate::helpers::token(&jwt, "provisioner:write", Some(TENANT));
    let (s, _, text) = call(
        &http,
        Method::POST,
        &format!("{base}/v1/tenants"),
        &admin,
        Some(tenant_body(TENANT, &sim.base_url())),
    )
    .await
    .expect("creating the tenant");
    assert_eq!(s, StatusCode::CREATED, "{text}");
    let (s, body, text) = call(
        &http,
        Method::POST,
        &format!("{base}/v1/tenants/{TENANT}/webhook-endpoints"),
        &admin,
        Some(json!({"url": rx.url})),
    )
    .await
    .expect("creating the endpoint");
    assert_eq!(s, StatusCode::CREATED, "{text}");
    let ep = body["id"].as_str().unwrap().to_owned();
    let secret = body["secret"].as_str().unwrap().to_owned();
    rx.set_secrets(&[&secret]);
    let messages_url = format!("{base}/v1/tenants/{TENANT}/webhook-endpoints/{ep}/messages");
    let list = |http: reqwest::Client, url: String, admin: String| async move {
        match call(&http, Method::GET, &url, &admin, None).await {
            Ok((StatusCode::OK, body, _)) => body["items"].as_array().cloned(),
            _ => None,
        }
    };

    // (i) Between commit and send: no delivery worker; the event is committed; kill -9.
    let (s, _, text) = call(
        &http,
        Method::PUT,
        &format!("{base}/v1/tenants/{TENANT}/users/u1"),
        &w,
        Some(json!({})),
    )
    .await
    .expect("PUT u1");
    assert_eq!(s, StatusCode::CREATED, "{text}");
    let m = list(http.clone(), messages_url.clone(), admin.clone())
        .await
        .expect("messages");
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0]["status"], "pending", "{}", m[0]);
    assert_eq!(m[0]["attempts"], 0, "{}", m[0]);
    let first = m[0]["event_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.count(), 0, "no worker, nothing sent");
    server.kill();
    server.env_mut().extra_env = webhook_env(8);
    server.start().await;
    let restarted = Instant::now();
    rx.wait_until(
        "the committed event after the restart",
        Duration::from_secs(10),
        |g| g.iter().any(|r| r.id() == first),
    )
    .await;
    let first_after = restarted.elapsed();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = list(http.clone(), messages_url.clone(), admin.clone()).await;
        if let Some(m) = m
            && m.iter()
                .any(|x| x["event_id"] == first.as_str() && x["status"] == "delivered")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{first} not marked delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rx.count_id(&first), 1, "delivered once");
    let d = &rx.received()[0];
    assert_well_formed(d, &secret);
    assert_eq!(d.event_type(), "user.provisioned");

    // (ii) Between send and record: the receiver holds the next request; kill -9 while it is
    // open; after the restart the claim lapses and the same webhook-id comes again.
    rx.script([Reply::Hang]);
    let (s, _, text) = call(
        &http,
        Method::PUT,
        &format!("{base}/v1/tenants/{TENANT}/users/u2"),
        &w,
        Some(json!({})),
    )
    .await
    .expect("PUT u2");
    assert_eq!(s, StatusCode::CREATED, "{text}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while rx.hanging() == 0 {
        assert!(Instant::now() < deadline, "the second delivery never came");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill();
    let second = rx.received()[1].id();
    assert_ne!(second, first);
    server.start().await;
    let restarted = Instant::now();
    rx.wait_until("the same webhook-id again", Duration::from_secs(15), |g| {
        g.iter().filter(|r| r.id() == second).count() >= 2
    })
    .await;
    let again_after = restarted.elapsed();
    let deadline = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = list(http.clone(), messages_url.clone(), admin.clone()).await;
        if let Some(m) = m
            && let Some(x) = m.iter().find(|x| x["event_id"] == second.as_str())
            && x["status"] == "delivered"
        {
            break x.clone();
        }
        assert!(Instant::now() < deadline, "{second} not marked delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let copies: Vec<Received> = rx
        .received()
        .into_iter()
        .filter(|r| r.id() == second)
        .collect();
    assert_eq!(copies.len(), 2, "sent twice: before the kill and after");
    for c in &copies {
        assert_well_formed(c, &secret);
    }
    assert_eq!(copies[0].body, copies[1].body, "the same body");
    let (s, a, text) = call(
        &http,
        Method::GET,
        &format!("{messages_url}/{second}/attempts"),
        &admin,
        None,
    )
    .await
    .expect("attempts");
    assert_eq!(s, StatusCode::OK, "{text}");
    assert_eq!(rx.count(), 3, "u1 once, u2 twice");
    println!(
        "webhooks kill9 backend={backend}: committed event sent {:.1} s after the restart (once); \
         cut delivery resent {:.1} s after the restart with the same webhook-id (copies=2, \
         message attempts={} recorded={}); total {:.1} s",
        first_after.as_secs_f64(),
        again_after.as_secs_f64(),
        m["attempts"],
        a["items"].as_array().map_or(0, Vec::len),
        started.elapsed().as_secs_f64()
    );
    drop(server);
}
