//! Reconciliation over HTTP: a report needs read, a repair needs admin; unmanaged apps are
//! reported and never touched.

use provisioner_core::ids::{ExternalId, TenantId};
use provisioner_core::marker::app_marker;
use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn a_report_needs_read_and_a_repair_needs_admin() {
    // Arrange: a user, an orphan carrying acme's marker, an app that only shares the prefix.
    let app = spawn().await;
    app.tenant("acme").await;
    app.user("acme", "alice").await;
    let marker = app_marker(
        &TenantId::parse("acme").unwrap(),
        &ExternalId::parse("long-gone").unwrap(),
    );
    app.core.upstream.plant_app("acme-orphan-1", marker);
    app.core
        .upstream
        .plant_app("acme-handmade", serde_json::Value::Null);
    let path = "/v1/tenants/acme/reconcile";
    let read = token("provisioner:read", Some("acme"));
    let write = token("provisioner:write provisioner:secrets", Some("acme"));

    // Act + assert: a report with read.
    let r = app.call("POST", path, Some(&read), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["orphan_apps"], json!([{"app_id": "acme-orphan-1"}]));
    assert_eq!(body["unmanaged_apps"], json!([{"app_id": "acme-handmade"}]));
    assert_eq!(body["repaired"], false);
    let r = app
        .call("POST", path, Some(&write), Some(json!({"repair": false})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // A repair by a non-admin (even with write on its own tenant) is 403 and changes nothing.
    for t in [&read, &write] {
        let r = app
            .call("POST", path, Some(t), Some(json!({"repair": true})))
            .await;
        r.problem(403, "forbidden");
    }
    let apps: Vec<String> = app.core.upstream.apps().into_iter().map(|a| a.id).collect();
    assert!(apps.contains(&"acme-orphan-1".to_owned()), "{apps:?}");
    // Another tenant's token still learns nothing (404 before 403).
    let other = token("provisioner:write", Some("globex"));
    app.call("POST", path, Some(&other), Some(json!({"repair": true})))
        .await
        .problem(404, "not_found");

    // An admin repairs: the marked orphan goes, the unmanaged app stays.
    let r = app
        .call("POST", path, Some(&admin()), Some(json!({"repair": true})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["repaired"], true, "{}", r.text());
    let apps: Vec<String> = app.core.upstream.apps().into_iter().map(|a| a.id).collect();
    assert!(!apps.contains(&"acme-orphan-1".to_owned()), "{apps:?}");
    assert!(apps.contains(&"acme-handmade".to_owned()), "{apps:?}");
    let again = app.call("POST", path, Some(&read), None).await.json();
    assert_eq!(again["orphan_apps"], json!([]));
    assert_eq!(
        again["unmanaged_apps"],
        json!([{"app_id": "acme-handmade"}])
    );
}

#[actix_web::test]
async fn unmarked_keys_are_reported_and_an_admin_repair_deletes_them() {
    let app = spawn().await;
    app.tenant("acme").await;
    let u = app.user("acme", "alice").await;
    let app_id = u["app"]["id"].as_str().unwrap().to_owned();
    app.core.upstream.plant_key(
        &app_id,
        "handmadekey0000000000000000001",
        "made by hand",
        &["Predict", "All"],
    );
    let path = "/v1/tenants/acme/reconcile";
    let r = app.call("POST", path, Some(&admin()), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["orphan_keys"], json!([]));
    let keys = &r.json()["unmarked_keys"];
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    assert_eq!(keys[0]["external_id"], "alice");
    assert_eq!(keys[0]["app_id"], app_id.as_str());
    assert_eq!(keys[0]["description"], "made by hand");
    assert_eq!(keys[0]["scopes"], json!(["All", "Predict"]));
    assert_eq!(keys[0]["app_managed"], true);
    assert_eq!(keys[0]["key_fingerprint"].as_str().unwrap().len(), 8);
    assert!(!r.text().contains("handmadekey0000000000000000001"));

    let r = app
        .call("POST", path, Some(&admin()), Some(json!({"repair": true})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["repaired"], true, "{}", r.text());
    assert!(
        !app.core
            .upstream
            .keys()
            .iter()
            .any(|k| k.id == "handmadekey0000000000000000001"),
        "an admin repair deletes an unmarked key on a managed app"
    );
    let again = app.call("POST", path, Some(&admin()), None).await.json();
    assert_eq!(again["unmarked_keys"], json!([]));
}

#[actix_web::test]
async fn the_openapi_report_schema_lists_unmanaged_apps() {
    let app = spawn().await;
    let doc = app.call("GET", "/openapi.json", None, None).await.json();
    let schemas = &doc["components"]["schemas"];
    let out = &schemas["ReconcileOut"];
    for field in [
        "orphan_apps",
        "orphan_keys",
        "unmarked_keys",
        "missing_apps",
        "missing_keys",
        "scope_drift",
        "unmanaged_apps",
        "repaired",
        "repair_errors",
    ] {
        assert!(out["properties"][field].is_object(), "{field}: {out}");
        assert!(
            out["required"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == field),
            "{field} required: {out}"
        );
    }
    assert!(schemas["UnmanagedAppOut"]["properties"]["app_id"].is_object());
    for field in [
        "external_id",
        "app_id",
        "key_fingerprint",
        "description",
        "scopes",
        "other_apps",
        "app_managed",
    ] {
        assert!(
            schemas["UnmarkedKeyOut"]["properties"][field].is_object(),
            "{field}"
        );
    }
    let op = &doc["paths"]["/v1/tenants/{tenant_id}/reconcile"]["post"];
    assert!(
        op["description"]
            .as_str()
            .unwrap_or_default()
            .contains("provisioner:admin")
            || op["summary"]
                .as_str()
                .unwrap_or_default()
                .contains("provisioner:admin"),
        "{op}"
    );
}
