//! Idempotency-Key records: round trip, expiry, claims, binding in the intent's transaction,
//! first answer wins.

use provisioner_core::StoreError;
use provisioner_core::idempotency::{
    IdempotencyBinding, IdempotencyClaim, IdempotencyKey, IdempotencyRecord, SavedResponse,
};
use provisioner_core::model::{Lease, Timestamp, UserStatus};
use provisioner_core::ports::{AuditStore, IdempotencyStore, UserStore};
use provisioner_storage::SqlStore;

use crate::fixtures::*;
use crate::users::with_tenants;

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::parse(s).expect("valid key")
}

/// A fresh record of `subject`'s `k`, claimed by `owner` for a minute, created at `at`.
fn record(subject: &str, k: &str, owner: &str, at: Timestamp) -> IdempotencyRecord {
    IdempotencyRecord {
        subject: subject.into(),
        key: key(k),
        operation: "user.provision".into(),
        target: "acme/users/alice".into(),
        request_hash: "ab".repeat(32),
        binding: None,
        claim: Some(Lease {
            owner: owner.into(),
            expires_at: plus(at, 60),
        }),
        response: None,
        created_at: at,
        expires_at: plus(at, 86_400),
    }
}

fn claim(subject: &str, k: &str, owner: &str) -> IdempotencyClaim {
    IdempotencyClaim {
        subject: subject.into(),
        key: key(k),
        owner: owner.into(),
    }
}

pub async fn idempotency_records_round_trip_and_only_expired_ones_are_replaced(store: &SqlStore) {
    let t0 = now();
    let mut full = record("svc", "k 1", "op-1", t0);
    full.binding = Some(IdempotencyBinding {
        tenant_id: tid("acme"),
        external_id: xid("alice@ex ample"),
        generation: 7,
    });
    full.response = Some(SavedResponse {
        status: 201,
        body: "{\"a\":1}".into(),
        secret_sealed: Some(vec![1, 0, 255, 7]),
    });
    assert!(store.put_idempotency(&full, t0).await.expect("put"));
    assert_eq!(
        store
            .get_idempotency("svc", &key("k 1"))
            .await
            .expect("get"),
        Some(full.clone())
    );
    // Another caller's identical key is another record.
    assert_eq!(
        store
            .get_idempotency("other", &key("k 1"))
            .await
            .expect("get"),
        None
    );
    // Live: not replaced.
    let newer = record("svc", "k 1", "op-2", plus(t0, 10));
    assert!(
        !store
            .put_idempotency(&newer, plus(t0, 10))
            .await
            .expect("put")
    );
    assert_eq!(
        store
            .get_idempotency("svc", &key("k 1"))
            .await
            .expect("get"),
        Some(full.clone())
    );
    // Expired: replaced in place.
    let later = plus(t0, 86_401);
    let replacement = record("svc", "k 1", "op-3", later);
    assert!(
        store
            .put_idempotency(&replacement, later)
            .await
            .expect("put")
    );
    assert_eq!(
        store
            .get_idempotency("svc", &key("k 1"))
            .await
            .expect("get"),
        Some(replacement.clone())
    );
    // The clean-up deletes expired records only.
    assert!(
        store
            .put_idempotency(&record("svc", "k 2", "op-4", t0), t0)
            .await
            .expect("put")
    );
    assert_eq!(store.purge_idempotency(later).await.expect("purge"), 1);
    assert!(
        store
            .get_idempotency("svc", &key("k 2"))
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        store
            .get_idempotency("svc", &key("k 1"))
            .await
            .expect("get")
            .is_some()
    );
}

