//! Bulk onboarding jobs: one transaction per job and per item outcome, claims that never hand
//! one item to two workers, cancel, and a job's end.

use std::collections::BTreeSet;
use std::sync::Arc;

use provisioner_core::StoreError;
use provisioner_core::jobs::{ItemOutcome, ItemRequest, ItemStatus, Job, JobItem, JobStatus};
use provisioner_core::model::Lease;
use provisioner_core::ports::{AuditStore, JobStore, TenantStore};
use provisioner_storage::SqlStore;

use crate::fixtures::*;

fn job(id: &str, tenant: &str, total: usize) -> (Job, Vec<JobItem>) {
    let job = Job {
        id: id.into(),
        tenant_id: tid(tenant),
        status: JobStatus::Running,
        total: total as i64,
        done: 0,
        failed: 0,
        cancelled: 0,
        cancel_requested: false,
        created_by: "tester".into(),
        request_id: Some("req-1".into()),
        created_at: now(),
        finished_at: None,
    };
    let items = (0..total)
        .map(|i| JobItem {
            job_id: id.into(),
            idx: i as i64,
            tenant_id: tid(tenant),
            external_id: xid(&format!("user-{i:05}")),
            request: ItemRequest {
                scope_profile: (i % 2 == 0).then(|| "standard".into()),
                display_name: Some(format!("User Ünï {i}")),
                ..ItemRequest::default()
            },
            status: ItemStatus::Pending,
            error_code: None,
            error_detail: None,
            attempts: 0,
            next_attempt_at: None,
        })
        .collect();
    (job, items)
}

fn lease(owner: &str, secs: i64) -> Lease {
    Lease {
        owner: owner.into(),
        expires_at: plus(now(), secs),
    }
}

async fn setup(store: &SqlStore, id: &str, total: usize) -> (Job, Vec<JobItem>) {
    if store.get_tenant(&tid("acme")).await.expect("get").is_none() {
        store
            .insert_tenant(
                &tenant("acme"),
                &[],
                &event(Some("acme"), "tenant.create", "t"),
            )
            .await
            .expect("tenant");
    }
    let (j, items) = job(id, "acme", total);
    store
        .insert_job(
            &j,
            &items,
            &event(Some("acme"), "job.create", &format!("jobs/{id}")),
        )
        .await
        .expect("insert job");
    (j, items)
}

pub async fn a_job_and_its_items_round_trip(store: &SqlStore) {
    // More than one INSERT chunk.
    let (j, items) = setup(store, "job-0001", 1_203).await;
    assert_eq!(
        store.get_job("job-0001").await.expect("get"),
        Some(j.clone())
    );
    assert!(store.get_job("nope").await.expect("get").is_none());
    let audit = store
        .list_audit(Some(&tid("acme")), None, None, 10)
        .await
        .expect("audit");
    assert!(audit.iter().any(|(e, _)| e.action == "job.create"));
    // Every item is claimable, in batch order, with its request intact.
    let claimed = store
        .claim_job_items(&lease("w1", 60), now(), 2_000)
        .await
        .expect("claim");
    assert_eq!(claimed, items);
    // A second job with the same id: nothing written.
    let again = store
        .insert_job(&j, &items[..1], &event(Some("acme"), "job.create", "x"))
        .await;
    assert!(matches!(again, Err(StoreError::AlreadyExists)), "{again:?}");
    // Listed newest first, per tenant, with a keyset cursor.
    setup(store, "job-0002", 1).await;
    setup(store, "job-0003", 1).await;
    let ids = |v: Vec<Job>| v.into_iter().map(|j| j.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_jobs(&tid("acme"), None, 2).await.expect("list")),
        vec!["job-0003", "job-0002"]
    );
    assert_eq!(
        ids(store
            .list_jobs(&tid("acme"), Some("job-0002"), 2)
            .await
            .expect("list")),
        vec!["job-0001"]
    );
    assert!(
        store
            .list_jobs(&tid("other"), None, 10)
            .await
            .expect("list")
            .is_empty()
    );
}

