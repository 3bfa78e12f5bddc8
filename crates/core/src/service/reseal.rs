//! Master key rotation: re-seal every stored secret (tenant PATs, users' current and retired
//! keys) under the current master key.
//!
//! The service runs with a [`crate::secret::RotatingSealer`] (new key current, old key
//! previous): every value opens whichever key sealed it, and every value written is sealed
//! under the new key. [`Provisioner::reseal`] then rewrites what is left under the old key, so
//! the old key can be dropped. It makes no upstream call, takes each user's lease (skipping a
//! user another operation holds), and is safe to interrupt and to repeat: a value already under
//! the current key is simply sealed again under it.

use crate::error::{DomainError, StoreError};
use crate::ids::{ExternalId, TenantId};
use crate::model::{Actor, Tenant, User};

use super::steps::user_target;
use super::{KeySlot, Provisioner, key_aad, legacy_key_aad, legacy_pat_aad, pat_aad};

/// Rows read per page while walking tenants and users.
const PAGE: u32 = 200;

/// Times a tenant's PAT is re-read and re-sealed when the row keeps changing meanwhile.
const TENANT_ATTEMPTS: usize = 5;

/// What a re-seal did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResealReport {
    /// Tenants whose PAT was re-sealed under the current key.
    pub tenants: u64,
    /// Users whose row was rewritten with re-sealed keys.
    pub users: u64,
    /// Key values re-sealed (current and retired keys).
    pub keys: u64,
    /// Webhook endpoints whose signing secrets were re-sealed.
    pub webhook_endpoints: u64,
    /// Users skipped because another operation held their lease; run the re-seal again.
    pub skipped_busy: u64,
    /// Values that could not be re-sealed (they opened under neither key, or the write failed).
    pub failures: Vec<ResealFailure>,
}

impl ResealReport {
    /// Whether every stored secret is now sealed under the current key (nothing failed and no
    /// user was skipped).
    pub fn is_complete(&self) -> bool {
        self.failures.is_empty() && self.skipped_busy == 0
    }
}

/// One value that could not be re-sealed. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResealFailure {
    /// `tenants/<id>` or `tenants/<id>/users/<external id>`.
    pub target: String,
    /// What went wrong.
    pub reason: String,
}

const UNOPENED: &str = "opens under neither the current nor the previous master key, nor under \
     its legacy binding (wrong key, corrupt data, or a row altered in the database)";

/// The one-time upgrade of values sealed before PATs were bound to their base URL and upstream
/// user and keys to their slot (docs/security.md, "Upgrading").
pub const SEALING_UPGRADE: &str = "sealing-binding-v2";

impl Provisioner {
    /// Re-seals every tenant's PAT and every user's current and retired key under the current
    /// master key, with a `tenant.reseal` / `user.reseal` audit event per row. A value that
    /// opens under no configured key is reported (by tenant and user) and the run goes on; a
    /// user whose lease another operation holds is skipped and counted. Repeating it is
    /// harmless. Only a failure to read the store ends it early (with an error).
    pub async fn reseal(&self, actor: &Actor) -> Result<ResealReport, DomainError> {
        let mut report = ResealReport::default();
        let mut after: Option<TenantId> = None;
        loop {
            let page = self.store.list_tenants(after.as_ref(), PAGE).await?;
            for tenant in &page {
                self.reseal_tenant(actor, &tenant.id, &mut report).await?;
                self.reseal_users(actor, &tenant.id, &mut report).await?;
                self.reseal_endpoints(actor, &tenant.id, &mut report)
                    .await?;
            }
            if page.len() < PAGE as usize {
                break;
            }
            after = page.last().map(|t| t.id.clone());
        }
        // Every row was visited and written (values that open under nothing are corrupt or
        // altered rows, which no re-run fixes): legacy-sealed values are gone.
        if report.skipped_busy == 0 && report.failures.iter().all(|f| f.reason.contains(UNOPENED)) {
            let now = self.clock.now();
            if let Err(e) = self.store.record_maintenance(SEALING_UPGRADE, now).await {
                tracing::warn!(error.message = %e, "could not record the sealing upgrade as done");
            }
        }
        Ok(report)
    }

    /// Runs the re-seal once per database, to migrate values sealed by a version before the
    /// sealing binding: `serve` and `demo` call it at start-up, before they accept requests.
    /// `None` when it was already recorded as done (by an earlier start-up or `provisioner
    /// reseal`); otherwise the re-seal's report (recorded as done when it left nothing behind).
    pub async fn upgrade_sealing(
        &self,
        actor: &Actor,
    ) -> Result<Option<ResealReport>, DomainError> {
        if self.store.maintenance_done(SEALING_UPGRADE).await? {
            return Ok(None);
        }
        self.reseal(actor).await.map(Some)
    }

