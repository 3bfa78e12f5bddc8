//! `provisioner demo`: everything on one machine, no credentials — SQLite under `./data/demo`
//! (wiped at each start, like the in-memory simulator it points at), a Clarifai simulator in
//! process, a demo tenant, and tokens printed with a curl walk-through.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use clarifai_sim::{Account, SimConfig, Simulator};
use provisioner_core::ids::{ProfileName, TenantId, UpstreamUserId};
use provisioner_core::model::Actor;
use provisioner_core::scope::ScopeSet;
use provisioner_core::secret::{MasterKey, Pat};
use provisioner_core::service::NewTenant;
use secrecy::SecretString;

use crate::config::Settings;
use crate::healthcheck::local_base_url;
use crate::startup::Application;
use crate::token::mint;

/// The demo's address when none is asked for.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Where the demo listens.
#[derive(Clone, Debug)]
pub enum Listen {
    /// Asked for (`--listen` or `PROVISIONER_LISTEN`): when it is taken, the demo fails.
    Requested(String),
    /// The default ([`DEFAULT_LISTEN`]): when it is taken, the demo listens on a free port of
    /// the same host instead, and says so.
    Default(String),
}

const SIM_USER: &str = "demo-user";
const SIM_PAT: &str = "demo-pat-0123456789";

/// Runs the demo until Ctrl-C. With `auto_app_key` the simulator mints a key with every new app
/// (as the portal does; off by default, since whether the API does is unconfirmed).
pub async fn run(listen: Listen, data_dir: &Path, auto_app_key: bool) -> anyhow::Result<()> {
    if data_dir.exists() {
        std::fs::remove_dir_all(data_dir)
            .with_context(|| format!("clearing {}", data_dir.display()))?;
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let sim = Simulator::start(SimConfig {
        accounts: vec![Account::new(SIM_USER, SIM_PAT)],
        rate_limit_per_sec: Some(15),
        auto_app_key,
        ..SimConfig::default()
    })
    .await
    .context("starting the Clarifai simulator")?;

    let jwt_secret = SecretString::from(MasterKey::generate().to_base64());
    let (Listen::Requested(addr) | Listen::Default(addr)) = &listen;
    let settings = Settings {
        listen: addr.clone(),
        // A free port on loopback: a demo never fails over a running service's 9464, and
        // metrics (which name tenants) stay off whatever address the API listens on.
        metrics_listen: "127.0.0.1:0".into(),
        database_url: format!("sqlite://{}/provisioner.db", data_dir.display()),
        master_key: Some(SecretString::from(MasterKey::generate().to_base64())),
        jwt_hs256_secret: Some(jwt_secret.clone()),
        ..Settings::default()
    };
    let mut moved = None;
    let app = match (Application::build(&settings).await, &listen) {
        (Ok(app), _) => app,
        (Err(e), Listen::Default(addr)) if address_in_use(&e) => {
            // Only the listener failed: the database is ready, the retry binds a free port.
            let settings = Settings {
                listen: with_port(addr, 0),
                ..settings.clone()
            };
            moved = Some(addr.clone());
            Application::build(&settings).await?
        }
        (Err(e), Listen::Requested(addr)) if address_in_use(&e) => {
            return Err(e.context(format!(
                "{addr} is in use (set by --listen or PROVISIONER_LISTEN): choose another address, or leave both unset for a free port"
            )));
        }
        (Err(e), _) => return Err(e),
    };
    let base = local_base_url(&with_port(addr, app.port()));
    let metrics = app
        .metrics_port()
        .map(|p| format!("{}/metrics", local_base_url(&with_port(addr, p))));
    seed_tenant(&app, &sim.base_url()).await?;

    let admin = mint(
        &jwt_secret,
        "provisioner:admin",
        None,
        8 * 3600,
        "demo-admin",
        None,
        None,
    )?;
    let tenant = mint(
        &jwt_secret,
        "provisioner:write provisioner:secrets provisioner:audit",
        Some("demo"),
        8 * 3600,
        "demo-onboarding",
        None,
        None,
    )?;
    if let Some(taken) = &moved {
        println!(
            "\n{taken} (the demo's default address) is in use: the demo listens on {base} instead.\nSet the address with --listen or PROVISIONER_LISTEN."
        );
    }
    println!(
        "{}",
        banner(
            &base,
            metrics.as_deref(),
            &sim.base_url(),
            data_dir,
            &admin,
            &tenant,
            auto_app_key
        )
    );
    let result = app.run_until_stopped().await;
    sim.stop().await;
    result
}

/// `addr` (`host:port`) with another port.
fn with_port(addr: &str, port: u16) -> String {
    let host = addr.rsplit_once(':').map_or("127.0.0.1", |(h, _)| h);
    format!("{host}:{port}")
}

/// Whether building failed because an address was taken.
fn address_in_use(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse)
    })
}

