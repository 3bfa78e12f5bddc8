//! SCIM settings, tokens and user resources: round trips, the database-enforced uniqueness of
//! a tenant's live users, conditional updates, filtered listing, and the sync claim.

use std::collections::BTreeSet;
use std::sync::Arc;

use provisioner_core::StoreError;
use provisioner_core::model::Timestamp;
use provisioner_core::ports::{AuditStore, ScimStore, TenantDeletion, TenantStore};
use provisioner_core::scim::{
    DeactivatePolicy, ExternalIdSource, ScimAttributes, ScimConfig, ScimEmail, ScimQuery,
    ScimSyncOutcome, ScimToken, ScimUser, email_needle, user_name_key,
};
use provisioner_storage::SqlStore;

use crate::fixtures::*;
use crate::users::with_tenants;

/// A live, synced SCIM user `id` of `tenant` named `user_name`, driving `external`.
fn scim_user(tenant: &str, id: &str, user_name: &str, external: &str) -> ScimUser {
    let at = now();
    ScimUser {
        id: id.into(),
        tenant_id: tid(tenant),
        external_id: xid(external),
        attrs: ScimAttributes {
            user_name: user_name.into(),
            active: true,
            ..ScimAttributes::default()
        },
        profile: None,
        deleted: false,
        version: 1,
        synced_version: 1,
        sync_error: None,
        sync_attempts: 0,
        next_sync_at: None,
        created_at: at,
        updated_at: at,
    }
}

fn token(
    tenant: &str,
    id: &str,
    created_at: Timestamp,
    expires_at: Option<Timestamp>,
) -> ScimToken {
    ScimToken {
        id: id.into(),
        tenant_id: tid(tenant),
        hash: format!("{id:0>64}"),
        created_at,
        expires_at,
        created_by: "admin@example.com".into(),
    }
}

async fn insert(store: &SqlStore, u: &ScimUser) -> Result<(), StoreError> {
    let target = format!("scim/users/{}", u.id);
    store
        .insert_scim_user(
            u,
            &event(Some(u.tenant_id.as_str()), "scim.user.create", &target),
        )
        .await
}

async fn update(store: &SqlStore, u: &ScimUser, read_version: i64) -> Result<(), StoreError> {
    let target = format!("scim/users/{}", u.id);
    store
        .update_scim_user(
            u,
            read_version,
            &event(Some(u.tenant_id.as_str()), "scim.user.update", &target),
        )
        .await
}

async fn get(store: &SqlStore, tenant: &str, id: &str) -> Option<ScimUser> {
    store.get_scim_user(&tid(tenant), id).await.expect("get")
}

async fn actions(store: &SqlStore, tenant: &str) -> Vec<String> {
    store
        .list_audit(Some(&tid(tenant)), None, None, 100)
        .await
        .expect("audit")
        .into_iter()
        .map(|(e, _)| e.action)
        .collect()
}

fn ids(users: &[ScimUser]) -> Vec<&str> {
    users.iter().map(|u| u.id.as_str()).collect()
}

pub async fn scim_config_round_trips_and_is_replaced(store: &SqlStore) {
    with_tenants(store, &["acme", "beta"]).await;
    assert_eq!(
        store.get_scim_config(&tid("acme")).await.expect("get"),
        None
    );

    let mut config = ScimConfig {
        tenant_id: tid("acme"),
        external_id_from: ExternalIdSource::ExternalId,
        on_deactivate: DeactivatePolicy::Deprovision,
        scope_profile: Some(pname("standard")),
        profile_attribute: Some(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department".into(),
        ),
        updated_at: Some(now()),
    };
    let audit = || event(Some("acme"), "scim.config.update", "scim/config");
    store.put_scim_config(&config, &audit()).await.expect("put");
    assert_eq!(
        store.get_scim_config(&tid("acme")).await.expect("get"),
        Some(config.clone())
    );

    // Replaced as a whole (unset fields included).
    config.external_id_from = ExternalIdSource::UserName;
    config.on_deactivate = DeactivatePolicy::RevokeKey;
    config.scope_profile = None;
    config.profile_attribute = None;
    config.updated_at = Some(plus(now(), 5));
    store.put_scim_config(&config, &audit()).await.expect("put");
    assert_eq!(
        store.get_scim_config(&tid("acme")).await.expect("get"),
        Some(config.clone())
    );
    // Another tenant's settings are its own.
    assert_eq!(
        store.get_scim_config(&tid("beta")).await.expect("get"),
        None
    );
    assert_eq!(
        actions(store, "acme").await,
        ["tenant.create", "scim.config.update", "scim.config.update"]
    );

    // No such tenant: nothing written.
    let ghost = ScimConfig::default_for(&tid("ghost"));
    let out = store
        .put_scim_config(&ghost, &event(Some("ghost"), "scim.config.update", "x"))
        .await;
    assert!(matches!(out, Err(StoreError::NotFound)), "{out:?}");
    assert!(actions(store, "ghost").await.is_empty());
}

