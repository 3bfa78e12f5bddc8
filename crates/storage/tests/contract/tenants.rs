//! Tenants and scope profiles.

use provisioner_core::StoreError;
use provisioner_core::model::{TenantStatus, UserStatus};
use provisioner_core::ports::{
    AuditStore, MaintenanceStore, TenantDeletion, TenantStore, UserStore,
};
use provisioner_storage::SqlStore;

use crate::fixtures::*;

pub async fn tenant_insert_get_update_and_duplicate(store: &SqlStore) {
    // Arrange
    let t = tenant("acme");
    let profiles = [
        profile("acme", "standard", &["Predict"]),
        profile("acme", "annotator", &["Inputs:Get", "Inputs:Add"]),
    ];

    // Act
    store
        .insert_tenant(
            &t,
            &profiles,
            &event(Some("acme"), "tenant.create", "tenants/acme"),
        )
        .await
        .expect("insert");
    let duplicate = store
        .insert_tenant(
            &t,
            &[],
            &event(Some("acme"), "tenant.create", "tenants/acme"),
        )
        .await;

    // Assert
    assert!(
        matches!(duplicate, Err(StoreError::AlreadyExists)),
        "{duplicate:?}"
    );
    let got = store
        .get_tenant(&t.id)
        .await
        .expect("get")
        .expect("present");
    assert_same_tenant(&got, &t);
    assert_eq!(store.list_profiles(&t.id).await.expect("profiles").len(), 2);
    assert!(
        store
            .get_tenant(&tid("nobody"))
            .await
            .expect("get")
            .is_none()
    );
    // The failed duplicate wrote no audit event: one event only.
    assert_eq!(
        store
            .list_audit(Some(&t.id), None, None, 10)
            .await
            .expect("audit")
            .len(),
        1
    );

    // Update every mutable field.
    let mut changed = t.clone();
    changed.display_name = "Acme Ünïcode ☃".into();
    changed.status = TenantStatus::Suspended;
    changed.base_url = "https://clarifai.acme.internal".into();
    changed.pat_sealed = vec![9; 40];
    changed.pat_fingerprint = "cd".repeat(32);
    changed.app_defaults.default_workflow = "General".into();
    changed.rate_limit.requests_per_second = 3;
    changed.allowed_scopes = scopes(&["Predict"]);
    changed.default_scope_profile = None;
    changed.auto_key_check = provisioner_core::model::AutoKeyCheck::Never;
    changed.updated_at = plus(t.updated_at, 5);
    store
        .update_tenant(
            &changed,
            t.version,
            &event(Some("acme"), "tenant.update", "tenants/acme"),
        )
        .await
        .expect("update");
    let got = store
        .get_tenant(&t.id)
        .await
        .expect("get")
        .expect("present");
    assert_same_tenant(&got, &changed);
    assert_eq!(
        (t.version, got.version),
        (1, 2),
        "an update increments the version"
    );

    let missing = store
        .update_tenant(
            &tenant("ghost"),
            1,
            &event(Some("ghost"), "tenant.update", "tenants/ghost"),
        )
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
}

