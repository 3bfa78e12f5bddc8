//! End users over HTTP: provision, read, list, rotate, reveal, deprovision, look-up.

use actix_web::test::TestRequest;
use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn provisioning_is_idempotent_and_shows_the_secret_once() {
    // Arrange
    let app = spawn().await;
    app.tenant("acme").await;
    let a = admin();
    // Act
    let first = app
        .call(
            "PUT",
            "/v1/tenants/acme/users/alice",
            Some(&a),
            Some(json!({"scope_profile": "standard", "metadata": {"team": "ml"}})),
        )
        .await;
    let again = app
        .call(
            "PUT",
            "/v1/tenants/acme/users/alice",
            Some(&a),
            Some(json!({"scope_profile": "standard"})),
        )
        .await;
    let other = app
        .call(
            "PUT",
            "/v1/tenants/acme/users/alice",
            Some(&a),
            Some(json!({"scopes": ["Inputs:Add", "Inputs:Get"]})),
        )
        .await;
    // Assert
    assert_eq!(first.status, 201, "{}", first.text());
    assert_eq!(
        first.header("location").as_deref(),
        Some("/v1/tenants/acme/users/alice")
    );
    let u = first.json();
    let secret = u["secret"].as_str().expect("secret on 201").to_owned();
    assert_eq!(u["tenant_id"], "acme");
    assert_eq!(u["external_id"], "alice");
    assert_eq!(u["status"], "active");
    assert_eq!(u["app"]["user_id"], "acme-ml");
    assert!(u["app"]["id"].as_str().unwrap().starts_with("acme"));
    assert_eq!(u["key"]["scopes"], json!(["Inputs:Get", "Predict"]));
    assert_eq!(u["key"]["fingerprint"].as_str().unwrap().len(), 8);
    assert_eq!(u["metadata"], json!({"team": "ml"}));
    assert!(u["last_error"].is_null());
    assert_eq!(again.status, 200);
    assert!(again.json().get("secret").is_none());
    assert!(!again.text().contains(&secret));
    other.problem(409, "conflict");
    // read and list never show it
    let r = app
        .call("GET", "/v1/tenants/acme/users/alice", Some(&a), None)
        .await;
    assert!(r.json().get("secret").is_none() && !r.text().contains(&secret));
    let r = app
        .call("GET", "/v1/tenants/acme/users", Some(&a), None)
        .await;
    assert!(!r.text().contains(&secret));
}

#[actix_web::test]
async fn an_empty_body_uses_the_default_profile() {
    let app = spawn().await;
    app.tenant("acme").await;
    let req = TestRequest::put()
        .uri("/v1/tenants/acme/users/bob")
        .insert_header(("authorization", format!("Bearer {}", admin())));
    let r = app.send(req).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["key"]["scopes"], json!(["Inputs:Get", "Predict"]));
    let r = app
        .call(
            "PUT",
            "/v1/tenants/acme/users/carol",
            Some(&admin()),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, 201);
}

#[actix_web::test]
async fn unicode_and_slash_external_ids_round_trip() {
    let app = spawn().await;
    app.tenant("acme").await;
    let a = admin();
    for (encoded, decoded) in [
        ("%E3%83%A6%E3%83%BC%E3%82%B6%E3%83%BC", "ユーザー"),
        ("user-42%40acme.example", "user-42@acme.example"),
        ("raw@acme.example", "raw@acme.example"),
        ("team%2Falice", "team/alice"),
        ("a+b%20c", "a+b c"),
    ] {
        let r = app
            .call(
                "PUT",
                &format!("/v1/tenants/acme/users/{encoded}"),
                Some(&a),
                None,
            )
            .await;
        assert_eq!(r.status, 201, "{decoded}: {}", r.text());
        assert_eq!(r.json()["external_id"], decoded);
        let location = r.header("location").expect("location");
        let r = app.call("GET", &location, Some(&a), None).await;
        assert_eq!(r.status, 200, "{location}");
        assert_eq!(r.json()["external_id"], decoded);
        let r = app
            .call(
                "POST",
                &format!("/v1/tenants/acme/users/{encoded}/rotate-key"),
                Some(&a),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{decoded}: {}", r.text());
    }
}

#[actix_web::test]
async fn rotate_reveal_lookup_and_deprovision() {
    // Arrange
    let app = spawn().await;
    app.tenant("acme").await;
    let a = admin();
    let old = app.user("acme", "alice").await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    // rotate
    let r = app
        .call(
            "POST",
            "/v1/tenants/acme/users/alice/rotate-key",
            Some(&a),
            Some(json!({"grace_seconds": 0})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let new = r.json()["secret"].as_str().expect("new secret").to_owned();
    assert_ne!(new, old);
    let keys = app.core.upstream.keys();
    assert_eq!(keys.len(), 1, "grace 0: the old key is gone at once");
    assert_eq!(keys[0].id, new);
    app.call(
        "POST",
        "/v1/tenants/acme/users/alice/rotate-key",
        Some(&a),
        Some(json!({"grace_seconds": 86401})),
    )
    .await
    .problem(422, "validation_failed");
    app.call(
        "POST",
        "/v1/tenants/acme/users/alice/rotate-key",
        Some(&a),
        Some(json!({"grace_seconds": -1})),
    )
    .await
    .problem(400, "invalid_request");
    // reveal (secrets permission)
    let revealer = token("provisioner:secrets", Some("acme"));
    let r = app
        .call(
            "POST",
            "/v1/tenants/acme/users/alice/reveal-key",
            Some(&revealer),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"secret": new}));
    // look-up (admin)
    let r = app
        .call(
            "POST",
            "/v1/keys/lookup",
            Some(&a),
            Some(json!({"secret": new})),
        )
        .await;
    assert_eq!(
        r.json(),
        json!({"tenant_id": "acme", "external_id": "alice"})
    );
    app.call(
        "POST",
        "/v1/keys/lookup",
        Some(&a),
        Some(json!({"secret": "unknown-key"})),
    )
    .await
    .problem(404, "not_found");
    // deprovision, twice
    for _ in 0..2 {
        let r = app
            .call("DELETE", "/v1/tenants/acme/users/alice", Some(&a), None)
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["status"], "deleted");
        assert!(r.json().get("secret").is_none());
    }
    app.call("GET", "/v1/tenants/acme/users/nobody", Some(&a), None)
        .await
        .problem(404, "not_found");
}

