//! Issue 7's defects, one test each: interleavings the first tests missed (a crash between two
//! awaits, a read gone stale before the lease, a holder that lost its lease, one bad row).

use std::time::Duration;

use super::tests::{actor, assert_one_app_one_key, ext, put_default, tid, with_tenant};
use super::*;
use crate::app_id::derive_app_id;
use crate::model::{Lease, Step, UserStatus};
use crate::ports::{TenantStore, UserStore};
use crate::testing::{Call, Fault, TestService, test_config};

/// Runs `fut` until it ends or `ms` pass; the drop at the deadline is a crash at whatever await
/// it was in.
async fn crash_after<F: std::future::Future>(ms: u64, fut: F) -> Option<F::Output> {
    tokio::time::timeout(Duration::from_millis(ms), fut)
        .await
        .ok()
}

fn lease_ttl() -> chrono::Duration {
    chrono::Duration::from_std(test_config().lease_ttl + test_config().max_clock_skew).unwrap()
        + chrono::Duration::milliseconds(1)
}

async fn user(t: &TestService, id: &str) -> crate::model::User {
    t.store.get_user(&tid(), &ext(id)).await.unwrap().unwrap()
}

async fn provisioned(t: &TestService, id: &str) -> crate::secret::KeySecret {
    t.service
        .provision(&actor(), &tid(), &ext(id), put_default())
        .await
        .unwrap()
        .secret
        .unwrap()
}

/// Defect 1: a rotation's grace period survives a crash; recovery finishes the rotation and
/// keeps the old key for the grace the caller asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_finished_by_recovery_keeps_its_grace_period() {
    let t = with_tenant().await;
    let old = provisioned(&t, "g").await;
    // The key create lands upstream, then the process dies.
    t.upstream
        .fault_on(Call::CreateKey, Fault::Hang { commit: true }, 1);
    let cut = crash_after(
        200,
        t.service
            .rotate_key(&actor(), &tid(), &ext("g"), 3600, false),
    )
    .await;
    assert!(cut.is_none(), "the rotation was cut off");
    t.clock.advance(lease_ttl());
    t.service.run_recovery_pass(10).await.unwrap();
    let u = user(&t, "g").await;
    assert_eq!(u.status, UserStatus::Active);
    let retired = u
        .retired_key
        .expect("the old key is kept for its grace period");
    assert_eq!(retired.fingerprint, old.fingerprint());
    assert!(retired.delete_after > t.clock.now() + chrono::Duration::seconds(3500));
    assert_eq!(
        t.upstream.keys().len(),
        2,
        "both keys live during the grace"
    );
    // The new key reached no caller: the next PUT carries it once (defect 13).
    let put = t
        .service
        .provision(&actor(), &tid(), &ext("g"), put_default())
        .await
        .unwrap();
    let secret = put.secret.expect("the undelivered secret, once");
    assert!(!put.created);
    assert_eq!(secret.fingerprint(), u.key.unwrap().fingerprint);
    let again = t
        .service
        .provision(&actor(), &tid(), &ext("g"), put_default())
        .await
        .unwrap();
    assert!(again.secret.is_none(), "never twice");
    assert!(
        t.store
            .audit_events()
            .iter()
            .any(|e| e.action == "user.secret_delivered")
    );
    // And the grace ends on time.
    t.clock.advance(chrono::Duration::seconds(3601));
    t.service.run_recovery_pass(10).await.unwrap();
    assert_one_app_one_key(&t, "g");
}

/// Defect 1, through a PUT on the `rotating` user instead of recovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_finished_by_a_put_keeps_its_grace_period() {
    let t = with_tenant().await;
    provisioned(&t, "p").await;
    t.upstream
        .fault_on(Call::CreateKey, Fault::Hang { commit: false }, 1);
    let cut = crash_after(
        200,
        t.service
            .rotate_key(&actor(), &tid(), &ext("p"), 600, false),
    )
    .await;
    assert!(cut.is_none());
    t.clock.advance(lease_ttl());
    let put = t
        .service
        .provision(&actor(), &tid(), &ext("p"), put_default())
        .await
        .unwrap();
    assert!(put.secret.is_some(), "the finished rotation's key, once");
    let u = user(&t, "p").await;
    assert!(
        u.retired_key.expect("grace kept").delete_after
            > t.clock.now() + chrono::Duration::seconds(500)
    );
    assert_eq!(t.upstream.keys().len(), 2);
}

