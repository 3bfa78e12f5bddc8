//! Reconciliation: compares the store with a tenant's upstream account and reports — or, when
//! asked, repairs — orphan apps and keys, missing apps and keys, and scope drift (docs/design.md,
//! "Leases and fencing"; docs/api.md, "Drift and compromise").
//!
//! What is compared:
//! - *Managed apps* are the apps of the account whose metadata marker names the tenant. Only
//!   they are ever deleted. Several tenants may share one account: an app whose marker names
//!   *another* tenant is never the tenant's, whatever its id.
//! - *Unmanaged apps* have the tenant's app-id prefix but no marker of this service (someone's
//!   own apps): reported, never touched. Apps a user records are neither.
//! - Users with an operation in progress (a live lease, or a pending step) are skipped: nothing is
//!   reported about them and their apps are never touched; their apps still count as recorded.
//! - An *orphan app* is a managed app that no user holding an app records: `failed` and
//!   `deleted` users hold none, so a `failed` user's leaked app is an orphan.
//! - For each `active` user: its app absent upstream is a *missing app*; otherwise its recorded
//!   key absent from the app is a *missing key*, and a current key whose upstream scopes differ
//!   from the recorded ones is *scope drift*. Every other key on the app (neither the current
//!   nor a recorded retired key) is an *orphan key* when its description carries this service's
//!   marker for the app (the late effect of a create that got no answer), and an *unmarked key*
//!   otherwise: a key the upstream minted with the app, or one added by hand. Either way it
//!   breaks "one app, one least-privilege key per user". An unmarked key is repaired (deleted)
//!   only when the scan reported it, it reaches no other app, and the app carries this user's
//!   marker (`app_managed`), read again under the lease; otherwise it is reported and never
//!   touched.
//! - Seeing an unmarked key on a managed app tells the `learn` policy of `auto_key_check` that
//!   the account mints keys: provisioning on that account checks every new app again.
//!
//! Repairs act only on what still holds under the lease of the user concerned: the scan is a
//! snapshot, and users change while it runs. For each repaired user the row is re-read under its
//! lease and must be unchanged (status, step, generation, app, scopes, key fingerprints), and the
//! app's keys are listed again under the lease: the fix is applied only if the same finding
//! still holds; orphan keys are deleted, and the unmarked keys the scan reported as removable
//! once the app's marker is read again under the lease. A user taken over by another operation
//! mid-repair is listed in `repair_errors` and the run goes on. An orphan app is deleted under the lease
//! of the user whose row names it (looked up in a fresh listing of the users, taken after the
//! scan), and only if that user still holds no app; otherwise it is skipped. A finding that no
//! longer holds is not repaired and is listed in `repair_errors` (run reconcile again).
//! An orphan app that no row names at all is deleted without a lease: a row for it could only be
//! inserted by a PUT of the very external id it was made for, between the fresh listing and the
//! delete; that user's provisioning then finds its app gone and creates it again.
//!
//! Repairs reuse the state machine: a user's repairs run under its lease with the intent written
//! first, so a crash mid-repair is finished by recovery like any other operation. A re-created
//! app or key never leaves a key live upstream unrecorded: the keys are listed under the lease
//! first (a key or app only re-created when really gone), marked orphan keys are deleted, a key in
//! its grace period stays recorded (or is deleted first, when a drifted key is replaced), and a
//! replaced key is recorded as retired until it is deleted.
//!
//! Audit: a report (`repair = false`, and [`Provisioner::drift_counts`]) changes nothing and
//! writes no audit event, so a periodic drift check does not flood the log (its one write is
//! the account's auto-key learning, when an unmarked key is seen on a managed app).
//! With `repair = true`, one `reconcile.run` event (target `tenants/<id>`, the counts of findings
//! in its outcome) is written *before* any change, so nothing is repaired when the audit log is
//! unavailable. Then every repair is audited: `reconcile.delete_orphan_app` (`apps/<id>`),
//! `reconcile.delete_orphan_key` and `reconcile.delete_unmarked_key`
//! (`apps/<id>/keys/<fingerprint>`), `reconcile.recreate_app`,
//! `reconcile.recreate_key`, `reconcile.fix_scope_drift` (`users/<external id>`); a failed
//! repair gets the same action with a `failure: ...` outcome. User repairs are audited in the
//! same write that records them (the state machine's final save). An orphan deletion has no row
//! to write, so its event is appended right after the upstream call; if that append fails the
//! run stops there and returns the error, so no further change is made unaudited.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::error::{DomainError, UpstreamError};
use crate::ids::{AppId, ExternalId, TenantId};
use crate::marker::{app_has_marker, app_managed_by, key_generation};
use crate::model::{
    Actor, Step, Tenant, TenantStatus, Timestamp, UpstreamAccount, User, UserStatus,
};
use crate::ports::{UpstreamApp, UpstreamKey};
use crate::secret::KeySecret;

