//! Tenants and scope profiles over HTTP.

use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn creating_a_tenant_returns_it_without_the_pat() {
    // Arrange
    let app = spawn().await;
    // Act
    let r = app
        .call(
            "POST",
            "/v1/tenants",
            Some(&admin()),
            Some(tenant_body("acme")),
        )
        .await;
    // Assert
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("location").as_deref(), Some("/v1/tenants/acme"));
    assert!(
        !r.text().contains("pat-super-secret-0001"),
        "the PAT never comes back"
    );
    let t = r.json();
    assert_eq!(t["id"], "acme");
    assert_eq!(t["status"], "active");
    assert_eq!(t["upstream"]["user_id"], "acme-ml");
    let fp = t["upstream"]["pat_fingerprint"].as_str().unwrap();
    assert_eq!(fp.len(), 8);
    assert!(fp.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(t["upstream"].get("pat").is_none());
    assert_eq!(
        t["allowed_scopes"],
        json!(["Concepts:Get", "Inputs:Add", "Inputs:Get", "Predict"])
    );
    assert_eq!(
        t["scope_profiles"]["standard"],
        json!(["Inputs:Get", "Predict"])
    );
    assert_eq!(t["default_scope_profile"], "standard");
    assert!(t["created_at"].as_str().unwrap().ends_with('Z'));
    // Again: 409.
    let r = app
        .call(
            "POST",
            "/v1/tenants",
            Some(&admin()),
            Some(tenant_body("acme")),
        )
        .await;
    r.problem(409, "conflict");
}

#[actix_web::test]
async fn a_rejected_pat_is_422_and_nothing_is_stored() {
    let app = spawn().await;
    let mut body = tenant_body("acme");
    body["upstream"]["pat"] = json!("bad");
    let r = app
        .call("POST", "/v1/tenants", Some(&admin()), Some(body))
        .await;
    r.problem(422, "validation_failed");
    app.call("GET", "/v1/tenants/acme", Some(&admin()), None)
        .await
        .problem(404, "not_found");
}

