//! Leases, lease-conditioned updates and the recovery scan.

use provisioner_core::StoreError;
use provisioner_core::model::{Lease, RetiredKey, Step, User, UserStatus};
use provisioner_core::ports::UserStore;
use provisioner_storage::SqlStore;

use crate::fixtures::*;
use crate::users::with_tenants;

pub async fn acquire_lease_takes_free_or_expired_leases_only(store: &SqlStore) {
    // Arrange: alice is held by op-1 until t0 + 60 s.
    with_tenants(store, &["acme"]).await;
    let u = user("acme", "alice", "op-1");
    store.insert_user(&u, None).await.expect("insert");
    let t0 = u.created_at;
    let lease = |owner: &str, secs| Lease {
        owner: owner.into(),
        expires_at: plus(t0, secs),
    };

    // Held by someone else, live: refused.
    assert_eq!(
        store
            .acquire_lease(
                &u.tenant_id,
                &u.external_id,
                &lease("op-2", 120),
                plus(t0, 30),
                None
            )
            .await
            .expect("acquire"),
        None
    );
    // Missing row: None.
    assert_eq!(
        store
            .acquire_lease(&u.tenant_id, &xid("nobody"), &lease("op-2", 120), t0, None)
            .await
            .expect("acquire"),
        None
    );
    // Expired: taken over, and the row comes back leased.
    let taken = store
        .acquire_lease(
            &u.tenant_id,
            &u.external_id,
            &lease("op-2", 120),
            plus(t0, 61),
            None,
        )
        .await
        .expect("acquire")
        .expect("taken");
    assert_eq!(taken.lease, Some(lease("op-2", 120)));
    assert_eq!(taken.app_id, u.app_id);
    // The old holder has lost it.
    assert!(matches!(
        store.update_user(&u, "op-1", None).await,
        Err(StoreError::Stale)
    ));

    // Released (lease None): free for anyone.
    let mut released = taken.clone();
    released.lease = None;
    store
        .update_user(&released, "op-2", None)
        .await
        .expect("release");
    let free = store
        .acquire_lease(
            &u.tenant_id,
            &u.external_id,
            &lease("op-3", 200),
            plus(t0, 62),
            None,
        )
        .await
        .expect("acquire");
    assert_eq!(free.and_then(|u| u.lease), Some(lease("op-3", 200)));
}

pub async fn update_user_requires_the_lease_owner(store: &SqlStore) {
    // Arrange
    with_tenants(store, &["acme"]).await;
    let u = user("acme", "alice", "op-1");
    store.insert_user(&u, None).await.expect("insert");
    let mut next = u.clone();
    next.status = UserStatus::Active;
    next.step = Step::Idle;
    next.updated_at = plus(u.updated_at, 1);

    // Act
    let wrong = store
        .update_user(
            &next,
            "op-2",
            Some(&event(Some("acme"), "user.provision", "alice")),
        )
        .await;
    let right = store.update_user(&next, "op-1", None).await;

    // Assert
    assert!(matches!(wrong, Err(StoreError::Stale)), "{wrong:?}");
    right.expect("owner may update");
    next.version += 1;
    assert_eq!(
        store
            .get_user(&u.tenant_id, &u.external_id)
            .await
            .expect("get"),
        Some(next)
    );
}

pub async fn due_users_returns_pending_and_expired_work_oldest_first(store: &SqlStore) {
    // Arrange: now = t0 + 1000 s.
    with_tenants(store, &["acme", "beta"]).await;
    let t0 = now();
    let now = plus(t0, 1000);
    let lease = |owner: &str, secs| {
        Some(Lease {
            owner: owner.into(),
            expires_at: plus(t0, secs),
        })
    };
    let mut rows = Vec::new();
    let mut add = |tenant: &str, id: &str, age: i64, f: &dyn Fn(&mut User)| {
        let mut u = user(tenant, id, "op");
        u.updated_at = plus(t0, age);
        f(&mut u);
        rows.push(u);
    };
    add("acme", "expired-lease", 5, &|u| u.lease = lease("op", 900));
    add("beta", "free-pending", 3, &|u| u.lease = None);
    add("acme", "live-lease", 1, &|u| u.lease = lease("op", 2000));
    add("acme", "idle", 0, &|u| {
        u.step = Step::Idle;
        u.lease = None;
    });
    add("acme", "backing-off", 0, &|u| {
        u.lease = None;
        u.next_attempt_at = Some(plus(t0, 1500));
    });
    add("acme", "retry-due", 7, &|u| {
        u.lease = None;
        u.next_attempt_at = Some(plus(t0, 1000));
    });
    add("acme", "grace-ended", 4, &|u| {
        u.step = Step::Idle;
        u.lease = None;
        u.retired_key = Some(RetiredKey {
            sealed: vec![1],
            fingerprint: "f1".into(),
            delete_after: plus(t0, 999),
        });
    });
    add("acme", "grace-running", 2, &|u| {
        u.step = Step::Idle;
        u.lease = None;
        u.retired_key = Some(RetiredKey {
            sealed: vec![1],
            fingerprint: "f2".into(),
            delete_after: plus(t0, 5000),
        });
    });
    for u in &rows {
        store.insert_user(u, None).await.expect("insert");
    }

    // Act
    let due = store.due_users(now, 100).await.expect("due");
    let limited = store.due_users(now, 2).await.expect("due");

    // Assert: oldest updated_at first.
    let names: Vec<_> = due.iter().map(|(t, x)| format!("{t}/{x}")).collect();
    assert_eq!(
        names,
        [
            "beta/free-pending",
            "acme/grace-ended",
            "acme/expired-lease",
            "acme/retry-due"
        ]
    );
    assert_eq!(limited, due[..2]);
}

