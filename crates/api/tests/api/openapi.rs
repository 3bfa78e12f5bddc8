//! The served OpenAPI document.

use serde_json::Value;

use crate::helpers::*;

const ROUTES: &[(&str, &str)] = &[
    ("/v1/tenants", "post"),
    ("/v1/tenants", "get"),
    ("/v1/tenants/{tenant_id}", "get"),
    ("/v1/tenants/{tenant_id}", "patch"),
    ("/v1/tenants/{tenant_id}", "delete"),
    ("/v1/tenants/{tenant_id}/upstream-credential", "put"),
    ("/v1/tenants/{tenant_id}/scope-profiles", "get"),
    ("/v1/tenants/{tenant_id}/scope-profiles/{name}", "put"),
    ("/v1/tenants/{tenant_id}/scope-profiles/{name}", "get"),
    ("/v1/tenants/{tenant_id}/scope-profiles/{name}", "delete"),
    ("/v1/tenants/{tenant_id}/users", "get"),
    ("/v1/tenants/{tenant_id}/users/{external_id}", "put"),
    ("/v1/tenants/{tenant_id}/users/{external_id}", "get"),
    ("/v1/tenants/{tenant_id}/users/{external_id}", "delete"),
    (
        "/v1/tenants/{tenant_id}/users/{external_id}/rotate-key",
        "post",
    ),
    (
        "/v1/tenants/{tenant_id}/users/{external_id}/reveal-key",
        "post",
    ),
    ("/v1/tenants/{tenant_id}/scim", "get"),
    ("/v1/tenants/{tenant_id}/scim", "put"),
    ("/v1/tenants/{tenant_id}/scim/tokens", "post"),
    ("/v1/tenants/{tenant_id}/scim/tokens", "get"),
    ("/v1/tenants/{tenant_id}/scim/tokens/{token_id}", "delete"),
    ("/v1/tenants/{tenant_id}/webhook-endpoints", "post"),
    ("/v1/tenants/{tenant_id}/webhook-endpoints", "get"),
    (
        "/v1/tenants/{tenant_id}/webhook-endpoints/{endpoint_id}",
        "get",
    ),
    (
        "/v1/tenants/{tenant_id}/webhook-endpoints/{endpoint_id}",
        "patch",
    ),
    (
        "/v1/tenants/{tenant_id}/webhook-endpoints/{endpoint_id}",
        "delete",
    ),
    (
        "/v1/tenants/{tenant_id}/webhook-endpoints/{endpoint_id}/rotate-secret",
        "post",
    ),
    (
        "/v1/tenants/{tenant_id}/webhook-endpoints/{endpoint_id}/messages",
        "get",
    ),
    (
        "/v1/tenants/{tenant_id}/webhook-endpoints/{endpoint_id}/messages/{event_id}/attempts",
        "get",
    ),
    (
        "/v1/tenants/{tenant_id}/webhook-endpoints/{endpoint_id}/messages/{event_id}/resend",
        "post",
    ),
    (
        "/v1/tenants/{tenant_id}/webhook-endpoints/{endpoint_id}/recover",
        "post",
    ),
    ("/v1/keys/lookup", "post"),
    ("/v1/audit-events", "get"),
    ("/healthz", "get"),
    ("/readyz", "get"),
    ("/openapi.json", "get"),
];

#[actix_web::test]
async fn the_openapi_document_is_3_1_and_covers_every_route() {
    // Act
    let app = spawn().await;
    let r = app.call("GET", "/openapi.json", None, None).await;
    // Assert
    assert_eq!(r.status, 200);
    let doc: Value = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in ROUTES {
        let op = &paths.get(*path).unwrap_or_else(|| panic!("{path} missing"))[*method];
        assert!(op.is_object(), "{method} {path} missing");
        if path.starts_with("/v1") {
            for status in ["401", "429"] {
                assert!(
                    op["responses"][status].is_object(),
                    "{method} {path} lacks {status}"
                );
            }
            assert!(op["security"].is_array(), "{method} {path} lacks security");
        }
    }
    let problem =
        &doc["components"]["responses"]["NotFound"]["content"]["application/problem+json"];
    assert!(problem.is_object(), "{}", doc["components"]["responses"]);
    // Nothing secret-looking is exampled.
    assert!(!doc.to_string().contains("pat-"));
}

#[test]
fn the_spec_from_code_matches_the_served_one() {
    let doc = provisioner_api::openapi();
    assert!(doc.paths.paths.len() >= 14);
}

#[actix_web::test]
async fn every_path_answers_other_methods_with_405_and_an_allow_header_matching_the_document() {
    // Arrange
    let app = spawn().await;
    let doc = provisioner_api::openapi();
    let doc: Value = serde_json::from_str(&doc.to_json().unwrap()).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let mut documented: Vec<String> = item
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_ascii_uppercase())
            .collect();
        documented.sort();
        let uri = path
            .replace("{tenant_id}", "acme")
            .replace("{name}", "standard")
            .replace("{external_id}", "alice")
            .replace("{token_id}", "t-1")
            .replace("{endpoint_id}", "ep_1")
            .replace("{event_id}", "msg_1");

        // Act
        let r = app.call("TRACE", &uri, Some(&admin()), None).await;

        // Assert
        r.problem(405, "method_not_allowed");
        let allow = r.header("allow").unwrap_or_default();
        let mut allowed: Vec<String> = allow.split(", ").map(str::to_owned).collect();
        allowed.sort();
        assert_eq!(allowed, documented, "Allow of {path}");
    }
}

#[actix_web::test]
async fn optional_bodies_are_documented_as_optional() {
    let doc = provisioner_api::openapi();
    let doc: Value = serde_json::from_str(&doc.to_json().unwrap()).unwrap();
    for (path, method) in [
        ("/v1/tenants/{tenant_id}/users/{external_id}", "put"),
        (
            "/v1/tenants/{tenant_id}/users/{external_id}/rotate-key",
            "post",
        ),
        ("/v1/tenants/{tenant_id}/reconcile", "post"),
        ("/v1/tenants/{tenant_id}/scim", "put"),
        ("/v1/tenants/{tenant_id}/scim/tokens", "post"),
    ] {
        let body = &doc["paths"][path][method]["requestBody"];
        assert!(body.is_object(), "{method} {path} documents its body");
        assert_ne!(
            body["required"], true,
            "{method} {path}: the body is optional"
        );
    }
}