pub async fn outcomes_count_once_and_the_job_ends_with_its_last_item(store: &SqlStore) {
    setup(store, "job-a", 3).await;
    let items = store
        .claim_job_items(&lease("w1", 60), now(), 10)
        .await
        .expect("claim");
    assert_eq!(items.len(), 3);
    // Another owner cannot record.
    let stale = store
        .finish_job_item("job-a", 0, "w2", &ItemOutcome::Done, now())
        .await;
    assert!(matches!(stale, Err(StoreError::Stale)), "{stale:?}");
    store
        .finish_job_item("job-a", 0, "w1", &ItemOutcome::Done, now())
        .await
        .expect("done");
    // Twice: the second is stale (counted once).
    assert!(matches!(
        store
            .finish_job_item("job-a", 0, "w1", &ItemOutcome::Done, now())
            .await,
        Err(StoreError::Stale)
    ));
    let failed = ItemOutcome::Failed {
        code: "conflict".into(),
        detail: "other scopes".into(),
    };
    store
        .finish_job_item("job-a", 1, "w1", &failed, now())
        .await
        .expect("failed");
    let retry_at = plus(now(), 30);
    store
        .finish_job_item(
            "job-a",
            2,
            "w1",
            &ItemOutcome::Retry {
                next_attempt_at: retry_at,
                detail: "503".into(),
            },
            now(),
        )
        .await
        .expect("retry");
    let j = store.get_job("job-a").await.expect("get").expect("job");
    assert_eq!(
        (j.done, j.failed, j.status, j.finished_at),
        (1, 1, JobStatus::Running, None)
    );
    let errors = store.job_errors("job-a", 10).await.expect("errors");
    assert_eq!(errors.len(), 1);
    assert_eq!(
        (errors[0].idx, errors[0].error_code.as_deref()),
        (1, Some("conflict"))
    );
    // Not due before its retry time; then claimed with its attempt counted.
    assert!(
        store
            .claim_job_items(&lease("w3", 60), now(), 10)
            .await
            .expect("claim")
            .is_empty()
    );
    let later = plus(now(), 31);
    let again = store
        .claim_job_items(&lease("w3", 120), later, 10)
        .await
        .expect("claim");
    assert_eq!((again.len(), again[0].attempts), (1, 1));
    store
        .finish_job_item("job-a", 2, "w3", &ItemOutcome::Done, later)
        .await
        .expect("done");
    let j = store.get_job("job-a").await.expect("get").expect("job");
    assert_eq!((j.done, j.failed, j.status), (2, 1, JobStatus::Failed));
    assert_eq!(j.finished_at, Some(later));
}

pub async fn concurrent_claimers_never_share_an_item(store: &SqlStore) {
    setup(store, "job-c", 60).await;
    let store = Arc::new(store.clone());
    let mut tasks = Vec::new();
    for w in 0..6 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = s
                    .claim_job_items(&lease(&format!("w{w}"), 60), now(), 4)
                    .await
                    .expect("claim");
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|i| i.idx));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("join"));
    }
    let distinct: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), 60, "each item claimed once: {all:?}");
    assert_eq!(distinct.len(), 60);
    // An expired lease is claimed again (its worker died); a live one is not.
    let later = plus(now(), 61);
    assert_eq!(
        store
            .claim_job_items(&lease("w9", 200), later, 100)
            .await
            .expect("claim")
            .len(),
        60
    );
    assert!(
        store
            .claim_job_items(&lease("wa", 200), later, 100)
            .await
            .expect("claim")
            .is_empty()
    );
    // A stopping worker's leases are expired at once, not cleared.
    assert_eq!(store.release_job_items("w9").await.expect("release"), 60);
    assert_eq!(
        store
            .claim_job_items(&lease("wb", 300), later, 100)
            .await
            .expect("claim")
            .len(),
        60
    );
}

pub async fn cancel_stops_items_not_started_and_started_ones_finish(store: &SqlStore) {
    setup(store, "job-x", 4).await;
    let started = store
        .claim_job_items(&lease("w1", 60), now(), 1)
        .await
        .expect("claim");
    assert_eq!(started.len(), 1);
    let j = store
        .cancel_job(
            "job-x",
            now(),
            &event(Some("acme"), "job.cancel", "jobs/job-x"),
        )
        .await
        .expect("cancel")
        .expect("job");
    assert!(j.cancel_requested);
    assert_eq!(
        (j.cancelled, j.status, j.finished_at),
        (3, JobStatus::Running, None)
    );
    assert!(
        store
            .claim_job_items(&lease("w2", 60), now(), 10)
            .await
            .expect("claim")
            .is_empty()
    );
    store
        .finish_job_item("job-x", 0, "w1", &ItemOutcome::Done, now())
        .await
        .expect("done");
    let j = store.get_job("job-x").await.expect("get").expect("job");
    assert_eq!(
        (j.done, j.cancelled, j.status),
        (1, 3, JobStatus::Cancelled)
    );
    assert!(j.finished_at.is_some());
    assert!(
        store
            .cancel_job("nope", now(), &event(Some("acme"), "job.cancel", "x"))
            .await
            .expect("cancel")
            .is_none()
    );
}

