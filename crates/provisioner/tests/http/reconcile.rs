//! Reconciliation over HTTP: orphans planted out of band are reported, then repaired by an
//! admin; an app that carries no marker of this service is reported and never touched, and an
//! unmarked key on a managed app is reported and deleted by the repair.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{OTHER_USER, SIM_USER, TestApp, assert_problem};

crate::on_both_backends!(
    planted_drift_is_reported_then_repaired,
    the_periodic_drift_check_records_counts_without_repairing
);

async fn planted_drift_is_reported_then_repaired(app: TestApp) {
    // Arrange: three active users, then changes behind the service's back.
    app.create_tenant("acme").await;
    let w = app.token("provisioner:write", Some("acme"));
    let mut app_ids = Vec::new();
    for u in ["u1", "u2", "u3"] {
        let r = app.put_user("acme", u, &w, json!({})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        app_ids.push(r.body["app"]["id"].as_str().unwrap().to_owned());
    }
    let clean = app
        .call(
            Method::POST,
            "/v1/tenants/acme/reconcile",
            Some(&w),
            Some(json!({"repair": false})),
        )
        .await;
    assert_eq!(clean.status, StatusCode::OK, "{}", clean.text);
    for k in [
        "orphan_apps",
        "orphan_keys",
        "unmarked_keys",
        "missing_apps",
        "missing_keys",
        "scope_drift",
    ] {
        assert_eq!(clean.body[k], json!([]), "{k}: {}", clean.text);
    }
    // An app with acme's marker that no user records, an app that only shares the prefix, a
    // late key carrying our marker and a hand-made key on a managed app, a key deleted upstream.
    app.sim
        .insert_app(SIM_USER, "acme-planted-orphan", marked("gone"));
    app.sim.insert_app(SIM_USER, "acme-handmade", json!({}));
    let late = app.sim.insert_key(
        SIM_USER,
        &app_ids[0],
        &["Predict"],
        &format!("prov:{}:g1", app_ids[0]),
    );
    let extra = app.sim.insert_key(
        SIM_USER,
        &app_ids[0],
        &["Predict"],
        "made by hand in the portal",
    );
    let u2_key = app
        .sim
        .keys(SIM_USER)
        .into_iter()
        .find(|k| k.app_ids == vec![app_ids[1].clone()])
        .unwrap();
    assert!(app.sim.remove_key(SIM_USER, &u2_key.id));
    // Another customer's app on another account is none of our business.
    app.sim.insert_app(OTHER_USER, "acme-not-ours", marked("x"));

    // Act: report (read is enough).
    let read = app.token("provisioner:read", Some("acme"));
    let r = app
        .call(
            Method::POST,
            "/v1/tenants/acme/reconcile",
            Some(&read),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.body["orphan_apps"],
        json!([{"app_id": "acme-planted-orphan"}])
    );
    assert_eq!(
        r.body["unmanaged_apps"],
        json!([{"app_id": "acme-handmade"}])
    );
    let orphan_keys = r.body["orphan_keys"].as_array().unwrap();
    assert_eq!(orphan_keys.len(), 1, "{}", r.text);
    assert_eq!(orphan_keys[0]["app_id"], app_ids[0]);
    assert_eq!(
        orphan_keys[0]["description"],
        format!("prov:{}:g1", app_ids[0])
    );
    let unmarked = r.body["unmarked_keys"].as_array().unwrap();
    assert_eq!(unmarked.len(), 1, "{}", r.text);
    assert_eq!(unmarked[0]["external_id"], "u1");
    assert_eq!(unmarked[0]["app_id"], app_ids[0]);
    assert_eq!(unmarked[0]["description"], "made by hand in the portal");
    assert_eq!(unmarked[0]["app_managed"], true);
    assert!(
        !r.text.contains(&extra) && !r.text.contains(&late),
        "a report never shows a key's secret"
    );
    assert_eq!(
        r.body["missing_keys"],
        json!([{"external_id": "u2", "app_id": app_ids[1]}])
    );
    assert_eq!(r.body["repaired"], false);
    assert_eq!(app.sim.apps(SIM_USER).len(), 5, "a report changes nothing");

    // A repair needs admin: write on its own tenant is not enough.
    let denied = app
        .call(
            Method::POST,
            "/v1/tenants/acme/reconcile",
            Some(&w),
            Some(json!({"repair": true})),
        )
        .await;
    assert_problem(&denied, 403, "forbidden");
    assert_eq!(
        app.sim.apps(SIM_USER).len(),
        5,
        "a refused repair changes nothing"
    );

    // Act: repair.
    let admin = app.token("provisioner:admin", None);
    let fixed = app
        .call(
            Method::POST,
            "/v1/tenants/acme/reconcile",
            Some(&admin),
            Some(json!({"repair": true})),
        )
        .await;
    assert_eq!(fixed.status, StatusCode::OK, "{}", fixed.text);
    assert_eq!(fixed.body["repaired"], true, "{}", fixed.text);

    // Assert: one app and one key per user; the unmanaged app is untouched; a second report
    // finds only it; audited.
    let apps = app.sim.apps(SIM_USER);
    assert_eq!(apps.len(), 4);
    assert!(apps.iter().any(|a| a.id == "acme-handmade"));
    let keys = app.sim.keys(SIM_USER);
    assert_eq!(keys.len(), 3);
    assert!(
        !keys.iter().any(|k| k.id == extra),
        "an unmarked key on a managed app is deleted by the repair"
    );
    assert!(!keys.iter().any(|k| k.id == late));
    for id in &app_ids {
        assert_eq!(keys.iter().filter(|k| &k.app_ids[0] == id).count(), 1);
    }
    assert_eq!(app.sim.apps(OTHER_USER).len(), 1);
    let again = app
        .call(
            Method::POST,
            "/v1/tenants/acme/reconcile",
            Some(&read),
            None,
        )
        .await;
    for k in [
        "orphan_apps",
        "orphan_keys",
        "unmarked_keys",
        "missing_apps",
        "missing_keys",
        "scope_drift",
    ] {
        assert_eq!(again.body[k], json!([]), "{k}: {}", again.text);
    }
    let a = app.token("provisioner:audit", Some("acme"));
    let ev = app
        .call(Method::GET, "/v1/audit-events?limit=1000", Some(&a), None)
        .await;
    let actions: Vec<&str> = ev.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "reconcile.delete_orphan_app",
        "reconcile.delete_orphan_key",
        "reconcile.delete_unmarked_key",
        "reconcile.recreate_key",
    ] {
        assert!(actions.contains(&a), "{a} audited: {actions:?}");
    }
    // A token without read gets 403; another tenant sees 404.
    let audit_only = app.token("provisioner:audit", Some("acme"));
    let r = app
        .call(
            Method::POST,
            "/v1/tenants/acme/reconcile",
            Some(&audit_only),
            None,
        )
        .await;
    assert_problem(&r, 403, "forbidden");
    let other = app.token("provisioner:write", Some("globex"));
    let r = app
        .call(
            Method::POST,
            "/v1/tenants/acme/reconcile",
            Some(&other),
            None,
        )
        .await;
    assert_problem(&r, 404, "not_found");
}