/// Defect 2: a clash on the stored (tenant, app id) index picks another app id instead of
/// spinning, and the marker names the user beyond the short hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_id_clash_picks_another_id_instead_of_spinning() {
    let t = with_tenant().await;
    provisioned(&t, "squatter").await;
    // The squatter's row holds the id the victim derives (as a 32-bit hash clash would).
    let tenant = t.store.get_tenant(&tid()).await.unwrap().unwrap();
    let victim_id = derive_app_id(&tenant.app_defaults.id_prefix, &tid(), &ext("victim"));
    let mut squatter = user(&t, "squatter").await;
    let lease = Lease {
        owner: "test".into(),
        expires_at: t.clock.now() + chrono::Duration::seconds(60),
    };
    t.store
        .acquire_lease(&tid(), &ext("squatter"), &lease, t.clock.now(), None)
        .await
        .unwrap()
        .unwrap();
    squatter.app_id = victim_id.clone();
    squatter.lease = None;
    t.store.update_user(&squatter, "test", None).await.unwrap();

    let out = crash_after(
        5_000,
        t.service
            .provision(&actor(), &tid(), &ext("victim"), put_default()),
    )
    .await
    .expect("provisioning ends")
    .unwrap();
    assert_ne!(out.user.app_id, victim_id, "another stored app id");
    assert!(out.created);
    let app = t
        .upstream
        .apps()
        .into_iter()
        .find(|a| a.id == out.user.app_id.as_str())
        .unwrap();
    let subject = app.metadata["provisioner"]["subject"].as_str().unwrap();
    assert_eq!(subject.len(), 64, "a full SHA-256 digest names the user");
}

/// Defect 3: a row whose tenant's PAT will not open is backed off with its reason, and the
/// pass goes on with the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_row_does_not_stop_recovery_for_everyone() {
    let t = with_tenant().await;
    // A second tenant whose sealed PAT is corrupt.
    let mut bad = t.store.get_tenant(&tid()).await.unwrap().unwrap();
    bad.id = crate::ids::TenantId::parse("broken").unwrap();
    bad.app_defaults.id_prefix = "broken-".into();
    let audit = crate::model::AuditEvent {
        id: uuid::Uuid::now_v7().to_string(),
        at: t.clock.now(),
        actor: "test".into(),
        tenant_id: None,
        action: "test".into(),
        target: "t".into(),
        outcome: "success".into(),
        request_id: None,
        events: Vec::new(),
    };
    t.store.insert_tenant(&bad, &[], &audit).await.unwrap();
    // Both tenants have a user cut off mid-provisioning; the broken one's row is older.
    let mut stuck = user_row(&t, "broken", "b1").await;
    stuck.updated_at = t.clock.now() - chrono::Duration::seconds(100);
    t.store.insert_user(&stuck, None).await.unwrap();
    bad.pat_sealed = vec![0; 40];
    let audit2 = crate::model::AuditEvent {
        id: uuid::Uuid::now_v7().to_string(),
        ..audit
    };
    t.store
        .update_tenant(&bad, bad.version, &audit2)
        .await
        .unwrap();
    t.upstream
        .fault_on(Call::CreateKey, Fault::Hang { commit: false }, 1);
    assert!(
        crash_after(
            200,
            t.service
                .provision(&actor(), &tid(), &ext("good"), put_default())
        )
        .await
        .is_none()
    );
    t.clock.advance(lease_ttl());

    let report = t
        .service
        .run_recovery_pass(10)
        .await
        .expect("the pass goes on");
    assert_eq!(report.completed, 1, "{report:?}");
    assert_eq!(report.failed, 1, "{report:?}");
    let b1 = t
        .store
        .get_user(&bad.id, &ext("b1"))
        .await
        .unwrap()
        .unwrap();
    assert!(b1.lease.is_none());
    assert!(b1.next_attempt_at.unwrap() > t.clock.now(), "backed off");
    assert!(b1.last_error.unwrap().contains("recovery could not finish"));
    // Backed off: the next pass does not spend itself on it.
    assert_eq!(t.service.run_recovery_pass(10).await.unwrap().examined, 0);
    // The good user's late-key sweep runs when due, and the user settles.
    t.clock.advance(chrono::Duration::seconds(600));
    t.service.run_recovery_pass(10).await.unwrap();
    assert_one_app_one_key(&t, "good");
}

