//! Recovery: finishes or undoes operations whose lease expired (a crashed process, a lost
//! replica) or whose last attempt failed, and deletes replaced keys whose grace period ended.
//! Failing work is retried with capped exponential backoff, indefinitely, and stays visible in
//! the user's `last_error` and `attempts`.

use std::collections::BTreeMap;

use crate::error::DomainError;
use crate::ids::TenantId;
use crate::model::{Actor, Lease, Step, Tenant, User, UserStatus};

use super::Provisioner;
use super::steps::{Fail, lease_lost, user_target};
use super::users::lease_owner;

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
    /// Times the store failed to hand out due work (the pass ended there).
    pub claim_errors: usize,
}

impl Provisioner {
    /// One pass over at most `limit` users with work due. Safe to run on several replicas at
    /// once: each user is claimed with its lease (PostgreSQL skips rows another replica is
    /// claiming), and worked on only under it. One bad row (its tenant's credential will not
    /// open, its save fails) is backed off with the reason in `last_error` and the pass goes
    /// on; only a store that cannot even claim stops the pass.
    pub async fn run_recovery_pass(&self, limit: u32) -> Result<RecoveryReport, DomainError> {
        let actor = Actor::system("recovery");
        self.purge_idempotency_records().await;
        self.purge_webhook_history().await;
        let mut tenants: BTreeMap<TenantId, Option<Tenant>> = BTreeMap::new();
        let mut report = RecoveryReport::default();
        for _ in 0..limit {
            let lease = Lease {
                owner: self.new_owner(),
                expires_at: self.clock.now() + self.lease_ttl(),
            };
            let user = match self
                .store
                .claim_due_user(&lease, self.lease_horizon())
                .await
            {
                Ok(Some(user)) => user,
                Ok(None) => break,
                // The store failed to hand out work: end this pass with what it did; the next
                // pass claims again.
                Err(e) => {
                    tracing::warn!(error.message = %e, "recovery could not claim work; ending the pass");
                    report.claim_errors += 1;
                    break;
                }
            };
            report.examined += 1;
            let (tenant_id, external_id) = (user.tenant_id.clone(), user.external_id.clone());
            let attempts = user.attempts;
            let tenant = match tenants.get(&tenant_id) {
                Some(t) => t.clone(),
                None => {
                    let t = self.store.get_tenant(&tenant_id).await.ok().flatten();
                    tenants.insert(tenant_id.clone(), t.clone());
                    t
                }
            };
            let result = match tenant {
                Some(tenant) => self.recover_one(&actor, &tenant, user, &mut report).await,
                None => Err(DomainError::Internal("its tenant could not be read".into())),
            };
            if let Err(e) = result {
                // The state machine backs off what it records as failed; anything else (a
                // credential that will not open, a failed write, a lost lease, a busy
                // database) is backed off here, so the next claim does not take it again.
                // The store skips a row already backed off or held by someone else.
                report.failed += 1;
                let now = self.clock.now();
                let next = now + self.backoff(attempts + 1);
                let why = format!("recovery could not finish this user: {e}");
                tracing::warn!(tenant.id = %tenant_id, error.message = %e, "recovery step failed; backing the user off");
                match self
                    .store
                    .defer_user(
                        &tenant_id,
                        &external_id,
                        &lease.owner,
                        self.lease_horizon(),
                        next,
                        &why,
                    )
                    .await
                {
                    Ok(()) | Err(crate::StoreError::Stale) => {}
                    Err(e2) => {
                        tracing::warn!(tenant.id = %tenant_id, error.message = %e2, "could not back a user off; its lease expires on its own");
                    }
                }
            }
        }
        Ok(report)
    }

    /// Works on one claimed user: finishes its pending step, or deletes a retired key whose
    /// grace period ended.
    async fn recover_one(
        &self,
        actor: &Actor,
        tenant: &Tenant,
        mut u: User,
        report: &mut RecoveryReport,
    ) -> Result<(), DomainError> {
        let owner = lease_owner(&u);
        let mut run = self.run(tenant, actor, owner, true, "user.recover", false)?;
        if u.step != Step::Idle {
            self.drive(&mut run, u).await?;
            report.completed += 1;
            return Ok(());
        }
        let now = self.clock.now();
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
                    u.next_attempt_at = None;
                    report.retired_keys_deleted += 1;
                    Some(self.audit(
                        actor,
                        Some(&tenant.id),
                        "user.retired_key_deleted",
                        user_target(&u),
                        "success",
                    ))
                }
                Err(Fail::LeaseLost) => return Err(lease_lost()),
                Err(m) => {
                    u.attempts += 1;
                    u.next_attempt_at = Some(now + self.backoff(u.attempts));
                    u.last_error = Some(format!("deleting the replaced key: {m}"));
                    report.failed += 1;
                    None
                }
            },
            None => None,
        };
        self.save(&run.owner, &mut u, false, audit.as_ref()).await
    }
}
