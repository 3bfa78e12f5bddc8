//! Where the service itself is the limit: throughput against a zero-latency upstream, GET
//! throughput from a separate load-generator process, and the official Python client's
//! sequential loop as the obvious alternative.

use std::time::{Duration, Instant};

use crate::setup::{
    Cluster, Db, TenantSpec, create_tenant, put_new_users, quantile, simulator, submit_batch,
    wait_job,
};

/// CPU seconds this process has used (user, system), from /proc; zeroes elsewhere.
fn cpu_seconds() -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return (0.0, 0.0);
    };
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = 100.0; // CLK_TCK on Linux
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / tick;
    (get(11), get(12))
}

/// New users PUT by 64 clients against an upstream that answers at once, limit raised: how
/// fast the service goes and where the time goes.
pub async fn zero_latency_table(users: usize) -> anyhow::Result<()> {
    println!(
        "\n| zero-latency upstream, limit raised, `never` | database | users | clients | users/s | upstream calls/s | PUT p50 (ms) | p99 (ms) | CPU busy (of 2 cores) | user / system CPU (s) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for db in [Db::Sqlite, Db::Postgres] {
        let sim = simulator(&["bench-user"], None, 0, false).await?;
        let Some(cluster) = Cluster::start(db, 1, false).await? else {
            println!(
                "| | {} | skipped: PostgreSQL unreachable | | | | | | | |",
                db.name()
            );
            sim.stop().await;
            continue;
        };
        let http = reqwest::Client::new();
        let url = sim.base_url();
        let spec = TenantSpec {
            concurrency: 128,
            ..TenantSpec::new("zero", &url, 1000, "never")
        };
        create_tenant(&http, cluster.base(), &cluster.admin, &spec).await?;
        let clients = 64;
        let (cpu0, calls0, start) = (cpu_seconds(), sim.request_count(), Instant::now());
        let lat = put_new_users(&http, &cluster, "zero", "z", clients, users).await?;
        let wall = start.elapsed().as_secs_f64();
        let cpu1 = cpu_seconds();
        let calls = sim.request_count() - calls0;
        let (user, sys) = (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1);
        println!(
            "| | {} | {users} | {clients} | {:.0} | {:.0} | {:.1} | {:.1} | {:.0} % | {user:.1} / {sys:.1} |",
            db.name(),
            users as f64 / wall,
            calls as f64 / wall,
            quantile(&lat, 0.5),
            quantile(&lat, 0.99),
            100.0 * (user + sys) / wall / 2.0,
        );
        cluster.stop().await;
        sim.stop().await;
    }
    println!(
        "\n(CPU is the whole bench process: service, simulator and clients share the two cores.)"
    );
    Ok(())
}

/// GET of stored users, driven by this bench binary re-run as a separate process
/// (`--loadgen`).
pub async fn reads_table(users: usize, seconds: u64) -> anyhow::Result<()> {
    println!(
        "\n| GET user from a separate process (keep-alive) | database | users stored | connections | requests | GET/s | p50 (ms) | p99 (ms) | target |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for db in [Db::Sqlite, Db::Postgres] {
        let sim = simulator(&["bench-user"], None, 0, false).await?;
        let Some(cluster) = Cluster::start(db, 1, true).await? else {
            println!(
                "| | {} | skipped: PostgreSQL unreachable | | | | | | |",
                db.name()
            );
            sim.stop().await;
            continue;
        };
        let http = reqwest::Client::new();
        let url = sim.base_url();
        let spec = TenantSpec::new("reads", &url, 1000, "never");
        create_tenant(&http, cluster.base(), &cluster.admin, &spec).await?;
        let id = submit_batch(&http, cluster.base(), &cluster.admin, "reads", "r", users).await?;
        wait_job(&http, cluster.base(), &cluster.admin, &id).await?;
        for connections in [16, 64] {
            let out = tokio::process::Command::new(std::env::current_exe()?)
                .args([
                    "--loadgen",
                    cluster.base(),
                    &cluster.admin,
                    "reads",
                    &users.to_string(),
                    &connections.to_string(),
                    &seconds.to_string(),
                ])
                .output()
                .await?;
            anyhow::ensure!(
                out.status.success(),
                "load generator: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let r: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            println!(
                "| | {} | {users} | {connections} | {} | {:.0} | {:.2} | {:.2} | ≥ 10,000/s, p99 ≤ 5 ms |",
                db.name(),
                r["requests"],
                r["per_sec"].as_f64().unwrap_or(0.0),
                r["p50_ms"].as_f64().unwrap_or(0.0),
                r["p99_ms"].as_f64().unwrap_or(0.0),
            );
        }
        cluster.stop().await;
        sim.stop().await;
    }
    Ok(())
}

