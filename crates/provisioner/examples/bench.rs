//! Provisioning cost, throughput and latency against the simulator, printed as tables.
//!
//! `cargo run --release -p provisioner --example bench [-- USERS [BULK_USERS]]`, or `-- --smoke`
//! for a seconds-long run that only checks the bench still works (`.ci/run` does; its figures
//! mean nothing).
//!
//! First table: the upstream calls one new user costs under each `auto_key_check` policy, with
//! and without an upstream that mints a key with every app (`--auto-app-key`), counted at the
//! simulator, and the floor that puts under bulk onboarding at 15 requests per second.
//!
//! Second table, for each scenario: the simulator limits the account to `sim rps` (429 beyond,
//! like the upstream), the tenant's `upstream_rate_limit` paces the service, `clients` onboarding
//! clients PUT distinct users. With the default policy each user costs three upstream calls, so
//! the floor is 3N / rate; the table shows how close the service gets, how many 429s the upstream
//! answered, and the latency of an idempotent repeat PUT (no upstream call).
//!
//! Third table: a bulk job (`users:batch`) at the default 15 requests per second with a 25 ms
//! upstream: the rate of upstream calls achieved against the account's limit, and the 429s.

use std::time::{Duration, Instant};

use clarifai_sim::{Account, Faults, SimConfig, Simulator};
use provisioner::config::Settings;
use provisioner::startup::Application;
use provisioner_core::secret::MasterKey;
use secrecy::SecretString;
use serde_json::json;

struct Scenario {
    name: &'static str,
    rps: u32,
    clients: usize,
    latency_ms: u64,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    provisioner::telemetry::init("error", false, false, std::io::stderr);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let smoke = args.iter().any(|a| a == "--smoke");
    let numbers: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let users = if smoke {
        12
    } else {
        numbers.first().copied().unwrap_or(150)
    };
    let bulk_users = if smoke {
        12
    } else {
        numbers.get(1).copied().unwrap_or(500)
    };
    cost_table(if smoke { 25 } else { 100 }).await?;
    let scenarios = [
        Scenario {
            name: "default account limit",
            rps: 15,
            clients: 16,
            latency_ms: 20,
        },
        Scenario {
            name: "raised account limit",
            rps: 100,
            clients: 32,
            latency_ms: 20,
        },
    ];
    println!(
        "\n| scenario | users | clients | rate (req/s) | wall (s) | users/s | floor 3N/rate (s) | efficiency | upstream 429s | repeat PUT p50 (ms) | p99 (ms) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for s in scenarios.into_iter().filter(|s| !smoke || s.rps == 100) {
        let r = run(&s, users).await?;
        println!(
            "| {} | {users} | {} | {} | {:.1} | {:.1} | {:.1} | {:.0} % | {} | {:.1} | {:.1} |",
            s.name,
            s.clients,
            s.rps,
            r.wall.as_secs_f64(),
            users as f64 / r.wall.as_secs_f64(),
            r.floor,
            100.0 * r.floor / r.wall.as_secs_f64(),
            r.throttled,
            r.p50,
            r.p99
        );
    }
    lone_put_table(if smoke { 2 } else { 10 }).await?;
    bulk_table(bulk_users, if smoke { 100 } else { 15 }).await?;
    Ok(())
}

/// A lone PUT after an idle second at the default 15 req/s with a 25 ms upstream: its latency
/// against the floor of its upstream calls (3 × 25 ms with `auto_key_check: always`).
async fn lone_put_table(samples: usize) -> anyhow::Result<()> {
    let sim = simulator(Some(15), 25, false).await?;
    let (base, admin, _dir) = start_service().await?;
    let http = reqwest::Client::new();
    create_tenant(&http, &base, &admin, &sim.base_url(), "lone", 15, "always").await?;
    let mut lat = Vec::new();
    for i in 0..samples {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let t = Instant::now();
        let r = http
            .put(format!("{base}/v1/tenants/lone/users/lone-{i}"))
            .bearer_auth(&admin)
            .json(&json!({}))
            .send()
            .await?;
        anyhow::ensure!(r.status().as_u16() == 201, "PUT: {}", r.text().await?);
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);
    let floor = 3.0 * 25.0;
    println!(
        "\n| lone PUT after an idle second (15 req/s, 25 ms upstream) | samples | p50 (ms) | max (ms) | floor 3 × 25 ms | p50 over the floor (ms) |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| auto_key_check always, SQLite | {samples} | {:.1} | {:.1} | {floor:.0} | {:.1} |",
        lat[lat.len() / 2],
        lat[lat.len() - 1],
        lat[lat.len() / 2] - floor
    );
    sim.stop().await;
    Ok(())
}

