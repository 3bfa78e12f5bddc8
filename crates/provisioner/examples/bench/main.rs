//! Provisioning cost, latency and throughput against the simulator, printed as tables, each
//! figure beside its limit or target (docs/benchmarks.md shows a run and how to read it).
//!
//! `cargo build --release -p provisioner && cargo run --release -p provisioner --example bench
//! [-- BULK_USERS]` (default 2,000), or `-- --smoke` for a short run that only checks the
//! bench still works (`.ci/run` does; its figures mean nothing). PostgreSQL rows use
//! `PROVISIONER_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) and are
//! skipped when it is unreachable. `-- --only NAME` runs one table: cost, latency, lone, bulk,
//! interactive, zero, reads, rss, python.
//!
//! Tables: the upstream calls one new user costs under each `auto_key_check` policy; PUT
//! latency at concurrency 1, 16 and 64 and the overhead over the upstream calls; a lone PUT
//! after an idle second; bulk jobs at the account's limit (one instance, three replicas on one
//! PostgreSQL, two tenants on two accounts); an interactive PUT while a job saturates its
//! account; throughput with a zero-latency upstream; GET throughput from a separate process;
//! peak RSS of `serve` with many users stored; the official Python client's sequential loop.

mod bulk;
mod extra;
mod latency;
mod rss;
mod setup;

use serde_json::json;
use setup::{Cluster, Db, TenantSpec, create_tenant, simulator};

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--loadgen") {
        return extra::loadgen(&args[1..]).await;
    }
    provisioner::telemetry::init("error", false, false, std::io::stderr);
    let smoke = args.iter().any(|a| a == "--smoke");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let run = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let numbers: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let bulk_users = if smoke {
        12
    } else {
        numbers.first().copied().unwrap_or(2000)
    };
    if run("cost") {
        cost_table(if smoke { 25 } else { 100 }).await?;
    }
    if run("latency") {
        let levels: &[usize] = if smoke { &[1, 16] } else { &[1, 16, 64] };
        latency::concurrency_table(if smoke { 2 } else { 20 }, levels).await?;
    }
    if run("lone") {
        latency::lone_put_table(if smoke { 1 } else { 10 }).await?;
    }
    if run("bulk") {
        bulk::bulk_table(bulk_users, if smoke { 100 } else { 15 }).await?;
    }
    if run("interactive") {
        bulk::interactive_under_bulk_table(
            if smoke { 40 } else { 400 },
            if smoke { 3 } else { 60 },
        )
        .await?;
    }
    if run("zero") {
        extra::zero_latency_table(if smoke { 50 } else { 3000 }).await?;
    }
    if run("reads") {
        extra::reads_table(if smoke { 20 } else { 1000 }, if smoke { 1 } else { 10 }).await?;
    }
    if run("rss") {
        rss::rss_table(if smoke { 200 } else { 100_000 }).await?;
    }
    if run("python") && !smoke {
        extra::python_table(100).await?;
    }
    Ok(())
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
    let sim = simulator(&["bench-user"], None, 0, mint).await?;
    let cluster = Cluster::start(Db::Sqlite, 1, false)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no SQLite"))?;
    let (base, admin) = (cluster.base().to_owned(), cluster.admin.clone());
    let http = reqwest::Client::new();
    let url = sim.base_url();
    create_tenant(
        &http,
        &base,
        &admin,
        &TenantSpec::new("cost", &url, 1000, policy),
    )
    .await?;
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
    cluster.stop().await;
    sim.stop().await;
    Ok(Cost {
        per_user: calls as f64 / users as f64,
        keys_per_app: keys as f64 / apps.max(1) as f64,
    })
}
