//! What a sealed value is bound to: a PAT to its tenant, base URL and upstream user; a key to
//! its tenant, app and slot. A value moved to another row, slot or host does not open, and the
//! request path never falls back to the legacy binding (only `reseal` migrates it).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::ids::{ProfileName, UpstreamUserId};
use crate::model::{Lease, User};
use crate::ports::{MaintenanceStore, TenantStore, UserStore};
use crate::scope::ScopeSet;
use crate::secret::{AesGcmSealer, MasterKey, Sealer};
use crate::testing::{FakeClock, FakeUpstream, MemStore, TestService, service_with};

fn actor() -> Actor {
    Actor {
        subject: "operator".into(),
        request_id: None,
        lane: crate::budget::Lane::Interactive,
    }
}
fn tid() -> TenantId {
    TenantId::parse("acme").unwrap()
}
fn ext(s: &str) -> ExternalId {
    ExternalId::parse(s).unwrap()
}
fn put_default() -> ProvisionRequest {
    ProvisionRequest {
        scopes: ScopeRequest::Default,
        display_name: None,
        metadata: None,
    }
}

/// A service whose master key the test knows (to plant legacy-sealed values).
fn world(key: &MasterKey) -> TestService {
    service_with(
        Arc::new(MemStore::default()),
        Arc::new(FakeUpstream::default()),
        Arc::new(FakeClock::new()),
        Arc::new(AesGcmSealer::new(key)),
    )
}

async fn with_tenant(key: &MasterKey) -> TestService {
    let t = world(key);
    let standard = ScopeSet::parse(["Predict", "Inputs:Get"]).unwrap();
    let mut profiles = BTreeMap::new();
    profiles.insert(ProfileName::parse("standard").unwrap(), standard.clone());
    t.service
        .create_tenant(
            &actor(),
            NewTenant {
                id: tid(),
                display_name: "Acme".into(),
                base_url: "https://api.clarifai.example".into(),
                upstream_user_id: UpstreamUserId::parse("acme-ml").unwrap(),
                pat: Pat::parse("pat-of-acme").unwrap(),
                app_defaults: None,
                rate_limit: None,
                allowed_scopes: standard,
                default_scope_profile: Some(ProfileName::parse("standard").unwrap()),
                scope_profiles: profiles,
                auto_key_check: None,
            },
        )
        .await
        .unwrap();
    t
}

async fn provision(t: &TestService, u: &str) -> String {
    t.service
        .provision(&actor(), &tid(), &ext(u), put_default())
        .await
        .unwrap()
        .secret
        .unwrap()
        .expose()
        .to_owned()
}

async fn user(t: &TestService, u: &str) -> User {
    t.store.get_user(&tid(), &ext(u)).await.unwrap().unwrap()
}

/// Rewrites a stored user row as someone with write access to the database would.
async fn tamper_user(t: &TestService, u: &str, change: impl FnOnce(&mut User)) {
    let now = crate::ports::Clock::now(&*t.clock);
    let lease = Lease {
        owner: "tamper".into(),
        expires_at: now + chrono::Duration::seconds(60),
    };
    let mut row = t
        .store
        .acquire_lease(&tid(), &ext(u), &lease, now, None)
        .await
        .unwrap()
        .unwrap();
    change(&mut row);
    row.lease = None;
    t.store.update_user(&row, "tamper", None).await.unwrap();
}

