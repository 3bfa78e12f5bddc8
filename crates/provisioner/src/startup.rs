//! The composition root: the only place that names concrete storage and upstream types.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use provisioner_api::{ApiState, JwtVerifier};
use provisioner_clarifai::ClarifaiUpstream;
use provisioner_core::model::Actor;
use provisioner_core::model::Page;
use provisioner_core::ports::{SystemClock, Upstream};
use provisioner_core::service::{Provisioner, ResealReport};
use provisioner_storage::{Backend, SqlStore};
use tokio::sync::watch;

use crate::config::{Settings, redact_url};
use crate::metrics::Metrics;

/// A built, bound, not yet running service.
pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    metrics_port: Option<u16>,
    metrics_server: Option<actix_web::dev::Server>,
    service: Provisioner,
    metrics: Arc<Metrics>,
    recovery_interval: Duration,
    job_concurrency: u32,
    scim_concurrency: u32,
    webhook_concurrency: u32,
    key_age_interval: Duration,
    deliverer: provisioner_core::service::WebhookDeliverer,
    drift_interval: Duration,
    shutdown_timeout: Duration,
    store: SqlStore,
    /// Refreshes the keys of `PROVISIONER_JWT_JWKS_URL` (aborted at shutdown).
    jwks_refresher: Option<tokio::task::JoinHandle<()>>,
}

