//! Bulk onboarding at the account's limit: one instance, three replicas on one PostgreSQL, two
//! tenants on two accounts at once, and an interactive PUT's latency while a job saturates its
//! account.

use std::time::{Duration, Instant};

use crate::setup::{
    Cluster, Db, TenantSpec, create_tenant, put_user, quantile, simulator, submit_batch, wait_job,
};

/// Upstream latency in these tables.
const LATENCY_MS: u64 = 25;

pub async fn bulk_table(users: usize, rps: u32) -> anyhow::Result<()> {
    println!(
        "\n| bulk job, 25 ms upstream, `auto_key_check: always` | users | limit (req/s) | upstream calls | wall (s) | achieved (req/s) | achieved / limit | target | upstream 429s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (db, replicas) in [(Db::Sqlite, 1), (Db::Postgres, 1), (Db::Postgres, 3)] {
        let label = format!(
            "users:batch, {replicas} instance{}, {}",
            if replicas > 1 { "s" } else { "" },
            db.name()
        );
        match one_job(db, replicas, users, rps).await? {
            Some(r) => println!(
                "| {label} | {users} | {rps} | {} | {:.1} | {:.2} | {:.3} | ≥ 0.95 | {} |",
                r.calls,
                r.wall,
                r.calls as f64 / r.wall,
                r.calls as f64 / r.wall / f64::from(rps),
                r.throttled
            ),
            None => println!("| {label} | skipped: PostgreSQL unreachable | | | | | | | |"),
        }
    }
    two_tenants(users / 2, rps).await?;
    Ok(())
}

struct JobRun {
    calls: u64,
    wall: f64,
    throttled: u64,
}

/// A job of `users` users submitted to the first of `replicas` replicas, worked by all.
async fn one_job(
    db: Db,
    replicas: usize,
    users: usize,
    rps: u32,
) -> anyhow::Result<Option<JobRun>> {
    let sim = simulator(&["bench-user"], Some(rps), LATENCY_MS, false).await?;
    let Some(cluster) = Cluster::start(db, replicas, true).await? else {
        sim.stop().await;
        return Ok(None);
    };
    let http = reqwest::Client::new();
    let url = sim.base_url();
    create_tenant(
        &http,
        cluster.base(),
        &cluster.admin,
        &TenantSpec::new("bulk", &url, rps, "always"),
    )
    .await?;
    // Let the simulator's bucket refill after the PAT check.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (before, throttled_before) = (sim.request_count(), sim.fault_counts().rate_limited);
    let start = Instant::now();
    let id = submit_batch(&http, cluster.base(), &cluster.admin, "bulk", "b", users).await?;
    // Ask a replica that did not take the request: the job is in the database.
    let last = cluster.bases.last().cloned().unwrap_or_default();
    let (_, done) = wait_job(&http, &last, &cluster.admin, &id).await?;
    let run = JobRun {
        calls: sim.request_count() - before,
        wall: (done - start).as_secs_f64(),
        throttled: sim.fault_counts().rate_limited - throttled_before,
    };
    anyhow::ensure!(
        sim.apps("bench-user").len() == users && sim.keys("bench-user").len() == users,
        "one app and one key per user"
    );
    cluster.stop().await;
    sim.stop().await;
    Ok(Some(run))
}

