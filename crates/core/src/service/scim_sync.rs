//! The SCIM sync worker: brings each SCIM user whose stored version is not synced onto its
//! provisioning record, through the ordinary use cases (each idempotent and crash-safe):
//!
//! | SCIM state | provisioning record | use case |
//! |---|---|---|
//! | active | none, deleted, failed, provisioning, active, rotating | `provision` (a repeat creates nothing) |
//! | active | suspended, reactivating | `reactivate` (a new key, same scopes) |
//! | inactive, policy `revoke_key` | active, suspending | `suspend` (keys deleted, app kept) |
//! | inactive, policy `deprovision` | active, suspended, suspending | `deprovision` |
//! | deleted | anything holding an app | `deprovision` |
//!
//! A record busy with another operation (an operation recovery still owes) is tried again
//! later; a refusal retrying cannot fix (unknown profile, other scopes, an app id held by
//! someone else) is tried again with a backoff of at most a minute; only a refusal of the
//! request itself (an unknown profile, scopes no longer allowed) is recorded on the SCIM user
//! and not retried until its next write. A crash
//! leaves the version unsynced and its claim lapses: the worker does it again.

use std::time::Duration;

use tokio::task::JoinSet;

use crate::budget::Lane;
use crate::error::DomainError;
use crate::model::{Actor, TenantStatus, UserStatus};
use crate::scim::{DeactivatePolicy, ScimSyncOutcome, ScimUser};

use super::Provisioner;
use super::suspension::Transition;
use super::users::{ProvisionRequest, ScopeRequest};

/// What one sync pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScimSyncReport {
    /// SCIM users claimed.
    pub claimed: usize,
    /// Synced (including those whose refusal was recorded).
    pub synced: usize,
    /// To be tried again.
    pub retried: usize,
}

/// Where one sync ended, before it is recorded.
enum Step {
    Synced(Option<String>),
    Retry(String),
}

impl Provisioner {
    /// Runs the SCIM sync worker until `stop`: claims up to `concurrency` unsynced SCIM users
    /// at a time and syncs each in its own task. Sleeps while there is nothing to do; a SCIM
    /// write on this instance wakes it (other replicas' writes are found by polling).
    pub async fn run_scim_worker(
        &self,
        concurrency: u32,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        const IDLE: Duration = Duration::from_millis(500);
        let concurrency = concurrency.max(1);
        let mut running: JoinSet<bool> = JoinSet::new();
        loop {
            if *stop.borrow() {
                return;
            }
            let free = concurrency.saturating_sub(u32::try_from(running.len()).unwrap_or(u32::MAX));
            let mut claimed = 0;
            if free > 0 {
                match self.claim_scim(free).await {
                    Ok(users) => {
                        claimed = users.len();
                        for u in users {
                            let this = self.clone();
                            running.spawn(async move { this.sync_scim_user(u).await });
                        }
                    }
                    Err(e) => tracing::warn!(error.message = %e, "claiming SCIM syncs failed"),
                }
            }
            if claimed > 0 && running.len() < concurrency as usize {
                continue;
            }
            tokio::select! {
                biased;
                _ = stop.changed() => return,
                Some(_) = running.join_next(), if !running.is_empty() => {}
                () = self.scim_wake.notified() => {}
                () = tokio::time::sleep(IDLE) => {}
            }
        }
    }

    /// One pass: claims up to `limit` unsynced SCIM users and syncs them one after another.
    /// (Tests and tools; the service runs [`Provisioner::run_scim_worker`].)
    pub async fn run_scim_sync_pass(&self, limit: u32) -> Result<ScimSyncReport, DomainError> {
        let users = self.claim_scim(limit).await?;
        let mut report = ScimSyncReport {
            claimed: users.len(),
            ..Default::default()
        };
        for u in users {
            if self.sync_scim_user(u).await {
                report.synced += 1;
            } else {
                report.retried += 1;
            }
        }
        Ok(report)
    }

    async fn claim_scim(&self, limit: u32) -> Result<Vec<ScimUser>, DomainError> {
        let now = self.clock.now();
        Ok(self
            .store
            .claim_scim_sync(now, now + self.scim_claim_ttl(), limit)
            .await?)
    }