async fn seed_tenant(app: &Application, sim_url: &str) -> anyhow::Result<()> {
    let p = |s: &str| ProfileName::parse(s).map_err(|e| anyhow::anyhow!("{e}"));
    let s = |v: &[&str]| ScopeSet::parse(v).map_err(|e| anyhow::anyhow!("{e}"));
    let mut profiles = BTreeMap::new();
    profiles.insert(p("standard")?, s(&["Predict", "Inputs:Get"])?);
    profiles.insert(
        p("annotator")?,
        s(&["Inputs:Get", "Inputs:Add", "Concepts:Get"])?,
    );
    let new = NewTenant {
        id: TenantId::parse("demo").map_err(|e| anyhow::anyhow!("{e}"))?,
        display_name: "Demo Corp".into(),
        base_url: sim_url.to_owned(),
        upstream_user_id: UpstreamUserId::parse(SIM_USER).map_err(|e| anyhow::anyhow!("{e}"))?,
        pat: Pat::parse(SIM_PAT).map_err(|e| anyhow::anyhow!("{e}"))?,
        app_defaults: None,
        rate_limit: None,
        allowed_scopes: s(&["Predict", "Inputs:Get", "Inputs:Add", "Concepts:Get"])?,
        default_scope_profile: Some(p("standard")?),
        scope_profiles: profiles,
        auto_key_check: None,
    };
    app.service()
        .create_tenant(&Actor::system("demo"), new)
        .await
        .map_err(|e| anyhow::anyhow!("creating the demo tenant: {e}"))?;
    Ok(())
}

fn banner(
    base: &str,
    metrics: Option<&str>,
    sim: &str,
    data_dir: &Path,
    admin: &str,
    tenant: &str,
    auto_app_key: bool,
) -> String {
    let minting = if auto_app_key {
        "mints a key (every scope, no marker) with each new app, as the Clarifai portal does;\n               the service deletes it before the user is active (tenant auto_key_check: always)"
    } else {
        "mints no key with a new app (the default; `provisioner demo --auto-app-key` to switch,\n               or PUT /_sim/auto_app_key {\"enabled\": true} while it runs)"
    };
    let metrics = metrics.unwrap_or("off");
    format!(
        r#"
Provisioner demo is running.
  API          {base}   (OpenAPI: {base}/openapi.json; --listen or PROVISIONER_LISTEN sets it)
  Docs         {base}/docs   (the API reference; open it in a browser)
  Metrics      {metrics}
  Simulator    {sim}   (Clarifai account "{SIM_USER}", PAT "{SIM_PAT}")
  New apps     the simulator {minting}
  Data         {data}   (wiped at each start)
  Tenant       "demo" (profiles: standard = Predict Inputs:Get; annotator = Inputs:Get Inputs:Add Concepts:Get)

Tokens (valid 8 h):
export PROV={base}
export ADMIN_TOKEN={admin}
export TENANT_TOKEN={tenant}

Try it:
  # provision an end user: one app + one key; the secret is shown once (201)
  curl -s -X PUT "$PROV/v1/tenants/demo/users/alice@example.com" -H "Authorization: Bearer $TENANT_TOKEN" -H 'content-type: application/json' -d '{{"scope_profile":"standard"}}'
  # the same call again: 200, nothing created, no secret
  curl -s -X PUT "$PROV/v1/tenants/demo/users/alice@example.com" -H "Authorization: Bearer $TENANT_TOKEN" -H 'content-type: application/json' -d '{{"scope_profile":"standard"}}'
  # rotate the key (old key deleted upstream at once)
  curl -s -X POST "$PROV/v1/tenants/demo/users/alice@example.com/rotate-key" -H "Authorization: Bearer $TENANT_TOKEN" -H 'content-type: application/json' -d '{{"grace_seconds":0}}'
  # deprovision: key and app deleted upstream
  curl -s -X DELETE "$PROV/v1/tenants/demo/users/alice@example.com" -H "Authorization: Bearer $TENANT_TOKEN"
  # what the simulator holds now
  curl -s {sim}/_sim/state
  # the audit trail
  curl -s "$PROV/v1/audit-events?tenant_id=demo" -H "Authorization: Bearer $TENANT_TOKEN"
  # a second tenant on the same Clarifai account (admin); only id, upstream and allowed_scopes
  # are required (display name, app defaults and rate limit are derived; without
  # profiles, a PUT naming no scopes gets all of allowed_scopes)
  curl -s -X POST "$PROV/v1/tenants" -H "Authorization: Bearer $ADMIN_TOKEN" -H 'content-type: application/json' -d '{{"id":"acme","upstream":{{"base_url":"{sim}","user_id":"{SIM_USER}","pat":"{SIM_PAT}"}},"allowed_scopes":["Predict","Inputs:Get"]}}'

Ctrl-C stops it.
"#,
        data = data_dir.display()
    )
}
