//! `provisioner`: serve, migrate, token, demo.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use provisioner::config::{Settings, redact_url};
use provisioner::startup::Application;
use provisioner::{demo, telemetry, token};

/// Provisioner: one Clarifai app and one scoped key per end user, for every tenant.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the REST API (configuration from PROVISIONER_* variables; see README).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print an HS256 token signed with PROVISIONER_JWT_HS256_SECRET.
    Token {
        /// Space-separated permissions, e.g. "provisioner:write provisioner:read".
        #[arg(long)]
        scope: String,
        /// The tenant the token is bound to (omit for admin tokens).
        #[arg(long)]
        tenant: Option<String>,
        /// Lifetime: 90s, 15m, 1h, 7d.
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// The caller's name, recorded in audit events.
        #[arg(long, default_value = "cli")]
        sub: String,
    },
    /// Run everything locally: SQLite, the Clarifai simulator, a demo tenant, printed tokens.
    Demo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Where the demo keeps its database (wiped at each start).
        #[arg(long, default_value = "./data/demo")]
        data_dir: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load()?;
    telemetry::init(
        &settings.log,
        settings.log_format == "json",
        std::io::stderr,
    );
    for var in Settings::unknown_env_vars() {
        tracing::warn!(variable = %var, "unknown PROVISIONER_ variable ignored (typo?)");
    }
    match cli.command {
        Command::Serve => {
            let app = Application::build(&settings).await?;
            app.run_until_stopped().await
        }
        Command::Migrate => {
            let store = provisioner_storage::SqlStore::connect(&settings.database_url)
                .await
                .with_context(|| format!("connecting to {}", redact_url(&settings.database_url)))?;
            store.migrate().await.context("applying migrations")?;
            println!(
                "migrations applied to {}",
                redact_url(&settings.database_url)
            );
            Ok(())
        }
        Command::Token {
            scope,
            tenant,
            ttl,
            sub,
        } => {
            let secret = settings
                .jwt_hs256_secret
                .as_ref()
                .context("PROVISIONER_JWT_HS256_SECRET is not set")?;
            let ttl = token::parse_ttl(&ttl)?;
            let t = token::mint(
                secret,
                &scope,
                tenant.as_deref(),
                ttl,
                &sub,
                settings.jwt_issuer.as_deref(),
                settings.jwt_audience.as_deref(),
            )?;
            println!("{t}");
            Ok(())
        }
        Command::Demo { listen, data_dir } => demo::run(&listen, &data_dir).await,
    }
}
