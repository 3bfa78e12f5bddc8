//! Recovery: finishes or undoes operations whose lease expired (a crashed process, a lost
//! replica) or whose last attempt failed, and deletes replaced keys whose grace period ended.
//! Failing work is retried with capped exponential backoff, indefinitely, and stays visible in
//! the user's `last_error` and `attempts`.

use crate::error::DomainError;
use crate::model::{Actor, Step, UserStatus};

use super::Provisioner;
use super::steps::user_target;

/// What one recovery pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Users with work due.
    pub examined: usize,
    /// Operations finished (or undone) in this pass.
    pub completed: usize,
    /// Operations that failed again (retried later with backoff).
    pub failed: usize,
    /// Replaced keys deleted after their grace period.
    pub retired_keys_deleted: usize,
}

impl Provisioner {
    /// One pass over at most `limit` users with work due. Safe to run on several replicas at
    /// once: each user is worked on only under its lease.
    pub async fn run_recovery_pass(&self, limit: u32) -> Result<RecoveryReport, DomainError> {
        let now = self.clock.now();
        let due = self.store.due_users(now, limit).await?;
        let actor = Actor::system("recovery");
        let mut report = RecoveryReport {
            examined: due.len(),
            ..RecoveryReport::default()
        };
        for (tenant_id, external_id) in due {
            let (Some(tenant), Some(user)) = (
                self.store.get_tenant(&tenant_id).await?,
                self.store.get_user(&tenant_id, &external_id).await?,
            ) else {
                continue;
            };
            let Some(mut u) = self.acquire(&user).await? else {
                continue;
            };
            let owner = u
                .lease
                .as_ref()
                .map(|l| l.owner.clone())
                .unwrap_or_default();
            let mut run = self.run(&tenant, &actor, owner, true, 0, "user.recover")?;
            if u.step != Step::Idle {
                match self.drive(&mut run, u).await {
                    Ok(_) => report.completed += 1,
                    Err(e) => {
                        report.failed += 1;
                        tracing::warn!(tenant.id = %tenant_id, error.message = %e, "recovery step failed; will retry");
                    }
                }
                continue;
            }
            let due_key = u.retired_key.clone().filter(|k| {
                u.status == UserStatus::Active
                    && k.delete_after <= now
                    && u.key
                        .as_ref()
                        .is_none_or(|cur| cur.fingerprint != k.fingerprint)
            });
            let audit = match due_key {
                Some(old) => match self.delete_retired(&run, &u, &old).await {
                    Ok(()) => {
                        u.retired_key = None;
                        u.last_error = None;
                        u.attempts = 0;
                        report.retired_keys_deleted += 1;
                        Some(self.audit(
                            &actor,
                            Some(&tenant_id),
                            "user.retired_key_deleted",
                            user_target(&u),
                            "success",
                        ))
                    }
                    Err(m) => {
                        u.attempts += 1;
                        let next = now + self.backoff(u.attempts);
                        if let Some(k) = u.retired_key.as_mut() {
                            k.delete_after = next;
                        }
                        u.last_error = Some(format!("deleting the replaced key: {m}"));
                        report.failed += 1;
                        None
                    }
                },
                None => None,
            };
            self.save(&run.owner, &mut u, false, audit.as_ref()).await?;
        }
        Ok(report)
    }
}