/// The load generator's side: `connections` keep-alive connections GET random users for
/// `seconds`; prints one JSON line.
pub async fn loadgen(args: &[String]) -> anyhow::Result<()> {
    let [base, token, tenant, users, connections, seconds] = args else {
        anyhow::bail!("usage: --loadgen BASE TOKEN TENANT USERS CONNECTIONS SECONDS");
    };
    let (users, connections, seconds): (usize, usize, u64) =
        (users.parse()?, connections.parse()?, seconds.parse()?);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (http, base, token, tenant) =
            (http.clone(), base.clone(), token.clone(), tenant.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let i = fastrand::usize(..users);
                let t = Instant::now();
                let r = http
                    .get(format!("{base}/v1/tenants/{tenant}/users/r-{i:05}"))
                    .bearer_auth(&token)
                    .send()
                    .await?;
                anyhow::ensure!(r.status().as_u16() == 200, "GET answered {}", r.status());
                r.bytes().await?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let start = Instant::now();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let wall = start.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "requests": lat.len(),
            "per_sec": lat.len() as f64 / wall,
            "p50_ms": quantile(&lat, 0.5),
            "p99_ms": quantile(&lat, 0.99),
        })
    );
    Ok(())
}

/// The official Python client (`clarifai-grpc`, JSON channel) onboarding users one after
/// another against the same simulator, beside the service's bulk job on the same terms.
pub async fn python_table(users: usize) -> anyhow::Result<()> {
    println!(
        "\n| the alternative: sequential loop, official Python client (25 ms upstream) | account limit | users | users/s | upstream 429s | Provisioner `users:batch` users/s (`never`) | speed-up |"
    );
    println!("|---|---|---|---|---|---|---|");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/bench/python_baseline.sh"
    );
    for limit in [15u32, 0] {
        let out = tokio::process::Command::new("bash")
            .args([script, &users.to_string(), "25", &limit.to_string()])
            .output()
            .await?;
        if !out.status.success() {
            println!(
                "| skipped: {} | | | | | | |",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("the script failed")
            );
            continue;
        }
        let last = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned();
        let py: serde_json::Value = serde_json::from_str(&last)?;
        let py_rate = py["users_per_sec"].as_f64().unwrap_or(f64::NAN);
        let ours = service_rate(users, limit).await?;
        println!(
            "| | {} | {users} | {py_rate:.1} | {} | {ours:.1} | {:.1}× |",
            if limit == 0 {
                "none".to_owned()
            } else {
                format!("{limit} req/s")
            },
            py["retries_429"],
            ours / py_rate
        );
    }
    Ok(())
}

/// Users per second of a `users:batch` job on one SQLite instance, on a 25 ms simulator with
/// the given account limit (0: none; the tenant then paces at 1000 req/s, 64 in flight).
async fn service_rate(users: usize, limit: u32) -> anyhow::Result<f64> {
    let sim = simulator(&["bench-user"], Some(limit).filter(|l| *l > 0), 25, false).await?;
    let Some(cluster) = Cluster::start(Db::Sqlite, 1, true).await? else {
        anyhow::bail!("no SQLite");
    };
    let http = reqwest::Client::new();
    let url = sim.base_url();
    let rps = if limit == 0 { 1000 } else { limit };
    let spec = TenantSpec {
        concurrency: 64,
        ..TenantSpec::new("py", &url, rps, "never")
    };
    create_tenant(&http, cluster.base(), &cluster.admin, &spec).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start = Instant::now();
    let id = submit_batch(&http, cluster.base(), &cluster.admin, "py", "p", users).await?;
    let (_, done) = wait_job(&http, cluster.base(), &cluster.admin, &id).await?;
    let rate = users as f64 / (done - start).as_secs_f64();
    cluster.stop().await;
    sim.stop().await;
    Ok(rate)
}
