//! End users: uniqueness, leases, conditional updates, round trips, listing, look-ups.

use std::collections::BTreeMap;

use provisioner_core::StoreError;
use provisioner_core::model::{RetiredKey, Step, StoredKey, UserStatus};
use provisioner_core::ports::{TenantStore, UserStore};
use provisioner_storage::SqlStore;

use crate::fixtures::*;

pub async fn with_tenants(store: &SqlStore, ids: &[&str]) {
    for id in ids {
        store
            .insert_tenant(&tenant(id), &[], &event(Some(id), "tenant.create", id))
            .await
            .expect("tenant");
    }
}

pub async fn insert_user_refuses_a_duplicate(store: &SqlStore) {
    // Arrange
    with_tenants(store, &["acme"]).await;
    let u = user("acme", "alice", "op-1");

    // Act
    store
        .insert_user(
            &u,
            Some(&event(Some("acme"), "user.provision", "users/alice")),
        )
        .await
        .expect("insert");
    let again = store.insert_user(&u, None).await;
    let orphan = store
        .insert_user(&user("ghost", "alice", "op-1"), None)
        .await;

    // Assert
    assert!(matches!(again, Err(StoreError::AlreadyExists)), "{again:?}");
    assert!(matches!(orphan, Err(StoreError::NotFound)), "{orphan:?}");
    assert_eq!(
        store
            .get_user(&u.tenant_id, &u.external_id)
            .await
            .expect("get"),
        Some(u)
    );
}

pub async fn concurrent_inserts_of_one_user_have_exactly_one_winner(store: &SqlStore) {
    // Arrange
    with_tenants(store, &["acme"]).await;

    // Act: 16 tasks race to create the same user.
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .insert_user(&user("acme", "bob", &format!("op-{i}")), None)
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(()) => ok += 1,
            Err(StoreError::AlreadyExists) => {}
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }

    // Assert
    assert_eq!(ok, 1);
}

pub async fn every_user_field_round_trips(store: &SqlStore) {
    // Arrange: every optional field set, Unicode everywhere text may hold it.
    with_tenants(store, &["acme"]).await;
    let base = user("acme", "ユーザー🙂 Zoë", "op-1");
    let at = base.created_at;
    let mut u = base.clone();
    u.status = UserStatus::Rotating;
    u.step = Step::CreateKey;
    u.generation = 7;
    u.scopes = scopes(&["Predict", "Inputs:Get", "Inputs:Add"]);
    u.key = Some(StoredKey {
        sealed: (0..=255).collect(),
        fingerprint: "11".repeat(32),
        scopes: scopes(&["Predict"]),
        generation: 6,
        created_at: plus(at, -100),
    });
    u.retired_key = Some(RetiredKey {
        sealed: vec![0; 60],
        fingerprint: "22".repeat(32),
        delete_after: plus(at, 3600),
    });
    u.display_name = Some("Zoë «Ünïcödé» 名前".into());
    u.metadata = BTreeMap::from([
        ("team".into(), "研究 🧪".into()),
        ("empty".into(), String::new()),
        ("quote\"key".into(), "line\\n".into()),
    ]);
    u.last_error = Some("upstream said: 503 «busy»".into());
    u.attempts = 3;
    u.next_attempt_at = Some(ms(at.timestamp_millis() + 1234));
    u.rotation_grace_secs = 86_400;
    u.secret_pending = true;
    u.profile = Some(pname("standard"));
    u.version = 41;
    u.updated_at = ms(at.timestamp_millis() + 1);

    // Act
    store.insert_user(&u, None).await.expect("insert");
    let got = store
        .get_user(&u.tenant_id, &u.external_id)
        .await
        .expect("get");

    // Assert
    assert_eq!(got.as_ref(), Some(&u));

    // And back to all-empty through update_user.
    let mut cleared = base.clone();
    cleared.updated_at = plus(at, 9);
    store
        .update_user(&cleared, "op-1", None)
        .await
        .expect("update");
    // The stored version is bumped by the write, whatever the caller's copy says.
    cleared.version = u.version + 1;
    assert_eq!(
        store
            .get_user(&u.tenant_id, &u.external_id)
            .await
            .expect("get"),
        Some(cleared)
    );
}