use super::Provisioner;

mod repair;

/// Users read from the store per page.
const PAGE: u32 = 500;
/// Hex characters of a key's SHA-256 shown in a report.
const SHORT_FINGERPRINT: usize = 8;

/// An app upstream that carries the tenant's marker but that no user holding an app records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OrphanApp {
    /// The upstream app id (as reported; not necessarily a valid [`AppId`]).
    pub app_id: String,
}

/// An app with the tenant's id prefix but no marker of this service: reported, never touched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnmanagedApp {
    /// The upstream app id (as reported).
    pub app_id: String,
}

/// A key on an active user's app that carries this service's marker for the app but is neither
/// its current key nor a recorded retired key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OrphanKey {
    /// The app the key was found on.
    pub app_id: String,
    /// The first 8 hex characters of the SHA-256 of the key's secret (never the secret).
    pub key_fingerprint: String,
    /// The key's upstream description.
    pub description: String,
}

/// A key on an active user's app that carries no marker of this service and is not recorded: a
/// key the upstream minted with the app, or one added by hand.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnmarkedKey {
    /// The user whose app holds it.
    pub external_id: ExternalId,
    /// The app the key was found on.
    pub app_id: AppId,
    /// The first 8 hex characters of the SHA-256 of the key's secret (never the secret).
    pub key_fingerprint: String,
    /// The key's upstream description.
    pub description: String,
    /// The scopes it holds upstream, sorted.
    pub scopes: Vec<String>,
    /// Other apps the key reaches as well (then it was not minted with this app, and a repair
    /// never deletes it).
    pub other_apps: Vec<String>,
    /// Whether the app carries this user's marker: only then does a repair delete the key.
    pub app_managed: bool,
}

/// An active user concerned by a finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserRef {
    /// The caller's id of the user.
    pub external_id: ExternalId,
    /// Its recorded upstream app.
    pub app_id: AppId,
}

/// A user's current key holds other scopes upstream than recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScopeDrift {
    /// The caller's id of the user.
    pub external_id: ExternalId,
    /// Its upstream app.
    pub app_id: AppId,
    /// The recorded scopes, sorted.
    pub expected: Vec<String>,
    /// The scopes the key holds upstream, sorted and de-duplicated.
    pub actual: Vec<String>,
}

/// What a reconciliation found and, when repair was asked for, how the repair went.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// Managed apps no live user records.
    pub orphan_apps: Vec<OrphanApp>,
    /// Unrecorded keys with this service's marker on active users' apps.
    pub orphan_keys: Vec<OrphanKey>,
    /// Unrecorded keys without this service's marker on active users' apps.
    pub unmarked_keys: Vec<UnmarkedKey>,
    /// Active users whose app is gone upstream.
    pub missing_apps: Vec<UserRef>,
    /// Active users whose recorded key is gone upstream.
    pub missing_keys: Vec<UserRef>,
    /// Active users whose key's upstream scopes differ from the recorded ones.
    pub scope_drift: Vec<ScopeDrift>,
    /// Apps with the tenant's id prefix but without this service's marker (never touched; not
    /// counted as drift).
    pub unmanaged_apps: Vec<UnmanagedApp>,
    /// Repair was asked for and every repair succeeded.
    pub repaired: bool,
    /// One line per repair that failed or was not attempted, e.g. because its finding no longer
    /// held under the lease (no secrets).
    pub repair_errors: Vec<String>,
}

impl ReconcileReport {
    /// Whether nothing was found (unmanaged apps are not drift).
    pub fn is_clean(&self) -> bool {
        self.counts().total() == 0
    }

    /// The number of findings of each kind.
    pub fn counts(&self) -> DriftCounts {
        DriftCounts {
            orphan_apps: self.orphan_apps.len(),
            orphan_keys: self.orphan_keys.len(),
            unmarked_keys: self.unmarked_keys.len(),
            missing_apps: self.missing_apps.len(),
            missing_keys: self.missing_keys.len(),
            scope_drift: self.scope_drift.len(),
        }
    }
}

