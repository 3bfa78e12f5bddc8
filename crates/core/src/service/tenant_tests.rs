//! Tenant updates under concurrency: a read-modify-write of the tenant row never silently
//! undoes a change that landed between its read and its write.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;

use super::*;
use crate::error::UpstreamError;
use crate::ids::{AppId, ProfileName, UpstreamUserId};
use crate::model::TenantStatus;
use crate::ports::{NewApp, NewKey, TenantStore, UpstreamApp, UpstreamKey};
use crate::scope::ScopeSet;
use crate::secret::{AesGcmSealer, KeySecret, MasterKey};
use crate::testing::{FakeClock, FakeUpstream, MemStore, TestService, service};

fn actor() -> Actor {
    Actor {
        subject: "tester".into(),
        request_id: None,
        lane: crate::budget::Lane::Interactive,
    }
}
fn tid() -> TenantId {
    TenantId::parse("acme").unwrap()
}

fn new_tenant() -> NewTenant {
    let standard = ScopeSet::parse(["Predict", "Inputs:Get"]).unwrap();
    let mut profiles = BTreeMap::new();
    profiles.insert(ProfileName::parse("standard").unwrap(), standard.clone());
    NewTenant {
        id: tid(),
        display_name: "Acme".into(),
        base_url: "https://api.clarifai.example".into(),
        upstream_user_id: UpstreamUserId::parse("acme-ml").unwrap(),
        pat: Pat::parse("good-pat").unwrap(),
        app_defaults: None,
        rate_limit: None,
        allowed_scopes: standard,
        default_scope_profile: Some(ProfileName::parse("standard").unwrap()),
        scope_profiles: profiles,
        auto_key_check: None,
    }
}

fn suspend() -> TenantPatch {
    TenantPatch {
        status: Some(TenantStatus::Suspended),
        ..TenantPatch::default()
    }
}

/// An upstream whose credential check takes "seconds": while it runs, an operator suspends
/// the tenant through the service.
struct SuspendDuringVerify {
    inner: FakeUpstream,
    service: OnceLock<Provisioner>,
    /// Whether the next credential check suspends the tenant (once).
    armed: AtomicBool,
}

#[async_trait]
impl Upstream for SuspendDuringVerify {
    async fn verify_credential(
        &self,
        account: &UpstreamAccount,
    ) -> Result<Vec<String>, UpstreamError> {
        if let Some(service) = self.service.get()
            && self.armed.swap(false, Ordering::SeqCst)
        {
            service
                .patch_tenant(&actor(), &account.tenant_id, suspend())
                .await
                .unwrap();
        }
        self.inner.verify_credential(account).await
    }
    async fn create_app(
        &self,
        account: &UpstreamAccount,
        app: &NewApp,
    ) -> Result<UpstreamApp, UpstreamError> {
        self.inner.create_app(account, app).await
    }
    async fn get_app(
        &self,
        account: &UpstreamAccount,
        app_id: &AppId,
    ) -> Result<UpstreamApp, UpstreamError> {
        self.inner.get_app(account, app_id).await
    }
    async fn list_apps(
        &self,
        account: &UpstreamAccount,
    ) -> Result<Vec<UpstreamApp>, UpstreamError> {
        self.inner.list_apps(account).await
    }
    async fn delete_app(
        &self,
        account: &UpstreamAccount,
        app_id: &AppId,
    ) -> Result<(), UpstreamError> {
        self.inner.delete_app(account, app_id).await
    }
    async fn create_key(
        &self,
        account: &UpstreamAccount,
        key: &NewKey,
    ) -> Result<UpstreamKey, UpstreamError> {
        self.inner.create_key(account, key).await
    }
    async fn list_app_keys(
        &self,
        account: &UpstreamAccount,
        app_id: &AppId,
    ) -> Result<Vec<UpstreamKey>, UpstreamError> {
        self.inner.list_app_keys(account, app_id).await
    }
    async fn delete_key(
        &self,
        account: &UpstreamAccount,
        key: &KeySecret,
    ) -> Result<(), UpstreamError> {
        self.inner.delete_key(account, key).await
    }
}

