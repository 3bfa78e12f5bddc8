//! The client and the port against the simulator: happy paths, pagination, each fault alone,
//! rejections, ambiguity, Retry-After, and secrets kept out of logs and Debug.

#[path = "client/common.rs"]
mod common;
#[path = "client/logs.rs"]
mod logs;
#[path = "client/port.rs"]
mod port;

use std::time::{Duration, Instant};

use clarifai_sim::{Faults, Simulator};
use provisioner_clarifai::{AppSpec, ClientConfig, ErrorKind, KeySpec};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use common::{PAT, USER, app_spec, client, key_spec, sim, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_happy_path_with_pagination() {
    let sim = sim().await;
    let c = client(
        &sim,
        ClientConfig {
            per_page: 2,
            ..test_config()
        },
    );
    let created = c.create_app(&app_spec("app-0")).await.unwrap();
    assert_eq!(
        (created.id.as_str(), created.description.as_str()),
        ("app-0", "tenant t / app-0")
    );
    assert_eq!(created.metadata, json!({"tenant": "t", "subject": "app-0"}));
    let stored = &sim.apps(USER)[0];
    assert_eq!(
        stored.default_workflow,
        json!({"id": "Empty", "app_id": "main", "user_id": "clarifai"})
    );
    assert_eq!(stored.visibility["gettable"], json!(10));
    for i in 1..5 {
        c.create_app(&app_spec(&format!("app-{i}"))).await.unwrap();
    }
    let got = c.get_app("app-3").await.unwrap();
    assert_eq!(got.metadata["subject"], "app-3");

    let before = sim.request_count();
    let mut ids: Vec<String> = c
        .list_apps()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["app-0", "app-1", "app-2", "app-3", "app-4"]);
    assert_eq!(sim.request_count() - before, 3, "pages of 2, 2 and 1");

    c.delete_app("app-3").await.unwrap();
    assert_eq!(
        c.get_app("app-3").await.unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        c.delete_app("app-3").await.unwrap_err().kind,
        ErrorKind::NotFound
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_happy_path_with_pagination() {
    let sim = sim().await;
    let c = client(
        &sim,
        ClientConfig {
            per_page: 2,
            ..test_config()
        },
    );
    c.create_app(&app_spec("a1")).await.unwrap();
    c.create_app(&app_spec("a2")).await.unwrap();
    let mut made = Vec::new();
    for i in 0..4 {
        made.push(
            c.create_key(&key_spec("a1", &format!("m{i}")))
                .await
                .unwrap(),
        );
    }
    let other = c.create_key(&key_spec("a2", "other")).await.unwrap();
    let k = &made[0];
    assert_eq!(
        (k.description.as_str(), k.app_ids.as_slice()),
        ("m0", ["a1".to_owned()].as_slice())
    );
    assert_eq!(k.scopes, ["Inputs:Get", "Predict"]);
    let sim_key = sim
        .keys(USER)
        .into_iter()
        .find(|s| s.description == "m0")
        .unwrap();
    assert_eq!(sim_key.id, k.id.expose_secret());

    let fetched = c.get_key(&k.id).await.unwrap();
    assert_eq!(fetched.id.expose_secret(), k.id.expose_secret());
    let before = sim.request_count();
    assert_eq!(c.list_app_keys("a1").await.unwrap().len(), 4);
    assert_eq!(sim.request_count() - before, 3, "pages of 2, 2 and 0");
    assert_eq!(c.list_app_keys("a2").await.unwrap().len(), 1);
    let all = c.list_keys().await.unwrap();
    assert!(
        all.iter()
            .any(|x| x.id.expose_secret() == other.id.expose_secret())
    );
    assert!(all.len() >= 5);

    c.delete_key(&k.id).await.unwrap();
    assert_eq!(
        c.get_key(&k.id).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        c.delete_key(&k.id).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert_eq!(c.list_app_keys("a1").await.unwrap().len(), 3);
    assert_eq!(c.my_scopes().await.unwrap(), ["All"]);
    sim.stop().await;
}

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
async fn rejections_are_not_retried() {
    let sim = sim().await;
    let c = client(&sim, test_config());
    c.create_app(&app_spec("dup")).await.unwrap();
    let wrong_pat = common::client_with(&sim, test_config(), USER, "not-the-pat");

    let cases: Vec<(&str, ErrorKind, Option<u32>)> = vec![
        ("wrong pat", ErrorKind::Unauthenticated, Some(11009)),
        ("duplicate app", ErrorKind::AlreadyExists, Some(40010)),
        ("missing app", ErrorKind::NotFound, Some(11101)),
        ("invalid scope", ErrorKind::InvalidRequest, Some(11102)),
        ("other user", ErrorKind::NotFound, Some(11101)),
    ];
    for (what, kind, code) in cases {
        let before = sim.request_count();
        let e = match what {
            "wrong pat" => wrong_pat.get_app("dup").await.map(|_| ()),
            "duplicate app" => c.create_app(&app_spec("dup")).await.map(|_| ()),
            "missing app" => c.get_app("nope").await.map(|_| ()),
            "invalid scope" => {
                let spec = KeySpec {
                    scopes: vec!["Bogus:Scope".into()],
                    ..key_spec("dup", "bad")
                };
                c.create_key(&spec).await.map(|_| ())
            }
            _ => common::client_with(&sim, test_config(), "someone-else", PAT)
                .list_apps()
                .await
                .map(|_| ()),
        }
        .unwrap_err();
        assert_eq!(
            (e.kind, e.code, e.ambiguous),
            (kind, code, false),
            "{what}: {e}"
        );
        assert_eq!(sim.request_count() - before, 1, "{what} was sent once");
        assert!(!e.to_string().contains(PAT) && !e.to_string().contains("not-the-pat"));
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_output_hides_the_pat() {
    let sim = sim().await;
    let c = client(&sim, test_config());
    let shown = format!("{c:?} {:?}", c.config());
    assert!(!shown.contains(PAT), "{shown}");
    assert!(shown.contains("REDACTED"));
    let spec = AppSpec {
        metadata: json!(null),
        ..app_spec("dbg")
    };
    let key = {
        c.create_app(&spec).await.unwrap();
        c.create_key(&key_spec("dbg", "dbg")).await.unwrap()
    };
    let shown = format!("{key:?}");
    assert!(!shown.contains(key.id.expose_secret()), "{shown}");
    let _: &SecretString = &key.id;
    sim.stop().await;
}