pub async fn a_tenant_update_with_an_old_version_fails_and_changes_nothing(store: &SqlStore) {
    // Arrange: two writers read version 1; the first suspends the tenant.
    let t = tenant("acme");
    store
        .insert_tenant(
            &t,
            &[],
            &event(Some("acme"), "tenant.create", "tenants/acme"),
        )
        .await
        .expect("insert");
    let read = store
        .get_tenant(&t.id)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(read.version, 1);
    let mut suspended = read.clone();
    suspended.status = TenantStatus::Suspended;
    store
        .update_tenant(
            &suspended,
            read.version,
            &event(Some("acme"), "tenant.update", "tenants/acme"),
        )
        .await
        .expect("first write");

    // Act: the second writes what it read (active), with a new PAT, at the old version.
    let mut stale = read.clone();
    stale.pat_sealed = vec![7; 32];
    stale.pat_fingerprint = "ef".repeat(32);
    stale.updated_at = plus(read.updated_at, 9);
    let late = event(Some("acme"), "tenant.credential.replace", "tenants/acme");
    let r = store.update_tenant(&stale, read.version, &late).await;

    // Assert: refused as stale; the row and the audit log are as the first writer left them.
    assert!(matches!(r, Err(StoreError::Stale)), "{r:?}");
    let got = store
        .get_tenant(&t.id)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(got.version, 2);
    assert_same_tenant(&got, &suspended);
    let events = store
        .list_audit(None, None, None, 100)
        .await
        .expect("audit");
    assert!(
        events.iter().all(|(e, _)| e.id != late.id),
        "no audit of a refused write"
    );

    // A version from the future is stale too; the current one applies.
    let ahead = store
        .update_tenant(
            &stale,
            got.version + 1,
            &event(Some("acme"), "tenant.update", "tenants/acme"),
        )
        .await;
    assert!(matches!(ahead, Err(StoreError::Stale)), "{ahead:?}");
    let mut renamed = got.clone();
    renamed.display_name = "Renamed".into();
    store
        .update_tenant(
            &renamed,
            got.version,
            &event(Some("acme"), "tenant.update", "tenants/acme"),
        )
        .await
        .expect("write at the current version");
    let got = store
        .get_tenant(&t.id)
        .await
        .expect("get")
        .expect("present");
    assert_eq!((got.version, got.status), (3, TenantStatus::Suspended));
    assert_eq!(got.display_name, "Renamed");
}

pub async fn tenants_list_in_id_order_with_keyset_pagination(store: &SqlStore) {
    // Arrange: inserted out of order.
    for id in ["delta", "alpha", "echo", "charlie", "bravo"] {
        store
            .insert_tenant(&tenant(id), &[], &event(Some(id), "tenant.create", id))
            .await
            .expect("insert");
    }

    // Act: pages of two.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_tenants(after.as_ref(), 2).await.expect("list");
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        seen.extend(page.iter().map(|t| t.id.as_str().to_owned()));
    }

    // Assert
    assert_eq!(seen, ["alpha", "bravo", "charlie", "delta", "echo"]);
    let after_c = store.list_tenants(Some(&tid("c")), 10).await.expect("list");
    assert_eq!(after_c.first().map(|t| t.id.as_str()), Some("charlie"));
}

pub async fn profiles_are_created_replaced_listed_and_deleted(store: &SqlStore) {
    // Arrange
    store
        .insert_tenant(
            &tenant("acme"),
            &[],
            &event(Some("acme"), "tenant.create", "acme"),
        )
        .await
        .expect("insert");
    let first = profile("acme", "viewer", &["Predict"]);

    // Act / Assert: created, then replaced (keeping created_at).
    assert!(
        store
            .put_profile(&first, &event(Some("acme"), "profile.put", "viewer"))
            .await
            .expect("put")
    );
    let mut second = first.clone();
    second.scopes = scopes(&["Predict", "Inputs:Get"]);
    second.created_at = plus(first.created_at, 10);
    second.updated_at = plus(first.updated_at, 10);
    assert!(
        !store
            .put_profile(&second, &event(Some("acme"), "profile.put", "viewer"))
            .await
            .expect("put")
    );
    let got = store
        .get_profile(&first.tenant_id, &first.name)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(got.scopes, second.scopes);
    assert_eq!(got.created_at, first.created_at);
    assert_eq!(got.updated_at, second.updated_at);

    store
        .put_profile(
            &profile("acme", "annotator", &["Inputs:Add"]),
            &event(Some("acme"), "profile.put", "a"),
        )
        .await
        .expect("put");
    let names: Vec<_> = store
        .list_profiles(&tid("acme"))
        .await
        .expect("list")
        .into_iter()
        .map(|p| p.name.to_string())
        .collect();
    assert_eq!(names, ["annotator", "viewer"]);

    assert!(
        store
            .delete_profile(
                &tid("acme"),
                &pname("viewer"),
                &event(Some("acme"), "profile.delete", "viewer")
            )
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_profile(
                &tid("acme"),
                &pname("viewer"),
                &event(Some("acme"), "profile.delete", "viewer")
            )
            .await
            .expect("delete")
    );
    assert!(
        store
            .get_profile(&tid("acme"), &pname("viewer"))
            .await
            .expect("get")
            .is_none()
    );

    // A profile of a missing tenant is refused by the foreign key.
    let orphan = store
        .put_profile(
            &profile("ghost", "viewer", &["Predict"]),
            &event(Some("ghost"), "profile.put", "v"),
        )
        .await;
    assert!(matches!(orphan, Err(StoreError::NotFound)), "{orphan:?}");
    // Audit: tenant.create, three puts, one delete (the no-op delete and the refused put wrote nothing).
    assert_eq!(
        store
            .list_audit(Some(&tid("acme")), None, None, 100)
            .await
            .expect("audit")
            .len(),
        5
    );
}

