//! Key rotation: a new key with the same scopes replaces the current one; the old key is
//! deleted at once or after a grace period kept in the row; never three keys.

use tokio::time::Instant;

use crate::error::DomainError;
use crate::ids::{ExternalId, TenantId};
use crate::model::{Actor, Step, TenantStatus, UserStatus};

use super::Provisioner;
use super::idempotency::IdempotencyTicket;
use super::steps::{Fail, lease_lost};
use super::users::{MAX_GRACE_SECONDS, Provisioned, check_deadline, lease_live, lease_owner};

/// Who asks for a rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Background {
    /// A caller who receives the new secret.
    No,
    /// The service (a key-age policy, a tenant-wide rotation): the new secret reaches no one
    /// (recorded as undelivered), and only a key created before this instant is replaced.
    KeysBefore(crate::model::Timestamp),
}

impl Provisioner {
    /// Replaces an active user's key with a new one of the same scopes. The old key is deleted
    /// upstream at once, or once `grace_seconds` have passed (kept in the row, so a rotation
    /// finished by recovery or another request keeps it). While a key replaced earlier is still
    /// in its grace period the rotation is refused, unless `revoke_previous` says to delete that
    /// key first: never three keys.
    pub async fn rotate_key(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        external_id: &ExternalId,
        grace_seconds: u32,
        revoke_previous: bool,
    ) -> Result<Provisioned, DomainError> {
        self.rotate_key_with(
            actor,
            tenant_id,
            external_id,
            grace_seconds,
            revoke_previous,
            None,
            Background::No,
        )
        .await
    }

    /// [`Provisioner::rotate_key`], binding an `Idempotency-Key` (`keyed`) to the rotation it
    /// starts, in the intent's transaction (service::idempotency).
    pub(super) async fn rotate_key_with(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        external_id: &ExternalId,
        grace_seconds: u32,
        revoke_previous: bool,
        keyed: Option<&IdempotencyTicket>,
        background: Background,
    ) -> Result<Provisioned, DomainError> {
        let (delivers, keys_before) = match background {
            Background::No => (true, None),
            Background::KeysBefore(t) => (false, Some(t)),
        };
        if grace_seconds > MAX_GRACE_SECONDS {
            return Err(DomainError::Validation(format!(
                "grace_seconds must be 0-{MAX_GRACE_SECONDS}"
            )));
        }
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
            // A background rotation replaces only a key older than it asks for: a key rotated
            // meanwhile (by anyone, or by an earlier run of this one) is left alone.
            if let Some(before) = keys_before
                && user.status == UserStatus::Active
                && user.key.as_ref().is_some_and(|k| k.created_at >= before)
            {
                return Ok(Provisioned {
                    user,
                    secret: None,
                    created: false,
                });
            }
            if !matches!(user.status, UserStatus::Active | UserStatus::Rotating) {
                return Err(DomainError::Conflict(format!(
                    "user is {}; only an active user's key can be rotated",
                    user.status
                )));
            }
            if user.status == UserStatus::Active
                && let Some(old) = &user.retired_key
                && old.delete_after > self.clock.now()
                && !revoke_previous
            {
                return Err(DomainError::Conflict(format!(
                    "a previously replaced key is still in its grace period (until {}); \
                     send \"revoke_previous\": true to delete it and rotate",
                    old.delete_after
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )));
            }
            // Taken on the row just read: if it changed meanwhile, look again.
            let Some(mut u) = self.acquire(&user).await? else {
                continue;
            };
            let owner = lease_owner(&u);
            if u.status == UserStatus::Rotating {
                // Finish the stalled rotation first (with the grace its caller asked for);
                // its new key reached no one, so it is recorded as undelivered.
                let mut run = self.run(&tenant, actor, owner, true, "user.recover", false)?;
                self.resume_intent(actor, &u, "user.recover", &run.owner)
                    .await?;
                self.drive(&mut run, u).await?;
                continue;
            }
            let mut run = self.run(&tenant, actor, owner, false, "user.rotate_key", delivers)?;
            // Never more than two keys: a key still recorded as replaced goes first, with the
            // rotation's intent on record before it is deleted (audit fails closed).
            let intent = self.intent_event(actor, &u, "user.rotate_key");
            let mut intent_written = false;
            if let Some(old) = u.retired_key.clone() {
                if let Err(e) = self.store.append_audit(&intent).await {
                    self.abandon(&run.owner).await;
                    return Err(e.into());
                }
                intent_written = true;
                match self.delete_retired(&run, &u, &old).await {
                    Ok(()) => u.retired_key = None,
                    Err(Fail::LeaseLost) => {
                        self.abandon(&run.owner).await;
                        return Err(lease_lost());
                    }
                    Err(f) => {
                        let m = f.to_string();
                        u.last_error = Some(format!("deleting the previously replaced key: {m}"));
                        self.save(&run.owner, &mut u, false, None).await?;
                        return Err(DomainError::UpstreamUnavailable(m));
                    }
                }
            }
            // A sweep still due covers every generation's marker: keep it due after rotating.
            if u.step == Step::SweepKeys {
                run.look_first = true;
            }
            u.status = UserStatus::Rotating;
            u.step = Step::CreateKey;
            u.generation += 1;
            u.rotation_grace_secs = i64::from(grace_seconds);
            let intent = (!intent_written).then_some(&intent);
            if let Err(e) = self.save_intent(&run.owner, &mut u, intent, keyed).await {
                self.abandon(&run.owner).await;
                return Err(e);
            }
            let out = self.drive(&mut run, u).await?;
            let secret = out.secret.ok_or_else(|| {
                DomainError::Internal("rotation finished without a new key".into())
            })?;
            return Ok(Provisioned {
                user: out.user,
                secret: Some(secret),
                created: true,
            });
        }
    }
}