pub async fn an_idempotency_claim_is_taken_only_when_free_or_expired(store: &SqlStore) {
    let t0 = now();
    store
        .put_idempotency(&record("svc", "k", "op-1", t0), t0)
        .await
        .expect("put");
    let lease = |owner: &str| Lease {
        owner: owner.into(),
        expires_at: plus(t0, 120),
    };
    // Live and someone else's: refused.
    assert_eq!(
        store
            .claim_idempotency("svc", &key("k"), &lease("op-2"), plus(t0, 30))
            .await
            .expect("claim"),
        None
    );
    // Expired: taken over; the old holder can no longer bind.
    let taken = store
        .claim_idempotency("svc", &key("k"), &lease("op-2"), plus(t0, 61))
        .await
        .expect("claim")
        .expect("taken");
    assert_eq!(taken.claim, Some(lease("op-2")));
    let binding = IdempotencyBinding {
        tenant_id: tid("acme"),
        external_id: xid("alice"),
        generation: 1,
    };
    assert!(
        !store
            .bind_idempotency(&claim("svc", "k", "op-1"), &binding)
            .await
            .expect("bind")
    );
    assert!(
        store
            .bind_idempotency(&claim("svc", "k", "op-2"), &binding)
            .await
            .expect("bind")
    );
    // Released: anyone may claim it at once.
    store
        .release_idempotency(&claim("svc", "k", "op-2"))
        .await
        .expect("release");
    let rec = store
        .claim_idempotency("svc", &key("k"), &lease("op-3"), plus(t0, 31))
        .await
        .expect("claim")
        .expect("free");
    assert_eq!(rec.binding, Some(binding));
    // Answered: the first answer wins, and nobody claims it any more.
    let answer = |status| SavedResponse {
        status,
        body: "{}".into(),
        secret_sealed: None,
    };
    assert!(
        !store
            .complete_idempotency("svc", &key("k"), plus(t0, 1), &answer(200))
            .await
            .expect("complete"),
        "another record's creation time"
    );
    assert!(
        store
            .complete_idempotency("svc", &key("k"), t0, &answer(201))
            .await
            .expect("complete")
    );
    assert!(
        !store
            .complete_idempotency("svc", &key("k"), t0, &answer(409))
            .await
            .expect("complete")
    );
    let done = store
        .get_idempotency("svc", &key("k"))
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(done.response.map(|r| r.status), Some(201));
    assert_eq!(done.claim, None);
    assert_eq!(
        store
            .claim_idempotency("svc", &key("k"), &lease("op-4"), plus(t0, 500))
            .await
            .expect("claim"),
        None
    );
}

pub async fn a_bound_user_write_commits_with_its_record_or_not_at_all(store: &SqlStore) {
    with_tenants(store, &["acme"]).await;
    let t0 = now();
    store
        .put_idempotency(&record("svc", "k", "claim-1", t0), t0)
        .await
        .expect("put");
    let u = user("acme", "alice", "op-1");
    let intent = event(Some("acme"), "user.provision", "users/alice");
    // The claim is someone else's: nothing is written, the user and its audit event included.
    assert!(matches!(
        store
            .insert_user_bound(&u, Some(&intent), &claim("svc", "k", "claim-x"))
            .await,
        Err(StoreError::Stale)
    ));
    assert!(
        store
            .get_user(&u.tenant_id, &u.external_id)
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        store
            .list_audit(None, None, None, 100)
            .await
            .expect("audit")
            .iter()
            .all(|(e, _)| e.id != intent.id)
    );
    // Held: the row, its event and the binding land together.
    store
        .insert_user_bound(&u, Some(&intent), &claim("svc", "k", "claim-1"))
        .await
        .expect("insert bound");
    let rec = store
        .get_idempotency("svc", &key("k"))
        .await
        .expect("get")
        .expect("record");
    assert_eq!(
        rec.binding,
        Some(IdempotencyBinding {
            tenant_id: tid("acme"),
            external_id: xid("alice"),
            generation: 1,
        })
    );
    // A duplicate is still reported as such.
    assert!(matches!(
        store
            .insert_user_bound(&u, None, &claim("svc", "k", "claim-1"))
            .await,
        Err(StoreError::AlreadyExists)
    ));
    // An update that starts generation 2 rebinds in its transaction...
    let mut next = store
        .get_user(&u.tenant_id, &u.external_id)
        .await
        .expect("get")
        .expect("row");
    next.generation = 2;
    next.status = UserStatus::Rotating;
    store
        .update_user_bound(&next, "op-1", None, &claim("svc", "k", "claim-1"))
        .await
        .expect("update bound");
    let rec = store
        .get_idempotency("svc", &key("k"))
        .await
        .expect("get")
        .expect("record");
    assert_eq!(rec.binding.map(|b| b.generation), Some(2));
    // ...and writes nothing when the claim or the lease is lost.
    let before = store
        .get_user(&u.tenant_id, &u.external_id)
        .await
        .expect("get")
        .expect("row");
    let mut third = before.clone();
    third.generation = 3;
    assert!(matches!(
        store
            .update_user_bound(&third, "op-1", None, &claim("svc", "k", "claim-x"))
            .await,
        Err(StoreError::Stale)
    ));
    assert!(matches!(
        store
            .update_user_bound(&third, "op-x", None, &claim("svc", "k", "claim-1"))
            .await,
        Err(StoreError::Stale)
    ));
    let after = store
        .get_user(&u.tenant_id, &u.external_id)
        .await
        .expect("get")
        .expect("row");
    assert_eq!((after.generation, after.version), (2, before.version));
    let rec = store
        .get_idempotency("svc", &key("k"))
        .await
        .expect("get")
        .expect("record");
    assert_eq!(rec.binding.map(|b| b.generation), Some(2));
}
