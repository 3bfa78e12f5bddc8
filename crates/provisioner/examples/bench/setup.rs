//! What every table needs: services on SQLite or PostgreSQL (one or several replicas), the
//! simulator, tenants, tokens, percentiles.

use std::time::Duration;

use clarifai_sim::{Account, Faults, SimConfig, Simulator};
use provisioner::config::Settings;
use provisioner::startup::Application;
use provisioner_core::secret::MasterKey;
use secrecy::SecretString;
use serde_json::json;

/// The PAT of every bench account.
pub const PAT: &str = "bench-pat-0123456789";

/// Which database the services use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

impl Db {
    pub fn name(self) -> &'static str {
        match self {
            Db::Sqlite => "SQLite",
            Db::Postgres => "PostgreSQL",
        }
    }
}

enum Guard {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Pg(#[allow(dead_code)] provisioner_storage::testing::PgDbGuard),
}

/// One or more replicas of the service on one database, and an admin token for all of them.
pub struct Cluster {
    pub bases: Vec<String>,
    pub admin: String,
    pub database_url: String,
    /// The master key and token secret (base64), for another process on the same database.
    pub master_key: SecretString,
    pub jwt_secret: SecretString,
    handles: Vec<(
        actix_web::dev::ServerHandle,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    )>,
    _guard: Guard,
}

impl Cluster {
    /// `replicas` services on a fresh database; `jobs`: whether they run job workers. `None`
    /// when PostgreSQL is asked for and unreachable.
    pub async fn start(db: Db, replicas: usize, jobs: bool) -> anyhow::Result<Option<Cluster>> {
        let (database_url, guard) = match db {
            Db::Sqlite => {
                let dir = tempfile::tempdir()?;
                (
                    format!("sqlite://{}/bench.db", dir.path().display()),
                    Guard::Dir(dir),
                )
            }
            Db::Postgres => match provisioner_storage::testing::fresh_postgres().await {
                Some((store, url, guard)) => {
                    store.close().await;
                    (url, Guard::Pg(guard))
                }
                None => return Ok(None),
            },
        };
        let secret = SecretString::from(MasterKey::generate().to_base64());
        let master = SecretString::from(MasterKey::generate().to_base64());
        let mut bases = Vec::new();
        let mut handles = Vec::new();
        for _ in 0..replicas {
            let settings = Settings {
                listen: "127.0.0.1:0".into(),
                metrics_listen: "off".into(),
                database_url: database_url.clone(),
                master_key: Some(master.clone()),
                jwt_hs256_secret: Some(secret.clone()),
                caller_rate_limit: 0,
                recovery_interval_secs: 0,
                drift_check_interval_secs: 0,
                job_concurrency: if jobs { 16 } else { 0 },
                // `BENCH_UPSTREAM_BUDGET=local` compares with an in-process budget.
                upstream_budget: std::env::var("BENCH_UPSTREAM_BUDGET")
                    .unwrap_or_else(|_| "auto".into()),
                ..Settings::default()
            };
            let app = Application::build(&settings).await?;
            bases.push(format!("http://127.0.0.1:{}", app.port()));
            let handle = app.server_handle();
            handles.push((handle, tokio::spawn(app.run_until_stopped())));
        }
        let admin = provisioner::token::mint(
            &secret,
            "provisioner:admin",
            None,
            3600,
            "bench",
            None,
            None,
        )?;
        Ok(Some(Cluster {
            bases,
            admin,
            database_url,
            master_key: master,
            jwt_secret: secret,
            handles,
            _guard: guard,
        }))
    }

    /// The first replica's base URL.
    pub fn base(&self) -> &str {
        &self.bases[0]
    }

    /// Stops every replica (its workers too) and drops the database.
    pub async fn stop(self) {
        drop(self.stop_keeping_database().await);
    }