async fn user_row(t: &TestService, tenant: &str, id: &str) -> crate::model::User {
    let tenant = crate::ids::TenantId::parse(tenant).unwrap();
    let mut u = {
        // Any settled row of the first tenant, reshaped.
        provisioned(t, "template").await;
        user(t, "template").await
    };
    u.app_id = derive_app_id(&format!("{tenant}-"), &tenant, &ext(id));
    u.tenant_id = tenant;
    u.external_id = ext(id);
    u.status = UserStatus::Provisioning;
    u.step = Step::CreateApp;
    u.key = None;
    u.lease = None;
    u
}

/// Defect 4: a holder whose lease was taken over stops: its in-flight call is dropped at the
/// next heartbeat and it makes no further upstream call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_lost_its_lease_stops_calling_upstream() {
    let base = with_tenant().await;
    let svc = base.service.clone();
    base.upstream
        .fault_on(Call::CreateKey, Fault::Hang { commit: false }, 1);
    let task = tokio::spawn(async move {
        svc.provision(&actor(), &tid(), &ext("f"), put_default())
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let calls_before = base.upstream.calls().len();
    // Another holder takes the row over (the first one's lease looked expired to it).
    let taker = Lease {
        owner: "taker".into(),
        expires_at: base.clock.now() + chrono::Duration::seconds(600),
    };
    base.store
        .acquire_lease(
            &tid(),
            &ext("f"),
            &taker,
            base.clock.now() + chrono::Duration::seconds(3600),
            None,
        )
        .await
        .unwrap()
        .expect("taken over");
    let out = tokio::time::timeout(test_config().lease_ttl + Duration::from_secs(2), task)
        .await
        .expect("the stale holder stops at its next heartbeat")
        .unwrap();
    assert!(
        matches!(out, Err(DomainError::UpstreamUnavailable(_))),
        "{out:?}"
    );
    assert_eq!(
        base.upstream.calls().len(),
        calls_before,
        "no call after the takeover"
    );
    assert_eq!(
        user(&base, "f").await.lease.unwrap().owner,
        "taker",
        "and it wrote nothing"
    );
}

/// Defect 5: a rotation decided on a read of an active user does not run on the row a DELETE
/// finished meanwhile (it would bring the user back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_on_a_stale_read_does_not_revive_a_deleted_user() {
    let t = with_tenant().await;
    provisioned(&t, "d").await;
    let keys_before = t.upstream.keys().len();
    // Between the rotation's read and its lease, a DELETE finishes.
    t.store.on_next_acquire(|u| {
        u.status = UserStatus::Deleted;
        u.key = None;
        u.version += 1;
    });
    let out = t
        .service
        .rotate_key(&actor(), &tid(), &ext("d"), 0, false)
        .await;
    assert!(matches!(out, Err(DomainError::Conflict(_))), "{out:?}");
    assert_eq!(user(&t, "d").await.status, UserStatus::Deleted);
    assert_eq!(t.upstream.keys().len(), keys_before, "no key created");
}

/// Defect 5, the PUT side: a PUT that read `deleted` does not reset a key another PUT just
/// created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_on_a_stale_deleted_read_does_not_reset_a_new_key() {
    let t = with_tenant().await;
    provisioned(&t, "r").await;
    t.service
        .deprovision(&actor(), &tid(), &ext("r"))
        .await
        .unwrap();
    // Between this PUT's read (deleted) and its lease, another PUT provisions the user.
    let other = provisioned_snapshot(&t).await;
    t.store.on_next_acquire(move |u| *u = other);
    let out = t
        .service
        .provision(&actor(), &tid(), &ext("r"), put_default())
        .await
        .unwrap();
    assert_eq!(out.user.status, UserStatus::Active);
    assert!(
        out.secret.is_none(),
        "it found the other PUT's key instead of making a second one"
    );
}

/// The row a concurrent PUT of "r" leaves: active with a new key (taken from a real
/// provisioning of another user, renamed).
async fn provisioned_snapshot(t: &TestService) -> crate::model::User {
    provisioned(t, "r-twin").await;
    let mut u = user(t, "r-twin").await;
    let r = user(t, "r").await;
    u.external_id = ext("r");
    u.app_id = r.app_id;
    u.version = r.version + 1;
    u.lease = None;
    u
}

/// Defect 6: a grace-0 rotation records the new key before it deletes the old one; if the last
/// write fails, the recorded key still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grace_zero_rotation_saves_the_new_key_before_deleting_the_old() {
    let t = with_tenant().await;
    provisioned(&t, "z").await;
    t.store
        .fail_audit_if(|e| e.action == "user.rotate_key" && e.outcome == "success");
    let out = t
        .service
        .rotate_key(&actor(), &tid(), &ext("z"), 0, false)
        .await;
    assert!(out.is_err(), "the final write failed");
    let u = user(&t, "z").await;
    let recorded = u.key.expect("a key is recorded");
    let live: Vec<String> = t
        .upstream
        .keys()
        .iter()
        .map(|k| {
            crate::secret::KeySecret::parse(k.id.clone())
                .unwrap()
                .fingerprint()
        })
        .collect();
    assert!(
        live.contains(&recorded.fingerprint),
        "the recorded key is live upstream"
    );
}

