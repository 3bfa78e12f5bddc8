//! Reconciliation and the keys without this service's marker on active users' apps (issue 12):
//! reported as `unmarked_keys`, deleted by a repair only on an app that carries the user's
//! marker, only as reported by the scan, and a takeover mid-repair does not stop the run.

use super::reconcile_tests::{HANDMADE, LATE, acme, actor, add_tenant, ext, provision, short_fp};
use super::*;
use crate::marker::key_description;
use crate::model::Lease;
use crate::ports::{AccountStore, TenantStore, UserStore};
use crate::testing::{Call, Fault, service};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmarked_keys_on_a_managed_app_are_reported_and_repair_deletes_them_audited() {
    let t = service();
    add_tenant(&t, &acme(), None).await;
    let (app, secret) = provision(&t, &acme(), "u1").await;
    t.upstream
        .plant_key(app.as_str(), HANDMADE, "made by hand", &["Predict", "All"]);
    // A late effect of an earlier create of ours: carries the marker, recorded nowhere.
    let late = LATE;
    t.upstream
        .plant_key(app.as_str(), late, &key_description(&app, 1), &["Predict"]);

    let report = t.service.reconcile(&actor(), &acme(), false).await.unwrap();
    let orphans: Vec<&str> = report
        .orphan_keys
        .iter()
        .map(|k| k.key_fingerprint.as_str())
        .collect();
    assert_eq!(orphans, vec![short_fp(late).as_str()], "{report:?}");
    assert_eq!(
        report.unmarked_keys,
        vec![UnmarkedKey {
            external_id: ext("u1"),
            app_id: app.clone(),
            key_fingerprint: short_fp(HANDMADE),
            description: "made by hand".into(),
            scopes: vec!["All".into(), "Predict".into()],
            other_apps: vec![],
            app_managed: true,
        }]
    );
    assert_eq!(report.counts().unmarked_keys, 1);
    // The report deleted nothing; it taught `learn` that this account has such keys.
    assert!(t.upstream.keys().iter().any(|k| k.id == HANDMADE));
    let learnt = t
        .store
        .auto_key_learning(
            &t.store
                .get_tenant(&acme())
                .await
                .unwrap()
                .unwrap()
                .account_key(),
        )
        .await
        .unwrap();
    assert!(learnt.last_seen_at.is_some(), "{learnt:?}");

    let report = t.service.reconcile(&actor(), &acme(), true).await.unwrap();
    assert!(report.repaired, "{:?}", report.repair_errors);
    let keys: Vec<String> = t.upstream.keys().into_iter().map(|k| k.id).collect();
    assert_eq!(keys, vec![secret], "only the recorded key is left");
    let audit = t.store.audit_events();
    let target = format!("apps/{app}/keys/{}", short_fp(HANDMADE));
    assert!(
        audit
            .iter()
            .any(|e| e.action == "reconcile.delete_unmarked_key"
                && e.target == target
                && e.outcome == "success"),
        "{audit:?}"
    );
    assert!(
        t.service
            .reconcile(&actor(), &acme(), false)
            .await
            .unwrap()
            .is_clean()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmarked_keys_on_an_app_without_the_tenants_marker_are_reported_and_never_touched() {
    let t = service();
    add_tenant(&t, &acme(), None).await;
    let (app, secret) = provision(&t, &acme(), "u1").await;
    // The recorded app lost its marker (replaced by hand with the same id): not provably ours.
    let kept: Vec<_> = t.upstream.keys();
    t.upstream.plant_app(app.as_str(), serde_json::Value::Null);
    for k in &kept {
        t.upstream
            .plant_key(&k.app_id, &k.id, &k.description, &["Inputs:Get", "Predict"]);
    }
    t.upstream
        .plant_key(app.as_str(), HANDMADE, "made by hand", &["All"]);

    let report = t.service.reconcile(&actor(), &acme(), true).await.unwrap();
    assert_eq!(report.unmarked_keys.len(), 1, "{report:?}");
    assert!(!report.unmarked_keys[0].app_managed);
    let keys: Vec<String> = t.upstream.keys().into_iter().map(|k| k.id).collect();
    assert!(keys.contains(&HANDMADE.to_owned()), "{keys:?}");
    assert!(keys.contains(&secret));
    assert!(!t.upstream.calls().contains(&Call::DeleteKey));
    // Nothing learnt from an app that is not provably ours.
    let learnt = t
        .store
        .auto_key_learning(
            &t.store
                .get_tenant(&acme())
                .await
                .unwrap()
                .unwrap()
                .account_key(),
        )
        .await
        .unwrap();
    assert_eq!(learnt.last_seen_at, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmarked_key_is_kept_when_the_app_changed_hands_after_the_scan() {
    let t = service();
    add_tenant(&t, &acme(), None).await;
    let (app, _) = provision(&t, &acme(), "u1").await;
    t.upstream
        .plant_key(app.as_str(), HANDMADE, "made by hand", &["All"]);
    // Between the scan and the repair, the app's metadata loses the tenant's marker (someone
    // replaced the app): the repair reads it again under the lease and leaves the key.
    let up = t.upstream.clone();
    let app_s = app.to_string();
    t.store.on_next_acquire(move |_| {
        up.plant_app(&app_s, serde_json::json!({"someone": "else"}));
    });
    let report = t.service.reconcile(&actor(), &acme(), true).await.unwrap();
    assert_eq!(report.unmarked_keys.len(), 1, "{report:?}");
    assert!(t.upstream.keys().iter().any(|k| k.id == HANDMADE));
    assert!(!t.upstream.calls().contains(&Call::DeleteKey));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_deletes_no_unmarked_key_the_scan_did_not_report() {
    let t = service();
    add_tenant(&t, &acme(), None).await;
    let (app, secret) = provision(&t, &acme(), "u1").await;
    // A marked orphan gives the user work; a key made by hand appears after the scan.
    t.upstream
        .plant_key(app.as_str(), LATE, &key_description(&app, 1), &["Predict"]);
    let up = t.upstream.clone();
    let app_s = app.to_string();
    t.store.on_next_acquire(move |_| {
        up.plant_key(&app_s, HANDMADE, "made by hand just now", &["All"]);
    });
    let report = t.service.reconcile(&actor(), &acme(), true).await.unwrap();
    assert!(report.unmarked_keys.is_empty(), "{report:?}");
    let keys: Vec<String> = t.upstream.keys().into_iter().map(|k| k.id).collect();
    assert!(keys.contains(&HANDMADE.to_owned()), "{keys:?}");
    assert!(!keys.contains(&LATE.to_owned()), "{keys:?}");
    assert!(keys.contains(&secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_taken_over_during_its_repair_does_not_stop_the_others() {
    let t = service();
    add_tenant(&t, &acme(), None).await;
    let (a1, _) = provision(&t, &acme(), "u1").await;
    let (a2, _) = provision(&t, &acme(), "u2").await;
    t.upstream
        .plant_key(a1.as_str(), HANDMADE, "by hand", &["All"]);
    t.upstream.plant_key(
        a2.as_str(),
        "handmadekey0000000000000000002",
        "by hand",
        &["All"],
    );
    // u1's repair hangs reading its app; meanwhile another holder takes u1 over.
    t.upstream
        .fault_on(Call::GetApp, Fault::Hang { commit: false }, 1);
    let svc = t.service.clone();
    let task = tokio::spawn(async move { svc.reconcile(&actor(), &acme(), true).await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let taker = Lease {
        owner: "taker".into(),
        expires_at: t.clock.now() + chrono::Duration::seconds(600),
    };
    t.store
        .acquire_lease(
            &acme(),
            &ext("u1"),
            &taker,
            t.clock.now() + chrono::Duration::seconds(3600),
            None,
        )
        .await
        .unwrap()
        .expect("taken over");
    let report = tokio::time::timeout(std::time::Duration::from_secs(30), task)
        .await
        .expect("the run ends")
        .unwrap()
        .expect("a report, not an error");
    assert!(!report.repaired);
    assert!(
        report.repair_errors.iter().any(|e| e.contains("users/u1")),
        "{:?}",
        report.repair_errors
    );
    let keys: Vec<String> = t.upstream.keys().into_iter().map(|k| k.id).collect();
    assert!(
        !keys.contains(&"handmadekey0000000000000000002".to_owned()),
        "u2 was still repaired: {keys:?}"
    );
}
