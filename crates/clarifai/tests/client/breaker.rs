//! The port's per-account circuit breaker against the simulator: it opens after consecutive
//! failures and then sends nothing, one probe closes or re-opens it, rejections never open it,
//! and accounts do not share it.

use std::time::Duration;

use clarifai_sim::{Account, Faults, SimConfig, Simulator};
use provisioner_clarifai::breaker::OPEN_MESSAGE;
use provisioner_clarifai::{BreakerConfig, BreakerState, ClarifaiUpstream, ClientConfig};
use provisioner_core::UpstreamError;
use provisioner_core::budget::Lane;
use provisioner_core::ids::{AppId, TenantId, UpstreamUserId};
use provisioner_core::model::{UpstreamAccount, UpstreamRateLimit};
use provisioner_core::ports::Upstream;
use provisioner_core::secret::Pat;

use crate::common::{PAT, USER, sim, test_config};

/// The second simulated account (for isolation).
const OTHER_USER: &str = "globex-corp";
const OTHER_PAT: &str = "pat-other-account-0a1b2c3d";

const OPEN_FOR: Duration = Duration::from_millis(300);

/// Two attempts per operation, tiny backoffs.
fn short_config() -> ClientConfig {
    ClientConfig {
        max_attempts: 2,
        base_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        ..test_config()
    }
}

fn upstream(open_for: Duration) -> ClarifaiUpstream {
    ClarifaiUpstream::from_config(short_config())
        .unwrap()
        .with_breaker(BreakerConfig {
            failure_threshold: 3,
            open_for,
        })
}

fn account(sim: &Simulator, user: &str, pat: &str) -> UpstreamAccount {
    UpstreamAccount {
        base_url: sim.base_url(),
        user_id: UpstreamUserId::parse(user).unwrap(),
        pat: Pat::parse(pat).unwrap(),
        tenant_id: TenantId::parse("acme").unwrap(),
        rate_limit: UpstreamRateLimit {
            requests_per_second: 500,
            max_concurrency: 8,
        },
        lane: Lane::Interactive,
    }
}

fn failing() -> Faults {
    Faults {
        p_500: 1.0,
        ..Faults::none()
    }
}

fn is_open_error(r: &Result<Vec<provisioner_core::ports::UpstreamApp>, UpstreamError>) -> bool {
    matches!(r, Err(UpstreamError::Unavailable { message, ambiguous: false }) if message == OPEN_MESSAGE)
}

/// A failure after the request was really sent (not the breaker's).
fn is_sent_failure(r: &Result<Vec<provisioner_core::ports::UpstreamApp>, UpstreamError>) -> bool {
    matches!(r, Err(UpstreamError::Unavailable { message, .. }) if message != OPEN_MESSAGE)
}

/// (state, times opened) of the breaker of `user`.
fn state_of(up: &ClarifaiUpstream, user: &str) -> Option<(BreakerState, u64)> {
    up.breaker_states()
        .into_iter()
        .find(|s| s.account.ends_with(&format!(" user {user}")))
        .map(|s| (s.state, s.times_opened))
}

