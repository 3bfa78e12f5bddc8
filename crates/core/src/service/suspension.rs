//! Suspension (SCIM deactivation under the `revoke_key` policy): every key of the user's app is
//! deleted upstream and the app is kept; reactivation creates a new key with the same scopes.
//! Both follow the state machine's pattern: the intent is written first, each step is safe to
//! repeat, and recovery finishes what a crash cut off.

use tokio::time::Instant;

use crate::error::DomainError;
use crate::ids::{ExternalId, TenantId};
use crate::model::{Actor, Step, TenantStatus, User, UserStatus};

use super::Provisioner;
use super::users::{check_deadline, lease_live, lease_owner};

/// What a suspension or reactivation found.
#[derive(Debug)]
pub enum Transition {
    /// Done (or already in the state asked for): the user as stored.
    Done(User),
    /// Another operation (provisioning, rotation, deprovisioning) is pending on the user:
    /// try again once it has finished.
    Busy(UserStatus),
}

impl Provisioner {
    /// Deletes every key of an active user's app upstream and keeps the app: the user becomes
    /// `suspended`. Repeating it answers the suspended user again. A deleted or failed user is
    /// left as it is (it holds no key).
    pub async fn suspend(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        external_id: &ExternalId,
    ) -> Result<Transition, DomainError> {
        let tenant = self.tenant(tenant_id).await?;
        let deadline = Instant::now() + self.config.lease_wait;
        loop {
            check_deadline(deadline)?;
            let user = self.get_user(tenant_id, external_id).await?;
            if lease_live(&user, self.lease_horizon()) {
                self.wait_for_release(tenant_id, external_id, deadline)
                    .await?;
                continue;
            }
            match (user.status, user.step) {
                (UserStatus::Suspended | UserStatus::Deleted | UserStatus::Failed, _) => {
                    return Ok(Transition::Done(user));
                }
                (UserStatus::Active, Step::Idle | Step::SweepKeys)
                | (UserStatus::Suspending, _) => {}
                (status, _) => return Ok(Transition::Busy(status)),
            }
            let Some(mut u) = self.acquire(&user).await? else {
                continue;
            };
            let owner = lease_owner(&u);
            // Reached through SCIM after a deactivation; keys are deleted even when the
            // tenant is suspended (revoking is never refused).
            let mut run = self.run(&tenant, actor, owner, false, "user.suspend", false)?;
            if u.status == UserStatus::Suspending {
                self.resume_intent(actor, &u, "user.suspend", &run.owner)
                    .await?;
            } else {
                u.status = UserStatus::Suspending;
                u.step = Step::DeleteKey;
                u.attempts = 0;
                u.rotation_grace_secs = 0;
                u.secret_pending = false;
                let intent = self.intent_event(actor, &u, "user.suspend");
                if let Err(e) = self.save(&run.owner, &mut u, true, Some(&intent)).await {
                    self.abandon(&run.owner).await;
                    return Err(e);
                }
            }
            return self
                .drive(&mut run, u)
                .await
                .map(|o| Transition::Done(o.user));
        }
    }

    /// Creates a new key, with the same scopes, for a suspended user's app (re-creating the app
    /// if it vanished): the user becomes `active` again. The secret reaches no caller here: it
    /// is recorded as undelivered (the next PUT carries it once; `reveal-key` shows it).
    pub async fn reactivate(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        external_id: &ExternalId,
    ) -> Result<Transition, DomainError> {
        let tenant = self.tenant(tenant_id).await?;
        if tenant.status == TenantStatus::Suspended {
            return Err(DomainError::Conflict(format!(
                "tenant {tenant_id} is suspended"
            )));
        }
        let deadline = Instant::now() + self.config.lease_wait;
        loop {
            check_deadline(deadline)?;
            let user = self.get_user(tenant_id, external_id).await?;
            if lease_live(&user, self.lease_horizon()) {
                self.wait_for_release(tenant_id, external_id, deadline)
                    .await?;
                continue;
            }
            let resuming = user.status == UserStatus::Reactivating;
            match user.status {
                UserStatus::Active => return Ok(Transition::Done(user)),
                UserStatus::Suspended => {}
                _ if resuming => {}
                status => return Ok(Transition::Busy(status)),
            }
            // The scopes it had may no longer be allowed (the tenant changed since).
            super::tenants::check_scopes(&user.scopes, &tenant.allowed_scopes)?;
            let Some(mut u) = self.acquire(&user).await? else {
                continue;
            };
            let owner = lease_owner(&u);
            let mut run = self.run(&tenant, actor, owner, resuming, "user.reactivate", false)?;
            if resuming {
                self.resume_intent(actor, &u, "user.reactivate", &run.owner)
                    .await?;
            } else {
                // A key create of an earlier generation may land late: the suspension's sweep
                // covers every generation, and this run looks before it creates.
                run.look_first = true;
                u.status = UserStatus::Reactivating;
                u.step = Step::CreateKey;
                u.generation += 1;
                u.key = None;
                u.retired_key = None;
                u.rotation_grace_secs = 0;
                u.attempts = 0;
                u.last_error = None;
                u.next_attempt_at = None;
                let intent = self.intent_event(actor, &u, "user.reactivate");
                if let Err(e) = self.save(&run.owner, &mut u, true, Some(&intent)).await {
                    self.abandon(&run.owner).await;
                    return Err(e);
                }
            }
            return self
                .drive(&mut run, u)
                .await
                .map(|o| Transition::Done(o.user));
        }
    }
}