/// Counts of each kind of finding, for a periodic drift check (metrics, alerts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DriftCounts {
    /// Managed apps no live user records.
    pub orphan_apps: usize,
    /// Unrecorded marked keys on active users' apps.
    pub orphan_keys: usize,
    /// Unrecorded unmarked keys on active users' apps (e.g. minted with the app upstream).
    pub unmarked_keys: usize,
    /// Active users whose app is gone upstream.
    pub missing_apps: usize,
    /// Active users whose recorded key is gone upstream.
    pub missing_keys: usize,
    /// Active users whose key's scopes drifted upstream.
    pub scope_drift: usize,
}

impl DriftCounts {
    /// All findings together.
    pub fn total(&self) -> usize {
        self.orphan_apps
            + self.orphan_keys
            + self.unmarked_keys
            + self.missing_apps
            + self.missing_keys
            + self.scope_drift
    }
}

/// The repair an active user needs besides deleting orphan keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fix {
    /// The app is gone: provision again (app, then key).
    RecreateApp,
    /// The key is gone: create a new one.
    RecreateKey,
    /// The key's scopes drifted: replace it with one holding the recorded scopes.
    ReplaceKey,
}

impl Fix {
    fn action(self) -> &'static str {
        match self {
            Fix::RecreateApp => "reconcile.recreate_app",
            Fix::RecreateKey => "reconcile.recreate_key",
            Fix::ReplaceKey => "reconcile.fix_scope_drift",
        }
    }
}

/// An active user with findings, as scanned.
struct UserWork {
    user: User,
    /// The fix the scan found needed (re-checked under the lease before it is applied).
    fix: Option<Fix>,
    /// Fingerprints of the unmarked keys the scan reported as removable (on an app carrying
    /// this user's marker, reaching no other app): a repair deletes no other unmarked key, and
    /// these only if the app still carries the marker under the lease.
    unmarked: BTreeSet<String>,
}

/// The findings and what repairing them takes.
struct Scan {
    report: ReconcileReport,
    users: Vec<UserWork>,
}

/// A key on an active user's app that is neither its current nor its retired key.
struct FoundKey {
    /// Kept only to delete it; never shown.
    secret: KeySecret,
    fingerprint: String,
    short: String,
    /// Other apps it reaches too.
    other_apps: Vec<String>,
    description: String,
    scopes: Vec<String>,
    /// Its description carries this service's marker for the app.
    marked: bool,
}

/// What an active user's app and keys upstream say about it.
struct Found {
    fix: Option<Fix>,
    /// (expected, actual) scopes when the current key drifted.
    drift: Option<(Vec<String>, Vec<String>)>,
    orphans: Vec<FoundKey>,
}

impl Provisioner {
    /// Compares the tenant's users with its upstream account and reports orphan apps and keys,
    /// missing apps and keys, scope drift and unmanaged apps. With `repair`, fixes each finding
    /// that still holds under the lease of the user concerned (users through the state machine)
    /// and audits each repair; without it, changes nothing upstream or in the store. A repair
    /// that fails or no longer applies is listed in `repair_errors` and the others go on. Repair
    /// on a suspended tenant is refused (reporting is allowed). Callers must restrict `repair` to
    /// administrators (docs/api.md: `provisioner:admin`).
    pub async fn reconcile(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        repair: bool,
    ) -> Result<ReconcileReport, DomainError> {
        let tenant = self.tenant(tenant_id).await?;
        if repair && tenant.status == TenantStatus::Suspended {
            return Err(DomainError::Conflict(format!(
                "tenant {tenant_id} is suspended; reconcile without repair to see the drift"
            )));
        }
        // A scan reads the whole account: it queues with bulk work, not ahead of users.
        let account = self.account(&tenant, crate::budget::Lane::Bulk)?;
        let scan = self.scan(&tenant, &account).await?;
        // A report changes nothing (a `read` caller may ask for it): `drift.detected` is sent
        // by the periodic drift check (`drift_counts`) and by a repair.
        if !repair {
            return Ok(scan.report);
        }
        let drift = self.drift_event(&tenant.id, &scan.report.counts());
        let mut report = scan.report;
        // Before any change, so that nothing is repaired if the audit log cannot be written.
        let c = report.counts();
        let outcome = format!(
            "success: repairing orphan_apps={} orphan_keys={} unmarked_keys={} missing_apps={} missing_keys={} scope_drift={}",
            c.orphan_apps,
            c.orphan_keys,
            c.unmarked_keys,
            c.missing_apps,
            c.missing_keys,
            c.scope_drift
        );
        let mut audit = self.audit(
            actor,
            Some(tenant_id),
            "reconcile.run",
            format!("tenants/{tenant_id}"),
            &outcome,
        );
        audit.events.extend(drift);
        self.store.append_audit(&audit).await?;
        let mut errors = Vec::new();
        if !report.orphan_apps.is_empty() {
            // Read after the scan: a row that names an orphan now is found here.
            let owners = self.all_users(tenant_id).await?;
            for orphan in &report.orphan_apps {
                self.repair_orphan_app(
                    actor,
                    &tenant,
                    &account,
                    &orphan.app_id,
                    &owners,
                    &mut errors,
                )
                .await?;
            }
        }
        for work in scan.users {
            self.repair_user(actor, &tenant, work, &mut errors).await?;
        }
        report.repaired = errors.is_empty();
        report.repair_errors = errors;
        Ok(report)
    }