pub async fn release_leases_frees_only_one_instances_leases(store: &SqlStore) {
    // Arrange: two rows held by instance "aaa", one by instance "bbb".
    with_tenants(store, &["acme"]).await;
    for (ext, owner) in [("u1", "aaa-1"), ("u2", "aaa-2"), ("u3", "bbb-1")] {
        store
            .insert_user(&user("acme", ext, owner), None)
            .await
            .expect("insert");
    }
    // Act.
    let n = store.release_leases("aaa-").await.expect("release");
    // Assert: exactly aaa's two are free; bbb's is untouched; nothing matches a bad prefix.
    assert_eq!(n, 2);
    let t = provisioner_core::ids::TenantId::parse("acme").unwrap();
    assert!(
        store
            .get_user(&t, &xid("u1"))
            .await
            .unwrap()
            .unwrap()
            .lease
            .is_none()
    );
    assert!(
        store
            .get_user(&t, &xid("u2"))
            .await
            .unwrap()
            .unwrap()
            .lease
            .is_none()
    );
    assert_eq!(
        store
            .get_user(&t, &xid("u3"))
            .await
            .unwrap()
            .unwrap()
            .lease
            .unwrap()
            .owner,
        "bbb-1"
    );
    assert!(store.release_leases("%").await.is_err());
    assert!(store.release_leases("").await.is_err());
}

pub async fn acquire_lease_is_conditioned_on_the_version_read(store: &SqlStore) {
    // Arrange: alice, free, read at version v.
    with_tenants(store, &["acme"]).await;
    let mut u = user("acme", "alice", "op-1");
    u.lease = None;
    store.insert_user(&u, None).await.expect("insert");
    let read = store
        .get_user(&u.tenant_id, &u.external_id)
        .await
        .unwrap()
        .unwrap();
    let t0 = u.created_at;
    let lease = |owner: &str| Lease {
        owner: owner.into(),
        expires_at: plus(t0, 60),
    };
    // Act: someone changes the row (takes and releases a lease, i.e. writes it).
    let other = store
        .acquire_lease(&u.tenant_id, &u.external_id, &lease("op-2"), t0, None)
        .await
        .unwrap()
        .expect("free");
    assert_eq!(other.version, read.version + 1);
    let mut written = other.clone();
    written.status = UserStatus::Deleted;
    written.lease = None;
    store.update_user(&written, "op-2", None).await.unwrap();
    // Assert: a lease on the stale read is refused; on the fresh one it is granted.
    let stale = store
        .acquire_lease(
            &u.tenant_id,
            &u.external_id,
            &lease("op-3"),
            t0,
            Some(read.version),
        )
        .await
        .unwrap();
    assert!(stale.is_none(), "a lease on a stale read must be refused");
    let fresh = store
        .get_user(&u.tenant_id, &u.external_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fresh.version, read.version + 2);
    let got = store
        .acquire_lease(
            &u.tenant_id,
            &u.external_id,
            &lease("op-3"),
            t0,
            Some(fresh.version),
        )
        .await
        .unwrap()
        .expect("fresh read");
    assert_eq!(got.status, UserStatus::Deleted);
}

pub async fn renew_lease_is_a_compare_and_swap_on_owner_and_generation(store: &SqlStore) {
    with_tenants(store, &["acme"]).await;
    let u = user("acme", "alice", "op-1");
    store.insert_user(&u, None).await.expect("insert");
    let (t, x) = (&u.tenant_id, &u.external_id);
    let later = plus(u.created_at, 300);
    assert!(store.renew_lease(t, x, "op-1", 1, later).await.unwrap());
    let row = store.get_user(t, x).await.unwrap().unwrap();
    assert_eq!(row.lease.unwrap().expires_at, later);
    assert_eq!(
        row.version, u.version,
        "a renewal is not a change of the row"
    );
    assert!(!store.renew_lease(t, x, "op-2", 1, later).await.unwrap());
    assert!(!store.renew_lease(t, x, "op-1", 2, later).await.unwrap());
    assert!(
        !store
            .renew_lease(t, &xid("nobody"), "op-1", 1, later)
            .await
            .unwrap()
    );
}

