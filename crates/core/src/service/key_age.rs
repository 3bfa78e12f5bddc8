//! Key-age policies: a scope profile may say its users' keys live at most `max_key_age`; the
//! service then rotates each key that reaches that age, as crash-safe as a manual rotation
//! (the same state machine), in the bulk lane (behind interactive requests, within the
//! account's budget), keeping the replaced key for the profile's `rotation_grace`. Each
//! rotation sends `user.key_rotated`; the consumer reads the new secret with `reveal-key`.

use crate::error::DomainError;
use crate::ids::TenantId;
use crate::model::{Actor, Timestamp, User};

use super::Provisioner;
use super::rotation::Background;

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyAgeReport {
    /// Keys found past their profile's maximum age.
    pub due: usize,
    /// Rotated.
    pub rotated: usize,
    /// Left for the next pass (the rotation failed, or another operation held the user).
    pub failed: usize,
}

impl Provisioner {
    /// When the user's key is due for rotation under its profile's key-age policy (`None`: no
    /// key, no profile, or a profile without a policy).
    pub async fn key_rotation_due(&self, user: &User) -> Result<Option<Timestamp>, DomainError> {
        let (Some(key), Some(profile)) = (&user.key, &user.profile) else {
            return Ok(None);
        };
        Ok(self
            .store
            .get_profile(&user.tenant_id, profile)
            .await?
            .and_then(|p| p.max_key_age_secs)
            .map(|age| key.created_at + chrono::Duration::seconds(age)))
    }

    /// One pass over every tenant's profiles with a key-age policy: rotates up to `limit` keys
    /// past their age, oldest first. Safe on several replicas at once (a key rotated meanwhile
    /// is not rotated again); a failure is left for the next pass.
    pub async fn run_key_age_pass(&self, limit: u32) -> Result<KeyAgeReport, DomainError> {
        let actor = Actor::system("key-age");
        let mut report = KeyAgeReport::default();
        let mut after: Option<TenantId> = None;
        loop {
            let tenants = self.store.list_tenants(after.as_ref(), 200).await?;
            for tenant in &tenants {
                for profile in self.store.list_profiles(&tenant.id).await? {
                    let Some(age) = profile.max_key_age_secs else {
                        continue;
                    };
                    let left =
                        u32::try_from(limit as usize - report.due.min(limit as usize)).unwrap_or(0);
                    if left == 0 {
                        return Ok(report);
                    }
                    let before = self.clock.now() - chrono::Duration::seconds(age);
                    let due = self
                        .store
                        .keys_older_than(&tenant.id, &profile.name, before, left)
                        .await?;
                    report.due += due.len();
                    let grace = u32::try_from(profile.rotation_grace_secs).unwrap_or(0);
                    for external_id in due {
                        match self
                            .rotate_key_with(
                                &actor,
                                &tenant.id,
                                &external_id,
                                grace,
                                true,
                                None,
                                Background::KeysBefore(before),
                            )
                            .await
                        {
                            Ok(p) if p.created => report.rotated += 1,
                            Ok(_) => {}
                            Err(e) => {
                                report.failed += 1;
                                tracing::warn!(
                                    tenant = %tenant.id,
                                    error.message = %e,
                                    "a key past its profile's maximum age could not be rotated; the next pass tries again"
                                );
                            }
                        }
                    }
                }
            }
            if tenants.len() < 200 {
                return Ok(report);
            }
            after = tenants.last().map(|t| t.id.clone());
        }
    }
}