#[actix_web::test]
async fn tenant_bodies_report_every_bad_field() {
    let app = spawn().await;
    let mut body = tenant_body("Bad Id");
    body["upstream"]["pat"] = json!("has space");
    let r = app
        .call("POST", "/v1/tenants", Some(&admin()), Some(body))
        .await;
    let b = r.problem(400, "invalid_request");
    let pointers: Vec<&str> = b["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["/id", "/upstream/user_id", "/upstream/pat"]);
    assert!(!r.text().contains("has space"), "the PAT is not echoed");
    let mut body = tenant_body("acme");
    body["allowed_scopes"] = json!(["Predict", "Fly"]);
    let b = app
        .call("POST", "/v1/tenants", Some(&admin()), Some(body))
        .await
        .problem(422, "validation_failed");
    assert_eq!(b["errors"][0]["pointer"], "/allowed_scopes/1");
}

#[actix_web::test]
async fn tenants_list_read_patch_and_delete() {
    // Arrange
    let app = spawn().await;
    let a = admin();
    for id in ["a1", "a2", "a3"] {
        app.tenant(id).await;
    }
    // list, paginated
    let p1 = app
        .call("GET", "/v1/tenants?limit=2", Some(&a), None)
        .await
        .json();
    assert_eq!(p1["items"].as_array().unwrap().len(), 2);
    let cursor = p1["next_cursor"].as_str().expect("cursor");
    let p2 = app
        .call(
            "GET",
            &format!("/v1/tenants?limit=2&cursor={cursor}"),
            Some(&a),
            None,
        )
        .await
        .json();
    assert_eq!(p2["items"][0]["id"], "a3");
    assert!(p2["next_cursor"].is_null());
    // patch: suspend, clear the default
    let r = app
        .call(
            "PATCH",
            "/v1/tenants/a1",
            Some(&a),
            Some(json!({"status": "suspended", "default_scope_profile": null})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let t = r.json();
    assert_eq!(t["status"], "suspended");
    assert!(t["default_scope_profile"].is_null());
    // a suspended tenant's provisioning is 409
    let r = app
        .call(
            "PUT",
            "/v1/tenants/a1/users/u",
            Some(&a),
            Some(json!({"scope_profile": "standard"})),
        )
        .await;
    r.problem(409, "conflict");
    // an empty patch changes nothing; an unknown field is 400
    assert_eq!(
        app.call("PATCH", "/v1/tenants/a2", Some(&a), Some(json!({})))
            .await
            .status,
        200
    );
    app.call(
        "PATCH",
        "/v1/tenants/a2",
        Some(&a),
        Some(json!({"pat": "x"})),
    )
    .await
    .problem(400, "invalid_request");
    // credential
    let before = app
        .call("GET", "/v1/tenants/a2", Some(&a), None)
        .await
        .json();
    let r = app
        .call(
            "PUT",
            "/v1/tenants/a2/upstream-credential",
            Some(&a),
            Some(json!({"pat": "new-pat-0002"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_ne!(
        r.json()["upstream"]["pat_fingerprint"],
        before["upstream"]["pat_fingerprint"]
    );
    assert!(!r.text().contains("new-pat-0002"));
    let r = app
        .call(
            "PUT",
            "/v1/tenants/a2/upstream-credential",
            Some(&a),
            Some(json!({"pat": "bad"})),
        )
        .await;
    r.problem(422, "validation_failed");
    // delete: 409 with live users, 204 without
    app.user("a2", "u1").await;
    app.call("DELETE", "/v1/tenants/a2", Some(&a), None)
        .await
        .problem(409, "conflict");
    let r = app.call("DELETE", "/v1/tenants/a3", Some(&a), None).await;
    assert_eq!(r.status, 204);
    app.call("GET", "/v1/tenants/a3", Some(&a), None)
        .await
        .problem(404, "not_found");
}

#[actix_web::test]
async fn scope_profiles_put_get_list_delete() {
    let app = spawn().await;
    let a = admin();
    app.tenant("acme").await;
    let r = app
        .call(
            "PUT",
            "/v1/tenants/acme/scope-profiles/viewer",
            Some(&a),
            Some(json!({"scopes": ["Predict"]})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.header("location").as_deref(),
        Some("/v1/tenants/acme/scope-profiles/viewer")
    );
    let r = app
        .call(
            "PUT",
            "/v1/tenants/acme/scope-profiles/viewer",
            Some(&a),
            Some(json!({"scopes": ["Predict", "Concepts:Get"]})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["scopes"], json!(["Concepts:Get", "Predict"]));
    let r = app
        .call(
            "GET",
            "/v1/tenants/acme/scope-profiles/viewer",
            Some(&a),
            None,
        )
        .await;
    assert_eq!(r.json()["name"], "viewer");
    let list = app
        .call("GET", "/v1/tenants/acme/scope-profiles", Some(&a), None)
        .await
        .json();
    assert_eq!(list["items"].as_array().unwrap().len(), 3);
    // not allowed for the tenant: 422; unknown: 422
    let r = app
        .call(
            "PUT",
            "/v1/tenants/acme/scope-profiles/x",
            Some(&a),
            Some(json!({"scopes": ["Models:Add"]})),
        )
        .await;
    r.problem(422, "validation_failed");
    // the default cannot go
    app.call(
        "DELETE",
        "/v1/tenants/acme/scope-profiles/standard",
        Some(&a),
        None,
    )
    .await
    .problem(409, "conflict");
    assert_eq!(
        app.call(
            "DELETE",
            "/v1/tenants/acme/scope-profiles/viewer",
            Some(&a),
            None
        )
        .await
        .status,
        204
    );
    app.call(
        "GET",
        "/v1/tenants/acme/scope-profiles/viewer",
        Some(&a),
        None,
    )
    .await
    .problem(404, "not_found");
}

#[actix_web::test]
async fn auto_key_check_defaults_to_always_and_is_set_on_create_or_patch() {
    let app = spawn().await;
    let a = admin();
    let t = app.tenant("t1").await;
    assert_eq!(t["auto_key_check"], "always", "{t}");
    let mut body = tenant_body("t2");
    body["auto_key_check"] = json!("learn");
    let r = app.call("POST", "/v1/tenants", Some(&a), Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["auto_key_check"], "learn");
    let r = app
        .call(
            "PATCH",
            "/v1/tenants/t1",
            Some(&a),
            Some(json!({"auto_key_check": "never"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["auto_key_check"], "never");
    // An unknown policy is a 400 that changes nothing.
    app.call(
        "PATCH",
        "/v1/tenants/t1",
        Some(&a),
        Some(json!({"auto_key_check": "sometimes", "display_name": "changed"})),
    )
    .await
    .problem(400, "invalid_request");
    let mut bad = tenant_body("t3");
    bad["auto_key_check"] = json!(true);
    app.call("POST", "/v1/tenants", Some(&a), Some(bad))
        .await
        .problem(400, "invalid_request");
    app.call("GET", "/v1/tenants/t3", Some(&a), None)
        .await
        .problem(404, "not_found");
    let t = app
        .call("GET", "/v1/tenants/t1", Some(&a), None)
        .await
        .json();
    assert_eq!(t["auto_key_check"], "never");
    assert_ne!(t["display_name"], "changed");
}
