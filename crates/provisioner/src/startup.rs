//! The composition root: the only place that names concrete storage and upstream types.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use provisioner_api::{ApiState, JwtVerifier};
use provisioner_clarifai::ClarifaiUpstream;
use provisioner_core::ports::{SystemClock, Upstream};
use provisioner_core::secret::AesGcmSealer;
use provisioner_core::service::Provisioner;
use provisioner_storage::SqlStore;
use tokio::sync::watch;

use crate::config::{Settings, redact_url};

/// A built, bound, not yet running service.
pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    service: Provisioner,
    recovery_interval: Duration,
    store: SqlStore,
}

impl Application {
    /// Connects and migrates the database, wires the ports, binds the listener.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let upstream = ClarifaiUpstream::from_config(settings.upstream())
            .map_err(|e| anyhow::anyhow!("building the upstream client: {e}"))?;
        Self::build_with_upstream(settings, Arc::new(upstream)).await
    }

    /// As [`Application::build`], with another upstream (tests use fakes).
    pub async fn build_with_upstream(
        settings: &Settings,
        upstream: Arc<dyn Upstream>,
    ) -> anyhow::Result<Self> {
        let master_key = settings.master_key()?;
        let verifier = JwtVerifier::new(&settings.auth_config()?)
            .map_err(|e| anyhow::anyhow!("JWT settings: {e}"))?;
        let store = SqlStore::connect(&settings.database_url)
            .await
            .with_context(|| format!("connecting to {}", redact_url(&settings.database_url)))?;
        store.migrate().await.context("applying migrations")?;
        let service = Provisioner::new(
            Arc::new(store.clone()),
            upstream,
            Arc::new(SystemClock),
            Arc::new(AesGcmSealer::new(&master_key)),
            settings.service(),
        );
        let listener = TcpListener::bind(&settings.listen)
            .with_context(|| format!("binding {}", settings.listen))?;
        let port = listener.local_addr()?.port();
        let state = ApiState {
            service: service.clone(),
            verifier: Arc::new(verifier),
        };
        let server = provisioner_api::server(listener, state, settings.http())?;
        tracing::info!(listen = %settings.listen, port, database = %redact_url(&settings.database_url), "provisioner ready");
        Ok(Self {
            port,
            server,
            service,
            recovery_interval: Duration::from_secs(settings.recovery_interval_secs),
            store,
        })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The service (the demo seeds a tenant through it).
    pub fn service(&self) -> &Provisioner {
        &self.service
    }

    /// Serves until SIGTERM/SIGINT (or the server handle stops it): stops accepting, lets
    /// in-flight requests finish within the shutdown timeout, then stops the recovery worker.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let worker = (!self.recovery_interval.is_zero()).then(|| {
            tokio::spawn(recovery_worker(
                self.service.clone(),
                self.recovery_interval,
                stop_rx,
            ))
        });
        let handle = self.server.handle();
        let signals = tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutdown requested: no new connections; finishing in-flight requests");
            handle.stop(true).await;
        });
        let served = self.server.await;
        signals.abort();
        let _ = stop_tx.send(true);
        if let Some(w) = worker {
            let _ = w.await;
        }
        self.store.close().await;
        tracing::info!("provisioner stopped");
        served.context("HTTP server failed")
    }
}

/// Finishes or undoes operations whose lease expired, deletes keys whose grace ended; runs a
/// pass every `interval` until told to stop (between passes, never in the middle of one).
async fn recovery_worker(
    service: Provisioner,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match service.run_recovery_pass(100).await {
            Ok(r) if r.examined > 0 => tracing::info!(
                recovery.examined = r.examined,
                recovery.completed = r.completed,
                recovery.failed = r.failed,
                recovery.retired_keys_deleted = r.retired_keys_deleted,
                "recovery pass"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error.message = %e, "recovery pass failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
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
