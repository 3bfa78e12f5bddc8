//! Core's `Upstream` port over the simulator.

use clarifai_sim::Faults;
use provisioner_clarifai::{ClarifaiUpstream, ClientConfig};
use provisioner_core::UpstreamError;
use provisioner_core::budget::Lane;
use provisioner_core::ids::{AppId, TenantId, UpstreamUserId};
use provisioner_core::model::{UpstreamAccount, UpstreamRateLimit};
use provisioner_core::ports::{NewApp, NewKey, Upstream};
use provisioner_core::scope::ScopeSet;
use provisioner_core::secret::{KeySecret, Pat};
use serde_json::json;

use crate::common::{PAT, USER, sim, test_config};

fn account(base_url: String, pat: &str) -> UpstreamAccount {
    UpstreamAccount {
        base_url,
        user_id: UpstreamUserId::parse(USER).unwrap(),
        pat: Pat::parse(pat).unwrap(),
        tenant_id: TenantId::parse("acme").unwrap(),
        rate_limit: UpstreamRateLimit {
            requests_per_second: 500,
            max_concurrency: 8,
        },
        lane: Lane::Interactive,
    }
}

fn new_app(id: &str) -> NewApp {
    NewApp {
        id: AppId::parse(id).unwrap(),
        description: format!("app {id}"),
        default_workflow: "Empty".into(),
        metadata: json!({"prov": {"tenant": "acme", "subject": id}}),
    }
}

fn new_key(app: &str, marker: &str) -> NewKey {
    NewKey {
        app_id: AppId::parse(app).unwrap(),
        description: marker.into(),
        scopes: ScopeSet::parse(["Predict", "Inputs:Get"]).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_port_drives_the_whole_lifecycle() {
    let sim = sim().await;
    let up = ClarifaiUpstream::from_config(ClientConfig {
        per_page: 2,
        ..test_config()
    })
    .unwrap();
    let acct = account(sim.base_url(), PAT);

    assert_eq!(up.verify_credential(&acct).await.unwrap(), ["All"]);
    let bad = account(sim.base_url(), "wrong");
    assert!(matches!(
        up.verify_credential(&bad).await,
        Err(UpstreamError::Unauthorized(_))
    ));

    let app = up.create_app(&acct, &new_app("t-acme-u-1")).await.unwrap();
    assert_eq!(app.metadata["prov"]["subject"], "t-acme-u-1");
    assert!(matches!(
        up.create_app(&acct, &new_app("t-acme-u-1")).await,
        Err(UpstreamError::AlreadyExists)
    ));
    for i in 2..=4 {
        up.create_app(&acct, &new_app(&format!("t-acme-u-{i}")))
            .await
            .unwrap();
    }
    assert_eq!(up.list_apps(&acct).await.unwrap().len(), 4);
    let id = AppId::parse("t-acme-u-1").unwrap();
    assert_eq!(up.get_app(&acct, &id).await.unwrap(), app);

    let key = up
        .create_key(&acct, &new_key("t-acme-u-1", "marker-1"))
        .await
        .unwrap();
    assert_eq!(
        (key.app_ids.as_slice(), key.description.as_str()),
        (["t-acme-u-1".to_owned()].as_slice(), "marker-1")
    );
    assert_eq!(key.scopes, ["Inputs:Get", "Predict"]);
    let listed = up.list_app_keys(&acct, &id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].secret.fingerprint(), key.secret.fingerprint());
    let bad_scope = NewKey {
        scopes: ScopeSet::parse(["Predict"]).unwrap(),
        ..new_key("t-acme-u-9", "x")
    };
    assert!(matches!(
        up.create_key(&acct, &bad_scope).await,
        Err(UpstreamError::NotFound | UpstreamError::Rejected(_))
    ));

    up.delete_key(&acct, &key.secret).await.unwrap();
    assert!(matches!(
        up.delete_key(&acct, &key.secret).await,
        Err(UpstreamError::NotFound)
    ));
    let unknown = KeySecret::parse("0123456789abcdef").unwrap();
    assert!(matches!(
        up.delete_key(&acct, &unknown).await,
        Err(UpstreamError::NotFound)
    ));
    up.delete_app(&acct, &id).await.unwrap();
    assert!(matches!(
        up.get_app(&acct, &id).await,
        Err(UpstreamError::NotFound)
    ));
    assert!(matches!(
        up.delete_app(&acct, &id).await,
        Err(UpstreamError::NotFound)
    ));

    sim.set_faults(Faults {
        p_commit_drop: 1.0,
        ..Faults::none()
    });
    let e = up
        .create_key(&acct, &new_key("t-acme-u-2", "marker-2"))
        .await
        .unwrap_err();
    assert!(e.is_ambiguous(), "{e}");
    sim.set_faults(Faults::none());
    let keys = up
        .list_app_keys(&acct, &AppId::parse("t-acme-u-2").unwrap())
        .await
        .unwrap();
    assert!(
        keys.iter().any(|k| k.description == "marker-2"),
        "the ambiguous key is found by its marker"
    );

    let nowhere = account("not a url".into(), PAT);
    assert!(matches!(
        up.list_apps(&nowhere).await,
        Err(UpstreamError::Rejected(_))
    ));
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_port_paces_an_account_below_its_upstream_limit() {
    let sim = sim().await;
    sim.set_rate_limit(Some(15));
    let up = ClarifaiUpstream::from_config(test_config()).unwrap();
    let acct = UpstreamAccount {
        rate_limit: UpstreamRateLimit {
            requests_per_second: 12,
            max_concurrency: 4,
        },
        ..account(sim.base_url(), PAT)
    };
    up.create_app(&acct, &new_app("paced")).await.unwrap();
    let id = AppId::parse("paced").unwrap();
    let started = std::time::Instant::now();
    let calls = (0..24).map(|_| {
        let (up, acct, id) = (up.clone(), acct.clone(), id.clone());
        tokio::spawn(async move { up.get_app(&acct, &id).await })
    });
    for call in calls.collect::<Vec<_>>() {
        call.await.unwrap().unwrap();
    }
    assert_eq!(sim.fault_counts().rate_limited, 0, "no 429 storm");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1800),
        "24 requests at 12/s"
    );
    sim.stop().await;
}
