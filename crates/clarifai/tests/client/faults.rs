//! Each fault of the simulator alone: recovery when intermittent, exhaustion when persistent,
//! timeouts, commit-then-drop ambiguity, and Retry-After.

use std::time::{Duration, Instant};

use clarifai_sim::{Faults, Simulator};
use provisioner_clarifai::{ClientConfig, ErrorKind};

use crate::common::{USER, app_spec, client, key_spec, sim, test_config};

/// Runs a few reads and safe writes under `faults` and expects all to succeed.
async fn survives(faults: Faults) {
    let sim = sim().await;
    let c = client(&sim, test_config());
    c.create_app(&app_spec("base")).await.unwrap();
    sim.set_faults(faults);
    let before = sim.request_count();
    for i in 0..4 {
        let id = format!("s-{i}");
        // A repeat after a lost answer says "already exists": that is a success here.
        match c.create_app(&app_spec(&id)).await {
            Ok(_) => {}
            Err(e) => assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e}"),
        }
        c.get_app(&id).await.unwrap();
        c.list_apps().await.unwrap();
    }
    assert!(
        sim.request_count() - before > 12,
        "some requests were retried"
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_from_500s() {
    survives(Faults {
        p_500: 0.4,
        seed: Some(7),
        ..Faults::none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_from_html_503s() {
    survives(Faults {
        p_503_html: 0.4,
        seed: Some(8),
        ..Faults::none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_from_429s_without_retry_after() {
    survives(Faults {
        p_429: 0.4,
        seed: Some(9),
        ..Faults::none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_from_429s_with_retry_after() {
    // Capped at 300 ms so the run stays short; the honouring itself is tested below.
    let config = ClientConfig {
        max_retry_after: Duration::from_millis(300),
        ..test_config()
    };
    let sim = sim().await;
    let c = client(&sim, config);
    sim.set_faults(Faults {
        p_429_retry_after: 0.4,
        retry_after_secs: 1,
        seed: Some(10),
        ..Faults::none()
    });
    for i in 0..4 {
        c.create_app(&app_spec(&format!("r-{i}"))).await.unwrap();
        c.list_apps().await.unwrap();
    }
    assert!(sim.fault_counts().throttled_retry_after > 0);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_faults_exhaust_the_attempts() {
    let sim = sim().await;
    let config = ClientConfig {
        max_attempts: 3,
        max_retry_after: Duration::from_millis(100),
        ..test_config()
    };
    let c = client(&sim, config);
    c.create_app(&app_spec("x")).await.unwrap();
    let cases = [
        (
            Faults {
                p_500: 1.0,
                ..Faults::none()
            },
            ErrorKind::UpstreamInternal,
        ),
        (
            Faults {
                p_503_html: 1.0,
                ..Faults::none()
            },
            ErrorKind::UpstreamInternal,
        ),
        (
            Faults {
                p_429: 1.0,
                ..Faults::none()
            },
            ErrorKind::Throttled,
        ),
        (
            Faults {
                p_429_retry_after: 1.0,
                retry_after_secs: 30,
                ..Faults::none()
            },
            ErrorKind::Throttled,
        ),
    ];
    for (faults, kind) in cases {
        sim.set_faults(faults);
        let before = sim.request_count();
        let e = c.get_app("x").await.unwrap_err();
        assert_eq!((e.kind, e.ambiguous), (kind, false), "{e}");
        assert_eq!(sim.request_count() - before, 3);
        let e = provisioner_clarifai::port::to_upstream(e);
        assert!(matches!(
            e,
            provisioner_core::UpstreamError::Unavailable {
                ambiguous: false,
                ..
            }
        ));
    }
    // A key create refused by throttling certainly did not happen: retried, not ambiguous.
    sim.set_faults(Faults {
        p_429: 1.0,
        ..Faults::none()
    });
    let before = sim.request_count();
    let e = c.create_key(&key_spec("x", "throttled")).await.unwrap_err();
    assert_eq!(
        (e.kind, e.ambiguous, sim.request_count() - before),
        (ErrorKind::Throttled, false, 3)
    );
    // A key create answered 500 may have happened: not retried, ambiguous.
    sim.set_faults(Faults {
        p_500: 1.0,
        ..Faults::none()
    });
    let before = sim.request_count();
    let e = c.create_key(&key_spec("x", "failed")).await.unwrap_err();
    assert_eq!(
        (e.kind, e.ambiguous, sim.request_count() - before),
        (ErrorKind::UpstreamInternal, true, 1)
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hangs_become_timeouts_and_key_creates_ambiguous() {
    let sim = sim().await;
    let config = ClientConfig {
        request_timeout: Duration::from_millis(400),
        max_attempts: 2,
        ..test_config()
    };
    let c = client(&sim, config);
    c.create_app(&app_spec("h")).await.unwrap();
    sim.set_faults(Faults {
        p_hang: 1.0,
        hang_ms: 3_000,
        ..Faults::none()
    });

    let before = sim.request_count();
    let e = c.get_app("h").await.unwrap_err();
    assert_eq!(
        (e.kind, e.ambiguous, sim.request_count() - before),
        (ErrorKind::Timeout, false, 2)
    );

    let before = sim.request_count();
    let e = c.create_key(&key_spec("h", "hung")).await.unwrap_err();
    assert_eq!(
        (e.kind, e.ambiguous, sim.request_count() - before),
        (ErrorKind::Timeout, true, 1),
        "{e}"
    );

    let e = c.delete_app("h").await.unwrap_err();
    assert_eq!(
        (e.kind, e.ambiguous),
        (ErrorKind::Timeout, true),
        "a delete that timed out may have happened"
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_then_drop_is_ambiguous_and_really_happened() {
    let sim = sim().await;
    let c = client(&sim, test_config());
    c.create_app(&app_spec("d")).await.unwrap();
    sim.set_faults(Faults {
        p_commit_drop: 1.0,
        ..Faults::none()
    });

    let before = sim.request_count();
    let e = c
        .create_key(&key_spec("d", "dropped-marker"))
        .await
        .unwrap_err();
    assert!(e.ambiguous, "{e}");
    assert_eq!(
        (e.kind, sim.request_count() - before),
        (ErrorKind::Transport, 1)
    );
    assert!(
        sim.keys(USER)
            .iter()
            .any(|k| k.description == "dropped-marker")
    );

    // A safe create is repeated; the repeat is dropped too, so it ends ambiguous, and it exists.
    let e = c.create_app(&app_spec("dropped-app")).await.unwrap_err();
    assert!(e.ambiguous && e.kind.is_retryable(), "{e}");
    assert!(sim.apps(USER).iter().any(|a| a.id == "dropped-app"));

    sim.set_faults(Faults::none());
    assert_eq!(
        c.create_app(&app_spec("dropped-app"))
            .await
            .unwrap_err()
            .kind,
        ErrorKind::AlreadyExists
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let sim = sim().await;
    let c = client(&sim, test_config());
    c.create_app(&app_spec("ra")).await.unwrap();
    sim.set_faults(Faults {
        p_429_retry_after: 1.0,
        retry_after_secs: 1,
        ..Faults::none()
    });
    let before = sim.request_count();
    // Clear the fault once the first attempt has been seen.
    let watcher = {
        let sim: Simulator = sim.clone();
        tokio::spawn(async move {
            while sim.request_count() == before {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            sim.set_faults(Faults::none());
        })
    };
    let started = Instant::now();
    c.get_app("ra").await.unwrap();
    let waited = started.elapsed();
    watcher.await.unwrap();
    assert_eq!(sim.request_count() - before, 2);
    assert!(
        waited >= Duration::from_millis(950),
        "waited only {waited:?}"
    );
    sim.stop().await;
}
