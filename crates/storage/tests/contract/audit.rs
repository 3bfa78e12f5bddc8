//! The audit log: atomic with the change it records, and listed by tenant, cursor and time.

use provisioner_core::StoreError;
use provisioner_core::model::{AuditEvent, Step, UserStatus};
use provisioner_core::ports::{AuditStore, Store, TenantStore, UserStore};
use provisioner_storage::SqlStore;

use crate::fixtures::*;
use crate::users::with_tenants;

pub async fn a_failed_audit_insert_rolls_the_change_back(store: &SqlStore) {
    // Arrange: an event already stored; reusing its id makes the next audit insert fail.
    let first = event(Some("acme"), "tenant.create", "tenants/acme");
    store
        .insert_tenant(&tenant("acme"), &[], &first)
        .await
        .expect("tenant");
    let u = user("acme", "alice", "op-1");
    store.insert_user(&u, None).await.expect("insert");
    let mut dup = event(Some("acme"), "user.update", "users/alice");
    dup.id = first.id.clone();

    // Act: each write carries the duplicate-id event.
    let mut next = u.clone();
    next.status = UserStatus::Active;
    next.step = Step::Idle;
    let update = store.update_user(&next, "op-1", Some(&dup)).await;
    let insert = store
        .insert_user(&user("acme", "bob", "op-1"), Some(&dup))
        .await;
    let new_tenant = store
        .insert_tenant(&tenant("beta"), &[profile("beta", "p", &["Predict"])], &dup)
        .await;
    let mut renamed = tenant("acme");
    renamed.display_name = "renamed".into();
    let tenant_update = store.update_tenant(&renamed, renamed.version, &dup).await;
    let put = store
        .put_profile(&profile("acme", "p", &["Predict"]), &dup)
        .await;

    // Assert: every write failed as a backend error (not "already exists": the user row did
    // not exist), and nothing of it remains.
    for (what, r) in [
        ("update", update),
        ("insert", insert),
        ("tenant", new_tenant),
        ("tenant update", tenant_update),
    ] {
        assert!(matches!(r, Err(StoreError::Backend(_))), "{what}: {r:?}");
    }
    assert!(matches!(put, Err(StoreError::Backend(_))), "{put:?}");
    assert_eq!(
        store
            .get_user(&u.tenant_id, &u.external_id)
            .await
            .expect("get"),
        Some(u)
    );
    assert!(
        store
            .get_user(&tid("acme"), &xid("bob"))
            .await
            .expect("get")
            .is_none()
    );
    assert!(store.get_tenant(&tid("beta")).await.expect("get").is_none());
    assert!(
        store
            .list_profiles(&tid("beta"))
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(
        store
            .get_tenant(&tid("acme"))
            .await
            .expect("get")
            .expect("acme")
            .display_name,
        "Tenant acme"
    );
    assert!(
        store
            .get_profile(&tid("acme"), &pname("p"))
            .await
            .expect("get")
            .is_none()
    );
    // A duplicate event on its own is refused as existing.
    assert!(matches!(
        store.append_audit(&first).await,
        Err(StoreError::AlreadyExists)
    ));
    assert_eq!(
        events(
            store
                .list_audit(None, None, None, 100)
                .await
                .expect("audit")
        ),
        [first]
    );
}

/// The events of a listing, without their positions.
fn events(listed: Vec<(AuditEvent, String)>) -> Vec<AuditEvent> {
    listed.into_iter().map(|(e, _)| e).collect()
}

pub async fn list_audit_filters_by_tenant_cursor_and_time(store: &SqlStore) {
    // Arrange: six events, alternating tenants, one system event without tenant, one second apart.
    let t0 = now();
    let mut evs = Vec::new();
    for i in 0..6i64 {
        let tenant = match i % 3 {
            0 => Some("acme"),
            1 => Some("beta"),
            _ => None,
        };
        let mut e = event(tenant, "user.reveal_key", &format!("users/u{i}"));
        e.at = plus(t0, i);
        e.request_id = (i % 2 == 0).then(|| format!("req-{i}"));
        store.append_audit(&e).await.expect("append");
        evs.push(e);
    }

    // Act / Assert: all, in commit (here: append) order.
    let all = store.list_audit(None, None, None, 100).await.expect("all");
    let positions: Vec<String> = all.iter().map(|(_, p)| p.clone()).collect();
    assert_eq!(events(all), evs);
    // One tenant.
    let acme = store
        .list_audit(Some(&tid("acme")), None, None, 100)
        .await
        .expect("acme");
    assert_eq!(events(acme), [evs[0].clone(), evs[3].clone()]);
    // Keyset: pages of two.
    let page1 = store.list_audit(None, None, None, 2).await.expect("page");
    let page2 = store
        .list_audit(None, Some(&page1[1].1), None, 2)
        .await
        .expect("page");
    assert_eq!(events(page2), evs[2..4]);
    // Since (inclusive), combined with tenant and cursor.
    assert_eq!(
        events(
            store
                .list_audit(None, None, Some(plus(t0, 4)), 100)
                .await
                .expect("since")
        ),
        evs[4..]
    );
    assert_eq!(
        events(
            store
                .list_audit(Some(&tid("beta")), Some(&positions[1]), Some(t0), 100)
                .await
                .expect("beta")
        ),
        [evs[4].clone()]
    );
    // A cursor from before commit-ordered positions (an event id) still continues after it.
    assert_eq!(
        events(
            store
                .list_audit(None, Some(&evs[1].id), None, 2)
                .await
                .expect("old cursor")
        ),
        evs[2..4]
    );
    // A position this store did not hand out is refused as such.
    assert!(matches!(
        store
            .list_audit(None, Some("not-a-position"), None, 10)
            .await,
        Err(StoreError::BadCursor)
    ));
}

pub async fn an_event_committed_late_is_never_skipped_by_a_cursor(store: &SqlStore) {
    // Arrange: event A's transaction starts first and stays open (a user write in flight)
    // while B is appended and a reader pages; A's id (and time) come first.
    with_tenants(store, &["acme"]).await;
    let a = event(Some("acme"), "user.provision", "users/a");
    let b = event(Some("acme"), "user.provision", "users/b");
    assert!(a.id < b.id);
    let late = store.begin_audit_for_test(&a).await.expect("open A");
    // B's writer runs concurrently: audit writers commit one at a time, so it waits for A.
    let b_writer = {
        let (store, b) = (store.clone(), b.clone());
        tokio::spawn(async move { store.append_audit(&b).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // Act: a reader pages while A is open, then A commits, B follows, and the reader goes on.
    let first = store
        .list_audit(None, None, None, 10)
        .await
        .expect("page 1");
    let cursor = first.last().map(|(_, p)| p.clone());
    late.commit().await.expect("commit A");
    b_writer.await.expect("task").expect("append B");
    let rest = store
        .list_audit(None, cursor.as_deref(), None, 10)
        .await
        .expect("page 2");
    // Assert: between the two pages, the reader saw A and B once each, in commit order.
    let seen: Vec<String> = events(first)
        .into_iter()
        .chain(events(rest))
        .filter(|e| e.action == "user.provision")
        .map(|e| e.id)
        .collect();
    assert_eq!(
        seen,
        [a.id, b.id],
        "nothing skipped, nothing twice, commit order"
    );
}

pub async fn ready_and_migrations_are_idempotent(store: &SqlStore) {
    store.ready().await.expect("ready after migrate");
    store.migrate().await.expect("migrate again");
    store.migrate().await.expect("and again");
    store.ready().await.expect("still ready");
}
