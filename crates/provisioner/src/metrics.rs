//! Metrics: the `metrics` facade with the Prometheus exporter, served on a listener of its own
//! (`PROVISIONER_METRICS_LISTEN`, default `127.0.0.1:9464`), never on the API's: the labels
//! name tenants, which API callers must not learn.
//!
//! Recorded where they happen: HTTP requests (the API's access middleware), upstream calls
//! (the Clarifai client: outcomes, latency, retries, 429s, waits for a budget slot), recovery
//! and drift (the workers here). Read at scrape time: users per tenant and status (one grouped
//! query), the connection pool, and each tenant's upstream circuit breaker. Labels hold tenant
//! ids, statuses, routes, operations and lanes only: never a base URL, an upstream user id, an
//! external id or a secret.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock, PoisonError};

use actix_web::{App, HttpResponse, HttpServer, web};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use provisioner_clarifai::{BreakerState, ClarifaiUpstream};
use provisioner_core::service::{DriftCounts, Provisioner, RecoveryReport};
use provisioner_storage::SqlStore;

/// Latency buckets (seconds) of every `_seconds` histogram.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder (installed on first use; one per process, shared by every app a
/// test process builds).
fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics shows only what this one records");
        }
        // Histogram samples are folded into their buckets at each scrape, or here: without
        // this a service nobody scrapes (metrics off, or no Prometheus yet) keeps them all.
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            })
            .ok();
        describe();
        metrics::gauge!("provisioner_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!("provisioner_build_info", "The running version (always 1).");
    describe_counter!(
        "provisioner_http_requests_total",
        "API requests by route template, method and status."
    );
    describe_histogram!(
        "provisioner_http_request_duration_seconds",
        "API request latency by route template and method."
    );
    describe_counter!(
        "provisioner_upstream_requests_total",
        "Upstream (Clarifai) requests by operation and outcome (ok, or the error kind; busy: not sent, no budget slot in time)."
    );
    describe_histogram!(
        "provisioner_upstream_request_duration_seconds",
        "Upstream request latency by operation."
    );
    describe_counter!(
        "provisioner_upstream_retries_total",
        "Upstream attempts after the first, by operation."
    );
    describe_counter!(
        "provisioner_upstream_rate_limited_total",
        "Upstream answers 429, by operation."
    );
    describe_histogram!(
        "provisioner_upstream_slot_wait_seconds",
        "Time a request waited for a slot in its account's request budget, by lane."
    );
    describe_gauge!(
        "provisioner_upstream_breaker_open",
        "Whether the circuit breaker of the tenant's upstream account is open (1), half-open (0.5) or closed (0)."
    );
    describe_counter!(
        "provisioner_upstream_breaker_opened_total",
        "Times the breaker of the tenant's upstream account opened (tenants sharing an account show the same count)."
    );
    describe_gauge!("provisioner_users", "Users per tenant and status.");
    describe_gauge!(
        "provisioner_db_pool_connections",
        "Database pool connections by state (idle, in_use)."
    );
    describe_gauge!(
        "provisioner_db_pool_max_connections",
        "The most connections the pool opens."
    );
    describe_counter!("provisioner_recovery_passes_total", "Recovery passes run.");
    describe_counter!(
        "provisioner_recovery_completed_total",
        "Operations finished or undone by recovery."
    );
    describe_counter!(
        "provisioner_recovery_failed_total",
        "Recovery attempts that failed and will be retried with backoff."
    );
    describe_counter!(
        "provisioner_retired_keys_deleted_total",
        "Replaced keys deleted after their grace period."
    );
    describe_counter!(
        "provisioner_drift_checks_failed_total",
        "Periodic drift checks that could not complete."
    );
    describe_gauge!(
        "provisioner_drift",
        "Findings of the last periodic drift check per tenant and kind (no repair)."
    );
}

/// What the workers record and what a scrape reads.
pub struct Metrics {
    /// (tenant, status) series set at the last scrape, so one that emptied reads 0.
    user_series: Mutex<BTreeSet<(String, &'static str)>>,
    /// Tenants whose drift this replica has reported.
    drift_tenants: Mutex<BTreeSet<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        handle();
        Self {
            user_series: Mutex::default(),
            drift_tenants: Mutex::default(),
        }
    }
}

impl Metrics {
    /// Adds one recovery pass.
    pub fn record_recovery(&self, r: &RecoveryReport) {
        metrics::counter!("provisioner_recovery_passes_total").increment(1);
        metrics::counter!("provisioner_recovery_completed_total").increment(r.completed as u64);
        metrics::counter!("provisioner_recovery_failed_total").increment(r.failed as u64);
        metrics::counter!("provisioner_retired_keys_deleted_total")
            .increment(r.retired_keys_deleted as u64);
    }