/// Two tenants, each on its own account (and upstream), onboarding at once on one instance.
async fn two_tenants(users: usize, rps: u32) -> anyhow::Result<()> {
    let sims = [
        simulator(&["bench-user"], Some(rps), LATENCY_MS, false).await?,
        simulator(&["bench-user"], Some(rps), LATENCY_MS, false).await?,
    ];
    let Some(cluster) = Cluster::start(Db::Sqlite, 1, true).await? else {
        return Ok(());
    };
    let http = reqwest::Client::new();
    let urls = [sims[0].base_url(), sims[1].base_url()];
    for (t, url) in ["one", "two"].iter().zip(&urls) {
        let spec = TenantSpec::new(t, url, rps, "always");
        create_tenant(&http, cluster.base(), &cluster.admin, &spec).await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before: Vec<_> = sims.iter().map(|s| s.request_count()).collect();
    let start = Instant::now();
    let mut ids = Vec::new();
    for t in ["one", "two"] {
        ids.push(submit_batch(&http, cluster.base(), &cluster.admin, t, t, users).await?);
    }
    let mut waits = Vec::new();
    for id in &ids {
        let (http, base, admin, id) = (
            http.clone(),
            cluster.base().to_owned(),
            cluster.admin.clone(),
            id.clone(),
        );
        waits.push(tokio::spawn(async move {
            wait_job(&http, &base, &admin, &id).await
        }));
    }
    let mut rows = Vec::new();
    for (i, w) in waits.into_iter().enumerate() {
        let (_, done) = w.await??;
        let wall = (done - start).as_secs_f64();
        let calls = sims[i].request_count() - before[i];
        rows.push((calls, wall, sims[i].fault_counts().rate_limited));
    }
    for (i, (calls, wall, throttled)) in rows.into_iter().enumerate() {
        println!(
            "| two tenants at once, tenant {} on its own account, SQLite | {users} | {rps} | {calls} | {wall:.1} | {:.2} | {:.3} | ≥ 0.90 | {throttled} |",
            i + 1,
            calls as f64 / wall,
            calls as f64 / wall / f64::from(rps)
        );
    }
    cluster.stop().await;
    for s in sims {
        s.stop().await;
    }
    Ok(())
}

/// Interactive PUTs on an account a bulk job saturates: their latency.
pub async fn interactive_under_bulk_table(bulk_users: usize, samples: usize) -> anyhow::Result<()> {
    println!(
        "\n| interactive PUT while a bulk job saturates its account (15 req/s, 25 ms upstream, `always`) | database | samples | p50 (ms) | p99 (ms) | target p99 | upstream 429s |"
    );
    println!("|---|---|---|---|---|---|---|");
    for db in [Db::Sqlite, Db::Postgres] {
        let sim = simulator(&["bench-user"], Some(15), LATENCY_MS, false).await?;
        let Some(cluster) = Cluster::start(db, 1, true).await? else {
            println!(
                "| | {} | skipped: PostgreSQL unreachable | | | | |",
                db.name()
            );
            sim.stop().await;
            continue;
        };
        let http = reqwest::Client::new();
        let url = sim.base_url();
        let spec = TenantSpec::new("acme", &url, 15, "always");
        create_tenant(&http, cluster.base(), &cluster.admin, &spec).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let throttled_before = sim.fault_counts().rate_limited;
        let id = submit_batch(
            &http,
            cluster.base(),
            &cluster.admin,
            "acme",
            "bulk",
            bulk_users,
        )
        .await?;
        // Let the job reach its pace.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut lat = Vec::new();
        for i in 0..samples {
            let t = Instant::now();
            let status = put_user(
                &http,
                cluster.base(),
                &cluster.admin,
                "acme",
                &format!("i-{i}"),
            )
            .await?;
            anyhow::ensure!(status == 201, "interactive PUT answered {status}");
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            tokio::time::sleep(Duration::from_millis(fastrand::u64(100..400))).await;
        }
        // The job must still have been running: otherwise the account was not saturated.
        let job: serde_json::Value = http
            .get(format!("{}/v1/jobs/{id}", cluster.base()))
            .bearer_auth(&cluster.admin)
            .send()
            .await?
            .json()
            .await?;
        anyhow::ensure!(
            job["finished_at"].is_null(),
            "the bulk job ended before the samples did: give it more users"
        );
        lat.sort_by(f64::total_cmp);
        println!(
            "| | {} | {samples} | {:.0} | {:.0} | ≤ 1000 ms | {} |",
            db.name(),
            quantile(&lat, 0.5),
            quantile(&lat, 0.99),
            sim.fault_counts().rate_limited - throttled_before
        );
        cluster.stop().await;
        sim.stop().await;
    }
    Ok(())
}
