//! `clarifai-sim`: runs the Clarifai simulator until Ctrl-C or SIGTERM.
//!
//! Prints its base URL as the first line on stdout. Logs go to stderr and never contain a PAT
//! or a key id.
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use clarifai_sim::{Account, Faults, SimConfig, Simulator};

/// Command-line options.
#[derive(Debug, Parser)]
#[command(
    name = "clarifai-sim",
    about = "Clarifai v2 REST simulator with fault injection"
)]
struct Cli {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Port (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// An account as USER_ID:PAT (repeatable).
    #[arg(long = "account", value_parser = parse_account)]
    accounts: Vec<Account>,
    /// Requests per second per account (0 = off).
    #[arg(long, default_value_t = 15)]
    rate_limit: u32,
    /// Send CONN_THROTTLED as the number 11005 instead of the string.
    #[arg(long)]
    throttle_code_numeric: bool,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Fixed latency of every /v2 request.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Random extra latency, up to this many ms.
    #[arg(long, default_value_t = 0)]
    latency_jitter_ms: u64,
    /// Probability of HTTP 500.
    #[arg(long, default_value_t = 0.0)]
    p_500: f64,
    /// Probability of an HTML 503.
    #[arg(long, default_value_t = 0.0)]
    p_503_html: f64,
    /// Probability of 429 with Retry-After.
    #[arg(long, default_value_t = 0.0)]
    p_429_retry_after: f64,
    /// Probability of 429 without Retry-After.
    #[arg(long, default_value_t = 0.0)]
    p_429: f64,
    /// Retry-After seconds of the injected 429.
    #[arg(long, default_value_t = 1)]
    retry_after_secs: u64,
    /// Probability of a hang.
    #[arg(long, default_value_t = 0.0)]
    p_hang: f64,
    /// Length of a hang.
    #[arg(long, default_value_t = 30_000)]
    hang_ms: u64,
    /// Probability of commit-then-drop.
    #[arg(long, default_value_t = 0.0)]
    p_commit_drop: f64,
    /// Seed of the fault RNG.
    #[arg(long)]
    seed: Option<u64>,
    /// Creating an app also mints a key on it (every scope, no marker), as the portal does.
    #[arg(long)]
    auto_app_key: bool,
}

/// Parses `USER_ID:PAT` (the error message never echoes the PAT).
fn parse_account(s: &str) -> Result<Account, String> {
    match s.split_once(':') {
        Some((user, pat)) if !user.is_empty() && !pat.is_empty() => Ok(Account::new(user, pat)),
        _ => Err("expected USER_ID:PAT".to_owned()),
    }
}

impl Cli {
    fn config(&self) -> SimConfig {
        SimConfig {
            accounts: self.accounts.clone(),
            rate_limit_per_sec: Some(self.rate_limit).filter(|n| *n > 0),
            faults: Faults {
                latency_ms: self.latency_ms,
                latency_jitter_ms: self.latency_jitter_ms,
                p_500: self.p_500,
                p_503_html: self.p_503_html,
                p_429_retry_after: self.p_429_retry_after,
                p_429: self.p_429,
                retry_after_secs: self.retry_after_secs,
                p_hang: self.p_hang,
                hang_ms: self.hang_ms,
                p_commit_drop: self.p_commit_drop,
                seed: self.seed,
            },
            workers: self.workers,
            auto_app_key: self.auto_app_key,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let addr = SocketAddr::new(cli.host, cli.port);
    let sim = Simulator::start_on(addr, cli.config())
        .await
        .with_context(|| format!("binding {addr}"))?;
    sim.set_throttle_code_numeric(cli.throttle_code_numeric);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", sim.base_url())?;
    out.flush()?;
    drop(out);
    tracing::info!(
        accounts = cli.accounts.len(),
        rate_limit = cli.rate_limit,
        auto_app_key = cli.auto_app_key,
        "clarifai-sim listening on {}",
        sim.base_url()
    );
    shutdown_signal().await?;
    tracing::info!(requests = sim.request_count(), faults = ?sim.fault_counts(), "stopping");
    sim.stop().await;
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
