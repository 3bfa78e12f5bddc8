//! Prometheus text exposition of what operators watch: users per status (work recovery still
//! owes shows as `provisioning`/`rotating`/`deprovisioning`/`failed`), recovery passes and
//! their outcomes, drift found by the periodic check, and the upstream circuit breakers.
//! Hand-rendered (a handful of series; no secret is ever a label: tenants, statuses and
//! upstream account labels only).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use provisioner_clarifai::ClarifaiUpstream;
use provisioner_core::service::{DriftCounts, Provisioner, RecoveryReport};

/// Counters and gauges fed by the background workers.
#[derive(Default)]
pub struct Metrics {
    recovery_passes: AtomicU64,
    recovery_completed: AtomicU64,
    recovery_failed: AtomicU64,
    retired_keys_deleted: AtomicU64,
    drift_checks_failed: AtomicU64,
    drift: Mutex<BTreeMap<String, DriftCounts>>,
}

impl Metrics {
    /// Adds one recovery pass.
    pub fn record_recovery(&self, r: &RecoveryReport) {
        self.recovery_passes.fetch_add(1, Ordering::Relaxed);
        self.recovery_completed
            .fetch_add(r.completed as u64, Ordering::Relaxed);
        self.recovery_failed
            .fetch_add(r.failed as u64, Ordering::Relaxed);
        self.retired_keys_deleted
            .fetch_add(r.retired_keys_deleted as u64, Ordering::Relaxed);
    }

    /// Records the last drift counts of a tenant.
    pub fn record_drift(&self, tenant: &str, counts: DriftCounts) {
        self.drift
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(tenant.to_owned(), counts);
    }

    /// Counts a drift check that could not complete.
    pub fn record_drift_failure(&self) {
        self.drift_checks_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition: worker counters plus users per tenant and status read from the store.
    pub async fn render(
        &self,
        service: &Provisioner,
        upstream: Option<&ClarifaiUpstream>,
    ) -> String {
        let mut out = String::new();
        counter(
            &mut out,
            "provisioner_recovery_passes_total",
            "Recovery passes run.",
            self.recovery_passes.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "provisioner_recovery_completed_total",
            "Operations finished or undone by recovery.",
            self.recovery_completed.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "provisioner_recovery_failed_total",
            "Recovery attempts that failed and will be retried with backoff.",
            self.recovery_failed.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "provisioner_retired_keys_deleted_total",
            "Replaced keys deleted after their grace period.",
            self.retired_keys_deleted.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "provisioner_drift_checks_failed_total",
            "Periodic drift checks that could not complete.",
            self.drift_checks_failed.load(Ordering::Relaxed),
        );

        let _ = writeln!(
            out,
            "# HELP provisioner_users Users per tenant and status.\n# TYPE provisioner_users gauge"
        );
        let mut cursor: Option<String> = None;
        loop {
            let Ok(page) = service.list_tenants(cursor.as_deref(), 1000).await else {
                break;
            };
            for t in &page.items {
                if let Ok(counts) = service.user_counts(&t.id).await {
                    for (status, n) in counts {
                        let _ = writeln!(
                            out,
                            "provisioner_users{{tenant=\"{}\",status=\"{}\"}} {n}",
                            esc(t.id.as_str()),
                            status
                        );
                    }
                }
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }

        let _ = writeln!(
            out,
            "# HELP provisioner_drift Findings of the last periodic drift check (no repair).\n# TYPE provisioner_drift gauge"
        );
        let drift = self
            .drift
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for (tenant, c) in drift {
            for (kind, n) in [
                ("orphan_apps", c.orphan_apps),
                ("orphan_keys", c.orphan_keys),
                ("unmarked_keys", c.unmarked_keys),
                ("missing_apps", c.missing_apps),
                ("missing_keys", c.missing_keys),
                ("scope_drift", c.scope_drift),
            ] {
                let _ = writeln!(
                    out,
                    "provisioner_drift{{tenant=\"{}\",kind=\"{kind}\"}} {n}",
                    esc(&tenant)
                );
            }
        }

        if let Some(up) = upstream {
            let _ = writeln!(
                out,
                "# HELP provisioner_upstream_breaker_open Whether the upstream account's circuit breaker is open (1) or half-open (0.5).\n# TYPE provisioner_upstream_breaker_open gauge"
            );
            let _ = writeln!(
                out,
                "# HELP provisioner_upstream_breaker_opened_total Times the account's breaker opened.\n# TYPE provisioner_upstream_breaker_opened_total counter"
            );
            for b in up.breaker_states() {
                let v = match b.state {
                    provisioner_clarifai::BreakerState::Open => "1",
                    provisioner_clarifai::BreakerState::HalfOpen => "0.5",
                    provisioner_clarifai::BreakerState::Closed => "0",
                };
                let _ = writeln!(
                    out,
                    "provisioner_upstream_breaker_open{{account=\"{}\"}} {v}",
                    esc(&b.account)
                );
                let _ = writeln!(
                    out,
                    "provisioner_upstream_breaker_opened_total{{account=\"{}\"}} {}",
                    esc(&b.account),
                    b.times_opened
                );
            }
        }
        out
    }
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
    );
}

/// Escapes a label value (backslash, quote, newline).
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
