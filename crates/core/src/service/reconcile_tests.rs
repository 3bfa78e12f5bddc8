//! Reconciliation tests over in-memory ports: drift planted out of band is reported exactly, a
//! report changes nothing, a repair fixes everything (audited) and leaves nothing to find.

use std::collections::BTreeMap;

use super::*;
use crate::error::UpstreamError;
use crate::ids::{AppId, ProfileName, UpstreamUserId};
use crate::marker::app_marker;
use crate::model::{AppDefaults, Lease, Step, TenantStatus, User, UserStatus};
use crate::ports::UserStore;
use crate::scope::ScopeSet;
use crate::testing::{Call, Fault, TestService, service};

fn actor() -> Actor {
    Actor {
        subject: "tester".into(),
        request_id: Some("req-1".into()),
    }
}
fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}
fn globex() -> TenantId {
    TenantId::parse("globex").unwrap()
}
fn ext(s: &str) -> ExternalId {
    ExternalId::parse(s).unwrap()
}
fn scopes(v: &[&str]) -> ScopeSet {
    ScopeSet::parse(v).unwrap()
}
fn short_fp(secret: &str) -> String {
    crate::secret::KeySecret::parse(secret)
        .unwrap()
        .fingerprint()[..8]
        .to_owned()
}

/// Adds a tenant; `prefix` None keeps the derived default (`<id>-`).
async fn add_tenant(t: &TestService, id: &TenantId, prefix: Option<&str>) {
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
            },
        )
        .await
        .unwrap();
}

async fn provision(t: &TestService, tenant: &TenantId, external_id: &str) -> (AppId, String) {
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

const HANDMADE: &str = "handmadekey0000000000000000001";

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

    // Orphan apps: one by prefix (no marker), one by acme's marker (any id).
    t.upstream
        .plant_app("acme-stray-1", serde_json::Value::Null);
    t.upstream
        .plant_app("legacy-7", app_marker(&acme(), &ext("long-gone")));
    // Globex's own orphan, marked for globex: never acme's.
    t.upstream
        .plant_app("zz-globex-stray", app_marker(&globex(), &ext("x")));

    let extra_key_app = user(&t, &acme(), "u-extra").await.app_id;
    t.upstream.plant_key(
        extra_key_app.as_str(),
        HANDMADE,
        "made by hand",
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
            key_fingerprint: short_fp(HANDMADE),
            description: "made by hand".into(),
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
            missing_apps: 1,
            missing_keys: 1,
            scope_drift: 1,
        }
    );
    assert_eq!(snapshot(&t).await, before);

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
    assert!(!t.upstream.keys().iter().any(|k| k.id == HANDMADE));
    assert!(!t.upstream.keys().iter().any(|k| k.id == p.drift_secret));
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
            format!("apps/{}/keys/{}", p.extra_key_app, short_fp(HANDMADE)),
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
        "success: repairing orphan_apps=2 orphan_keys=1 missing_apps=1 missing_keys=1 scope_drift=1"
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
        .plant_app("acme-stray-1", serde_json::Value::Null);
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