pub async fn a_new_scim_token_cuts_the_others_short_and_tokens_are_found_and_deleted(
    store: &SqlStore,
) {
    with_tenants(store, &["acme", "beta"]).await;
    let t0 = now();
    let audit = || event(Some("acme"), "scim.token.create", "scim/tokens");
    let far = plus(t0, 30 * 86_400);
    let soon = plus(t0, 60);
    let cutoff = plus(t0, 3_600);
    let a = token("acme", "tok-a", t0, None);
    let b = token("acme", "tok-b", plus(t0, 1), Some(far));
    let c = token("acme", "tok-c", plus(t0, 2), Some(soon));
    let other = token("beta", "tok-x", t0, None);
    for t in [&a, &b, &c] {
        // Each insert cuts the earlier ones to a day from now; the last one sets the cut-off.
        store
            .insert_scim_token(t, plus(t0, 86_400), &audit())
            .await
            .expect("insert");
    }
    store
        .insert_scim_token(
            &other,
            t0,
            &event(Some("beta"), "scim.token.create", "scim/tokens"),
        )
        .await
        .expect("insert");

    // A fourth token: the others expire at the cut-off at the latest; an earlier expiry stays;
    // the new token keeps its own; another tenant's tokens are untouched.
    let d = token("acme", "tok-d", plus(t0, 3), None);
    store
        .insert_scim_token(&d, cutoff, &audit())
        .await
        .expect("insert");
    let listed = store.list_scim_tokens(&tid("acme")).await.expect("list");
    let expected = vec![
        ScimToken {
            expires_at: Some(cutoff),
            ..a.clone()
        },
        ScimToken {
            expires_at: Some(cutoff),
            ..b.clone()
        },
        c.clone(),
        d.clone(),
    ];
    assert_eq!(listed, expected, "oldest first, expired ones included");
    assert_eq!(
        store.list_scim_tokens(&tid("beta")).await.expect("list"),
        vec![other.clone()]
    );

    // Found by hash whatever its tenant or expiry.
    assert_eq!(
        store.find_scim_token(&c.hash).await.expect("find"),
        Some(c.clone())
    );
    assert_eq!(
        store.find_scim_token(&other.hash).await.expect("find"),
        Some(other.clone())
    );
    assert_eq!(store.find_scim_token("nope").await.expect("find"), None);

    // A taken hash (or id) is refused, and nothing else changes.
    let dup = ScimToken {
        id: "tok-e".into(),
        ..token("acme", "tok-d", plus(t0, 4), None)
    };
    let out = store.insert_scim_token(&dup, t0, &audit()).await;
    assert!(matches!(out, Err(StoreError::AlreadyExists)), "{out:?}");
    let out = store
        .insert_scim_token(&token("acme", "tok-a", t0, None), t0, &audit())
        .await;
    assert!(matches!(out, Err(StoreError::AlreadyExists)), "{out:?}");
    assert_eq!(
        store.list_scim_tokens(&tid("acme")).await.expect("list"),
        expected
    );
    // No such tenant.
    let out = store
        .insert_scim_token(&token("ghost", "tok-g", t0, None), t0, &audit())
        .await;
    assert!(matches!(out, Err(StoreError::NotFound)), "{out:?}");

    // Deleted only within its tenant, once.
    let del = |tenant: &'static str, id: &'static str| async move {
        store
            .delete_scim_token(
                &tid(tenant),
                id,
                &event(Some(tenant), "scim.token.delete", id),
            )
            .await
            .expect("delete")
    };
    assert!(!del("beta", "tok-a").await);
    assert!(del("acme", "tok-a").await);
    assert!(!del("acme", "tok-a").await);
    assert_eq!(store.find_scim_token(&a.hash).await.expect("find"), None);
    assert_eq!(
        store
            .list_scim_tokens(&tid("acme"))
            .await
            .expect("list")
            .len(),
        3
    );
    let acme = actions(store, "acme").await;
    assert_eq!(
        acme.iter().filter(|a| *a == "scim.token.create").count(),
        4,
        "{acme:?}"
    );
    assert_eq!(
        acme.iter().filter(|a| *a == "scim.token.delete").count(),
        1,
        "{acme:?}"
    );
}