    /// The counts of each finding (a reconciliation without repair), for a periodic drift check.
    /// Changes nothing; when it finds drift, writes a `reconcile.drift_detected` audit event
    /// carrying the `drift.detected` webhook event (best effort: a failed write is logged).
    pub async fn drift_counts(&self, tenant_id: &TenantId) -> Result<DriftCounts, DomainError> {
        let tenant = self.tenant(tenant_id).await?;
        let account = self.account(&tenant, crate::budget::Lane::Bulk)?;
        let counts = self.scan(&tenant, &account).await?.report.counts();
        if let Some(event) = self.drift_event(tenant_id, &counts) {
            let mut audit = self.audit(
                &Actor::system("drift-check"),
                Some(tenant_id),
                "reconcile.drift_detected",
                format!("tenants/{tenant_id}"),
                "success",
            );
            audit.events.push(event);
            if let Err(e) = self.store.append_audit(&audit).await {
                tracing::warn!(error.message = %e, tenant = %tenant_id, "recording detected drift failed");
            }
        }
        Ok(counts)
    }

    /// Reads the account and the store; changes nothing.
    async fn scan(&self, tenant: &Tenant, account: &UpstreamAccount) -> Result<Scan, DomainError> {
        // Apps first, then users: every app listed was created after its user's row was written
        // (intent first), so a user provisioned while we scan is never mistaken for an orphan.
        let apps = self
            .upstream
            .list_apps(account)
            .await
            .map_err(upstream_error)?;
        let present: std::collections::BTreeMap<&str, &UpstreamApp> =
            apps.iter().map(|a| (a.id.as_str(), a)).collect();

        let users = self.all_users(&tenant.id).await?;
        let now = self.clock.now();
        let recorded: BTreeSet<&str> = users
            .iter()
            .filter(|u| in_progress(u, now) || holds_app(u))
            .map(|u| u.app_id.as_str())
            .collect();

        let mut report = ReconcileReport::default();
        for app in apps.iter().filter(|a| !recorded.contains(a.id.as_str())) {
            if app_managed_by(&app.metadata, &tenant.id) {
                report.orphan_apps.push(OrphanApp {
                    app_id: app.id.clone(),
                });
            } else if is_unmanaged(app, tenant) {
                report.unmanaged_apps.push(UnmanagedApp {
                    app_id: app.id.clone(),
                });
            }
        }
        let mut work = Vec::new();
        let mut seen_minted = false;
        for user in users {
            if in_progress(&user, now) || user.status != UserStatus::Active {
                continue;
            }
            let app = present.get(user.app_id.as_str());
            let app_managed = app
                .is_some_and(|a| app_has_marker(&a.metadata, &user.tenant_id, &user.external_id));
            let keys = if app.is_some() {
                match self.upstream.list_app_keys(account, &user.app_id).await {
                    Ok(keys) => Some(keys),
                    // Deleted since the app listing.
                    Err(UpstreamError::NotFound) => None,
                    Err(e) => return Err(upstream_error(e)),
                }
            } else {
                None
            };
            let found = assess(&user, keys);
            let user_ref = || UserRef {
                external_id: user.external_id.clone(),
                app_id: user.app_id.clone(),
            };
            match (found.fix, &found.drift) {
                (Some(Fix::RecreateApp), _) => report.missing_apps.push(user_ref()),
                (Some(Fix::RecreateKey), _) => report.missing_keys.push(user_ref()),
                (Some(Fix::ReplaceKey), Some((expected, actual))) => {
                    report.scope_drift.push(ScopeDrift {
                        external_id: user.external_id.clone(),
                        app_id: user.app_id.clone(),
                        expected: expected.clone(),
                        actual: actual.clone(),
                    });
                }
                _ => {}
            }
            let mut unmarked = BTreeSet::new();
            for k in &found.orphans {
                if k.marked {
                    report.orphan_keys.push(OrphanKey {
                        app_id: user.app_id.to_string(),
                        key_fingerprint: k.short.clone(),
                        description: k.description.clone(),
                    });
                } else {
                    let removable = app_managed && k.other_apps.is_empty();
                    if removable {
                        unmarked.insert(k.fingerprint.clone());
                        if !seen_minted {
                            // At once: a later failure of the scan must not lose it.
                            seen_minted = true;
                            self.record_sighting(account, now).await;
                        }
                    }
                    report.unmarked_keys.push(UnmarkedKey {
                        external_id: user.external_id.clone(),
                        app_id: user.app_id.clone(),
                        key_fingerprint: k.short.clone(),
                        description: k.description.clone(),
                        scopes: k.scopes.clone(),
                        other_apps: k.other_apps.clone(),
                        app_managed,
                    });
                }
            }
            if found.fix.is_some() || found.orphans.iter().any(|k| k.marked) || !unmarked.is_empty()
            {
                work.push(UserWork {
                    user,
                    fix: found.fix,
                    unmarked,
                });
            }
        }
        Ok(Scan {
            report,
            users: work,
        })
    }