    /// Stops every replica; the database lives as long as the value returned.
    pub async fn stop_keeping_database(self) -> impl Send {
        for (handle, task) in self.handles {
            handle.stop(true).await;
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        self._guard
    }
}

/// A simulator of `accounts` (user ids, all with [`PAT`]), each limited to `rps` (`None`: no
/// limit), answering in `latency_ms`, minting a key with each new app when `mint`.
pub async fn simulator(
    accounts: &[&str],
    rps: Option<u32>,
    latency_ms: u64,
    mint: bool,
) -> anyhow::Result<Simulator> {
    Ok(Simulator::start(SimConfig {
        accounts: accounts.iter().map(|a| Account::new(*a, PAT)).collect(),
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

/// A tenant to create.
pub struct TenantSpec<'a> {
    pub id: &'a str,
    pub sim_url: &'a str,
    pub user: &'a str,
    pub rps: u32,
    pub concurrency: u32,
    pub policy: &'a str,
}

impl<'a> TenantSpec<'a> {
    /// Tenant `id` on account `bench-user` at `sim_url`, paced to `rps` (16 in flight).
    pub fn new(id: &'a str, sim_url: &'a str, rps: u32, policy: &'a str) -> Self {
        Self {
            id,
            sim_url,
            user: "bench-user",
            rps,
            concurrency: 16,
            policy,
        }
    }
}

/// Creates the tenant, with a default profile.
pub async fn create_tenant(
    http: &reqwest::Client,
    base: &str,
    admin: &str,
    t: &TenantSpec<'_>,
) -> anyhow::Result<()> {
    let tenant = json!({
        "id": t.id, "display_name": t.id,
        "upstream": {"base_url": t.sim_url, "user_id": t.user, "pat": PAT},
        "upstream_rate_limit": {"requests_per_second": t.rps, "max_concurrency": t.concurrency},
        "allowed_scopes": ["Predict", "Inputs:Get"],
        "default_scope_profile": "standard", "scope_profiles": {"standard": ["Predict", "Inputs:Get"]},
        "auto_key_check": t.policy,
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

/// PUTs one user; its status.
pub async fn put_user(
    http: &reqwest::Client,
    base: &str,
    admin: &str,
    tenant: &str,
    user: &str,
) -> anyhow::Result<u16> {
    let r = http
        .put(format!("{base}/v1/tenants/{tenant}/users/{user}"))
        .bearer_auth(admin)
        .json(&json!({}))
        .send()
        .await?;
    let status = r.status().as_u16();
    anyhow::ensure!(
        matches!(status, 200 | 201 | 503),
        "PUT {user}: {status} {}",
        r.text().await?
    );
    Ok(status)
}

/// Submits a `users:batch` job of `users` users named `{prefix}-N`; its id.
pub async fn submit_batch(
    http: &reqwest::Client,
    base: &str,
    admin: &str,
    tenant: &str,
    prefix: &str,
    users: usize,
) -> anyhow::Result<String> {
    let batch: Vec<serde_json::Value> = (0..users)
        .map(|i| json!({"external_id": format!("{prefix}-{i:05}")}))
        .collect();
    let r = http
        .post(format!("{base}/v1/tenants/{tenant}/users:batch"))
        .bearer_auth(admin)
        .json(&json!({ "users": batch }))
        .send()
        .await?;
    anyhow::ensure!(r.status().as_u16() == 202, "batch: {}", r.text().await?);
    let job: serde_json::Value = r.json().await?;
    Ok(job["job_id"].as_str().unwrap_or_default().to_owned())
}

/// Waits for a job to finish; the job, and when it finished.
pub async fn wait_job(
    http: &reqwest::Client,
    base: &str,
    admin: &str,
    id: &str,
) -> anyhow::Result<(serde_json::Value, std::time::Instant)> {
    loop {
        let j: serde_json::Value = http
            .get(format!("{base}/v1/jobs/{id}"))
            .bearer_auth(admin)
            .send()
            .await?
            .json()
            .await?;
        if !j["finished_at"].is_null() {
            anyhow::ensure!(j["status"] == "succeeded", "job: {j}");
            return Ok((j, std::time::Instant::now()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `q` quantile (0..=1) of sorted samples.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `clients` concurrent clients PUT `total` new users of `tenant` (`{prefix}-N`) back to back,
/// each expecting 201; every latency in milliseconds, sorted.
pub async fn put_new_users(
    http: &reqwest::Client,
    cluster: &Cluster,
    tenant: &str,
    prefix: &str,
    clients: usize,
    total: usize,
) -> anyhow::Result<Vec<f64>> {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, base, admin, next) = (
            http.clone(),
            cluster.base().to_owned(),
            cluster.admin.clone(),
            next.clone(),
        );
        let (tenant, prefix) = (tenant.to_owned(), prefix.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= total {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let t = std::time::Instant::now();
                let user = format!("{prefix}-{i}");
                let status = put_user(&http, &base, &admin, &tenant, &user).await?;
                anyhow::ensure!(status == 201, "PUT answered {status}");
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    lat.sort_by(f64::total_cmp);
    Ok(lat)
}
