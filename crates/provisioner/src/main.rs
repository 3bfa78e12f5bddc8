//! `provisioner`: serve, migrate, reseal, token, import, config check, healthcheck, demo.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use provisioner::config::{Settings, redact_url};
use provisioner::startup::{self, Application};
use provisioner::{healthcheck, telemetry, token};

/// Provisioner: one Clarifai app and one scoped key per end user, for every tenant.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the REST API (configuration from PROVISIONER_* variables; see docs/operations.md).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Re-seal every stored secret (tenant PATs, user keys) under PROVISIONER_MASTER_KEY,
    /// opening values under it or PROVISIONER_MASTER_KEY_PREVIOUS (master key rotation; see
    /// docs/operations.md). Safe to repeat; exits non-zero unless everything was re-sealed.
    Reseal,
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
    /// Onboard the users of a CSV or JSON-lines file through a running service's bulk API,
    /// with a progress bar, resumable after Ctrl-C or a crash, writing a result file.
    Import {
        /// The service's base URL.
        #[arg(long, env = "PROVISIONER_URL")]
        url: String,
        /// A bearer token with provisioner:write and provisioner:read on the tenant.
        #[arg(long, env = "PROVISIONER_TOKEN", hide_env_values = true)]
        token: String,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Users per job (1-1000).
        #[arg(long, default_value_t = 1000)]
        chunk: usize,
        /// The result file (default: <FILE>.result.csv).
        #[arg(long)]
        result: Option<PathBuf>,
        /// The state file that makes the import resumable (default: <FILE>.import-state.json).
        #[arg(long)]
        state: Option<PathBuf>,
        /// CSV (header: external_id[,scope_profile][,scopes][,display_name]) or .jsonl.
        file: PathBuf,
    },
    /// Check the configuration (`config check`) without starting anything.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// GET /readyz of the service on PROVISIONER_LISTEN (0.0.0.0 and [::] mean loopback)
    /// within 2 s: exit 0 on 200, 1 otherwise (a container HEALTHCHECK; prints one line).
    Healthcheck {
        /// The service's base URL instead (e.g. http://127.0.0.1:8080).
        #[arg(long)]
        url: Option<String>,
    },
    /// Run everything locally: SQLite, the Clarifai simulator, a demo tenant, printed tokens.
    #[cfg(feature = "demo")]
    Demo {
        /// Address to listen on; when neither this nor PROVISIONER_LISTEN is set, 127.0.0.1:8080,
        /// or a free port when 8080 is taken.
        #[arg(long, env = "PROVISIONER_LISTEN")]
        listen: Option<String>,
        /// The default address (tests point it at a port they hold).
        #[arg(long, hide = true, default_value = provisioner::demo::DEFAULT_LISTEN)]
        default_listen: String,
        /// Where the demo keeps its database (wiped at each start).
        #[arg(long, default_value = "./data/demo")]
        data_dir: PathBuf,
        /// Make the simulator mint a key (every scope, no marker) with each new app, as the
        /// Clarifai portal does; the service deletes it before the user becomes active.
        #[arg(long)]
        auto_app_key: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load the configuration as `serve` does, print it with every secret redacted, and check
    /// what `serve` checks before it touches the database (master keys, JWT verifier, upstream
    /// budget, listen addresses). Exits non-zero on a bad setting. Contacts nothing.
    Check,
    /// Print the PROVISIONER_* variables this binary reads, one a line (for deploy checks).
    #[command(hide = true)]
    Vars,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Config {
        command: ConfigCommand::Vars,
    } = cli.command
    {
        for var in Settings::known_env_vars() {
            println!("{var}");
        }
        return Ok(());
    }
    let settings = Settings::load()?;
    // Only `serve` exports spans (PROVISIONER_OTLP_ENDPOINT, feature `otlp`); shut down below
    // (or when dropped) to send the last ones.
    let export_to = match cli.command {
        Command::Serve if cfg!(feature = "otlp") => settings.otlp_endpoint(),
        _ => None,
    };
    let mut export = telemetry::init_exporting(
        &settings.log,
        settings.log_format.eq_ignore_ascii_case("json"),
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::io::stderr,
        export_to,
    )?;
    // `config check` lists them itself, on stdout with the settings.
    if !matches!(cli.command, Command::Config { .. }) {
        for var in Settings::unknown_env_vars() {
            tracing::warn!(variable = %var, "unknown PROVISIONER_ variable ignored (typo?)");
        }
    }
    match cli.command {
        Command::Serve => {
            let app = Application::build(&settings).await?;
            if export.is_active() {
                tracing::info!("exporting spans over OTLP/HTTP (PROVISIONER_OTLP_ENDPOINT)");
            }
            let result = app.run_until_stopped().await;
            export.shutdown();
            result
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
        Command::Reseal => {
            let r = startup::reseal(&settings).await?;
            println!(
                "re-sealed under the current master key: {} tenant PAT(s), {} user(s) ({} key(s)), {} webhook endpoint(s); {} user(s) skipped (busy); {} failure(s)",
                r.tenants,
                r.users,
                r.keys,
                r.webhook_endpoints,
                r.skipped_busy,
                r.failures.len()
            );
            for f in &r.failures {
                println!("failed: {}: {}", f.target, f.reason);
            }
            if !r.failures.is_empty() {
                anyhow::bail!(
                    "{} value(s) could not be re-sealed: keep PROVISIONER_MASTER_KEY_PREVIOUS until they are fixed",
                    r.failures.len()
                );
            }
            if r.skipped_busy > 0 {
                anyhow::bail!(
                    "{} user(s) were busy (another operation held them): run `provisioner reseal` again",
                    r.skipped_busy
                );
            }
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
        Command::Import {
            url,
            token,
            tenant,
            chunk,
            result,
            state,
            file,
        } => {
            let opts = provisioner::import::ImportOptions {
                url,
                token,
                tenant,
                input: file,
                result,
                state,
                chunk,
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            let s = provisioner::import::run(&opts).await?;
            println!(
                "{} rows: {} provisioned, {} failed, {} cancelled, {} skipped (see the result file)",
                s.rows, s.provisioned, s.failed, s.cancelled, s.invalid
            );
            if s.failed + s.invalid + s.cancelled > 0 {
                std::process::exit(2);
            }
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => config_check(&settings),
        Command::Config {
            command: ConfigCommand::Vars,
        } => Ok(()),
        Command::Healthcheck { url } => {
            let base = url.unwrap_or_else(|| healthcheck::local_base_url(&settings.listen));
            let (healthy, line) = healthcheck::check(&base).await;
            println!("{line}");
            std::process::exit(if healthy { 0 } else { 1 });
        }
        #[cfg(feature = "demo")]
        Command::Demo {
            listen,
            default_listen,
            data_dir,
            auto_app_key,
        } => {
            let listen = match listen {
                Some(addr) => provisioner::demo::Listen::Requested(addr),
                None => provisioner::demo::Listen::Default(default_listen),
            };
            provisioner::demo::run(listen, &data_dir, auto_app_key).await
        }
    }
}

/// `provisioner config check`: the effective settings (secrets redacted), unknown variables,
/// then the checks `serve` makes before it connects to the database.
fn config_check(settings: &Settings) -> anyhow::Result<()> {
    let layers = match std::env::var("PROVISIONER_CONFIG") {
        Ok(f) => format!("defaults, then the file PROVISIONER_CONFIG={f}, then"),
        Err(_) => "defaults, then".to_owned(),
    };
    println!("Effective configuration ({layers} PROVISIONER_* variables; secrets redacted):");
    for (var, value) in settings.effective()? {
        println!("  {var:<42} {}", value.as_deref().unwrap_or("(not set)"));
    }
    for var in Settings::unknown_env_vars() {
        println!("warning: {var} is not a setting of this service (typo?)");
    }
    startup::check_settings(settings).context("the configuration is invalid")?;
    println!(
        "configuration OK: master key(s), JWT verifier, upstream budget and listen addresses are valid (the database was not contacted)"
    );
    Ok(())
}
