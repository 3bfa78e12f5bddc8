//! Use-case tests over in-memory ports, including a crash injected at every upstream call.

use std::collections::BTreeMap;

use super::*;
use crate::error::UpstreamError;
use crate::ids::ProfileName;
use crate::model::{Step, UserStatus};
use crate::ports::{TenantStore, UserStore};
use crate::scope::ScopeSet;
use crate::testing::{Call, Fault, TestService, service};

pub(super) fn actor() -> Actor {
    Actor {
        subject: "tester".into(),
        request_id: Some("req-1".into()),
        lane: crate::budget::Lane::Interactive,
    }
}
pub(super) fn tid() -> TenantId {
    TenantId::parse("acme").unwrap()
}
pub(super) fn ext(s: &str) -> ExternalId {
    ExternalId::parse(s).unwrap()
}
fn scopes(v: &[&str]) -> ScopeSet {
    ScopeSet::parse(v).unwrap()
}

pub(super) async fn with_tenant() -> TestService {
    let t = service();
    let mut profiles = BTreeMap::new();
    profiles.insert(
        ProfileName::parse("standard").unwrap(),
        scopes(&["Predict", "Inputs:Get"]),
    );
    profiles.insert(
        ProfileName::parse("annotator").unwrap(),
        scopes(&["Inputs:Get", "Inputs:Add", "Concepts:Get"]),
    );
    t.service
        .create_tenant(
            &actor(),
            NewTenant {
                id: tid(),
                display_name: "Acme".into(),
                base_url: "https://api.clarifai.example".into(),
                upstream_user_id: crate::ids::UpstreamUserId::parse("acme-ml").unwrap(),
                pat: Pat::parse("good-pat").unwrap(),
                app_defaults: None,
                rate_limit: None,
                allowed_scopes: scopes(&["Predict", "Inputs:Get", "Inputs:Add", "Concepts:Get"]),
                default_scope_profile: Some(ProfileName::parse("standard").unwrap()),
                scope_profiles: profiles,
                auto_key_check: None,
            },
        )
        .await
        .unwrap();
    t
}

pub(super) fn put_default() -> ProvisionRequest {
    ProvisionRequest {
        scopes: ScopeRequest::Default,
        display_name: None,
        metadata: None,
    }
}

/// Invariant 1: each active user has exactly one app and one key upstream, with its scopes.
pub(super) fn assert_one_app_one_key(t: &TestService, external_id: &str) {
    let user = futures_lite_block(t.store.get_user(&tid(), &ext(external_id)))
        .unwrap()
        .unwrap();
    assert_eq!(user.status, UserStatus::Active, "{user:?}");
    assert_eq!(user.step, Step::Idle);
    assert!(user.lease.is_none());
    let apps: Vec<_> = t
        .upstream
        .apps()
        .into_iter()
        .filter(|a| a.id == user.app_id.as_str())
        .collect();
    assert_eq!(apps.len(), 1, "apps for {external_id}");
    let keys: Vec<_> = t
        .upstream
        .keys()
        .into_iter()
        .filter(|k| k.app_id == user.app_id.as_str())
        .collect();
    assert_eq!(keys.len(), 1, "keys for {external_id}: {keys:?}");
    assert_eq!(keys[0].scopes, user.scopes.names());
    assert_eq!(
        crate::secret::fingerprint(&secrecy::SecretString::from(keys[0].id.clone())),
        user.key.unwrap().fingerprint
    );
}

/// Lets the late look after an ambiguous key create come due, and recovery run it.
async fn settle(t: &TestService) {
    t.clock.advance(chrono::Duration::seconds(10));
    t.service.run_recovery_pass(100).await.unwrap();
}