    /// Records the last drift counts of a tenant.
    pub fn record_drift(&self, tenant: &str, c: DriftCounts) {
        self.drift_tenants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tenant.to_owned());
        set_drift(tenant, c);
    }

    /// Zeroes the drift this replica reported: another replica now runs the check and reports
    /// the current counts (so `max by (tenant, kind)` across replicas is the truth, and no
    /// stale count keeps an alert firing).
    pub fn clear_drift(&self) {
        let tenants = std::mem::take(
            &mut *self
                .drift_tenants
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for t in tenants {
            set_drift(&t, DriftCounts::default());
        }
    }

    /// Counts a drift check that could not complete.
    pub fn record_drift_failure(&self) {
        metrics::counter!("provisioner_drift_checks_failed_total").increment(1);
    }

    /// Reads what is read at scrape time, then renders the exposition.
    pub async fn render(
        &self,
        service: &Provisioner,
        store: &SqlStore,
        upstream: Option<&ClarifaiUpstream>,
    ) -> String {
        self.scrape_users(service).await;
        let (open, idle, max) = store.pool_stats();
        metrics::gauge!("provisioner_db_pool_connections", "state" => "idle").set(f64::from(idle));
        metrics::gauge!("provisioner_db_pool_connections", "state" => "in_use")
            .set(f64::from(open.saturating_sub(idle)));
        metrics::gauge!("provisioner_db_pool_max_connections").set(f64::from(max));
        if let Some(up) = upstream {
            scrape_breakers(service, up).await;
        }
        handle().render()
    }

    /// Users per tenant and status from one grouped query; series that emptied read 0.
    async fn scrape_users(&self, service: &Provisioner) {
        let Ok(rows) = service.all_user_counts().await else {
            tracing::warn!("metrics: could not count users");
            return;
        };
        let mut seen = BTreeSet::new();
        for (tenant, status, n) in rows {
            let key = (tenant.as_str().to_owned(), status.as_str());
            metrics::gauge!("provisioner_users", "tenant" => key.0.clone(), "status" => key.1)
                .set(n as f64);
            seen.insert(key);
        }
        let mut last = self
            .user_series
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (tenant, status) in last.difference(&seen) {
            metrics::gauge!("provisioner_users", "tenant" => tenant.clone(), "status" => *status)
                .set(0.0);
        }
        // Keep zeroed series until they reappear, so a scrape never loses a series it showed.
        last.extend(seen);
    }
}

/// The breaker of each tenant's upstream account (tenants on one account share it).
async fn scrape_breakers(service: &Provisioner, up: &ClarifaiUpstream) {
    let mut cursor: Option<String> = None;
    loop {
        let Ok(page) = service.list_tenants(cursor.as_deref(), 1000).await else {
            return;
        };
        for t in &page.items {
            let Some(b) = up.breaker_state_of(&t.base_url, t.upstream_user_id.as_str()) else {
                continue;
            };
            let v = match b.state {
                BreakerState::Open => 1.0,
                BreakerState::HalfOpen => 0.5,
                BreakerState::Closed => 0.0,
            };
            let tenant = t.id.as_str().to_owned();
            metrics::gauge!("provisioner_upstream_breaker_open", "tenant" => tenant.clone()).set(v);
            metrics::counter!("provisioner_upstream_breaker_opened_total", "tenant" => tenant)
                .absolute(b.times_opened);
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return,
        }
    }
}

/// Renders the exposition for one scrape.
pub type Render = std::sync::Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = String>>> + Send + Sync,
>;

/// The metrics listener: `GET /metrics` only.
pub fn server(listener: TcpListener, render: Render) -> std::io::Result<actix_web::dev::Server> {
    let server = HttpServer::new(move || {
        let render = render.clone();
        App::new().route(
            "/metrics",
            web::get().to(move || {
                let render = render.clone();
                async move {
                    HttpResponse::Ok()
                        .content_type("text/plain; version=0.0.4; charset=utf-8")
                        .insert_header(("Cache-Control", "no-store"))
                        .body(render().await)
                }
            }),
        )
    })
    .disable_signals()
    .workers(1)
    .shutdown_timeout(1)
    .listen(listener)?;
    Ok(server.run())
}

/// Sets a tenant's drift gauges.
fn set_drift(tenant: &str, c: DriftCounts) {
    for (kind, n) in [
        ("orphan_apps", c.orphan_apps),
        ("orphan_keys", c.orphan_keys),
        ("unmarked_keys", c.unmarked_keys),
        ("missing_apps", c.missing_apps),
        ("missing_keys", c.missing_keys),
        ("scope_drift", c.scope_drift),
    ] {
        metrics::gauge!("provisioner_drift", "tenant" => tenant.to_owned(), "kind" => kind)
            .set(n as f64);
    }
}