/// Rewrites the stored tenant row as someone with write access to the database would.
async fn tamper_tenant(t: &TestService, change: impl FnOnce(&mut Tenant)) {
    let mut row = t.store.get_tenant(&tid()).await.unwrap().unwrap();
    change(&mut row);
    let audit = t.service.audit(
        &actor(),
        Some(&tid()),
        "test.tamper",
        "tenants/acme".into(),
        "success",
    );
    t.store
        .update_tenant(&row, row.version, &audit)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_pat_pointed_at_another_host_or_user_does_not_open_and_nothing_is_sent() {
    type Tamper = fn(&mut Tenant);
    let tampers: [(&str, Tamper); 3] = [
        ("base_url", |t| {
            t.base_url = "https://attacker.example".into()
        }),
        ("base_url path", |t| {
            t.base_url = "https://api.clarifai.example/evil".into();
        }),
        ("upstream user", |t| {
            t.upstream_user_id = UpstreamUserId::parse("attacker").unwrap();
        }),
    ];
    for (what, tamper) in tampers {
        let key = MasterKey::generate();
        let t = with_tenant(&key).await;
        provision(&t, "alice").await;
        tamper_tenant(&t, tamper).await;
        let calls = t.upstream.calls().len();

        let put = t
            .service
            .provision(&actor(), &tid(), &ext("bob"), put_default())
            .await;
        assert!(
            matches!(put, Err(DomainError::Internal(_))),
            "{what}: {put:?}"
        );
        let rotate = t
            .service
            .rotate_key(&actor(), &tid(), &ext("alice"), 0, false)
            .await;
        assert!(
            matches!(rotate, Err(DomainError::Internal(_))),
            "{what}: {rotate:?}"
        );
        let drift = t.service.drift_counts(&tid()).await;
        assert!(
            matches!(drift, Err(DomainError::Internal(_))),
            "{what}: {drift:?}"
        );
        t.clock.advance(chrono::Duration::seconds(3600));
        let _ = t.service.run_recovery_pass(100).await;
        assert_eq!(
            t.upstream.calls().len(),
            calls,
            "{what}: no request is sent with a PAT whose binding changed"
        );
        // The error names what to do, and never the PAT.
        let msg = format!("{put:?}");
        assert!(!msg.contains("pat-of-acme"), "{msg}");
        assert!(msg.contains("reseal"), "{what}: {msg}");
    }
}

#[tokio::test]
async fn a_key_moved_between_slots_does_not_open() {
    let key = MasterKey::generate();
    let t = with_tenant(&key).await;
    let first = provision(&t, "alice").await;
    let second = t
        .service
        .rotate_key(&actor(), &tid(), &ext("alice"), 3600, false)
        .await
        .unwrap()
        .secret
        .unwrap()
        .expose()
        .to_owned();
    let row = user(&t, "alice").await;
    let current = row.key.clone().unwrap();
    let retired = row.retired_key.clone().unwrap();
    assert_eq!(
        t.service
            .reveal_key(&actor(), &tid(), &ext("alice"))
            .await
            .unwrap()
            .expose(),
        second
    );

    // The retired key's value in the current slot: reveal does not open it.
    tamper_user(&t, "alice", |u| {
        if let Some(k) = u.key.as_mut() {
            k.sealed = retired.sealed.clone();
        }
    })
    .await;
    let revealed = t.service.reveal_key(&actor(), &tid(), &ext("alice")).await;
    assert!(
        matches!(revealed, Err(DomainError::Internal(_))),
        "the retired key does not open as the current one"
    );

    // The current key's value in the retired slot: when the grace period ends, recovery
    // cannot open it, so it never deletes the user's working key upstream.
    tamper_user(&t, "alice", |u| {
        u.key = Some(current.clone());
        if let Some(k) = u.retired_key.as_mut() {
            k.sealed = current.sealed.clone();
        }
    })
    .await;
    t.clock.advance(chrono::Duration::seconds(3601));
    let _ = t.service.run_recovery_pass(100).await;
    let live: Vec<String> = t.upstream.keys().into_iter().map(|k| k.id).collect();
    assert!(
        live.contains(&second),
        "the current key is still live upstream: {live:?}"
    );
    assert!(
        user(&t, "alice").await.retired_key.is_some(),
        "the unopenable retired key stays recorded"
    );
    assert!(live.contains(&first), "nothing opened the planted value");
}

#[tokio::test]
async fn a_rotation_reseals_the_old_key_for_the_retired_slot() {
    let key = MasterKey::generate();
    let t = with_tenant(&key).await;
    let first = provision(&t, "alice").await;
    t.service
        .rotate_key(&actor(), &tid(), &ext("alice"), 3600, false)
        .await
        .unwrap();
    let row = user(&t, "alice").await;
    let sealer = AesGcmSealer::new(&key);
    let retired = row.retired_key.unwrap();
    let opened = sealer
        .open(
            &retired.sealed,
            &key_aad(&tid(), &row.app_id, KeySlot::Retired),
        )
        .unwrap();
    assert_eq!(
        secrecy::ExposeSecret::expose_secret(&opened),
        first.as_str()
    );
    assert!(
        sealer
            .open(
                &retired.sealed,
                &key_aad(&tid(), &row.app_id, KeySlot::Current)
            )
            .is_err()
    );
    // When the grace period ends, recovery opens it and deletes it upstream.
    t.clock.advance(chrono::Duration::seconds(3601));
    t.service.run_recovery_pass(100).await.unwrap();
    assert!(t.upstream.keys().iter().all(|k| k.id != first));
    assert!(user(&t, "alice").await.retired_key.is_none());
}

/// Seals a row's values the way versions before the binding did.
async fn make_legacy(t: &TestService, key: &MasterKey, users: &[&str]) {
    let sealer = AesGcmSealer::new(key);
    tamper_tenant(t, |row| {
        row.pat_sealed = sealer.seal("pat-of-acme", "pat:acme");
    })
    .await;
    for u in users {
        let row = user(t, u).await;
        let aad = format!("key:acme:{}", row.app_id);
        let open_current = |sealed: &[u8]| {
            [KeySlot::Current, KeySlot::Retired]
                .into_iter()
                .find_map(|slot| {
                    sealer
                        .open(sealed, &key_aad(&tid(), &row.app_id, slot))
                        .ok()
                })
                .map(|s| secrecy::ExposeSecret::expose_secret(&s).to_owned())
        };
        let cur = row.key.as_ref().and_then(|k| open_current(&k.sealed));
        let ret = row
            .retired_key
            .as_ref()
            .and_then(|k| open_current(&k.sealed));
        tamper_user(t, u, |r| {
            if let (Some(k), Some(s)) = (r.key.as_mut(), cur) {
                k.sealed = sealer.seal(&s, &aad);
            }
            if let (Some(k), Some(s)) = (r.retired_key.as_mut(), ret) {
                k.sealed = sealer.seal(&s, &aad);
            }
        })
        .await;
    }
}

#[tokio::test]
async fn legacy_sealed_rows_do_not_open_until_reseal_migrates_them() {
    let key = MasterKey::generate();
    let t = with_tenant(&key).await;
    let alice = provision(&t, "alice").await;
    provision(&t, "bob").await;
    let bob = t
        .service
        .rotate_key(&actor(), &tid(), &ext("bob"), 3600, false)
        .await
        .unwrap()
        .secret
        .unwrap()
        .expose()
        .to_owned();
    make_legacy(&t, &key, &["alice", "bob"]).await;
    let calls = t.upstream.calls().len();

    // The request path never opens a value under the legacy binding.
    assert!(matches!(
        t.service.reveal_key(&actor(), &tid(), &ext("alice")).await,
        Err(DomainError::Internal(_))
    ));
    assert!(matches!(
        t.service.drift_counts(&tid()).await,
        Err(DomainError::Internal(_))
    ));
    assert_eq!(t.upstream.calls().len(), calls);

    let report = t.service.reseal(&actor()).await.unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!((report.tenants, report.users, report.keys), (1, 2, 3));

    assert_eq!(
        t.service
            .reveal_key(&actor(), &tid(), &ext("alice"))
            .await
            .unwrap()
            .expose(),
        alice
    );
    assert_eq!(
        t.service
            .reveal_key(&actor(), &tid(), &ext("bob"))
            .await
            .unwrap()
            .expose(),
        bob
    );
    assert!(t.service.drift_counts(&tid()).await.is_ok());
    // Bob's retired key was migrated to the retired slot's binding: recovery deletes it.
    let bob_keys = t.upstream.keys().len();
    t.clock.advance(chrono::Duration::seconds(3601));
    let pass = t.service.run_recovery_pass(100).await.unwrap();
    assert_eq!(pass.retired_keys_deleted, 1, "{pass:?}");
    assert_eq!(t.upstream.keys().len(), bob_keys - 1);
    // A second run finds nothing legacy and changes no secret.
    let again = t.service.reseal(&actor()).await.unwrap();
    assert!(again.is_complete(), "{again:?}");
    assert_eq!(
        t.service
            .reveal_key(&actor(), &tid(), &ext("alice"))
            .await
            .unwrap()
            .expose(),
        alice
    );
}

#[tokio::test]
async fn the_start_up_upgrade_runs_once_and_is_recorded_only_when_complete() {
    let key = MasterKey::generate();
    let t = with_tenant(&key).await;
    let alice = provision(&t, "alice").await;
    provision(&t, "bob").await;
    make_legacy(&t, &key, &["alice", "bob"]).await;

    // Bob's row is busy: the upgrade migrates the rest but is not recorded as done.
    let now = crate::ports::Clock::now(&*t.clock);
    let busy = Lease {
        owner: "someone-else".into(),
        expires_at: now + chrono::Duration::seconds(60),
    };
    assert!(
        t.store
            .acquire_lease(&tid(), &ext("bob"), &busy, now, None)
            .await
            .unwrap()
            .is_some()
    );
    let first = t.service.upgrade_sealing(&actor()).await.unwrap().unwrap();
    assert_eq!(first.skipped_busy, 1, "{first:?}");
    assert!(!t.store.maintenance_done(SEALING_UPGRADE).await.unwrap());
    assert!(
        t.service.drift_counts(&tid()).await.is_ok(),
        "the PAT opens"
    );
    assert_eq!(
        t.service
            .reveal_key(&actor(), &tid(), &ext("alice"))
            .await
            .unwrap()
            .expose(),
        alice
    );

    // The next start-up runs it again and finishes; later ones do nothing.
    t.clock.advance(chrono::Duration::seconds(120));
    let second = t.service.upgrade_sealing(&actor()).await.unwrap().unwrap();
    assert!(second.is_complete(), "{second:?}");
    assert!(t.store.maintenance_done(SEALING_UPGRADE).await.unwrap());
    assert!(
        t.service
            .reveal_key(&actor(), &tid(), &ext("bob"))
            .await
            .is_ok()
    );
    let events = t.store.audit_events().len();
    assert!(t.service.upgrade_sealing(&actor()).await.unwrap().is_none());
    assert_eq!(t.store.audit_events().len(), events, "not repeated");
}