    async fn reseal_tenant(
        &self,
        actor: &Actor,
        id: &TenantId,
        report: &mut ResealReport,
    ) -> Result<(), DomainError> {
        let target = format!("tenants/{id}");
        // The write is conditioned on the version read: a change made meanwhile (a suspension,
        // a new PAT) is never overwritten; the row is read again and re-sealed as it now is.
        for _ in 0..TENANT_ATTEMPTS {
            // Read it again just before writing: the listing may be a while old.
            let Some(mut tenant) = self.store.get_tenant(id).await? else {
                return Ok(());
            };
            // Bound to where the PAT is sent. A value sealed by a version before that binding
            // (tenant only) opens here, and only here, and is rewritten under the binding.
            let aad = pat_aad(id, &tenant.base_url, &tenant.upstream_user_id);
            let Ok(pat) = self.open_or_legacy(&tenant.pat_sealed, &aad, &legacy_pat_aad(id)) else {
                let reason = format!("the tenant's PAT {UNOPENED}");
                self.reseal_failed(actor, &tenant, &target, &reason).await;
                report.failures.push(ResealFailure { target, reason });
                return Ok(());
            };
            tenant.pat_sealed = self
                .sealer
                .seal(secrecy::ExposeSecret::expose_secret(&pat), &aad);
            let audit = self.audit(actor, Some(id), "tenant.reseal", target.clone(), "success");
            match self
                .store
                .update_tenant(&tenant, tenant.version, &audit)
                .await
            {
                Ok(()) => report.tenants += 1,
                // Changed meanwhile: read it again.
                Err(StoreError::Stale) => continue,
                // Deleted meanwhile: nothing left to re-seal.
                Err(StoreError::NotFound) => {}
                Err(e) => report.failures.push(ResealFailure {
                    target,
                    reason: format!("writing the re-sealed PAT: {e}"),
                }),
            }
            return Ok(());
        }
        report.failures.push(ResealFailure {
            target,
            reason: "the tenant kept changing concurrently; run the re-seal again".into(),
        });
        Ok(())
    }

    async fn reseal_users(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        report: &mut ResealReport,
    ) -> Result<(), DomainError> {
        let mut after: Option<ExternalId> = None;
        loop {
            let page = self
                .store
                .list_users(tenant_id, None, after.as_ref(), PAGE)
                .await?;
            for user in &page {
                if user.key.is_none() && user.retired_key.is_none() {
                    continue;
                }
                self.reseal_user(actor, user, report).await;
            }
            if page.len() < PAGE as usize {
                return Ok(());
            }
            after = page.last().map(|u| u.external_id.clone());
        }
    }

    /// Re-seals one user's keys under its lease; failures go to the report.
    async fn reseal_user(&self, actor: &Actor, listed: &User, report: &mut ResealReport) {
        let target = format!("tenants/{}/{}", listed.tenant_id, user_target(listed));
        let mut user = match self.acquire(listed).await {
            Ok(Some(u)) => u,
            Ok(None) => {
                report.skipped_busy += 1;
                return;
            }
            Err(e) => {
                report.failures.push(ResealFailure {
                    target,
                    reason: format!("taking the user's lease: {e}"),
                });
                return;
            }
        };
        let owner = user
            .lease
            .as_ref()
            .map(|l| l.owner.clone())
            .unwrap_or_default();
        let current = key_aad(&user.tenant_id, &user.app_id, KeySlot::Current);
        let retired = key_aad(&user.tenant_id, &user.app_id, KeySlot::Retired);
        // Values sealed by a version before the slot binding open under the legacy data here,
        // and only here, and are rewritten under their slot's binding.
        let legacy = legacy_key_aad(&user.tenant_id, &user.app_id);
        let mut resealed = 0u64;
        let mut unopened: Vec<&str> = Vec::new();
        if let Some(k) = user.key.as_mut() {
            let aad = &current;
            match self.open_or_legacy(&k.sealed, aad, &legacy) {
                Ok(s) => {
                    k.sealed = self
                        .sealer
                        .seal(secrecy::ExposeSecret::expose_secret(&s), aad);
                    resealed += 1;
                }
                Err(_) => unopened.push("current key"),
            }
        }
        if let Some(k) = user.retired_key.as_mut() {
            let aad = &retired;
            match self.open_or_legacy(&k.sealed, aad, &legacy) {
                Ok(s) => {
                    k.sealed = self
                        .sealer
                        .seal(secrecy::ExposeSecret::expose_secret(&s), aad);
                    resealed += 1;
                }
                Err(_) => unopened.push("retired key"),
            }
        }
        let failure = (!unopened.is_empty())
            .then(|| format!("the user's {} {UNOPENED}", unopened.join(" and ")));
        let outcome = match &failure {
            None => "success".to_owned(),
            Some(reason) => format!("failure: {reason}"),
        };
        // The row is written back as read (but for the re-sealed values), releasing the lease;
        // `updated_at` stays: nothing a caller sees has changed.
        user.lease = None;
        let audit = self.audit(
            actor,
            Some(&user.tenant_id),
            "user.reseal",
            user_target(&user),
            &outcome,
        );
        match self.store.update_user(&user, &owner, Some(&audit)).await {
            Ok(()) => {
                if resealed > 0 {
                    report.users += 1;
                    report.keys += resealed;
                }
            }
            Err(StoreError::Stale) => {
                report.skipped_busy += 1;
                return;
            }
            Err(e) => {
                // Nothing was written: give the row back at once rather than when the lease
                // expires (the owner token is unique to this one operation).
                if !owner.is_empty() {
                    let _ = self.store.release_leases(&owner).await;
                }
                report.failures.push(ResealFailure {
                    target,
                    reason: format!("writing the re-sealed keys: {e}"),
                });
                return;
            }
        }
        if let Some(reason) = failure {
            report.failures.push(ResealFailure { target, reason });
        }
    }

