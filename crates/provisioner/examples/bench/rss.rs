//! Peak resident memory of the real `serve` binary (a child process) over a database holding
//! many users, while it answers lists and reads of all of them.

use std::time::{Duration, Instant};

use secrecy::ExposeSecret;

use crate::setup::{Cluster, Db, TenantSpec, create_tenant, simulator, submit_batch, wait_job};

/// The `provisioner` binary beside this example (`target/<profile>/examples/bench` ->
/// `target/<profile>/provisioner`).
fn serve_binary() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("provisioner");
    bin.is_file().then_some(bin)
}

/// `VmHWM` (peak RSS) of a process, in MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub async fn rss_table(users: usize) -> anyhow::Result<()> {
    println!(
        "\n| peak RSS of `serve` (child process, SQLite) | users stored | seeding (users/s) | after start (MiB) | peak after listing all and 20,000 GETs (MiB) | target |"
    );
    println!("|---|---|---|---|---|---|");
    let Some(bin) = serve_binary() else {
        println!(
            "| skipped: build the binary first (`cargo build --release -p provisioner`) | | | | | |"
        );
        return Ok(());
    };
    // Seed through the service itself: bulk jobs against an upstream that answers at once.
    let sim = simulator(&["bench-user"], None, 0, false).await?;
    let cluster = Cluster::start(Db::Sqlite, 1, true)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no SQLite"))?;
    let http = reqwest::Client::new();
    let url = sim.base_url();
    let spec = TenantSpec {
        concurrency: 64,
        ..TenantSpec::new("rss", &url, 1000, "never")
    };
    create_tenant(&http, cluster.base(), &cluster.admin, &spec).await?;
    let started = Instant::now();
    let mut seeded = 0;
    while seeded < users {
        let n = (users - seeded).min(10_000);
        let prefix = format!("s{seeded:06}");
        let id = submit_batch(&http, cluster.base(), &cluster.admin, "rss", &prefix, n).await?;
        wait_job(&http, cluster.base(), &cluster.admin, &id).await?;
        seeded += n;
    }
    let seeding = users as f64 / started.elapsed().as_secs_f64();
    let (database_url, master, secret, admin) = (
        cluster.database_url.clone(),
        cluster.master_key.expose_secret().to_owned(),
        cluster.jwt_secret.expose_secret().to_owned(),
        cluster.admin.clone(),
    );
    let _db = cluster.stop_keeping_database().await;

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = tokio::process::Command::new(bin)
        .arg("serve")
        .env("PROVISIONER_LISTEN", format!("127.0.0.1:{port}"))
        .env("PROVISIONER_METRICS_LISTEN", "off")
        .env("PROVISIONER_DATABASE_URL", &database_url)
        .env("PROVISIONER_MASTER_KEY", &master)
        .env("PROVISIONER_JWT_HS256_SECRET", &secret)
        .env("PROVISIONER_LOG", "error")
        .env("PROVISIONER_CALLER_RATE_LIMIT", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().unwrap_or(0);
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "serve did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after_start = peak_rss_mib(pid).unwrap_or(f64::NAN);
    // List every user, a page at a time.
    let mut cursor: Option<String> = None;
    let mut listed = 0;
    loop {
        let url = match &cursor {
            Some(c) => format!("{base}/v1/tenants/rss/users?limit=100&cursor={c}"),
            None => format!("{base}/v1/tenants/rss/users?limit=100"),
        };
        let page: serde_json::Value = http
            .get(url)
            .bearer_auth(&admin)
            .send()
            .await?
            .json()
            .await?;
        listed += page["items"].as_array().map_or(0, Vec::len);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    anyhow::ensure!(listed == users, "listed {listed} of {users} users");
    // Reads from 16 connections.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (http, base, admin) = (http.clone(), base.clone(), admin.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..1250 {
                let i = fastrand::usize(..users);
                let id = format!("s{:06}-{:05}", i / 10_000 * 10_000, i % 10_000);
                let r = http
                    .get(format!("{base}/v1/tenants/rss/users/{id}"))
                    .bearer_auth(&admin)
                    .send()
                    .await?;
                anyhow::ensure!(r.status().as_u16() == 200, "GET {id}: {}", r.status());
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let peak = peak_rss_mib(pid).unwrap_or(f64::NAN);
    let _ = child.kill().await;
    sim.stop().await;
    println!("| | {users} | {seeding:.0} | {after_start:.1} | {peak:.1} | ≤ 64 MiB |");
    Ok(())
}