impl Application {
    /// Connects and migrates the database, wires the ports, binds the listener.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        check_settings(settings)?;
        let store = connect(settings).await?;
        let mut upstream = ClarifaiUpstream::from_config(settings.upstream())
            .map_err(|e| anyhow::anyhow!("building the upstream client: {e}"))?
            .with_breaker(settings.breaker());
        let postgres = store.backend() == Backend::Postgres;
        let shared = settings.shared_budget(postgres)?;
        if postgres && !shared {
            tracing::warn!(
                "PROVISIONER_UPSTREAM_BUDGET=local on PostgreSQL: each replica spends the whole upstream limit on its own; several replicas together will exceed it"
            );
        }
        if shared {
            upstream = upstream.with_budget(Arc::new(store.clone()));
        }
        tracing::info!(
            budget = if shared { "database" } else { "local" },
            "upstream request budget"
        );
        Self::assemble(settings, store, Arc::new(upstream.clone()), Some(upstream)).await
    }

    /// As [`Application::build`], with another upstream (tests use fakes).
    pub async fn build_with_upstream(
        settings: &Settings,
        upstream: Arc<dyn Upstream>,
    ) -> anyhow::Result<Self> {
        Self::assemble(settings, connect(settings).await?, upstream, None).await
    }

    async fn assemble(
        settings: &Settings,
        store: SqlStore,
        upstream: Arc<dyn Upstream>,
        clarifai: Option<ClarifaiUpstream>,
    ) -> anyhow::Result<Self> {
        let sealer = settings.sealer()?;
        let verifier = JwtVerifier::new(&settings.auth_config()?)
            .map_err(|e| anyhow::anyhow!("JWT settings: {e}"))?;
        if (settings.jwt_public_key_file.is_some()
            || settings.jwt_jwks_file.is_some()
            || settings.jwt_jwks_url.is_some())
            && settings.jwt_audience.is_none()
        {
            tracing::warn!(
                "a public key or JWKS verifies tokens but PROVISIONER_JWT_AUDIENCE is not set: any token your identity provider signs for another application is accepted too"
            );
        }
        let sealer: Arc<dyn provisioner_core::secret::Sealer> = Arc::new(sealer);
        let service = Provisioner::new(
            Arc::new(store.clone()),
            upstream,
            Arc::new(SystemClock),
            sealer.clone(),
            settings.service(),
        )
        .allow_http_webhooks(settings.webhook_allow_http)
        .allow_private_webhook_targets(settings.webhook_allow_private_targets);
        let sender =
            provisioner_webhooks::HttpWebhookSender::new(provisioner_webhooks::SenderConfig {
                timeout: Duration::from_secs(settings.webhook_timeout_secs.max(1)),
                allow_private_targets: settings.webhook_allow_private_targets,
                allow_http: settings.webhook_allow_http,
                ..provisioner_webhooks::SenderConfig::default()
            })
            .map_err(|e| anyhow::anyhow!("the webhook client: {e}"))?;
        let deliverer = provisioner_core::service::WebhookDeliverer::new(
            Arc::new(store.clone()),
            Arc::new(sender),
            sealer,
            Arc::new(SystemClock),
            provisioner_core::service::DeliveryConfig {
                claim_ttl: Duration::from_secs(settings.webhook_timeout_secs.max(1) * 2 + 5),
                ..Default::default()
            },
        );
        upgrade_sealing(&service).await?;
        if settings.previous_master_key()?.is_some() {
            tracing::info!(
                "a previous master key is configured (rotation in progress): run `provisioner reseal`, then remove PROVISIONER_MASTER_KEY_PREVIOUS and restart"
            );
        }
        let metrics = Arc::new(Metrics::default());
        let listener = TcpListener::bind(&settings.listen)
            .with_context(|| format!("binding {}", settings.listen))?;
        let port = listener.local_addr()?.port();
        let (metrics_port, metrics_server) = match settings.metrics_listen.trim() {
            "off" | "" => (None, None),
            addr => {
                let listener = TcpListener::bind(addr).with_context(|| {
                    format!("binding the metrics listener {addr} (PROVISIONER_METRICS_LISTEN; `off` disables it)")
                })?;
                let metrics_port = listener.local_addr()?.port();
                let render: crate::metrics::Render = {
                    let (metrics, service, store, clarifai) = (
                        metrics.clone(),
                        service.clone(),
                        store.clone(),
                        clarifai.map(Arc::new),
                    );
                    Arc::new(move || {
                        let (metrics, service, store, clarifai) = (
                            metrics.clone(),
                            service.clone(),
                            store.clone(),
                            clarifai.clone(),
                        );
                        Box::pin(async move {
                            metrics.render(&service, &store, clarifai.as_deref()).await
                        })
                    })
                };
                (
                    Some(metrics_port),
                    Some(crate::metrics::server(listener, render)?),
                )
            }
        };
        let jwks_refresher = match verifier.remote_jwks() {
            Some(remote) => Some(crate::jwks::start(remote.clone()).await),
            None => None,
        };
        let state = ApiState {
            service: service.clone(),
            verifier: Arc::new(verifier),
        };
        let server = provisioner_api::server(listener, state, settings.http())?;
        tracing::info!(listen = %settings.listen, port, metrics_port, database = %redact_url(&settings.database_url), "provisioner ready");
        Ok(Self {
            port,
            server,
            metrics_port,
            metrics_server,
            service,
            metrics,
            recovery_interval: Duration::from_secs(settings.recovery_interval_secs),
            job_concurrency: settings.job_concurrency,
            scim_concurrency: settings.scim_concurrency,
            webhook_concurrency: settings.webhook_concurrency,
            key_age_interval: Duration::from_secs(settings.key_age_interval_secs),
            deliverer,
            drift_interval: Duration::from_secs(settings.drift_check_interval_secs),
            shutdown_timeout: Duration::from_secs(settings.shutdown_timeout_secs.max(1)),
            store,
            jwks_refresher,
        })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The bound port of the metrics listener, if it is on.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_port
    }

    /// A handle that stops the server (and so [`Application::run_until_stopped`]) like a
    /// signal would.
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// The service (the demo seeds a tenant through it).
    pub fn service(&self) -> &Provisioner {
        &self.service
    }

    /// Serves until SIGTERM/SIGINT (or the server handle stops it): stops accepting, lets
    /// in-flight requests finish within the shutdown timeout, then stops the workers (between
    /// passes; a request's lease is released when it finishes, and recovery resumes anything a
    /// crash left behind).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut workers = Vec::new();
        if !self.recovery_interval.is_zero() {
            workers.push(tokio::spawn(recovery_worker(
                self.service.clone(),
                self.metrics.clone(),
                self.recovery_interval,
                stop_rx.clone(),
            )));
        }
        if self.job_concurrency > 0 {
            let (service, concurrency, stop) =
                (self.service.clone(), self.job_concurrency, stop_rx.clone());
            workers.push(tokio::spawn(async move {
                service.run_job_worker(concurrency, stop).await;
            }));
        }
        if self.scim_concurrency > 0 {
            let (service, concurrency, stop) =
                (self.service.clone(), self.scim_concurrency, stop_rx.clone());
            workers.push(tokio::spawn(async move {
                service.run_scim_worker(concurrency, stop).await;
            }));
        }
        if !self.key_age_interval.is_zero() {
            workers.push(tokio::spawn(key_age_worker(
                self.service.clone(),
                self.store.clone(),
                self.key_age_interval,
                stop_rx.clone(),
            )));
        }
        if self.webhook_concurrency > 0 {
            let (deliverer, concurrency, stop) = (
                self.deliverer.clone(),
                self.webhook_concurrency,
                stop_rx.clone(),
            );
            workers.push(tokio::spawn(async move {
                deliverer.run(concurrency, stop).await;
            }));
        }
        if !self.drift_interval.is_zero() {
            workers.push(tokio::spawn(drift_worker(
                self.service.clone(),
                self.store.clone(),
                self.metrics.clone(),
                self.drift_interval,
                stop_rx,
            )));
        }
        let metrics_server = self.metrics_server.map(|m| {
            let handle = m.handle();
            (tokio::spawn(m), handle)
        });
        let handle = self.server.handle();
        let signals = tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutdown requested: no new connections; finishing in-flight requests");
            handle.stop(true).await;
        });
        let served = self.server.await;
        signals.abort();
        if let Some(refresher) = &self.jwks_refresher {
            refresher.abort();
        }
        if let Some((task, handle)) = metrics_server {
            handle.stop(false).await;
            let _ = task.await;
        }
        let _ = stop_tx.send(true);
        // Workers stop between passes; one stuck in a pass is not waited for past the
        // shutdown timeout (its leases expire, and recovery resumes its work).
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        for w in workers {
            if tokio::time::timeout_at(deadline, w).await.is_err() {
                tracing::warn!("a background worker did not stop in time; leaving it");
                break;
            }
        }
        match self.service.release_own_job_items().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                items = n,
                "released the bulk job items cut off by the shutdown"
            ),
            Err(e) => {
                tracing::warn!(error.message = %e, "could not release job items; their leases expire on their own")
            }
        }
        match self.service.release_own_leases().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                leases = n,
                "released the leases of operations cut off by the shutdown"
            ),
            Err(e) => {
                tracing::warn!(error.message = %e, "could not release leases; they expire on their own")
            }
        }
        self.store.close().await;
        tracing::info!("provisioner stopped");
        served.context("HTTP server failed")
    }
}

