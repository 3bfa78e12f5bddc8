//! SCIM over in-memory ports: the mapping onto provisioning (create, deactivate under both
//! policies, reactivate, delete), tokens, uniqueness, and a seeded search that crashes the sync
//! at random upstream calls between random SCIM writes and checks that the upstream always ends
//! in the state the last write and the policy ask for.

use super::tests::{actor, assert_one_app_one_key, ext, tid, with_tenant};
use super::*;
use crate::model::{Step, UserStatus};
use crate::ports::{ScimStore, UserStore};
use crate::scim::{DeactivatePolicy, ExternalIdSource, ScimAttributes, ScimConfig, ScimQuery};
use crate::testing::{Fault, TestService};

fn attrs(user_name: &str, active: bool) -> ScimAttributes {
    ScimAttributes {
        user_name: user_name.into(),
        active,
        ..Default::default()
    }
}

async fn set_policy(t: &TestService, policy: DeactivatePolicy) {
    let mut c = ScimConfig::default_for(&tid());
    c.on_deactivate = policy;
    t.service.put_scim_config(&actor(), c).await.unwrap();
}

async fn set_active(t: &TestService, id: &str, active: bool) {
    t.service
        .scim_modify_user(&actor(), &tid(), id, "scim.user.patch", |u| {
            let mut a = u.attrs.clone();
            a.active = active;
            Ok::<_, ()>(a)
        })
        .await
        .unwrap();
}

/// Runs recovery and the sync until nothing is left to do (moving the clock past leases,
/// back-offs and claims).
async fn quiesce(t: &TestService) {
    for _ in 0..30 {
        t.clock.advance(chrono::Duration::seconds(400));
        t.service.run_recovery_pass(100).await.unwrap();
        let r = t.service.run_scim_sync_pass(100).await.unwrap();
        let due = t.store.due_users(t.clock.now(), 10).await.unwrap();
        if r.claimed == 0 && due.is_empty() {
            return;
        }
    }
    panic!("SCIM sync did not settle");
}

/// Suspended: the app is kept (with this user's marker), no key is left on it.
fn assert_suspended(t: &TestService, name: &str) {
    let u = futures_block(t.store.get_user(&tid(), &ext(name)))
        .unwrap()
        .unwrap();
    assert_eq!(u.status, UserStatus::Suspended, "{u:?}");
    assert!(u.key.is_none() && u.retired_key.is_none());
    assert_eq!(
        t.upstream
            .apps()
            .iter()
            .filter(|a| a.id == u.app_id.as_str())
            .count(),
        1
    );
    let keys: Vec<_> = t
        .upstream
        .keys()
        .into_iter()
        .filter(|k| k.app_id == u.app_id.as_str())
        .collect();
    assert!(
        keys.is_empty(),
        "keys left on a suspended user's app: {keys:?}"
    );
}

fn assert_gone(t: &TestService, name: &str) {
    let u = futures_block(t.store.get_user(&tid(), &ext(name)))
        .unwrap()
        .unwrap();
    assert_eq!(u.status, UserStatus::Deleted, "{u:?}");
    assert!(t.upstream.apps().is_empty(), "{:?}", t.upstream.apps());
    assert!(t.upstream.keys().is_empty());
}

/// Changes a user's recorded scopes behind the service's back (as an operator's repair or a
/// tenant change would leave them), under a lease as every writer does; the previous scopes.
async fn force_scopes(
    t: &TestService,
    external_id: &crate::ids::ExternalId,
    scopes: crate::scope::ScopeSet,
) -> crate::scope::ScopeSet {
    let now = t.clock.now();
    let lease = crate::model::Lease {
        owner: "test-owner".into(),
        expires_at: now + chrono::Duration::seconds(5),
    };
    let mut row = t
        .store
        .acquire_lease(&tid(), external_id, &lease, now, None)
        .await
        .unwrap()
        .expect("leased");
    let previous = std::mem::replace(&mut row.scopes, scopes);
    row.lease = None;
    t.store.update_user(&row, "test-owner", None).await.unwrap();
    previous
}

fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assign_deactivate_reactivate_delete_under_revoke_key() {
    let t = with_tenant().await;
    let u = t
        .service
        .scim_create_user(&actor(), &tid(), attrs("ann@acme.example", true), None)
        .await
        .unwrap();
    // Answered before anything happened upstream.
    assert!(t.upstream.apps().is_empty());
    assert!(
        t.store
            .get_user(&tid(), &u.external_id)
            .await
            .unwrap()
            .is_none()
    );
    quiesce(&t).await;
    assert_one_app_one_key(&t, "ann@acme.example");
    let first = t
        .store
        .get_user(&tid(), &u.external_id)
        .await
        .unwrap()
        .unwrap();
    // The secret reached no one: the next PUT (or reveal-key) hands it over.
    assert!(first.secret_pending);
    let app = first.app_id.clone();

    set_active(&t, &u.id, false).await;
    quiesce(&t).await;
    assert_suspended(&t, "ann@acme.example");

    set_active(&t, &u.id, true).await;
    quiesce(&t).await;
    assert_one_app_one_key(&t, "ann@acme.example");
    let again = t
        .store
        .get_user(&tid(), &u.external_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.app_id, app, "reactivation keeps the app");
    assert_eq!(again.scopes, first.scopes, "same scopes");
    assert!(again.generation > first.generation);
    assert_ne!(
        again.key.unwrap().fingerprint,
        first.key.unwrap().fingerprint
    );

    t.service
        .scim_delete_user(&actor(), &tid(), &u.id)
        .await
        .unwrap();
    assert!(matches!(
        t.service.scim_get_user(&tid(), &u.id).await,
        Err(DomainError::NotFound(_))
    ));
    quiesce(&t).await;
    assert_gone(&t, "ann@acme.example");
    // The synced deletion is removed (no attributes of the person are kept).
    assert!(
        t.store
            .get_scim_user(&tid(), &u.id)
            .await
            .unwrap()
            .is_none()
    );
    let actions: Vec<String> = t
        .store
        .audit_events()
        .into_iter()
        .map(|e| e.action)
        .collect();
    for a in [
        "scim.user.create",
        "scim.user.patch",
        "scim.user.delete",
        "user.suspend",
        "user.reactivate",
        "user.deprovision",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} not audited: {actions:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivation_under_deprovision_deletes_the_app_and_reactivation_provisions_anew() {
    let t = with_tenant().await;
    set_policy(&t, DeactivatePolicy::Deprovision).await;
    let u = t
        .service
        .scim_create_user(&actor(), &tid(), attrs("bob", true), None)
        .await
        .unwrap();
    quiesce(&t).await;
    assert_one_app_one_key(&t, "bob");
    set_active(&t, &u.id, false).await;
    quiesce(&t).await;
    assert_gone(&t, "bob");
    set_active(&t, &u.id, true).await;
    quiesce(&t).await;
    assert_one_app_one_key(&t, "bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_names_are_unique_case_insensitively_and_renames_keep_the_external_id() {
    let t = with_tenant().await;
    let u = t
        .service
        .scim_create_user(&actor(), &tid(), attrs("Ann@Acme.example", true), None)
        .await
        .unwrap();
    let dup = t
        .service
        .scim_create_user(&actor(), &tid(), attrs("ann@ACME.example", true), None)
        .await;
    assert!(matches!(dup, Err(DomainError::Conflict(_))), "{dup:?}");
    // A filter on userName matches case-insensitively.
    let (found, total) = t
        .service
        .scim_list_users(
            &tid(),
            &ScimQuery {
                user_name_key: Some(crate::scim::user_name_key("ANN@acme.EXAMPLE")),
                ..Default::default()
            },
            1,
            10,
        )
        .await
        .unwrap();
    assert_eq!((found.len(), total), (1, 1));
    quiesce(&t).await;
    let renamed = t
        .service
        .scim_modify_user(&actor(), &tid(), &u.id, "scim.user.patch", |u| {
            let mut a = u.attrs.clone();
            a.user_name = "ann.new@acme.example".into();
            Ok::<_, ()>(a)
        })
        .await
        .unwrap();
    assert_eq!(renamed.external_id, u.external_id);
    quiesce(&t).await;
    // Still one app: the rename created nothing.
    assert_eq!(t.upstream.apps().len(), 1);
    assert_one_app_one_key(&t, "Ann@Acme.example");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_id_source_and_profile_attribute_are_per_tenant() {
    let t = with_tenant().await;
    let mut c = ScimConfig::default_for(&tid());
    c.external_id_from = ExternalIdSource::ExternalId;
    c.profile_attribute = Some("userType".into());
    t.service.put_scim_config(&actor(), c).await.unwrap();
    let missing = t
        .service
        .scim_create_user(&actor(), &tid(), attrs("carol", true), None)
        .await;
    assert!(
        matches!(missing, Err(DomainError::Invalid(_))),
        "{missing:?}"
    );
    let mut a = attrs("carol", true);
    a.external_id = Some("00u-carol".into());
    let u = t
        .service
        .scim_create_user(&actor(), &tid(), a, Some("annotator".into()))
        .await
        .unwrap();
    assert_eq!(u.external_id.as_str(), "00u-carol");
    quiesce(&t).await;
    let p = t
        .store
        .get_user(&tid(), &u.external_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        p.scopes,
        crate::scope::ScopeSet::parse(&["Inputs:Get", "Inputs:Add", "Concepts:Get"]).unwrap()
    );
    // An unknown profile name falls back to the tenant's default.
    let mut b = attrs("dan", true);
    b.external_id = Some("00u-dan".into());
    let v = t
        .service
        .scim_create_user(&actor(), &tid(), b, Some("no-such-profile".into()))
        .await
        .unwrap();
    assert!(v.profile.is_none());
    // An unknown scope profile in the settings is refused.
    let mut bad = ScimConfig::default_for(&tid());
    bad.scope_profile = Some(crate::ids::ProfileName::parse("nope").unwrap());
    assert!(matches!(
        t.service.put_scim_config(&actor(), bad).await,
        Err(DomainError::Validation(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_act_for_one_tenant_and_a_new_one_retires_the_old_after_the_overlap() {
    let t = with_tenant().await;
    let first = t
        .service
        .issue_scim_token(&actor(), &tid(), 0)
        .await
        .unwrap();
    let s1 = secrecy::ExposeSecret::expose_secret(&first.secret).to_owned();
    assert!(s1.starts_with(SCIM_TOKEN_PREFIX));
    assert!(!format!("{first:?}").contains(&s1), "secret in Debug");
    assert_eq!(t.service.authenticate_scim(&s1).await.unwrap(), Some(tid()));
    assert_eq!(
        t.service.authenticate_scim("scim_nope").await.unwrap(),
        None
    );
    assert_eq!(t.service.authenticate_scim("").await.unwrap(), None);
    let second = t
        .service
        .issue_scim_token(&actor(), &tid(), 3600)
        .await
        .unwrap();
    let s2 = secrecy::ExposeSecret::expose_secret(&second.secret).to_owned();
    // Both work during the overlap, only the new one after it.
    assert!(t.service.authenticate_scim(&s1).await.unwrap().is_some());
    t.clock.advance(chrono::Duration::seconds(3601));
    assert_eq!(t.service.authenticate_scim(&s1).await.unwrap(), None);
    assert_eq!(t.service.authenticate_scim(&s2).await.unwrap(), Some(tid()));
    // Stored hashed, listed without secrets; revoked at once.
    let listed = t.service.list_scim_tokens(&tid()).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|k| k.hash != s2 && !k.hash.contains(&s2)));
    t.service
        .revoke_scim_token(&actor(), &tid(), &second.token.id)
        .await
        .unwrap();
    assert_eq!(t.service.authenticate_scim(&s2).await.unwrap(), None);
    assert!(matches!(
        t.service
            .issue_scim_token(&actor(), &tid(), MAX_TOKEN_OVERLAP_SECONDS + 1)
            .await,
        Err(DomainError::Validation(_))
    ));
}

/// A person deleted and created again (same userName) gets a new app and key: the deletion is
/// never skipped; the new SCIM user is refused (409) until it has been carried out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_deleted_and_created_again_gets_a_new_app_and_key() {
    let t = with_tenant().await;
    for suspended_first in [false, true] {
        let name = if suspended_first { "eve2" } else { "eve" };
        let u = t
            .service
            .scim_create_user(&actor(), &tid(), attrs(name, true), None)
            .await
            .unwrap();
        quiesce(&t).await;
        let before = t.store.get_user(&tid(), &ext(name)).await.unwrap().unwrap();
        if suspended_first {
            set_active(&t, &u.id, false).await;
            quiesce(&t).await;
        }
        t.service
            .scim_delete_user(&actor(), &tid(), &u.id)
            .await
            .unwrap();
        let early = t
            .service
            .scim_create_user(&actor(), &tid(), attrs(name, true), None)
            .await;
        assert!(matches!(early, Err(DomainError::Conflict(_))), "{early:?}");
        quiesce(&t).await;
        let again = t
            .service
            .scim_create_user(&actor(), &tid(), attrs(name, true), None)
            .await
            .unwrap();
        assert_ne!(again.id, u.id, "ids are never reused");
        quiesce(&t).await;
        assert_one_app_one_key(&t, name);
        let after = t.store.get_user(&tid(), &ext(name)).await.unwrap().unwrap();
        assert!(after.generation > before.generation);
        let old = before.key.unwrap().fingerprint;
        assert!(
            t.upstream.keys().iter().all(|k| crate::secret::fingerprint(
                &secrecy::SecretString::from(k.id.clone())
            ) != old),
            "the deleted person's key survived"
        );
        t.service
            .scim_delete_user(&actor(), &tid(), &again.id)
            .await
            .unwrap();
        quiesce(&t).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_user_put_through_v1_then_suspended_refuses_put_and_rotation() {
    let t = with_tenant().await;
    let u = t
        .service
        .scim_create_user(&actor(), &tid(), attrs("fay", true), None)
        .await
        .unwrap();
    quiesce(&t).await;
    set_active(&t, &u.id, false).await;
    quiesce(&t).await;
    let e = ext("fay");
    let put = t
        .service
        .provision(&actor(), &tid(), &e, super::tests::put_default())
        .await;
    assert!(matches!(put, Err(DomainError::Conflict(_))), "{put:?}");
    let rot = t.service.rotate_key(&actor(), &tid(), &e, 0, false).await;
    assert!(matches!(rot, Err(DomainError::Conflict(_))), "{rot:?}");
    assert!(matches!(
        t.service.reveal_key(&actor(), &tid(), &e).await,
        Err(DomainError::Conflict(_))
    ));
    // DELETE through /v1 still deprovisions.
    t.service.deprovision(&actor(), &tid(), &e).await.unwrap();
    assert_gone(&t, "fay");
}

/// A seeded search: random SCIM writes, each followed (or not) by a sync that crashes at a
/// random upstream call, with or without its effect; then everything settles and the upstream
/// must be exactly what the last write and the policy say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_scim_histories_with_crashes_end_in_the_state_the_policy_says() {
    let seeds: u64 = std::env::var("SCIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    let mut crashes = 0;
    for seed in 0..seeds {
        let mut rng = fastrand::Rng::with_seed(seed);
        let t = with_tenant().await;
        t.upstream.set_auto_app_key(rng.bool());
        let policy = if rng.bool() {
            DeactivatePolicy::RevokeKey
        } else {
            DeactivatePolicy::Deprovision
        };
        set_policy(&t, policy).await;
        let u = t
            .service
            .scim_create_user(&actor(), &tid(), attrs("pat", true), None)
            .await
            .unwrap();
        let mut active = true;
        let mut deleted = false;
        for _ in 0..rng.usize(1..6) {
            if rng.u8(..10) == 0 {
                t.service
                    .scim_delete_user(&actor(), &tid(), &u.id)
                    .await
                    .unwrap();
                deleted = true;
                break;
            }
            active = rng.bool();
            set_active(&t, &u.id, active).await;
            if rng.bool() {
                let base = t.upstream.calls().len();
                t.upstream
                    .fault_at(base + rng.usize(0..5), Fault::Hang { commit: rng.bool() });
                let svc = t.service.clone();
                let done =
                    tokio::time::timeout(std::time::Duration::from_millis(200), async move {
                        svc.run_scim_sync_pass(10).await
                    })
                    .await
                    .is_ok();
                if !done {
                    crashes += 1;
                }
                t.upstream.clear_faults();
            }
        }
        quiesce(&t).await;
        let user = t.store.get_user(&tid(), &ext("pat")).await.unwrap();
        let ctx =
            format!("seed {seed} policy {policy:?} active {active} deleted {deleted}: {user:?}");
        match (deleted, active, policy) {
            (true, _, _) => {
                if let Some(user) = user {
                    assert!(
                        matches!(user.status, UserStatus::Deleted | UserStatus::Failed),
                        "{ctx}"
                    );
                }
                assert!(
                    t.upstream.apps().is_empty() && t.upstream.keys().is_empty(),
                    "{ctx}"
                );
            }
            (false, true, _) => assert_one_app_one_key(&t, "pat"),
            (false, false, DeactivatePolicy::RevokeKey) => {
                // Never provisioned when it was deactivated before its first sync.
                if let Some(user) = user {
                    assert!(matches!(user.status, UserStatus::Suspended), "{ctx}");
                    assert_eq!(user.step, Step::Idle, "{ctx}");
                }
                assert!(
                    t.upstream.keys().is_empty(),
                    "{ctx}: {:?}",
                    t.upstream.keys()
                );
                assert!(t.upstream.apps().len() <= 1, "{ctx}");
            }
            (false, false, DeactivatePolicy::Deprovision) => {
                if let Some(user) = user {
                    assert!(
                        matches!(user.status, UserStatus::Deleted | UserStatus::Failed),
                        "{ctx}"
                    );
                }
                assert!(
                    t.upstream.apps().is_empty() && t.upstream.keys().is_empty(),
                    "{ctx}"
                );
            }
        }
        let scim = t.store.get_scim_user(&tid(), &u.id).await.unwrap();
        if let Some(s) = scim {
            assert_eq!(s.synced_version, s.version, "{ctx}");
        }
    }
    assert!(seeds < 8 || crashes > 0, "the search never crashed a sync");
}

/// A key create that got no answer may land upstream at any time: a marked key the row does
/// not record is deleted by the suspension (before it) and by its late sweep (after it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marked_keys_the_row_does_not_record_do_not_survive_a_suspension() {
    let t = with_tenant().await;
    let u = t
        .service
        .scim_create_user(&actor(), &tid(), attrs("gus", true), None)
        .await
        .unwrap();
    quiesce(&t).await;
    let row = t
        .store
        .get_user(&tid(), &u.external_id)
        .await
        .unwrap()
        .unwrap();
    let marker = crate::marker::key_description(&row.app_id, row.generation);
    t.upstream
        .plant_key(row.app_id.as_str(), "landed-before", &marker, &["Predict"]);
    set_active(&t, &u.id, false).await;
    t.service.run_scim_sync_pass(10).await.unwrap();
    let keys = t.upstream.keys();
    assert!(keys.is_empty(), "the suspension left {keys:?}");
    // One lands after the suspension listed the app's keys.
    t.upstream
        .plant_key(row.app_id.as_str(), "landed-after", &marker, &["Predict"]);
    quiesce(&t).await;
    assert_suspended(&t, "gus");
}

/// A write while a sync of an earlier version runs does not let a second worker sync the same
/// SCIM user at once (the older sync, finishing last, would undo the newer state).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_keeps_the_claim_of_a_running_sync() {
    let t = with_tenant().await;
    let u = t
        .service
        .scim_create_user(&actor(), &tid(), attrs("hal", true), None)
        .await
        .unwrap();
    quiesce(&t).await;
    set_active(&t, &u.id, false).await;
    // Worker A claims the deactivation...
    let now = t.clock.now();
    let claimed = t
        .store
        .claim_scim_sync(now, now + chrono::Duration::seconds(120), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    // ...the person is reactivated meanwhile: no other worker takes the row while A runs.
    set_active(&t, &u.id, true).await;
    let r = t.service.run_scim_sync_pass(10).await.unwrap();
    assert_eq!(r.claimed, 0, "a second worker took a claimed SCIM user");
    // Once A's claim ends, the newest version is synced.
    quiesce(&t).await;
    assert_one_app_one_key(&t, "hal");
}

/// A write made on a read taken before a sync claimed the row does not clear that claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_a_read_older_than_the_claim_keeps_the_claim() {
    let t = with_tenant().await;
    let u = t
        .service
        .scim_create_user(&actor(), &tid(), attrs("ann", true), None)
        .await
        .unwrap();
    let claimed_inside = std::sync::atomic::AtomicBool::new(false);
    t.service
        .scim_modify_user(&actor(), &tid(), &u.id, "scim.user.patch", |cur| {
            if !claimed_inside.swap(true, std::sync::atomic::Ordering::SeqCst) {
                let now = t.clock.now();
                let got = futures_block(t.store.claim_scim_sync(
                    now,
                    now + chrono::Duration::seconds(120),
                    10,
                ))
                .unwrap();
                assert_eq!(got.len(), 1);
            }
            let mut a = cur.attrs.clone();
            a.active = false;
            Ok::<_, ()>(a)
        })
        .await
        .unwrap();
    let now = t.clock.now();
    let second = t
        .store
        .claim_scim_sync(now, now + chrono::Duration::seconds(120), 10)
        .await
        .unwrap();
    assert!(second.is_empty(), "a second worker took a claimed row");
}

/// A refused PAT is not final: once it works again, the person is provisioned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_refused_by_the_upstream_is_tried_again() {
    let t = with_tenant().await;
    t.upstream.fault_on(
        crate::testing::Call::CreateApp,
        Fault::Fail(crate::error::UpstreamError::Unauthorized("bad PAT".into())),
        3,
    );
    t.service
        .scim_create_user(&actor(), &tid(), attrs("ivy", true), None)
        .await
        .unwrap();
    t.service.run_scim_sync_pass(10).await.unwrap();
    t.upstream.clear_faults();
    quiesce(&t).await;
    assert_one_app_one_key(&t, "ivy");
}

/// A key without this service's marker that reaches only the deactivated person's app (one
/// the upstream minted with it, or one made by hand) is deleted by the suspension too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_deletes_unmarked_keys_that_reach_only_the_app() {
    let t = with_tenant().await;
    let u = t
        .service
        .scim_create_user(&actor(), &tid(), attrs("kim", true), None)
        .await
        .unwrap();
    quiesce(&t).await;
    let row = t
        .store
        .get_user(&tid(), &u.external_id)
        .await
        .unwrap()
        .unwrap();
    t.upstream
        .plant_key(row.app_id.as_str(), "by-hand", "made by hand", &["All"]);
    t.upstream.plant_shared_key(
        row.app_id.as_str(),
        "someone-elses-app",
        "shared",
        &["Predict"],
    );
    set_active(&t, &u.id, false).await;
    quiesce(&t).await;
    let left: Vec<String> = t
        .upstream
        .keys()
        .into_iter()
        .filter(|k| k.app_id == row.app_id.as_str())
        .map(|k| k.id)
        .collect();
    assert_eq!(
        left,
        vec!["shared".to_owned()],
        "only the key reaching another app stays"
    );
}

/// Reactivation after the tenant narrowed its allowed scopes creates no key with scopes it no
/// longer allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactivation_respects_the_scopes_the_tenant_allows_now() {
    let t = with_tenant().await;
    let u = t
        .service
        .scim_create_user(&actor(), &tid(), attrs("lee", true), None)
        .await
        .unwrap();
    quiesce(&t).await;
    set_active(&t, &u.id, false).await;
    quiesce(&t).await;
    force_scopes(
        &t,
        &u.external_id,
        crate::scope::ScopeSet::parse(&["Predict", "Models:Add"]).unwrap(),
    )
    .await;
    set_active(&t, &u.id, true).await;
    quiesce(&t).await;
    assert!(t.upstream.keys().is_empty(), "{:?}", t.upstream.keys());
    let after = t
        .store
        .get_user(&tid(), &u.external_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.status, UserStatus::Suspended);
    let s = t.store.get_scim_user(&tid(), &u.id).await.unwrap().unwrap();
    assert!(
        s.sync_error.is_some_and(|e| e.contains("scope")),
        "refusal recorded"
    );
}

/// Under `deprovision`, a person the identity provider deactivated is `deleted`: a /v1 PUT (or
/// a bulk job) may not provision it anew behind the identity provider's back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_cannot_reprovision_a_user_its_identity_provider_deactivated() {
    let t = with_tenant().await;
    set_policy(&t, DeactivatePolicy::Deprovision).await;
    let u = t
        .service
        .scim_create_user(&actor(), &tid(), attrs("max", true), None)
        .await
        .unwrap();
    quiesce(&t).await;
    set_active(&t, &u.id, false).await;
    quiesce(&t).await;
    assert_gone(&t, "max");
    let put = t
        .service
        .provision(&actor(), &tid(), &ext("max"), super::tests::put_default())
        .await;
    assert!(matches!(put, Err(DomainError::Conflict(_))), "{put:?}");
    assert!(t.upstream.apps().is_empty());
    // Reactivated by the identity provider: provisioned again.
    set_active(&t, &u.id, true).await;
    quiesce(&t).await;
    assert_one_app_one_key(&t, "max");
}

/// The SCIM profile cannot be deleted from under the settings; a per-user profile deleted
/// after creation falls back to the default; a refused sync is tried again when the identity
/// provider sends the same state again; profile names from an attribute match in any case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_in_use_by_scim_and_refused_syncs_recover() {
    let t = with_tenant().await;
    let annotator = crate::ids::ProfileName::parse("annotator").unwrap();
    let mut c = ScimConfig::default_for(&tid());
    c.scope_profile = Some(annotator.clone());
    c.profile_attribute = Some("userType".into());
    t.service.put_scim_config(&actor(), c).await.unwrap();
    assert!(matches!(
        t.service.delete_profile(&actor(), &tid(), &annotator).await,
        Err(DomainError::Conflict(_))
    ));
    t.service
        .put_scim_config(&actor(), ScimConfig::default_for(&tid()))
        .await
        .unwrap();
    let u = t
        .service
        .scim_create_user(
            &actor(),
            &tid(),
            attrs("nia", true),
            Some(" Annotator ".into()),
        )
        .await
        .unwrap();
    assert_eq!(u.profile.as_ref(), Some(&annotator), "matched in any case");
    t.service
        .delete_profile(&actor(), &tid(), &annotator)
        .await
        .unwrap();
    quiesce(&t).await;
    // Provisioned with the default profile ("standard") instead.
    let row = t
        .store
        .get_user(&tid(), &u.external_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.scopes,
        crate::scope::ScopeSet::parse(&["Predict", "Inputs:Get"]).unwrap()
    );

    // A refusal (scopes no longer allowed at reactivation) is retried on an identical write.
    set_active(&t, &u.id, false).await;
    quiesce(&t).await;
    let good = force_scopes(
        &t,
        &u.external_id,
        crate::scope::ScopeSet::parse(&["Predict", "Models:Add"]).unwrap(),
    )
    .await;
    set_active(&t, &u.id, true).await;
    quiesce(&t).await;
    let s = t.store.get_scim_user(&tid(), &u.id).await.unwrap().unwrap();
    assert!(s.sync_error.is_some());
    // The operator fixes the cause; the identity provider sends the same state again.
    force_scopes(&t, &u.external_id, good).await;
    set_active(&t, &u.id, true).await;
    quiesce(&t).await;
    assert_one_app_one_key(&t, "nia");
    // A SCIM id that is no UUID is not found without a look-up.
    assert!(matches!(
        t.service.scim_get_user(&tid(), "a\u{0}b").await,
        Err(DomainError::NotFound(_))
    ));
}
