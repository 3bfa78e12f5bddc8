//! Reconciliation tests over in-memory ports: drift planted out of band is reported exactly, a
//! report changes nothing, a repair fixes everything (audited) and leaves nothing to find.

use std::collections::BTreeMap;

use super::*;
use crate::error::UpstreamError;
use crate::ids::{AppId, ProfileName, UpstreamUserId};
use crate::marker::{app_marker, key_description};
use crate::model::{AppDefaults, Lease, Step, TenantStatus, User, UserStatus};
use crate::ports::UserStore;
use crate::scope::ScopeSet;
use crate::testing::{Call, Fault, TestService, service};

pub(super) fn actor() -> Actor {
    Actor {
        subject: "tester".into(),
        request_id: Some("req-1".into()),
        lane: crate::budget::Lane::Interactive,
    }
}
pub(super) fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}
fn globex() -> TenantId {
    TenantId::parse("globex").unwrap()
}
pub(super) fn ext(s: &str) -> ExternalId {
    ExternalId::parse(s).unwrap()
}
fn scopes(v: &[&str]) -> ScopeSet {
    ScopeSet::parse(v).unwrap()
}
pub(super) fn short_fp(secret: &str) -> String {
    crate::secret::KeySecret::parse(secret)
        .unwrap()
        .fingerprint()[..8]
        .to_owned()
}

/// Adds a tenant; `prefix` None keeps the derived default (`<id>-`).
pub(super) async fn add_tenant(t: &TestService, id: &TenantId, prefix: Option<&str>) {
    let mut profiles = BTreeMap::new();
    profiles.insert(
        ProfileName::parse("standard").unwrap(),
        scopes(&["Predict", "Inputs:Get"]),
    );
    t.service
        .create_tenant(
            &actor(),
            NewTenant {
                id: id.clone(),
                display_name: id.to_string(),
                base_url: "https://api.clarifai.example".into(),
                upstream_user_id: UpstreamUserId::parse("shared-ml").unwrap(),
                pat: Pat::parse("good-pat").unwrap(),
                app_defaults: prefix.map(|p| AppDefaults {
                    id_prefix: p.into(),
                    default_workflow: "Empty".into(),
                    description: "Provisioned for {external_id}".into(),
                }),
                rate_limit: None,
                allowed_scopes: scopes(&["Predict", "Inputs:Get", "Inputs:Add"]),
                default_scope_profile: Some(ProfileName::parse("standard").unwrap()),
                scope_profiles: profiles,
                auto_key_check: None,
            },
        )
        .await
        .unwrap();
}

pub(super) async fn provision(
    t: &TestService,
    tenant: &TenantId,
    external_id: &str,
) -> (AppId, String) {
    let p = t
        .service
        .provision(
            &actor(),
            tenant,
            &ext(external_id),
            ProvisionRequest {
                scopes: ScopeRequest::Default,
                display_name: None,
                metadata: None,
            },
        )
        .await
        .unwrap();
    (p.user.app_id, p.secret.unwrap().expose().to_owned())
}

async fn user(t: &TestService, tenant: &TenantId, external_id: &str) -> User {
    t.store
        .get_user(tenant, &ext(external_id))
        .await
        .unwrap()
        .unwrap()
}

/// Everything reconciliation could change: apps, keys, user rows and the audit log.
type Snapshot = (
    Vec<(String, String)>,
    Vec<(String, String, Vec<String>, String)>,
    Vec<User>,
    usize,
);

async fn snapshot(t: &TestService) -> Snapshot {
    let apps = t
        .upstream
        .apps()
        .into_iter()
        .map(|a| (a.id, a.metadata.to_string()))
        .collect();
    let keys = t
        .upstream
        .keys()
        .into_iter()
        .map(|k| (k.id, k.app_id, k.scopes, k.description))
        .collect();
    let mut users = t.store.list_users(&acme(), None, None, 1000).await.unwrap();
    users.extend(
        t.store
            .list_users(&globex(), None, None, 1000)
            .await
            .unwrap(),
    );
    (apps, keys, users, t.store.audit_events().len())
}

/// Invariant 1: the active user has exactly one app and one key upstream, with its scopes.
async fn assert_one_app_one_key(t: &TestService, tenant: &TenantId, external_id: &str) {
    let u = user(t, tenant, external_id).await;
    assert_eq!(u.status, UserStatus::Active, "{u:?}");
    assert_eq!(u.step, Step::Idle);
    assert!(u.lease.is_none());
    let apps = t
        .upstream
        .apps()
        .into_iter()
        .filter(|a| a.id == u.app_id.as_str())
        .count();
    assert_eq!(apps, 1, "apps of {external_id}");
    let keys: Vec<_> = t
        .upstream
        .keys()
        .into_iter()
        .filter(|k| k.app_id == u.app_id.as_str())
        .collect();
    assert_eq!(keys.len(), 1, "keys of {external_id}: {keys:?}");
    assert_eq!(keys[0].scopes, u.scopes.names());
    assert_eq!(
        crate::secret::KeySecret::parse(keys[0].id.clone())
            .unwrap()
            .fingerprint(),
        u.key.unwrap().fingerprint
    );
}

fn unavailable() -> Fault {
    Fault::Fail(UpstreamError::Unavailable {
        message: "try later".into(),
        ambiguous: false,
    })
}

/// What [`planted`] did out of band.
struct Planted {
    extra_key_app: AppId,
    drift_secret: String,
}

pub(super) const HANDMADE: &str = "handmadekey0000000000000000001";
/// A key carrying acme's marker that no row records (a create that landed late).
pub(super) const LATE: &str = "latekey000000000000000000000001";
/// An app with acme's prefix and no marker.
const UNMANAGED: &str = "acme-handmade";