pub async fn list_users_paginates_in_byte_order_with_status_filter(store: &SqlStore) {
    // Arrange: ids whose byte order differs from most locales' order.
    with_tenants(store, &["acme", "other"]).await;
    let ids = [
        "b",
        "B",
        "a",
        "é",
        "z",
        "Z-10",
        "Z-9",
        "ユーザー",
        "🙂",
        "ab",
        "e",
    ];
    for (i, id) in ids.iter().enumerate() {
        let mut u = user("acme", id, "op");
        if i % 2 == 0 {
            u.status = UserStatus::Active;
        }
        store.insert_user(&u, None).await.expect("insert");
    }
    store
        .insert_user(&user("other", "a0", "op"), None)
        .await
        .expect("insert other tenant");
    let mut expected: Vec<&str> = ids.to_vec();
    expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));

    // Act: pages of three, all statuses.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_users(&tid("acme"), None, after.as_ref(), 3)
            .await
            .expect("list");
        let Some(last) = page.last() else { break };
        after = Some(last.external_id.clone());
        seen.extend(page.iter().map(|u| u.external_id.as_str().to_owned()));
    }

    // Assert
    assert_eq!(seen, expected);
    let active: Vec<_> = store
        .list_users(&tid("acme"), Some(UserStatus::Active), None, 100)
        .await
        .expect("list")
        .into_iter()
        .map(|u| u.external_id.as_str().to_owned())
        .collect();
    let mut expected_active: Vec<&str> = ids.iter().step_by(2).copied().collect();
    expected_active.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(active, expected_active);
    let after_e: Vec<_> = store
        .list_users(
            &tid("acme"),
            Some(UserStatus::Provisioning),
            Some(&xid("e")),
            100,
        )
        .await
        .expect("list")
        .into_iter()
        .map(|u| u.external_id.as_str().to_owned())
        .collect();
    let mut expected_after_e: Vec<&str> = ids
        .iter()
        .skip(1)
        .step_by(2)
        .copied()
        .filter(|id| id.as_bytes() > b"e".as_slice())
        .collect();
    expected_after_e.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(after_e, expected_after_e);
}

pub async fn find_by_fingerprint_finds_current_and_retired_keys(store: &SqlStore) {
    // Arrange
    with_tenants(store, &["acme"]).await;
    let at = now();
    let mut u = user("acme", "alice", "op-1");
    u.key = Some(StoredKey {
        sealed: vec![1],
        fingerprint: "aa".repeat(32),
        scopes: scopes(&["Predict"]),
        generation: 2,
        created_at: at,
    });
    u.retired_key = Some(RetiredKey {
        sealed: vec![2],
        fingerprint: "bb".repeat(32),
        delete_after: at,
    });
    store.insert_user(&u, None).await.expect("insert");
    let key = Some((tid("acme"), xid("alice")));

    // Act / Assert
    assert_eq!(
        store
            .find_by_fingerprint(&"aa".repeat(32))
            .await
            .expect("find"),
        key
    );
    assert_eq!(
        store
            .find_by_fingerprint(&"bb".repeat(32))
            .await
            .expect("find"),
        key
    );
    assert_eq!(
        store
            .find_by_fingerprint(&"cc".repeat(32))
            .await
            .expect("find"),
        None
    );
}

pub async fn count_users_by_status_counts_one_tenant(store: &SqlStore) {
    // Arrange
    with_tenants(store, &["acme", "other"]).await;
    for (id, status) in [
        ("a", UserStatus::Active),
        ("b", UserStatus::Active),
        ("c", UserStatus::Failed),
        ("d", UserStatus::Provisioning),
    ] {
        let mut u = user("acme", id, "op");
        u.status = status;
        store.insert_user(&u, None).await.expect("insert");
    }
    store
        .insert_user(&user("other", "x", "op"), None)
        .await
        .expect("insert");

    // Act
    let mut counts = store
        .count_users_by_status(&tid("acme"))
        .await
        .expect("count");
    counts.sort_by_key(|(s, _)| s.as_str());
    let mut all = store.count_all_users_by_status().await.expect("count all");
    all.sort_by_key(|(t, s, _)| (t.as_str().to_owned(), s.as_str()));

    // Assert
    assert_eq!(
        counts,
        [
            (UserStatus::Active, 2),
            (UserStatus::Failed, 1),
            (UserStatus::Provisioning, 1)
        ]
    );
    assert_eq!(
        all,
        [
            (tid("acme"), UserStatus::Active, 2),
            (tid("acme"), UserStatus::Failed, 1),
            (tid("acme"), UserStatus::Provisioning, 1),
            (tid("other"), UserStatus::Provisioning, 1),
        ],
        "every tenant in one read"
    );
    assert!(
        store
            .count_users_by_status(&tid("ghost"))
            .await
            .expect("count")
            .is_empty()
    );
}