    /// Syncs one claimed SCIM user and records the outcome; true when synced.
    async fn sync_scim_user(&self, user: ScimUser) -> bool {
        let step = match self.sync_step(&user).await {
            Ok(step) => step,
            // Only a refusal of the request itself is final (an unknown profile, scopes the
            // tenant no longer allows); anything an operator or time can fix (a refused PAT, a
            // suspended tenant, a conflicting operation, an app id held by another app) is
            // tried again, at most every minute.
            Err(e) => match e {
                DomainError::Invalid(m) | DomainError::Validation(m) => Step::Synced(Some(m)),
                other => Step::Retry(other.to_string()),
            },
        };
        let now = self.clock.now();
        let outcome = match step {
            Step::Synced(error) => ScimSyncOutcome::Synced {
                version: user.version,
                error,
            },
            Step::Retry(error) => ScimSyncOutcome::Retry {
                error,
                next_sync_at: now
                    + self
                        .backoff(user.sync_attempts + 1)
                        .min(super::scim::MAX_SYNC_BACKOFF),
            },
        };
        if let ScimSyncOutcome::Synced {
            error: Some(reason),
            ..
        } = &outcome
        {
            // Ids only: SCIM attributes are personal data.
            tracing::warn!(
                tenant = %user.tenant_id,
                scim.id = %user.id,
                reason = %reason,
                "a SCIM user's state could not be applied; not retried until its next write"
            );
        }
        let synced = matches!(outcome, ScimSyncOutcome::Synced { .. });
        if let Err(e) = self
            .store
            .finish_scim_sync(&user.tenant_id, &user.id, &outcome)
            .await
        {
            // The claim lapses and the sync runs again (each use case is idempotent).
            tracing::warn!(error.message = %e, "recording a SCIM sync failed");
            return false;
        }
        synced
    }

    async fn sync_step(&self, scim: &ScimUser) -> Result<Step, DomainError> {
        let actor = Actor {
            subject: format!("scim:{}", scim.tenant_id),
            request_id: Some(format!("scim-sync:{}", scim.id)),
            lane: Lane::Bulk,
        };
        let (tenant_id, external_id) = (&scim.tenant_id, &scim.external_id);
        let tenant = self.tenant(tenant_id).await?;
        let user = self.store.get_user(tenant_id, external_id).await?;
        let status = user.as_ref().map(|u| u.status);
        let busy =
            |s: UserStatus| Step::Retry(format!("the user is {s}; waiting for it to finish"));
        if scim.deleted || !scim.attrs.active {
            let policy = if scim.deleted {
                DeactivatePolicy::Deprovision
            } else {
                self.scim_config(tenant_id).await?.on_deactivate
            };
            let Some(status) = status else {
                return Ok(Step::Synced(None));
            };
            return Ok(match (policy, status) {
                (_, UserStatus::Deleted | UserStatus::Failed) => Step::Synced(None),
                (DeactivatePolicy::RevokeKey, UserStatus::Suspended) => Step::Synced(None),
                (DeactivatePolicy::RevokeKey, _) => {
                    match self.suspend(&actor, tenant_id, external_id).await? {
                        Transition::Done(_) => Step::Synced(None),
                        Transition::Busy(s) => busy(s),
                    }
                }
                (DeactivatePolicy::Deprovision, _) => {
                    self.deprovision(&actor, tenant_id, external_id).await?;
                    Step::Synced(None)
                }
            });
        }
        if tenant.status == TenantStatus::Suspended {
            return Ok(Step::Retry(format!("tenant {tenant_id} is suspended")));
        }
        match status {
            Some(UserStatus::Suspended | UserStatus::Reactivating) => {
                match self.reactivate(&actor, tenant_id, external_id).await? {
                    Transition::Done(_) => Ok(Step::Synced(None)),
                    Transition::Busy(s) => Ok(busy(s)),
                }
            }
            Some(s @ (UserStatus::Suspending | UserStatus::Deprovisioning)) => Ok(busy(s)),
            _ => {
                let display_name = scim
                    .attrs
                    .display_name
                    .clone()
                    .filter(|d| super::check_text("display_name", d, 200).is_ok());
                // A profile chosen at creation that was deleted since: the tenant's default.
                let profile = match &scim.profile {
                    Some(p) if self.store.get_profile(tenant_id, p).await?.is_some() => {
                        Some(p.clone())
                    }
                    _ => None,
                };
                let req = ProvisionRequest {
                    scopes: profile.map_or(ScopeRequest::Default, ScopeRequest::Profile),
                    display_name,
                    metadata: None,
                };
                self.provision_as(&actor, tenant_id, external_id, req, None, false, true)
                    .await?;
                Ok(Step::Synced(None))
            }
        }
    }
}