/// Runs `n` failing operations, each really sent.
async fn fail_n(sim: &Simulator, up: &ClarifaiUpstream, acct: &UpstreamAccount, n: usize) {
    for i in 0..n {
        let before = sim.request_count();
        let r = up.list_apps(acct).await;
        assert!(is_sent_failure(&r), "failure {i}: {r:?}");
        assert_eq!(
            sim.request_count() - before,
            2,
            "failure {i}: both attempts sent"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_after_the_threshold_and_one_probe_closes_it() {
    let sim = sim().await;
    let up = upstream(OPEN_FOR);
    let acct = account(&sim, USER, PAT);
    assert!(up.list_apps(&acct).await.unwrap().is_empty());
    assert_eq!(state_of(&up, USER), Some((BreakerState::Closed, 0)));

    sim.set_faults(failing());
    fail_n(&sim, &up, &acct, 3).await;
    assert_eq!(state_of(&up, USER), Some((BreakerState::Open, 1)));

    // Open: the 4th and any concurrent calls fail at once and send nothing.
    let before = sim.request_count();
    let r = up.list_apps(&acct).await;
    assert!(is_open_error(&r), "{r:?}");
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let (up, acct) = (up.clone(), acct.clone());
            tokio::spawn(async move { up.list_apps(&acct).await })
        })
        .collect();
    for call in calls {
        assert!(is_open_error(&call.await.unwrap()));
    }
    let id = AppId::parse("anything").unwrap();
    assert!(matches!(
        up.get_app(&acct, &id).await,
        Err(UpstreamError::Unavailable { ref message, ambiguous: false }) if message == OPEN_MESSAGE
    ));
    assert_eq!(sim.request_count(), before, "nothing sent while open");

    // After open_for, with the upstream healthy (and slow, so the probe is still in flight
    // when a second caller arrives): one probe goes, the other caller fails fast.
    tokio::time::sleep(OPEN_FOR).await;
    sim.set_faults(Faults {
        latency_ms: 300,
        ..Faults::none()
    });
    let before = sim.request_count();
    let probe = {
        let (up, acct) = (up.clone(), acct.clone());
        tokio::spawn(async move { up.list_apps(&acct).await })
    };
    let waited = std::time::Instant::now();
    // (Half-open is read as soon as the time is up, so wait for the probe to reach the
    // upstream.)
    while sim.request_count() == before {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "the probe never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = up.list_apps(&acct).await;
    assert!(is_open_error(&r), "a concurrent caller fails fast: {r:?}");
    assert!(probe.await.unwrap().unwrap().is_empty());
    assert_eq!(sim.request_count() - before, 1, "exactly one probe sent");
    assert_eq!(state_of(&up, USER), Some((BreakerState::Closed, 1)));

    sim.set_faults(Faults::none());
    for _ in 0..3 {
        up.list_apps(&acct).await.unwrap();
    }
    assert_eq!(state_of(&up, USER), Some((BreakerState::Closed, 1)));
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_probe_reopens_it() {
    let sim = sim().await;
    let up = upstream(OPEN_FOR);
    let acct = account(&sim, USER, PAT);
    sim.set_faults(failing());
    fail_n(&sim, &up, &acct, 3).await;
    assert_eq!(state_of(&up, USER), Some((BreakerState::Open, 1)));

    tokio::time::sleep(OPEN_FOR).await;
    fail_n(&sim, &up, &acct, 1).await;
    assert_eq!(state_of(&up, USER), Some((BreakerState::Open, 2)));
    let before = sim.request_count();
    assert!(is_open_error(&up.list_apps(&acct).await));
    assert_eq!(sim.request_count(), before, "open again: nothing sent");

    tokio::time::sleep(OPEN_FOR).await;
    sim.set_faults(Faults::none());
    up.list_apps(&acct).await.unwrap();
    assert_eq!(state_of(&up, USER), Some((BreakerState::Closed, 2)));
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_do_not_open_it_and_reset_the_count() {
    let sim = sim().await;
    let up = upstream(OPEN_FOR);
    let acct = account(&sim, USER, PAT);
    let wrong_pat = account(&sim, USER, "not-the-pat");
    let missing = AppId::parse("missing-app").unwrap();
    for _ in 0..5 {
        let before = sim.request_count();
        assert!(matches!(
            up.verify_credential(&wrong_pat).await,
            Err(UpstreamError::Unauthorized(_))
        ));
        assert!(matches!(
            up.get_app(&acct, &missing).await,
            Err(UpstreamError::NotFound)
        ));
        assert_eq!(sim.request_count() - before, 2, "rejections are sent");
    }
    assert_eq!(state_of(&up, USER), Some((BreakerState::Closed, 0)));

    // Two failures, a rejection, two failures: never three in a row.
    sim.set_faults(failing());
    fail_n(&sim, &up, &acct, 2).await;
    sim.set_faults(Faults::none());
    assert!(matches!(
        up.get_app(&acct, &missing).await,
        Err(UpstreamError::NotFound)
    ));
    sim.set_faults(failing());
    fail_n(&sim, &up, &acct, 2).await;
    assert_eq!(state_of(&up, USER), Some((BreakerState::Closed, 0)));
    fail_n(&sim, &up, &acct, 1).await;
    assert_eq!(state_of(&up, USER), Some((BreakerState::Open, 1)));
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_accounts_open_breaker_does_not_affect_another() {
    let sim = Simulator::start(SimConfig {
        accounts: vec![Account::new(USER, PAT), Account::new(OTHER_USER, OTHER_PAT)],
        rate_limit_per_sec: None,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    // Long enough that the first account stays open for the whole test.
    let up = upstream(Duration::from_secs(60));
    let a = account(&sim, USER, PAT);
    let b = account(&sim, OTHER_USER, OTHER_PAT);

    sim.set_faults(failing());
    fail_n(&sim, &up, &a, 3).await;
    assert_eq!(state_of(&up, USER), Some((BreakerState::Open, 1)));
    // The other account's calls are still sent (and fail on their own).
    fail_n(&sim, &up, &b, 1).await;

    sim.set_faults(Faults::none());
    let before = sim.request_count();
    assert!(is_open_error(&up.list_apps(&a).await));
    assert_eq!(sim.request_count(), before);
    assert!(up.list_apps(&b).await.unwrap().is_empty());
    assert_eq!(up.verify_credential(&b).await.unwrap(), ["All"]);
    assert_eq!(state_of(&up, USER), Some((BreakerState::Open, 1)));
    assert_eq!(state_of(&up, OTHER_USER), Some((BreakerState::Closed, 0)));
    let labels: Vec<String> = up.breaker_states().into_iter().map(|s| s.account).collect();
    assert_eq!(labels.len(), 2);
    assert!(
        labels
            .iter()
            .all(|l| l.starts_with(&sim.base_url()) && !l.contains(PAT) && !l.contains(OTHER_PAT)),
        "{labels:?}"
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_breaker_is_on_and_can_be_disabled() {
    let sim = sim().await;
    let default = ClarifaiUpstream::from_config(short_config()).unwrap();
    assert_eq!(default.breaker_config(), BreakerConfig::default());
    assert_eq!(
        BreakerConfig::default(),
        BreakerConfig {
            failure_threshold: 5,
            open_for: Duration::from_secs(10),
        }
    );

    let up = ClarifaiUpstream::from_config(short_config())
        .unwrap()
        .with_breaker(BreakerConfig::disabled());
    let acct = account(&sim, USER, PAT);
    sim.set_faults(failing());
    fail_n(&sim, &up, &acct, 8).await;
    assert!(up.breaker_states().is_empty());
    sim.stop().await;
}