    /// Re-seals every webhook endpoint's secrets (on the version read; a concurrent change is
    /// read again).
    async fn reseal_endpoints(
        &self,
        actor: &Actor,
        tenant: &TenantId,
        report: &mut ResealReport,
    ) -> Result<(), DomainError> {
        for listed in self.store.list_endpoints(tenant).await? {
            let target = format!("tenants/{tenant}/webhook-endpoints/{}", listed.id);
            let aad = super::webhooks::secret_aad(tenant, &listed.id);
            let mut done = false;
            for _ in 0..TENANT_ATTEMPTS {
                let Some(current) = self.store.get_endpoint(tenant, &listed.id).await? else {
                    done = true;
                    break;
                };
                let mut next = current.clone();
                let mut unopened = false;
                for s in &mut next.secrets {
                    match self.sealer.open(&s.sealed, &aad) {
                        Ok(plain) => {
                            s.sealed = self
                                .sealer
                                .seal(secrecy::ExposeSecret::expose_secret(&plain), &aad);
                        }
                        Err(_) => unopened = true,
                    }
                }
                if unopened {
                    report.failures.push(ResealFailure {
                        target: target.clone(),
                        reason: "a signing secret opens under neither master key".into(),
                    });
                }
                let audit = self.audit(
                    actor,
                    Some(tenant),
                    "webhook_endpoint.reseal",
                    target.clone(),
                    "success",
                );
                match self
                    .store
                    .update_endpoint(&next, current.version, &audit)
                    .await
                {
                    Ok(()) => {
                        report.webhook_endpoints += 1;
                        done = true;
                        break;
                    }
                    Err(StoreError::Stale | StoreError::NotFound) => continue,
                    Err(e) => {
                        report.failures.push(ResealFailure {
                            target: target.clone(),
                            reason: e.to_string(),
                        });
                        done = true;
                        break;
                    }
                }
            }
            if !done {
                report.failures.push(ResealFailure {
                    target,
                    reason: "the endpoint kept changing; run the re-seal again".into(),
                });
            }
        }
        Ok(())
    }

    /// Opens a value under its binding or, failing that, under the legacy binding of versions
    /// before it. Only the re-seal may do this: the request path opens under the binding alone.
    fn open_or_legacy(
        &self,
        sealed: &[u8],
        aad: &str,
        legacy: &str,
    ) -> Result<secrecy::SecretString, crate::secret::SealError> {
        self.sealer
            .open(sealed, aad)
            .or_else(|_| self.sealer.open(sealed, legacy))
    }

    /// Records a value that did not open (best effort: the report carries it regardless).
    async fn reseal_failed(&self, actor: &Actor, tenant: &Tenant, target: &str, reason: &str) {
        let audit = self.audit(
            actor,
            Some(&tenant.id),
            "tenant.reseal",
            target.to_owned(),
            &format!("failure: {reason}"),
        );
        if let Err(e) = self.store.append_audit(&audit).await {
            tracing::warn!(reseal.target = %target, error.message = %e, "could not audit a re-seal failure");
        }
    }
}
