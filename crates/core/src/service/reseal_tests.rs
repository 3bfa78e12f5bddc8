//! Master key rotation: services before, during and after a re-seal over one shared store.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::ids::{ProfileName, UpstreamUserId};
use crate::model::{Lease, UserStatus};
use crate::ports::{TenantStore, UserStore};
use crate::scope::ScopeSet;
use crate::secret::{AesGcmSealer, MasterKey, RotatingSealer, Sealer};
use crate::testing::{FakeClock, FakeUpstream, MemStore, TestService, service_with};

fn actor() -> Actor {
    Actor {
        subject: "operator".into(),
        request_id: None,
        lane: crate::budget::Lane::Interactive,
    }
}
fn tid(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
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

/// Shared ports: every service built over them sees the same rows, apps and keys.
struct World {
    store: Arc<MemStore>,
    upstream: Arc<FakeUpstream>,
    clock: Arc<FakeClock>,
}

impl World {
    fn new() -> Self {
        Self {
            store: Arc::new(MemStore::default()),
            upstream: Arc::new(FakeUpstream::default()),
            clock: Arc::new(FakeClock::new()),
        }
    }
    fn with(&self, sealer: impl Sealer + 'static) -> TestService {
        service_with(
            self.store.clone(),
            self.upstream.clone(),
            self.clock.clone(),
            Arc::new(sealer),
        )
    }
    fn only(&self, key: &MasterKey) -> TestService {
        self.with(AesGcmSealer::new(key))
    }
    fn rotating(&self, current: &MasterKey, previous: &MasterKey) -> TestService {
        self.with(RotatingSealer::new(current, Some(previous)))
    }
}

async fn create_tenant(t: &TestService, id: &str) {
    let standard = ScopeSet::parse(["Predict", "Inputs:Get"]).unwrap();
    let mut profiles = BTreeMap::new();
    profiles.insert(ProfileName::parse("standard").unwrap(), standard.clone());
    t.service
        .create_tenant(
            &actor(),
            NewTenant {
                id: tid(id),
                display_name: format!("{id} corp"),
                base_url: "https://api.clarifai.example".into(),
                upstream_user_id: UpstreamUserId::parse("acme-ml").unwrap(),
                pat: Pat::parse(format!("pat-of-{id}")).unwrap(),
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
}

async fn provision(t: &TestService, tenant: &str, user: &str) -> String {
    let out = t
        .service
        .provision(&actor(), &tid(tenant), &ext(user), put_default())
        .await
        .unwrap();
    out.secret.unwrap().expose().to_owned()
}

async fn reveal(t: &TestService, tenant: &str, user: &str) -> Result<String, DomainError> {
    t.service
        .reveal_key(&actor(), &tid(tenant), &ext(user))
        .await
        .map(|k| k.expose().to_owned())
}

async fn user(t: &TestService, tenant: &str, u: &str) -> crate::model::User {
    t.store
        .get_user(&tid(tenant), &ext(u))
        .await
        .unwrap()
        .unwrap()
}

/// Overwrites a stored user's current key blob, as a test would corrupt a row.
async fn set_key_blob(t: &TestService, tenant: &str, u: &str, blob: Vec<u8>) {
    let now = crate::ports::Clock::now(&*t.clock);
    let lease = Lease {
        owner: "test-corrupter".into(),
        expires_at: now + chrono::Duration::seconds(60),
    };
    let mut row = t
        .store
        .acquire_lease(&tid(tenant), &ext(u), &lease, now, None)
        .await
        .unwrap()
        .unwrap();
    if let Some(k) = row.key.as_mut() {
        k.sealed = blob;
    }
    row.lease = None;
    t.store
        .update_user(&row, "test-corrupter", None)
        .await
        .unwrap();
}

/// Whether the tenant's PAT opens (drift counting acts upstream with it, and changes nothing).
async fn after_pat_opens(t: &TestService) -> bool {
    t.service.drift_counts(&tid("acme")).await.is_ok()
}

fn actions(t: &TestService, action: &str) -> Vec<crate::model::AuditEvent> {
    t.store
        .audit_events()
        .into_iter()
        .filter(|e| e.action == action)
        .collect()
}

#[tokio::test]
async fn a_reseal_moves_every_secret_to_the_new_key() {
    let world = World::new();
    let (a, b) = (MasterKey::generate(), MasterKey::generate());

    // Under key A: two tenants, three users with keys (one holding a retired key in its grace
    // period), one deprovisioned user (no key left).
    let before = world.only(&a);
    create_tenant(&before, "acme").await;
    create_tenant(&before, "globex").await;
    provision(&before, "acme", "alice").await;
    provision(&before, "acme", "bob").await;
    provision(&before, "globex", "carol").await;
    provision(&before, "acme", "dave").await;
    let rotated = before
        .service
        .rotate_key(&actor(), &tid("acme"), &ext("bob"), 3600, false)
        .await
        .unwrap();
    let bob_new = rotated.secret.unwrap().expose().to_owned();
    assert!(user(&before, "acme", "bob").await.retired_key.is_some());
    before
        .service
        .deprovision(&actor(), &tid("acme"), &ext("dave"))
        .await
        .unwrap();
    let mut secrets = BTreeMap::new();
    for (t, u) in [("acme", "alice"), ("acme", "bob"), ("globex", "carol")] {
        secrets.insert((t, u), reveal(&before, t, u).await.unwrap());
    }
    assert_eq!(secrets[&("acme", "bob")], bob_new);

    // New key current, old key previous: everything still opens before the re-seal.
    let during = world.rotating(&b, &a);
    for ((t, u), s) in &secrets {
        assert_eq!(
            &reveal(&during, t, u).await.unwrap(),
            s,
            "{t}/{u} opens by fallback"
        );
    }
    // Key B alone opens nothing yet.
    let only_b = world.only(&b);
    assert!(matches!(
        reveal(&only_b, "acme", "alice").await,
        Err(DomainError::Internal(_))
    ));

    let report = during.service.reseal(&actor()).await.unwrap();
    assert_eq!(
        report,
        ResealReport {
            tenants: 2,
            users: 3,
            keys: 4,
            webhook_endpoints: 0,
            skipped_busy: 0,
            failures: vec![],
        }
    );
    assert!(report.is_complete());
    let tenant_events = actions(&during, "tenant.reseal");
    let user_events = actions(&during, "user.reseal");
    assert_eq!(tenant_events.len(), 2);
    assert_eq!(user_events.len(), 3);
    assert!(
        tenant_events
            .iter()
            .chain(&user_events)
            .all(|e| e.outcome == "success" && e.actor == "operator")
    );
    assert!(
        user_events
            .iter()
            .any(|e| e.target == "users/bob" && e.tenant_id == Some(tid("acme")))
    );
    // Leases released, nothing a caller sees changed.
    let bob = user(&during, "acme", "bob").await;
    assert!(bob.lease.is_none());
    assert_eq!(bob.status, UserStatus::Active);

    // Key A alone opens nothing any more; key B alone opens everything.
    let only_a = world.only(&a);
    for (t, u) in secrets.keys() {
        assert!(
            matches!(reveal(&only_a, t, u).await, Err(DomainError::Internal(_))),
            "{t}/{u} no longer opens under the old key"
        );
    }
    assert!(
        matches!(
            only_a.service.drift_counts(&tid("acme")).await,
            Err(DomainError::Internal(_))
        ),
        "the PAT no longer opens under the old key"
    );
    assert!(after_pat_opens(&world.only(&b)).await);
    let after = world.only(&b);
    for ((t, u), s) in &secrets {
        assert_eq!(
            &reveal(&after, t, u).await.unwrap(),
            s,
            "{t}/{u} under key B"
        );
    }

    // Re-running is harmless: the same counts, the same secrets.
    let again = during.service.reseal(&actor()).await.unwrap();
    assert_eq!(again, report);
    let again_b = after.service.reseal(&actor()).await.unwrap();
    assert_eq!(
        again_b, report,
        "a re-seal with the new key alone works too"
    );
    for ((t, u), s) in &secrets {
        assert_eq!(&reveal(&after, t, u).await.unwrap(), s);
    }

    // Under key B alone every operation works: the PAT opens (upstream calls), the retired
    // key opens (deleted upstream when the next rotation ends its grace), keys open for delete.
    let erin = provision(&after, "acme", "erin").await;
    assert_eq!(reveal(&after, "acme", "erin").await.unwrap(), erin);
    let bob_retired = secrets[&("acme", "bob")].clone();
    let bob_keys_before = after.upstream.keys().len();
    after
        .service
        .rotate_key(&actor(), &tid("acme"), &ext("bob"), 0, true)
        .await
        .unwrap();
    assert_eq!(
        after.upstream.keys().len(),
        bob_keys_before - 1,
        "the retired key (sealed under A at first) was opened and deleted upstream"
    );
    assert!(
        after.upstream.keys().iter().all(|k| k.id != bob_retired),
        "bob's previous key is gone upstream"
    );
    after
        .service
        .rotate_key(&actor(), &tid("acme"), &ext("alice"), 0, false)
        .await
        .unwrap();
    assert!(
        after
            .upstream
            .keys()
            .iter()
            .all(|k| k.id != secrets[&("acme", "alice")]),
        "alice's old key was opened and deleted upstream"
    );
    let carol = after
        .service
        .deprovision(&actor(), &tid("globex"), &ext("carol"))
        .await
        .unwrap();
    assert_eq!(carol.status, UserStatus::Deleted);
    assert!(
        after
            .upstream
            .keys()
            .iter()
            .all(|k| k.id != secrets[&("globex", "carol")])
    );
}

#[tokio::test]
async fn a_value_that_opens_under_no_key_is_reported_and_the_rest_goes_on() {
    let world = World::new();
    let (a, b) = (MasterKey::generate(), MasterKey::generate());
    let before = world.only(&a);
    create_tenant(&before, "acme").await;
    create_tenant(&before, "broken").await;
    create_tenant(&before, "globex").await;
    for u in ["u1", "u2", "u3", "u4"] {
        provision(&before, "acme", u).await;
    }
    provision(&before, "broken", "b1").await;
    let u3 = reveal(&before, "acme", "u3").await.unwrap();
    let b1 = reveal(&before, "broken", "b1").await.unwrap();

    // u1: garbage; u2: sealed under some third key; broken: its PAT under a third key.
    set_key_blob(&before, "acme", "u1", b"not a sealed value at all".to_vec()).await;
    let stranger = AesGcmSealer::new(&MasterKey::generate());
    let u2_aad = key_aad(
        &tid("acme"),
        &user(&before, "acme", "u2").await.app_id,
        KeySlot::Current,
    );
    set_key_blob(
        &before,
        "acme",
        "u2",
        stranger.seal("stranger-secret", &u2_aad),
    )
    .await;
    let mut broken = before
        .store
        .get_tenant(&tid("broken"))
        .await
        .unwrap()
        .unwrap();
    broken.pat_sealed = stranger.seal(
        "stranger-pat",
        &pat_aad(&tid("broken"), &broken.base_url, &broken.upstream_user_id),
    );
    let audit = before.service.audit(
        &actor(),
        Some(&tid("broken")),
        "test.corrupt",
        "tenants/broken".into(),
        "success",
    );
    before
        .store
        .update_tenant(&broken, broken.version, &audit)
        .await
        .unwrap();
    // u4: another operation holds its lease.
    let now = crate::ports::Clock::now(&*world.clock);
    let busy = Lease {
        owner: "someone-else".into(),
        expires_at: now + chrono::Duration::seconds(60),
    };
    assert!(
        before
            .store
            .acquire_lease(&tid("acme"), &ext("u4"), &busy, now, None)
            .await
            .unwrap()
            .is_some()
    );

    let during = world.rotating(&b, &a);
    let report = during.service.reseal(&actor()).await.unwrap();
    assert_eq!(report.tenants, 2, "acme and globex; broken's PAT failed");
    assert_eq!(
        report.users, 2,
        "u3 and b1 (its key is independent of its PAT)"
    );
    assert_eq!(report.keys, 2);
    assert_eq!(report.skipped_busy, 1);
    assert!(!report.is_complete());
    let targets: Vec<&str> = report.failures.iter().map(|f| f.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            "tenants/acme/users/u1",
            "tenants/acme/users/u2",
            "tenants/broken"
        ]
    );
    let all = format!("{report:?}");
    for secret in ["stranger-secret", "stranger-pat", "pat-of-broken", &u3, &b1] {
        assert!(!all.contains(secret), "no secret in the report: {all}");
    }
    assert!(all.contains("current key"), "{all}");

    // The failed users' leases are released, the busy one's untouched.
    assert!(user(&during, "acme", "u1").await.lease.is_none());
    assert!(user(&during, "acme", "u2").await.lease.is_none());
    assert_eq!(
        user(&during, "acme", "u4").await.lease.map(|l| l.owner),
        Some("someone-else".to_owned())
    );
    // Failures are audited too.
    let failed: Vec<_> = during
        .store
        .audit_events()
        .into_iter()
        .filter(|e| e.action.ends_with(".reseal") && e.outcome.starts_with("failure"))
        .map(|e| e.target)
        .collect();
    assert_eq!(failed, ["users/u1", "users/u2", "tenants/broken"]);

    // What succeeded opens under key B alone.
    let after = world.only(&b);
    assert_eq!(reveal(&after, "acme", "u3").await.unwrap(), u3);
    assert_eq!(reveal(&after, "broken", "b1").await.unwrap(), b1);

    // Once the busy operation is over, a second run picks the user up.
    world.clock.advance(chrono::Duration::seconds(120));
    let second = during.service.reseal(&actor()).await.unwrap();
    assert_eq!(second.skipped_busy, 0);
    assert_eq!(second.users, 3, "u3, u4 and b1");
    assert_eq!(second.failures.len(), 3);
    assert!(reveal(&after, "acme", "u4").await.is_ok());
}

#[tokio::test]
async fn a_failed_write_releases_the_lease_and_is_reported() {
    let world = World::new();
    let (a, b) = (MasterKey::generate(), MasterKey::generate());
    let before = world.only(&a);
    create_tenant(&before, "acme").await;
    provision(&before, "acme", "u1").await;
    world
        .store
        .fail_audit
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let report = world
        .rotating(&b, &a)
        .service
        .reseal(&actor())
        .await
        .unwrap();
    world
        .store
        .fail_audit
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!((report.tenants, report.users), (0, 0));
    assert_eq!(report.failures.len(), 2, "{report:?}");
    assert!(user(&before, "acme", "u1").await.lease.is_none());
    // Nothing was lost: the old key still opens everything.
    assert!(reveal(&before, "acme", "u1").await.is_ok());
}

/// Webhook endpoint secrets are re-sealed too: after the re-seal, a service holding only the
/// new master key signs deliveries with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_endpoint_secrets_are_resealed() {
    let w = World::new();
    let (a, b) = (MasterKey::generate(), MasterKey::generate());
    let before = w.only(&a);
    create_tenant(&before, "acme").await;
    let ep = before
        .service
        .create_webhook_endpoint(
            &actor(),
            &tid("acme"),
            NewEndpoint {
                url: "https://hooks.example/x".into(),
                description: None,
                event_types: vec![],
            },
        )
        .await
        .unwrap();
    let during = w.rotating(&b, &a);
    let report = during.service.reseal(&actor()).await.unwrap();
    assert_eq!(report.webhook_endpoints, 1);
    assert!(report.is_complete(), "{report:?}");
    let after = w.only(&b);
    let sender = Arc::new(crate::testing::FakeSender::default());
    let d = WebhookDeliverer::new(
        after.store.clone(),
        sender.clone(),
        after.sealer.clone(),
        after.clock.clone(),
        DeliveryConfig::default(),
    );
    after
        .service
        .provision(&actor(), &tid("acme"), &ext("ann"), put_default())
        .await
        .unwrap();
    assert_eq!(d.run_pass(10).await.unwrap().delivered, 1);
    assert_eq!(
        sender.sent()[0].secrets,
        vec![secrecy::ExposeSecret::expose_secret(&ep.secret).to_owned()]
    );
}
