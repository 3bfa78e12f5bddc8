//! Bulk onboarding jobs: validation before anything is stored, the worker, per-user errors,
//! retries, a worker that dies mid-item, cancel, and the secrets of job-made keys.

use super::tests::{actor, assert_one_app_one_key, ext, put_default, tid, with_tenant};
use super::*;
use crate::jobs::{ItemRequest, JobStatus};
use crate::model::UserStatus;
use crate::ports::{AuditStore, JobStore, UserStore};
use crate::testing::{Call, Fault, TestService};

fn user(id: &str) -> BatchUser {
    BatchUser {
        external_id: ext(id),
        request: ItemRequest::default(),
    }
}

fn with_profile(id: &str, profile: &str) -> BatchUser {
    BatchUser {
        external_id: ext(id),
        request: ItemRequest {
            scope_profile: Some(profile.into()),
            ..ItemRequest::default()
        },
    }
}

/// Runs worker passes (moving the clock past back-offs) until the job ends.
async fn run_to_end(t: &TestService, id: &str) -> JobView {
    for _ in 0..50 {
        let view = t.service.get_job(id).await.unwrap();
        if view.job.finished_at.is_some() {
            return view;
        }
        t.service.run_job_pass(100).await.unwrap();
        t.clock.advance(chrono::Duration::seconds(60));
    }
    panic!("job {id} did not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_batch_is_refused_whole_and_stores_nothing() {
    let t = with_tenant().await;
    let audit_before = t
        .store
        .list_audit(None, None, None, 1000)
        .await
        .unwrap()
        .len();
    let cases: Vec<(Vec<BatchUser>, &str)> = vec![
        (vec![], "1 to 10000"),
        (vec![user("a"), user("b"), user("a")], "users/2 (a)"),
        (vec![user("a"), with_profile("b", "nope")], "users/1 (b)"),
        (
            vec![BatchUser {
                external_id: ext("c"),
                request: ItemRequest {
                    scopes: Some(vec!["Workflows:Add".into()]),
                    ..ItemRequest::default()
                },
            }],
            "users/0 (c)",
        ),
        (
            vec![BatchUser {
                external_id: ext("d"),
                request: ItemRequest {
                    scope_profile: Some("standard".into()),
                    scopes: Some(vec!["Predict".into()]),
                    ..ItemRequest::default()
                },
            }],
            "not both",
        ),
        (
            vec![BatchUser {
                external_id: ext("e"),
                request: ItemRequest {
                    display_name: Some("x".repeat(300)),
                    ..ItemRequest::default()
                },
            }],
            "users/0 (e)",
        ),
    ];
    for (batch, says) in cases {
        let err = t
            .service
            .submit_batch(&actor(), &tid(), batch)
            .await
            .unwrap_err();
        assert!(
            matches!(err, DomainError::Validation(_) | DomainError::Invalid(_)),
            "{err:?}"
        );
        assert!(err.to_string().contains(says), "{err} should say {says}");
    }
    let too_many: Vec<BatchUser> = (0..=MAX_BATCH).map(|i| user(&format!("u{i}"))).collect();
    assert!(
        t.service
            .submit_batch(&actor(), &tid(), too_many)
            .await
            .is_err()
    );
    assert!(
        t.store
            .list_jobs(&tid(), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        t.store
            .list_audit(None, None, None, 1000)
            .await
            .unwrap()
            .len(),
        audit_before
    );
    assert!(t.upstream.calls().iter().all(|c| *c == Call::Verify));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_provisions_every_user_once_and_keeps_their_secrets_for_reveal() {
    let t = with_tenant().await;
    let batch = vec![
        user("a"),
        with_profile("b", "annotator"),
        user("c"),
        user("d"),
    ];
    let job = t
        .service
        .submit_batch(&actor(), &tid(), batch)
        .await
        .unwrap();
    assert_eq!((job.status, job.total), (JobStatus::Running, 4));
    let view = run_to_end(&t, &job.id).await;
    assert_eq!(view.job.status, JobStatus::Succeeded);
    assert_eq!((view.job.done, view.job.failed), (4, 0));
    assert!(view.errors.is_empty());
    for u in ["a", "b", "c", "d"] {
        assert_one_app_one_key(&t, u);
        let row = t.store.get_user(&tid(), &ext(u)).await.unwrap().unwrap();
        assert!(row.secret_pending, "{u}: the job's key reached no caller");
    }
    let b = t.store.get_user(&tid(), &ext("b")).await.unwrap().unwrap();
    assert_eq!(
        b.scopes.names(),
        vec!["Concepts:Get", "Inputs:Add", "Inputs:Get"]
    );
    // Audited: the job, and each user under the submitter with the job as request.
    let events = t.store.audit_events();
    assert!(events.iter().any(|e| e.action == "job.create"
        && e.target == format!("jobs/{}", job.id)
        && e.outcome == "success: 4 users"));
    let tag = format!("job:{}", job.id);
    assert_eq!(
        events
            .iter()
            .filter(|e| e.action == "user.provision"
                && e.outcome == "success"
                && e.request_id.as_deref() == Some(tag.as_str())
                && e.actor == "tester")
            .count(),
        4
    );
    // Another pass finds nothing; a PUT of a job's user hands its secret over once.
    let calls = t.upstream.calls().len();
    assert_eq!(t.service.run_job_pass(100).await.unwrap().claimed, 0);
    let r = t
        .service
        .provision(&actor(), &tid(), &ext("a"), put_default())
        .await
        .unwrap();
    assert!(!r.created && r.secret.is_some());
    assert_eq!(t.upstream.calls().len(), calls, "nothing provisioned twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_errors_are_recorded_with_their_code_and_the_rest_goes_on() {
    let t = with_tenant().await;
    // "taken" exists with other scopes: its item is a conflict.
    t.service
        .provision(&actor(), &tid(), &ext("taken"), put_default())
        .await
        .unwrap();
    let batch = vec![user("ok1"), with_profile("taken", "annotator"), user("ok2")];
    let job = t
        .service
        .submit_batch(&actor(), &tid(), batch)
        .await
        .unwrap();
    let view = run_to_end(&t, &job.id).await;
    assert_eq!(view.job.status, JobStatus::Failed);
    assert_eq!((view.job.done, view.job.failed), (2, 1));
    assert_eq!(view.errors.len(), 1);
    let e = &view.errors[0];
    assert_eq!(e.external_id, ext("taken"));
    assert_eq!(e.error_code.as_deref(), Some("conflict"));
    assert!(
        e.error_detail
            .as_deref()
            .unwrap_or("")
            .contains("other scopes")
    );
    assert_one_app_one_key(&t, "ok1");
    assert_one_app_one_key(&t, "ok2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_is_retried_after_a_backoff() {
    let t = with_tenant().await;
    let down = unavailable();
    t.upstream.fault_on(Call::CreateApp, Fault::Fail(down), 1);
    let job = t
        .service
        .submit_batch(&actor(), &tid(), vec![user("a")])
        .await
        .unwrap();
    let first = t.service.run_job_pass(100).await.unwrap();
    assert_eq!((first.claimed, first.retried), (1, 1));
    // Not due before its back-off.
    assert_eq!(t.service.run_job_pass(100).await.unwrap().claimed, 0);
    let view = run_to_end(&t, &job.id).await;
    assert_eq!(view.job.status, JobStatus::Succeeded);
    t.clock.advance(chrono::Duration::seconds(600));
    t.service.run_recovery_pass(100).await.unwrap();
    assert_one_app_one_key(&t, "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_budget_is_retried_soon_and_not_counted_as_a_failure() {
    let t = with_tenant().await;
    // Three times, the account's budget has no slot for the key: nothing is sent.
    let busy = crate::error::UpstreamError::Busy("no slot in time".into());
    t.upstream.fault_on(Call::CreateKey, Fault::Fail(busy), 3);
    let job = t
        .service
        .submit_batch(&actor(), &tid(), vec![user("a")])
        .await
        .unwrap();
    for round in 0..3 {
        let pass = t.service.run_job_pass(100).await.unwrap();
        assert_eq!((pass.claimed, pass.retried), (1, 1), "round {round}");
        // Due again within two seconds each time: no growing back-off.
        t.clock.advance(chrono::Duration::seconds(2));
    }
    let row = t.store.get_user(&tid(), &ext("a")).await.unwrap().unwrap();
    assert_eq!(row.attempts, 0, "a busy budget is not the upstream failing");
    let pass = t.service.run_job_pass(100).await.unwrap();
    assert_eq!((pass.claimed, pass.retried), (1, 0));
    let view = run_to_end(&t, &job.id).await;
    assert_eq!(view.job.status, JobStatus::Succeeded);
    t.clock.advance(chrono::Duration::seconds(600));
    t.service.run_recovery_pass(100).await.unwrap();
    assert_one_app_one_key(&t, "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_dies_mid_item_is_replaced_and_nobody_is_provisioned_twice() {
    let t = with_tenant().await;
    let job = t
        .service
        .submit_batch(&actor(), &tid(), vec![user("a"), user("b")])
        .await
        .unwrap();
    // The worker dies while a's key is being created (the create lands upstream).
    let base = t.upstream.calls().len();
    t.upstream.fault_at(base + 2, Fault::Hang { commit: true });
    let svc = t.service.clone();
    let cut = tokio::time::timeout(std::time::Duration::from_millis(500), async move {
        svc.run_job_pass(1).await
    })
    .await;
    assert!(cut.is_err(), "the pass was cut off");
    // Another worker resumes once the item's and the user's leases expire.
    t.clock.advance(chrono::Duration::seconds(120));
    let view = run_to_end(&t, &job.id).await;
    assert_eq!(view.job.status, JobStatus::Succeeded, "{:?}", view.errors);
    assert_eq!((view.job.done, view.job.failed), (2, 0));
    t.clock.advance(chrono::Duration::seconds(600));
    t.service.run_recovery_pass(100).await.unwrap();
    assert_one_app_one_key(&t, "a");
    assert_one_app_one_key(&t, "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_what_has_not_started() {
    let t = with_tenant().await;
    let job = t
        .service
        .submit_batch(&actor(), &tid(), vec![user("a"), user("b"), user("c")])
        .await
        .unwrap();
    // One user done, then cancel.
    assert_eq!(t.service.run_job_pass(1).await.unwrap().done, 1);
    let view = t.service.cancel_job(&actor(), &job.id).await.unwrap();
    assert_eq!(view.job.status, JobStatus::Cancelled);
    assert_eq!((view.job.done, view.job.cancelled), (1, 2));
    assert!(view.job.finished_at.is_some());
    assert_eq!(t.service.run_job_pass(100).await.unwrap().claimed, 0);
    assert!(t.store.get_user(&tid(), &ext("b")).await.unwrap().is_none());
    assert!(
        t.store
            .audit_events()
            .iter()
            .any(|e| e.action == "job.cancel" && e.target == format!("jobs/{}", job.id))
    );
    // Cancelling again (or a finished job) changes nothing.
    let again = t.service.cancel_job(&actor(), &job.id).await.unwrap();
    assert_eq!(again.job, view.job);
    let unknown = t.service.cancel_job(&actor(), "nope").await.unwrap_err();
    assert!(matches!(unknown, DomainError::NotFound(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_item_of_a_cancelled_job_is_finished_after_its_worker_died() {
    let t = with_tenant().await;
    let job = t
        .service
        .submit_batch(&actor(), &tid(), vec![user("a"), user("b")])
        .await
        .unwrap();
    let base = t.upstream.calls().len();
    t.upstream.fault_at(base, Fault::Hang { commit: false });
    let svc = t.service.clone();
    let _ = tokio::time::timeout(std::time::Duration::from_millis(300), async move {
        svc.run_job_pass(1).await
    })
    .await;
    let view = t.service.cancel_job(&actor(), &job.id).await.unwrap();
    assert_eq!(
        view.job.status,
        JobStatus::Running,
        "a is still in progress"
    );
    assert_eq!(view.job.cancelled, 1);
    t.clock.advance(chrono::Duration::seconds(120));
    let view = run_to_end(&t, &job.id).await;
    assert_eq!(view.job.status, JobStatus::Cancelled);
    assert_eq!((view.job.done, view.job.cancelled), (1, 1));
    let a = t.store.get_user(&tid(), &ext("a")).await.unwrap().unwrap();
    assert_eq!(a.status, UserStatus::Active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_listed_newest_first_with_a_cursor() {
    let t = with_tenant().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let j = t
            .service
            .submit_batch(&actor(), &tid(), vec![user(&format!("u{i}"))])
            .await
            .unwrap();
        ids.push(j.id);
    }
    let p1 = t.service.list_jobs(&tid(), None, 2).await.unwrap();
    assert_eq!(
        p1.items.iter().map(|j| j.id.clone()).collect::<Vec<_>>(),
        vec![ids[2].clone(), ids[1].clone()]
    );
    let p2 = t
        .service
        .list_jobs(&tid(), p1.next_cursor.as_deref(), 2)
        .await
        .unwrap();
    assert_eq!(p2.items.len(), 1);
    assert_eq!(p2.items[0].id, ids[0]);
    assert!(p2.next_cursor.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_attempted_before_a_cancel_is_finished_and_counted_as_done() {
    let t = with_tenant().await;
    let down = unavailable();
    t.upstream.fault_on(Call::CreateApp, Fault::Fail(down), 1);
    let job = t
        .service
        .submit_batch(&actor(), &tid(), vec![user("a"), user("b")])
        .await
        .unwrap();
    // a fails transiently (its user now holds an intent); then the job is cancelled.
    let first = t.service.run_job_pass(1).await.unwrap();
    assert_eq!(first.retried, 1);
    let view = t.service.cancel_job(&actor(), &job.id).await.unwrap();
    assert_eq!(
        (view.job.cancelled, view.job.status),
        (1, JobStatus::Running)
    );
    // a is finished by the job (and would be by recovery anyway): reported done, not cancelled.
    let view = run_to_end(&t, &job.id).await;
    assert_eq!(view.job.status, JobStatus::Cancelled);
    assert_eq!((view.job.done, view.job.cancelled), (1, 1));
    t.service.run_recovery_pass(100).await.unwrap();
    assert_one_app_one_key(&t, "a");
    assert!(t.store.get_user(&tid(), &ext("b")).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_delays_a_job_but_does_not_fail_its_users() {
    let t = with_tenant().await;
    let down = unavailable();
    t.upstream.fault_on(Call::CreateApp, Fault::Fail(down), 12);
    let job = t
        .service
        .submit_batch(&actor(), &tid(), vec![user("a")])
        .await
        .unwrap();
    let view = run_to_end(&t, &job.id).await;
    assert_eq!(view.job.status, JobStatus::Succeeded, "{:?}", view.errors);
    t.clock.advance(chrono::Duration::seconds(600));
    t.service.run_recovery_pass(100).await.unwrap();
    assert_one_app_one_key(&t, "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_keeps_its_slots_busy_while_one_user_hangs() {
    let t = with_tenant().await;
    let job = t
        .service
        .submit_batch(
            &actor(),
            &tid(),
            vec![user("a"), user("b"), user("c"), user("d")],
        )
        .await
        .unwrap();
    // The first app create never answers; with two slots, the other three users go through
    // the other slot.
    t.upstream
        .fault_on(Call::CreateApp, Fault::Hang { commit: false }, 1);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let svc = t.service.clone();
    let worker = tokio::spawn(async move { svc.run_job_worker(2, stop_rx).await });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let j = t.service.get_job(&job.id).await.unwrap().job;
        if j.done == 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{j:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Stopping returns at once, the hung item still in flight.
    stop_tx.send(true).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), worker)
        .await
        .expect("the worker stops")
        .unwrap();
    let j = t.service.get_job(&job.id).await.unwrap().job;
    assert_eq!((j.done, j.status), (3, JobStatus::Running));
    // Its lease expires (or a shutdown expires it): the item is finished by the next worker.
    assert_eq!(t.service.release_own_job_items().await.unwrap(), 1);
    t.clock.advance(chrono::Duration::seconds(120));
    let view = run_to_end(&t, &job.id).await;
    assert_eq!(view.job.status, JobStatus::Succeeded);
    // The resumed user's late sweep (its first create may have landed) comes due, then all
    // four hold one app and one key.
    t.clock.advance(chrono::Duration::seconds(600));
    t.service.run_recovery_pass(100).await.unwrap();
    for u in ["a", "b", "c", "d"] {
        assert_one_app_one_key(&t, u);
    }
}

/// A 503 from the upstream, nothing applied.
fn unavailable() -> crate::error::UpstreamError {
    crate::error::UpstreamError::Unavailable {
        message: "HTTP 503".into(),
        ambiguous: false,
    }
}
