//! Injected faults, runtime changes, admin routes and counters.

use std::time::{Duration, Instant};

use clarifai_sim::{Faults, HTML_503};
use serde_json::{Value, json};

use crate::helpers::{PAT1, code, create_app, get, key, spawn};

fn only(f: impl FnOnce(&mut Faults)) -> Faults {
    let mut faults = Faults::none();
    f(&mut faults);
    faults
}

#[tokio::test(flavor = "multi_thread")]
async fn an_injected_500_carries_a_status_body() {
    let (sim, http) = spawn().await;
    sim.set_faults(only(|f| f.p_500 = 1.0));
    let (status, body) = get(&sim, &http, "/v2/users/me/apps", PAT1).await;
    assert_eq!((status, code(&body)), (500, 98004));
    assert_eq!(sim.fault_counts().error_500, 1);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_injected_503_is_an_html_page() {
    let (sim, http) = spawn().await;
    sim.set_faults(only(|f| f.p_503_html = 1.0));
    let res = http
        .get(format!("{}/v2/users/me/apps", sim.base_url()))
        .header("Authorization", key(PAT1))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status().as_u16(), 503);
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(ct.starts_with("text/html"), "{ct}");
    assert_eq!(res.text().await.expect("body"), HTML_503);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn injected_429s_come_with_and_without_retry_after() {
    let (sim, http) = spawn().await;
    let url = format!("{}/v2/users/me/apps", sim.base_url());
    sim.set_faults(only(|f| {
        f.p_429_retry_after = 1.0;
        f.retry_after_secs = 3;
    }));
    let res = http
        .get(&url)
        .header("Authorization", key(PAT1))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status().as_u16(), 429);
    assert_eq!(
        res.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("3")
    );
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["status"]["code"], "CONN_THROTTLED");

    sim.set_faults(only(|f| f.p_429 = 1.0));
    let res = http
        .get(&url)
        .header("Authorization", key(PAT1))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status().as_u16(), 429);
    assert!(res.headers().get("retry-after").is_none());
    let counts = sim.fault_counts();
    assert_eq!((counts.throttled_retry_after, counts.throttled), (1, 1));
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hang_outlasts_a_short_client_timeout() {
    let (sim, http) = spawn().await;
    sim.set_faults(only(|f| {
        f.p_hang = 1.0;
        f.hang_ms = 3_000;
    }));
    let started = Instant::now();
    let err = http
        .get(format!("{}/v2/users/me/apps", sim.base_url()))
        .header("Authorization", key(PAT1))
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .expect_err("the client times out");
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() < Duration::from_millis(2_500));
    assert_eq!(sim.fault_counts().hang, 1);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn commit_then_drop_changes_state_but_gives_no_answer() {
    let (sim, http) = spawn().await;
    sim.set_faults(only(|f| f.p_commit_drop = 1.0));
    // Act
    let result = http
        .post(format!("{}/v2/users/me/apps", sim.base_url()))
        .header("Authorization", key(PAT1))
        .json(&json!({"apps": [{"id": "ghost"}]}))
        .send()
        .await;
    // Assert: an error, not a response, and yet the app exists.
    let err = result.expect_err("no answer");
    assert!(!err.is_timeout(), "{err}");
    assert!(err.status().is_none());
    assert_eq!(
        sim.apps("u1")
            .iter()
            .map(|a| a.id.as_str())
            .collect::<Vec<_>>(),
        ["ghost"]
    );
    assert_eq!(sim.fault_counts().commit_drop, 1);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_change_at_run_time_and_spare_admin_routes() {
    let (sim, http) = spawn().await;
    create_app(&sim, &http, PAT1, "a1").await;
    sim.set_faults(only(|f| f.p_500 = 1.0));
    let (status, _) = get(&sim, &http, "/v2/users/me/apps", PAT1).await;
    assert_eq!(status, 500);
    // Admin routes never get faults.
    let state: Value = http
        .get(format!("{}/_sim/state", sim.base_url()))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let u1 = state["accounts"]
        .as_array()
        .and_then(|a| a.iter().find(|u| u["user_id"] == "u1"))
        .cloned();
    assert_eq!(u1.expect("u1")["apps"][0]["id"], "a1");
    // Turn faults off through the admin route.
    let res = http
        .put(format!("{}/_sim/faults", sim.base_url()))
        .json(&Faults::none())
        .send()
        .await
        .expect("send");
    assert_eq!(res.status().as_u16(), 200);
    let (status, _) = get(&sim, &http, "/v2/users/me/apps", PAT1).await;
    assert_eq!(status, 200);
    // Partial JSON sets one field.
    http.put(format!("{}/_sim/faults", sim.base_url()))
        .json(&json!({"p_429": 1.0}))
        .send()
        .await
        .expect("send");
    let got: Faults = http
        .get(format!("{}/_sim/faults", sim.base_url()))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(got.p_429, 1.0);
    assert_eq!(sim.faults(), got);
    let (status, _) = get(&sim, &http, "/v2/users/me/apps", PAT1).await;
    assert_eq!(status, 429);
    let bad = http
        .put(format!("{}/_sim/faults", sim.base_url()))
        .body("{nope")
        .send()
        .await
        .expect("send");
    assert_eq!(bad.status().as_u16(), 400);
    // Stats count /v2 requests only, and the faults by kind.
    let stats: Value = http
        .get(format!("{}/_sim/stats", sim.base_url()))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(stats["requests"], 4);
    assert_eq!(stats["faults"]["error_500"], 1);
    assert_eq!(stats["faults"]["throttled"], 1);
    assert_eq!(sim.request_count(), 4);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn latency_is_added_to_every_v2_request() {
    let (sim, http) = spawn().await;
    sim.set_faults(only(|f| {
        f.latency_ms = 150;
        f.latency_jitter_ms = 50;
    }));
    let started = Instant::now();
    let (status, _) = get(&sim, &http, "/v2/myscopes", PAT1).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mixed_faults_with_a_seed_inject_every_kind_reproducibly() {
    let (sim, http) = spawn().await;
    let mut faults = Faults::mixed(0.9, 42);
    faults.hang_ms = 1;
    let run = |faults: Faults| {
        let (sim, http) = (sim.clone(), http.clone());
        async move {
            sim.set_faults(faults);
            let mut out = Vec::new();
            for _ in 0..60 {
                let res = http
                    .get(format!("{}/v2/myscopes", sim.base_url()))
                    .header("Authorization", key(PAT1))
                    .send()
                    .await;
                out.push(res.map(|r| r.status().as_u16()).unwrap_or(0));
            }
            out
        }
    };
    let first = run(faults.clone()).await;
    let second = run(faults).await;
    assert_eq!(first, second, "same seed, same sequence");
    for status in [0, 200, 429, 500, 503] {
        assert!(first.contains(&status), "{status} in {first:?}");
    }
    let counts = sim.fault_counts();
    assert!(counts.hang > 0 && counts.commit_drop > 0, "{counts:?}");
    sim.stop().await;
}
