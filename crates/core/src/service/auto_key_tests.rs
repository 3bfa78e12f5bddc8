//! Keys the upstream mints with a new app (issue 12): the purge step, the tenant's
//! `auto_key_check` policy and what it costs in upstream calls, the `learn` policy's memory per
//! account, and the drift check's part in it.

use super::tests::{actor, assert_one_app_one_key, ext, put_default, tid, with_tenant};
use super::*;
use crate::model::{AutoKeyCheck, Step, UserStatus};
use crate::ports::{AccountStore, TenantStore, UserStore};
use crate::testing::{Call, Fault, TestService};

async fn set_check(t: &TestService, check: AutoKeyCheck) {
    t.service
        .patch_tenant(
            &actor(),
            &tid(),
            TenantPatch {
                auto_key_check: Some(check),
                ..TenantPatch::default()
            },
        )
        .await
        .unwrap();
}

async fn put(t: &TestService, who: &str) -> Provisioned {
    t.service
        .provision(&actor(), &tid(), &ext(who), put_default())
        .await
        .unwrap()
}

/// The upstream calls one action makes.
async fn calls_of<F: std::future::Future>(t: &TestService, f: F) -> Vec<Call> {
    let before = t.upstream.calls().len();
    f.await;
    t.upstream.calls()[before..].to_vec()
}

async fn account_key(t: &TestService) -> String {
    t.store
        .get_tenant(&tid())
        .await
        .unwrap()
        .unwrap()
        .account_key()
}