pub async fn every_scim_user_field_round_trips(store: &SqlStore) {
    with_tenants(store, &["acme"]).await;
    let t0 = now();
    let u = ScimUser {
        id: "0190b3c4-0000-7000-8000-000000000001".into(),
        tenant_id: tid("acme"),
        external_id: xid("Ann.Lee@Example.com"),
        attrs: ScimAttributes {
            user_name: "Ann.Lee@Example.com".into(),
            external_id: Some("00u1abcd".into()),
            given_name: Some("Ann".into()),
            family_name: Some("Lée".into()),
            formatted_name: Some("Ann Lée".into()),
            display_name: Some("Ann Lée (ML) 🚀".into()),
            emails: vec![
                ScimEmail {
                    value: "Ann.Lee@Example.com".into(),
                    kind: Some("work".into()),
                    primary: true,
                },
                ScimEmail {
                    value: "ann@home.example".into(),
                    kind: None,
                    primary: false,
                },
            ],
            active: false,
        },
        profile: Some(pname("annotator")),
        deleted: false,
        version: 7,
        synced_version: 5,
        sync_error: Some("upstream refused: quota".into()),
        sync_attempts: 3,
        next_sync_at: Some(plus(t0, 90)),
        created_at: plus(t0, -3_600),
        updated_at: t0,
    };
    insert(store, &u).await.expect("insert");
    assert_eq!(get(store, "acme", &u.id).await, Some(u.clone()));
    // Only within its tenant.
    with_tenants(store, &["beta"]).await;
    assert_eq!(get(store, "beta", &u.id).await, None);
    assert_eq!(get(store, "acme", "nope").await, None);

    // The empty shape round-trips too.
    let bare = scim_user("acme", "0190b3c4-0000-7000-8000-000000000002", "bob", "bob");
    insert(store, &bare).await.expect("insert");
    assert_eq!(get(store, "acme", &bare.id).await, Some(bare));
    assert_eq!(
        actions(store, "acme").await,
        ["tenant.create", "scim.user.create", "scim.user.create"]
    );

    // No such tenant.
    let out = insert(store, &scim_user("ghost", "g-1", "g", "g")).await;
    assert!(matches!(out, Err(StoreError::NotFound)), "{out:?}");
}

pub async fn scim_user_names_and_external_ids_are_unique_among_live_users(store: &SqlStore) {
    with_tenants(store, &["acme", "beta"]).await;
    let ann = scim_user("acme", "u-1", "Ann@Example.com", "ann");
    insert(store, &ann).await.expect("insert");

    // The same userName in another case: refused, nothing written (no event either).
    let clash = scim_user("acme", "u-2", "ANN@example.COM", "ann-2");
    let out = insert(store, &clash).await;
    assert!(matches!(out, Err(StoreError::AlreadyExists)), "{out:?}");
    assert_eq!(get(store, "acme", "u-2").await, None);
    // Another userName driving the same provisioning record: refused.
    let clash = scim_user("acme", "u-3", "someone-else", "ann");
    let out = insert(store, &clash).await;
    assert!(matches!(out, Err(StoreError::AlreadyExists)), "{out:?}");
    // The same id: refused.
    let clash = scim_user("acme", "u-1", "carol", "carol");
    let out = insert(store, &clash).await;
    assert!(matches!(out, Err(StoreError::AlreadyExists)), "{out:?}");
    assert_eq!(
        actions(store, "acme").await,
        ["tenant.create", "scim.user.create"]
    );
    // Another tenant may have both.
    insert(store, &scim_user("beta", "b-1", "ann@example.com", "ann"))
        .await
        .expect("insert in another tenant");

    // Once ann is deleted (not yet removed), her userName is free again; her provisioning
    // record stays taken until the deletion is synced and the row removed.
    let mut gone = ann.clone();
    gone.deleted = true;
    gone.updated_at = plus(ann.updated_at, 1);
    update(store, &gone, ann.version).await.expect("delete");
    let same_record = scim_user("acme", "u-5", "ann@example.com", "ann");
    let out = insert(store, &same_record).await;
    assert!(matches!(out, Err(StoreError::AlreadyExists)), "{out:?}");
    let again = scim_user("acme", "u-4", "ann@example.com", "ann-2");
    insert(store, &again).await.expect("insert after deletion");
    // The deleted row is still there (hidden), and two deleted rows may share both.
    assert!(get(store, "acme", "u-1").await.expect("kept").deleted);
    let mut gone_too = again.clone();
    gone_too.deleted = true;
    update(store, &gone_too, again.version)
        .await
        .expect("second deletion");

    // A deleted row cannot be brought back while a live one holds its userName.
    insert(store, &scim_user("acme", "u-5", "Ann@Example.com", "ann-5"))
        .await
        .expect("insert");
    let mut back = get(store, "acme", "u-1").await.expect("row");
    back.deleted = false;
    let out = update(store, &back, back.version).await;
    assert!(matches!(out, Err(StoreError::AlreadyExists)), "{out:?}");
}