/// Two tenants on one upstream account (globex's prefix `acme-corp-` even overlaps acme's
/// `acme-`), a clean user each, and one of every kind of drift planted for acme.
async fn planted() -> (TestService, Planted) {
    let t = service();
    add_tenant(&t, &acme(), None).await;
    add_tenant(&t, &globex(), Some("acme-corp-")).await;
    for u in ["u-clean", "u-extra", "u-nokey", "u-noapp", "u-drift"] {
        provision(&t, &acme(), u).await;
    }
    provision(&t, &globex(), "g1").await;

    // Orphan apps: acme's marker, whatever the id. An app with acme's prefix and no marker is
    // someone's own: unmanaged.
    t.upstream
        .plant_app("acme-stray-1", app_marker(&acme(), &ext("stray")));
    t.upstream
        .plant_app("legacy-7", app_marker(&acme(), &ext("long-gone")));
    t.upstream.plant_app(UNMANAGED, serde_json::Value::Null);
    // Globex's own orphan, marked for globex: never acme's.
    t.upstream
        .plant_app("zz-globex-stray", app_marker(&globex(), &ext("x")));

    let extra_key_app = user(&t, &acme(), "u-extra").await.app_id;
    t.upstream.plant_key(
        extra_key_app.as_str(),
        LATE,
        &key_description(&extra_key_app, 1),
        &["Predict"],
    );

    let nokey = user(&t, &acme(), "u-nokey").await;
    let nokey_secret = t
        .upstream
        .keys()
        .into_iter()
        .find(|k| k.app_id == nokey.app_id.as_str())
        .unwrap()
        .id;
    t.upstream.remove_key(&nokey_secret);

    t.upstream
        .remove_app(user(&t, &acme(), "u-noapp").await.app_id.as_str());

    let drift = user(&t, &acme(), "u-drift").await;
    let drift_secret = t
        .upstream
        .keys()
        .into_iter()
        .find(|k| k.app_id == drift.app_id.as_str())
        .unwrap()
        .id;
    assert!(
        t.upstream
            .set_key_scopes(&drift_secret, &["Predict", "Inputs:Get", "Inputs:Add"])
    );
    (
        t,
        Planted {
            extra_key_app,
            drift_secret,
        },
    )
}

