//! One upstream budget across replicas: two instances on one PostgreSQL run a bulk job, and
//! interactive PUTs arrive meanwhile, against a simulator that refuses (429) beyond 15 requests
//! per second per account. With each replica pacing on its own they would send about twice the
//! limit; sharing the budget in the database, the upstream never refuses one.

use std::time::{Duration, Instant};

use clarifai_sim::{Account, Faults, SimConfig, Simulator};
use provisioner::config::Settings;
use provisioner::startup::Application;
use provisioner_core::secret::MasterKey;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{SIM_PAT, SIM_USER, token};

const USERS: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_the_accounts_budget() {
    let Some((store, url, _db)) = provisioner_storage::testing::fresh_postgres().await else {
        eprintln!("PostgreSQL unreachable: skipped");
        return;
    };
    store.close().await;
    let sim = Simulator::start(SimConfig {
        accounts: vec![Account::new(SIM_USER, SIM_PAT)],
        rate_limit_per_sec: Some(15),
        faults: Faults {
            latency_ms: 10,
            ..Faults::none()
        },
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let jwt = SecretString::from(MasterKey::generate().to_base64());
    let master = SecretString::from(MasterKey::generate().to_base64());
    let mut bases = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..2 {
        let settings = Settings {
            listen: "127.0.0.1:0".into(),
            metrics_listen: "off".into(),
            database_url: url.clone(),
            master_key: Some(master.clone()),
            jwt_hs256_secret: Some(jwt.clone()),
            workers: 2,
            recovery_interval_secs: 0,
            drift_check_interval_secs: 0,
            caller_rate_limit: 0,
            job_concurrency: 16,
            ..Settings::default()
        };
        let app = Application::build(&settings).await.expect("build app");
        bases.push(format!("http://127.0.0.1:{}", app.port()));
        handles.push(app.server_handle());
        tokio::spawn(app.run_until_stopped());
    }
    let http = reqwest::Client::new();
    let admin = token(&jwt, "provisioner:admin", None);
    let tenant = json!({
        "id": "acme", "display_name": "Acme",
        "upstream": {"base_url": sim.base_url(), "user_id": SIM_USER, "pat": SIM_PAT},
        "upstream_rate_limit": {"requests_per_second": 15, "max_concurrency": 8},
        "allowed_scopes": ["Predict", "Inputs:Get"],
        "default_scope_profile": "standard",
        "scope_profiles": {"standard": ["Predict", "Inputs:Get"]},
    });
    let r = http
        .post(format!("{}/v1/tenants", bases[0]))
        .bearer_auth(&admin)
        .json(&tenant)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
    // Let the simulator's bucket refill after the credential check.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let batch: Vec<Value> = (0..USERS)
        .map(|i| json!({"external_id": format!("bulk-{i:02}")}))
        .collect();
    let r = http
        .post(format!("{}/v1/tenants/acme/users:batch", bases[0]))
        .bearer_auth(&admin)
        .json(&json!({ "users": batch }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let job: Value = r.json().await.unwrap();
    let id = job["job_id"].as_str().unwrap().to_owned();
    // Interactive PUTs on the other replica while both work the job: they go ahead of it.
    let mut interactive = Vec::new();
    for i in 0..4 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let t = Instant::now();
        let r = http
            .put(format!("{}/v1/tenants/acme/users/now-{i}", bases[1]))
            .bearer_auth(&admin)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
        interactive.push(t.elapsed());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let job = loop {
        let j: Value = http
            .get(format!("{}/v1/jobs/{id}", bases[1]))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !j["finished_at"].is_null() {
            break j;
        }
        assert!(Instant::now() < deadline, "job still running: {j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(job["status"], "succeeded", "{job}");
    let total = USERS + 4;
    assert_eq!(
        (sim.apps(SIM_USER).len(), sim.keys(SIM_USER).len()),
        (total, total)
    );
    assert_eq!(
        sim.fault_counts().rate_limited,
        0,
        "the upstream refused requests: the replicas together exceeded the account's limit"
    );
    // Each interactive PUT waited for at most a few grants, not behind the job's queue.
    for (i, waited) in interactive.iter().enumerate() {
        assert!(*waited < Duration::from_secs(2), "PUT {i} took {waited:?}");
    }
    for h in handles {
        h.stop(true).await;
    }
    sim.stop().await;
}