/// The settings that can be wrong, checked before `serve` touches the database (and by
/// `provisioner config check`): the master keys, the JWT verifier (an HS256 secret of at least
/// 32 bytes, readable key files), the upstream budget setting, and the listen addresses.
pub fn check_settings(settings: &Settings) -> anyhow::Result<()> {
    settings.sealer()?;
    JwtVerifier::new(&settings.auth_config()?).map_err(|e| anyhow::anyhow!("JWT settings: {e}"))?;
    settings.shared_budget(false)?;
    check_address("PROVISIONER_LISTEN", &settings.listen)?;
    match settings.metrics_listen.trim() {
        "off" | "" => {}
        addr if addr == settings.listen.trim() && !addr.ends_with(":0") => anyhow::bail!(
            "PROVISIONER_METRICS_LISTEN {addr:?} is the API's address (PROVISIONER_LISTEN): metrics need a listener of their own"
        ),
        addr => check_address("PROVISIONER_METRICS_LISTEN", addr)?,
    }
    if !matches!(
        settings.log_format.to_ascii_lowercase().as_str(),
        "text" | "json"
    ) {
        anyhow::bail!(
            "PROVISIONER_LOG_FORMAT {:?} is neither `text` nor `json`",
            settings.log_format
        );
    }
    tracing_subscriber::EnvFilter::try_new(&settings.log).map_err(|e| {
        anyhow::anyhow!(
            "PROVISIONER_LOG {:?} is not a log filter: {e}",
            settings.log
        )
    })?;
    if let Some(endpoint) = settings.otlp_endpoint() {
        if !cfg!(feature = "otlp") {
            anyhow::bail!(
                "PROVISIONER_OTLP_ENDPOINT is set, but this build has no OTLP exporter: build with `--features otlp`, or unset it"
            );
        }
        crate::telemetry::otlp_traces_url(endpoint)?;
    }
    Ok(())
}