pub async fn scim_user_updates_are_conditioned_on_the_version_read(store: &SqlStore) {
    with_tenants(store, &["acme", "beta"]).await;
    let ann = scim_user("acme", "u-1", "ann", "ann");
    let bob = scim_user("acme", "u-2", "bob", "bob");
    insert(store, &ann).await.expect("insert");
    insert(store, &bob).await.expect("insert");

    // Every writable field changes; the fixed ones are ignored.
    let mut new = ann.clone();
    new.attrs = ScimAttributes {
        user_name: "Ann.Lee".into(),
        external_id: Some("okta-1".into()),
        given_name: Some("Ann".into()),
        family_name: None,
        formatted_name: None,
        display_name: Some("Ann".into()),
        emails: vec![ScimEmail {
            value: "ann@example.com".into(),
            kind: Some("work".into()),
            primary: true,
        }],
        active: false,
    };
    new.profile = Some(pname("annotator"));
    new.updated_at = plus(ann.updated_at, 10);
    // The sync fields are the store's: a write leaves them (a claim taken since the read stays).
    let synced_before = (ann.synced_version, ann.sync_error.clone(), ann.next_sync_at);
    new.synced_version = 0;
    new.sync_error = Some("why".into());
    new.sync_attempts = 2;
    new.next_sync_at = Some(plus(ann.updated_at, 20));
    new.version = 99; // ignored: the stored version is read_version + 1
    let mut fixed = new.clone();
    fixed.external_id = xid("someone-else");
    fixed.created_at = plus(ann.created_at, 1_000);
    update(store, &fixed, 1).await.expect("update");
    let stored = get(store, "acme", "u-1").await.expect("row");
    assert_eq!(
        stored,
        ScimUser {
            version: 2,
            synced_version: synced_before.0,
            sync_error: synced_before.1.clone(),
            sync_attempts: 0,
            next_sync_at: synced_before.2,
            ..new.clone()
        }
    );

    // The version read is old now: nothing written.
    let mut late = stored.clone();
    late.attrs.display_name = Some("late".into());
    let out = update(store, &late, 1).await;
    assert!(matches!(out, Err(StoreError::Stale)), "{out:?}");
    assert_eq!(get(store, "acme", "u-1").await.expect("row"), stored);

    // Gone, or another tenant's: not found.
    let out = update(store, &scim_user("acme", "nope", "x", "x"), 1).await;
    assert!(matches!(out, Err(StoreError::NotFound)), "{out:?}");
    let out = update(
        store,
        &ScimUser {
            tenant_id: tid("beta"),
            ..stored.clone()
        },
        2,
    )
    .await;
    assert!(matches!(out, Err(StoreError::NotFound)), "{out:?}");

    // Renaming onto another live user's userName (case-folded): refused, nothing written.
    let mut rename = stored.clone();
    rename.attrs.user_name = "BOB".into();
    let out = update(store, &rename, 2).await;
    assert!(matches!(out, Err(StoreError::AlreadyExists)), "{out:?}");
    assert_eq!(get(store, "acme", "u-1").await.expect("row"), stored);
    // A rename to its own name in another case is fine.
    let mut recase = stored.clone();
    recase.attrs.user_name = "ANN.LEE".into();
    update(store, &recase, 2).await.expect("recase");
    assert_eq!(get(store, "acme", "u-1").await.expect("row").version, 3);

    // One event per write that happened.
    let acme = actions(store, "acme").await;
    assert_eq!(
        acme.iter().filter(|a| *a == "scim.user.update").count(),
        2,
        "{acme:?}"
    );
}

