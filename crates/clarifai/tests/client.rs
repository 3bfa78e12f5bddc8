//! The client and the port against the simulator: happy paths, pagination, each fault alone,
//! rejections, ambiguity, Retry-After, the per-account circuit breaker, and secrets kept out of
//! logs and Debug.

#[path = "client/breaker.rs"]
mod breaker;
#[path = "client/common.rs"]
mod common;
#[path = "client/faults.rs"]
mod faults;
#[path = "client/logs.rs"]
mod logs;
#[path = "client/port.rs"]
mod port;

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
