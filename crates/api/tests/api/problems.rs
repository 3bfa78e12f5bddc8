//! Problem details for bad input, limits, unknown routes; request ids.

use actix_web::test::TestRequest;
use provisioner_api::HttpSettings;
use serde_json::json;

use crate::helpers::*;

fn put_user(body: &'static str) -> TestRequest {
    TestRequest::put()
        .uri("/v1/tenants/acme/users/alice")
        .insert_header(("authorization", format!("Bearer {}", admin())))
        .insert_header(("content-type", "application/json"))
        .set_payload(body)
}

#[actix_web::test]
async fn malformed_bodies_are_400_invalid_request_never_500() {
    // Arrange
    let app = spawn().await;
    app.tenant("acme").await;
    let cases = [
        ("malformed JSON", "{\"scopes\": ["),
        ("not an object", "[1,2]"),
        (
            "unknown field",
            "{\"scope_profile\": \"standard\", \"admin\": true}",
        ),
        ("wrong type", "{\"scopes\": \"Predict\"}"),
        ("wrong metadata type", "{\"metadata\": {\"a\": 1}}"),
        (
            "both scope forms",
            "{\"scope_profile\": \"standard\", \"scopes\": [\"Predict\"]}",
        ),
        ("bad profile name", "{\"scope_profile\": \"Not A Name\"}"),
    ];
    for (name, body) in cases {
        // Act
        let r = app.send(put_user(body)).await;
        // Assert
        assert_eq!(r.status, 400, "{name}: {}", r.text());
        r.problem(400, "invalid_request");
    }
    let r = app.send(put_user("{\"scopes\": \"Predict\"}")).await;
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("invalid type")
    );
    let text = TestRequest::put()
        .uri("/v1/tenants/acme/users/alice")
        .insert_header(("authorization", format!("Bearer {}", admin())))
        .insert_header(("content-type", "text/plain"))
        .set_payload("{}");
    app.send(text).await.problem(400, "invalid_request");
}

#[actix_web::test]
async fn unknown_scopes_are_422_with_a_pointer() {
    let app = spawn().await;
    app.tenant("acme").await;
    let r = app
        .send(put_user("{\"scopes\": [\"Predict\", \"Nope:Fly\"]}"))
        .await;
    let b = r.problem(422, "validation_failed");
    assert_eq!(b["errors"][0]["pointer"], "/scopes/1");
}

#[actix_web::test]
async fn bad_path_ids_and_queries_are_400() {
    let app = spawn().await;
    app.tenant("acme").await;
    let a = admin();
    for path in [
        "/v1/tenants/Bad_Id",
        "/v1/tenants/acme/scope-profiles/UPPER",
        "/v1/tenants/acme/users/a%0Ab",
        "/v1/tenants/acme/users?limit=abc",
        "/v1/tenants/acme/users?limit=0",
        "/v1/tenants/acme/users?limit=1001",
        "/v1/tenants/acme/users?status=sleeping",
        "/v1/tenants/acme/users?bogus=1",
        "/v1/tenants?cursor=%%%",
        "/v1/audit-events?tenant_id=NOPE",
    ] {
        let r = app.call("GET", path, Some(&a), None).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        r.problem(400, "invalid_request");
    }
    let long = format!("/v1/tenants/acme/users/{}", "x".repeat(129));
    app.call("GET", &long, Some(&a), None)
        .await
        .problem(400, "invalid_request");
}

#[actix_web::test]
async fn a_body_over_the_limit_is_413() {
    let app = spawn().await;
    app.tenant("acme").await;
    let big = format!("{{\"display_name\": \"{}\"}}", "x".repeat(2 << 20));
    let req = TestRequest::put()
        .uri("/v1/tenants/acme/users/alice")
        .insert_header(("authorization", format!("Bearer {}", admin())))
        .insert_header(("content-type", "application/json"))
        .set_payload(big.clone());
    app.send(req).await.problem(413, "payload_too_large");
    let r = app
        .call(
            "POST",
            "/v1/tenants",
            Some(&admin()),
            Some(json!({"id": "x", "pad": "y".repeat(2 << 20)})),
        )
        .await;
    r.problem(413, "payload_too_large");
}

#[actix_web::test]
async fn a_caller_over_its_rate_gets_429_with_retry_after() {
    let app = spawn_with(
        hs_config(),
        HttpSettings {
            caller_rate_limit_per_sec: 3,
            ..settings()
        },
    )
    .await;
    let t = admin();
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..10 {
        let r = app.call("GET", "/v1/tenants", Some(&t), None).await;
        statuses.push(r.status.as_u16());
        if r.status == 429 {
            limited = Some(r);
        }
    }
    assert_eq!(&statuses[..3], &[200, 200, 200]);
    let r = limited.expect("a 429");
    r.problem(429, "rate_limited");
    let wait: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!(wait >= 1);
    // Another caller has its own budget.
    let other = token("provisioner:admin provisioner:audit", None);
    assert_eq!(
        app.call("GET", "/v1/tenants", Some(&other), None)
            .await
            .status,
        200
    );
}

#[actix_web::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = spawn().await;
    app.call("GET", "/v2/nothing", None, None)
        .await
        .problem(404, "not_found");
    app.call("POST", "/healthz", None, None)
        .await
        .problem(405, "method_not_allowed");
    app.call("PATCH", "/v1/tenants", Some(&admin()), None)
        .await
        .problem(405, "method_not_allowed");
}

#[actix_web::test]
async fn request_ids_are_echoed_when_valid_and_generated_otherwise() {
    let app = spawn().await;
    let r = app
        .send(
            TestRequest::get()
                .uri("/healthz")
                .insert_header(("x-request-id", "abc-123:x.y_z")),
        )
        .await;
    assert_eq!(r.header("x-request-id").as_deref(), Some("abc-123:x.y_z"));
    for bad in ["has space", &"a".repeat(129), "semi;colon"] {
        let r = app
            .send(
                TestRequest::get()
                    .uri("/healthz")
                    .insert_header(("x-request-id", bad)),
            )
            .await;
        let id = r.header("x-request-id").expect("id");
        assert_ne!(id, bad);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    }
    let r = app.send(TestRequest::get().uri("/healthz")).await;
    assert!(uuid::Uuid::parse_str(&r.header("x-request-id").expect("id")).is_ok());
    // Problems carry the same id.
    let r = app
        .send(
            TestRequest::get()
                .uri("/v1/tenants")
                .insert_header(("x-request-id", "trace-me")),
        )
        .await;
    assert_eq!(r.problem(401, "unauthenticated")["request_id"], "trace-me");
}

#[actix_web::test]
async fn health_and_readiness_probes_answer_without_auth() {
    let app = spawn().await;
    let r = app.call("GET", "/healthz", None, None).await;
    assert_eq!(
        (r.status.as_u16(), r.json()),
        (200, json!({"status": "ok"}))
    );
    let r = app.call("GET", "/readyz", None, None).await;
    assert_eq!(r.status, 200);
}