pub async fn list_scim_users_applies_every_condition_and_pages(store: &SqlStore) {
    with_tenants(store, &["acme", "beta"]).await;
    let email = |value: &str, kind: Option<&str>| ScimEmail {
        value: value.into(),
        kind: kind.map(Into::into),
        primary: false,
    };
    let mut users = Vec::new();
    for (i, (name, ext, emails)) in [
        (
            "Ann",
            Some("ext-a"),
            vec![email("Ann@Example.com", Some("work"))],
        ),
        (
            "bob",
            Some("ext-b"),
            vec![email("bob@example.com", Some("home"))],
        ),
        (
            "carol",
            None,
            vec![email("shared@example.com", Some("work"))],
        ),
        (
            "dave",
            Some("ext-a"),
            vec![email("shared@example.com", None)],
        ),
        ("erin", None, vec![]),
    ]
    .into_iter()
    .enumerate()
    {
        let mut u = scim_user("acme", &format!("u-{i}"), name, name);
        u.attrs.external_id = ext.map(Into::into);
        u.attrs.emails = emails;
        insert(store, &u).await.expect("insert");
        users.push(u);
    }
    // Noise: a deleted user matching everything, and another tenant's.
    let mut gone = scim_user("acme", "u-9", "gone", "gone");
    gone.attrs.external_id = Some("ext-a".into());
    gone.attrs.emails = vec![email("shared@example.com", Some("work"))];
    gone.deleted = true;
    insert(store, &gone).await.expect("insert");
    let mut other = scim_user("beta", "u-0b", "ann", "ann");
    other.attrs.external_id = Some("ext-a".into());
    insert(store, &other).await.expect("insert");

    let list = |q: ScimQuery, offset: u64, count: u32| async move {
        let (page, total) = store
            .list_scim_users(&tid("acme"), &q, offset, count)
            .await
            .expect("list");
        (
            ids(&page)
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>(),
            total,
        )
    };
    let all = ScimQuery::default();
    // Everything live, by id, whole users.
    let (page, total) = store
        .list_scim_users(&tid("acme"), &all, 0, 100)
        .await
        .expect("list");
    assert_eq!(page, users);
    assert_eq!(total, 5);

    // Each condition alone.
    let q = |f: fn(&mut ScimQuery)| {
        let mut q = ScimQuery::default();
        f(&mut q);
        q
    };
    assert_eq!(
        list(q(|q| q.id = Some("u-2".into())), 0, 10).await,
        (vec!["u-2".to_owned()], 1)
    );
    assert_eq!(
        list(q(|q| q.id = Some("u-9".into())), 0, 10).await,
        (vec![], 0),
        "deleted users are hidden"
    );
    assert_eq!(
        list(q(|q| q.user_name_key = Some(user_name_key("ANN"))), 0, 10).await,
        (vec!["u-0".to_owned()], 1)
    );
    assert_eq!(
        list(q(|q| q.external_id = Some("ext-a".into())), 0, 10).await,
        (vec!["u-0".to_owned(), "u-3".to_owned()], 2)
    );
    assert_eq!(
        list(q(|q| q.external_id = Some("EXT-A".into())), 0, 10).await,
        (vec![], 0),
        "externalId is exact"
    );
    // The provisioning record a SCIM user drives (the service's own look-up).
    assert_eq!(
        list(q(|q| q.provisioning_id = Some("carol".into())), 0, 10).await,
        (vec!["u-2".to_owned()], 1)
    );
    assert_eq!(
        list(q(|q| q.provisioning_id = Some("gone".into())), 0, 10).await,
        (vec![], 0),
        "deleted users are hidden from it too"
    );
    assert_eq!(
        list(
            q(|q| q.email_needle = Some(email_needle(None, "ann@example.COM"))),
            0,
            10
        )
        .await,
        (vec!["u-0".to_owned()], 1)
    );
    assert_eq!(
        list(
            q(|q| q.email_needle = Some(email_needle(None, "shared@example.com"))),
            0,
            10
        )
        .await,
        (vec!["u-2".to_owned(), "u-3".to_owned()], 2)
    );
    assert_eq!(
        list(
            q(|q| q.email_needle = Some(email_needle(Some("Work"), "shared@example.com"))),
            0,
            10
        )
        .await,
        (vec!["u-2".to_owned()], 1)
    );
    assert_eq!(
        list(
            q(|q| q.email_needle = Some(email_needle(None, "example.com"))),
            0,
            10
        )
        .await,
        (vec![], 0),
        "a part of an address matches nothing"
    );

    // Two conditions: both must hold.
    assert_eq!(
        list(
            q(|q| {
                q.external_id = Some("ext-a".into());
                q.email_needle = Some(email_needle(None, "shared@example.com"));
            }),
            0,
            10
        )
        .await,
        (vec!["u-3".to_owned()], 1)
    );
    assert_eq!(
        list(
            q(|q| {
                q.external_id = Some("ext-a".into());
                q.user_name_key = Some(user_name_key("bob"));
            }),
            0,
            10
        )
        .await,
        (vec![], 0)
    );
    assert_eq!(
        list(
            q(|q| {
                q.id = Some("u-1".into());
                q.user_name_key = Some(user_name_key("Bob"));
                q.external_id = Some("ext-b".into());
                q.email_needle = Some(email_needle(Some("home"), "bob@example.com"));
            }),
            0,
            10
        )
        .await,
        (vec!["u-1".to_owned()], 1)
    );

    // Paging: offset and count, with the total of all matches each time.
    let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(list(all.clone(), 0, 2).await, (s(&["u-0", "u-1"]), 5));
    assert_eq!(list(all.clone(), 2, 2).await, (s(&["u-2", "u-3"]), 5));
    assert_eq!(list(all.clone(), 4, 2).await, (s(&["u-4"]), 5));
    assert_eq!(list(all.clone(), 5, 2).await, (vec![], 5));
    assert_eq!(
        list(all.clone(), 0, 0).await,
        (vec![], 5),
        "count 0: the total only"
    );
    assert_eq!(list(all.clone(), u64::MAX, 10).await, (vec![], 5));
    assert_eq!(
        list(q(|q| q.external_id = Some("ext-a".into())), 1, 10).await,
        (s(&["u-3"]), 2)
    );
    // Another tenant sees its own only.
    let (page, total) = store
        .list_scim_users(&tid("beta"), &all, 0, 10)
        .await
        .expect("list");
    assert_eq!((ids(&page), total), (vec!["u-0b"], 1));
}

