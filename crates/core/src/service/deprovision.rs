//! Deprovisioning: the user's key, then its app, are deleted upstream ("not found" is done),
//! and the row is marked deleted.

use tokio::time::Instant;

use crate::error::DomainError;
use crate::ids::{ExternalId, TenantId};
use crate::model::{Actor, Step, User, UserStatus};

use super::Provisioner;
use super::users::{check_deadline, lease_live, lease_owner};

impl Provisioner {
    /// Deletes the user's key and app upstream ("not found" is done) and marks it deleted.
    /// Repeating it answers the deleted user again.
    pub async fn deprovision(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        external_id: &ExternalId,
    ) -> Result<User, DomainError> {
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
            if user.status == UserStatus::Deleted {
                return Ok(user);
            }
            let Some(mut u) = self.acquire(&user).await? else {
                continue;
            };
            let owner = lease_owner(&u);
            let mut run = self.run(&tenant, actor, owner, false, "user.deprovision", true)?;
            if u.status != UserStatus::Deprovisioning
                || !matches!(u.step, Step::DeleteKey | Step::DeleteApp)
            {
                // A rotation or provisioning cut off mid-way may have created a key that is
                // not recorded yet: deleting the app (the last step) deletes it with the app.
                u.status = UserStatus::Deprovisioning;
                u.step = Step::DeleteKey;
                u.attempts = 0;
                u.rotation_grace_secs = 0;
                u.secret_pending = false;
                let intent = self.intent_event(actor, &u, "user.deprovision");
                if let Err(e) = self.save(&run.owner, &mut u, true, Some(&intent)).await {
                    self.abandon(&run.owner).await;
                    return Err(e);
                }
            } else {
                self.resume_intent(actor, &u, "user.deprovision", &run.owner)
                    .await?;
            }
            return self.drive(&mut run, u).await.map(|o| o.user);
        }
    }
}
