//! The provisioning state machine (docs/design.md, "Provisioning, step by step").
//!
//! A user's row holds the intent: `status` says which operation runs, `step` which upstream call
//! comes next, `generation` which key marker to use. Every upstream call is preceded by a write of
//! the step it belongs to, under a lease. Each step is safe to repeat: app ids are deterministic
//! and apps carry a marker in their metadata; keys carry `prov:<app>:g<generation>` in their
//! description and are looked for before a create whenever an earlier attempt may have reached
//! the upstream. "Not found" on delete is done.

use crate::error::{DomainError, StoreError, UpstreamError};
use crate::marker::{app_has_marker, app_marker, key_description, key_generation};
use crate::model::{
    Actor, Lease, RetiredKey, Step, StoredKey, Tenant, UpstreamAccount, User, UserStatus,
};
use crate::ports::{NewApp, NewKey, UpstreamKey};
use crate::secret::KeySecret;
use crate::webhooks::{EventType, OutboxEvent};

use super::fence::Fenced;
use super::{KeySlot, Provisioner, key_aad};

/// Upper bound on steps per run: a full provisioning is three (app, purge, key), a
/// deprovisioning two, with room for a re-create after an app vanished and a look-up after an
/// ambiguous create.
const MAX_STEPS: usize = 10;

/// One operation in progress on one user, holding its lease.
pub(super) struct Run<'a> {
    pub tenant: &'a Tenant,
    pub account: UpstreamAccount,
    pub owner: String,
    pub actor: &'a Actor,
    /// Whether an earlier attempt at the current key generation may have reached the upstream.
    pub look_first: bool,
    /// Whether this run created the user's app or found this user's marker on it: a purge of
    /// its unmarked keys needs no new proof (a run resumed at the purge looks again first).
    pub app_proven: bool,
    /// The audit action recorded when the run succeeds.
    pub action: &'static str,
    /// Whether a key this run creates is answered to its caller. When not (recovery, or a
    /// request finishing another's operation), the row records the secret as undelivered.
    pub delivers: bool,
}

/// The end of a run: the row as saved, and the new key's secret if one was created.
pub(super) struct Outcome {
    pub user: User,
    pub secret: Option<KeySecret>,
}

/// How a step failed.
pub(super) enum Fail {
    /// Worth retrying later (unavailable, throttled, a race).
    Transient(String),
    /// Nothing sent for want of the account's budget: retried soon, not backed off.
    Busy(String),
    /// Will not succeed by repeating (rejected, unauthorized, a foreign app holding the id).
    Permanent(DomainError),
    /// The lease was taken over (or could have lapsed) before or during an upstream call: stop
    /// without writing the row; its new holder resumes the operation.
    LeaseLost,
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fail::Transient(m) | Fail::Busy(m) => f.write_str(m),
            Fail::Permanent(e) => write!(f, "{e}"),
            Fail::LeaseLost => f.write_str("the lease was taken over"),
        }
    }
}

impl From<Fenced> for Fail {
    fn from(_: Fenced) -> Self {
        Fail::LeaseLost
    }
}

impl From<UpstreamError> for Fail {
    fn from(e: UpstreamError) -> Self {
        match e {
            UpstreamError::Unavailable { message, .. } => Fail::Transient(message),
            UpstreamError::Busy(message) => Fail::Busy(message),
            UpstreamError::NotFound => {
                Fail::Transient("resource vanished upstream during the operation".into())
            }
            UpstreamError::AlreadyExists => {
                Fail::Transient("upstream reported a conflict; will look again".into())
            }
            UpstreamError::Unauthorized(m) => Fail::Permanent(DomainError::UpstreamRejected(
                format!("{CREDENTIAL_REJECTED}: {m}"),
            )),
            UpstreamError::Rejected(m) => Fail::Permanent(DomainError::UpstreamRejected(m)),
        }
    }
}