#[actix_web::test]
async fn users_list_filters_by_status_and_paginates() {
    let app = spawn().await;
    app.tenant("acme").await;
    let a = admin();
    for u in ["u1", "u2", "u3"] {
        app.user("acme", u).await;
    }
    app.call("DELETE", "/v1/tenants/acme/users/u2", Some(&a), None)
        .await;
    let active = app
        .call(
            "GET",
            "/v1/tenants/acme/users?status=active",
            Some(&a),
            None,
        )
        .await
        .json();
    let ids: Vec<&str> = active["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["external_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["u1", "u3"]);
    let p1 = app
        .call("GET", "/v1/tenants/acme/users?limit=2", Some(&a), None)
        .await
        .json();
    let c = p1["next_cursor"].as_str().expect("cursor");
    let p2 = app
        .call(
            "GET",
            &format!("/v1/tenants/acme/users?limit=2&cursor={c}"),
            Some(&a),
            None,
        )
        .await
        .json();
    assert_eq!(p2["items"][0]["external_id"], "u3");
}

#[actix_web::test]
async fn audit_events_carry_the_request_id_and_the_caller() {
    let app = spawn().await;
    app.tenant("acme").await;
    let writer = token("provisioner:write", Some("acme"));
    let req = TestRequest::put()
        .uri("/v1/tenants/acme/users/zed")
        .insert_header(("authorization", format!("Bearer {writer}")))
        .insert_header(("x-request-id", "req-zed-1"));
    assert_eq!(app.send(req).await.status, 201);
    let events = app
        .call(
            "GET",
            "/v1/audit-events?tenant_id=acme&limit=1000",
            Some(&admin()),
            None,
        )
        .await
        .json();
    let e = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["request_id"] == "req-zed-1")
        .expect("event");
    assert_eq!(e["actor"], "tester-provisioner:write");
    assert!(!events.to_string().contains("pat-super-secret-0001"));
}

#[actix_web::test]
async fn every_answer_is_nosniff_and_secrets_are_never_cached() {
    let app = spawn().await;
    app.tenant("acme").await;
    let a = admin();
    let created = app
        .call("PUT", "/v1/tenants/acme/users/carol", Some(&a), None)
        .await;
    assert_eq!(created.status, 201);
    let revealed = app
        .call(
            "POST",
            "/v1/tenants/acme/users/carol/reveal-key",
            Some(&a),
            None,
        )
        .await;
    let missing = app.call("GET", "/v1/nowhere", Some(&a), None).await;
    let health = app.call("GET", "/healthz", None, None).await;
    let unauthenticated = app.call("GET", "/v1/tenants", None, None).await;
    for (what, r) in [
        ("201 with the secret", &created),
        ("reveal-key", &revealed),
        ("404", &missing),
        ("healthz", &health),
        ("401", &unauthenticated),
    ] {
        assert_eq!(
            r.headers
                .get("x-content-type-options")
                .map(|v| v.to_str().unwrap()),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(
            r.headers.get("cache-control").map(|v| v.to_str().unwrap()),
            Some("no-store"),
            "{what}"
        );
    }
}
