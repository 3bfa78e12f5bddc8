//! The fault matrix: 200 users provisioned by 16 concurrent onboarding clients while the
//! simulator injects 40 % mixed faults (500, HTML 503, 429 with and without `Retry-After`,
//! hangs past the client's per-attempt timeout, commit-then-drop). The clients retry `503` and
//! connection errors as any onboarding system would. At the end every user is `active` with
//! exactly one app and one key upstream (the recorded key, and the one given to the caller when
//! it got a 201), no row has work pending, and a reconcile report (without repair) finds
//! nothing: the service itself ends clean. Recovery runs as in `serve`; the circuit breaker has
//! its defaults. Reconcile is tried once under the faults (503 or a clean report), then with the
//! faults cleared (see below why).
//!
//! The seed is printed; set `PROVISIONER_TEST_FAULT_SEED` to replay a run's fault sequence
//! (which request draws which fault still depends on scheduling).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clarifai_sim::Faults;
use provisioner::config::Settings;
use provisioner_core::ids::{ExternalId, TenantId};
use provisioner_core::model::{Step, UserStatus};
use provisioner_core::ports::UserStore;
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::helpers::{SIM_USER, TestApp, enc};

crate::on_both_backends!(settings = super::fault_matrix_settings; fault_matrix_ends_clean);

const USERS: usize = 200;
const CLIENTS: usize = 16;
const FAULT_RATE: f64 = 0.4;
const DEFAULT_SEED: u64 = 0x0004_fa17_5eed;
/// The service's per-attempt upstream timeout (seconds); hangs last a little longer.
const UPSTREAM_TIMEOUT_SECS: u64 = 1;
const HANG_MS: u64 = UPSTREAM_TIMEOUT_SECS * 1000 + 200;
/// Attempts one client makes for one user before the test gives up on it.
const MAX_CLIENT_ATTEMPTS: u32 = 400;
/// The whole provisioning phase must end within this.
const PHASE_LIMIT: Duration = Duration::from_secs(120);
/// How long the service may take to settle (recovery's late looks) after the clients finish.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);
/// The scopes of the tenant's default profile, sorted.
const PROFILE_SCOPES: [&str; 2] = ["Inputs:Get", "Predict"];

fn fault_matrix_settings(s: &mut Settings) {
    s.upstream_timeout_secs = UPSTREAM_TIMEOUT_SECS;
    s.upstream_max_attempts = 4;
    s.lease_wait_secs = 30;
    // Recovery runs as in `serve`, on a short period so the test settles quickly.
    s.recovery_interval_secs = 1;
    s.retry_base_secs = 1;
}