    /// Tells `learn` that the account mints keys: new apps on it are checked again. A hint:
    /// losing it costs a check, the report stays right.
    async fn record_sighting(&self, account: &UpstreamAccount, now: Timestamp) {
        if let Err(e) = self
            .store
            .record_auto_key_check(&account.key(), true, now)
            .await
        {
            tracing::debug!(error.message = %e, "could not record an unmarked key seen by reconcile");
        }
    }

    /// Every user of the tenant, all statuses.
    async fn all_users(&self, tenant_id: &TenantId) -> Result<Vec<User>, DomainError> {
        let mut all = Vec::new();
        let mut after: Option<ExternalId> = None;
        loop {
            let page = self
                .store
                .list_users(tenant_id, None, after.as_ref(), PAGE)
                .await?;
            let full = page.len() == PAGE as usize;
            after = page.last().map(|u| u.external_id.clone());
            all.extend(page);
            if !full || after.is_none() {
                return Ok(all);
            }
        }
    }
}

/// Whether an app the tenant's users do not record is someone's own app that merely shares the
/// tenant's id prefix: no marker of this service at all (an app marked for another tenant is
/// that tenant's business). With an empty prefix nothing is reported.
fn is_unmanaged(app: &UpstreamApp, tenant: &Tenant) -> bool {
    if app.metadata.get("provisioner").is_some() {
        return false;
    }
    let prefix = &tenant.app_defaults.id_prefix;
    if prefix.is_empty() {
        return false;
    }
    // Derived ids are `<prefix>-...` when the prefix does not end in a separator.
    if prefix.ends_with(['-', '_']) {
        app.id.starts_with(prefix.as_str())
    } else {
        app.id
            .strip_prefix(prefix.as_str())
            .is_some_and(|rest| rest.starts_with('-'))
    }
}

impl Provisioner {
    /// The `drift.detected` event of a scan that found something (counts only).
    fn drift_event(
        &self,
        tenant: &crate::ids::TenantId,
        c: &DriftCounts,
    ) -> Option<crate::webhooks::OutboxEvent> {
        (c.total() > 0).then(|| {
            crate::webhooks::OutboxEvent::new(
                tenant,
                crate::webhooks::EventType::DriftDetected,
                self.clock.now(),
                serde_json::json!({
                    "tenant_id": tenant.as_str(),
                    "orphan_apps": c.orphan_apps,
                    "orphan_keys": c.orphan_keys,
                    "unmarked_keys": c.unmarked_keys,
                    "missing_apps": c.missing_apps,
                    "missing_keys": c.missing_keys,
                    "scope_drift": c.scope_drift,
                }),
            )
        })
    }
}