/// An address to listen on must be `host:port` (an IP address or a name that resolves).
fn check_address(var: &str, addr: &str) -> anyhow::Result<()> {
    use std::net::ToSocketAddrs;
    let resolved = addr
        .to_socket_addrs()
        .with_context(|| format!("{var} {addr:?} is not an address to listen on (host:port)"))?;
    if resolved.count() == 0 {
        anyhow::bail!("{var} {addr:?} resolves to no address");
    }
    Ok(())
}

/// Connects to the database and applies the migrations.
async fn connect(settings: &Settings) -> anyhow::Result<SqlStore> {
    let store = SqlStore::connect(&settings.database_url)
        .await
        .with_context(|| format!("connecting to {}", redact_url(&settings.database_url)))?;
    store.migrate().await.context("applying migrations")?;
    Ok(store)
}

/// `provisioner reseal`: connects and migrates the database, then re-seals every tenant PAT and
/// user key under the current master key (opening each under the current or the previous
/// key). Makes no upstream call; run it while `serve` is stopped, or while every instance runs
/// with both keys (users an instance is working on are skipped and counted).
pub async fn reseal(settings: &Settings) -> anyhow::Result<ResealReport> {
    let sealer = settings.sealer()?;
    if !sealer.has_previous() {
        tracing::warn!(
            "PROVISIONER_MASTER_KEY_PREVIOUS is not set: values open only under the current key, and are re-sealed under it"
        );
    }
    let upstream = ClarifaiUpstream::from_config(settings.upstream())
        .map_err(|e| anyhow::anyhow!("building the upstream client: {e}"))?;
    let store = SqlStore::connect(&settings.database_url)
        .await
        .with_context(|| format!("connecting to {}", redact_url(&settings.database_url)))?;
    store.migrate().await.context("applying migrations")?;
    let service = Provisioner::new(
        Arc::new(store.clone()),
        Arc::new(upstream),
        Arc::new(SystemClock),
        Arc::new(sealer),
        settings.service(),
    );
    let report = service.reseal(&Actor::system("reseal")).await;
    store.close().await;
    Ok(report?)
}

/// Migrates values sealed before PATs were bound to their base URL and upstream user and keys
/// to their slot, once per database (recorded; later start-ups skip it), before the listener
/// opens: the request path never opens a value under the legacy binding.
async fn upgrade_sealing(service: &Provisioner) -> anyhow::Result<()> {
    let Some(report) = service
        .upgrade_sealing(&Actor::system("upgrade"))
        .await
        .context("upgrading sealed values (the same as `provisioner reseal`)")?
    else {
        return Ok(());
    };
    tracing::info!(
        reseal.tenants = report.tenants,
        reseal.users = report.users,
        reseal.keys = report.keys,
        "sealed values bound to their base URL, upstream user and key slot"
    );
    for f in &report.failures {
        tracing::warn!(reseal.target = %f.target, reseal.reason = %f.reason, "a sealed value could not be upgraded");
    }
    if report.skipped_busy > 0 {
        tracing::warn!(
            reseal.skipped_busy = report.skipped_busy,
            "users busy during the sealing upgrade; it runs again at the next start, or run `provisioner reseal`"
        );
    }
    Ok(())
}

