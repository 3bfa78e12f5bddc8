//! Tenant isolation (404 across tenants, checked before permissions) and the permission matrix.

use serde_json::{Value, json};

use crate::helpers::*;

const ALL_BUT_ADMIN: &str =
    "provisioner:write provisioner:read provisioner:secrets provisioner:audit";

/// Every tenant route: method, path under `/v1/tenants/{t}`, body, and a scope set that lacks
/// the route's permission.
fn tenant_routes() -> Vec<(&'static str, &'static str, Option<Value>, &'static str)> {
    vec![
        ("GET", "", None, "provisioner:audit"),
        (
            "PATCH",
            "",
            Some(json!({"display_name": "x"})),
            "provisioner:write provisioner:secrets",
        ),
        ("DELETE", "", None, ALL_BUT_ADMIN),
        (
            "PUT",
            "/upstream-credential",
            Some(json!({"pat": "p-123"})),
            ALL_BUT_ADMIN,
        ),
        ("GET", "/scope-profiles", None, "provisioner:secrets"),
        ("GET", "/scope-profiles/standard", None, "provisioner:audit"),
        (
            "PUT",
            "/scope-profiles/new",
            Some(json!({"scopes": ["Predict"]})),
            ALL_BUT_ADMIN,
        ),
        ("DELETE", "/scope-profiles/annotator", None, ALL_BUT_ADMIN),
        ("GET", "/users", None, "provisioner:secrets"),
        ("GET", "/users/alice", None, "provisioner:audit"),
        (
            "PUT",
            "/users/carol",
            None,
            "provisioner:read provisioner:secrets",
        ),
        ("DELETE", "/users/alice", None, "provisioner:read"),
        (
            "POST",
            "/users/alice/rotate-key",
            None,
            "provisioner:read provisioner:audit",
        ),
        ("POST", "/users/alice/reveal-key", None, "provisioner:write"),
        ("GET", "/scim", None, ALL_BUT_ADMIN),
        ("PUT", "/scim", Some(json!({})), ALL_BUT_ADMIN),
        ("POST", "/scim/tokens", None, ALL_BUT_ADMIN),
        ("GET", "/scim/tokens", None, ALL_BUT_ADMIN),
        ("DELETE", "/scim/tokens/t-1", None, ALL_BUT_ADMIN),
        (
            "POST",
            "/webhook-endpoints",
            Some(json!({"url": "https://hooks.example/in"})),
            ALL_BUT_ADMIN,
        ),
        ("GET", "/webhook-endpoints", None, ALL_BUT_ADMIN),
        ("GET", "/webhook-endpoints/ep_1", None, ALL_BUT_ADMIN),
        (
            "PATCH",
            "/webhook-endpoints/ep_1",
            Some(json!({"enabled": false})),
            ALL_BUT_ADMIN,
        ),
        ("DELETE", "/webhook-endpoints/ep_1", None, ALL_BUT_ADMIN),
        (
            "POST",
            "/webhook-endpoints/ep_1/rotate-secret",
            None,
            ALL_BUT_ADMIN,
        ),
        (
            "GET",
            "/webhook-endpoints/ep_1/messages",
            None,
            ALL_BUT_ADMIN,
        ),
        (
            "GET",
            "/webhook-endpoints/ep_1/messages/msg_1/attempts",
            None,
            ALL_BUT_ADMIN,
        ),
        (
            "POST",
            "/webhook-endpoints/ep_1/messages/msg_1/resend",
            None,
            ALL_BUT_ADMIN,
        ),
        (
            "POST",
            "/webhook-endpoints/ep_1/recover",
            Some(json!({"since": "2026-01-01T00:00:00Z"})),
            ALL_BUT_ADMIN,
        ),
    ]
}