/// An operation is in progress on the user (a pending step, or a live lease).
fn in_progress(user: &User, now: Timestamp) -> bool {
    user.step != Step::Idle || user.lease.as_ref().is_some_and(|l| l.expires_at > now)
}

/// The user holds (or is getting, or is giving up) an upstream app. A `failed` user holds none
/// (its app is undone), nor does a `deleted` one.
fn holds_app(user: &User) -> bool {
    matches!(
        user.status,
        UserStatus::Active
            | UserStatus::Rotating
            | UserStatus::Provisioning
            | UserStatus::Deprovisioning
            | UserStatus::Suspending
            | UserStatus::Suspended
            | UserStatus::Reactivating
    )
}

/// What an active user's keys upstream (`None`: its app is gone) say about it.
fn assess(user: &User, keys: Option<Vec<UpstreamKey>>) -> Found {
    let Some(keys) = keys else {
        return Found {
            fix: Some(Fix::RecreateApp),
            drift: None,
            orphans: Vec::new(),
        };
    };
    let (current, orphans) = classify_keys(user, keys);
    let (fix, drift) = match current {
        None => (Some(Fix::RecreateKey), None),
        Some(key) => {
            let actual: Vec<String> = key
                .scopes
                .iter()
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let expected = user.scopes.names();
            if actual == expected {
                (None, None)
            } else {
                (Some(Fix::ReplaceKey), Some((expected, actual)))
            }
        }
    };
    Found {
        fix,
        drift,
        orphans,
    }
}

/// Splits an active user's upstream keys into its current key (if present) and the orphans. A
/// recorded retired key is neither: recovery deletes it when its grace period ends.
fn classify_keys(user: &User, keys: Vec<UpstreamKey>) -> (Option<UpstreamKey>, Vec<FoundKey>) {
    let current_fp = user.key.as_ref().map(|k| k.fingerprint.as_str());
    let retired_fp = user.retired_key.as_ref().map(|k| k.fingerprint.as_str());
    let mut current = None;
    let mut orphans = Vec::new();
    for key in keys {
        let fp = key.secret.fingerprint();
        if Some(fp.as_str()) == current_fp {
            current = Some(key);
        } else if Some(fp.as_str()) == retired_fp {
            continue;
        } else {
            let mut scopes = key.scopes;
            scopes.sort();
            scopes.dedup();
            let other_apps = key
                .app_ids
                .into_iter()
                .filter(|a| a != user.app_id.as_str())
                .collect();
            orphans.push(FoundKey {
                marked: key_generation(&key.description, &user.app_id).is_some(),
                short: fp.chars().take(SHORT_FINGERPRINT).collect(),
                fingerprint: fp,
                other_apps,
                description: key.description,
                scopes,
                secret: key.secret,
            });
        }
    }
    (current, orphans)
}

/// Whether the row taken under lease is the one scanned (same operation state and keys).
fn unchanged(scanned: &User, leased: &User) -> bool {
    leased.status == UserStatus::Active
        && leased.step == Step::Idle
        && leased.generation == scanned.generation
        && leased.app_id == scanned.app_id
        && leased.scopes == scanned.scopes
        && leased.key.as_ref().map(|k| &k.fingerprint)
            == scanned.key.as_ref().map(|k| &k.fingerprint)
        && leased.retired_key.as_ref().map(|k| &k.fingerprint)
            == scanned.retired_key.as_ref().map(|k| &k.fingerprint)
}

/// An upstream failure while reading the account.
fn upstream_error(e: UpstreamError) -> DomainError {
    match e {
        UpstreamError::Unauthorized(m) => {
            DomainError::UpstreamRejected(format!("upstream refused the tenant's credential: {m}"))
        }
        UpstreamError::Rejected(m) => DomainError::UpstreamRejected(m),
        UpstreamError::Unavailable { message, .. } => DomainError::UpstreamUnavailable(message),
        UpstreamError::Busy(message) => DomainError::UpstreamBusy(message),
        UpstreamError::NotFound | UpstreamError::AlreadyExists => DomainError::UpstreamRejected(
            format!("unexpected upstream answer while reading the account: {e}"),
        ),
    }
}
