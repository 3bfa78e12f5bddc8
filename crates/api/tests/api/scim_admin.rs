//! `/v1/tenants/{tenant}/scim`: settings and the SCIM token lifecycle (admin, problem details).

use serde_json::json;

use crate::helpers::*;
use crate::scim::*;

#[actix_web::test]
async fn settings_default_and_are_replaced_whole() {
    // Arrange
    let app = spawn().await;
    app.tenant("acme").await;
    // Act
    let r = app
        .call("GET", "/v1/tenants/acme/scim", Some(&admin()), None)
        .await;
    // Assert
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({
            "tenant_id": "acme", "external_id_from": "user_name", "on_deactivate": "revoke_key",
            "scope_profile": null, "profile_attribute": null, "scim_base_url": "/scim/v2/acme",
            "updated_at": null
        })
    );
    let body = json!({
        "external_id_from": "external_id", "on_deactivate": "deprovision",
        "scope_profile": "annotator", "profile_attribute": "userType"
    });
    let r = app
        .call("PUT", "/v1/tenants/acme/scim", Some(&admin()), Some(body))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let put = r.json();
    assert_eq!(put["external_id_from"], "external_id");
    assert_eq!(put["scope_profile"], "annotator");
    assert!(put["updated_at"].is_string());
    assert_eq!(
        app.call("GET", "/v1/tenants/acme/scim", Some(&admin()), None)
            .await
            .json(),
        put
    );
    // A PUT replaces the whole: absent fields take their defaults again.
    let r = app
        .call(
            "PUT",
            "/v1/tenants/acme/scim",
            Some(&admin()),
            Some(json!({"on_deactivate": "deprovision"})),
        )
        .await;
    let b = r.json();
    assert_eq!(
        (b["external_id_from"].as_str(), b["scope_profile"].is_null()),
        (Some("user_name"), true)
    );
    // An empty body restores every default.
    let r = app
        .send(
            actix_web::test::TestRequest::put()
                .uri("/v1/tenants/acme/scim")
                .insert_header(("authorization", format!("Bearer {}", admin()))),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["on_deactivate"], "revoke_key");
}

#[actix_web::test]
async fn bad_settings_are_refused_like_the_rest_of_v1() {
    let app = spawn().await;
    app.tenant("acme").await;
    let a = admin();
    let put = |body| app.call("PUT", "/v1/tenants/acme/scim", Some(&a), Some(body));
    put(json!({"external_id_from": "user_name", "extra": 1}))
        .await
        .problem(400, "invalid_request");
    put(json!({"on_deactivate": "suspend"}))
        .await
        .problem(400, "invalid_request");
    put(json!({"scope_profile": "Not Valid"}))
        .await
        .problem(400, "invalid_request");
    put(json!({"profile_attribute": "has spaces"}))
        .await
        .problem(400, "invalid_request");
    put(json!({"scope_profile": "nonexistent"}))
        .await
        .problem(422, "validation_failed");
    app.call("GET", "/v1/tenants/ghost/scim", Some(&admin()), None)
        .await
        .problem(404, "not_found");
}

#[actix_web::test]
async fn tokens_are_shown_once_rotated_with_overlap_and_revoked() {
    // Arrange
    let app = spawn().await;
    app.tenant("acme").await;
    let a = admin();
    let issue = |body| app.call("POST", "/v1/tenants/acme/scim/tokens", Some(&a), body);
    // Act: the first token.
    let r = issue(None).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let first = r.json();
    let first_secret = first["token"].as_str().unwrap().to_owned();
    assert!(first_secret.starts_with("scim_"));
    assert!(first["id"].is_string() && first["created_at"].is_string());
    assert_eq!(first["expires_at"], json!(null));
    let works = |secret: String| {
        let app = &app;
        async move {
            scim(app, "GET", "/ServiceProviderConfig", Some(&secret), None)
                .await
                .status
                .as_u16()
        }
    };
    assert_eq!(works(first_secret.clone()).await, 200);
    // A second token with the default overlap: both work for now.
    let second = issue(Some(json!({}))).await.json();
    let second_secret = second["token"].as_str().unwrap().to_owned();
    assert_eq!(works(first_secret.clone()).await, 200);
    assert_eq!(works(second_secret.clone()).await, 200);
    // The list shows ids and times, never a secret or a hash.
    let list = app
        .call("GET", "/v1/tenants/acme/scim/tokens", Some(&admin()), None)
        .await;
    assert_eq!(list.status, 200);
    let items = list.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], first["id"]);
    assert!(
        items[0]["expires_at"].is_string(),
        "the replaced token expires: {}",
        list.text()
    );
    assert!(items[1]["expires_at"].is_null());
    assert_eq!(items[0]["created_by"], "tester-provisioner:admin");
    let mut keys: Vec<&String> = items[0].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["created_at", "created_by", "expires_at", "id"]);
    assert!(!list.text().contains(&first_secret) && !list.text().contains(&second_secret));
    // A third with no overlap: the others stop at once.
    let third = issue(Some(json!({"overlap_seconds": 0}))).await.json();
    assert_eq!(works(first_secret).await, 401);
    assert_eq!(works(second_secret).await, 401);
    let third_secret = third["token"].as_str().unwrap().to_owned();
    assert_eq!(works(third_secret.clone()).await, 200);
    // Revoked: 204, then 401 on /scim and 404 on a second revoke.
    let path = format!(
        "/v1/tenants/acme/scim/tokens/{}",
        third["id"].as_str().unwrap()
    );
    assert_eq!(
        app.call("DELETE", &path, Some(&admin()), None).await.status,
        204
    );
    assert_eq!(works(third_secret).await, 401);
    app.call("DELETE", &path, Some(&admin()), None)
        .await
        .problem(404, "not_found");
}

#[actix_web::test]
async fn a_bad_overlap_is_refused() {
    let app = spawn().await;
    app.tenant("acme").await;
    let a = admin();
    let issue = |body| app.call("POST", "/v1/tenants/acme/scim/tokens", Some(&a), Some(body));
    issue(json!({"overlap_seconds": -1}))
        .await
        .problem(400, "invalid_request");
    issue(json!({"overlap_seconds": 10, "x": 1}))
        .await
        .problem(400, "invalid_request");
    issue(json!({"overlap_seconds": 2_592_001}))
        .await
        .problem(422, "validation_failed");
    assert_eq!(
        issue(json!({"overlap_seconds": 2_592_000})).await.status,
        201
    );
}

#[actix_web::test]
async fn another_tenants_token_ids_are_not_found() {
    let app = spawn().await;
    app.tenant("acme").await;
    app.tenant("umbrella").await;
    let r = app
        .call("POST", "/v1/tenants/acme/scim/tokens", Some(&admin()), None)
        .await;
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let secret = r.json()["token"].as_str().unwrap().to_owned();
    app.call(
        "DELETE",
        &format!("/v1/tenants/umbrella/scim/tokens/{id}"),
        Some(&admin()),
        None,
    )
    .await
    .problem(404, "not_found");
    assert_eq!(
        scim(&app, "GET", "/Schemas", Some(&secret), None)
            .await
            .status,
        200
    );
}