fn futures_lite_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_creates_one_app_and_one_scoped_key_and_is_idempotent() {
    let t = with_tenant().await;
    let first = t
        .service
        .provision(
            &actor(),
            &tid(),
            &ext("user-42@acme.example"),
            put_default(),
        )
        .await
        .unwrap();
    assert!(first.created);
    let secret = first.secret.expect("secret on create");
    assert_eq!(first.user.scopes.names(), vec!["Inputs:Get", "Predict"]);
    assert_one_app_one_key(&t, "user-42@acme.example");
    assert_eq!(
        t.upstream.calls(),
        vec![
            Call::Verify,
            Call::CreateApp,
            Call::ListAppKeys,
            Call::CreateKey
        ],
        "happy path (auto_key_check always): the app, one look at its keys, the key"
    );
    let key = &t.upstream.keys()[0];
    assert_eq!(key.id, secret.expose());
    assert_eq!(
        key.description,
        crate::marker::key_description(&first.user.app_id, 1)
    );

    let again = t
        .service
        .provision(
            &actor(),
            &tid(),
            &ext("user-42@acme.example"),
            put_default(),
        )
        .await
        .unwrap();
    assert!(!again.created);
    assert!(again.secret.is_none());
    assert_eq!(t.upstream.keys().len(), 1);

    let other = ProvisionRequest {
        scopes: ScopeRequest::Profile(ProfileName::parse("annotator").unwrap()),
        ..put_default()
    };
    let err = t
        .service
        .provision(&actor(), &tid(), &ext("user-42@acme.example"), other)
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::Conflict(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_for_one_user_create_one_app_and_one_key() {
    let t = with_tenant().await;
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let s = t.service.clone();
        tasks.push(tokio::spawn(async move {
            s.provision(&actor(), &tid(), &ext("same"), put_default())
                .await
        }));
    }
    let mut created = 0;
    for task in tasks {
        let r = task.await.unwrap().unwrap();
        created += usize::from(r.created);
        assert_eq!(r.secret.is_some(), r.created);
    }
    assert_eq!(created, 1);
    assert_one_app_one_key(&t, "same");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disallowed_scopes_are_refused_before_anything_is_sent() {
    let t = with_tenant().await;
    let before = t.upstream.calls().len();
    for bad in [vec!["All"], vec!["Models:Get"], vec!["Inputs:Add"]] {
        let req = ProvisionRequest {
            scopes: ScopeRequest::Scopes(scopes(&bad)),
            ..put_default()
        };
        let err = t
            .service
            .provision(&actor(), &tid(), &ext("u"), req)
            .await
            .unwrap_err();
        assert!(
            matches!(err, DomainError::Validation(_)),
            "{bad:?}: {err:?}"
        );
    }
    assert_eq!(t.upstream.calls().len(), before);
    assert!(t.store.get_user(&tid(), &ext("u")).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_app_holding_the_id_is_reported_never_adopted() {
    let t = with_tenant().await;
    let app_id = crate::app_id::derive_app_id("acme-", &tid(), &ext("victim"));
    t.upstream.plant_app(
        app_id.as_str(),
        serde_json::json!({"owner": "someone else"}),
    );
    let err = t
        .service
        .provision(&actor(), &tid(), &ext("victim"), put_default())
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::Conflict(_)), "{err:?}");
    assert!(t.upstream.keys().is_empty());
    let u = t
        .store
        .get_user(&tid(), &ext("victim"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.status, UserStatus::Failed);
    assert_eq!(t.upstream.apps().len(), 1, "the foreign app is left alone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambiguous_key_create_is_adopted_by_its_marker() {
    let t = with_tenant().await;
    t.upstream
        .fault_on(Call::CreateKey, Fault::CommitThenLose, 1);
    let r = t
        .service
        .provision(&actor(), &tid(), &ext("amb"), put_default())
        .await
        .unwrap();
    assert!(r.created && r.secret.is_some());
    settle(&t).await;
    assert_one_app_one_key(&t, "amb");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_create_that_lands_after_the_look_up_is_swept_by_recovery() {
    // A create times out (no answer: it may still be processed), the look-up finds nothing, so
    // a second key is created; then the first create lands upstream after all.
    let t = with_tenant().await;
    let timed_out = UpstreamError::Unavailable {
        message: "timeout".into(),
        ambiguous: true,
    };
    t.upstream
        .fault_on(Call::CreateKey, Fault::Fail(timed_out), 1);
    let r = t
        .service
        .provision(&actor(), &tid(), &ext("late"), put_default())
        .await
        .unwrap();
    assert!(r.created);
    let app_id = r.user.app_id.as_str().to_owned();
    let marker = crate::marker::key_description(&r.user.app_id, 1);
    t.upstream.plant_key(
        &app_id,
        "late-landing-key",
        &marker,
        &["Predict", "Inputs:Get"],
    );
    t.upstream
        .plant_key(&app_id, "made-by-hand", "portal", &["Predict"]);
    let u = t
        .store
        .get_user(&tid(), &ext("late"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((u.status, u.step), (UserStatus::Active, Step::SweepKeys));
    assert!(u.lease.is_none());
    // Not before the late create must have landed.
    assert_eq!(t.service.run_recovery_pass(10).await.unwrap().examined, 0);

    settle(&t).await;

    let left: Vec<_> = t.upstream.keys().into_iter().map(|k| k.id).collect();
    assert!(!left.contains(&"late-landing-key".to_owned()), "{left:?}");
    assert!(
        left.contains(&"made-by-hand".to_owned()),
        "a key without our marker is reconciliation's business: {left:?}"
    );
    t.upstream.remove_key("made-by-hand");
    assert_one_app_one_key(&t, "late");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_upstream_keeps_the_intent_and_a_retry_resumes_it() {
    let t = with_tenant().await;
    let down = UpstreamError::Unavailable {
        message: "HTTP 503".into(),
        ambiguous: false,
    };
    t.upstream.fault_on(Call::CreateKey, Fault::Fail(down), 1);
    let err = t
        .service
        .provision(&actor(), &tid(), &ext("retry"), put_default())
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::UpstreamUnavailable(_)));
    let u = t
        .store
        .get_user(&tid(), &ext("retry"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (u.status, u.step),
        (UserStatus::Provisioning, Step::CreateKey)
    );
    assert!(u.lease.is_none() && u.last_error.is_some());
    let r = t
        .service
        .provision(&actor(), &tid(), &ext("retry"), put_default())
        .await
        .unwrap();
    assert!(r.created && r.secret.is_some());
    settle(&t).await;
    assert_one_app_one_key(&t, "retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_key_undoes_the_app() {
    let t = with_tenant().await;
    t.upstream.fault_on(
        Call::CreateKey,
        Fault::Fail(UpstreamError::Rejected("11102 invalid scope".into())),
        1,
    );
    let err = t
        .service
        .provision(&actor(), &tid(), &ext("rej"), put_default())
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::UpstreamRejected(_)), "{err:?}");
    assert!(
        t.upstream.apps().is_empty(),
        "the app made for it is deleted"
    );
    let u = t
        .store
        .get_user(&tid(), &ext("rej"))
        .await
        .unwrap()
        .unwrap();
    // A late look for the app is due (a create that got no answer could still land).
    assert_eq!((u.status, u.step), (UserStatus::Failed, Step::SweepApp));
    // A later PUT starts over and succeeds.
    let r = t
        .service
        .provision(&actor(), &tid(), &ext("rej"), put_default())
        .await
        .unwrap();
    assert!(r.created);
    // It looked for keys of earlier attempts first and sweeps once more when due.
    t.clock.advance(chrono::Duration::seconds(600));
    t.service.run_recovery_pass(100).await.unwrap();
    assert_one_app_one_key(&t, "rej");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_replaces_the_key_with_the_same_scopes() {
    let t = with_tenant().await;
    let first = t
        .service
        .provision(&actor(), &tid(), &ext("rot"), put_default())
        .await
        .unwrap();
    let old = first.secret.unwrap();
    let r = t
        .service
        .rotate_key(&actor(), &tid(), &ext("rot"), 0, false)
        .await
        .unwrap();
    let new = r.secret.unwrap();
    assert_ne!(old.expose(), new.expose());
    assert_eq!(r.user.scopes, first.user.scopes);
    assert!(r.user.retired_key.is_none());
    assert!(
        t.upstream.keys().iter().all(|k| k.id != old.expose()),
        "old key gone upstream"
    );
    assert_one_app_one_key(&t, "rot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_with_grace_keeps_two_keys_until_recovery_deletes_the_old_one() {
    let t = with_tenant().await;
    let old = t
        .service
        .provision(&actor(), &tid(), &ext("g"), put_default())
        .await
        .unwrap()
        .secret
        .unwrap();
    t.service
        .rotate_key(&actor(), &tid(), &ext("g"), 60, false)
        .await
        .unwrap();
    assert_eq!(t.upstream.keys().len(), 2);
    assert_eq!(
        t.service.lookup_key(&old).await.unwrap().1,
        ext("g"),
        "a key in grace is still looked up"
    );
    assert_eq!(
        t.service
            .run_recovery_pass(100)
            .await
            .unwrap()
            .retired_keys_deleted,
        0
    );
    t.clock.advance(chrono::Duration::seconds(61));
    assert_eq!(
        t.service
            .run_recovery_pass(100)
            .await
            .unwrap()
            .retired_keys_deleted,
        1
    );
    assert_one_app_one_key(&t, "g");
    // A second rotation during a grace period is refused unless it revokes the previous
    // key first: never three keys.
    t.service
        .rotate_key(&actor(), &tid(), &ext("g"), 60, false)
        .await
        .unwrap();
    let refused = t
        .service
        .rotate_key(&actor(), &tid(), &ext("g"), 60, false)
        .await;
    assert!(
        matches!(refused, Err(DomainError::Conflict(_))),
        "{refused:?}"
    );
    assert_eq!(t.upstream.keys().len(), 2);
    t.service
        .rotate_key(&actor(), &tid(), &ext("g"), 60, true)
        .await
        .unwrap();
    assert_eq!(t.upstream.keys().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deprovisioning_deletes_key_then_app_and_repeats_cleanly() {
    let t = with_tenant().await;
    t.service
        .provision(&actor(), &tid(), &ext("bye"), put_default())
        .await
        .unwrap();
    let before = t.upstream.calls().len();
    let u = t
        .service
        .deprovision(&actor(), &tid(), &ext("bye"))
        .await
        .unwrap();
    assert_eq!(u.status, UserStatus::Deleted);
    assert!(u.key.is_none());
    assert_eq!(
        t.upstream.calls()[before..],
        [Call::DeleteKey, Call::DeleteApp]
    );
    assert!(t.upstream.apps().is_empty() && t.upstream.keys().is_empty());
    let again = t
        .service
        .deprovision(&actor(), &tid(), &ext("bye"))
        .await
        .unwrap();
    assert_eq!(again.status, UserStatus::Deleted);
    // Re-provisioning a deleted user works and uses a new key generation.
    let r = t
        .service
        .provision(&actor(), &tid(), &ext("bye"), put_default())
        .await
        .unwrap();
    assert!(r.created);
    // Re-provisioning looked for late keys of earlier generations; its sweep runs when due.
    t.clock.advance(chrono::Duration::seconds(600));
    t.service.run_recovery_pass(100).await.unwrap();
    assert_one_app_one_key(&t, "bye");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_on_delete_is_done() {
    let t = with_tenant().await;
    let secret = t
        .service
        .provision(&actor(), &tid(), &ext("gone"), put_default())
        .await
        .unwrap()
        .secret
        .unwrap();
    t.upstream.remove_key(secret.expose());
    let u = t
        .service
        .deprovision(&actor(), &tid(), &ext("gone"))
        .await
        .unwrap();
    assert_eq!(u.status, UserStatus::Deleted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_fails_closed() {
    let t = with_tenant().await;
    t.store
        .fail_audit
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let err = t
        .service
        .put_profile(
            &actor(),
            &tid(),
            ProfileName::parse("x").unwrap(),
            scopes(&["Predict"]),
            KeyAgePolicy::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::Internal(_)));
    assert!(
        t.store
            .get_profile(&tid(), &ProfileName::parse("x").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    t.store
        .fail_audit
        .store(false, std::sync::atomic::Ordering::SeqCst);
    t.service
        .provision(&actor(), &tid(), &ext("r"), put_default())
        .await
        .unwrap();
    t.store
        .fail_audit
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(
        t.service
            .reveal_key(&actor(), &tid(), &ext("r"))
            .await
            .is_err(),
        "no reveal without its audit event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reveal_is_audited_with_the_request_id() {
    let t = with_tenant().await;
    let s = t
        .service
        .provision(&actor(), &tid(), &ext("rv"), put_default())
        .await
        .unwrap()
        .secret
        .unwrap();
    let r = t
        .service
        .reveal_key(&actor(), &tid(), &ext("rv"))
        .await
        .unwrap();
    assert_eq!(r.expose(), s.expose());
    let ev = t
        .store
        .audit_events()
        .into_iter()
        .find(|e| e.action == "user.reveal_key")
        .unwrap();
    assert_eq!(ev.request_id.as_deref(), Some("req-1"));
    assert_eq!(ev.actor, "tester");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_pat_is_refused_before_the_tenant_is_stored() {
    let t = service();
    let err = t
        .service
        .create_tenant(
            &actor(),
            NewTenant {
                id: tid(),
                display_name: "Acme".into(),
                base_url: "https://api.clarifai.example".into(),
                upstream_user_id: crate::ids::UpstreamUserId::parse("acme-ml").unwrap(),
                pat: Pat::parse("bad").unwrap(),
                app_defaults: None,
                rate_limit: None,
                allowed_scopes: scopes(&["Predict"]),
                default_scope_profile: None,
                scope_profiles: BTreeMap::new(),
                auto_key_check: None,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::Validation(_)), "{err:?}");
    assert!(t.store.get_tenant(&tid()).await.unwrap().is_none());
}

/// The operation a crash test interrupts.
#[derive(Debug, Clone, Copy)]
enum Op {
    Provision,
    Rotate,
    Deprovision,
}

/// Crashes the operation at upstream call `at` (before or after its effect), then lets the
/// lease expire and runs recovery: the invariants must hold. With `mint`, the upstream mints a
/// key with every app (the tenant checks `always`, the default): still one key per app.
async fn crash_case(op: Op, at: usize, commit: bool, mint: bool) -> bool {
    let t = with_tenant().await;
    t.upstream.set_auto_app_key(mint);
    let e = ext("crash");
    if !matches!(op, Op::Provision) {
        t.service
            .provision(&actor(), &tid(), &e, put_default())
            .await
            .unwrap();
    }
    let base = t.upstream.calls().len();
    t.upstream.fault_at(base + at, Fault::Hang { commit });
    let svc = t.service.clone();
    let e2 = e.clone();
    let fut = async move {
        match op {
            Op::Provision => svc
                .provision(&actor(), &tid(), &e2, put_default())
                .await
                .map(|_| ()),
            Op::Rotate => svc
                .rotate_key(&actor(), &tid(), &e2, 0, false)
                .await
                .map(|_| ()),
            Op::Deprovision => svc.deprovision(&actor(), &tid(), &e2).await.map(|_| ()),
        }
    };
    // The "process" dies when the call hangs: drop the future.
    let finished = tokio::time::timeout(std::time::Duration::from_millis(300), fut)
        .await
        .is_ok();
    if finished {
        return false; // fewer calls than `at`: nothing to crash
    }
    t.clock.advance(chrono::Duration::seconds(121));
    t.service.run_recovery_pass(100).await.unwrap();
    settle(&t).await;
    match op {
        Op::Provision | Op::Rotate => assert_one_app_one_key(&t, "crash"),
        Op::Deprovision => {
            let u = t.store.get_user(&tid(), &e).await.unwrap().unwrap();
            assert_eq!(
                u.status,
                UserStatus::Deleted,
                "{op:?} at {at} commit={commit}"
            );
            assert!(t.upstream.apps().is_empty() && t.upstream.keys().is_empty());
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_every_upstream_call_is_recovered() {
    for mint in [false, true] {
        for op in [Op::Provision, Op::Rotate, Op::Deprovision] {
            let mut crashed = 0;
            for at in 0..8 {
                for commit in [false, true] {
                    if crash_case(op, at, commit, mint).await {
                        crashed += 1;
                    }
                }
            }
            // Provisioning makes three calls (app, look at its keys, key), four when a key
            // was minted; rotation and deprovisioning two.
            let least = match (op, mint) {
                (Op::Provision, false) => 6,
                (Op::Provision, true) => 8,
                _ => 4,
            };
            assert!(
                crashed >= least,
                "{op:?} mint={mint}: each of its calls was crashed ({crashed})"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_retries_failing_cleanup_with_backoff_and_keeps_it_visible() {
    let t = with_tenant().await;
    t.service
        .provision(&actor(), &tid(), &ext("dd"), put_default())
        .await
        .unwrap();
    let down = UpstreamError::Unavailable {
        message: "HTTP 500".into(),
        ambiguous: false,
    };
    t.upstream.fault_on(Call::DeleteKey, Fault::Fail(down), 3);
    assert!(
        t.service
            .deprovision(&actor(), &tid(), &ext("dd"))
            .await
            .is_err()
    );
    for _ in 0..2 {
        t.clock.advance(chrono::Duration::seconds(600));
        let rep = t.service.run_recovery_pass(10).await.unwrap();
        assert_eq!(rep.failed, 1);
        let u = t.store.get_user(&tid(), &ext("dd")).await.unwrap().unwrap();
        assert_eq!(u.status, UserStatus::Deprovisioning);
        assert!(u.last_error.is_some() && u.attempts >= 2);
    }
    // Not due before its backoff has passed.
    assert_eq!(t.service.run_recovery_pass(10).await.unwrap().examined, 0);
    t.clock.advance(chrono::Duration::seconds(600));
    assert_eq!(t.service.run_recovery_pass(10).await.unwrap().completed, 1);
    assert!(t.upstream.apps().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_releases_its_leases_so_a_retry_resumes_at_once() {
    // Arrange: a provisioning cut off while its key create hangs (the shutdown's drop).
    let t = with_tenant().await;
    let base = t.upstream.calls().len();
    t.upstream.fault_at(base + 1, Fault::Hang { commit: true });
    let svc = t.service.clone();
    let cut = tokio::time::timeout(std::time::Duration::from_millis(200), async move {
        svc.provision(&actor(), &tid(), &ext("cut"), put_default())
            .await
    })
    .await;
    assert!(cut.is_err(), "the call was cut off");
    assert!(
        t.store
            .get_user(&tid(), &ext("cut"))
            .await
            .unwrap()
            .unwrap()
            .lease
            .is_some()
    );
    // Act: the instance releases its own leases; the clock does not move.
    assert_eq!(t.service.release_own_leases().await.unwrap(), 1);
    // Assert: a retry resumes at once, adopts the key the cut-off call made, one key in all.
    let r = t
        .service
        .provision(&actor(), &tid(), &ext("cut"), put_default())
        .await
        .unwrap();
    assert!(r.created && r.secret.is_some());
    t.clock.advance(chrono::Duration::seconds(3600));
    t.service.run_recovery_pass(10).await.unwrap();
    assert_one_app_one_key(&t, "cut");
}