/// Inserts `n` users of acme `s-0..` changed one second apart from `t0`, all unsynced.
async fn unsynced(store: &SqlStore, t0: Timestamp, n: i64) -> Vec<ScimUser> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut u = scim_user(
            "acme",
            &format!("s-{i:03}"),
            &format!("user{i}"),
            &format!("x{i}"),
        );
        u.version = 2;
        u.synced_version = 1;
        u.updated_at = plus(t0, i);
        insert(store, &u).await.expect("insert");
        out.push(u);
    }
    out
}

pub async fn the_scim_sync_claim_takes_only_unsynced_due_rows(store: &SqlStore) {
    with_tenants(store, &["acme"]).await;
    let t0 = now();
    let now_ = plus(t0, 100);
    let until = plus(t0, 160);
    // Due: s-000 (never tried), s-001 (retry time passed), s-002 (deleted, unsynced),
    // s-003 (retry time exactly now). Not due: s-004 (backed off), s-005 (synced),
    // s-006 (claimed by another worker).
    let mut rows = unsynced(store, t0, 7).await;
    let mut set = |i: usize, f: &dyn Fn(&mut ScimUser)| {
        let read = rows[i].version;
        f(&mut rows[i]);
        (rows[i].clone(), read)
    };
    let (deleted, read) = set(2, &|u| u.deleted = true);
    update(store, &deleted, read).await.expect("update");
    let retry = |at: i64| ScimSyncOutcome::Retry {
        error: "later".into(),
        next_sync_at: plus(t0, at),
    };
    for (i, outcome) in [
        (1, retry(50)),
        (3, retry(100)),
        (4, retry(101)),
        (
            5,
            ScimSyncOutcome::Synced {
                version: rows[5].version,
                error: None,
            },
        ),
        (6, retry(130)),
    ] {
        store
            .finish_scim_sync(&rows[i].tenant_id, &rows[i].id, &outcome)
            .await
            .expect("finish");
    }

    // Earliest due first (a retry at its time, a change at its own), at most `limit`.
    let first = store.claim_scim_sync(now_, until, 2).await.expect("claim");
    assert_eq!(ids(&first), ["s-000", "s-002"]);
    for u in &first {
        assert_eq!(
            u.next_sync_at,
            Some(until),
            "returned as stored after the claim"
        );
        assert_eq!(get(store, "acme", &u.id).await.as_ref(), Some(u));
    }
    let rest = store.claim_scim_sync(now_, until, 10).await.expect("claim");
    assert_eq!(ids(&rest), ["s-001", "s-003"]);
    assert!(first[1].deleted, "deleted rows are claimed too");
    // Everything due is claimed now.
    assert!(
        store
            .claim_scim_sync(now_, until, 10)
            .await
            .expect("claim")
            .is_empty()
    );

    // When the claims lapse (and the back-offs pass), the rows are claimed again.
    let later = plus(t0, 160);
    let again = store
        .claim_scim_sync(later, plus(t0, 300), 10)
        .await
        .expect("claim");
    assert_eq!(
        ids(&again),
        ["s-000", "s-001", "s-002", "s-003", "s-004", "s-006"]
    );
    // A claim never changes what it claims but next_sync_at.
    let s4 = get(store, "acme", "s-004").await.expect("row");
    assert_eq!(
        s4,
        ScimUser {
            sync_error: Some("later".into()),
            sync_attempts: 1,
            next_sync_at: Some(plus(t0, 300)),
            ..rows[4].clone()
        }
    );
    assert!(
        store
            .claim_scim_sync(plus(t0, 10_000), plus(t0, 10_001), 0)
            .await
            .expect("claim")
            .is_empty(),
        "limit 0 claims nothing"
    );
}