/// A bulk job at the account's limit: calls per second achieved against it.
async fn bulk_table(users: usize, rps: u32) -> anyhow::Result<()> {
    let sim = simulator(Some(rps), 25, false).await?;
    let (base, admin, _dir) = start_service().await?;
    let http = reqwest::Client::new();
    create_tenant(&http, &base, &admin, &sim.base_url(), "bulk", rps, "always").await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = sim.request_count();
    let throttled_before = sim.fault_counts().rate_limited;
    let batch: Vec<serde_json::Value> = (0..users)
        .map(|i| json!({"external_id": format!("bulk-{i:05}")}))
        .collect();
    let start = Instant::now();
    let r = http
        .post(format!("{base}/v1/tenants/bulk/users:batch"))
        .bearer_auth(&admin)
        .json(&json!({ "users": batch }))
        .send()
        .await?;
    anyhow::ensure!(r.status().as_u16() == 202, "batch: {}", r.text().await?);
    let job: serde_json::Value = r.json().await?;
    let id = job["job_id"].as_str().unwrap_or_default().to_owned();
    let job = loop {
        let j: serde_json::Value = http
            .get(format!("{base}/v1/jobs/{id}"))
            .bearer_auth(&admin)
            .send()
            .await?
            .json()
            .await?;
        if !j["finished_at"].is_null() {
            break j;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let wall = start.elapsed().as_secs_f64();
    let calls = sim.request_count() - before;
    let throttled = sim.fault_counts().rate_limited - throttled_before;
    anyhow::ensure!(job["status"] == "succeeded", "job: {job}");
    let achieved = calls as f64 / wall;
    println!(
        "\n| bulk job | users | limit (req/s) | upstream calls | wall (s) | achieved (req/s) | achieved / limit | upstream 429s |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| users:batch, 1 instance, SQLite, 25 ms upstream | {users} | {rps} | {calls} | {wall:.1} | {achieved:.2} | {:.2} | {throttled} |",
        achieved / f64::from(rps)
    );
    sim.stop().await;
    Ok(())
}

struct Result {
    wall: Duration,
    floor: f64,
    throttled: u64,
    p50: f64,
    p99: f64,
}

async fn run(s: &Scenario, users: usize) -> anyhow::Result<Result> {
    let sim = simulator(Some(s.rps), s.latency_ms, false).await?;
    let (base, admin, _dir) = start_service().await?;
    let http = reqwest::Client::new();
    create_tenant(
        &http,
        &base,
        &admin,
        &sim.base_url(),
        "bench",
        s.rps,
        "always",
    )
    .await?;
    // Let the token bucket refill after the PAT check.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let throttled_before = sim.fault_counts().rate_limited;

    let start = Instant::now();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..s.clients {
        let (http, base, admin, next) = (http.clone(), base.clone(), admin.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= users {
                    return Ok::<_, anyhow::Error>(());
                }
                loop {
                    let r = http
                        .put(format!("{base}/v1/tenants/bench/users/user-{i}"))
                        .bearer_auth(&admin)
                        .json(&json!({}))
                        .send()
                        .await?;
                    match r.status().as_u16() {
                        200 | 201 => break,
                        503 => tokio::time::sleep(Duration::from_millis(100)).await,
                        other => anyhow::bail!("unexpected {other}: {}", r.text().await?),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let wall = start.elapsed();
    let throttled = sim.fault_counts().rate_limited - throttled_before;
    anyhow::ensure!(
        sim.apps("bench-user").len() == users && sim.keys("bench-user").len() == users,
        "one app and one key each"
    );

    let mut lat = Vec::new();
    for i in 0..200 {
        let t = Instant::now();
        let r = http
            .put(format!("{base}/v1/tenants/bench/users/user-{}", i % users))
            .bearer_auth(&admin)
            .json(&json!({}))
            .send()
            .await?;
        anyhow::ensure!(r.status().as_u16() == 200);
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);
    sim.stop().await;
    Ok(Result {
        wall,
        floor: 3.0 * users as f64 / f64::from(s.rps),
        throttled,
        p50: lat[lat.len() / 2],
        p99: lat[lat.len() * 99 / 100],
    })
}

/// The upstream calls per new user under each policy, with and without minting, over `users`
/// users per row (more than `learn`'s 20 clean checks).
async fn cost_table(users: usize) -> anyhow::Result<()> {
    println!(
        "| auto_key_check | upstream mints a key | calls per new user | keys per app after | bulk floor, 10,000 users at 15 req/s |"
    );
    println!("|---|---|---|---|---|");
    for policy in ["always", "learn", "never"] {
        for mint in [false, true] {
            let calls = cost(policy, mint, users).await?;
            println!(
                "| {policy} | {} | {:.2} | {:.2} | {:.1} min |",
                if mint { "yes" } else { "no" },
                calls.per_user,
                calls.keys_per_app,
                calls.per_user * 10_000.0 / 15.0 / 60.0
            );
        }
    }
    Ok(())
}

struct Cost {
    per_user: f64,
    keys_per_app: f64,
}

async fn cost(policy: &str, mint: bool, users: usize) -> anyhow::Result<Cost> {
    let sim = simulator(None, 0, mint).await?;
    let (base, admin, _dir) = start_service().await?;
    let http = reqwest::Client::new();
    create_tenant(&http, &base, &admin, &sim.base_url(), "cost", 1000, policy).await?;
    let before = sim.request_count();
    for i in 0..users {
        let r = http
            .put(format!("{base}/v1/tenants/cost/users/user-{i}"))
            .bearer_auth(&admin)
            .json(&json!({}))
            .send()
            .await?;
        anyhow::ensure!(r.status().as_u16() == 201, "PUT: {}", r.text().await?);
    }
    let calls = sim.request_count() - before;
    let apps = sim.apps("bench-user").len();
    let keys = sim.keys("bench-user").len();
    sim.stop().await;
    Ok(Cost {
        per_user: calls as f64 / users as f64,
        keys_per_app: keys as f64 / apps.max(1) as f64,
    })
}

/// The service on SQLite in a temporary directory, with no background workers; its base URL,
/// an admin token and the directory (removed when dropped).
async fn start_service() -> anyhow::Result<(String, String, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let secret = SecretString::from(MasterKey::generate().to_base64());
    let settings = Settings {
        listen: "127.0.0.1:0".into(),
        database_url: format!("sqlite://{}/bench.db", dir.path().display()),
        master_key: Some(SecretString::from(MasterKey::generate().to_base64())),
        jwt_hs256_secret: Some(secret.clone()),
        caller_rate_limit: 0,
        recovery_interval_secs: 0,
        drift_check_interval_secs: 0,
        ..Settings::default()
    };
    let app = Application::build(&settings).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let admin = provisioner::token::mint(
        &secret,
        "provisioner:admin",
        None,
        3600,
        "bench",
        None,
        None,
    )?;
    Ok((base, admin, dir))
}

/// The bench account's simulator: limited to `rps` (`None`: no limit), answering in
/// `latency_ms`, minting a key with each new app when `mint`.
async fn simulator(rps: Option<u32>, latency_ms: u64, mint: bool) -> anyhow::Result<Simulator> {
    Ok(Simulator::start(SimConfig {
        accounts: vec![Account::new("bench-user", "bench-pat-0123456789")],
        rate_limit_per_sec: rps,
        faults: Faults {
            latency_ms,
            ..Faults::none()
        },
        auto_app_key: mint,
        ..SimConfig::default()
    })
    .await?)
}

/// Creates tenant `id` on the bench account at `sim_url`, paced to `rps` (16 in flight), with a
/// default profile and the given `auto_key_check`.
async fn create_tenant(
    http: &reqwest::Client,
    base: &str,
    admin: &str,
    sim_url: &str,
    id: &str,
    rps: u32,
    policy: &str,
) -> anyhow::Result<()> {
    let tenant = json!({
        "id": id, "display_name": id,
        "upstream": {"base_url": sim_url, "user_id": "bench-user", "pat": "bench-pat-0123456789"},
        "upstream_rate_limit": {"requests_per_second": rps, "max_concurrency": 16},
        "allowed_scopes": ["Predict", "Inputs:Get"],
        "default_scope_profile": "standard", "scope_profiles": {"standard": ["Predict", "Inputs:Get"]},
        "auto_key_check": policy,
    });
    let r = http
        .post(format!("{base}/v1/tenants"))
        .bearer_auth(admin)
        .json(&tenant)
        .send()
        .await?;
    anyhow::ensure!(r.status().as_u16() == 201, "tenant: {}", r.text().await?);
    Ok(())
}
