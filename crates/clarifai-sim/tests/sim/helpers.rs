//! Shared test helpers: a started simulator with two accounts and a small HTTP client.

use clarifai_sim::{Account, SimConfig, Simulator};
use reqwest::{Client, Method};
use serde_json::{Value, json};

pub const PAT1: &str = "pat-one";
pub const PAT2: &str = "pat-two";

/// A simulator with accounts `u1`/`pat-one` and `u2`/`pat-two`, no rate limit, no faults.
pub async fn spawn() -> (Simulator, Client) {
    let config = SimConfig {
        accounts: vec![Account::new("u1", PAT1), Account::new("u2", PAT2)],
        rate_limit_per_sec: None,
        ..SimConfig::default()
    };
    let sim = Simulator::start(config).await.expect("start simulator");
    (sim, Client::new())
}

/// Sends a request and returns (HTTP status, JSON body).
pub async fn call(
    http: &Client,
    method: Method,
    url: String,
    auth: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url);
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("send");
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, json)
}

/// `Key <token>`.
pub fn key(token: &str) -> String {
    format!("Key {token}")
}

/// GET with a PAT.
pub async fn get(sim: &Simulator, http: &Client, path: &str, token: &str) -> (u16, Value) {
    call(
        http,
        Method::GET,
        format!("{}{path}", sim.base_url()),
        Some(&key(token)),
        None,
    )
    .await
}

/// POST with a PAT.
pub async fn post(
    sim: &Simulator,
    http: &Client,
    path: &str,
    token: &str,
    body: Value,
) -> (u16, Value) {
    call(
        http,
        Method::POST,
        format!("{}{path}", sim.base_url()),
        Some(&key(token)),
        Some(body),
    )
    .await
}

/// DELETE with a PAT and an optional body.
pub async fn delete(
    sim: &Simulator,
    http: &Client,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    call(
        http,
        Method::DELETE,
        format!("{}{path}", sim.base_url()),
        Some(&key(token)),
        body,
    )
    .await
}

/// Creates app `id` for `me` of `token`; panics unless it succeeds.
pub async fn create_app(sim: &Simulator, http: &Client, token: &str, id: &str) -> Value {
    let (status, body) = post(
        sim,
        http,
        "/v2/users/me/apps",
        token,
        json!({"apps": [{"id": id}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["apps"][0].clone()
}

/// Creates a key on `app` with `scopes`; returns the response.
pub async fn create_key(
    sim: &Simulator,
    http: &Client,
    app: &str,
    scopes: &[&str],
) -> (u16, Value) {
    let body = json!({"keys": [{"description": "prov:test", "scopes": scopes,
        "apps": [{"id": app, "user_id": "u1"}]}]});
    post(sim, http, "/v2/users/u1/keys", PAT1, body).await
}

/// `status.code` as a number, or -1.
pub fn code(body: &Value) -> i64 {
    body["status"]["code"].as_i64().unwrap_or(-1)
}
