//! `Idempotency-Key` over HTTP: header validation, replay (with the secret, to the same caller
//! only), 422 `idempotency_key_reused`, a rotation's retry that rotates nothing more.

use actix_web::test::TestRequest;
use provisioner_core::testing::Call;
use serde_json::{Value, json};

use crate::helpers::*;

/// A request with a bearer token, an optional JSON body and an optional Idempotency-Key.
async fn keyed(
    app: &TestApp,
    method: &str,
    path: &str,
    token: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> Resp {
    let mut req = TestRequest::default()
        .method(method.parse().expect("method"))
        .uri(path)
        .insert_header(("authorization", format!("Bearer {token}")));
    if let Some(k) = key {
        req = req.insert_header(("idempotency-key", k));
    }
    if let Some(b) = body {
        req = req.set_json(b);
    }
    app.send(req).await
}

fn creates(app: &TestApp) -> usize {
    app.core
        .upstream
        .calls()
        .iter()
        .filter(|c| **c == Call::CreateKey)
        .count()
}

#[actix_web::test]
async fn a_malformed_idempotency_key_is_400() {
    let app = spawn().await;
    app.tenant("acme").await;
    let a = admin();
    let long = "k".repeat(256);
    for bad in ["", long.as_str()] {
        let r = keyed(
            &app,
            "PUT",
            "/v1/tenants/acme/users/alice",
            &a,
            Some(bad),
            None,
        )
        .await;
        r.problem(400, "invalid_request");
    }
    // Two headers.
    let req = TestRequest::default()
        .method("PUT".parse().unwrap())
        .uri("/v1/tenants/acme/users/alice")
        .insert_header(("authorization", format!("Bearer {a}")))
        .append_header(("idempotency-key", "one"))
        .append_header(("idempotency-key", "two"));
    app.send(req).await.problem(400, "invalid_request");
    assert!(app.core.upstream.apps().is_empty(), "nothing was done");
    // 255 printable characters, spaces included, are fine.
    let ok = format!("a b{}", "c".repeat(252));
    let r = keyed(
        &app,
        "PUT",
        "/v1/tenants/acme/users/alice",
        &a,
        Some(&ok),
        None,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

#[actix_web::test]
async fn a_repeated_put_replays_its_201_and_secret_to_the_same_caller_only() {
    let app = spawn().await;
    app.tenant("acme").await;
    let svc = token("provisioner:write", Some("acme"));
    let path = "/v1/tenants/acme/users/alice";
    let body = json!({"scope_profile": "standard"});
    let first = keyed(&app, "PUT", path, &svc, Some("k-1"), Some(body.clone())).await;
    assert_eq!(first.status, 201, "{}", first.text());
    let secret = first.json()["secret"].as_str().unwrap().to_owned();
    let again = keyed(&app, "PUT", path, &svc, Some("k-1"), Some(body.clone())).await;
    assert_eq!(again.status, 201, "the same answer: {}", again.text());
    assert_eq!(again.json()["secret"], secret.as_str());
    assert_eq!(again.json()["external_id"], "alice");
    assert_eq!(again.header("location").as_deref(), Some(path));
    assert_eq!(creates(&app), 1);
    let audit = keyed(
        &app,
        "GET",
        "/v1/audit-events?tenant_id=acme",
        &admin(),
        None,
        None,
    )
    .await;
    assert!(
        audit.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "idempotency.replay"),
        "{}",
        audit.text()
    );
    // Another caller (another `sub`) with the same key: its own request, no secret.
    let other = keyed(&app, "PUT", path, &admin(), Some("k-1"), Some(body)).await;
    assert_eq!(other.status, 200, "{}", other.text());
    assert!(!other.text().contains(&secret));
}

#[actix_web::test]
async fn a_key_sent_with_another_body_is_422_idempotency_key_reused() {
    let app = spawn().await;
    app.tenant("acme").await;
    let a = admin();
    let path = "/v1/tenants/acme/users/alice";
    let r = keyed(
        &app,
        "PUT",
        path,
        &a,
        Some("k"),
        Some(json!({"scope_profile": "standard"})),
    )
    .await;
    assert_eq!(r.status, 201);
    let r = keyed(
        &app,
        "PUT",
        path,
        &a,
        Some("k"),
        Some(json!({"scope_profile": "annotator"})),
    )
    .await;
    r.problem(422, "idempotency_key_reused");
    let r = keyed(
        &app,
        "PUT",
        "/v1/tenants/acme/users/bob",
        &a,
        Some("k"),
        Some(json!({"scope_profile": "standard"})),
    )
    .await;
    r.problem(422, "idempotency_key_reused");
    assert_eq!(app.core.upstream.apps().len(), 1, "bob was not provisioned");
    // An empty body and `{}` are the same request.
    let r = keyed(
        &app,
        "PUT",
        "/v1/tenants/acme/users/carol",
        &a,
        Some("e"),
        None,
    )
    .await;
    assert_eq!(r.status, 201);
    let r = keyed(
        &app,
        "PUT",
        "/v1/tenants/acme/users/carol",
        &a,
        Some("e"),
        Some(json!({})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

#[actix_web::test]
async fn a_repeated_rotation_rotates_once_and_answers_the_same_secret() {
    let app = spawn().await;
    app.tenant("acme").await;
    app.user("acme", "alice").await;
    let a = admin();
    let path = "/v1/tenants/acme/users/alice/rotate-key";
    let first = keyed(&app, "POST", path, &a, Some("rot"), None).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let again = keyed(&app, "POST", path, &a, Some("rot"), None).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["secret"], first.json()["secret"]);
    assert_eq!(creates(&app), 2, "one provisioning, one rotation");
    // A new key rotates again.
    let next = keyed(&app, "POST", path, &a, Some("rot-2"), None).await;
    assert_eq!(next.status, 200);
    assert_ne!(next.json()["secret"], first.json()["secret"]);
}

#[actix_web::test]
async fn a_kept_4xx_is_replayed_and_a_tenant_create_is_replayed() {
    let app = spawn().await;
    app.tenant("acme").await;
    let a = admin();
    // A 404 (no such user to rotate) is kept and replayed, with this request's id.
    let path = "/v1/tenants/acme/users/ghost/rotate-key";
    keyed(&app, "POST", path, &a, Some("g"), None)
        .await
        .problem(404, "not_found");
    keyed(&app, "POST", path, &a, Some("g"), None)
        .await
        .problem(404, "not_found");
    // A tenant create: 201, then the same 201 (not 409).
    let body = tenant_body("beta");
    let first = keyed(
        &app,
        "POST",
        "/v1/tenants",
        &a,
        Some("t"),
        Some(body.clone()),
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.text());
    let again = keyed(&app, "POST", "/v1/tenants", &a, Some("t"), Some(body)).await;
    assert_eq!(again.status, 201, "{}", again.text());
    assert_eq!(again.json()["id"], "beta");
    assert_eq!(
        again.header("location").as_deref(),
        Some("/v1/tenants/beta")
    );
    assert!(!again.text().contains("pat-super-secret"));
}
