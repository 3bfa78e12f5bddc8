//! PUT latency: at concurrency 1, 16 and 64 against a 25 ms upstream with the account's limit
//! out of the way (the service's own overhead over its two upstream calls), and a lone PUT
//! after an idle second at the default 15 requests per second (the pacing's cost).

use std::time::{Duration, Instant};

use crate::setup::{
    Cluster, Db, TenantSpec, create_tenant, put_new_users, put_user, quantile, simulator,
};

/// Upstream latency of every call in these tables.
const LATENCY_MS: f64 = 25.0;

pub async fn concurrency_table(per_client: usize, levels: &[usize]) -> anyhow::Result<()> {
    println!(
        "\n| PUT of a new user, 25 ms upstream, `auto_key_check: never` (2 calls), limit raised | database | concurrency | PUTs | p50 (ms) | p99 (ms) | floor 2 × 25 ms | p50 over the floor (ms) | target |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for db in [Db::Sqlite, Db::Postgres] {
        for &clients in levels {
            let Some(lat) = measure(db, clients, per_client).await? else {
                println!(
                    "| | {} | {clients} | skipped: PostgreSQL unreachable | | | | | |",
                    db.name()
                );
                continue;
            };
            let floor = 2.0 * LATENCY_MS;
            let target = match (db, clients) {
                (Db::Sqlite, 1) => "≤ 3 ms",
                (Db::Postgres, 1) => "≤ 5 ms",
                _ => "",
            };
            println!(
                "| | {} | {clients} | {} | {:.1} | {:.1} | {floor:.0} | {:.1} | {target} |",
                db.name(),
                lat.len(),
                quantile(&lat, 0.5),
                quantile(&lat, 0.99),
                quantile(&lat, 0.5) - floor,
            );
        }
    }
    Ok(())
}

/// `clients` clients each PUT `per_client` new users back to back; every latency, sorted.
async fn measure(db: Db, clients: usize, per_client: usize) -> anyhow::Result<Option<Vec<f64>>> {
    let sim = simulator(&["bench-user"], None, LATENCY_MS as u64, false).await?;
    let Some(cluster) = Cluster::start(db, 1, false).await? else {
        sim.stop().await;
        return Ok(None);
    };
    let http = reqwest::Client::new();
    let url = sim.base_url();
    let spec = TenantSpec {
        concurrency: 128,
        ..TenantSpec::new("lat", &url, 1000, "never")
    };
    create_tenant(&http, cluster.base(), &cluster.admin, &spec).await?;
    // Warm the connections.
    put_user(&http, cluster.base(), &cluster.admin, "lat", "warm").await?;
    let lat = put_new_users(&http, &cluster, "lat", "u", clients, clients * per_client).await?;
    cluster.stop().await;
    sim.stop().await;
    Ok(Some(lat))
}

/// A lone PUT after an idle second at the default 15 req/s: its latency against the floor of
/// its upstream calls, under each policy.
pub async fn lone_put_table(samples: usize) -> anyhow::Result<()> {
    println!(
        "\n| lone PUT after an idle second (15 req/s, 25 ms upstream) | database | samples | p50 (ms) | max (ms) | floor | p50 over the floor (ms) | target |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for db in [Db::Sqlite, Db::Postgres] {
        for (policy, calls) in [("never", 2.0), ("always", 3.0)] {
            let sim = simulator(&["bench-user"], Some(15), LATENCY_MS as u64, false).await?;
            let Some(cluster) = Cluster::start(db, 1, false).await? else {
                println!(
                    "| {policy} | {} | skipped: PostgreSQL unreachable | | | | | |",
                    db.name()
                );
                sim.stop().await;
                continue;
            };
            let http = reqwest::Client::new();
            let url = sim.base_url();
            let spec = TenantSpec::new("lone", &url, 15, policy);
            create_tenant(&http, cluster.base(), &cluster.admin, &spec).await?;
            let mut lat = Vec::new();
            for i in 0..samples {
                tokio::time::sleep(Duration::from_millis(1100)).await;
                let t = Instant::now();
                let status = put_user(
                    &http,
                    cluster.base(),
                    &cluster.admin,
                    "lone",
                    &format!("l-{i}"),
                )
                .await?;
                anyhow::ensure!(status == 201, "PUT answered {status}");
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            lat.sort_by(f64::total_cmp);
            let floor = calls * LATENCY_MS;
            println!(
                "| auto_key_check {policy} | {} | {samples} | {:.1} | {:.1} | {floor:.0} ms | {:.1} | {} |",
                db.name(),
                quantile(&lat, 0.5),
                lat[lat.len() - 1],
                quantile(&lat, 0.5) - floor,
                if policy == "never" { "≤ 3 ms" } else { "" },
            );
            cluster.stop().await;
            sim.stop().await;
        }
    }
    Ok(())
}