pub async fn defer_user_backs_a_row_off_and_releases_it(store: &SqlStore) {
    with_tenants(store, &["acme"]).await;
    let u = user("acme", "alice", "op-1");
    store.insert_user(&u, None).await.expect("insert");
    let (t, x) = (&u.tenant_id, &u.external_id);
    let now = u.created_at;
    let next = plus(now, 30);
    // Another live holder: refused.
    assert!(matches!(
        store.defer_user(t, x, "op-2", now, next, "why").await,
        Err(StoreError::Stale)
    ));
    store
        .defer_user(
            t,
            x,
            "op-1",
            now,
            next,
            "its tenant's credential does not open",
        )
        .await
        .unwrap();
    let row = store.get_user(t, x).await.unwrap().unwrap();
    assert_eq!(row.attempts, 1);
    assert_eq!(row.next_attempt_at, Some(next));
    assert_eq!(
        row.last_error.as_deref(),
        Some("its tenant's credential does not open")
    );
    assert!(row.lease.is_none());
    // Backed off: not due before `next`, due after.
    assert!(store.due_users(plus(now, 29), 10).await.unwrap().is_empty());
    assert_eq!(store.due_users(plus(now, 31), 10).await.unwrap().len(), 1);
    // Already backed off (the state machine recorded its failure): left alone.
    assert!(matches!(
        store
            .defer_user(t, x, "op-1", now, plus(now, 60), "again")
            .await,
        Err(StoreError::Stale)
    ));
    assert_eq!(store.get_user(t, x).await.unwrap().unwrap().attempts, 1);
    // A lease another holder renewed, expired by less than the skew at `horizon`: kept.
    let mut other = user("acme", "bob", "op-9");
    other.lease = Some(Lease {
        owner: "op-9".into(),
        expires_at: plus(now, 5),
    });
    store.insert_user(&other, None).await.expect("insert bob");
    assert!(matches!(
        store
            .defer_user(
                t,
                &other.external_id,
                "op-1",
                plus(now, 4),
                plus(now, 60),
                "why"
            )
            .await,
        Err(StoreError::Stale)
    ));
    let bob = store
        .get_user(t, &other.external_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bob.lease.unwrap().owner, "op-9");
}

pub async fn claim_due_user_never_hands_one_row_to_two_claimers(store: &SqlStore) {
    // Arrange: five rows due, one leased, one idle.
    with_tenants(store, &["acme"]).await;
    let t0 = now();
    for i in 0..7 {
        let mut u = user("acme", &format!("u{i}"), "op");
        u.updated_at = plus(t0, i);
        u.lease = None;
        if i == 5 {
            u.lease = Some(Lease {
                owner: "busy".into(),
                expires_at: plus(t0, 10_000),
            });
        }
        if i == 6 {
            u.step = Step::Idle;
        }
        store.insert_user(&u, None).await.expect("insert");
    }
    let at = plus(t0, 100);
    // Act: eight claimers at once.
    let claims = futures::future::join_all((0..8).map(|i| {
        let lease = Lease {
            owner: format!("claimer-{i}"),
            expires_at: plus(t0, 200),
        };
        async move { store.claim_due_user(&lease, at).await.expect("claim") }
    }))
    .await;
    // Assert: each due row went to exactly one claimer, with its lease.
    let mut got: Vec<String> = claims
        .iter()
        .flatten()
        .map(|u| {
            assert!(u.lease.as_ref().unwrap().owner.starts_with("claimer-"));
            u.external_id.as_str().to_owned()
        })
        .collect();
    got.sort();
    assert_eq!(got, ["u0", "u1", "u2", "u3", "u4"]);
    assert!(
        store
            .claim_due_user(
                &Lease {
                    owner: "late".into(),
                    expires_at: plus(t0, 200)
                },
                at
            )
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn an_app_id_clash_is_not_reported_as_the_row_existing(store: &SqlStore) {
    with_tenants(store, &["acme"]).await;
    let a = user("acme", "alice", "op-1");
    store.insert_user(&a, None).await.expect("insert");
    let mut b = user("acme", "bob", "op-2");
    b.app_id = a.app_id.clone();
    assert!(matches!(
        store.insert_user(&b, None).await,
        Err(StoreError::AppIdTaken)
    ));
    assert!(matches!(
        store.insert_user(&a, None).await,
        Err(StoreError::AlreadyExists)
    ));
    // An update onto a taken id too.
    let b = user("acme", "bob", "op-2");
    store.insert_user(&b, None).await.expect("insert bob");
    let mut moved = b.clone();
    moved.app_id = a.app_id.clone();
    assert!(matches!(
        store.update_user(&moved, "op-2", None).await,
        Err(StoreError::AppIdTaken)
    ));
}
