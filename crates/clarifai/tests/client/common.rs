//! Shared set-up: a simulator with one account, fast client settings, request builders.

use std::time::Duration;

use clarifai_sim::{Account, SimConfig, Simulator};
use provisioner_clarifai::{AppSpec, ClarifaiClient, ClientConfig, KeySpec, build_http_client};
use secrecy::SecretString;
use serde_json::json;

/// The simulated account.
pub const USER: &str = "acme-enterprise";
/// Its PAT (the test looks for it in logs and errors).
pub const PAT: &str = "pat-5ecret-d0-not-log-me-9f8e7d";

/// A simulator with one account and no rate limit (tests switch faults on as needed).
pub async fn sim() -> Simulator {
    let config = SimConfig {
        accounts: vec![Account::new(USER, PAT)],
        rate_limit_per_sec: None,
        ..SimConfig::default()
    };
    Simulator::start(config).await.expect("simulator starts")
}

/// Short timeouts and backoffs so fault tests stay fast.
pub fn test_config() -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(3),
        max_attempts: 5,
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(2),
        total_budget: Duration::from_secs(20),
        per_page: 1000,
        max_queue_wait: Duration::from_secs(10),
    }
}

/// A client of the simulated account.
pub fn client(sim: &Simulator, config: ClientConfig) -> ClarifaiClient {
    client_with(sim, config, USER, PAT)
}

/// A client with any user id and PAT.
pub fn client_with(sim: &Simulator, config: ClientConfig, user: &str, pat: &str) -> ClarifaiClient {
    let http = build_http_client(&config).expect("http client");
    ClarifaiClient::new(
        http,
        config,
        &sim.base_url(),
        user,
        SecretString::from(pat.to_owned()),
    )
    .expect("client")
}

/// An app spec with recognisable description and metadata.
pub fn app_spec(id: &str) -> AppSpec {
    AppSpec {
        id: id.to_owned(),
        description: format!("tenant t / {id}"),
        default_workflow: "Empty".to_owned(),
        metadata: json!({"tenant": "t", "subject": id}),
    }
}

/// A key spec for `app` with a marker description.
pub fn key_spec(app: &str, marker: &str) -> KeySpec {
    KeySpec {
        app_id: app.to_owned(),
        description: marker.to_owned(),
        scopes: vec!["Inputs:Get".to_owned(), "Predict".to_owned()],
    }
}