pub async fn concurrent_scim_sync_claimers_never_share_a_row(store: &SqlStore) {
    with_tenants(store, &["acme"]).await;
    let t0 = now();
    unsynced(store, t0, 40).await;
    let store = Arc::new(store.clone());
    let at = plus(t0, 100);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = s.claim_scim_sync(at, plus(at, 60), 3).await.expect("claim");
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|u| u.id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("join"));
    }
    let distinct: BTreeSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 40, "each row claimed once: {all:?}");
    assert_eq!(distinct.len(), 40);
}

pub async fn finishing_a_scim_sync_records_its_outcome(store: &SqlStore) {
    with_tenants(store, &["acme", "beta"]).await;
    let t0 = now();
    let rows = unsynced(store, t0, 3).await;
    let claimed = store
        .claim_scim_sync(plus(t0, 10), plus(t0, 70), 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 3);
    let finish = |id: &'static str, outcome: ScimSyncOutcome| async move {
        store
            .finish_scim_sync(&tid("acme"), id, &outcome)
            .await
            .expect("finish")
    };

    // Retry: one more attempt, the error, the new time; nothing else changes.
    finish(
        "s-000",
        ScimSyncOutcome::Retry {
            error: "upstream unavailable".into(),
            next_sync_at: plus(t0, 30),
        },
    )
    .await;
    finish(
        "s-000",
        ScimSyncOutcome::Retry {
            error: "upstream unavailable again".into(),
            next_sync_at: plus(t0, 90),
        },
    )
    .await;
    let s0 = get(store, "acme", "s-000").await.expect("row");
    assert_eq!(
        s0,
        ScimUser {
            sync_attempts: 2,
            sync_error: Some("upstream unavailable again".into()),
            next_sync_at: Some(plus(t0, 90)),
            ..rows[0].clone()
        }
    );

    // Synced: the version is synced, the error as given, attempts and claim cleared.
    finish(
        "s-000",
        ScimSyncOutcome::Synced {
            version: 2,
            error: None,
        },
    )
    .await;
    let s0 = get(store, "acme", "s-000").await.expect("row");
    assert_eq!(
        s0,
        ScimUser {
            synced_version: 2,
            ..rows[0].clone()
        }
    );
    // With a permanent refusal: kept for operators.
    finish(
        "s-001",
        ScimSyncOutcome::Synced {
            version: 2,
            error: Some("profile not allowed".into()),
        },
    )
    .await;
    assert_eq!(
        get(store, "acme", "s-001").await.expect("row"),
        ScimUser {
            synced_version: 2,
            sync_error: Some("profile not allowed".into()),
            ..rows[1].clone()
        }
    );
    // An older version synced late never moves synced_version back.
    finish(
        "s-001",
        ScimSyncOutcome::Synced {
            version: 1,
            error: None,
        },
    )
    .await;
    assert_eq!(
        get(store, "acme", "s-001")
            .await
            .expect("row")
            .synced_version,
        2
    );
    // Synced rows are not claimed.
    let claimed = store
        .claim_scim_sync(plus(t0, 1_000), plus(t0, 1_060), 10)
        .await
        .expect("claim");
    assert_eq!(ids(&claimed), ["s-002"]);

    // A version written during the sync stays unsynced and is claimed again at once.
    let mut s2 = get(store, "acme", "s-002").await.expect("row");
    let read = s2.version;
    s2.attrs.active = false;
    update(store, &s2, read).await.expect("update"); // version 3
    finish(
        "s-002",
        ScimSyncOutcome::Synced {
            version: 2,
            error: None,
        },
    )
    .await;
    let s2 = get(store, "acme", "s-002").await.expect("row");
    assert_eq!(
        (s2.version, s2.synced_version, s2.next_sync_at),
        (3, 2, None)
    );

    // A deleted row: removed once its deletion is synced, not before.
    let mut d = s2.clone();
    d.deleted = true;
    update(store, &d, 3).await.expect("delete"); // version 4
    finish(
        "s-002",
        ScimSyncOutcome::Synced {
            version: 3,
            error: None,
        },
    )
    .await;
    assert!(get(store, "acme", "s-002").await.expect("kept").deleted);
    finish(
        "s-002",
        ScimSyncOutcome::Retry {
            error: "busy".into(),
            next_sync_at: plus(t0, 5),
        },
    )
    .await;
    assert!(get(store, "acme", "s-002").await.is_some());
    finish(
        "s-002",
        ScimSyncOutcome::Synced {
            version: 4,
            error: None,
        },
    )
    .await;
    assert_eq!(get(store, "acme", "s-002").await, None);
    // Finishing a row that is gone (or another tenant's) changes nothing.
    finish(
        "s-002",
        ScimSyncOutcome::Synced {
            version: 4,
            error: None,
        },
    )
    .await;
    store
        .finish_scim_sync(
            &tid("beta"),
            "s-001",
            &ScimSyncOutcome::Retry {
                error: "x".into(),
                next_sync_at: t0,
            },
        )
        .await
        .expect("finish");
    assert_eq!(
        get(store, "acme", "s-001")
            .await
            .expect("row")
            .sync_attempts,
        0
    );
}

