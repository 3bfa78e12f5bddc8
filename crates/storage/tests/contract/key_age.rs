//! Key-age policies: a profile's policy round-trips; the scan finds a tenant's active users of
//! one profile whose key is older than a time, oldest first, and nothing else.

use provisioner_core::model::{Step, StoredKey, UserStatus};
use provisioner_core::ports::{TenantStore, UserStore};
use provisioner_storage::SqlStore;

use crate::fixtures::*;
use crate::users::with_tenants;

pub async fn a_profiles_key_age_policy_round_trips(store: &SqlStore) {
    with_tenants(store, &["acme"]).await;
    let mut p = profile("acme", "standard", &["Predict"]);
    p.max_key_age_secs = Some(90 * 86_400);
    p.rotation_grace_secs = 3_600;
    store
        .put_profile(&p, &event(Some("acme"), "profile.put", "standard"))
        .await
        .expect("put");
    let got = store
        .get_profile(&tid("acme"), &pname("standard"))
        .await
        .expect("get");
    assert_eq!(got.as_ref(), Some(&p));
    // Replaced: the policy follows.
    p.max_key_age_secs = None;
    p.rotation_grace_secs = 0;
    store
        .put_profile(&p, &event(Some("acme"), "profile.put", "standard"))
        .await
        .expect("replace");
    let got = store
        .get_profile(&tid("acme"), &pname("standard"))
        .await
        .expect("get");
    assert_eq!(got.and_then(|g| g.max_key_age_secs), None);
}

pub async fn keys_older_than_finds_only_idle_active_users_of_the_profile(store: &SqlStore) {
    with_tenants(store, &["acme", "beta"]).await;
    let t0 = now();
    let put = |tenant: &'static str,
               name: &'static str,
               prof: Option<&'static str>,
               age: i64,
               status: UserStatus,
               step: Step| {
        let mut u = user(tenant, name, "op");
        u.status = status;
        u.step = step;
        u.lease = None;
        u.profile = prof.map(pname);
        u.key = Some(StoredKey {
            sealed: vec![1; 40],
            fingerprint: format!("{name:0>64}"),
            scopes: scopes(&["Predict"]),
            generation: 1,
            created_at: plus(t0, -age),
        });
        u
    };
    let rows = [
        put(
            "acme",
            "old",
            Some("standard"),
            1000,
            UserStatus::Active,
            Step::Idle,
        ),
        put(
            "acme",
            "older",
            Some("standard"),
            2000,
            UserStatus::Active,
            Step::SweepKeys,
        ),
        put(
            "acme",
            "young",
            Some("standard"),
            10,
            UserStatus::Active,
            Step::Idle,
        ),
        put(
            "acme",
            "other-profile",
            Some("viewer"),
            3000,
            UserStatus::Active,
            Step::Idle,
        ),
        put(
            "acme",
            "explicit",
            None,
            3000,
            UserStatus::Active,
            Step::Idle,
        ),
        put(
            "acme",
            "rotating",
            Some("standard"),
            3000,
            UserStatus::Rotating,
            Step::CreateKey,
        ),
        put(
            "acme",
            "busy",
            Some("standard"),
            3000,
            UserStatus::Active,
            Step::DeleteKey,
        ),
        put(
            "beta",
            "theirs",
            Some("standard"),
            3000,
            UserStatus::Active,
            Step::Idle,
        ),
    ];
    for u in &rows {
        store.insert_user(u, None).await.expect("insert");
    }
    let due = store
        .keys_older_than(&tid("acme"), &pname("standard"), plus(t0, -100), 10)
        .await
        .expect("scan");
    let names: Vec<&str> = due.iter().map(|e| e.as_str()).collect();
    assert_eq!(names, ["older", "old"], "oldest key first");
    let one = store
        .keys_older_than(&tid("acme"), &pname("standard"), plus(t0, -100), 1)
        .await
        .expect("scan");
    assert_eq!(one.len(), 1);
}
