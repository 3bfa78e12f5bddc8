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
                plus(t0, 30)
            )
            .await
            .expect("acquire"),
        None
    );
    // Missing row: None.
    assert_eq!(
        store
            .acquire_lease(&u.tenant_id, &xid("nobody"), &lease("op-2", 120), t0)
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