pub async fn a_deleted_tenant_takes_its_jobs_with_it(store: &SqlStore) {
    setup(store, "job-d", 2).await;
    let deleted = store
        .delete_tenant(&tid("acme"), &event(Some("acme"), "tenant.delete", "t"))
        .await
        .expect("delete");
    assert_eq!(deleted, provisioner_core::ports::TenantDeletion::Deleted);
    assert!(store.get_job("job-d").await.expect("get").is_none());
    assert!(
        store
            .claim_job_items(&lease("w", 60), now(), 10)
            .await
            .expect("claim")
            .is_empty()
    );
}

pub async fn a_started_item_of_a_cancelled_job_is_still_claimed_and_the_job_ends(store: &SqlStore) {
    setup(store, "job-r", 2).await;
    let got = store
        .claim_job_items(&lease("w1", 60), now(), 1)
        .await
        .expect("claim");
    assert_eq!(got.len(), 1);
    store
        .cancel_job(
            "job-r",
            now(),
            &event(Some("acme"), "job.cancel", "jobs/job-r"),
        )
        .await
        .expect("cancel");
    assert_eq!(cancel_events(store).await, 1);
    // The started item failed transiently after the cancel: it was attempted, so it is still
    // claimed (its user may hold an intent) and finished, and the job ends.
    let retry_at = plus(now(), 30);
    store
        .finish_job_item(
            "job-r",
            0,
            "w1",
            &ItemOutcome::Retry {
                next_attempt_at: retry_at,
                detail: "503".into(),
            },
            now(),
        )
        .await
        .expect("retry");
    let later = plus(now(), 31);
    let again = store
        .claim_job_items(&lease("w2", 60), later, 10)
        .await
        .expect("claim");
    assert_eq!(again.iter().map(|i| i.idx).collect::<Vec<_>>(), vec![0]);
    store
        .finish_job_item("job-r", 0, "w2", &ItemOutcome::Done, later)
        .await
        .expect("done");
    let j = store.get_job("job-r").await.expect("get").expect("job");
    assert_eq!(
        (j.done, j.failed, j.cancelled, j.status),
        (1, 0, 1, JobStatus::Cancelled)
    );
    // Cancelling an ended job changes nothing and writes no event.
    let same = store
        .cancel_job(
            "job-r",
            later,
            &event(Some("acme"), "job.cancel", "jobs/job-r"),
        )
        .await
        .expect("cancel")
        .expect("job");
    assert_eq!(same, j);
    assert_eq!(cancel_events(store).await, 1);
}

pub async fn an_item_that_does_not_read_back_fails_alone(store: &SqlStore) {
    setup(store, "job-p", 3).await;
    provisioner_storage::testing::execute_raw(
        store,
        "UPDATE job_items SET request = 'not json' WHERE job_id = 'job-p' AND idx = 1",
    )
    .await;
    let got = store
        .claim_job_items(&lease("w1", 60), now(), 10)
        .await
        .expect("claim");
    assert_eq!(got.iter().map(|i| i.idx).collect::<Vec<_>>(), vec![0, 2]);
    let errors = store.job_errors("job-p", 10).await.expect("errors");
    assert_eq!(
        (errors.len(), errors[0].idx, errors[0].error_code.as_deref()),
        (1, 1, Some("internal"))
    );
    let j = store.get_job("job-p").await.expect("get").expect("job");
    assert_eq!(j.failed, 1);
}

async fn cancel_events(s: &SqlStore) -> usize {
    s.list_audit(Some(&tid("acme")), None, None, 100)
        .await
        .expect("audit")
        .into_iter()
        .filter(|(e, _)| e.action == "job.cancel")
        .count()
}
