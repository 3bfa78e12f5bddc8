//! The key the upstream mints with every new app (the simulator's `--auto-app-key`), over HTTP:
//! with minting, every provisioned, rotated and re-provisioned user ends with exactly one key on
//! its app, its recorded one; without, each `auto_key_check` policy makes only the calls it
//! promises. The switch is flipped at run time through the simulator's admin API.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{SIM_USER, TestApp};

crate::on_both_backends!(
    with_minting_every_user_keeps_exactly_its_recorded_key,
    each_policy_makes_only_the_calls_it_promises
);

/// Flips minting through the simulator's admin API, as an operator of a test bed would.
async fn set_minting(app: &TestApp, enabled: bool) {
    let r = app
        .http
        .put(format!("{}/_sim/auto_app_key", app.sim.base_url()))
        .json(&json!({ "enabled": enabled }))
        .send()
        .await
        .expect("sim admin");
    assert_eq!(r.status(), StatusCode::OK);
    let stats: Value = app
        .http
        .get(format!("{}/_sim/stats", app.sim.base_url()))
        .send()
        .await
        .expect("sim stats")
        .json()
        .await
        .expect("json");
    assert_eq!(stats["auto_app_key"], enabled, "{stats}");
}

/// The keys on an app: (id, description).
fn keys_on(app: &TestApp, app_id: &str) -> Vec<(String, String)> {
    app.sim
        .keys(SIM_USER)
        .into_iter()
        .filter(|k| k.app_ids.iter().any(|a| a == app_id))
        .map(|k| (k.id, k.description))
        .collect()
}

async fn with_minting_every_user_keeps_exactly_its_recorded_key(app: TestApp) {
    set_minting(&app, true).await;
    app.create_tenant("acme").await;
    let w = app.token("provisioner:write provisioner:secrets", Some("acme"));
    let mut secrets = std::collections::BTreeMap::new();
    for u in ["u1", "u2", "u3", "u4", "u5"] {
        let r = app.put_user("acme", u, &w, json!({})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        secrets.insert(
            u.to_owned(),
            (
                r.body["app"]["id"].as_str().unwrap().to_owned(),
                r.body["secret"].as_str().unwrap().to_owned(),
            ),
        );
    }
    // Rotated (at once, and with a grace period that has ended by the check below)...
    let r = app
        .call(
            Method::POST,
            "/v1/tenants/acme/users/u2/rotate-key",
            Some(&w),
            Some(json!({"grace_seconds": 0})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    secrets.get_mut("u2").unwrap().1 = r.body["secret"].as_str().unwrap().to_owned();
    // ...deleted and provisioned again (a new app, a new minted key)...
    let r = app
        .call(Method::DELETE, "/v1/tenants/acme/users/u3", Some(&w), None)
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    let r = app.put_user("acme", "u3", &w, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    secrets.insert(
        "u3".into(),
        (
            r.body["app"]["id"].as_str().unwrap().to_owned(),
            r.body["secret"].as_str().unwrap().to_owned(),
        ),
    );
    // ...or found with its app gone upstream: a rotation re-creates the app (and purges it).
    let (u4_app, _) = secrets["u4"].clone();
    assert!(app.sim.remove_app(SIM_USER, &u4_app), "u4's app was there");
    let admin = app.token("provisioner:admin", None);
    let r = app
        .call(
            Method::POST,
            "/v1/tenants/acme/users/u4/rotate-key",
            Some(&w),
            Some(json!({"grace_seconds": 0})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    secrets.get_mut("u4").unwrap().1 = r.body["secret"].as_str().unwrap().to_owned();

    for (user, (app_id, secret)) in &secrets {
        let keys = keys_on(&app, app_id);
        assert_eq!(
            keys.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
            vec![secret.as_str()],
            "{user}: exactly its recorded key ({keys:?})"
        );
    }
    assert_eq!(app.sim.apps(SIM_USER).len(), 5);
    // The drift check agrees; nothing minted is left to report.
    let r = app
        .call(
            Method::POST,
            "/v1/tenants/acme/reconcile",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["unmarked_keys"], json!([]), "{}", r.text);
    assert_eq!(r.body["orphan_keys"], json!([]), "{}", r.text);
}

async fn each_policy_makes_only_the_calls_it_promises(app: TestApp) {
    app.create_tenant("acme").await;
    let w = app.token("provisioner:write", Some("acme"));
    let admin = app.token("provisioner:admin", None);
    let put = |u: &'static str| {
        let (app, w) = (&app, &w);
        async move {
            let before = app.sim.request_count();
            let r = app.put_user("acme", u, w, json!({})).await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
            app.sim.request_count() - before
        }
    };
    // `always` (the default): the app, one look at its keys, the key.
    assert_eq!(put("a1").await, 3);
    // `never`: the app and the key.
    let r = app
        .call(
            Method::PATCH,
            "/v1/tenants/acme",
            Some(&admin),
            Some(json!({"auto_key_check": "never"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(put("n1").await, 2);
    // Minting switched on at run time: `never` leaves the minted key, reported as drift...
    set_minting(&app, true).await;
    assert_eq!(put("n2").await, 2);
    let r = app
        .call(
            Method::POST,
            "/v1/tenants/acme/reconcile",
            Some(&admin),
            None,
        )
        .await;
    let unmarked = r.body["unmarked_keys"].as_array().unwrap();
    assert_eq!(unmarked.len(), 1, "{}", r.text);
    assert_eq!(unmarked[0]["external_id"], "n2");
    assert_eq!(unmarked[0]["app_managed"], true);
    // ...and `always` deletes it at once: the app, the look, the delete, the key.
    let r = app
        .call(
            Method::PATCH,
            "/v1/tenants/acme",
            Some(&admin),
            Some(json!({"auto_key_check": "always"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(put("a2").await, 4);
    let a2 = app
        .call(Method::GET, "/v1/tenants/acme/users/a2", Some(&w), None)
        .await;
    let a2_app = a2.body["app"]["id"].as_str().unwrap();
    assert_eq!(keys_on(&app, a2_app).len(), 1);
}