pub async fn delete_tenant_refuses_live_users_and_cascades(store: &SqlStore) {
    // Arrange
    let t = tenant("acme");
    store
        .insert_tenant(
            &t,
            &[profile("acme", "standard", &["Predict"])],
            &event(Some("acme"), "tenant.create", "acme"),
        )
        .await
        .expect("insert");
    let mut u = user("acme", "alice", "op-1");
    store.insert_user(&u, None).await.expect("insert user");

    // Act / Assert
    let gone = store
        .delete_tenant(
            &tid("ghost"),
            &event(Some("ghost"), "tenant.delete", "ghost"),
        )
        .await
        .expect("delete");
    assert_eq!(gone, TenantDeletion::NotFound);
    let live = store
        .delete_tenant(&t.id, &event(Some("acme"), "tenant.delete", "acme"))
        .await
        .expect("delete");
    assert_eq!(live, TenantDeletion::HasLiveUsers);
    assert!(store.get_tenant(&t.id).await.expect("get").is_some());

    u.status = UserStatus::Deleted;
    store.update_user(&u, "op-1", None).await.expect("update");
    let deleted = store
        .delete_tenant(&t.id, &event(Some("acme"), "tenant.delete", "acme"))
        .await
        .expect("delete");
    assert_eq!(deleted, TenantDeletion::Deleted);
    assert!(store.get_tenant(&t.id).await.expect("get").is_none());
    assert!(
        store
            .list_profiles(&t.id)
            .await
            .expect("profiles")
            .is_empty()
    );
    assert!(
        store
            .get_user(&t.id, &u.external_id)
            .await
            .expect("user")
            .is_none()
    );
    // The audit trail outlives the tenant: create and delete (refusals wrote nothing).
    let actions: Vec<_> = store
        .list_audit(Some(&t.id), None, None, 10)
        .await
        .expect("audit")
        .into_iter()
        .map(|(e, _)| e.action)
        .collect();
    assert_eq!(actions, ["tenant.create", "tenant.delete"]);
}

pub async fn maintenance_tasks_are_recorded_once(store: &SqlStore) {
    assert!(
        !store
            .maintenance_done("sealing-binding-v2")
            .await
            .expect("read")
    );
    store
        .record_maintenance("sealing-binding-v2", now())
        .await
        .expect("record");
    store
        .record_maintenance("sealing-binding-v2", now())
        .await
        .expect("recording again is harmless");
    assert!(
        store
            .maintenance_done("sealing-binding-v2")
            .await
            .expect("read")
    );
    assert!(!store.maintenance_done("other").await.expect("read"));
}

pub async fn periodic_work_is_claimed_by_one_holder_until_its_claim_lapses(store: &SqlStore) {
    use std::time::Duration;
    let long = Duration::from_secs(60);
    assert!(
        store.claim_periodic("drift", "a", long).await.unwrap(),
        "free: taken"
    );
    assert!(
        !store.claim_periodic("drift", "b", long).await.unwrap(),
        "held by a"
    );
    assert!(
        store.claim_periodic("drift", "a", long).await.unwrap(),
        "a renews its own"
    );
    assert!(
        store.claim_periodic("other", "b", long).await.unwrap(),
        "claims are per name"
    );
    // A short claim lapses, and then someone else takes it (and the old holder has lost it).
    assert!(
        store
            .claim_periodic("short", "a", Duration::from_millis(150))
            .await
            .unwrap()
    );
    assert!(!store.claim_periodic("short", "b", long).await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        store.claim_periodic("short", "b", long).await.unwrap(),
        "lapsed: taken"
    );
    assert!(
        !store.claim_periodic("short", "a", long).await.unwrap(),
        "a lost it"
    );
    // Many replicas at once: exactly one wins a free claim.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.claim_periodic("race", &format!("r{i}"), long)
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1, "one replica holds the claim");
}
