//! Reconcile repairs: each one under the lease of the user concerned, re-checked first, fenced
//! like every call of the state machine, and audited (see the parent module).

use crate::error::{DomainError, UpstreamError};
use crate::ids::AppId;
use crate::marker::app_has_marker;
use crate::model::{Actor, Step, Tenant, UpstreamAccount, User, UserStatus};

use super::super::Provisioner;
use super::super::steps::user_target;
use super::super::users::lease_owner;
use super::{Fix, UserWork, assess, holds_app, unchanged};

impl Provisioner {
    /// Deletes one orphan app and audits it: under the lease of the user whose row names it (if
    /// any), and only if that user, re-read under the lease, still holds no app. Only an audit
    /// failure is an `Err` (the run stops: no change goes unaudited); anything else that fails
    /// or no longer applies is a repair error.
    pub(super) async fn repair_orphan_app(
        &self,
        actor: &Actor,
        tenant: &Tenant,
        account: &UpstreamAccount,
        app_id: &str,
        owners: &[User],
        errors: &mut Vec<String>,
    ) -> Result<(), DomainError> {
        let target = format!("apps/{app_id}");
        let Ok(id) = AppId::parse(app_id) else {
            let result = Err("not a valid app id; delete it by hand".to_owned());
            return self
                .audit_repair(
                    actor,
                    tenant,
                    "reconcile.delete_orphan_app",
                    target,
                    result,
                    errors,
                )
                .await;
        };
        let Some(owner) = owners.iter().find(|u| u.app_id == id) else {
            let result = self.delete_app_upstream(account, &id).await;
            return self
                .audit_repair(
                    actor,
                    tenant,
                    "reconcile.delete_orphan_app",
                    target,
                    result,
                    errors,
                )
                .await;
        };
        let who = user_target(owner);
        let mut u = match self.acquire(owner).await {
            Ok(Some(u)) => u,
            Ok(None) => {
                errors.push(format!(
                    "{target}: another operation holds {who}; not deleted, run reconcile again"
                ));
                return Ok(());
            }
            Err(e) => {
                errors.push(format!("{target}: {e}"));
                return Ok(());
            }
        };
        let lease = lease_owner(&u);
        if u.app_id == id && (u.step != Step::Idle || holds_app(&u)) {
            errors.push(format!(
                "{target}: {who} records it now ({}); not deleted",
                u.status
            ));
            if let Err(e) = self.save(&lease, &mut u, false, None).await {
                errors.push(format!("{who}: releasing the lease: {e}"));
            }
            return Ok(());
        }
        // Under the owner's lease, fenced like every call of the state machine: a repair that
        // stalled past its lease never deletes an app a PUT has taken over meanwhile.
        let result = match self
            .fenced_as(&lease, &u, self.upstream.delete_app(account, &id))
            .await
        {
            Ok(Ok(()) | Err(UpstreamError::NotFound)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "{who} was taken over while the app was being deleted; run reconcile again"
            )),
        };
        if let Err(e) = self.save(&lease, &mut u, false, None).await {
            errors.push(format!("{who}: releasing the lease: {e}"));
        }
        self.audit_repair(
            actor,
            tenant,
            "reconcile.delete_orphan_app",
            target,
            result,
            errors,
        )
        .await
    }

    /// Deletes an app upstream; "not found" is done.
    async fn delete_app_upstream(
        &self,
        account: &UpstreamAccount,
        id: &AppId,
    ) -> Result<(), String> {
        match self.upstream.delete_app(account, id).await {
            Ok(()) | Err(UpstreamError::NotFound) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Repairs one active user under its lease: re-reads the row and lists its app's keys again,
    /// and only if the scanned finding still holds deletes the orphan keys on its app (and the
    /// unmarked ones when the app, read again, carries the tenant's marker), then applies its
    /// fix through the state machine. Only an audit failure on an orphan-key
    /// deletion is an `Err`; everything else that fails is a repair error.
    pub(super) async fn repair_user(
        &self,
        actor: &Actor,
        tenant: &Tenant,
        work: UserWork,
        errors: &mut Vec<String>,
    ) -> Result<(), DomainError> {
        let target = user_target(&work.user);
        let Some(mut u) = (match self.acquire(&work.user).await {
            Ok(u) => u,
            Err(e) => {
                errors.push(format!("{target}: {e}"));
                return Ok(());
            }
        }) else {
            errors.push(format!(
                "{target}: another operation holds this user; not repaired, run reconcile again"
            ));
            return Ok(());
        };
        let owner = lease_owner(&u);
        let action = work.fix.map_or("reconcile.delete_orphan_key", Fix::action);
        let mut run = match self.run(tenant, actor, owner.clone(), false, action, false) {
            Ok(run) => run,
            Err(e) => {
                errors.push(format!("{target}: {e}"));
                self.release(&owner, &mut u, &target, errors).await;
                return Ok(());
            }
        };
        // The scan is a snapshot: act only on what still holds now that we hold the lease.
        let found = if unchanged(&work.user, &u) {
            match self
                .fenced(
                    &run,
                    &u,
                    self.upstream.list_app_keys(&run.account, &u.app_id),
                )
                .await
            {
                Ok(Ok(keys)) => Ok(assess(&u, Some(keys))),
                Ok(Err(UpstreamError::NotFound)) => Ok(assess(&u, None)),
                Ok(Err(e)) => Err(format!("listing the app's keys again: {e}")),
                Err(_) => {
                    self.abandon(&run.owner).await;
                    errors.push(format!(
                        "{target}: another operation took the user over; not repaired, run reconcile again"
                    ));
                    return Ok(());
                }
            }
        } else {
            Err("changed while reconciling; not repaired, run reconcile again".to_owned())
        };
        let found = match found {
            Ok(found) if found.fix == work.fix => found,
            Ok(_) => {
                errors.push(format!(
                    "{target}: the finding no longer holds; not repaired, run reconcile again"
                ));
                self.release(&run.owner, &mut u, &target, errors).await;
                return Ok(());
            }
            Err(m) => {
                errors.push(format!("{target}: {m}"));
                self.release(&run.owner, &mut u, &target, errors).await;
                return Ok(());
            }
        };

        // Keys that carry our marker for this app are ours: neither recorded by the row we hold
        // nor anyone else's. An unmarked key (minted with the app, or made by hand) goes only if
        // the scan reported it as removable and the app carries this user's marker, read again
        // now under the lease; an unmarked key that appeared since the scan is left for the next
        // report.
        let reported = |k: &super::FoundKey| !k.marked && work.unmarked.contains(&k.fingerprint);
        let managed = if found.orphans.iter().any(reported) {
            match self
                .fenced(&run, &u, self.upstream.get_app(&run.account, &u.app_id))
                .await
            {
                Ok(Ok(app)) => {
                    let managed = app_has_marker(&app.metadata, &u.tenant_id, &u.external_id);
                    if !managed {
                        errors.push(format!(
                            "{target}: its app no longer carries this user's marker; unmarked keys left alone"
                        ));
                    }
                    managed
                }
                Ok(Err(e)) => {
                    errors.push(format!(
                        "{target}: reading the app before deleting its unmarked keys: {e}"
                    ));
                    false
                }
                Err(_) => {
                    self.abandon(&run.owner).await;
                    errors.push(format!(
                        "{target}: another operation took the user over; not repaired, run reconcile again"
                    ));
                    return Ok(());
                }
            }
        } else {
            false
        };
        for key in found
            .orphans
            .iter()
            .filter(|k| k.marked || (managed && reported(k) && k.other_apps.is_empty()))
        {
            let key_target = format!("apps/{}/keys/{}", u.app_id, key.short);
            let action = if key.marked {
                "reconcile.delete_orphan_key"
            } else {
                "reconcile.delete_unmarked_key"
            };
            let result = match self
                .fenced(
                    &run,
                    &u,
                    self.upstream.delete_key(&run.account, &key.secret),
                )
                .await
            {
                Ok(Ok(()) | Err(UpstreamError::NotFound)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => {
                    // The delete may have been sent: audited as unknown, and the run goes on.
                    self.abandon(&run.owner).await;
                    let m = "another operation took the user over during the delete (the key may be gone); run reconcile again";
                    self.audit_repair(actor, tenant, action, key_target, Err(m.to_owned()), errors)
                        .await?;
                    return Ok(());
                }
            };
            if let Err(e) = self
                .audit_repair(actor, tenant, action, key_target, result, errors)
                .await
            {
                let _ = self.save(&run.owner, &mut u, false, None).await;
                return Err(e);
            }
        }

        let Some(fix) = found.fix else {
            self.release(&run.owner, &mut u, &target, errors).await;
            return Ok(());
        };
        match fix {
            // The app is gone (listed again under the lease), and its keys with it. The recorded
            // key stays current until the new one is recorded, then is retired with no grace and
            // deleted ("not found"): a permanent failure leaves the user active and reported,
            // never without a recorded key.
            Fix::RecreateApp => {
                u.status = UserStatus::Rotating;
                u.step = Step::CreateApp;
                u.retired_key = None;
            }
            // The key is gone (listed again under the lease). Not `Provisioning`: a permanent
            // failure there would undo (delete) the app, and with it the user's data. A key in
            // its grace period stays recorded as retired (it is live upstream).
            Fix::RecreateKey => {
                u.status = UserStatus::Rotating;
                u.step = Step::CreateKey;
                u.key = None;
            }
            Fix::ReplaceKey => {
                // Never more than two keys: a key still in its grace period goes first (as in
                // rotation), then the drifted key is replaced, retired with no grace and deleted.
                if let Some(old) = u.retired_key.clone() {
                    if let Err(m) = self.delete_retired(&run, &u, &old).await {
                        if matches!(m, super::super::steps::Fail::LeaseLost) {
                            // The delete may have been sent: audited as unknown; the run goes on.
                            self.abandon(&run.owner).await;
                            let m = "another operation took the user over while its key in grace was being deleted (it may be gone); run reconcile again";
                            self.audit_repair(
                                actor,
                                tenant,
                                fix.action(),
                                target.clone(),
                                Err(m.to_owned()),
                                errors,
                            )
                            .await?;
                            return Ok(());
                        }
                        let released = self.save(&run.owner, &mut u, false, None).await;
                        let reason = format!("deleting the replaced key: {m}");
                        self.audit_repair(
                            actor,
                            tenant,
                            fix.action(),
                            target.clone(),
                            Err(reason),
                            errors,
                        )
                        .await?;
                        if let Err(e) = released {
                            errors.push(format!("{target}: releasing the lease: {e}"));
                        }
                        return Ok(());
                    }
                    u.retired_key = None;
                }
                u.status = UserStatus::Rotating;
                u.step = Step::CreateKey;
            }
        }
        // A repair replaces keys at once: no grace period.
        u.rotation_grace_secs = 0;
        u.generation += 1;
        u.attempts = 0;
        u.last_error = None;
        u.next_attempt_at = None;
        // The intent first; the drive's final write records the result with its audit event.
        if let Err(e) = self.save(&run.owner, &mut u, true, None).await {
            errors.push(format!("{target}: {e}"));
            return Ok(());
        }
        // The new secret (if any) is not returned: it is read with reveal-key, which is audited.
        if let Err(e) = self.drive(&mut run, u).await {
            self.audit_repair(
                actor,
                tenant,
                fix.action(),
                target,
                Err(e.to_string()),
                errors,
            )
            .await?;
        }
        Ok(())
    }

    /// Releases a lease taken for a repair, changing nothing else.
    async fn release(&self, owner: &str, user: &mut User, target: &str, errors: &mut Vec<String>) {
        if let Err(e) = self.save(owner, user, false, None).await {
            errors.push(format!("{target}: releasing the lease: {e}"));
        }
    }

    /// Appends the audit event of a repair (`success` or `failure: <reason>`) and records a
    /// failure in `errors`.
    async fn audit_repair(
        &self,
        actor: &Actor,
        tenant: &Tenant,
        action: &str,
        target: String,
        result: Result<(), String>,
        errors: &mut Vec<String>,
    ) -> Result<(), DomainError> {
        let outcome = match &result {
            Ok(()) => "success".to_owned(),
            Err(m) => format!("failure: {m}"),
        };
        if let Err(m) = result {
            errors.push(format!("{target}: {m}"));
        }
        let audit = self.audit(actor, Some(&tenant.id), action, target, &outcome);
        self.store.append_audit(&audit).await?;
        Ok(())
    }
}