#[actix_web::test]
async fn another_tenants_routes_answer_404_whatever_the_token_may_do() {
    // Arrange
    let app = spawn().await;
    app.tenant("acme").await;
    app.tenant("umbrella").await;
    app.user("acme", "alice").await;
    let intruder = token(ALL_BUT_ADMIN, Some("umbrella"));
    let unbound = token(ALL_BUT_ADMIN, None);
    for (method, suffix, body, _) in tenant_routes() {
        for (t, who) in [
            (&intruder, "bound to umbrella"),
            (&unbound, "bound to none"),
        ] {
            // Act
            let r = app
                .call(
                    method,
                    &format!("/v1/tenants/acme{suffix}"),
                    Some(t),
                    body.clone(),
                )
                .await;
            // Assert
            assert_eq!(r.status, 404, "{method} {suffix} {who}: {}", r.text());
            r.problem(404, "not_found");
        }
        // A tenant that does not exist looks the same.
        let r = app
            .call(
                method,
                &format!("/v1/tenants/ghost{suffix}"),
                Some(&intruder),
                body.clone(),
            )
            .await;
        r.problem(404, "not_found");
    }
    // Nothing changed for acme.
    let r = app
        .call("GET", "/v1/tenants/acme/users/alice", Some(&admin()), None)
        .await;
    assert_eq!(r.json()["status"], "active");
    assert_eq!(
        app.call(
            "GET",
            "/v1/tenants/acme/scope-profiles/annotator",
            Some(&admin()),
            None
        )
        .await
        .status,
        200
    );
}

#[actix_web::test]
async fn a_missing_permission_on_the_callers_own_tenant_is_403() {
    let app = spawn().await;
    app.tenant("acme").await;
    app.user("acme", "alice").await;
    for (method, suffix, body, lacking) in tenant_routes() {
        let t = token(lacking, Some("acme"));
        let r = app
            .call(method, &format!("/v1/tenants/acme{suffix}"), Some(&t), body)
            .await;
        assert_eq!(
            r.status,
            403,
            "{method} {suffix} with {lacking:?}: {}",
            r.text()
        );
        r.problem(403, "forbidden");
    }
}

#[actix_web::test]
async fn non_admin_tokens_cannot_use_global_admin_routes() {
    let app = spawn().await;
    let t = token(ALL_BUT_ADMIN, Some("acme"));
    let cases = [
        ("POST", "/v1/tenants", Some(tenant_body("acme"))),
        ("GET", "/v1/tenants", None),
        ("POST", "/v1/keys/lookup", Some(json!({"secret": "abc"}))),
    ];
    for (method, path, body) in cases {
        app.call(method, path, Some(&t), body)
            .await
            .problem(403, "forbidden");
    }
    let no_audit = token("provisioner:write", Some("acme"));
    app.call("GET", "/v1/audit-events", Some(&no_audit), None)
        .await
        .problem(403, "forbidden");
}

#[actix_web::test]
async fn a_bound_token_with_the_right_scope_works_on_its_tenant() {
    let app = spawn().await;
    app.tenant("acme").await;
    let writer = token("provisioner:write", Some("acme"));
    let r = app
        .call("PUT", "/v1/tenants/acme/users/dave", Some(&writer), None)
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    // write implies read
    assert_eq!(
        app.call("GET", "/v1/tenants/acme/users/dave", Some(&writer), None)
            .await
            .status,
        200
    );
    assert_eq!(
        app.call("GET", "/v1/tenants/acme", Some(&writer), None)
            .await
            .status,
        200
    );
    assert_eq!(
        app.call(
            "GET",
            "/v1/tenants/acme/scope-profiles",
            Some(&writer),
            None
        )
        .await
        .status,
        200
    );
}

#[actix_web::test]
async fn audit_events_are_tenant_bound_like_the_rest() {
    // Arrange
    let app = spawn().await;
    app.tenant("acme").await;
    app.tenant("umbrella").await;
    app.user("acme", "alice").await;
    app.user("umbrella", "bob").await;
    let auditor = token("provisioner:audit", Some("acme"));
    // Act
    let own = app
        .call("GET", "/v1/audit-events", Some(&auditor), None)
        .await;
    let other = app
        .call(
            "GET",
            "/v1/audit-events?tenant_id=umbrella",
            Some(&auditor),
            None,
        )
        .await;
    let all = app
        .call("GET", "/v1/audit-events", Some(&admin()), None)
        .await;
    let filtered = app
        .call(
            "GET",
            "/v1/audit-events?tenant_id=umbrella",
            Some(&admin()),
            None,
        )
        .await;
    // Assert
    assert_eq!(own.status, 200, "{}", own.text());
    let own = own.json();
    assert!(!own["items"].as_array().unwrap().is_empty());
    assert!(
        own["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["tenant_id"] == "acme")
    );
    other.problem(404, "not_found");
    let all = all.json();
    assert!(
        all["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["tenant_id"] == "umbrella")
    );
    assert!(
        filtered.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["tenant_id"] == "umbrella")
    );
    let unbound = token("provisioner:audit", None);
    app.call("GET", "/v1/audit-events", Some(&unbound), None)
        .await
        .problem(403, "forbidden");
}