#[tokio::test]
async fn a_suspension_during_set_credential_is_not_undone() {
    let store = Arc::new(MemStore::default());
    let upstream = Arc::new(SuspendDuringVerify {
        inner: FakeUpstream::default(),
        service: OnceLock::new(),
        armed: AtomicBool::new(true),
    });
    let service = Provisioner::new(
        store.clone(),
        upstream.clone(),
        Arc::new(FakeClock::new()),
        Arc::new(AesGcmSealer::new(&MasterKey::generate())),
        ServiceConfig::default(),
    );
    // The tenant is created before the hook is armed.
    service.create_tenant(&actor(), new_tenant()).await.unwrap();
    let before = store.get_tenant(&tid()).await.unwrap().unwrap();
    assert!(upstream.service.set(service.clone()).is_ok());

    let replaced = service
        .set_credential(&actor(), &tid(), Pat::parse("new-pat").unwrap())
        .await;

    let after = store.get_tenant(&tid()).await.unwrap().unwrap();
    assert_eq!(
        after.status,
        TenantStatus::Suspended,
        "the suspension that landed during the credential check stands"
    );
    assert_eq!(
        after.pat_fingerprint, before.pat_fingerprint,
        "the stale write changed nothing"
    );
    match replaced {
        Err(DomainError::Conflict(m)) => {
            assert!(m.contains("changed concurrently"), "{m}");
            assert!(m.contains("retry"), "{m}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    // A retry, now that nothing races it, replaces the PAT and keeps the suspension.
    let retried = service
        .set_credential(&actor(), &tid(), Pat::parse("new-pat").unwrap())
        .await
        .unwrap();
    assert_eq!(retried.tenant.status, TenantStatus::Suspended);
    let after = store.get_tenant(&tid()).await.unwrap().unwrap();
    assert_eq!(after.status, TenantStatus::Suspended);
    assert_eq!(
        after.pat_fingerprint,
        Pat::parse("new-pat").unwrap().fingerprint()
    );
    assert_eq!(after.version, retried.tenant.version);
}

async fn with_tenant() -> TestService {
    let t = service();
    t.service
        .create_tenant(&actor(), new_tenant())
        .await
        .unwrap();
    t
}

#[tokio::test]
async fn a_patch_racing_a_suspension_is_refused_and_changes_nothing() {
    let t = with_tenant().await;
    t.store.before_next_tenant_update(|row| {
        row.status = TenantStatus::Suspended;
        row.version += 1;
    });
    let renamed = t
        .service
        .patch_tenant(
            &actor(),
            &tid(),
            TenantPatch {
                display_name: Some("Acme Renamed".into()),
                ..TenantPatch::default()
            },
        )
        .await;
    assert!(
        matches!(&renamed, Err(DomainError::Conflict(m)) if m.contains("changed concurrently")),
        "{renamed:?}"
    );
    let row = t.store.get_tenant(&tid()).await.unwrap().unwrap();
    assert_eq!(row.status, TenantStatus::Suspended);
    assert_eq!(row.display_name, "Acme");
    // Retried, it applies on top of the suspension.
    let view = t
        .service
        .patch_tenant(
            &actor(),
            &tid(),
            TenantPatch {
                display_name: Some("Acme Renamed".into()),
                ..TenantPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(view.tenant.status, TenantStatus::Suspended);
    assert_eq!(view.tenant.display_name, "Acme Renamed");
    let row = t.store.get_tenant(&tid()).await.unwrap().unwrap();
    assert_eq!(
        row.version, view.tenant.version,
        "the view shows the stored version"
    );
}

#[tokio::test]
async fn a_reseal_racing_a_suspension_keeps_it() {
    let t = with_tenant().await;
    t.store.before_next_tenant_update(|row| {
        row.status = TenantStatus::Suspended;
        row.version += 1;
    });
    let report = t.service.reseal(&actor()).await.unwrap();
    let row = t.store.get_tenant(&tid()).await.unwrap().unwrap();
    assert_eq!(row.status, TenantStatus::Suspended, "{report:?}");
    // The re-seal read the row again and finished the job.
    assert_eq!(report.tenants, 1, "{report:?}");
    assert!(report.is_complete(), "{report:?}");
}