pub async fn a_deleted_tenant_takes_its_scim_records_with_it(store: &SqlStore) {
    with_tenants(store, &["acme", "beta"]).await;
    let at = now();
    store
        .put_scim_config(
            &ScimConfig::default_for(&tid("acme")),
            &event(Some("acme"), "scim.config.update", "scim/config"),
        )
        .await
        .expect("config");
    let tok = token("acme", "tok-a", at, None);
    store
        .insert_scim_token(&tok, at, &event(Some("acme"), "scim.token.create", "t"))
        .await
        .expect("token");
    insert(store, &scim_user("acme", "u-1", "ann", "ann"))
        .await
        .expect("user");
    insert(store, &scim_user("beta", "u-2", "ann", "ann"))
        .await
        .expect("user");

    let out = store
        .delete_tenant(&tid("acme"), &event(Some("acme"), "tenant.delete", "acme"))
        .await
        .expect("delete");
    assert_eq!(out, TenantDeletion::Deleted);
    assert_eq!(
        store.get_scim_config(&tid("acme")).await.expect("get"),
        None
    );
    assert_eq!(store.find_scim_token(&tok.hash).await.expect("find"), None);
    assert_eq!(get(store, "acme", "u-1").await, None);
    // The other tenant keeps its own.
    assert!(get(store, "beta", "u-2").await.is_some());
    // A tenant of the same id made again starts empty.
    with_tenants(store, &["acme"]).await;
    let (page, total) = store
        .list_scim_users(&tid("acme"), &ScimQuery::default(), 0, 10)
        .await
        .expect("list");
    assert!(page.is_empty());
    assert_eq!(total, 0);
}