/// The metadata marker this service puts on acme's apps.
fn marked(subject: &str) -> serde_json::Value {
    json!({"provisioner": {"tenant": "acme", "subject": subject}})
}

async fn the_periodic_drift_check_records_counts_without_repairing(app: TestApp) {
    // A second app of the same backend whose drift check runs every second.
    let db = if app.db_url.starts_with("postgres") {
        crate::helpers::Db::Postgres
    } else {
        crate::helpers::Db::Sqlite
    };
    let app = crate::helpers::spawn_app_with(db, |s| s.drift_check_interval_secs = 1)
        .await
        .expect("app");
    app.create_tenant("acme").await;
    let w = app.token("provisioner:write", Some("acme"));
    assert_eq!(
        app.put_user("acme", "u1", &w, json!({})).await.status,
        StatusCode::CREATED
    );
    app.sim
        .insert_app(SIM_USER, "acme-planted-orphan", marked("gone"));

    // The check records the orphan in /metrics within a few passes.
    let want = "provisioner_drift{tenant=\"acme\",kind=\"orphan_apps\"} 1";
    let mut seen = false;
    for _ in 0..100 {
        let m = app
            .http
            .get(format!("{}/metrics", app.metrics_base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if m.contains(want) {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(seen, "drift recorded in /metrics");
    // Reported, never silently repaired.
    assert!(
        app.sim
            .apps(SIM_USER)
            .iter()
            .any(|a| a.id == "acme-planted-orphan")
    );
}
