//! Keys: creation rules, reads, deletion, app keys as credentials, out-of-band changes.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{
    PAT1, PAT2, call, code, create_app, create_key, delete, get, key, post, spawn,
};

#[tokio::test(flavor = "multi_thread")]
async fn a_key_is_created_for_one_own_app_with_a_hex_secret() {
    let (sim, http) = spawn().await;
    create_app(&sim, &http, PAT1, "a1").await;
    // Act
    let (status, body) = create_key(&sim, &http, "a1", &["Predict", "Inputs:Get"]).await;
    // Assert
    assert_eq!((status, code(&body)), (200, 10000), "{body}");
    let k = &body["keys"][0];
    let id = k["id"].as_str().expect("id");
    assert_eq!(id.len(), 32);
    assert!(id.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
    assert_eq!(k["type"], "app_specific_key");
    assert_eq!(k["scopes"], json!(["Predict", "Inputs:Get"]));
    assert_eq!(k["apps"], json!([{"id": "a1", "user_id": "u1"}]));
    assert_eq!(k["description"], "prov:test");
    let keys = sim.keys("u1");
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (keys[0].id.as_str(), keys[0].app_ids.as_slice()),
        (id, &["a1".to_owned()][..])
    );
    assert!(
        !format!("{:?}", keys[0]).contains(id),
        "Debug hides the secret"
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_must_reference_exactly_one_existing_app_of_the_caller() {
    let (sim, http) = spawn().await;
    create_app(&sim, &http, PAT1, "a1").await;
    create_app(&sim, &http, PAT2, "b1").await;
    let (status, body) = create_key(&sim, &http, "missing", &["Predict"]).await;
    assert_eq!((status, code(&body)), (404, 11101));
    let (status, body) = create_key(&sim, &http, "b1", &["Predict"]).await;
    assert_eq!((status, code(&body)), (404, 11101), "u2's app is not u1's");
    let foreign =
        json!({"keys": [{"scopes": ["Predict"], "apps": [{"id": "a1", "user_id": "u2"}]}]});
    let (status, _) = post(&sim, &http, "/v2/users/me/keys", PAT1, foreign).await;
    assert_eq!(status, 404);
    for apps in [json!([]), json!([{"id": "a1"}, {"id": "a1"}])] {
        let body = json!({"keys": [{"scopes": ["Predict"], "apps": apps}]});
        let (status, body) = post(&sim, &http, "/v2/users/me/keys", PAT1, body).await;
        assert_eq!((status, code(&body)), (400, 11102));
    }
    let pat = json!({"keys": [{"type": "personal_access_token", "scopes": ["All"], "apps": [{"id": "a1"}]}]});
    let (status, body) = post(&sim, &http, "/v2/users/me/keys", PAT1, pat).await;
    assert_eq!((status, code(&body)), (400, 11102));
    assert!(sim.keys("u1").is_empty());
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn scope_names_are_validated() {
    let (sim, http) = spawn().await;
    create_app(&sim, &http, PAT1, "a1").await;
    for bad in ["Concepts:Delete", "Models:Sync", "Nope", "predict", ""] {
        let (status, body) = create_key(&sim, &http, "a1", &[bad]).await;
        assert_eq!((status, code(&body)), (400, 11102), "{bad}");
    }
    let (status, _) = create_key(&sim, &http, "a1", &[]).await;
    assert_eq!(status, 400);
    for good in ["All", "Predict", "Workflows:Add", "Inputs:Patch"] {
        let (status, body) = create_key(&sim, &http, "a1", &[good]).await;
        assert_eq!(status, 200, "{good}: {body}");
    }
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_are_read_listed_and_deleted_with_or_without_a_body() {
    let (sim, http) = spawn().await;
    create_app(&sim, &http, PAT1, "a1").await;
    create_app(&sim, &http, PAT1, "a2").await;
    let (_, k1) = create_key(&sim, &http, "a1", &["Predict"]).await;
    let (_, k2) = create_key(&sim, &http, "a2", &["Predict"]).await;
    let id1 = k1["keys"][0]["id"].as_str().expect("id").to_owned();
    let id2 = k2["keys"][0]["id"].as_str().expect("id").to_owned();

    let (status, got) = get(&sim, &http, &format!("/v2/users/me/keys/{id1}"), PAT1).await;
    assert_eq!(
        (status, got["key"]["id"].as_str()),
        (200, Some(id1.as_str()))
    );
    let (status, body) = get(&sim, &http, &format!("/v2/users/me/keys/{id1}"), PAT2).await;
    assert_eq!(
        (status, code(&body)),
        (404, 11101),
        "u2 cannot read u1's key"
    );
    let (_, all) = get(
        &sim,
        &http,
        "/v2/users/u1/keys?per_page=5000&type=app_specific_key",
        PAT1,
    )
    .await;
    assert_eq!(all["keys"].as_array().map(Vec::len), Some(2));
    let (_, pats) = get(
        &sim,
        &http,
        "/v2/users/u1/keys?type=personal_access_token",
        PAT1,
    )
    .await;
    assert_eq!(pats["keys"], json!([]));
    let (_, of_a1) = get(&sim, &http, "/v2/users/me/apps/a1/keys", PAT1).await;
    assert_eq!(of_a1["keys"][0]["id"].as_str(), Some(id1.as_str()));
    assert_eq!(of_a1["keys"].as_array().map(Vec::len), Some(1));
    let (status, body) = get(&sim, &http, "/v2/users/me/apps/zz/keys", PAT1).await;
    assert_eq!((status, code(&body)), (404, 11101));
    let (_, none) = get(&sim, &http, "/v2/users/me/keys", PAT2).await;
    assert_eq!(none["keys"], json!([]));

    // Act: delete one with the official client's JSON body, one without a body.
    let with_body = json!({"user_app_id": {"user_id": "u1"}});
    let (status, body) = delete(
        &sim,
        &http,
        &format!("/v2/users/u1/keys/{id1}"),
        PAT1,
        Some(with_body),
    )
    .await;
    assert_eq!((status, code(&body)), (200, 10000));
    let (status, _) = delete(&sim, &http, &format!("/v2/users/me/keys/{id2}"), PAT1, None).await;
    assert_eq!(status, 200);
    // Assert
    let (status, body) = delete(&sim, &http, &format!("/v2/users/me/keys/{id2}"), PAT1, None).await;
    assert_eq!((status, code(&body)), (404, 11101));
    assert!(sim.keys("u1").is_empty());
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_an_app_deletes_its_keys() {
    let (sim, http) = spawn().await;
    create_app(&sim, &http, PAT1, "a1").await;
    create_app(&sim, &http, PAT1, "a2").await;
    create_key(&sim, &http, "a1", &["Predict"]).await;
    create_key(&sim, &http, "a2", &["Predict"]).await;
    let body = json!({"user_app_id": {"user_id": "u1", "app_id": "a1"}});
    let (status, res) = delete(&sim, &http, "/v2/users/u1/apps/a1", PAT1, Some(body)).await;
    assert_eq!((status, code(&res)), (200, 10000));
    let keys = sim.keys("u1");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].app_ids, ["a2"]);
    assert!(sim.apps("u1").iter().all(|a| a.id != "a1"));
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_key_works_on_myscopes_and_is_refused_on_pat_routes() {
    let (sim, http) = spawn().await;
    create_app(&sim, &http, PAT1, "a1").await;
    let (_, k) = create_key(&sim, &http, "a1", &["Predict"]).await;
    let secret = k["keys"][0]["id"].as_str().expect("id").to_owned();
    // MyScopes with the key itself.
    let (status, body) = get(&sim, &http, "/v2/myscopes", &secret).await;
    assert_eq!(status, 200);
    assert_eq!(body["scopes"], json!(["Predict"]));
    assert_eq!(body["app"]["id"], "a1");
    let (status, _) = get(&sim, &http, "/v2/users/u1/apps/a1", &secret).await;
    assert_eq!(status, 200, "GetApp is KeyAuth");
    // PAT-only routes refuse it.
    for (method, path) in [
        (Method::GET, "/v2/users/me/apps"),
        (Method::POST, "/v2/users/me/apps"),
        (Method::GET, "/v2/users/me/keys"),
        (Method::POST, "/v2/users/me/keys"),
        (Method::DELETE, "/v2/users/me/apps/a1"),
        (Method::GET, "/v2/users/me/myscopes"),
        (Method::GET, "/v2/myscopesroot"),
    ] {
        let url = format!("{}{path}", sim.base_url());
        let body = (method == Method::POST).then(|| json!({}));
        let (status, res) = call(&http, method.clone(), url, Some(&key(&secret)), body).await;
        assert_eq!((status, code(&res)), (403, 11007), "{method} {path}");
    }
    assert_eq!(sim.apps("u1").len(), 1);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn out_of_band_changes_are_visible_through_the_api() {
    let (sim, http) = spawn().await;
    sim.insert_app("u1", "portal-app", json!({"by": "human"}));
    let secret = sim.insert_key("u1", "portal-app", &["Predict"], "made in the portal");
    let (status, app) = get(&sim, &http, "/v2/users/me/apps/portal-app", PAT1).await;
    assert_eq!(
        (status, &app["app"]["metadata"]["by"]),
        (200, &json!("human"))
    );
    let (_, keys) = get(&sim, &http, "/v2/users/me/apps/portal-app/keys", PAT1).await;
    assert_eq!(keys["keys"][0]["description"], "made in the portal");
    assert!(sim.remove_key("u1", &secret));
    assert!(!sim.remove_key("u1", &secret));
    let (status, _) = get(&sim, &http, &format!("/v2/users/me/keys/{secret}"), PAT1).await;
    assert_eq!(status, 404);
    sim.stop().await;
}

#[tokio::test]
async fn auto_app_key_mints_an_unmarked_all_scope_key_with_each_new_app_when_switched_on() {
    let (sim, http) = spawn().await;
    let admin = |path: &str| format!("{}{path}", sim.base_url());
    // Off by default: a new app has no key.
    create_app(&sim, &http, PAT1, "plain").await;
    assert!(sim.keys("u1").is_empty());
    let (status, body) = call(&http, Method::GET, admin("/_sim/auto_app_key"), None, None).await;
    assert_eq!((status, body["enabled"].clone()), (200, json!(false)));

    // Switched on at run time: each app created gets one key, listed under the app.
    let (status, _) = call(
        &http,
        Method::PUT,
        admin("/_sim/auto_app_key"),
        None,
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = post(
        &sim,
        &http,
        "/v2/users/me/apps",
        PAT1,
        json!({"apps": [{"id": "minted-1"}, {"id": "minted-2"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, listed) = get(&sim, &http, "/v2/users/u1/apps/minted-1/keys", PAT1).await;
    assert_eq!(status, 200, "{listed}");
    let keys = listed["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1, "{listed}");
    let scopes: Vec<&str> = keys[0]["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for s in provisioner_core::scope::GRANTABLE_SCOPES {
        assert!(scopes.contains(s), "{s} missing from {scopes:?}");
    }
    assert!(
        !keys[0]["description"]
            .as_str()
            .unwrap()
            .starts_with("prov:")
    );
    assert_eq!(sim.keys("u1").len(), 2, "one per app created");
    // The minted key is a working key for its app, and deleting the app deletes it.
    let id = keys[0]["id"].as_str().unwrap().to_owned();
    let (status, _) = get(&sim, &http, "/v2/users/u1/apps/minted-1", &id).await;
    assert_eq!(status, 200);
    let (status, _) = delete(&sim, &http, "/v2/users/u1/apps/minted-1", PAT1, None).await;
    assert_eq!(status, 200);
    assert_eq!(sim.keys("u1").len(), 1);
    // A duplicate create mints nothing.
    let (status, _) = post(
        &sim,
        &http,
        "/v2/users/me/apps",
        PAT1,
        json!({"apps": [{"id": "minted-2"}]}),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(sim.keys("u1").len(), 1);
    // Off again, and a bad body is a 400 that changes nothing.
    let (status, _) = call(
        &http,
        Method::PUT,
        admin("/_sim/auto_app_key"),
        None,
        Some(json!({"enabled": "yes"})),
    )
    .await;
    assert_eq!(status, 400);
    sim.set_auto_app_key(false);
    create_app(&sim, &http, PAT1, "plain-2").await;
    assert_eq!(sim.keys("u1").len(), 1);
    sim.stop().await;
}