/// Defect 8: a DELETE whose final audit write fails still left a trace of its upstream
/// deletions: the intent event written with the intent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deprovision_is_audited_even_when_its_final_audit_write_fails() {
    let t = with_tenant().await;
    provisioned(&t, "a").await;
    t.store
        .fail_audit_if(|e| e.action == "user.deprovision" && e.outcome == "success");
    assert!(
        t.service
            .deprovision(&actor(), &tid(), &ext("a"))
            .await
            .is_err()
    );
    assert!(t.upstream.keys().is_empty(), "the key went upstream");
    assert!(
        t.store
            .audit_events()
            .iter()
            .any(|e| e.action == "user.deprovision" && e.outcome == "started"),
        "the intent is on record"
    );
}

/// Defect 10: a permanent failure after an ambiguous key create (during a rotation) schedules a
/// sweep, so the key that landed late is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_after_an_ambiguous_create_still_sweeps() {
    let t = with_tenant().await;
    provisioned(&t, "s").await;
    t.upstream
        .fault_on(Call::CreateKey, Fault::CommitThenLose, 1);
    t.upstream.fault_on(
        Call::ListAppKeys,
        Fault::Fail(crate::error::UpstreamError::Rejected("bad request".into())),
        1,
    );
    let out = t
        .service
        .rotate_key(&actor(), &tid(), &ext("s"), 0, false)
        .await;
    assert!(
        matches!(out, Err(DomainError::UpstreamRejected(_))),
        "{out:?}"
    );
    assert_eq!(t.upstream.keys().len(), 2, "the lost create landed");
    let u = user(&t, "s").await;
    assert_eq!(u.step, Step::SweepKeys, "a sweep is due");
    t.clock.advance(chrono::Duration::seconds(600));
    t.service.run_recovery_pass(10).await.unwrap();
    assert_one_app_one_key(&t, "s");
}

/// Defect 12: replicas' clocks may differ by up to `max_clock_skew`: a lease that looks a
/// little expired to a fast clock is still respected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_within_the_clock_skew_is_not_taken() {
    let t = with_tenant().await;
    provisioned(&t, "k").await;
    let holder = Lease {
        owner: "holder".into(),
        // Expired 500 ms ago by this replica's clock: within the 1 s skew allowed.
        expires_at: t.clock.now() - chrono::Duration::milliseconds(500),
    };
    t.store
        .acquire_lease(
            &tid(),
            &ext("k"),
            &holder,
            holder.expires_at - chrono::Duration::seconds(1),
            None,
        )
        .await
        .unwrap()
        .unwrap();
    let u = user(&t, "k").await;
    assert!(
        t.service.acquire(&u).await.unwrap().is_none(),
        "not taken within the skew"
    );
    t.clock.advance(chrono::Duration::seconds(1));
    let fresh = user(&t, "k").await;
    assert!(t.service.acquire(&fresh).await.unwrap().is_some());
}

/// Review finding: a grace-0 rotation saves the new key before deleting the old one; if the
/// final write then fails, the caller got a 503 and the new key's secret reached no one: the
/// next PUT carries it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_whose_final_write_failed_hands_its_secret_to_the_next_put() {
    let t = with_tenant().await;
    let old = provisioned(&t, "w").await;
    t.store
        .fail_audit_if(|e| e.action == "user.rotate_key" && e.outcome == "success");
    assert!(
        t.service
            .rotate_key(&actor(), &tid(), &ext("w"), 0, false)
            .await
            .is_err()
    );
    t.store.fail_audit_if(|_| false);
    let u = user(&t, "w").await;
    let current = u.key.expect("the new key is recorded");
    assert_ne!(current.fingerprint, old.fingerprint());
    let put = t
        .service
        .provision(&actor(), &tid(), &ext("w"), put_default())
        .await
        .unwrap();
    assert_eq!(
        put.secret.expect("the undelivered secret").fingerprint(),
        current.fingerprint
    );
    let again = t
        .service
        .provision(&actor(), &tid(), &ext("w"), put_default())
        .await
        .unwrap();
    assert!(again.secret.is_none());
}
