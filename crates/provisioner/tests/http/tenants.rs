//! Tenants, the upstream credential and scope profiles.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{SIM_PAT, TestApp, assert_problem};

crate::on_both_backends!(
    tenant_lifecycle_over_http,
    a_rejected_pat_stores_nothing,
    scope_profiles_round_trip,
    tenants_list_pages_with_a_cursor,
    a_tenant_needs_only_id_upstream_and_allowed_scopes
);

async fn a_tenant_needs_only_id_upstream_and_allowed_scopes(app: TestApp) {
    let body = json!({
        "id": "mini",
        "upstream": {"base_url": app.sim.base_url(), "user_id": crate::helpers::SIM_USER, "pat": SIM_PAT},
        "allowed_scopes": ["Predict", "Inputs:Get"]
    });
    let r = app
        .call(Method::POST, "/v1/tenants", Some(&app.admin), Some(body))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["display_name"], "mini");
    assert_eq!(
        r.body["app_defaults"],
        json!({"id_prefix": "mini-", "default_workflow": "Empty", "description": "Provisioned for {external_id}"})
    );
    assert_eq!(
        r.body["upstream_rate_limit"],
        json!({"requests_per_second": 15, "max_concurrency": 8})
    );
    // No profile is made up: a PUT naming no scopes gets all of the allowed scopes.
    assert!(r.body["default_scope_profile"].is_null(), "{}", r.text);

    // One app-defaults field given: the others still take their defaults.
    let body = json!({
        "id": "half",
        "upstream": {"base_url": app.sim.base_url(), "user_id": crate::helpers::SIM_USER, "pat": SIM_PAT},
        "allowed_scopes": ["Predict"],
        "app_defaults": {"default_workflow": "General"},
        "scope_profiles": {"p": ["Predict"]}
    });
    let r = app
        .call(Method::POST, "/v1/tenants", Some(&app.admin), Some(body))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        r.body["app_defaults"],
        json!({"id_prefix": "half-", "default_workflow": "General", "description": "Provisioned for {external_id}"})
    );
    assert!(r.body["default_scope_profile"].is_null(), "{}", r.text);
    // Profiles but no default: a PUT naming no scopes is refused, as before.
    let wh = app.token("provisioner:write", Some("half"));
    let u = app.put_user("half", "u0", &wh, json!({})).await;
    assert_problem(&u, 422, "validation_failed");

    // Allowed scopes that are not a valid key on their own (Inputs:Add needs Inputs:Get) are
    // still a valid tenant; only a key made of them is refused.
    let body = json!({
        "id": "deps",
        "upstream": {"base_url": app.sim.base_url(), "user_id": crate::helpers::SIM_USER, "pat": SIM_PAT},
        "allowed_scopes": ["Predict", "Inputs:Add"]
    });
    let r = app
        .call(Method::POST, "/v1/tenants", Some(&app.admin), Some(body))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    // A PUT naming no scopes gets all of the allowed scopes.
    let w = app.token("provisioner:write", Some("mini"));
    let u = app.put_user("mini", "u1", &w, json!({})).await;
    assert_eq!(u.status, StatusCode::CREATED, "{}", u.text);
    let mut scopes: Vec<String> = serde_json::from_value(u.body["key"]["scopes"].clone()).unwrap();
    scopes.sort();
    assert_eq!(scopes, ["Inputs:Get", "Predict"]);
    // The default follows the allowed scopes as they are now.
    let p = app
        .call(
            Method::PATCH,
            "/v1/tenants/mini",
            Some(&app.admin),
            Some(json!({"allowed_scopes": ["Predict"]})),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    let u = app.put_user("mini", "u2", &w, json!({})).await;
    assert_eq!(u.status, StatusCode::CREATED, "{}", u.text);
    assert_eq!(u.body["key"]["scopes"], json!(["Predict"]));
    // An unknown field is still refused, and nothing is created.
    let bad = json!({
        "id": "typo",
        "upstream": {"base_url": app.sim.base_url(), "user_id": crate::helpers::SIM_USER, "pat": SIM_PAT},
        "allowed_scopes": ["Predict"],
        "app_defaults": {"id_prefx": "x-"}
    });
    let r = app
        .call(Method::POST, "/v1/tenants", Some(&app.admin), Some(bad))
        .await;
    assert_problem(&r, 400, "invalid_request");
    let gone = app
        .call(Method::GET, "/v1/tenants/typo", Some(&app.admin), None)
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

async fn tenant_lifecycle_over_http(app: TestApp) {
    // Arrange / Act: create.
    let r = app
        .call(
            Method::POST,
            "/v1/tenants",
            Some(&app.admin),
            Some(app.tenant_body("acme")),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // Assert: the PAT is never returned, only its fingerprint.
    assert!(!r.text.contains(SIM_PAT));
    assert_eq!(
        r.body["upstream"]["pat_fingerprint"]
            .as_str()
            .unwrap()
            .len(),
        8
    );
    assert_eq!(r.body["id"], "acme");
    assert_eq!(r.body["status"], "active");

    // A duplicate is a conflict.
    let dup = app
        .call(
            Method::POST,
            "/v1/tenants",
            Some(&app.admin),
            Some(app.tenant_body("acme")),
        )
        .await;
    assert_problem(&dup, 409, "conflict");

    // Read it (admin, and a token bound to it with read).
    let read = app.token("provisioner:read", Some("acme"));
    let g = app
        .call(Method::GET, "/v1/tenants/acme", Some(&read), None)
        .await;
    assert_eq!(g.status, StatusCode::OK, "{}", g.text);
    assert_eq!(
        g.body["scope_profiles"]["standard"],
        json!(["Inputs:Get", "Predict"])
    );

    // Patch: suspend; provisioning then answers 409.
    let p = app
        .call(
            Method::PATCH,
            "/v1/tenants/acme",
            Some(&app.admin),
            Some(json!({"status": "suspended", "display_name": "Acme Inc"})),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    assert_eq!(p.body["status"], "suspended");
    assert_eq!(p.body["display_name"], "Acme Inc");
    let write = app.token("provisioner:write", Some("acme"));
    let put = app.put_user("acme", "u1", &write, json!({})).await;
    assert_problem(&put, 409, "conflict");
    let p = app
        .call(
            Method::PATCH,
            "/v1/tenants/acme",
            Some(&app.admin),
            Some(json!({"status": "active"})),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK);

    // Replace the credential (verified first).
    let c = app
        .call(
            Method::PUT,
            "/v1/tenants/acme/upstream-credential",
            Some(&app.admin),
            Some(json!({"pat": SIM_PAT})),
        )
        .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.text);
    let bad = app
        .call(
            Method::PUT,
            "/v1/tenants/acme/upstream-credential",
            Some(&app.admin),
            Some(json!({"pat": "not-a-real-pat"})),
        )
        .await;
    assert_problem(&bad, 422, "validation_failed");

    // Delete: refused while a user is live, allowed once every user is deleted.
    assert_eq!(
        app.put_user("acme", "u1", &write, json!({})).await.status,
        StatusCode::CREATED
    );
    let d = app
        .call(Method::DELETE, "/v1/tenants/acme", Some(&app.admin), None)
        .await;
    assert_problem(&d, 409, "conflict");
    let del_user = app
        .call(
            Method::DELETE,
            "/v1/tenants/acme/users/u1",
            Some(&write),
            None,
        )
        .await;
    assert_eq!(del_user.status, StatusCode::OK);
    let d = app
        .call(Method::DELETE, "/v1/tenants/acme", Some(&app.admin), None)
        .await;
    assert!(d.status.is_success(), "{}", d.text);
    let g = app
        .call(Method::GET, "/v1/tenants/acme", Some(&app.admin), None)
        .await;
    assert_problem(&g, 404, "not_found");
}

async fn a_rejected_pat_stores_nothing(app: TestApp) {
    let mut body = app.tenant_body("acme");
    body["upstream"]["pat"] = json!("wrong-pat-value");
    let r = app
        .call(Method::POST, "/v1/tenants", Some(&app.admin), Some(body))
        .await;
    assert_problem(&r, 422, "validation_failed");
    assert!(!r.text.contains("wrong-pat-value"));
    let g = app
        .call(Method::GET, "/v1/tenants/acme", Some(&app.admin), None)
        .await;
    assert_problem(&g, 404, "not_found");
}

async fn scope_profiles_round_trip(app: TestApp) {
    app.create_tenant("acme").await;
    let put = app
        .call(
            Method::PUT,
            "/v1/tenants/acme/scope-profiles/viewer",
            Some(&app.admin),
            Some(json!({"scopes": ["Predict"]})),
        )
        .await;
    assert!(put.status.is_success(), "{}", put.text);
    let read = app.token("provisioner:read", Some("acme"));
    let one = app
        .call(
            Method::GET,
            "/v1/tenants/acme/scope-profiles/viewer",
            Some(&read),
            None,
        )
        .await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.text);
    assert!(one.text.contains("Predict"));
    let list = app
        .call(
            Method::GET,
            "/v1/tenants/acme/scope-profiles",
            Some(&read),
            None,
        )
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    assert!(list.text.contains("viewer") && list.text.contains("standard"));
    // Outside the allowed scopes: 422, nothing stored.
    let bad = app
        .call(
            Method::PUT,
            "/v1/tenants/acme/scope-profiles/admin",
            Some(&app.admin),
            Some(json!({"scopes": ["All"]})),
        )
        .await;
    assert_problem(&bad, 422, "validation_failed");
    let unknown = app
        .call(
            Method::PUT,
            "/v1/tenants/acme/scope-profiles/x",
            Some(&app.admin),
            Some(json!({"scopes": ["Teleport"]})),
        )
        .await;
    assert!(
        matches!(unknown.status.as_u16(), 400 | 422),
        "{}",
        unknown.text
    );
    let del = app
        .call(
            Method::DELETE,
            "/v1/tenants/acme/scope-profiles/viewer",
            Some(&app.admin),
            None,
        )
        .await;
    assert!(del.status.is_success(), "{}", del.text);
    let gone = app
        .call(
            Method::GET,
            "/v1/tenants/acme/scope-profiles/viewer",
            Some(&read),
            None,
        )
        .await;
    assert_problem(&gone, 404, "not_found");
    // The default profile cannot be deleted.
    let def = app
        .call(
            Method::DELETE,
            "/v1/tenants/acme/scope-profiles/standard",
            Some(&app.admin),
            None,
        )
        .await;
    assert_problem(&def, 409, "conflict");
}

async fn tenants_list_pages_with_a_cursor(app: TestApp) {
    for id in ["t-a", "t-b", "t-c"] {
        app.create_tenant(id).await;
    }
    let first = app
        .call(Method::GET, "/v1/tenants?limit=2", Some(&app.admin), None)
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(first.body["items"].as_array().unwrap().len(), 2);
    let cursor = first.body["next_cursor"]
        .as_str()
        .expect("a next cursor")
        .to_owned();
    let second = app
        .call(
            Method::GET,
            &format!("/v1/tenants?limit=2&cursor={cursor}"),
            Some(&app.admin),
            None,
        )
        .await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text);
    let items = second.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], "t-c");
    assert!(second.body["next_cursor"].is_null());
}