fn user_ref(u: &User) -> UserRef {
    UserRef {
        external_id: u.external_id.clone(),
        app_id: u.app_id.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_tenant_reports_nothing() {
    let t = service();
    add_tenant(&t, &acme(), None).await;
    for u in ["a", "b", "c"] {
        provision(&t, &acme(), u).await;
    }
    let report = t.service.reconcile(&actor(), &acme(), false).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report, ReconcileReport::default());
    assert_eq!(
        t.service.drift_counts(&acme()).await.unwrap(),
        DriftCounts::default()
    );

    let before = t.upstream.keys().len();
    let report = t.service.reconcile(&actor(), &acme(), true).await.unwrap();
    assert!(report.is_clean() && report.repaired && report.repair_errors.is_empty());
    assert_eq!(t.upstream.keys().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_drift_is_reported_exactly_and_a_report_changes_nothing() {
    let (t, p) = planted().await;
    let before = snapshot(&t).await;
    let calls_before = t.upstream.calls().len();

    let report = t.service.reconcile(&actor(), &acme(), false).await.unwrap();

    let orphan_apps: Vec<&str> = report
        .orphan_apps
        .iter()
        .map(|a| a.app_id.as_str())
        .collect();
    assert_eq!(orphan_apps, vec!["acme-stray-1", "legacy-7"]);
    assert_eq!(
        report.orphan_keys,
        vec![OrphanKey {
            app_id: p.extra_key_app.to_string(),
            key_fingerprint: short_fp(LATE),
            description: key_description(&p.extra_key_app, 1),
        }]
    );
    assert_eq!(
        report.unmanaged_apps,
        vec![UnmanagedApp {
            app_id: UNMANAGED.into()
        }]
    );
    assert_eq!(
        report.missing_apps,
        vec![user_ref(&user(&t, &acme(), "u-noapp").await)]
    );
    assert_eq!(
        report.missing_keys,
        vec![user_ref(&user(&t, &acme(), "u-nokey").await)]
    );
    let drift = user(&t, &acme(), "u-drift").await;
    assert_eq!(
        report.scope_drift,
        vec![ScopeDrift {
            external_id: drift.external_id.clone(),
            app_id: drift.app_id.clone(),
            expected: vec!["Inputs:Get".into(), "Predict".into()],
            actual: vec!["Inputs:Add".into(), "Inputs:Get".into(), "Predict".into()],
        }]
    );
    assert!(!report.repaired);
    assert!(report.repair_errors.is_empty());

    // Nothing changed: no upstream writes, no store writes (not even an audit event).
    assert_eq!(snapshot(&t).await, before);
    assert!(
        t.upstream.calls()[calls_before..]
            .iter()
            .all(|c| matches!(c, Call::ListApps | Call::ListAppKeys)),
        "{:?}",
        t.upstream.calls()
    );

    // No secret anywhere in the report.
    let json = serde_json::to_string(&report).unwrap();
    let debug = format!("{report:?}");
    for k in t.upstream.keys() {
        assert!(!json.contains(&k.id) && !debug.contains(&k.id), "{}", k.id);
    }
    assert!(!json.contains(&p.drift_secret));

    let counts = t.service.drift_counts(&acme()).await.unwrap();
    assert_eq!(counts, report.counts());
    assert_eq!(
        counts,
        DriftCounts {
            orphan_apps: 2,
            orphan_keys: 1,
            unmarked_keys: 0,
            missing_apps: 1,
            missing_keys: 1,
            scope_drift: 1,
        }
    );
    let again = snapshot(&t).await;
    assert_eq!(
        (&again.0, &again.1, &again.2),
        (&before.0, &before.1, &before.2)
    );
    assert_eq!(
        again.3,
        before.3 + 1,
        "the periodic check records what it found"
    );
    let last = t.store.audit_events().pop().unwrap();
    assert_eq!(last.action, "reconcile.drift_detected");
    assert_eq!(
        last.events[0].event_type,
        crate::webhooks::EventType::DriftDetected
    );

    // The other tenant sees only its own orphan, and none of acme's apps.
    let g = t
        .service
        .reconcile(&actor(), &globex(), false)
        .await
        .unwrap();
    assert_eq!(
        g.orphan_apps,
        vec![OrphanApp {
            app_id: "zz-globex-stray".into()
        }]
    );
    assert_eq!(g.counts().total(), 1, "{g:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_fixes_every_finding_audits_it_and_leaves_nothing_to_find() {
    let (t, p) = planted().await;
    let globex_app = user(&t, &globex(), "g1").await.app_id;
    let noapp_before = user(&t, &acme(), "u-noapp").await;
    let audit_before = t.store.audit_events().len();

    let report = t.service.reconcile(&actor(), &acme(), true).await.unwrap();
    assert_eq!(report.counts().total(), 6, "{report:?}");
    assert!(report.repaired, "{:?}", report.repair_errors);
    assert!(report.repair_errors.is_empty());

    // Every acme user: exactly one app and one key with its scopes.
    for u in ["u-clean", "u-extra", "u-nokey", "u-noapp", "u-drift"] {
        assert_one_app_one_key(&t, &acme(), u).await;
    }
    let apps: Vec<String> = t.upstream.apps().into_iter().map(|a| a.id).collect();
    assert!(!apps.iter().any(|a| a == "acme-stray-1" || a == "legacy-7"));
    assert!(!t.upstream.keys().iter().any(|k| k.id == LATE));
    assert!(!t.upstream.keys().iter().any(|k| k.id == p.drift_secret));
    assert!(
        apps.iter().any(|a| a == UNMANAGED),
        "an unmanaged app is never touched"
    );
    assert_eq!(report.unmanaged_apps.len(), 1);
    // The other tenant's apps (one with an overlapping prefix) are untouched.
    assert!(apps.iter().any(|a| a == "zz-globex-stray"));
    assert!(apps.iter().any(|a| a == globex_app.as_str()));
    assert_one_app_one_key(&t, &globex(), "g1").await;

    // New generations; the re-created key can be read back with reveal-key.
    let drift = user(&t, &acme(), "u-drift").await;
    assert_eq!(drift.generation, 2);
    assert!(drift.retired_key.is_none());
    assert_eq!(user(&t, &acme(), "u-nokey").await.generation, 2);
    let noapp = user(&t, &acme(), "u-noapp").await;
    assert_eq!(noapp.generation, noapp_before.generation + 1);
    assert_eq!(noapp.app_id, noapp_before.app_id);
    let secret = t
        .service
        .reveal_key(&actor(), &acme(), &ext("u-noapp"))
        .await
        .unwrap();
    assert!(t.upstream.keys().iter().any(|k| k.id == secret.expose()));

    // Each repair audited, by the caller, with its request id and no secret.
    let events: Vec<_> = t.store.audit_events()[audit_before..].to_vec();
    let seen: Vec<(String, String)> = events
        .iter()
        .filter(|e| e.action.starts_with("reconcile."))
        .map(|e| (e.action.clone(), e.target.clone()))
        .collect();
    let expected = [
        ("reconcile.run", "tenants/acme".to_owned()),
        (
            "reconcile.delete_orphan_app",
            "apps/acme-stray-1".to_owned(),
        ),
        ("reconcile.delete_orphan_app", "apps/legacy-7".to_owned()),
        (
            "reconcile.delete_orphan_key",
            format!("apps/{}/keys/{}", p.extra_key_app, short_fp(LATE)),
        ),
        ("reconcile.recreate_app", "users/u-noapp".to_owned()),
        ("reconcile.recreate_key", "users/u-nokey".to_owned()),
        ("reconcile.fix_scope_drift", "users/u-drift".to_owned()),
    ];
    assert_eq!(seen.len(), expected.len(), "{seen:?}");
    for (action, target) in &expected {
        assert!(
            seen.iter().any(|(a, tg)| a == action && tg == target),
            "missing {action} {target} in {seen:?}"
        );
    }
    for e in events.iter().filter(|e| e.action.starts_with("reconcile.")) {
        assert_eq!(e.actor, "tester");
        assert_eq!(e.request_id.as_deref(), Some("req-1"));
        assert_eq!(e.tenant_id.as_ref(), Some(&acme()));
        assert!(e.outcome.starts_with("success"), "{e:?}");
    }
    let run = events.iter().find(|e| e.action == "reconcile.run").unwrap();
    assert_eq!(
        run.outcome,
        "success: repairing orphan_apps=2 orphan_keys=1 unmarked_keys=0 missing_apps=1 missing_keys=1 scope_drift=1"
    );
    for e in &events {
        for k in t.upstream.keys() {
            assert!(!format!("{e:?}").contains(&k.id));
        }
    }

    // Nothing left to find, for either tenant (globex's own orphan aside).
    let again = t.service.reconcile(&actor(), &acme(), false).await.unwrap();
    assert!(again.is_clean(), "{again:?}");
    let g = t.service.drift_counts(&globex()).await.unwrap();
    assert_eq!(g.total(), 1);
    assert_eq!(g.orphan_apps, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_with_an_operation_in_progress_are_skipped() {
    let t = service();
    add_tenant(&t, &acme(), None).await;
    let (leased_app, leased_secret) = provision(&t, &acme(), "leased").await;
    // Someone holds the lease on "leased" (a request in flight).
    let now = t.clock.now();
    t.store
        .acquire_lease(
            &acme(),
            &ext("leased"),
            &Lease {
                owner: "someone-else".into(),
                expires_at: now + chrono::Duration::minutes(5),
            },
            now,
            None,
        )
        .await
        .unwrap()
        .unwrap();
    t.upstream.plant_key(
        leased_app.as_str(),
        HANDMADE,
        "rotation in flight",
        &["Predict"],
    );
    t.upstream.set_key_scopes(&leased_secret, &["Predict"]);
    // "pending" stopped after creating its app: its key is still to be created.
    t.upstream.fault_on(Call::CreateKey, unavailable(), 1);
    let err = t
        .service
        .provision(
            &actor(),
            &acme(),
            &ext("pending"),
            ProvisionRequest {
                scopes: ScopeRequest::Default,
                display_name: None,
                metadata: None,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, DomainError::UpstreamUnavailable(_)),
        "{err:?}"
    );
    let pending = user(&t, &acme(), "pending").await;
    assert_eq!(pending.step, Step::CreateKey);
    assert!(
        t.upstream
            .apps()
            .iter()
            .any(|a| a.id == pending.app_id.as_str())
    );

    let report = t.service.reconcile(&actor(), &acme(), false).await.unwrap();
    assert!(report.is_clean(), "{report:?}");

    let keys_before = snapshot(&t).await.1;
    let apps_before = snapshot(&t).await.0;
    let report = t.service.reconcile(&actor(), &acme(), true).await.unwrap();
    assert!(report.is_clean() && report.repaired, "{report:?}");
    let after = snapshot(&t).await;
    assert_eq!(after.0, apps_before);
    assert_eq!(after.1, keys_before);
    assert_eq!(user(&t, &acme(), "pending").await, pending);
    let leased = user(&t, &acme(), "leased").await;
    assert_eq!(leased.lease.unwrap().owner, "someone-else");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_repair_is_recorded_and_the_others_go_on() {
    let t = service();
    add_tenant(&t, &acme(), None).await;
    let (app, secret) = provision(&t, &acme(), "nokey").await;
    t.upstream.remove_key(&secret);
    t.upstream
        .plant_app("acme-stray-1", app_marker(&acme(), &ext("stray")));
    t.upstream.fault_on(Call::DeleteApp, unavailable(), 1);

    let report = t.service.reconcile(&actor(), &acme(), true).await.unwrap();
    assert!(!report.repaired);
    assert_eq!(report.repair_errors.len(), 1, "{:?}", report.repair_errors);
    assert!(report.repair_errors[0].starts_with("apps/acme-stray-1: "));
    assert_one_app_one_key(&t, &acme(), "nokey").await;
    assert_eq!(user(&t, &acme(), "nokey").await.app_id, app);
    let failed = t
        .store
        .audit_events()
        .into_iter()
        .find(|e| e.action == "reconcile.delete_orphan_app")
        .unwrap();
    assert!(failed.outcome.starts_with("failure: "), "{failed:?}");

    // Still reported; the next repair succeeds.
    let again = t.service.reconcile(&actor(), &acme(), true).await.unwrap();
    assert_eq!(again.counts().total(), 1, "{again:?}");
    assert!(again.repaired);
    assert!(
        t.service
            .reconcile(&actor(), &acme(), false)
            .await
            .unwrap()
            .is_clean()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_cannot_be_recreated_leaves_the_app_and_its_data() {
    let t = service();
    add_tenant(&t, &acme(), None).await;
    let (app, secret) = provision(&t, &acme(), "nokey").await;
    t.upstream.remove_key(&secret);
    t.upstream.fault_on(
        Call::CreateKey,
        Fault::Fail(UpstreamError::Rejected("scope not allowed".into())),
        1,
    );

    let report = t.service.reconcile(&actor(), &acme(), true).await.unwrap();
    assert_eq!(report.missing_keys.len(), 1);
    assert!(!report.repaired);
    assert_eq!(report.repair_errors.len(), 1, "{:?}", report.repair_errors);
    assert!(report.repair_errors[0].starts_with("users/nokey: "));
    // The app (and the user's data in it) stays; the user stays active and reported.
    assert!(t.upstream.apps().iter().any(|a| a.id == app.as_str()));
    let u = user(&t, &acme(), "nokey").await;
    assert_eq!((u.status, u.step), (UserStatus::Active, Step::Idle));
    assert!(u.lease.is_none());
    let again = t.service.reconcile(&actor(), &acme(), true).await.unwrap();
    assert_eq!(again.missing_keys.len(), 1);
    assert!(again.repaired, "{:?}", again.repair_errors);
    assert_one_app_one_key(&t, &acme(), "nokey").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_its_grace_period_is_not_an_orphan_and_drift_repair_keeps_two_at_most() {
    let t = service();
    add_tenant(&t, &acme(), None).await;
    provision(&t, &acme(), "r").await;
    let rotated = t
        .service
        .rotate_key(&actor(), &acme(), &ext("r"), 3600, false)
        .await
        .unwrap();
    assert_eq!(t.upstream.keys().len(), 2);
    assert!(
        t.service
            .reconcile(&actor(), &acme(), false)
            .await
            .unwrap()
            .is_clean()
    );

    let current = rotated.secret.unwrap().expose().to_owned();
    t.upstream.set_key_scopes(&current, &["Predict"]);
    let report = t.service.reconcile(&actor(), &acme(), true).await.unwrap();
    assert_eq!(report.scope_drift.len(), 1);
    assert!(report.repaired, "{:?}", report.repair_errors);
    assert_one_app_one_key(&t, &acme(), "r").await;
    assert!(user(&t, &acme(), "r").await.retired_key.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_changes_nothing_when_the_audit_log_is_down() {
    let (t, _) = planted().await;
    let before = snapshot(&t).await;
    t.store
        .fail_audit
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let err = t
        .service
        .reconcile(&actor(), &acme(), true)
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::Internal(_)), "{err:?}");
    assert_eq!(snapshot(&t).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tenants_are_not_found_and_suspended_ones_are_not_repaired() {
    let (t, _) = planted().await;
    let err = t
        .service
        .reconcile(&actor(), &TenantId::parse("nobody").unwrap(), false)
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::NotFound(_)), "{err:?}");
    assert!(matches!(
        t.service
            .drift_counts(&TenantId::parse("nobody").unwrap())
            .await,
        Err(DomainError::NotFound(_))
    ));

    t.service
        .patch_tenant(
            &actor(),
            &acme(),
            TenantPatch {
                status: Some(TenantStatus::Suspended),
                ..TenantPatch::default()
            },
        )
        .await
        .unwrap();
    let before = snapshot(&t).await;
    let err = t
        .service
        .reconcile(&actor(), &acme(), true)
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::Conflict(_)), "{err:?}");
    assert_eq!(snapshot(&t).await, before);
    let report = t.service.reconcile(&actor(), &acme(), false).await.unwrap();
    assert_eq!(report.counts().total(), 6);
}

// --- Ownership, re-checks under the lease, and keys still live upstream (issue 7, items 7 and 10).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::model::UpstreamAccount;
use crate::ports::{NewApp, NewKey, Upstream, UpstreamApp, UpstreamKey};
use crate::secret::{AesGcmSealer, KeySecret, MasterKey, Sealer};
use crate::testing::{FakeClock, FakeUpstream, MemStore, service_with};

type Hook = Pin<Box<dyn Future<Output = ()> + Send>>;

/// An upstream in front of the fake one that can run a hook (another request of another
/// replica) inside its `at`-th read (`list_apps` or `list_app_keys`, 0-based), and can hide
/// every key from the first `hide_keys` key listings (a listing that missed keys).
#[derive(Default)]
struct HookUpstream {
    inner: Arc<FakeUpstream>,
    hook: Mutex<Option<(usize, Hook)>>,
    reads: AtomicUsize,
    hide_keys: AtomicUsize,
}

impl HookUpstream {
    async fn read_hook(&self) {
        let n = self.reads.fetch_add(1, Ordering::SeqCst);
        let hook = {
            let mut h = self.hook.lock().unwrap();
            match h.as_ref() {
                Some((at, _)) if *at == n => h.take().map(|(_, f)| f),
                _ => None,
            }
        };
        if let Some(f) = hook {
            f.await;
        }
    }
}

#[async_trait::async_trait]
impl Upstream for HookUpstream {
    async fn verify_credential(&self, a: &UpstreamAccount) -> Result<Vec<String>, UpstreamError> {
        self.inner.verify_credential(a).await
    }
    async fn create_app(
        &self,
        a: &UpstreamAccount,
        app: &NewApp,
    ) -> Result<UpstreamApp, UpstreamError> {
        self.inner.create_app(a, app).await
    }
    async fn get_app(&self, a: &UpstreamAccount, id: &AppId) -> Result<UpstreamApp, UpstreamError> {
        self.inner.get_app(a, id).await
    }
    async fn list_apps(&self, a: &UpstreamAccount) -> Result<Vec<UpstreamApp>, UpstreamError> {
        let out = self.inner.list_apps(a).await;
        self.read_hook().await;
        out
    }
    async fn delete_app(&self, a: &UpstreamAccount, id: &AppId) -> Result<(), UpstreamError> {
        self.inner.delete_app(a, id).await
    }
    async fn create_key(
        &self,
        a: &UpstreamAccount,
        k: &NewKey,
    ) -> Result<UpstreamKey, UpstreamError> {
        self.inner.create_key(a, k).await
    }
    async fn list_app_keys(
        &self,
        a: &UpstreamAccount,
        id: &AppId,
    ) -> Result<Vec<UpstreamKey>, UpstreamError> {
        let mut out = self.inner.list_app_keys(a, id).await;
        let hide = self
            .hide_keys
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if hide && let Ok(keys) = out.as_mut() {
            keys.clear();
        }
        self.read_hook().await;
        out
    }
    async fn delete_key(&self, a: &UpstreamAccount, k: &KeySecret) -> Result<(), UpstreamError> {
        self.inner.delete_key(a, k).await
    }
}

/// A test service for setting things up and checking them, plus `reconciler` (another replica
/// over the same store, upstream and clock, whose upstream reads can run a hook) and `other` (a
/// replica for the hooks' requests, which give up at once on a busy lease).
struct Race {
    t: TestService,
    hooked: Arc<HookUpstream>,
    reconciler: Provisioner,
    other: Provisioner,
}

fn race() -> Race {
    let store = Arc::new(MemStore::default());
    let upstream = Arc::new(FakeUpstream::default());
    let clock = Arc::new(FakeClock::new());
    let sealer: Arc<dyn Sealer> = Arc::new(AesGcmSealer::new(&MasterKey::generate()));
    let t = service_with(
        store.clone(),
        upstream.clone(),
        clock.clone(),
        sealer.clone(),
    );
    let hooked = Arc::new(HookUpstream {
        inner: upstream.clone(),
        ..HookUpstream::default()
    });
    let quick = ServiceConfig {
        lease_wait: std::time::Duration::from_millis(20),
        poll_interval: std::time::Duration::from_millis(2),
        ..ServiceConfig::default()
    };
    let reconciler = Provisioner::new(
        store.clone(),
        hooked.clone(),
        clock.clone(),
        sealer.clone(),
        quick.clone(),
    );
    let other = Provisioner::new(store, upstream, clock, sealer, quick);
    Race {
        t,
        hooked,
        reconciler,
        other,
    }
}

impl Race {
    /// Runs `f` inside the `at`-th upstream read of the reconciler.
    fn hook_at(&self, at: usize, f: Hook) {
        self.hooked.reads.store(0, Ordering::SeqCst);
        *self.hooked.hook.lock().unwrap() = Some((at, f));
    }
}

fn default_put() -> ProvisionRequest {
    ProvisionRequest {
        scopes: ScopeRequest::Default,
        display_name: None,
        metadata: None,
    }
}

/// `external_id` deprovisioned, then its app (same id, with its marker) back upstream: a create
/// that landed late, a leaked app.
async fn deleted_with_leaked_app(t: &TestService, external_id: &str) -> AppId {
    let (app, _) = provision(t, &acme(), external_id).await;
    t.service
        .deprovision(&actor(), &acme(), &ext(external_id))
        .await
        .unwrap();
    // Its late-app sweep runs first (it would delete the app planted below).
    t.clock.advance(chrono::Duration::seconds(600));
    t.service.run_recovery_pass(100).await.unwrap();
    t.upstream
        .plant_app(app.as_str(), app_marker(&acme(), &ext(external_id)));
    app
}

/// `external_id` failed (its app create was refused) yet its app exists upstream with its marker.
async fn failed_with_leaked_app(t: &TestService, external_id: &str) -> AppId {
    t.upstream.fault_on(
        Call::CreateApp,
        Fault::Fail(UpstreamError::Rejected("quota".into())),
        1,
    );
    t.service
        .provision(&actor(), &acme(), &ext(external_id), default_put())
        .await
        .unwrap_err();
    // Its late-app sweep (an app create may land after the undo) runs first.
    let u = user(t, &acme(), external_id).await;
    assert_eq!((u.status, u.step), (UserStatus::Failed, Step::SweepApp));
    t.clock.advance(chrono::Duration::seconds(600));
    t.service.run_recovery_pass(100).await.unwrap();
    let u = user(t, &acme(), external_id).await;
    assert_eq!((u.status, u.step), (UserStatus::Failed, Step::Idle));
    t.upstream
        .plant_app(u.app_id.as_str(), app_marker(&acme(), &ext(external_id)));
    u.app_id
}

fn app_ids(t: &TestService) -> Vec<String> {
    t.upstream.apps().into_iter().map(|a| a.id).collect()
}

/// Every key of ours on the user's app upstream (carrying our marker) is its current or retired
/// key: no live key of ours untracked. (Keys made by hand are only reported.)
async fn every_key_is_recorded(t: &TestService, external_id: &str) {
    let u = user(t, &acme(), external_id).await;
    let recorded = [
        u.key.as_ref().map(|k| k.fingerprint.clone()),
        u.retired_key.as_ref().map(|k| k.fingerprint.clone()),
    ];
    for k in t.upstream.keys().iter().filter(|k| {
        k.app_id == u.app_id.as_str()
            && crate::marker::key_generation(&k.description, &u.app_id).is_some()
    }) {
        let fp = KeySecret::parse(k.id.clone()).unwrap().fingerprint();
        assert!(
            recorded.contains(&Some(fp)),
            "{external_id}: live key {:?} is not recorded: {u:?}",
            k.description
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_that_only_share_the_prefix_are_never_deleted() {
    let t = service();
    add_tenant(&t, &acme(), None).await;
    provision(&t, &acme(), "u1").await;
    // Someone's own apps that happen to share the prefix, with no marker or a foreign one.
    t.upstream
        .plant_app("acme-stray-1", serde_json::Value::Null);
    t.upstream
        .plant_app("acme-team-app", serde_json::json!({"owner": "data-team"}));
    // Another tenant's marked app with acme's prefix: none of acme's business.
    t.upstream
        .plant_app("acme-globex-1", app_marker(&globex(), &ext("g")));

    let report = t.service.reconcile(&actor(), &acme(), true).await.unwrap();
    assert!(report.orphan_apps.is_empty(), "{report:?}");
    assert!(report.repaired, "{:?}", report.repair_errors);
    assert!(report.is_clean(), "unmanaged apps are not drift");
    assert_eq!(
        report.unmanaged_apps,
        vec![
            UnmanagedApp {
                app_id: "acme-stray-1".into()
            },
            UnmanagedApp {
                app_id: "acme-team-app".into()
            },
        ]
    );
    let apps = app_ids(&t);
    for id in ["acme-stray-1", "acme-team-app", "acme-globex-1"] {
        assert!(apps.iter().any(|a| a == id), "{id} was deleted: {apps:?}");
    }
    assert!(!t.upstream.calls().contains(&Call::DeleteApp));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_users_leaked_app_is_an_orphan_and_repair_deletes_it() {
    let t = service();
    add_tenant(&t, &acme(), None).await;
    provision(&t, &acme(), "u1").await;
    let app = failed_with_leaked_app(&t, "broke").await;

    let report = t.service.reconcile(&actor(), &acme(), false).await.unwrap();
    assert_eq!(
        report.orphan_apps,
        vec![OrphanApp {
            app_id: app.to_string()
        }],
        "{report:?}"
    );
    let report = t.service.reconcile(&actor(), &acme(), true).await.unwrap();
    assert!(report.repaired, "{:?}", report.repair_errors);
    assert!(!app_ids(&t).contains(&app.to_string()));
    let u = user(&t, &acme(), "broke").await;
    assert_eq!((u.status, u.step), (UserStatus::Failed, Step::Idle));
    assert!(
        u.lease.is_none(),
        "the lease taken for the repair is released"
    );
    assert!(
        t.service
            .reconcile(&actor(), &acme(), false)
            .await
            .unwrap()
            .is_clean()
    );
}

/// A user re-provisioned (deleted or failed before) while the scan runs adopts its leaked app;
/// the repair must not delete it from under the user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_re_provisioned_during_the_scan_survives_the_repair() {
    for failed in [false, true] {
        let r = race();
        add_tenant(&r.t, &acme(), None).await;
        provision(&r.t, &acme(), "a").await;
        let app = if failed {
            failed_with_leaked_app(&r.t, "x").await
        } else {
            deleted_with_leaked_app(&r.t, "x").await
        };
        // Inside the key listing of "a": after the scan read apps and users.
        let other = r.other.clone();
        r.hook_at(
            1,
            Box::pin(async move {
                let p = other
                    .provision(&actor(), &acme(), &ext("x"), default_put())
                    .await
                    .unwrap();
                assert!(p.secret.is_some());
            }),
        );
        let report = r
            .reconciler
            .reconcile(&actor(), &acme(), true)
            .await
            .unwrap();
        assert!(r.hooked.hook.lock().unwrap().is_none(), "the hook ran");
        let x = user(&r.t, &acme(), "x").await;
        assert_eq!(x.status, UserStatus::Active);
        assert_eq!(x.app_id, app);
        assert!(
            app_ids(&r.t).contains(&app.to_string()),
            "failed={failed}: the re-provisioned user's app was deleted: {report:?}"
        );
        // Re-provisioning a failed user looks for earlier keys and sweeps once due.
        r.t.clock.advance(chrono::Duration::seconds(600));
        r.t.service.run_recovery_pass(100).await.unwrap();
        assert_one_app_one_key(&r.t, &acme(), "x").await;
        assert!(
            !report.repaired,
            "the skipped repair is reported: {report:?}"
        );
        assert_eq!(report.repair_errors.len(), 1, "{report:?}");
        assert!(
            report.repair_errors[0].starts_with(&format!("apps/{app}: users/x records it now")),
            "{report:?}"
        );
    }
}

/// The scan's key listing missed the user's keys (or said the app was gone) although they are
/// live: re-creating the key or the app must not leave the live keys unrecorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreate_never_drops_keys_still_live_upstream() {
    for missing_app in [false, true] {
        let r = race();
        add_tenant(&r.t, &acme(), None).await;
        provision(&r.t, &acme(), "u").await;
        // A rotation in grace: two live keys, both recorded.
        r.t.service
            .rotate_key(&actor(), &acme(), &ext("u"), 3600, false)
            .await
            .unwrap();
        if missing_app {
            r.t.upstream
                .fault_on(Call::ListAppKeys, Fault::Fail(UpstreamError::NotFound), 1);
        } else {
            r.hooked.hide_keys.store(1, Ordering::SeqCst);
        }
        let report = r
            .reconciler
            .reconcile(&actor(), &acme(), true)
            .await
            .unwrap();
        assert_eq!(
            (report.missing_apps.len(), report.missing_keys.len()),
            (usize::from(missing_app), usize::from(!missing_app)),
            "{report:?}"
        );
        every_key_is_recorded(&r.t, "u").await;
        let u = user(&r.t, &acme(), "u").await;
        assert_eq!((u.status, u.step), (UserStatus::Active, Step::Idle));
        assert!(u.lease.is_none());
    }
}

/// A search over interleavings: from each seed, drift of every kind is planted, then one or
/// two requests of another replica (PUT, DELETE, rotation with or without grace, on any user)
/// run inside a random upstream read of a repairing reconciliation (during its scan or between
/// its repairs). Whatever ran meanwhile, the repair never deletes an unmanaged app or an
/// unmarked key, never takes an app or key from a user that holds it (every active user keeps
/// its app and key, and every secret handed out meanwhile that its user still records stays
/// live), and a second repair leaves every managed app and marked key recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_interleaving_of_requests_with_a_repair_loses_what_a_user_holds() {
    let seeds: u64 = std::env::var("RECONCILE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    const USERS: [&str; 8] = [
        "clean", "drift", "nokey", "noapp", "extra", "gone", "broke", "grace",
    ];
    for seed in 0..seeds {
        let mut rng = fastrand::Rng::with_seed(seed);
        let r = race();
        let t = &r.t;
        add_tenant(t, &acme(), None).await;
        for u in ["clean", "drift", "nokey", "noapp", "extra", "grace"] {
            provision(t, &acme(), u).await;
        }
        t.service
            .rotate_key(&actor(), &acme(), &ext("grace"), 3600, false)
            .await
            .unwrap();
        let drift = user(t, &acme(), "drift").await;
        let drift_key = t
            .upstream
            .keys()
            .into_iter()
            .find(|k| k.app_id == drift.app_id.as_str())
            .unwrap();
        t.upstream.set_key_scopes(&drift_key.id, &["Predict"]);
        let nokey = user(t, &acme(), "nokey").await;
        for k in t.upstream.keys() {
            if k.app_id == nokey.app_id.as_str() {
                t.upstream.remove_key(&k.id);
            }
        }
        t.upstream
            .remove_app(user(t, &acme(), "noapp").await.app_id.as_str());
        let extra = user(t, &acme(), "extra").await.app_id;
        t.upstream
            .plant_key(extra.as_str(), HANDMADE, "made by hand", &["Predict"]);
        t.upstream.plant_key(
            extra.as_str(),
            LATE,
            &key_description(&extra, 1),
            &["Predict"],
        );
        deleted_with_leaked_app(t, "gone").await;
        failed_with_leaked_app(t, "broke").await;
        t.upstream.plant_app(UNMANAGED, serde_json::Value::Null);

        // One or two requests of another replica, inside one read of the reconciler.
        let ops: Vec<(u8, &str)> = (0..rng.usize(1..=2))
            .map(|_| (rng.u8(0..4), USERS[rng.usize(..USERS.len())]))
            .collect();
        // A DELETE of "extra" removes its app, and the hand-made key with it.
        let extra_deleted = ops.iter().any(|&(op, who)| op == 1 && who == "extra");
        let handed_out: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let (other, out) = (r.other.clone(), handed_out.clone());
        let plan = format!("seed {seed}: {ops:?}");
        r.hook_at(
            rng.usize(0..10),
            Box::pin(async move {
                for (op, who) in ops {
                    let id = ext(who);
                    let secret = match op {
                        0 => other
                            .provision(&actor(), &acme(), &id, default_put())
                            .await
                            .ok()
                            .and_then(|p| p.secret),
                        1 => {
                            let _ = other.deprovision(&actor(), &acme(), &id).await;
                            None
                        }
                        g => other
                            .rotate_key(&actor(), &acme(), &id, if g == 2 { 0 } else { 600 }, true)
                            .await
                            .ok()
                            .and_then(|p| p.secret),
                    };
                    if let Some(s) = secret {
                        out.lock()
                            .unwrap()
                            .push((who.to_owned(), s.expose().to_owned()));
                    }
                }
            }),
        );
        // The scan's first key listings may miss every key (as a listing racing a change would).
        let hidden = rng.usize(0..3);
        r.hooked.hide_keys.store(hidden, Ordering::SeqCst);
        let plan = format!("{plan}, {hidden} key listings hidden");
        r.reconciler
            .reconcile(&actor(), &acme(), true)
            .await
            .unwrap_or_else(|e| panic!("{plan}: {e}"));

        // Nothing that is not ours was touched. The unmarked key on "extra"'s managed app is a
        // repair target (one app, one key): gone only with its app, or by an audited repair.
        assert!(app_ids(t).iter().any(|a| a == UNMANAGED), "{plan}");
        if !extra_deleted && !t.upstream.keys().iter().any(|k| k.id == HANDMADE) {
            let target = format!("/keys/{}", short_fp(HANDMADE));
            assert!(
                t.store
                    .audit_events()
                    .iter()
                    .any(|e| e.action == "reconcile.delete_unmarked_key"
                        && e.target.ends_with(&target)),
                "{plan}: the unmarked key went without its audit event"
            );
        }
        // Nothing a user holds was taken from it.
        let apps = app_ids(t);
        let keys: Vec<String> = t.upstream.keys().into_iter().map(|k| k.id).collect();
        for who in USERS {
            let u = user(t, &acme(), who).await;
            if u.status != UserStatus::Active || u.step != Step::Idle {
                continue;
            }
            assert!(
                apps.contains(&u.app_id.to_string()),
                "{plan}: {who} lost its app"
            );
            let fp = u.key.as_ref().map(|k| k.fingerprint.clone());
            let live = keys
                .iter()
                .any(|k| Some(KeySecret::parse(k.clone()).unwrap().fingerprint()) == fp);
            // "nokey" keeps a missing key only if its repair was skipped.
            assert!(live || who == "nokey", "{plan}: {who} lost its key");
            // No key of ours left live and unrecorded (the planted late key aside, which a
            // skipped repair leaves for the next one).
            let recorded = [fp, u.retired_key.as_ref().map(|k| k.fingerprint.clone())];
            for k in t.upstream.keys() {
                if k.app_id == u.app_id.as_str()
                    && k.id != LATE
                    && crate::marker::key_generation(&k.description, &u.app_id).is_some()
                {
                    let kfp = KeySecret::parse(k.id.clone()).unwrap().fingerprint();
                    assert!(
                        recorded.contains(&Some(kfp)),
                        "{plan}: {who}'s key {:?} is live and unrecorded",
                        k.description
                    );
                }
            }
        }
        let handed_out = handed_out.lock().unwrap().clone();
        for (who, secret) in &handed_out {
            let u = user(t, &acme(), who).await;
            let fp = KeySecret::parse(secret.clone()).unwrap().fingerprint();
            let recorded = u.key.as_ref().is_some_and(|k| k.fingerprint == fp)
                || u.retired_key.as_ref().is_some_and(|k| k.fingerprint == fp);
            if recorded && u.status != UserStatus::Deleted {
                assert!(keys.contains(secret), "{plan}: {who}'s new key was deleted");
            }
        }

        // A second repair settles what the first skipped; then every managed app and every key
        // on one is recorded, and only the unmanaged app is left.
        t.clock.advance(chrono::Duration::hours(2));
        t.service.run_recovery_pass(100).await.unwrap();
        let second = t.service.reconcile(&actor(), &acme(), true).await.unwrap();
        assert!(second.repaired, "{plan}: {:?}", second.repair_errors);
        let last = t.service.reconcile(&actor(), &acme(), false).await.unwrap();
        assert!(last.orphan_apps.is_empty(), "{plan}: {last:?}");
        assert_eq!(last.counts().total(), 0, "{plan}: {last:?}");
        assert_eq!(last.unmanaged_apps.len(), 1, "{plan}: {last:?}");
        for who in USERS {
            let u = user(t, &acme(), who).await;
            if u.status == UserStatus::Active {
                assert_eq!(u.step, Step::Idle, "{plan}");
                every_key_is_recorded(t, who).await;
            }
        }
        let holding: Vec<String> = {
            let mut v = Vec::new();
            for who in USERS {
                let u = user(t, &acme(), who).await;
                if u.status == UserStatus::Active {
                    v.push(u.app_id.to_string());
                }
            }
            v
        };
        for a in t.upstream.apps() {
            if crate::marker::app_managed_by(&a.metadata, &acme()) {
                assert!(
                    holding.contains(&a.id),
                    "{plan}: managed app {} unrecorded",
                    a.id
                );
            }
        }
    }
}
