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
use crate::startup::Application;
use crate::token::mint;

const SIM_USER: &str = "demo-user";
const SIM_PAT: &str = "demo-pat-0123456789";

/// Runs the demo until Ctrl-C. With `auto_app_key` the simulator mints a key with every new app
/// (as the portal does; off by default, since whether the API does is unconfirmed).
pub async fn run(listen: &str, data_dir: &Path, auto_app_key: bool) -> anyhow::Result<()> {
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
    let settings = Settings {
        listen: listen.to_owned(),
        database_url: format!("sqlite://{}/provisioner.db", data_dir.display()),
        master_key: Some(SecretString::from(MasterKey::generate().to_base64())),
        jwt_hs256_secret: Some(jwt_secret.clone()),
        ..Settings::default()
    };
    let app = Application::build(&settings).await?;
    let base = format!(
        "http://{}:{}",
        listen.rsplit_once(':').map_or("127.0.0.1", |(h, _)| h),
        app.port()
    );
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
    println!(
        "{}",
        banner(
            &base,
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
    format!(
        r#"
Provisioner demo is running.
  API          {base}   (OpenAPI: {base}/openapi.json)
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
  # a second tenant on the same Clarifai account (admin)
  curl -s -X POST "$PROV/v1/tenants" -H "Authorization: Bearer $ADMIN_TOKEN" -H 'content-type: application/json' -d '{{"id":"acme","display_name":"Acme Corp","upstream":{{"base_url":"{sim}","user_id":"{SIM_USER}","pat":"{SIM_PAT}"}},"app_defaults":{{"id_prefix":"acme-","default_workflow":"Empty","description":"Provisioned for {{external_id}}"}},"allowed_scopes":["Predict","Inputs:Get"],"default_scope_profile":"standard","scope_profiles":{{"standard":["Predict","Inputs:Get"]}}}}'

Ctrl-C stops it.
"#,
        data = data_dir.display()
    )
}