/// Finishes or undoes operations whose lease expired, deletes keys whose grace ended; runs a
/// pass every `interval` until told to stop (between passes, never in the middle of one).
async fn recovery_worker(
    service: Provisioner,
    metrics: Arc<Metrics>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match service.run_recovery_pass(100).await {
            Ok(r) => {
                metrics.record_recovery(&r);
                if r.examined > 0 {
                    tracing::info!(
                        recovery.examined = r.examined,
                        recovery.completed = r.completed,
                        recovery.failed = r.failed,
                        recovery.retired_keys_deleted = r.retired_keys_deleted,
                        "recovery pass"
                    );
                }
            }
            Err(e) => tracing::warn!(error.message = %e, "recovery pass failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Every `interval`, compares each active tenant's store with its upstream account and records
/// the counts of findings (never repairs: drift is reported, not silently fixed).
/// The name of the drift check's claim: one replica at a time runs it.
const DRIFT_CLAIM: &str = "drift_check";

/// Key-age policies: one replica at a time (the claim row `key-age`) rotates the keys past
/// their profile's maximum age, every `interval`.
async fn key_age_worker(
    service: Provisioner,
    store: SqlStore,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let holder = uuid::Uuid::new_v4().to_string();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        match store.claim_periodic("key-age", &holder, interval * 2).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error.message = %e, "key-age policy: could not claim the pass");
                continue;
            }
        }
        match service.run_key_age_pass(500).await {
            Ok(r) if r.due > 0 => tracing::info!(
                key_age.due = r.due,
                key_age.rotated = r.rotated,
                key_age.failed = r.failed,
                "key-age policy pass"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error.message = %e, "key-age policy pass failed"),
        }
    }
}

async fn drift_worker(
    service: Provisioner,
    store: SqlStore,
    metrics: Arc<Metrics>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    // One replica at a time checks (each check lists every tenant's apps and keys upstream,
    // which all replicas would otherwise repeat against the same accounts): the claim is held
    // for an interval and renewed after each tenant; a replica that dies lets it lapse.
    let holder = uuid::Uuid::new_v4().to_string();
    // `Some(held)`, or `None` when the database could not say (a failed check, not a move:
    // the counts shown stay as they are).
    let claim = |store: SqlStore, holder: String, metrics: Arc<Metrics>| async move {
        match store.claim_periodic(DRIFT_CLAIM, &holder, interval).await {
            Ok(held) => Some(held),
            Err(e) => {
                tracing::warn!(error.message = %e, "drift check: could not claim the check");
                metrics.record_drift_failure();
                None
            }
        }
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        match claim(store.clone(), holder.clone(), metrics.clone()).await {
            Some(true) => {}
            Some(false) => {
                tracing::debug!("drift check: another replica holds the check");
                metrics.clear_drift();
                continue;
            }
            None => continue,
        }
        let mut cursor: Option<String> = None;
        'pass: loop {
            let page: Page<_> = match service.list_tenants(cursor.as_deref(), 100).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error.message = %e, "drift check: listing tenants failed");
                    metrics.record_drift_failure();
                    break;
                }
            };
            for t in &page.items {
                if *stop.borrow() {
                    return;
                }
                match service.drift_counts(&t.id).await {
                    Ok(c) => {
                        if c.total() > 0 {
                            tracing::warn!(tenant.id = %t.id, drift.orphan_apps = c.orphan_apps, drift.orphan_keys = c.orphan_keys,
                                drift.unmarked_keys = c.unmarked_keys, drift.missing_apps = c.missing_apps, drift.missing_keys = c.missing_keys,
                                drift.scope_drift = c.scope_drift, "drift found (not repaired; POST .../reconcile to repair)");
                        }
                        metrics.record_drift(t.id.as_str(), c);
                    }
                    Err(e) => {
                        tracing::warn!(tenant.id = %t.id, error.message = %e, "drift check failed");
                        metrics.record_drift_failure();
                    }
                }
                match claim(store.clone(), holder.clone(), metrics.clone()).await {
                    Some(true) => {}
                    Some(false) => {
                        tracing::info!(
                            "drift check: the claim moved to another replica; stopping this pass"
                        );
                        metrics.clear_drift();
                        break 'pass;
                    }
                    None => break 'pass,
                }
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
