//! The purge of keys the upstream mints with a new app (docs/architecture.md, "Keys the
//! upstream mints with an app"): the `purge_keys` step after `create_app`, chosen by the
//! tenant's `auto_key_check` and, for `learn`, by what was learnt about the upstream account.

use crate::error::{DomainError, UpstreamError};
use crate::marker::{app_has_marker, key_generation};
use crate::model::{AutoKeyCheck, User};
use crate::ports::UpstreamKey;

use super::Provisioner;
use super::steps::{Fail, Run, VANISHED};

/// Clean checks in a row after which [`AutoKeyCheck::Learn`] stops looking on an account.
pub const LEARN_CLEAN_CHECKS: i64 = 20;

impl Provisioner {
    /// Whether the app just created (or adopted) is to be purged of keys the upstream minted
    /// with it: the tenant's `auto_key_check`, and for `learn` what was learnt about the
    /// account (looked up once per new app; when it cannot be read, check).
    pub(super) async fn purge_after_create(&self, run: &Run<'_>) -> bool {
        match run.tenant.auto_key_check {
            AutoKeyCheck::Always => true,
            AutoKeyCheck::Never => false,
            AutoKeyCheck::Learn => match self.store.auto_key_learning(&run.account.key()).await {
                Ok(l) => l.clean_checks < LEARN_CLEAN_CHECKS,
                Err(e) => {
                    tracing::debug!(error.message = %e, "could not read the account's auto-key learning; checking");
                    true
                }
            },
        }
    }

    /// Deletes the keys on the user's app that carry no marker of this service (a key the
    /// upstream minted with the app, or one added by hand), keeping the user's recorded keys
    /// whatever their description. The app must be this user's: proven by this run's create,
    /// or else by its marker, read first. Safe to repeat.
    pub(super) async fn step_purge_keys(&self, run: &Run<'_>, user: &User) -> Result<(), Fail> {
        if !run.app_proven {
            match self
                .fenced(run, user, self.upstream.get_app(&run.account, &user.app_id))
                .await?
            {
                Err(UpstreamError::NotFound) => return Err(Fail::Transient(VANISHED.into())),
                Err(e) => return Err(e.into()),
                Ok(app) if !app_has_marker(&app.metadata, &user.tenant_id, &user.external_id) => {
                    return Err(Fail::Permanent(DomainError::Conflict(format!(
                        "upstream app id {} is now held by an app this service did not create for this user",
                        user.app_id
                    ))));
                }
                Ok(_) => {}
            }
        }
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
        let kept = [
            user.key.as_ref().map(|k| k.fingerprint.as_str()),
            user.retired_key.as_ref().map(|k| k.fingerprint.as_str()),
        ];
        // A key that also reaches another app was not minted with this one, and deleting it
        // would take something from an app that is not ours: left to the drift check's report.
        let unmarked: Vec<UpstreamKey> = keys
            .into_iter()
            .filter(|k| {
                key_generation(&k.description, &user.app_id).is_none()
                    && !kept.contains(&Some(k.secret.fingerprint().as_str()))
                    && only_on(k, &user.app_id)
            })
            .collect();
        let found = !unmarked.is_empty();
        // A hint for `learn`, shared by the account's tenants; losing it costs a check. A clean
        // look counts only when this run created the app: a resumed purge may come after an
        // earlier one deleted what was minted.
        if found || (run.tenant.auto_key_check == AutoKeyCheck::Learn && run.app_proven) {
            if let Err(e) = self
                .store
                .record_auto_key_check(&run.account.key(), found, self.clock.now())
                .await
            {
                tracing::debug!(error.message = %e, "could not record an auto-key check");
            }
        }
        for k in &unmarked {
            match self
                .fenced(run, user, self.upstream.delete_key(&run.account, &k.secret))
                .await?
            {
                Ok(()) | Err(UpstreamError::NotFound) => {}
                // One least-privilege key per user cannot be kept on this upstream: say so.
                Err(UpstreamError::Rejected(m)) => {
                    return Err(Fail::Permanent(DomainError::UpstreamRejected(format!(
                        "the upstream refused to delete a key without this service's marker on the new app ({m}); \
                         a tenant that accepts such keys sets auto_key_check to never"
                    ))));
                }
                Err(e) => return Err(e.into()),
            }
        }
        if found {
            tracing::info!(
                tenant = %user.tenant_id,
                deleted = unmarked.len(),
                "deleted keys without this service's marker from a new app (the upstream minted them with it)"
            );
        }
        Ok(())
    }
}

/// Whether a key listed on `app_id` reaches that app alone (an empty list: the upstream did not
/// say otherwise).
pub(super) fn only_on(key: &UpstreamKey, app_id: &crate::ids::AppId) -> bool {
    key.app_ids.iter().all(|a| a == app_id.as_str())
}
