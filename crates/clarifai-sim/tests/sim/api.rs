//! Apps, auth, users, scopes, routing and the rate limit.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{PAT1, PAT2, call, code, create_app, get, key, post, spawn};

#[tokio::test(flavor = "multi_thread")]
async fn a_created_app_is_echoed_read_back_and_listed() {
    let (sim, http) = spawn().await;
    // Act
    let body = json!({"apps": [{"id": "t-acme-u-1", "description": "tenant acme",
        "metadata": {"prov": {"tenant": "acme"}},
        "default_workflow": {"id": "Empty", "app_id": "main", "user_id": "clarifai"}}]});
    let (status, created) = post(&sim, &http, "/v2/users/me/apps", PAT1, body).await;
    // Assert
    assert_eq!(status, 200, "{created}");
    assert_eq!(code(&created), 10000);
    assert!(
        created["status"]["req_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    let app = &created["apps"][0];
    assert_eq!(app["id"], "t-acme-u-1");
    assert_eq!(app["name"], "t-acme-u-1");
    assert_eq!(app["user_id"], "u1");
    assert_eq!(app["description"], "tenant acme");
    assert_eq!(app["metadata"]["prov"]["tenant"], "acme");
    assert_eq!(app["default_workflow"]["id"], "Empty");
    let created_at = app["created_at"].as_str().expect("created_at");
    assert!(created_at.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(created_at).is_ok());
    assert!(app["modified_at"].as_str().is_some());

    let (status, got) = get(&sim, &http, "/v2/users/u1/apps/t-acme-u-1", PAT1).await;
    assert_eq!(status, 200);
    assert_eq!(got["app"], *app);
    let (_, listed) = get(&sim, &http, "/v2/users/me/apps", PAT1).await;
    assert_eq!(listed["apps"].as_array().map(Vec::len), Some(1));
    let apps = sim.apps("u1");
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].metadata["prov"]["tenant"], "acme");
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pat_acts_for_its_own_user_or_me_and_gets_404_for_another() {
    let (sim, http) = spawn().await;
    create_app(&sim, &http, PAT1, "a1").await;
    for path in [
        "/v2/users/u1/apps",
        "/v2/users/me/apps",
        "/v2/users/me",
        "/v2/users/u1",
    ] {
        let (status, _) = get(&sim, &http, path, PAT1).await;
        assert_eq!(status, 200, "{path}");
    }
    let (_, user) = get(&sim, &http, "/v2/users/me", PAT1).await;
    assert_eq!(user["user"]["id"], "u1");
    for path in [
        "/v2/users/u2/apps",
        "/v2/users/u2/apps/a1",
        "/v2/users/u2/keys",
        "/v2/users/u2",
    ] {
        let (status, body) = get(&sim, &http, path, PAT1).await;
        assert_eq!((status, code(&body)), (404, 11101), "{path}");
    }
    // u2 cannot see u1's app through its own id either.
    let (status, body) = get(&sim, &http, "/v2/users/me/apps/a1", PAT2).await;
    assert_eq!((status, code(&body)), (404, 11101));
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_authorization_header_must_be_exactly_key_space_token() {
    let (sim, http) = spawn().await;
    let url = format!("{}/v2/users/me/apps", sim.base_url());
    let (status, body) = call(&http, Method::GET, url.clone(), None, None).await;
    assert_eq!((status, code(&body)), (401, 11102));
    for bad in [
        "key pat-one",
        "Bearer pat-one",
        "Key  pat-one",
        "Key",
        "pat-one",
    ] {
        let (status, body) = call(&http, Method::GET, url.clone(), Some(bad), None).await;
        assert_eq!((status, code(&body)), (401, 11102), "{bad}");
    }
    let (status, body) = call(&http, Method::GET, url, Some(&key("nope")), None).await;
    assert_eq!((status, code(&body)), (401, 11009));
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn app_ids_are_validated_and_duplicates_refused() {
    let (sim, http) = spawn().await;
    for bad in [
        "bad id",
        "a.b",
        "-a",
        "a-",
        "a--b",
        "x23456789012345678901234567890123",
    ] {
        let (status, body) = post(
            &sim,
            &http,
            "/v2/users/me/apps",
            PAT1,
            json!({"apps": [{"id": bad}]}),
        )
        .await;
        assert_eq!((status, code(&body)), (400, 11102), "{bad}");
    }
    create_app(&sim, &http, PAT1, "x2345678901234567890123456789012").await;
    create_app(&sim, &http, PAT1, "dup").await;
    let (status, body) = post(
        &sim,
        &http,
        "/v2/users/me/apps",
        PAT1,
        json!({"apps": [{"id": "dup"}]}),
    )
    .await;
    assert_eq!((status, code(&body)), (409, 40010));
    // All or nothing: a batch with one duplicate creates nothing.
    let batch = json!({"apps": [{"id": "fresh"}, {"id": "dup"}]});
    let (status, _) = post(&sim, &http, "/v2/users/me/apps", PAT1, batch).await;
    assert_eq!(status, 409);
    assert!(sim.apps("u1").iter().all(|a| a.id != "fresh"));
    // The same id under another user is fine.
    create_app(&sim, &http, PAT2, "dup").await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_json_is_bad_request_format() {
    let (sim, http) = spawn().await;
    let res = http
        .post(format!("{}/v2/users/me/apps", sim.base_url()))
        .header("Authorization", key(PAT1))
        .header("Content-Type", "application/json")
        .body("{\"apps\": [")
        .send()
        .await
        .expect("send");
    assert_eq!(res.status().as_u16(), 400);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(code(&body), 11100);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn listing_is_ordered_paginated_clamped_and_shows_empty_lists() {
    let (sim, http) = spawn().await;
    let (_, empty) = get(&sim, &http, "/v2/users/me/apps", PAT2).await;
    assert_eq!(empty["apps"], json!([]));
    for i in (0..1005).rev() {
        sim.insert_app("u1", &format!("app{i:04}"), json!({}));
    }
    let (_, page) = get(&sim, &http, "/v2/users/me/apps?page=2&per_page=3", PAT1).await;
    let ids: Vec<&str> = page["apps"]
        .as_array()
        .expect("apps")
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    assert_eq!(ids, ["app0003", "app0004", "app0005"]);
    let (_, default) = get(&sim, &http, "/v2/users/me/apps", PAT1).await;
    assert_eq!(default["apps"].as_array().map(Vec::len), Some(128));
    let (_, clamped) = get(&sim, &http, "/v2/users/me/apps?per_page=5000", PAT1).await;
    assert_eq!(clamped["apps"].as_array().map(Vec::len), Some(1000));
    let (_, rest) = get(&sim, &http, "/v2/users/me/apps?page=2&per_page=5000", PAT1).await;
    assert_eq!(rest["apps"].as_array().map(Vec::len), Some(5));
    let (_, past) = get(&sim, &http, "/v2/users/me/apps?page=99&per_page=1000", PAT1).await;
    assert_eq!(past["apps"], json!([]));
    let (status, body) = get(&sim, &http, "/v2/users/me/apps?page=x", PAT1).await;
    assert_eq!((status, code(&body)), (400, 11100));
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_app_is_404_11101() {
    let (sim, http) = spawn().await;
    let (status, body) = get(&sim, &http, "/v2/users/me/apps/nope", PAT1).await;
    assert_eq!((status, code(&body)), (404, 11101));
    let (status, body) =
        crate::helpers::delete(&sim, &http, "/v2/users/me/apps/nope", PAT1, None).await;
    assert_eq!((status, code(&body)), (404, 11101));
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn myscopes_reports_the_pat_scopes_on_every_variant() {
    let (sim, http) = spawn().await;
    sim.add_account(
        clarifai_sim::Account::new("u3", "pat-three").with_scopes(&["Apps:Add", "Keys:Add"]),
    );
    for path in [
        "/v2/myscopes",
        "/v2/my_scopes",
        "/v2/myscopesroot",
        "/v2/users/me/myscopes",
    ] {
        let (status, body) = get(&sim, &http, path, PAT1).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body["scopes"], json!(["All"]), "{path}");
        assert_eq!(body["endpoints"], json!([]), "{path}");
        let (_, narrow) = get(&sim, &http, path, "pat-three").await;
        assert_eq!(narrow["scopes"], json!(["Apps:Add", "Keys:Add"]), "{path}");
    }
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn list_scopes_refuses_a_pat() {
    let (sim, http) = spawn().await;
    let (status, body) = get(&sim, &http, "/v2/users/me/scopes", PAT1).await;
    assert_eq!((status, code(&body)), (401, 11008));
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_routes_get_404_with_a_status_body() {
    let (sim, http) = spawn().await;
    for path in ["/v2/nothing", "/elsewhere", "/v2/users/me/apps/a/b/c"] {
        let (status, body) = get(&sim, &http, path, PAT1).await;
        assert_eq!((status, code(&body)), (404, 11101), "{path}");
    }
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rate_limit_throttles_per_account_with_a_string_code() {
    let (sim, http) = spawn().await;
    sim.set_rate_limit(Some(5));
    // Act: a burst of 12 for u1 and one request for u2.
    let mut statuses = Vec::new();
    let mut throttled = None;
    for _ in 0..12 {
        let res = http
            .get(format!("{}/v2/users/me/apps", sim.base_url()))
            .header("Authorization", key(PAT1))
            .send()
            .await
            .expect("send");
        statuses.push(res.status().as_u16());
        if res.status().as_u16() == 429 {
            assert!(res.headers().get("retry-after").is_none());
            throttled = Some(res.json::<serde_json::Value>().await.expect("json"));
        }
    }
    let (other, _) = get(&sim, &http, "/v2/users/me/apps", PAT2).await;
    // Assert
    assert!(statuses[..5].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    let body = throttled.expect("a 429 body");
    assert_eq!(body["status"]["code"], "CONN_THROTTLED");
    assert_eq!(
        body["status"]["details"],
        "exceeded limit of 5 requests per second"
    );
    assert_eq!(other, 200, "accounts have separate buckets");
    assert!(sim.fault_counts().rate_limited >= 1);

    sim.set_throttle_code_numeric(true);
    let (status, body) = get(&sim, &http, "/v2/users/me/apps", PAT1).await;
    assert_eq!((status, code(&body)), (429, 11005));
    sim.set_rate_limit(None);
    let (status, _) = get(&sim, &http, "/v2/users/me/apps", PAT1).await;
    assert_eq!(status, 200);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_config_limits_at_15_per_second() {
    let config = clarifai_sim::SimConfig {
        accounts: vec![clarifai_sim::Account::new("u1", PAT1)],
        ..clarifai_sim::SimConfig::default()
    };
    assert_eq!(config.rate_limit_per_sec, Some(15));
    assert_eq!(config.workers, 2);
    let sim = clarifai_sim::Simulator::start(config).await.expect("start");
    let http = reqwest::Client::new();
    // A concurrent burst, so a slow machine cannot refill the bucket meanwhile.
    let burst = (0..25).map(|_| get(&sim, &http, "/v2/myscopes", PAT1));
    let statuses = futures::future::join_all(burst).await;
    let ok = statuses.iter().filter(|(s, _)| *s == 200).count();
    assert!(statuses.iter().all(|(s, _)| *s == 200 || *s == 429));
    assert!((15..25).contains(&ok), "{ok}");
    sim.stop().await;
}