fn seed() -> u64 {
    std::env::var("PROVISIONER_TEST_FAULT_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

/// What one user's PUTs ended with: the secret of its 201, or `None` for a 200 (another
/// request, or recovery, finished the provisioning first).
#[derive(Debug, Default)]
struct Outcome {
    secret: Option<String>,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    unavailable: AtomicU64,
    connection_errors: AtomicU64,
}

async fn fault_matrix_ends_clean(app: TestApp) {
    let backend = if app.db_url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    let seed = seed();
    println!("fault-matrix backend={backend} seed={seed} (PROVISIONER_TEST_FAULT_SEED replays it)");

    // Arrange: a tenant allowed to go fast (the simulator has no rate limit here), then faults.
    let mut tenant = app.tenant_body("acme");
    tenant["upstream_rate_limit"] = json!({"requests_per_second": 200, "max_concurrency": 16});
    let r = app
        .call(Method::POST, "/v1/tenants", Some(&app.admin), Some(tenant))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let w = app.token("provisioner:write", Some("acme"));
    app.sim.set_faults(Faults {
        hang_ms: HANG_MS,
        ..Faults::mixed(FAULT_RATE, seed)
    });
    let users: Vec<String> = (0..USERS)
        .map(|i| format!("user-{i:03}@acme.example"))
        .collect();

    // Act: 16 clients share the users and retry 503 and connection errors.
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let counters = Arc::new(Counters::default());
    let outcomes = Arc::new(Mutex::new(BTreeMap::<String, Outcome>::new()));
    let app = Arc::new(app);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (app, users, next, counters, outcomes, w) = (
                app.clone(),
                users.clone(),
                next.clone(),
                counters.clone(),
                outcomes.clone(),
                w.clone(),
            );
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(seed ^ (c as u64 + 1));
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(ext) = users.get(i) else { break };
                    let out = provision_with_retries(&app, &w, ext, &counters, &mut rng).await;
                    outcomes.lock().await.insert(ext.clone(), out);
                }
            })
        })
        .collect();
    let all = futures::future::join_all(clients);
    let joined = tokio::time::timeout(PHASE_LIMIT, all)
        .await
        .unwrap_or_else(|_| panic!("provisioning did not finish within {PHASE_LIMIT:?}"));
    for j in joined {
        j.expect("client task");
    }
    let provision_ms = start.elapsed().as_millis();
    let clients_done = Instant::now();

    // The service settles by itself: every row active with no pending step and no lease. (A
    // key create that got no answer leaves a late look at the app's keys to recovery.)
    let store = provisioner_storage::SqlStore::connect(&app.db_url)
        .await
        .expect("store");
    let tenant_id = TenantId::parse("acme").unwrap();
    let settle_deadline = Instant::now() + SETTLE_LIMIT;
    let rows = loop {
        let mut rows = BTreeMap::new();
        let mut pending = Vec::new();
        for ext in &users {
            let u = store
                .get_user(&tenant_id, &ExternalId::parse(ext).unwrap())
                .await
                .expect("read user")
                .expect("user row");
            if u.status != UserStatus::Active || u.step != Step::Idle || u.lease.is_some() {
                pending.push(format!("{ext}: {} / {}", u.status, u.step));
            }
            rows.insert(ext.clone(), u);
        }
        if pending.is_empty() {
            break rows;
        }
        assert!(
            Instant::now() < settle_deadline,
            "{} users still not settled {SETTLE_LIMIT:?} after the clients finished: {pending:?}",
            pending.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    store.close().await;
    // A hung request may still be in flight at the simulator and take effect late: let every
    // one of them land before judging the upstream.
    tokio::time::sleep_until((clients_done + Duration::from_millis(HANG_MS + 300)).into()).await;
    let settle_ms = clients_done.elapsed().as_millis();

    // The service shows every user active.
    let outcomes = outcomes.lock().await;
    assert_eq!(outcomes.len(), USERS);
    let mut app_ids = BTreeMap::new();
    for ext in &users {
        let r = app
            .call(
                Method::GET,
                &format!("/v1/tenants/acme/users/{}", enc(ext)),
                Some(&w),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["status"], "active", "{ext}: {}", r.text);
        assert_eq!(r.body["key"]["scopes"], json!(PROFILE_SCOPES), "{}", r.text);
        let app_id = r.body["app"]["id"].as_str().expect("app id").to_owned();
        app_ids.insert(ext.clone(), app_id);
    }
    let without_201 = outcomes.values().filter(|o| o.secret.is_none()).count();

    // Exactly one app and one key per user upstream: the recorded key (and the one given to the
    // caller, when it got a 201), restricted to its app, with the profile's scopes; nothing
    // else upstream.
    let apps = app.sim.apps(SIM_USER);
    let keys = app.sim.keys(SIM_USER);
    let mut problems = Vec::new();
    for (ext, app_id) in &app_ids {
        let n_apps = apps.iter().filter(|a| &a.id == app_id).count();
        let ks: Vec<_> = keys
            .iter()
            .filter(|k| k.app_ids.iter().any(|a| a == app_id))
            .collect();
        let given = outcomes[ext].secret.as_ref();
        let stored = rows[ext].key.as_ref().map(|k| k.fingerprint.clone());
        let clean = n_apps == 1
            && ks.len() == 1
            && ks[0].app_ids == vec![app_id.clone()]
            && sorted(&ks[0].scopes) == PROFILE_SCOPES
            && Some(fingerprint(&ks[0].id)) == stored
            && given.is_none_or(|g| g == &ks[0].id);
        if !clean {
            let seen: Vec<_> = ks
                .iter()
                .map(|k| {
                    format!(
                        "{} apps={:?} scopes={:?} given={} stored={}",
                        k.description,
                        k.app_ids,
                        sorted(&k.scopes),
                        Some(&k.id) == given,
                        Some(fingerprint(&k.id)) == stored,
                    )
                })
                .collect();
            problems.push(format!("{ext}: {n_apps} app(s) {app_id}, keys {seen:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {USERS} users are not exactly one app and one key upstream:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert_eq!(
        (apps.len(), keys.len()),
        (USERS, USERS),
        "apps and keys upstream"
    );

    // Reconcile (report only). Under the faults it is a scan of every app's keys that fails as
    // a whole when one read exhausts its attempts (about 0.4^4 per read here, so a clean pass
    // over 200 apps is rare): it must answer 503 or a clean report, never a wrong one. Then,
    // with the faults cleared, the report that counts.
    let reconcile = || {
        app.call(
            Method::POST,
            "/v1/tenants/acme/reconcile",
            Some(&w),
            Some(json!({"repair": false})),
        )
    };
    let under_faults = reconcile().await;
    let reconcile_under_faults = match under_faults.status {
        StatusCode::OK => {
            assert_clean(&under_faults.body);
            "clean"
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            assert_eq!(
                under_faults.body["code"], "upstream_unavailable",
                "{}",
                under_faults.text
            );
            "503"
        }
        other => panic!("reconcile under faults: {other}: {}", under_faults.text),
    };
    let faults = app.sim.fault_counts();
    app.sim.set_faults(Faults::none());
    let r = reconcile().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let report = r.body;
    let orphans = assert_clean(&report);

    let by_kind = serde_json::to_value(faults).unwrap_or(Value::Null);
    println!(
        "fault-matrix backend={backend} seed={seed} users={USERS} clients={CLIENTS} requests={} \
         faults_injected={} by kind {by_kind} 503s_seen={} connection_errors={} \
         users_finished_without_201={without_201} orphans={orphans} \
         reconcile=after-clearing-faults(under-faults:{reconcile_under_faults}) provision_ms={provision_ms} \
         settle_ms={settle_ms} wall_ms={}",
        counters.requests.load(Ordering::SeqCst),
        faults.total_injected(),
        counters.unavailable.load(Ordering::SeqCst),
        counters.connection_errors.load(Ordering::SeqCst),
        start.elapsed().as_millis(),
    );
    assert!(faults.total_injected() > 0, "faults were injected");
}

/// Asserts a reconcile report found nothing; returns the orphans it counted (0).
fn assert_clean(report: &Value) -> usize {
    let mut orphans = 0;
    for k in [
        "orphan_apps",
        "orphan_keys",
        "unmarked_keys",
        "missing_apps",
        "missing_keys",
        "scope_drift",
    ] {
        let found = report[k].as_array().map_or(usize::MAX, Vec::len);
        if k.starts_with("orphan") {
            orphans += found;
        }
        assert_eq!(found, 0, "{k}: {report}");
    }
    orphans
}

fn fingerprint(secret: &str) -> String {
    provisioner_core::secret::fingerprint(&SecretString::from(secret.to_owned()))
}

/// PUTs one user until it answers 201 or 200, retrying `503` (honouring `Retry-After`) and
/// connection errors with 50-200 ms of backoff; anything else fails the test.
async fn provision_with_retries(
    app: &TestApp,
    token: &str,
    ext: &str,
    counters: &Counters,
    rng: &mut fastrand::Rng,
) -> Outcome {
    let url = format!("{}/v1/tenants/acme/users/{}", app.base, enc(ext));
    for attempt in 1..=MAX_CLIENT_ATTEMPTS {
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let sent = app
            .http
            .put(&url)
            .bearer_auth(token)
            .json(&json!({}))
            .send()
            .await;
        let res = match sent {
            Ok(res) => res,
            Err(_) => {
                counters.connection_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff(rng, attempt)).await;
                continue;
            }
        };
        let status = res.status();
        let retry_after = res
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = res.text().await.unwrap_or_default();
        match status {
            StatusCode::CREATED => {
                let body: Value = serde_json::from_str(&text).expect("201 body");
                let secret = body["secret"].as_str().map(str::to_owned);
                assert!(secret.is_some(), "{ext}: 201 without a secret: {text}");
                return Outcome { secret };
            }
            StatusCode::OK => return Outcome::default(),
            StatusCode::SERVICE_UNAVAILABLE => {
                counters.unavailable.fetch_add(1, Ordering::Relaxed);
                let pause = retry_after.unwrap_or_else(|| backoff(rng, attempt));
                tokio::time::sleep(pause).await;
            }
            other => panic!("{ext}: unexpected {other} on attempt {attempt}: {text}"),
        }
    }
    panic!("{ext}: still not provisioned after {MAX_CLIENT_ATTEMPTS} attempts");
}

/// 50 ms doubling to 200 ms, with jitter.
fn backoff(rng: &mut fastrand::Rng, attempt: u32) -> Duration {
    let ceiling = (50u64 << attempt.saturating_sub(1).min(2)).min(200);
    Duration::from_millis(rng.u64(50..=ceiling))
}

fn sorted(scopes: &[String]) -> Vec<&str> {
    let mut v: Vec<&str> = scopes.iter().map(String::as_str).collect();
    v.sort_unstable();
    v
}