async fn settle(t: &TestService) {
    for _ in 0..3 {
        t.clock.advance(chrono::Duration::seconds(600));
        t.service.run_recovery_pass(100).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_policy_makes_only_the_calls_it_promises_when_nothing_is_minted() {
    let t = with_tenant().await;
    let created = t
        .store
        .get_tenant(&tid())
        .await
        .unwrap()
        .unwrap()
        .auto_key_check;
    assert_eq!(
        created,
        AutoKeyCheck::Always,
        "the safe policy is the default"
    );
    let always = calls_of(&t, put(&t, "a")).await;
    assert_eq!(
        always,
        vec![Call::CreateApp, Call::ListAppKeys, Call::CreateKey]
    );
    set_check(&t, AutoKeyCheck::Never).await;
    let never = calls_of(&t, put(&t, "n")).await;
    assert_eq!(never, vec![Call::CreateApp, Call::CreateKey]);
    // An idempotent repeat makes no call in any policy.
    assert!(calls_of(&t, put(&t, "a")).await.is_empty());
    for who in ["a", "n"] {
        assert_one_app_one_key(&t, who);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_deletes_the_minted_key_before_the_user_is_active() {
    let t = with_tenant().await;
    t.upstream.set_auto_app_key(true);
    let calls = calls_of(&t, put(&t, "u1")).await;
    assert_eq!(
        calls,
        vec![
            Call::CreateApp,
            Call::ListAppKeys,
            Call::DeleteKey,
            Call::CreateKey
        ]
    );
    assert_eq!(t.upstream.minted(), 1);
    assert_one_app_one_key(&t, "u1");
    // Re-provisioned after a DELETE: a new app, a new minted key, purged again.
    t.service
        .deprovision(&actor(), &tid(), &ext("u1"))
        .await
        .unwrap();
    let again = put(&t, "u1").await;
    assert!(again.created);
    assert_eq!(t.upstream.minted(), 2);
    settle(&t).await;
    assert_one_app_one_key(&t, "u1");
    // What was learnt is shared by the account's tenants: a sighting is recorded even here.
    let l = t
        .store
        .auto_key_learning(&account_key(&t).await)
        .await
        .unwrap();
    assert!(l.last_seen_at.is_some() && l.clean_checks == 0, "{l:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_that_finds_its_app_gone_recreates_it_without_the_minted_key() {
    let t = with_tenant().await;
    t.upstream.set_auto_app_key(true);
    let first = put(&t, "u1").await;
    t.upstream.remove_app(first.user.app_id.as_str());
    let rotated = t
        .service
        .rotate_key(&actor(), &tid(), &ext("u1"), 0, false)
        .await
        .unwrap();
    assert!(rotated.secret.is_some());
    settle(&t).await;
    assert_one_app_one_key(&t, "u1");
    assert_eq!(t.upstream.minted(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learn_checks_until_enough_clean_creates_then_stops_and_the_drift_check_restarts_it() {
    let t = with_tenant().await;
    set_check(&t, AutoKeyCheck::Learn).await;
    let n = usize::try_from(LEARN_CLEAN_CHECKS).unwrap();
    for i in 0..n {
        let calls = calls_of(&t, put(&t, &format!("c{i}"))).await;
        assert!(calls.contains(&Call::ListAppKeys), "create {i}: {calls:?}");
    }
    let l = t
        .store
        .auto_key_learning(&account_key(&t).await)
        .await
        .unwrap();
    assert_eq!(l.clean_checks, LEARN_CLEAN_CHECKS);
    // Learnt: no look any more.
    let calls = calls_of(&t, put(&t, "quiet")).await;
    assert_eq!(calls, vec![Call::CreateApp, Call::CreateKey]);

    // The upstream starts minting: unchecked users get a second key...
    t.upstream.set_auto_app_key(true);
    put(&t, "m1").await;
    let app = t
        .store
        .get_user(&tid(), &ext("m1"))
        .await
        .unwrap()
        .unwrap()
        .app_id;
    let on_app = |t: &TestService| {
        t.upstream
            .keys()
            .into_iter()
            .filter(|k| k.app_id == app.as_str())
            .count()
    };
    assert_eq!(on_app(&t), 2);
    // ...until the periodic drift check sees one: then every new app is checked again.
    let counts = t.service.drift_counts(&tid()).await.unwrap();
    assert_eq!(counts.unmarked_keys, 1, "{counts:?}");
    let calls = calls_of(&t, put(&t, "m2")).await;
    assert_eq!(
        calls,
        vec![
            Call::CreateApp,
            Call::ListAppKeys,
            Call::DeleteKey,
            Call::CreateKey
        ]
    );
    assert_one_app_one_key(&t, "m2");
    // And an admin repair removes the one left behind, audited.
    let report = t.service.reconcile(&actor(), &tid(), true).await.unwrap();
    assert!(report.repaired, "{:?}", report.repair_errors);
    assert_eq!(on_app(&t), 1);
    assert!(
        t.store
            .audit_events()
            .iter()
            .any(|e| e.action == "reconcile.delete_unmarked_key" && e.outcome == "success")
    );
    assert!(
        t.service
            .reconcile(&actor(), &tid(), false)
            .await
            .unwrap()
            .is_clean()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_leaves_the_minted_key_for_the_drift_check_to_report() {
    let t = with_tenant().await;
    set_check(&t, AutoKeyCheck::Never).await;
    t.upstream.set_auto_app_key(true);
    put(&t, "u1").await;
    assert_eq!(t.upstream.keys().len(), 2);
    let report = t.service.reconcile(&actor(), &tid(), false).await.unwrap();
    assert_eq!(report.unmarked_keys.len(), 1);
    let k = &report.unmarked_keys[0];
    assert!(k.app_managed && k.scopes.len() > 2, "{k:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_resumed_on_an_app_that_changed_hands_touches_nothing_of_theirs() {
    let t = with_tenant().await;
    t.upstream.set_auto_app_key(true);
    // The provisioning dies while looking at its new app's keys (a crash).
    assert!(provision_cut_at(&t, "u1", 1, false).await, "cut off");
    let u = t.store.get_user(&tid(), &ext("u1")).await.unwrap().unwrap();
    assert_eq!(
        (u.status, u.step),
        (UserStatus::Provisioning, Step::PurgeKeys)
    );
    // Meanwhile the app is deleted and someone else's takes its id, with a key of theirs.
    t.upstream.remove_app(u.app_id.as_str());
    t.upstream
        .plant_app(u.app_id.as_str(), serde_json::json!({"team": "x"}));
    t.upstream.plant_key(
        u.app_id.as_str(),
        "theirkey000000000000000000001",
        "theirs",
        &["All"],
    );
    settle(&t).await;
    let u = t.store.get_user(&tid(), &ext("u1")).await.unwrap().unwrap();
    assert_eq!(u.status, UserStatus::Failed, "{u:?}");
    assert!(t.upstream.apps().iter().any(|a| a.id == u.app_id.as_str()));
    assert!(
        t.upstream
            .keys()
            .iter()
            .any(|k| k.id == "theirkey000000000000000000001")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_resumed_on_its_own_app_proves_it_by_the_marker_first() {
    let t = with_tenant().await;
    t.upstream.set_auto_app_key(true);
    // Crash after the look at the keys (the answer lost): resumed at the purge.
    provision_cut_at(&t, "u1", 1, true).await;
    let before = t.upstream.calls().len();
    settle(&t).await;
    let resumed = &t.upstream.calls()[before..];
    assert_eq!(
        &resumed[..4],
        &[
            Call::GetApp,
            Call::ListAppKeys,
            Call::DeleteKey,
            Call::ListAppKeys
        ],
        "marker first, then the purge, then the key's look-up: {resumed:?}"
    );
    assert_one_app_one_key(&t, "u1");
    let u = t.store.get_user(&tid(), &ext("u1")).await.unwrap().unwrap();
    assert!(
        u.secret_pending,
        "recovery finished it: the next PUT carries the secret"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_purge_is_retried_and_a_rejected_one_undoes_the_app() {
    let t = with_tenant().await;
    t.upstream.set_auto_app_key(true);
    let down = unavailable();
    t.upstream.fault_on(Call::DeleteKey, Fault::Fail(down), 1);
    let err = t
        .service
        .provision(&actor(), &tid(), &ext("u1"), put_default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, DomainError::UpstreamUnavailable(_)),
        "{err:?}"
    );
    let u = t.store.get_user(&tid(), &ext("u1")).await.unwrap().unwrap();
    assert_eq!(u.step, Step::PurgeKeys);
    // The caller's retry finishes it.
    let r = put(&t, "u1").await;
    assert!(r.created && r.secret.is_some());
    settle(&t).await;
    assert_one_app_one_key(&t, "u1");

    // A permanent refusal of the purge's delete: the user fails and its app is undone.
    let no = crate::error::UpstreamError::Rejected("refused".into());
    t.upstream.fault_on(Call::DeleteKey, Fault::Fail(no), 1);
    let err = t
        .service
        .provision(&actor(), &tid(), &ext("u2"), put_default())
        .await
        .unwrap_err();
    let DomainError::UpstreamRejected(m) = &err else {
        panic!("{err:?}")
    };
    assert!(m.contains("auto_key_check"), "the way out is named: {m}");
    settle(&t).await;
    let u = t.store.get_user(&tid(), &ext("u2")).await.unwrap().unwrap();
    assert_eq!(u.status, UserStatus::Failed);
    assert!(!t.upstream.apps().iter().any(|a| a.id == u.app_id.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_whose_purge_is_refused_does_not_settle_with_the_minted_key() {
    let t = with_tenant().await;
    t.upstream.set_auto_app_key(true);
    let first = put(&t, "u1").await;
    t.upstream.remove_app(first.user.app_id.as_str());
    let no = crate::error::UpstreamError::Rejected("refused".into());
    t.upstream.fault_on(Call::DeleteKey, Fault::Fail(no), 1);
    let err = t
        .service
        .rotate_key(&actor(), &tid(), &ext("u1"), 0, false)
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::UpstreamRejected(_)), "{err:?}");
    // Not settled as active while an all-scope key it could not delete sits on its app.
    let u = t.store.get_user(&tid(), &ext("u1")).await.unwrap().unwrap();
    assert_eq!((u.status, u.step), (UserStatus::Rotating, Step::PurgeKeys));
    assert!(u.last_error.is_some());
    // Retried with backoff until the upstream lets it go.
    settle(&t).await;
    assert_one_app_one_key(&t, "u1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_also_reaches_another_app_is_never_deleted() {
    let t = with_tenant().await;
    // The purge is cut off; meanwhile someone makes a key for this app and one of theirs.
    provision_cut_at(&t, "u1", 1, false).await;
    let app = t
        .store
        .get_user(&tid(), &ext("u1"))
        .await
        .unwrap()
        .unwrap()
        .app_id;
    t.upstream
        .plant_app("customer-app", serde_json::Value::Null);
    t.upstream.plant_shared_key(
        app.as_str(),
        "customer-app",
        "sharedkey00000000000000000001",
        &["All"],
    );
    settle(&t).await;
    assert!(
        t.upstream
            .keys()
            .iter()
            .any(|k| k.id == "sharedkey00000000000000000001"),
        "the purge kept a key that reaches another app"
    );
    // The drift check reports it, and a repair leaves it too.
    let report = t.service.reconcile(&actor(), &tid(), true).await.unwrap();
    assert_eq!(report.unmarked_keys.len(), 1, "{report:?}");
    assert_eq!(report.unmarked_keys[0].other_apps, vec!["customer-app"]);
    assert!(
        t.upstream
            .keys()
            .iter()
            .any(|k| k.id == "sharedkey00000000000000000001")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighting_survives_a_drift_check_that_fails_later() {
    let t = with_tenant().await;
    set_check(&t, AutoKeyCheck::Learn).await;
    let account = account_key(&t).await;
    for _ in 0..LEARN_CLEAN_CHECKS {
        t.store
            .record_auto_key_check(&account, false, t.clock.now())
            .await
            .unwrap();
    }
    put(&t, "z").await;
    t.upstream.set_auto_app_key(true);
    put(&t, "a").await; // not checked: the minted key stays
    // The drift check sees it on "a", then fails on "z".
    let base = t.upstream.calls().len();
    let down = unavailable();
    t.upstream.fault_at(base + 2, Fault::Fail(down));
    assert!(t.service.drift_counts(&tid()).await.is_err());
    let l = t.store.auto_key_learning(&account).await.unwrap();
    assert_eq!(l.clean_checks, 0, "{l:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_purge_does_not_count_as_a_clean_create() {
    let t = with_tenant().await;
    set_check(&t, AutoKeyCheck::Learn).await;
    t.upstream.set_auto_app_key(true);
    // Crash after the minted key's delete took effect (its answer lost).
    provision_cut_at(&t, "u1", 2, true).await;
    settle(&t).await;
    assert_one_app_one_key(&t, "u1");
    let l = t
        .store
        .auto_key_learning(&account_key(&t).await)
        .await
        .unwrap();
    assert_eq!(
        l.clean_checks, 0,
        "the resumed look found what the first had deleted: {l:?}"
    );
}

/// Starts a provisioning of `who` that "crashes" at the `at`-th upstream call from now (the
/// call hangs, after taking effect when `commit`) and drops it; whether it was cut off.
async fn provision_cut_at(t: &TestService, who: &str, at: usize, commit: bool) -> bool {
    let base = t.upstream.calls().len();
    t.upstream.fault_at(base + at, Fault::Hang { commit });
    let svc = t.service.clone();
    let who = ext(who);
    tokio::time::timeout(std::time::Duration::from_millis(300), async move {
        svc.provision(&actor(), &tid(), &who, put_default()).await
    })
    .await
    .is_err()
}

/// A 503 from the upstream, nothing applied.
fn unavailable() -> crate::error::UpstreamError {
    crate::error::UpstreamError::Unavailable {
        message: "HTTP 503".into(),
        ambiguous: false,
    }
}