impl Provisioner {
    /// Runs the user's pending steps until it is idle or a step fails. The run holds the lease;
    /// the final write releases it.
    pub(super) async fn drive(
        &self,
        run: &mut Run<'_>,
        user: User,
    ) -> Result<Outcome, DomainError> {
        let out = self.drive_steps(run, user).await;
        if out.is_err() {
            self.abandon(&run.owner).await;
        }
        out
    }

    /// Gives the row back after an operation ended in an error that may have left its lease
    /// held (a failed write, a lost lease): best effort, so a retry or recovery resumes at once
    /// rather than after the lease expires. Releases nothing another holder took.
    pub(super) async fn abandon(&self, owner: &str) {
        if let Err(e) = self.store.release_leases(owner).await {
            tracing::debug!(error.message = %e, "could not release a lease after an error");
        }
    }

    async fn drive_steps(&self, run: &mut Run<'_>, mut user: User) -> Result<Outcome, DomainError> {
        // The operation's status, for the event its end writes.
        let started_as = user.status;
        let mut secret = None;
        // Whether an earlier create of the key just settled may still land upstream.
        let mut sweep_later = false;
        // Whether an app create may still land after the app was deleted.
        let mut sweep_app_later = false;
        for _ in 0..MAX_STEPS {
            let result = match user.step {
                Step::Idle => break,
                Step::CreateApp => match self.step_create_app(run, &user).await {
                    Ok(()) => {
                        run.app_proven = true;
                        user.step = if self.purge_after_create(run).await {
                            Step::PurgeKeys
                        } else {
                            Step::CreateKey
                        };
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
                Step::PurgeKeys => match self.step_purge_keys(run, &user).await {
                    Ok(()) => {
                        user.step = Step::CreateKey;
                        Ok(())
                    }
                    Err(Fail::Transient(m)) if m == VANISHED => {
                        user.step = Step::CreateApp;
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
                Step::CreateKey => match self.step_create_key(run, &user).await {
                    Ok(Some(key)) => {
                        sweep_later |= run.look_first;
                        self.finish_key(&mut user, &key);
                        secret = Some(key.secret);
                        Ok(())
                    }
                    // An ambiguous create: look for its marker on the next pass.
                    Ok(None) => Ok(()),
                    Err(Fail::Transient(m)) if m == VANISHED => {
                        user.step = Step::CreateApp;
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
                // A suspension: every key goes, the app stays.
                Step::DeleteKey if user.status == UserStatus::Suspending => {
                    self.step_revoke_keys(run, &user).await.map(|()| {
                        // A key create that got no answer before the suspension may land
                        // after this listing: look once more when it must have.
                        sweep_later = true;
                        user.status = UserStatus::Suspended;
                        user.step = Step::Idle;
                        user.key = None;
                        user.retired_key = None;
                    })
                }
                Step::DeleteKey => self.step_delete_keys(run, &user).await.map(|()| {
                    user.step = Step::DeleteApp;
                }),
                Step::SweepKeys => self.step_sweep_keys(run, &user).await.map(|()| {
                    user.step = Step::Idle;
                }),
                Step::SweepApp => self.step_delete_app(run, &user, true).await.map(|()| {
                    user.step = Step::Idle;
                }),
                Step::DeleteApp | Step::UndoApp => {
                    let undo = user.step == Step::UndoApp;
                    // A create of this app that got no answer (this run's, or an earlier
                    // attempt's that a later one overtook) may still land after this delete:
                    // look once more when it must have (one get_app per deletion).
                    sweep_app_later = true;
                    self.step_delete_app(run, &user, undo).await.map(|()| {
                        if user.step == Step::DeleteApp {
                            user.status = UserStatus::Deleted;
                        }
                        user.step = Step::Idle;
                        user.key = None;
                        user.retired_key = None;
                    })
                }
            };
            match result {
                Ok(()) => {
                    user.last_error = None;
                    user.attempts = 0;
                    user.next_attempt_at = None;
                    if user.step == Step::Idle {
                        break;
                    }
                    // Record the step reached (the intent of the next one) and renew the lease.
                    self.save(&run.owner, &mut user, true, None).await?;
                }
                Err(fail) => return self.on_failure(run, user, fail).await,
            }
        }
        if user.step != Step::Idle {
            return self
                .on_failure(
                    run,
                    user,
                    Fail::Transient("too many steps in one run".into()),
                )
                .await;
        }
        // A create that timed out (or was cut off) may still be processed upstream after the
        // look-up that settled the key: look again once it must have landed. Recorded before
        // anything else is written, so no later failure can lose it.
        if sweep_later && matches!(user.status, UserStatus::Active | UserStatus::Suspended) {
            user.step = Step::SweepKeys;
            user.next_attempt_at = Some(self.clock.now() + self.backoff(1));
        }
        if sweep_app_later && matches!(user.status, UserStatus::Deleted | UserStatus::Failed) {
            user.step = Step::SweepApp;
            user.next_attempt_at = Some(self.clock.now() + self.backoff(1));
        }
        // Rotation with no grace period (or one that ended while the rotation was resumed):
        // record the new key first (the old one stays recorded as retired, due now), then
        // delete the old key. If the delete fails or is cut off, recovery deletes it later.
        let kind = super::events::operation_event(started_as, user.status);
        // Whether the change's event is written yet (it rides on the first write that commits
        // the change: a crash after it must not lose the event).
        let mut event_written = false;
        if user.status == UserStatus::Active
            && let Some(old) = user.retired_key.clone()
            && old.delete_after <= self.clock.now()
        {
            // The new key is recorded here, before the old one is deleted: this write commits
            // the change, so it carries the change's event.
            let mut recorded = self.audit(
                run.actor,
                Some(&run.tenant.id),
                "user.key_recorded",
                user_target(&user),
                "success",
            );
            recorded
                .events
                .extend(kind.map(|k| self.user_event(k, &user)));
            event_written = kind.is_some();
            self.save(&run.owner, &mut user, true, Some(&recorded))
                .await?;
            match self.delete_retired(run, &user, &old).await {
                Ok(()) => user.retired_key = None,
                Err(Fail::LeaseLost) => return Err(lease_lost()),
                Err(Fail::Transient(m) | Fail::Busy(m)) => {
                    user.last_error = Some(format!("deleting the replaced key: {m}"));
                }
                Err(Fail::Permanent(e)) => {
                    user.last_error = Some(format!("deleting the replaced key: {e}"));
                }
            }
        }
        if secret.is_some() {
            // The answer of this final write carries the secret when the run delivers it.
            user.secret_pending = !run.delivers;
        }
        let mut audit = self.audit(
            run.actor,
            Some(&run.tenant.id),
            run.action,
            user_target(&user),
            "success",
        );
        if !event_written {
            audit.events.extend(kind.map(|k| self.user_event(k, &user)));
        }
        self.save(&run.owner, &mut user, false, Some(&audit))
            .await?;
        Ok(Outcome { user, secret })
    }

    async fn step_create_app(&self, run: &Run<'_>, user: &User) -> Result<(), Fail> {
        let app = NewApp {
            id: user.app_id.clone(),
            description: describe(
                &run.tenant.app_defaults.description,
                user.external_id.as_str(),
            ),
            default_workflow: run.tenant.app_defaults.default_workflow.clone(),
            metadata: app_marker(&user.tenant_id, &user.external_id),
        };
        match self
            .fenced(run, user, self.upstream.create_app(&run.account, &app))
            .await?
        {
            Ok(_) => Ok(()),
            Err(UpstreamError::AlreadyExists) => {
                // Ours from an earlier attempt (adopt it), or someone else's (never adopt).
                let existing = self
                    .fenced(run, user, self.upstream.get_app(&run.account, &user.app_id))
                    .await??;
                if app_has_marker(&existing.metadata, &user.tenant_id, &user.external_id) {
                    Ok(())
                } else {
                    Err(Fail::Permanent(DomainError::Conflict(format!(
                        "upstream app id {} is taken by an app this service did not create for this user",
                        user.app_id
                    ))))
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `Ok(None)`: the create was ambiguous; the next pass looks for the key's marker.
    async fn step_create_key(
        &self,
        run: &mut Run<'_>,
        user: &User,
    ) -> Result<Option<UpstreamKey>, Fail> {
        let marker = key_description(&user.app_id, user.generation);
        if run.look_first {
            let keys = match self
                .fenced(
                    run,
                    user,
                    self.upstream.list_app_keys(&run.account, &user.app_id),
                )
                .await?
            {
                Err(UpstreamError::NotFound) => return Err(Fail::Transient(VANISHED.into())),
                other => other?,
            };
            let mut ours = keys.into_iter().filter(|k| k.description == marker);
            if let Some(found) = ours.next() {
                // More than one with this generation's marker: keep the first, delete the rest
                // (a failure here is caught by the sweep that an ambiguous create schedules).
                for extra in ours {
                    let _ = self
                        .fenced(
                            run,
                            user,
                            self.upstream.delete_key(&run.account, &extra.secret),
                        )
                        .await?;
                }
                return Ok(Some(found));
            }
        }
        let new = NewKey {
            app_id: user.app_id.clone(),
            description: marker,
            scopes: user.scopes.clone(),
        };
        let created = match self
            .fenced(run, user, self.upstream.create_key(&run.account, &new))
            .await
        {
            Ok(r) => r,
            Err(lost) => {
                // The create may have been sent: whoever resumes looks for its marker first.
                run.look_first = true;
                return Err(lost.into());
            }
        };
        match created {
            Ok(k) => Ok(Some(k)),
            Err(e) if e.is_ambiguous() && !run.look_first => {
                run.look_first = true;
                Ok(None)
            }
            Err(UpstreamError::NotFound) => Err(Fail::Transient(VANISHED.into())),
            Err(e) => {
                if e.is_ambiguous() {
                    run.look_first = true;
                }
                Err(e.into())
            }
        }
    }

    fn finish_key(&self, user: &mut User, key: &UpstreamKey) {
        let now = self.clock.now();
        let stored = StoredKey {
            sealed: self.sealer.seal(
                key.secret.expose(),
                &key_aad(&user.tenant_id, &user.app_id, KeySlot::Current),
            ),
            fingerprint: key.secret.fingerprint(),
            scopes: user.scopes.clone(),
            generation: user.generation,
            created_at: now,
        };
        if user.status == UserStatus::Rotating
            && let Some(old) = user.key.take()
        {
            user.retired_key = Some(RetiredKey {
                sealed: self.reseal_retired(user, old.sealed),
                fingerprint: old.fingerprint,
                delete_after: now + chrono::Duration::seconds(user.rotation_grace_secs),
            });
        }
        user.key = Some(stored);
        user.status = UserStatus::Active;
        user.step = Step::Idle;
        user.rotation_grace_secs = 0;
        // Undelivered until the run's final write: a failure after an earlier save (a grace-0
        // rotation saves before deleting the old key) must leave the secret for the next PUT.
        user.secret_pending = true;
    }

    async fn step_delete_keys(&self, run: &Run<'_>, user: &User) -> Result<(), Fail> {
        if let Some(old) = &user.retired_key {
            self.delete_retired(run, user, old).await?;
        }
        if let Some(key) = &user.key {
            let secret = self
                .open_key(user, &key.sealed, KeySlot::Current)
                .map_err(Fail::Permanent)?;
            match self
                .fenced(run, user, self.upstream.delete_key(&run.account, &secret))
                .await?
            {
                Ok(()) | Err(UpstreamError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// A suspension's step: deletes every key on the user's app that carries one of its
    /// markers (the recorded ones, and any create that got no answer and landed), and, when the
    /// app carries this user's marker, every key without a marker that reaches this app alone
    /// (a key the upstream minted with the app, or one made by hand): nothing may reach the
    /// app of a deactivated person. Needs no recorded secret (the listing names them), so a
    /// sealed value that will not open does not block it. A key that also reaches another app
    /// is not this app's to delete (the drift check reports it).
    async fn step_revoke_keys(&self, run: &Run<'_>, user: &User) -> Result<(), Fail> {
        let ours = match self
            .fenced(run, user, self.upstream.get_app(&run.account, &user.app_id))
            .await?
        {
            // No app, no keys.
            Err(UpstreamError::NotFound) => return Ok(()),
            Err(e) => return Err(e.into()),
            Ok(app) => app_has_marker(&app.metadata, &user.tenant_id, &user.external_id),
        };
        let keys = match self
            .fenced(
                run,
                user,
                self.upstream.list_app_keys(&run.account, &user.app_id),
            )
            .await?
        {
            Err(UpstreamError::NotFound) => return Ok(()),
            other => other?,
        };
        for k in keys {
            let marked = key_generation(&k.description, &user.app_id).is_some();
            if !(marked || (ours && super::purge::only_on(&k, &user.app_id))) {
                continue;
            }
            match self
                .fenced(run, user, self.upstream.delete_key(&run.account, &k.secret))
                .await?
            {
                Ok(()) | Err(UpstreamError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Deletes the keys on the user's app that carry one of its markers but are neither its
    /// current nor its retired key: late effects of creates that got no answer.
    async fn step_sweep_keys(&self, run: &Run<'_>, user: &User) -> Result<(), Fail> {
        let keys = match self
            .fenced(
                run,
                user,
                self.upstream.list_app_keys(&run.account, &user.app_id),
            )
            .await?
        {
            // No app, no keys (reconciliation reports the missing app).
            Err(UpstreamError::NotFound) => return Ok(()),
            other => other?,
        };
        let kept = [
            user.key.as_ref().map(|k| k.fingerprint.as_str()),
            user.retired_key.as_ref().map(|k| k.fingerprint.as_str()),
        ];
        for k in keys {
            if key_generation(&k.description, &user.app_id).is_none()
                || kept.contains(&Some(k.secret.fingerprint().as_str()))
            {
                continue;
            }
            match self
                .fenced(run, user, self.upstream.delete_key(&run.account, &k.secret))
                .await?
            {
                Ok(()) | Err(UpstreamError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Deletes the user's app ("not found" is done). When undoing a provisioning that failed
    /// (`only_ours`), the app may never have been created by us: it is deleted only if it
    /// carries this user's marker.
    async fn step_delete_app(
        &self,
        run: &Run<'_>,
        user: &User,
        only_ours: bool,
    ) -> Result<(), Fail> {
        if only_ours {
            match self
                .fenced(run, user, self.upstream.get_app(&run.account, &user.app_id))
                .await?
            {
                Err(UpstreamError::NotFound) => return Ok(()),
                Err(e) => return Err(e.into()),
                Ok(app) if !app_has_marker(&app.metadata, &user.tenant_id, &user.external_id) => {
                    return Ok(());
                }
                Ok(_) => {}
            }
        }
        match self
            .fenced(
                run,
                user,
                self.upstream.delete_app(&run.account, &user.app_id),
            )
            .await?
        {
            Ok(()) | Err(UpstreamError::NotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a replaced key upstream ("not found" is done), under the run's lease.
    pub(super) async fn delete_retired(
        &self,
        run: &Run<'_>,
        user: &User,
        old: &RetiredKey,
    ) -> Result<(), Fail> {
        let secret = self
            .open_key(user, &old.sealed, KeySlot::Retired)
            .map_err(Fail::Permanent)?;
        match self
            .fenced(run, user, self.upstream.delete_key(&run.account, &secret))
            .await?
        {
            Ok(()) | Err(UpstreamError::NotFound) => Ok(()),
            Err(e) => Err(Fail::Transient(e.to_string())),
        }
    }

    /// Moves a current key's sealed value to the retired slot's binding. A value that does
    /// not open stays as it is (it opens in neither slot; deleting it is reported).
    fn reseal_retired(&self, user: &User, sealed: Vec<u8>) -> Vec<u8> {
        match self.open_key(user, &sealed, KeySlot::Current) {
            Ok(secret) => self.sealer.seal(
                secret.expose(),
                &key_aad(&user.tenant_id, &user.app_id, KeySlot::Retired),
            ),
            Err(_) => sealed,
        }
    }

    pub(super) fn open_key(
        &self,
        user: &User,
        sealed: &[u8],
        slot: KeySlot,
    ) -> Result<KeySecret, DomainError> {
        let s = self
            .sealer
            .open(sealed, &key_aad(&user.tenant_id, &user.app_id, slot))
            .map_err(|e| DomainError::Internal(format!("user {}: {e}", user_target(user))))?;
        KeySecret::parse(secrecy::ExposeSecret::expose_secret(&s).to_owned())
            .map_err(|_| DomainError::Internal("stored key is malformed".into()))
    }

    /// Records a failed step. Transient: keep the intent, release the lease, and let a retry
    /// (the caller's or recovery's) resume it. Permanent: settle the user in a state that
    /// needs no upstream work, undoing an app this provisioning created.
    async fn on_failure(
        &self,
        run: &mut Run<'_>,
        mut user: User,
        fail: Fail,
    ) -> Result<Outcome, DomainError> {
        let now = self.clock.now();
        let failed_as = user.status;
        // Once per operation, not on every retry of a deletion that keeps being refused.
        let credential_rejected = user.attempts == 0
            && matches!(
                &fail,
                Fail::Permanent(DomainError::UpstreamRejected(m)) if m.starts_with(CREDENTIAL_REJECTED)
            );
        let (err, outcome) = match fail {
            Fail::LeaseLost => return Err(lease_lost()),
            Fail::Busy(m) => {
                // Not the upstream's fault: no back-off, and `attempts` stays as it is.
                user.next_attempt_at = Some(now + super::busy_retry());
                user.last_error = Some(m.clone());
                (DomainError::UpstreamBusy(m), None)
            }
            Fail::Transient(m) => {
                user.attempts += 1;
                user.next_attempt_at = Some(now + self.backoff(user.attempts));
                user.last_error = Some(m.clone());
                (DomainError::UpstreamUnavailable(m), None)
            }
            Fail::Permanent(e) => {
                user.last_error = Some(e.to_string());
                match (user.status, user.step) {
                    // An app id held by someone else's app: nothing of ours to undo.
                    (UserStatus::Provisioning, Step::CreateApp)
                        if matches!(e, DomainError::Conflict(_)) =>
                    {
                        user.status = UserStatus::Failed;
                        user.step = Step::Idle;
                    }
                    // The app may exist (an earlier attempt, an ambiguous create): undo it if it
                    // is ours, now or through recovery.
                    (
                        UserStatus::Provisioning,
                        Step::CreateApp | Step::PurgeKeys | Step::CreateKey,
                    ) => {
                        user.status = UserStatus::Failed;
                        user.step = Step::UndoApp;
                        if self.step_delete_app(run, &user, true).await.is_ok() {
                            // A create that got no answer may still land: look once more
                            // when it must have.
                            user.step = Step::SweepApp;
                            user.next_attempt_at = Some(now + self.backoff(1));
                        }
                    }
                    // A rotation re-created a vanished app and the upstream minted a key with it
                    // that cannot be deleted: the user must not look settled with an all-scope
                    // key on its app. Keep the intent and retry with backoff (visible in
                    // `last_error`), like a deletion.
                    (UserStatus::Rotating | UserStatus::Reactivating, Step::PurgeKeys) => {
                        user.attempts += 1;
                        user.next_attempt_at = Some(now + self.backoff(user.attempts));
                    }
                    // A reactivation that cannot create the key: suspended again (no key), and
                    // a create that got no answer is swept once it must have landed.
                    (UserStatus::Reactivating, _) => {
                        user.status = UserStatus::Suspended;
                        if run.look_first {
                            user.step = Step::SweepKeys;
                            user.next_attempt_at = Some(now + self.backoff(1));
                        } else {
                            user.step = Step::Idle;
                        }
                    }
                    (UserStatus::Rotating, _) => {
                        // Back to the current key. A key still in its grace period stays
                        // recorded (it is live upstream); a create that got no answer may
                        // still land, so sweep for it once it must have.
                        user.status = UserStatus::Active;
                        user.rotation_grace_secs = 0;
                        if run.look_first {
                            user.step = Step::SweepKeys;
                            user.next_attempt_at = Some(now + self.backoff(1));
                        } else {
                            user.step = Step::Idle;
                        }
                    }
                    // Deletions must finish: keep the intent and retry with backoff.
                    _ => {
                        user.attempts += 1;
                        user.next_attempt_at = Some(now + self.backoff(user.attempts));
                    }
                }
                let outcome = format!("failure: {e}");
                (e, Some(outcome))
            }
        };
        let audit = outcome.map(|o| {
            let mut a = self.audit(
                run.actor,
                Some(&run.tenant.id),
                "user.operation_failed",
                user_target(&user),
                &o,
            );
            if failed_as == UserStatus::Provisioning && user.status == UserStatus::Failed {
                a.events
                    .push(self.user_event(EventType::UserProvisioningFailed, &user));
            }
            if credential_rejected {
                a.events.push(OutboxEvent::new(
                    &run.tenant.id,
                    EventType::TenantUpstreamCredentialRejected,
                    now,
                    serde_json::json!({
                        "tenant_id": run.tenant.id.as_str(),
                        "upstream_user_id": run.tenant.upstream_user_id.as_str(),
                        "pat_fingerprint": run.tenant.pat_fingerprint.get(..8),
                    }),
                ));
            }
            a
        });
        self.save(&run.owner, &mut user, false, audit.as_ref())
            .await?;
        Err(err)
    }

    /// Writes the row under the lease `owner` holds: renewed when `keep_lease`, released otherwise.
    pub(super) async fn save(
        &self,
        owner: &str,
        user: &mut User,
        keep_lease: bool,
        audit: Option<&crate::model::AuditEvent>,
    ) -> Result<(), DomainError> {
        self.try_save(owner, user, keep_lease, audit)
            .await
            .map_err(|e| match e {
                StoreError::Stale => lease_lost(),
                other => other.into(),
            })
    }

    /// [`Provisioner::save`] with the store's own error.
    pub(super) async fn try_save(
        &self,
        owner: &str,
        user: &mut User,
        keep_lease: bool,
        audit: Option<&crate::model::AuditEvent>,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        user.updated_at = now;
        user.lease = keep_lease.then(|| Lease {
            owner: owner.to_owned(),
            expires_at: now + self.lease_ttl(),
        });
        self.store.update_user(user, owner, audit).await?;
        user.version += 1;
        Ok(())
    }

    pub(super) fn lease_ttl(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.config.lease_ttl).unwrap_or(chrono::Duration::seconds(120))
    }

    /// Capped exponential backoff for recovery: base * 2^(attempts-1), at most `retry_max`.
    pub(super) fn backoff(&self, attempts: i64) -> chrono::Duration {
        let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
        let d = self
            .config
            .retry_base
            .saturating_mul(2u32.saturating_pow(exp))
            .min(self.config.retry_max);
        chrono::Duration::from_std(d).unwrap_or(chrono::Duration::seconds(300))
    }
}

/// How a refused PAT reads in errors (and what marks the tenant's credential event).
const CREDENTIAL_REJECTED: &str = "upstream refused the tenant's credential";

pub(super) const VANISHED: &str = "the app vanished upstream; re-creating it";

/// The answer when another holder took the operation over: it finishes it; a retry gets its
/// outcome.
pub(super) fn lease_lost() -> DomainError {
    DomainError::UpstreamUnavailable(
        "the operation was taken over by another worker before it finished; retry".into(),
    )
}

/// `users/<external id>`, the audit target of a user.
pub(super) fn user_target(user: &User) -> String {
    format!("users/{}", user.external_id)
}

/// Fills the description template, keeping the upstream's text short.
fn describe(template: &str, external_id: &str) -> String {
    template
        .replace("{external_id}", external_id)
        .chars()
        .take(500)
        .collect()
}
